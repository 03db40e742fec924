"""Tests for tunegate.stats: the percentile bootstrap CI of a mean, against theory and scipy."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import scipy.stats

from tunegate.stats import MeanCI, bootstrap_mean_ci


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
