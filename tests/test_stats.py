"""Tests for tunegate.stats: bootstrap CIs of a mean, paired bootstrap tests and Holm, against theory and scipy.

The false-alarm rates and power of the paired test are simulated in tests/test_stats_validity.py.
"""

from __future__ import annotations

import importlib.util
import math
import tracemalloc

import numpy as np
import pytest
import scipy.stats

from tunegate.stats import (
    Comparison,
    MeanCI,
    bootstrap_mean_ci,
    format_p,
    holm_adjust,
    paired_bootstrap,
    paired_bootstrap_many,
)


def normal_scores(n: int, seed: int, mean: float = 0.5, sd: float = 0.2) -> np.ndarray:
    return np.random.default_rng(seed).normal(mean, sd, n)


def test_same_seed_gives_the_identical_interval() -> None:
    data = normal_scores(50, seed=1)
    assert bootstrap_mean_ci(data, seed=7) == bootstrap_mean_ci(data, seed=7)
    assert bootstrap_mean_ci(list(data), seed=7) == bootstrap_mean_ci(tuple(data), seed=7)


def test_different_seeds_draw_different_resamples() -> None:
    data = normal_scores(50, seed=1)
    first, second = bootstrap_mean_ci(data, seed=1), bootstrap_mean_ci(data, seed=2)
    assert first.mean == second.mean
    assert (first.ci_low, first.ci_high) != (second.ci_low, second.ci_high)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_interval_contains_the_mean_and_records_its_inputs(seed: int) -> None:
    data = normal_scores(40, seed=seed)
    ci = bootstrap_mean_ci(data, seed=seed, confidence=0.9)
    assert ci.mean == pytest.approx(float(data.mean()), abs=1e-12)
    assert ci.ci_low < ci.mean < ci.ci_high
    assert ci.n == 40 and ci.confidence == 0.9


def test_higher_confidence_gives_a_wider_interval() -> None:
    data = normal_scores(60, seed=3)
    narrow = bootstrap_mean_ci(data, confidence=0.80, seed=0)
    wide = bootstrap_mean_ci(data, confidence=0.99, seed=0)
    assert wide.ci_low < narrow.ci_low and narrow.ci_high < wide.ci_high


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_width_matches_the_normal_approximation_for_n_200(seed: int) -> None:
    data = normal_scores(200, seed=seed, mean=3.0, sd=2.0)
    ci = bootstrap_mean_ci(data, seed=seed)
    expected = 2 * 1.96 * data.std() / math.sqrt(data.size)
    assert ci.ci_high - ci.ci_low == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_scipy_percentile_bootstrap(seed: int) -> None:
    data = normal_scores(50, seed=100 + seed)
    ours = bootstrap_mean_ci(data, seed=seed)
    theirs = scipy.stats.bootstrap(
        (data,), np.mean, n_resamples=10_000, method="percentile", confidence_level=0.95,
        rng=np.random.default_rng(seed + 1000),
    ).confidence_interval
    # Different resamples: allow Monte-Carlo error, here 15% of a standard error (~4 sigma).
    tolerance = 0.15 * data.std() / math.sqrt(data.size)
    assert ours.ci_low == pytest.approx(theirs.low, abs=tolerance)
    assert ours.ci_high == pytest.approx(theirs.high, abs=tolerance)


def test_skewed_scores_give_an_asymmetric_interval_like_scipy() -> None:
    data = np.array([0.0] * 45 + [1.0] * 5)  # rare successes: the upper arm is the longer one
    ours = bootstrap_mean_ci(data, seed=0)
    theirs = scipy.stats.bootstrap((data,), np.mean, method="percentile", n_resamples=10_000,
                                   rng=np.random.default_rng(1)).confidence_interval
    assert ours.ci_high - ours.mean > ours.mean - ours.ci_low
    # Resampled means of 0/1 scores sit on a 1/50 lattice: agree to within one step.
    step = 1 / data.size + 1e-9
    assert ours.ci_low == pytest.approx(theirs.low, abs=step)
    assert ours.ci_high == pytest.approx(theirs.high, abs=step)


def test_constant_scores_give_a_zero_width_interval() -> None:
    ci = bootstrap_mean_ci([0.75] * 30)
    assert (ci.mean, ci.ci_low, ci.ci_high, ci.n) == (0.75, 0.75, 0.75, 30)


def test_one_score_gives_a_degenerate_interval() -> None:
    assert bootstrap_mean_ci([0.4]) == MeanCI(0.4, 0.4, 0.4, 1, 0.95)


@pytest.mark.parametrize("values", [[0.1, float("nan"), 0.3], np.array([np.nan])])
def test_nan_is_an_error(values: object) -> None:
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_mean_ci(values)


@pytest.mark.parametrize("values", [[], np.array([]), np.zeros((3, 2))])
def test_empty_or_not_one_dimensional_is_an_error(values: object) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        bootstrap_mean_ci(values)


def test_large_n_runs_in_bounded_memory_and_is_correct() -> None:
    n, iters = 100_000, 1_000
    data = np.random.default_rng(0).random(n)
    tracemalloc.start()
    try:
        ci = bootstrap_mean_ci(data, iters=iters, seed=0)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One n x iters index matrix would be n * iters * 8 bytes = 800 MB; chunks stay far below.
    assert peak_bytes < 200 * 1024 * 1024
    assert ci.n == n and ci.mean == pytest.approx(float(data.mean()))
    assert ci.ci_low < ci.mean < ci.ci_high
    expected = 2 * 1.96 * data.std() / math.sqrt(n)
    assert ci.ci_high - ci.ci_low == pytest.approx(expected, rel=0.15)


def test_str_is_mean_interval_and_n() -> None:
    assert str(MeanCI(0.12345, 0.1, 0.2, 50, 0.95)) == "0.123 [0.100, 0.200] (n=50)"
    assert str(bootstrap_mean_ci([1.0, 1.0])) == "1.000 [1.000, 1.000] (n=2)"


def test_mean_ci_is_frozen() -> None:
    ci = bootstrap_mean_ci([0.1, 0.2])
    with pytest.raises(AttributeError):
        ci.mean = 1.0  # type: ignore[misc]


def test_interval_does_not_depend_on_the_order_of_the_scores() -> None:
    values = np.random.default_rng(3).uniform(size=40)
    assert bootstrap_mean_ci(values) == bootstrap_mean_ci(values[::-1])


# --- paired_bootstrap: reproducibility ----------------------------------------------------------


def paired_scores(n: int, seed: int, effect: float = 0.02, sd: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Two systems on the same n samples: a shared per-sample difficulty, per-system noise."""
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0.2, 0.8, n)
    noise = sd / math.sqrt(2)  # so that a − b has sd `sd`
    return difficulty + effect + rng.normal(0, noise, n), difficulty + rng.normal(0, noise, n)


def mc_se_of_p(p_value: float, iters: int) -> float:
    """Monte Carlo standard error of a bootstrap p-value estimated from `iters` resamples."""
    return math.sqrt(p_value * (1 - p_value) / iters)


def test_paired_bootstrap_with_the_same_seed_gives_the_identical_comparison() -> None:
    a, b = paired_scores(50, seed=1)
    assert paired_bootstrap(a, b, seed=7) == paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(list(a), tuple(b), seed=7) == paired_bootstrap(a, b, seed=7)
    many = {"x": a, "y": b}
    swapped = {"x": b, "y": a}
    assert paired_bootstrap_many(many, swapped, seed=3) == paired_bootstrap_many(many, swapped, seed=3)


def test_paired_bootstrap_with_different_seeds_differs_only_by_monte_carlo_error() -> None:
    a, b = paired_scores(50, seed=1)
    first, second = paired_bootstrap(a, b, seed=1), paired_bootstrap(a, b, seed=2)
    assert (first.diff, first.mean_a, first.mean_b) == (second.diff, second.mean_a, second.mean_b)
    assert (first.ci_low, first.ci_high, first.p_value) != (second.ci_low, second.ci_high, second.p_value)
    # Two independent estimates: 4 sigma of their difference (p), 15% of a standard error (CI, as above).
    assert abs(first.p_value - second.p_value) < 4 * math.sqrt(2) * mc_se_of_p(first.p_value, first.iters)
    standard_error = float(np.std(a - b)) / math.sqrt(a.size)
    assert first.ci_low == pytest.approx(second.ci_low, abs=0.15 * standard_error)
    assert first.ci_high == pytest.approx(second.ci_high, abs=0.15 * standard_error)


# --- paired_bootstrap: bad input ----------------------------------------------------------------


def test_paired_bootstrap_rejects_systems_scored_on_different_numbers_of_samples() -> None:
    with pytest.raises(ValueError, match="a has 3 scores, b has 2"):
        paired_bootstrap([0.1, 0.2, 0.3], [0.1, 0.2])


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        ([0.1, float("nan"), 0.3], [0.1, 0.2, 0.3], r"^a: 1 of 3 scores are NaN \(positions 1\)"),
        ([0.1, 0.2, 0.3, 0.4], [np.nan, 0.2, np.nan, 0.4], r"^b: 2 of 4 scores are NaN \(positions 0, 2\)"),
    ],
)
def test_paired_bootstrap_rejects_nan_and_names_how_many(a: list[float], b: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(a, b)


def test_paired_bootstrap_needs_at_least_two_samples() -> None:
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        paired_bootstrap([0.5], [0.4])


@pytest.mark.parametrize("scores", [[], np.zeros((3, 2))])
def test_paired_bootstrap_rejects_empty_or_not_one_dimensional_scores(scores: object) -> None:
    with pytest.raises(ValueError, match="non-empty 1-D"):
        paired_bootstrap(scores, scores)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.05, 1.5, float("nan")])
def test_paired_bootstrap_rejects_an_alpha_outside_zero_one(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 1\)"):
        paired_bootstrap([0.1, 0.2], [0.2, 0.1], alpha=alpha)


@pytest.mark.parametrize("iters", [0, -10])
def test_paired_bootstrap_rejects_fewer_than_one_resample(iters: int) -> None:
    with pytest.raises(ValueError, match="iters must be at least 1"):
        paired_bootstrap([0.1, 0.2], [0.2, 0.1], iters=iters)


@pytest.mark.parametrize(
    ("a_keys", "b_keys"),
    [(["rougeL"], ["bertscore"]), (["rougeL", "bertscore"], ["bertscore", "rougeL"]), (["rougeL"], ["rougeL", "x"])],
)
def test_paired_bootstrap_many_rejects_different_metrics_or_orders(a_keys: list[str], b_keys: list[str]) -> None:
    with pytest.raises(ValueError, match="same metrics in the same order"):
        paired_bootstrap_many({k: [0.1, 0.2] for k in a_keys}, {k: [0.2, 0.1] for k in b_keys})


def test_paired_bootstrap_many_rejects_no_metrics() -> None:
    with pytest.raises(ValueError, match="no metrics"):
        paired_bootstrap_many({}, {})


def test_paired_bootstrap_many_rejects_metrics_on_different_samples() -> None:
    a = {"rougeL": [0.1, 0.2, 0.3], "bertscore": [0.1, 0.2]}
    with pytest.raises(ValueError, match="every metric needs the same samples"):
        paired_bootstrap_many(a, a)


def test_paired_bootstrap_many_names_the_metric_with_nan() -> None:
    with pytest.raises(ValueError, match=r"a\[bertscore\]: 1 of 2 scores are NaN"):
        paired_bootstrap_many({"rougeL": [0.1, 0.2], "bertscore": [0.1, np.nan]},
                              {"rougeL": [0.1, 0.2], "bertscore": [0.1, 0.2]})


# --- paired_bootstrap: exact values and degenerate cases ----------------------------------------


def test_means_difference_ties_and_settings_are_exact() -> None:
    comparison = paired_bootstrap([1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], iters=500, seed=3, alpha=0.1,
                                  margin=-0.02)
    assert (comparison.mean_a, comparison.mean_b, comparison.diff) == (0.75, 0.25, 0.5)
    settings = (comparison.n, comparison.iters, comparison.alpha, comparison.margin, comparison.ties)
    assert settings == (4, 500, 0.1, -0.02, 2)
    assert comparison.confidence == pytest.approx(0.9)


@pytest.mark.parametrize("seed", [0, 1])
def test_diff_is_the_mean_of_the_per_sample_differences(seed: int) -> None:
    a, b = paired_scores(37, seed=seed)
    comparison = paired_bootstrap(a, b, iters=200)
    assert comparison.mean_a == float(a.mean()) and comparison.mean_b == float(b.mean())
    assert comparison.diff == pytest.approx(float(np.mean(a - b)), rel=1e-12, abs=1e-15)
    assert comparison.ci_low < comparison.diff < comparison.ci_high


@pytest.mark.parametrize("scores", [[0.7] * 12, list(np.random.default_rng(5).uniform(size=30))])
def test_identical_systems_give_zero_difference_a_zero_width_interval_and_p_one(scores: list[float]) -> None:
    comparison = paired_bootstrap(scores, list(scores), iters=1_000)
    assert (comparison.diff, comparison.ci_low, comparison.ci_high) == (0.0, 0.0, 0.0)
    assert comparison.p_value == 1.0
    assert comparison.ties == comparison.n == len(scores)


def test_a_constant_positive_shift_gives_the_smallest_possible_p() -> None:
    b = np.random.default_rng(6).uniform(size=40)
    iters = 2_000
    comparison = paired_bootstrap(b + 0.1, b, iters=iters)  # a − b is 0.1 up to the last bit of each float
    assert comparison.p_value == 1 / (iters + 1)
    assert comparison.ci_low == pytest.approx(0.1, abs=1e-12) and comparison.ci_high == pytest.approx(0.1, abs=1e-12)


def test_a_constant_difference_exactly_at_the_margin_is_not_evidence() -> None:
    # Every resample equals the observed mean; float noise in "a − b − margin" must not flip the count.
    b = np.random.default_rng(6).uniform(size=40)
    assert paired_bootstrap(b + 0.1, b, margin=0.1, iters=1_000).p_value == 1.0


def test_a_constant_negative_shift_gives_p_one() -> None:
    b = np.random.default_rng(7).uniform(size=25)
    assert paired_bootstrap(b - 0.05, b, iters=1_000).p_value == 1.0


# --- paired_bootstrap: the interval against scipy -----------------------------------------------


SCIPY_DATASETS = {  # per-sample differences a − b
    "normal n=50": np.random.default_rng(11).normal(0.03, 0.15, 50),
    "right-skewed n=40": np.random.default_rng(12).exponential(0.1, 40) - 0.08,
    "uniform n=80": np.random.default_rng(15).uniform(-0.5, 0.6, 80),
    "likert n=30": (np.random.default_rng(13).integers(1, 6, 30)
                    - np.random.default_rng(14).integers(1, 6, 30)).astype(float),
}


def _scipy_interval(differences: np.ndarray, method: str) -> tuple[float, float]:
    interval = scipy.stats.bootstrap((differences,), np.mean, method=method, n_resamples=10_000, confidence_level=0.95,
                                     rng=np.random.default_rng(1000)).confidence_interval
    return float(interval.low), float(interval.high)


@pytest.mark.parametrize("name", list(SCIPY_DATASETS))
def test_interval_agrees_with_scipy_basic_bootstrap(name: str) -> None:
    differences = SCIPY_DATASETS[name]
    ours = paired_bootstrap(differences, np.zeros_like(differences), iters=10_000, seed=0)
    low, high = _scipy_interval(differences, "basic")
    # Independent resamples: two 2.5% quantiles from 10,000 resamples each differ by ~0.04 SE
    # (sd); 15% of a standard error is ~4 sigma. Integer differences sit on a 1/n lattice: add a step.
    tolerance = 0.15 * differences.std() / math.sqrt(differences.size)
    if np.all(differences == np.round(differences)):
        tolerance += 1 / differences.size
    assert ours.ci_low == pytest.approx(low, abs=tolerance), name
    assert ours.ci_high == pytest.approx(high, abs=tolerance), name


@pytest.mark.parametrize("name", ["normal n=50", "uniform n=80"])
def test_interval_roughly_agrees_with_scipy_bca_on_symmetric_differences(name: str) -> None:
    differences = SCIPY_DATASETS[name]
    assert abs(scipy.stats.skew(differences)) < 0.3  # the premise: nearly symmetric
    ours = paired_bootstrap(differences, np.zeros_like(differences), iters=10_000, seed=0)
    low, high = _scipy_interval(differences, "BCa")
    # Monte Carlo error (~0.15 SE, as above) plus BCa's skewness correction, which for a sample
    # skewness under 0.3 at n >= 50 moves an end by well under 0.1 SE.
    tolerance = 0.25 * differences.std() / math.sqrt(differences.size)
    assert ours.ci_low == pytest.approx(low, abs=tolerance), name
    assert ours.ci_high == pytest.approx(high, abs=tolerance), name


def test_on_right_skewed_differences_the_basic_interval_sits_left_of_bca() -> None:
    # Known, documented property: the basic interval reflects the bootstrap distribution, so its
    # long arm points the other way from BCa's (first-order accurate only; see test_stats_validity).
    differences = SCIPY_DATASETS["right-skewed n=40"]
    ours = paired_bootstrap(differences, np.zeros_like(differences), iters=10_000, seed=0)
    low, high = _scipy_interval(differences, "BCa")
    assert ours.ci_low < low and ours.ci_high < high


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_p_value_approximates_the_one_sided_normal_p_for_large_n(seed: int) -> None:
    differences = np.random.default_rng(seed).normal(0.015, 0.15, 200)
    ours = paired_bootstrap(differences, np.zeros_like(differences), iters=10_000, seed=0)
    # The resamples' spread is the n-divisor sd, so that is the z to compare with.
    z = differences.mean() / (differences.std() / math.sqrt(differences.size))
    normal_p = float(scipy.stats.norm.sf(z))
    assert ours.p_value == pytest.approx(normal_p, abs=4 * mc_se_of_p(normal_p, ours.iters))


# --- paired_bootstrap: the interval and the p-value tell the same story -------------------------


def test_interval_excludes_the_margin_exactly_when_one_sided_p_is_below_alpha_over_two() -> None:
    iters, alpha = 2_000, 0.05
    boundary = 2 / (iters + 1)  # quantile interpolation and the count's "≥" can differ by one resample
    seen = {"above": 0, "inside": 0, "below": 0}
    for seed in range(40):
        effect = (seed % 8 - 3) * 0.015  # −0.045 .. +0.06: every side of the margins below
        a, b = paired_scores(60, seed=100 + seed, effect=effect)
        for margin in (-0.02, 0.0, 0.02):
            c = paired_bootstrap(a, b, iters=iters, seed=seed, alpha=alpha, margin=margin)
            if c.ci_low > margin:
                seen["above"] += 1
                assert c.p_value <= alpha / 2 + boundary, c
            elif c.ci_high < margin:
                seen["below"] += 1
                assert c.p_value >= 1 - alpha / 2 - boundary, c
            else:
                seen["inside"] += 1
                assert alpha / 2 - boundary <= c.p_value <= 1 - alpha / 2 + boundary, c
    assert min(seen.values()) >= 10, seen  # every branch was exercised


def test_a_lower_margin_gives_a_smaller_p() -> None:
    a, b = paired_scores(100, seed=8, effect=0.02, sd=0.3)
    p = {margin: paired_bootstrap(a, b, margin=margin, seed=0).p_value for margin in (-0.05, 0.0, 0.05)}
    # "a is better than b − 0.05" is easier to show than "a is better", which is easier than "a gains 0.05".
    assert p[-0.05] < p[0.0] < p[0.05], p
    assert p[-0.05] < 0.05 < p[0.0] < 0.5 < p[0.05], p  # here 0.004, 0.13, 0.67


def test_the_margin_moves_the_p_value_but_not_the_interval() -> None:
    a, b = paired_scores(60, seed=9)
    at_zero, at_margin = paired_bootstrap(a, b, seed=0), paired_bootstrap(a, b, seed=0, margin=-0.03)
    assert (at_zero.ci_low, at_zero.ci_high, at_zero.diff) == (at_margin.ci_low, at_margin.ci_high, at_margin.diff)
    assert at_margin.margin == -0.03 and at_margin.p_value < at_zero.p_value


# --- paired_bootstrap_many ----------------------------------------------------------------------


def test_each_metric_of_paired_bootstrap_many_matches_a_single_call_with_the_same_seed() -> None:
    rng = np.random.default_rng(3)
    tied = rng.uniform(size=60)
    a = {"uniform": rng.uniform(size=60), "likert": rng.integers(1, 6, 60).astype(float), "tied": tied.copy(),
         "skewed": rng.beta(0.5, 4, 60)}
    b = {"uniform": rng.uniform(size=60), "likert": rng.integers(1, 6, 60).astype(float),
         "tied": np.where(rng.random(60) < 0.85, tied, rng.uniform(size=60)), "skewed": rng.beta(0.5, 4, 60)}
    margins = {"likert": -0.2, "skewed": 0.01}
    many = paired_bootstrap_many(a, b, iters=2_000, seed=4, margins=margins)
    assert list(many) == list(a)
    for metric in a:
        alone = paired_bootstrap(a[metric], b[metric], iters=2_000, seed=4, margin=margins.get(metric, 0.0))
        together = many[metric]
        for field in ("n", "iters", "ties", "margin", "mean_a", "mean_b"):
            assert getattr(together, field) == getattr(alone, field), (metric, field)
        for field in ("diff", "ci_low", "ci_high", "p_value"):  # equal up to rounding in the matrix product
            assert np.isclose(getattr(together, field), getattr(alone, field), rtol=1e-12, atol=1e-12), (metric, field)


def test_paired_bootstrap_many_resamples_every_metric_with_the_same_indices() -> None:
    a, b = paired_scores(50, seed=10)
    many = paired_bootstrap_many({"x": a, "double": 2 * a}, {"x": b, "double": 2 * b}, iters=2_000, seed=1)
    # The same resamples: a metric that is twice another has twice its interval and the same p.
    assert many["double"].ci_low == pytest.approx(2 * many["x"].ci_low, rel=1e-9)
    assert many["double"].ci_high == pytest.approx(2 * many["x"].ci_high, rel=1e-9)
    assert many["double"].p_value == many["x"].p_value


def test_paired_bootstrap_runs_in_bounded_memory_for_large_n() -> None:
    n, iters = 200_000, 2_000
    a, b = paired_scores(n, seed=0, effect=0.002)
    tracemalloc.start()
    try:
        comparison = paired_bootstrap(a, b, iters=iters, seed=0)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # One iters x n index matrix would be 2,000 * 200,000 * 8 bytes = 3.2 GB; chunks stay under a tenth.
    assert peak_bytes < 320 * 1024 * 1024
    assert comparison.n == n and comparison.diff == pytest.approx(float(np.mean(a - b)))
    expected = 2 * 1.96 * float(np.std(a - b)) / math.sqrt(n)
    assert comparison.ci_high - comparison.ci_low == pytest.approx(expected, rel=0.15)


# --- Comparison and format_p --------------------------------------------------------------------


def test_comparison_str_shows_the_difference_interval_p_and_n() -> None:
    comparison = Comparison(0.75, 0.25, 0.5, 0.1, 0.9, 0.0004, 4, 10_000, 0.05)
    assert str(comparison) == "diff +0.500 [95% CI +0.100, +0.900], p=0.0004, n=4"
    with_margin = Comparison(0.75, 0.25, 0.5, 0.1, 0.9, 0.0123, 4, 10_000, 0.1, margin=-0.05)
    assert str(with_margin) == "diff +0.500 [90% CI +0.100, +0.900], p(diff > -0.050)=0.012, n=4"


def test_comparison_is_frozen() -> None:
    comparison = paired_bootstrap([0.1, 0.2], [0.2, 0.1], iters=10)
    with pytest.raises(AttributeError):
        comparison.p_value = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("p_value", "text"), [(1.0, "1.000"), (0.0123, "0.012"), (0.001, "0.001"), (0.00012345, "0.00012")]
)
def test_format_p_never_prints_zero(p_value: float, text: str) -> None:
    assert format_p(p_value) == text


# --- holm_adjust --------------------------------------------------------------------------------


def test_holm_matches_a_hand_computation() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> running max 0.06.
    adjusted = holm_adjust([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02], rtol=1e-12)


def test_holm_is_capped_at_one() -> None:
    # Sorted: 0.01*3 = 0.03, 0.5*2 = 1.0, 0.6*1 = 0.6 -> running max 1.0.
    np.testing.assert_allclose(holm_adjust([0.5, 0.6, 0.01]), [1.0, 1.0, 0.03], rtol=1e-12)
    assert holm_adjust([0.9, 0.8, 0.7]).max() == 1.0


def test_holm_handles_ties_one_p_and_none() -> None:
    np.testing.assert_allclose(holm_adjust([0.02, 0.02, 0.02]), [0.06, 0.06, 0.06], rtol=1e-12)
    assert holm_adjust([0.03]).tolist() == [0.03]
    assert holm_adjust([]).tolist() == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_holm_is_monotone_between_raw_p_and_bonferroni(seed: int) -> None:
    p = np.random.default_rng(seed).uniform(0, 0.2, 15) ** 2
    adjusted = holm_adjust(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)  # a smaller raw p never gets a larger adjusted p
    assert np.all(adjusted >= p)
    assert np.all(adjusted <= np.minimum(1.0, p.size * p) + 1e-15)  # never worse than Bonferroni
    assert np.all(adjusted <= 1.0)


def test_holm_keeps_the_input_order() -> None:
    p = np.array([0.04, 0.001, 0.3, 0.02, 0.01])
    permutation = np.random.default_rng(4).permutation(p.size)
    np.testing.assert_array_equal(holm_adjust(p)[permutation], holm_adjust(p[permutation]))


@pytest.mark.parametrize("p_values", [[0.1, -0.01], [0.5, 1.2], [0.1, float("nan")]])
def test_holm_rejects_p_outside_zero_one(p_values: list[float]) -> None:
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        holm_adjust(p_values)


def test_holm_rejects_a_table_of_p_values() -> None:
    with pytest.raises(ValueError, match="1-D"):
        holm_adjust(np.full((2, 2), 0.1))


def test_holm_keeps_the_familywise_false_alarm_rate_at_alpha() -> None:
    # 10 true nulls per family (independent uniform p), 4,000 families. Holm's familywise rate is
    # then 1 − 0.995^10 ≈ 0.049; the ceiling is alpha + 3 binomial SE (0.0034).
    families, m, alpha = 4_000, 10, 0.05
    p = np.random.default_rng(0).uniform(size=(families, m))
    rate = float(np.mean([holm_adjust(row).min() < alpha for row in p]))
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / families), rate


@pytest.mark.skipif(importlib.util.find_spec("statsmodels") is None, reason="statsmodels is not installed")
def test_holm_agrees_with_statsmodels() -> None:
    from statsmodels.stats.multitest import multipletests

    p = np.random.default_rng(5).uniform(0, 0.1, 12)
    np.testing.assert_allclose(holm_adjust(p), multipletests(p, method="holm")[1], rtol=1e-12)


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_an_infinite_score_is_an_error_not_the_smallest_p(bad: float) -> None:
    a = np.linspace(0.1, 0.9, 10)
    a[3] = bad
    with pytest.raises(ValueError, match=r"a: 1 of 10 scores are infinite \(positions 3\)"):
        paired_bootstrap(a, np.linspace(0.1, 0.9, 10))
    with pytest.raises(ValueError, match="infinite"):
        bootstrap_mean_ci(a)


def test_a_margin_for_a_metric_not_compared_is_an_error() -> None:
    scores = {"rougeL": np.linspace(0, 1, 10)}
    with pytest.raises(ValueError, match=r"margins for metrics not compared: \['rougel'\]"):
        paired_bootstrap_many(scores, scores, margins={"rougel": 0.02})


def test_bootstrap_mean_ci_needs_at_least_one_resample() -> None:
    with pytest.raises(ValueError, match="iters must be at least 1, got 0"):
        bootstrap_mean_ci([0.1, 0.2, 0.3], iters=0)
