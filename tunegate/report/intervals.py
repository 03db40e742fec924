"""The numbers behind the report's figures and tables, from the long score table.

Mean and 95% bootstrap CI per (mode, metric) (`mode_metric_cis`, also written to results.json),
and each metric's paired a − b differences on the samples scored in both modes, with the gates'
own paired interval (`paired_differences`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tunegate.report.labels import _metrics
from tunegate.scores import mode_metric_values
from tunegate.stats import bootstrap_mean_ci, paired_bootstrap_many, resampled_means

_CI_ITERS, _CI_CONFIDENCE = 10_000, 0.95  # the per-mode intervals (`bootstrap_mean_ci` defaults)


def mode_metric_cis(table: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Mean and 95% bootstrap CI per (mode, metric): columns mode, metric, mean, ci_low, ci_high, n.

    Each interval is `bootstrap_mean_ci(values, seed=seed)`'s. With one seed, every group of the same
    size draws the same resample indices, so those groups share one draw and one matrix product (48
    groups: one draw instead of 48); the bounds then agree with the one-group call to rounding
    (~1e-15), as `paired_bootstrap_many` does for the gates. A group with NaN, inf or a single value
    goes through `bootstrap_mean_ci` itself (which raises on NaN and inf, as before).
    """
    groups = []
    by_size: dict[int, list[int]] = {}  # sample count -> positions of the groups that can share a draw
    for (mode, metric), group in table.groupby(["mode", "metric"], sort=False):
        values = np.sort(group["value"].to_numpy(dtype=float))  # bootstrap_mean_ci sorts too: order-free
        groups.append((mode, metric, values))
        if values.size >= 2 and np.isfinite(values).all():
            by_size.setdefault(values.size, []).append(len(groups) - 1)
    tail = (1 - _CI_CONFIDENCE) / 2
    bounds: dict[int, tuple[float, float]] = {}
    for positions in by_size.values():
        means = resampled_means(np.column_stack([groups[p][2] for p in positions]), iters=_CI_ITERS, seed=seed)
        low, high = np.quantile(means, [tail, 1 - tail], axis=0)
        bounds.update((p, (float(lo), float(hi))) for p, lo, hi in zip(positions, low, high))
    rows = []
    for position, (mode, metric, values) in enumerate(groups):
        if position in bounds:
            mean, (low, high), n = float(values.mean()), bounds[position], values.size
        else:
            ci = bootstrap_mean_ci(values, iters=_CI_ITERS, confidence=_CI_CONFIDENCE, seed=seed)
            mean, low, high, n = ci.mean, ci.ci_low, ci.ci_high, ci.n
        rows.append({"mode": mode, "metric": metric, "mean": mean, "ci_low": low, "ci_high": high, "n": n})
    return pd.DataFrame(rows, columns=["mode", "metric", "mean", "ci_low", "ci_high", "n"])


def _shared_metrics(table: pd.DataFrame, a: str, b: str) -> list[str]:
    """Metrics scored in both modes, in first-seen order."""
    in_a = set(table.loc[table["mode"] == a, "metric"])
    in_b = set(table.loc[table["mode"] == b, "metric"])
    return [m for m in _metrics(table) if m in in_a and m in in_b]


def sample_differences(table: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Scores of `a` and `b` on the samples scored in both, and their difference: columns a, b, diff, by sample_id."""
    joined = pd.concat({"a": mode_metric_values(table, a, metric), "b": mode_metric_values(table, b, metric)},
                       axis=1, join="inner").dropna()
    joined["diff"] = joined["a"] - joined["b"]
    return joined


def paired_differences(
    table: pd.DataFrame,
    a: str = "finetuned",
    b: str = "prompt_eng",
    metrics: Sequence[str] | None = None,
    *,
    iters: int = 10_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per metric, `a` against `b` on the same samples: n, wins/ties/losses of a, mean(a − b) and its 95% CI.

    Columns: metric, n, wins, ties, losses, mean_diff, ci_low, ci_high. The interval is the gates'
    own (`stats.paired_bootstrap_many`, metrics scored on the same samples sharing one set of
    resamples, as `gates.gain_checks` groups them), so the figure and the gate table agree; a tie
    is an exactly equal score, as there. Metrics with no shared sample get n=0 and NaN numbers.
    """
    metrics = list(metrics) if metrics is not None else _shared_metrics(table, a, b)
    return _paired_summary({metric: sample_differences(table, a, b, metric) for metric in metrics}, iters=iters,
                           seed=seed)


def _paired_summary(pairs: Mapping[str, pd.DataFrame], *, iters: int, seed: int) -> pd.DataFrame:
    """`paired_differences` from `sample_differences` frames by metric (each computed once by the caller)."""
    groups: dict[tuple[Any, ...], list[str]] = {}  # the shared samples -> the metrics scored on exactly those
    for metric, pair in pairs.items():
        if len(pair) >= 2:
            groups.setdefault(tuple(pair.index), []).append(metric)
    comparisons = {}
    for group in groups.values():
        comparisons.update(paired_bootstrap_many({m: pairs[m]["a"].to_numpy() for m in group},
                                                 {m: pairs[m]["b"].to_numpy() for m in group}, iters=iters, seed=seed))
    rows = []
    for metric, pair in pairs.items():
        diffs = pair["diff"].to_numpy()
        n = len(diffs)
        if metric in comparisons:
            comparison = comparisons[metric]
            mean, low, high = comparison.diff, comparison.ci_low, comparison.ci_high
        else:
            mean = low = high = float(diffs[0]) if n else math.nan
        rows.append({"metric": metric, "n": n, "wins": int((diffs > 0).sum()), "ties": int((diffs == 0).sum()),
                     "losses": int((diffs < 0).sum()), "mean_diff": mean, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows, columns=["metric", "n", "wins", "ties", "losses", "mean_diff", "ci_low", "ci_high"])
