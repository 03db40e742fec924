"""The ablation picture: each metric against the swept value, intervals, best point, confounds under it."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np

from tunegate.ablation.curves import AblationCurve, metric_label
from tunegate.ablation.sweep import SEED_NAMES, VARIABLES, format_value
from tunegate.errors import AblationError


def ablation_figure(curves: Sequence[AblationCurve], variable: str) -> Any:
    """Each metric against the swept value, with intervals and its best point marked; the caller closes it.

    Metrics share a panel when they share a scale (scores within 0–1, or losses); any other metric (a
    1–5 judge) gets its own. Rank is on a log2 axis. Confounds and notes are printed under the plot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    variable = SEED_NAMES.get(variable, variable)
    curves = list(curves)
    if not curves or any(curve.variable != variable for curve in curves):
        raise AblationError(f"ablation_figure needs curves along {variable}, got {[curve.variable for curve in curves]}.")
    panels: dict[str, list[AblationCurve]] = {}
    for curve in curves:
        values = [v for point in curve.points for v in (point.mean, point.ci_low, point.ci_high) if v is not None]
        key = ("unit" if curve.higher_is_better and all(0 <= v <= 1 for v in values)
               else "loss" if "loss" in curve.metric.lower() else curve.metric)
        panels.setdefault(key, []).append(curve)
    lines = list(dict.fromkeys([f"Confound: {text}" for curve in curves for text in curve.confounds]
                               + [f"Note: {text}" for curve in curves for text in curve.notes]))
    width = max(7.5, 4.8 * len(panels))
    wrapped = "\n".join(textwrap.fill(line, int(width * 19), subsequent_indent="    ") for line in lines)
    text_in = 0.16 * (wrapped.count("\n") + 1) + 0.1 if wrapped else 0.0
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 4.6 + text_in), dpi=100, squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colors = {id(curve): cycle[i % len(cycle)] for i, curve in enumerate(curves)}
    log2 = variable == "lora_rank" and all(point.value > 0 for curve in curves for point in curve.points)
    for ax, (key, group) in zip(axes[0], panels.items()):
        for curve in group:
            _draw_curve(ax, curve, colors[id(curve)])
        ax.margins(y=0.2)  # room for the best point's note: above a maximum, below a minimum
        if log2:
            ax.set_xscale("log", base=2)
            ax.xaxis.set_minor_locator(NullLocator())
        ticks = sorted({point.value for curve in group for point in curve.points})
        if len(ticks) <= 12:
            ax.set_xticks(ticks, [format_value(tick) for tick in ticks])
        ax.set_xlabel(VARIABLES.get(variable, variable) + (" (log2 scale)" if log2 else ""))
        names = ", ".join(metric_label(curve.metric) for curve in group)
        shared = {"unit": "score (0–1)", "loss": "loss (lower is better)"}.get(key, names)
        ax.set_ylabel(shared if len(group) > 1 else names)
        ax.set_title(names, fontsize=10)
        ax.grid(linestyle="--", alpha=0.4)
        ax.legend(loc="best", fontsize=8, framealpha=0.9)
    fig.suptitle(f"Ablation: {', '.join(metric_label(c.metric) for c in curves)} vs {VARIABLES.get(variable, variable)}")
    if wrapped:
        confounded = any(curve.confounds for curve in curves)
        fig.text(0.01, 0.02, wrapped, fontsize=7.5, ha="left", va="bottom", color="darkred" if confounded else "dimgray")
    fig.tight_layout(rect=(0, text_in / (4.6 + text_in), 1, 1))
    return fig


def _draw_curve(ax: Any, curve: AblationCurve, color: str) -> None:
    """Line, interval (band when every point has one, error bars always), best point starred and annotated."""
    x = np.array([point.value for point in curve.points])
    y = np.array([point.mean for point in curve.points])
    label = metric_label(curve.metric) + ("" if curve.higher_is_better else " (lower is better)")
    ax.plot(x, y, marker="o", color=color, linewidth=1.8, label=label)
    has = np.array([point.ci_low is not None and point.ci_high is not None for point in curve.points])
    if has.any():
        low = np.array([point.ci_low if ok else np.nan for point, ok in zip(curve.points, has)], dtype=float)
        high = np.array([point.ci_high if ok else np.nan for point, ok in zip(curve.points, has)], dtype=float)
        yerr = np.clip(np.vstack([y - low, high - y])[:, has], 0, None)  # a CSV's mean may sit outside its CI
        ax.errorbar(x[has], y[has], yerr=yerr, fmt="none", ecolor=color, capsize=3, alpha=0.8)
        if has.all():
            ax.fill_between(x, low, high, color=color, alpha=0.15, linewidth=0)
    best = curve.best
    ax.plot([best.value], [best.mean], "*", color=color, markersize=16, markeredgecolor="black", zorder=5)
    right = len(x) > 1 and best.value == x.max()
    ax.annotate(f"best {metric_label(curve.metric)}: {best.mean:.3g}\nat {curve.variable} = {format_value(best.value)}",
                xy=(best.value, best.mean), xytext=(-10 if right else 10, 12 if curve.higher_is_better else -30),
                textcoords="offset points", ha="right" if right else "left", fontsize=8, color=color,
                arrowprops={"arrowstyle": "->", "color": color})
