"""tunegate.report.intervals: mean and CI per mode and metric, paired differences with the gates' interval."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tests.report_cases import VALUES, paired_table, score_table
from tunegate.report.intervals import mode_metric_cis, paired_differences
from tunegate.scores import COLUMNS
from tunegate.stats import bootstrap_mean_ci, paired_bootstrap


def test_mode_metric_cis_columns_and_values() -> None:
    cis = mode_metric_cis(score_table(), seed=4)
    assert list(cis.columns) == ["mode", "metric", "mean", "ci_low", "ci_high", "n"]
    assert list(zip(cis["mode"], cis["metric"])) == list(VALUES)  # first-seen order
    for row in cis.itertuples():
        expected = bootstrap_mean_ci(VALUES[row.mode, row.metric], seed=4)
        # Groups of one size share one draw and one matrix product: equal to the one-group call to rounding.
        assert (row.mean, row.ci_low, row.ci_high, row.n) == (
            pytest.approx(expected.mean), pytest.approx(expected.ci_low, rel=1e-12),
            pytest.approx(expected.ci_high, rel=1e-12), 4
        )
        assert row.ci_low <= row.mean <= row.ci_high
    assert cis.set_index(["mode", "metric"]).loc[("prompt_eng", "rougeL"), "mean"] == pytest.approx(0.3)


def test_mode_metric_cis_groups_of_other_sizes_and_single_values_match_bootstrap_mean_ci() -> None:
    """Groups of one size share a draw; another size, or one value, is its own bootstrap."""
    values = {("base", "rougeL"): [0.2, 0.4, 0.1, 0.5], ("finetuned", "rougeL"): [0.9, 0.3, 0.6],
              ("finetuned", "bleu"): [0.25], ("base", "bleu"): [0.1, 0.7, 0.3, 0.3]}
    rows = [(f"s{i}", mode, metric, v) for (mode, metric), vs in values.items() for i, v in enumerate(vs)]
    cis = mode_metric_cis(pd.DataFrame(rows, columns=COLUMNS), seed=2)
    assert list(zip(cis["mode"], cis["metric"])) == list(values)
    for row in cis.itertuples():
        expected = bootstrap_mean_ci(values[row.mode, row.metric], seed=2)
        assert row.n == expected.n and row.mean == pytest.approx(expected.mean)
        assert (row.ci_low, row.ci_high) == (pytest.approx(expected.ci_low, rel=1e-12),
                                             pytest.approx(expected.ci_high, rel=1e-12))
    with pytest.raises(ValueError, match="NaN"):  # a missing score is never averaged silently
        mode_metric_cis(pd.DataFrame([*rows, ("s9", "base", "bleu", math.nan)], columns=COLUMNS))


def test_mode_metric_cis_of_an_empty_table_has_the_columns() -> None:
    cis = mode_metric_cis(pd.DataFrame(columns=COLUMNS))
    assert cis.empty and list(cis.columns) == ["mode", "metric", "mean", "ci_low", "ci_high", "n"]


def test_paired_differences_counts_wins_ties_losses_and_the_mean_on_shared_samples() -> None:
    result = paired_differences(paired_table(), iters=2000, seed=3).set_index("metric")
    rouge, judge = result.loc["rougeL"], result.loc["judge_overall"]
    assert (rouge["n"], rouge["wins"], rouge["ties"], rouge["losses"]) == (4, 2, 1, 1)
    assert rouge["mean_diff"] == pytest.approx(0.15)
    expected = paired_bootstrap([0.6, 0.4, 0.1, 0.9], [0.2, 0.4, 0.5, 0.3], iters=2000, seed=3)
    assert (rouge["ci_low"], rouge["ci_high"]) == (pytest.approx(expected.ci_low), pytest.approx(expected.ci_high))
    assert (judge["n"], judge["wins"], judge["ties"], judge["losses"]) == (4, 1, 1, 2)
    assert judge["mean_diff"] == pytest.approx(-0.25)
    reverse = paired_differences(paired_table(), "prompt_eng", "finetuned", ["rougeL"], iters=100).iloc[0]
    assert (reverse["wins"], reverse["losses"], reverse["mean_diff"]) == (1, 2, pytest.approx(-0.15))
    nothing = paired_differences(paired_table(), "finetuned", "base", ["rougeL"]).iloc[0]
    assert nothing["n"] == 0 and math.isnan(nothing["mean_diff"])
