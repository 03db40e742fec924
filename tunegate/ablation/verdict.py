"""What an ablation says: the best point of each metric, and the smallest setting that is as good.

A sweep's best point is often within noise of a smaller rank, fewer epochs or less data; the
decision a team takes from a sweep is "which is the cheapest setting that is as good", so the
best run is tested against every other run of the sweep with the same paired bootstrap as the
release gates (one-sided "best is better", Holm over every metric × other run). The smallest value
whose run is not significantly worse than the best is the `sufficient` one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from tunegate.ablation.curves import AblationCurve, AblationPoint, metric_label
from tunegate.ablation.sweep import VARIABLES, Sweep, format_value
from tunegate.gates import GateResult
from tunegate.stats import Comparison, format_p, holm_adjust, paired_bootstrap_many


@dataclass(frozen=True, slots=True)
class CheapestCheck:
    """Best run against the sweep's smallest value on one metric.

    `comparison` is best − smallest (higher-is-better metrics; negated scores otherwise), one-sided
    "the best run is better"; None when the smallest value is itself the best, or when only summary
    numbers are known (a CSV without per-sample scores).
    """

    metric: str
    variable: str
    best: AblationPoint
    smallest: AblationPoint
    comparison: Comparison | None = None
    adjusted_p: float | None = None
    family_size: int = 1
    higher_is_better: bool = True
    sufficient: AblationPoint | None = None  # smallest value not significantly worse than the best (None: untested)

    @property
    def significant(self) -> bool | None:
        if self.comparison is None or self.adjusted_p is None:
            return None
        return self.adjusted_p < self.comparison.alpha

    def __str__(self) -> str:
        label, name = metric_label(self.metric), self.variable
        best = f"{label} best {self.best.mean:.3f} at {name} = {format_value(self.best.value)}"
        if self.best.value == self.smallest.value:
            return f"{best}, the smallest value of the sweep"
        head = f"{best}; at {name} = {format_value(self.smallest.value)} {self.smallest.mean:.3f}"
        if self.comparison is None:
            return f"{head} (no per-sample scores: not tested)"
        c = self.comparison
        sign = 1.0 if self.higher_is_better else -1.0  # lower-is-better metrics were compared negated
        low, high = sorted((sign * c.ci_low, sign * c.ci_high))
        word = "a significant gain" if self.significant else "within noise"
        tail = ""
        if self.sufficient is not None and self.sufficient.value not in (self.best.value, self.smallest.value):
            tail = (f"; the smallest {name} within noise of the best: {format_value(self.sufficient.value)} "
                    f"({self.sufficient.mean:.3f})")
        return (f"{head}: diff {sign * c.diff:+.3f} [{c.confidence:.0%} CI {low:+.3f}, {high:+.3f}], "
                f"Holm p={format_p(self.adjusted_p)} over {self.family_size}: {word}{tail}")


@dataclass(frozen=True, slots=True)
class AblationResult:
    """One evaluated sweep: its curves (one per metric), the runs behind them, the best-vs-smallest tests."""

    variable: str
    curves: tuple[AblationCurve, ...]
    checks: tuple[CheapestCheck, ...]
    sweep: Sweep | None = None  # None: the results came from a CSV
    source: str = ""  # "4 adapters on one loaded base" or the CSV path
    seconds: float = 0.0  # generation + scoring of the sweep's runs in this session
    generated: int = 0  # fresh answers (0: all cached)
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict, repr=False)  # run label -> its score rows
    efficiency: Mapping[str, Any] = field(default_factory=dict, repr=False)  # run label -> efficiency.Efficiency

    @property
    def confounds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(text for curve in self.curves for text in curve.confounds))


def cheapest_checks(
    curves: Sequence[AblationCurve],
    tables: Mapping[str, pd.DataFrame] | None = None,
    *,
    mode: str = "finetuned",
    alpha: float = 0.05,
    iters: int = 10_000,
    seed: int = 0,
) -> tuple[CheapestCheck, ...]:
    """Each curve's best point against every other run, paired per sample where `tables` are given.

    Args:
        curves: from `curve_from_scores` (points carry their run labels) or `curve_from_records`.
        tables: run label -> the run's long score table; None: summaries only (no test).

    Every best-vs-other test of every metric is one Holm family (2 metrics × 3 other runs: 6 chances
    at a lucky "significant"). Each check carries the best-vs-smallest comparison and the smallest
    value whose run is not significantly worse than the best.
    """
    tests: list[tuple[int, AblationPoint, Comparison]] = []  # (curve index, other point, best − other)
    for index, curve in enumerate(curves):
        best = curve.best
        if tables is None or not best.label:
            continue
        sign = 1.0 if curve.higher_is_better else -1.0
        for other in curve.points:
            if other.value == best.value or not other.label:
                continue
            ours, theirs = _paired(tables[best.label], tables[other.label], mode, curve.metric)
            comparison = paired_bootstrap_many(
                {curve.metric: sign * ours}, {curve.metric: sign * theirs}, iters=iters, seed=seed, alpha=alpha
            )[curve.metric]
            tests.append((index, other, comparison))
    adjusted = holm_adjust([c.p_value for _, _, c in tests]) if tests else []
    checks = []
    for index, curve in enumerate(curves):
        best, smallest = curve.best, min(curve.points, key=lambda point: point.value)
        mine = [(other, comparison, float(p)) for (i, other, comparison), p in zip(tests, adjusted) if i == index]
        vs_smallest = next(((c, p) for other, c, p in mine if other.value == smallest.value), (None, None))
        sufficient = None
        if mine:
            as_good = [best] + [other for other, _, p in mine if p >= alpha]
            sufficient = min(as_good, key=lambda point: point.value)
        checks.append(CheapestCheck(curve.metric, curve.variable, best, smallest, vs_smallest[0], vs_smallest[1],
                                    len(tests) or 1, curve.higher_is_better, sufficient))
    return tuple(checks)


def _paired(best: pd.DataFrame, smallest: pd.DataFrame, mode: str, metric: str) -> tuple:
    """Two runs' per-sample scores of one metric on the samples both have, aligned by sample id."""
    def values(table: pd.DataFrame) -> pd.Series:
        rows = table[(table["mode"] == mode) & (table["metric"] == metric)]
        return rows.set_index("sample_id")["value"].astype(float)

    a, b = values(best), values(smallest)
    common = a.index.intersection(b.index)
    return a.loc[common].to_numpy(), b.loc[common].to_numpy()


def ablation_gate(result: AblationResult) -> GateResult:
    """Fails when the sweep is confounded (its curve cannot be read as the variable's effect); else the
    evidence: each metric's best point and whether it beats the sweep's smallest value."""
    name = f"ablation[{result.variable}]"
    what = VARIABLES.get(result.variable, result.variable)
    if result.confounds:
        return GateResult(name, False, (
            f"the {what} sweep is confounded: {'; '.join(result.confounds)}. Its curve cannot be read as the effect "
            f"of {result.variable}: retrain the runs holding everything but {result.variable} fixed, or drop the "
            "odd runs from [tool.tunegate.ablation] adapters."
        ))
    lines = [str(check) for check in result.checks]
    tested = [check for check in result.checks if check.sufficient is not None]
    smallest = min(result.curves[0].points, key=lambda point: point.value).value if result.curves else None
    if tested and all(check.sufficient.value == smallest for check in tested):
        lines.append(f"no metric's best run beats {result.variable} = {format_value(smallest)} beyond noise: "
                     "the smallest setting of the sweep is as good as any")
    elif tested:
        enough = max(check.sufficient.value for check in tested)
        lines.append(f"{result.variable} = {format_value(enough)} is the smallest setting within noise of the best "
                     "on every metric")
    return GateResult(name, True, f"{result.source}: " + "; ".join(lines))
