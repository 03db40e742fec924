"""Statistics over per-sample scores: pure numpy, seeded, vectorised, no pytest.

Eval sets are small (50 samples is typical), so every mean a gate or a plot shows comes with a
bootstrap confidence interval, and every "A beats B" is a paired test: a 0.03 difference on 50
samples is often noise.

Resampling draws indices in bounded-memory chunks and turns each resample into a row of counts,
so one matrix product gives the resampled means of every column at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_CHUNK_CELLS = 4_000_000  # resample matrix cells per chunk: bounds memory for large n


@dataclass(frozen=True, slots=True)
class MeanCI:
    """A sample mean with its two-sided percentile-bootstrap interval."""

    mean: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] (n={self.n})"


@dataclass(frozen=True, slots=True)
class Comparison:
    """Paired comparison of systems a and b on the same samples.

    `diff` is mean(a − b); `ci_low`/`ci_high` the two-sided (1 − alpha) basic-bootstrap interval
    of it; `p_value` is one-sided for "mean(a − b) > margin" (margin 0: "a is better than b").
    `ties` counts samples where a and b scored exactly the same (identical answers, typically):
    they carry no evidence either way, and a reviewer should see how many there were.
    """

    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    iters: int
    alpha: float
    margin: float = 0.0
    ties: int = 0

    @property
    def confidence(self) -> float:
        return 1.0 - self.alpha

    def __str__(self) -> str:
        test = f"p(diff > {self.margin:+.3f})" if self.margin else "p"
        return (
            f"diff {self.diff:+.3f} [{self.confidence:.0%} CI {self.ci_low:+.3f}, {self.ci_high:+.3f}], "
            f"{test}={format_p(self.p_value)}, n={self.n}"
        )


def format_p(p_value: float) -> str:
    """p as a reader wants it: 3 decimals, or 2 significant digits below 0.001 (never "0.000")."""
    return f"{p_value:.2g}" if p_value < 0.001 else f"{p_value:.3f}"


def _as_scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    data = np.asarray(values, dtype=float)
    if data.ndim != 1 or data.size == 0:
        raise ValueError(f"{name}: need a non-empty 1-D sequence of per-sample scores, got shape {data.shape}")
    missing = np.isnan(data)
    if missing.any():
        where = ", ".join(str(i) for i in np.flatnonzero(missing)[:5])
        raise ValueError(
            f"{name}: {int(missing.sum())} of {data.size} scores are NaN (positions {where}); a missing score "
            "must not silently shrink n: score every sample or drop it from both systems"
        )
    infinite = np.isinf(data)
    if infinite.any():
        where = ", ".join(str(i) for i in np.flatnonzero(infinite)[:5])
        # An inf makes every bootstrap comparison false, which would read as the smallest p-value.
        raise ValueError(f"{name}: {int(infinite.sum())} of {data.size} scores are infinite (positions {where})")
    return data


def resampled_means(columns: np.ndarray, *, iters: int, seed: int) -> np.ndarray:
    """Means of `iters` bootstrap resamples of the rows of `columns` (n × k), as an iters × k array.

    Every column is resampled with the same rows, so paired structure across columns is kept.
    Indices are drawn in chunks of about 4 million cells, so memory stays bounded for large n.
    """
    n = columns.shape[0]
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _CHUNK_CELLS // n)
    means = np.empty((iters, columns.shape[1]))
    for start in range(0, iters, rows_per_chunk):
        rows = min(rows_per_chunk, iters - start)
        picks = rng.integers(0, n, size=(rows, n), dtype=np.int64)
        picks += np.arange(rows)[:, None] * n  # row r counts into bins r*n .. r*n + n-1
        counts = np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n).astype(float)
        means[start : start + rows] = counts @ columns / n
    return means


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    iters: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MeanCI:
    """Percentile bootstrap CI of the mean, for a system's error bars.

    Args:
        values: per-sample scores (NaN is an error: a missing score must not silently shrink n).
        iters: bootstrap resamples.
        confidence: e.g. 0.95 for a 95% interval.
        seed: for `np.random.default_rng`, so a rerun draws the same interval.
    """
    data = _as_scores(values, "scores")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    data = np.sort(data)  # order-free: the same scores give the same interval wherever they come from
    n = data.size
    mean = float(data.mean())
    if n == 1:
        return MeanCI(mean, mean, mean, 1, confidence)
    means = resampled_means(data[:, None], iters=iters, seed=seed)[:, 0]
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return MeanCI(mean, float(low), float(high), n, confidence)


def paired_bootstrap(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    iters: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    margin: float = 0.0,
) -> Comparison:
    """Paired bootstrap test and interval for mean(a − b), a and b scored on the same samples.

    The p-value is the shifted-null bootstrap one: resample the per-sample differences d, centre
    the resampled means on the observed mean d̄ (which makes the null "mean difference = margin"
    true in the resampling world), and count how often chance alone reaches d̄ − margin:
    p = (1 + #{d̄* − d̄ ≥ d̄ − margin}) / (1 + iters). The interval is the matching basic
    bootstrap interval [2d̄ − q(1 − alpha/2), 2d̄ − q(alpha/2)], so "the CI excludes margin" and
    "one-sided p < alpha/2" agree. Of the variants measured (percentile, shifted, studentized)
    this one held its false-alarm rate best when most differences are exact ties (identical
    answers, the common case between modes): tests/test_stats_validity.py states the rates.

    Args:
        a, b: per-sample scores of the two systems, same samples in the same order.
        iters: bootstrap resamples (p-value resolution is 1 / (iters + 1)).
        seed: for `np.random.default_rng`: the same inputs and seed give the same Comparison.
        alpha: sets the interval's confidence (1 − alpha); the caller decides significance.
        margin: the null's mean difference; 0 tests "a better than b"; a negative margin
            (−0.02) tests "a is better than b − 0.02"; a positive one a minimum gain.

    Raises:
        ValueError: lengths differ, fewer than 2 samples, NaN scores, or a bad iters/alpha.
    """
    return paired_bootstrap_many({"": a}, {"": b}, iters=iters, seed=seed, alpha=alpha, margins={"": margin})[""]


def paired_bootstrap_many(
    a: Mapping[str, Sequence[float] | np.ndarray],
    b: Mapping[str, Sequence[float] | np.ndarray],
    *,
    iters: int = 10_000,
    seed: int = 0,
    alpha: float = 0.05,
    margins: Mapping[str, float] | None = None,
) -> dict[str, Comparison]:
    """`paired_bootstrap` for several metrics of the same two systems, from one set of resamples.

    All metrics are resampled with the same sample indices (one draw, one matrix product), which
    is several times faster than one call per metric and keeps the metrics paired with each
    other. Each metric's Comparison equals (to floating-point rounding in the matrix product) what
    `paired_bootstrap` gives it alone with the same seed.

    Args:
        a, b: metric name -> per-sample scores; the same metrics, each with the same samples in
            the same order in a and b.
        margins: metric name -> null mean difference (missing metrics: 0).
    """
    if list(a) != list(b):
        raise ValueError(f"a and b must have the same metrics in the same order: {list(a)} vs {list(b)}")
    if not a:
        raise ValueError("no metrics to compare")
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), e.g. 0.05, got {alpha}")
    margins = margins or {}
    unknown = sorted(set(margins) - set(a))
    if unknown:
        raise ValueError(f"margins for metrics not compared: {unknown}; compared metrics are {list(a)}")
    def named(system: str, metric: str) -> str:
        return f"{system}[{metric}]" if metric else system  # "" : the single-metric paired_bootstrap

    pairs = {metric: (_as_scores(a[metric], named("a", metric)), _as_scores(b[metric], named("b", metric))) for metric in a}
    sizes = {metric: (first.size, second.size) for metric, (first, second) in pairs.items()}
    for metric, (size_a, size_b) in sizes.items():
        if size_a != size_b:
            raise ValueError(
                f"{metric + ': ' if metric else ''}paired scores need the same samples in both systems: "
                f"a has {size_a} scores, b has {size_b}"
            )
    n = next(iter(sizes.values()))[0]
    if any(size_a != n for size_a, _ in sizes.values()):
        raise ValueError(f"every metric needs the same samples: sizes {sizes}")
    if n < 2:
        raise ValueError(f"a paired test needs at least 2 samples, got {n}")
    differences = np.column_stack([first - second for first, second in pairs.values()])
    observed = differences.sum(axis=0) / n
    boot = resampled_means(differences, iters=iters, seed=seed)
    centred = boot - observed
    q_low, q_high = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=0)
    result = {}
    for column, (metric, (first, second)) in enumerate(pairs.items()):
        margin = float(margins.get(metric, 0.0))
        # Exact ties (all resampled differences equal) must not flip on the last bit of a float sum.
        tolerance = 1e-12 * max(1.0, float(np.abs(differences[:, column]).max()))
        exceed = int(np.count_nonzero(centred[:, column] >= (observed[column] - margin) - tolerance))
        result[metric] = Comparison(
            mean_a=float(first.mean()),
            mean_b=float(second.mean()),
            diff=float(observed[column]),
            ci_low=float(2 * observed[column] - q_high[column]),
            ci_high=float(2 * observed[column] - q_low[column]),
            p_value=(1 + exceed) / (1 + iters),
            n=n,
            iters=iters,
            alpha=alpha,
            margin=margin,
            ties=int(np.count_nonzero(differences[:, column] == 0)),
        )
    return result


def holm_adjust(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values, in the input's order.

    A family of tests (every metric × every opponent in one run) at level alpha: reject the ones
    whose adjusted p is below alpha, and the chance of any false "significant" in the family stays
    at most alpha, without the independence that plain Bonferroni's sharper cousins assume.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError(f"need a 1-D sequence of p-values, got shape {p.shape}")
    if p.size and (np.isnan(p).any() or (p < 0).any() or (p > 1).any()):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, stepped)
    return adjusted
