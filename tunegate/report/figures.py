"""The score figures: matplotlib plots of the score table, encoded as PNG, with their captions.

Means per mode with CIs, per-sample distributions, paired a − b differences (`score_plots` makes
all of them in reading order). Matplotlib runs on the Agg backend and is imported only when a
figure is drawn, so importing this module (and collection) stays fast.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tunegate.inference import MODES
from tunegate.report.intervals import _paired_summary, _shared_metrics, mode_metric_cis, sample_differences
from tunegate.report.labels import _is_judge, _label, _metrics, _modes

MODE_COLORS = {"base": "#9e9e9e", "prompt_eng": "#4c72b0", "finetuned": "#dd8452"}
WIN_COLOR, TIE_COLOR, LOSS_COLOR = "#1b7f3b", "#9e9e9e", "#b00020"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def metric_means_figure(
    cis: pd.DataFrame,
    *,
    ylim: tuple[float, float] = (0, 1.05),
    ylabel: str = "mean score (0-1)",
    title: str = "Mean score per mode",
) -> Any:
    """Grouped bars: one group per metric, one bar per mode, 95% CI error bars, value labels.

    One scale per figure: judge scores (1-5) get their own, or they would flatten ROUGE (0-1).
    """
    plt = _pyplot()
    modes = [m for m in MODES if m in set(cis["mode"])]
    metrics = list(dict.fromkeys(cis["metric"]))
    width = 0.8 / max(1, len(modes))
    fig, ax = plt.subplots(figsize=(max(6.0, 2.2 * len(metrics)), 4.2), dpi=110)
    for offset, mode in enumerate(modes):
        part = cis[cis["mode"] == mode].set_index("metric").reindex(metrics)
        xs = [i + (offset - (len(modes) - 1) / 2) * width for i in range(len(metrics))]
        errors = [part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]]
        bars = ax.bar(xs, part["mean"], width, yerr=errors, capsize=3, label=mode, color=MODE_COLORS.get(mode))
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in part["mean"]], padding=2, fontsize=8)
    ax.set_xticks(range(len(metrics)), [_label(m) for m in metrics])
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    n = int(cis["n"].max()) if len(cis) else 0
    ax.set_title(f"{title}, 95% bootstrap CI (n={n} samples)")
    ax.legend(title="mode", loc="upper left", ncols=len(modes), fontsize=9)
    ax.grid(axis="y", linestyle="--", alpha=0.4)
    fig.tight_layout()
    return fig


def _panel_grid(plt: Any, panels: int, *, ncols: int = 3, width_in: float = 3.6, height_in: float = 3.4) -> tuple[Any, list[Any]]:
    """A figure with one axes per panel, at most `ncols` a row (3 panels ≈ 1150 px at dpi 110); spares hidden."""
    ncols = max(1, min(ncols, panels))
    nrows = math.ceil(panels / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(max(6.0, width_in * ncols), height_in * nrows + 0.6), dpi=110,
                             squeeze=False)
    axes = list(grid.ravel())
    for spare in axes[panels:]:
        spare.set_visible(False)
    return fig, axes[:panels]


def score_distribution_figure(table: pd.DataFrame, metrics: Sequence[str] | None = None, *, seed: int = 0) -> Any:
    """Per-sample scores per mode, one panel per metric: box (quartiles, median), mean (diamond), every sample a dot.

    Judge metrics (1-5) get a 1-5 axis and 0-1 metrics a 0-1 axis, panel by panel. The dots'
    horizontal jitter is drawn from `seed`, so the same table gives the same PNG.

    Raises:
        ValueError: the table has no rows for the requested metrics.
    """
    metrics = list(metrics) if metrics is not None else _metrics(table)
    metrics = [m for m in metrics if (table["metric"] == m).any()]
    if not metrics:
        raise ValueError("score_distribution_figure: the score table has no rows for the requested metrics")
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    fig, axes = _panel_grid(plt, len(metrics))
    for ax, metric in zip(axes, metrics):
        rows = table[table["metric"] == metric]
        modes = _modes(rows["mode"])
        data = [rows.loc[rows["mode"] == m, "value"].to_numpy(dtype=float) for m in modes]
        data = [values[~np.isnan(values)] for values in data]
        n = max(len(values) for values in data)
        box = ax.boxplot(data, positions=range(len(modes)), widths=0.6, patch_artist=True, showfliers=False,
                         medianprops={"color": "black", "linewidth": 1.5})
        for patch, mode in zip(box["boxes"], modes):
            patch.set_facecolor(MODE_COLORS.get(mode, "#bbbbbb"))
            patch.set_alpha(0.3)
        size, alpha = (14, 0.7) if n <= 100 else (5, max(0.15, min(0.5, 60 / n)))
        for i, (mode, values) in enumerate(zip(modes, data)):
            ax.scatter(i + rng.uniform(-0.22, 0.22, len(values)), values, s=size, alpha=alpha, linewidths=0,
                       color=MODE_COLORS.get(mode, "#555555"), zorder=3)
            if len(values):
                ax.scatter([i], [values.mean()], marker="D", s=36, color="white", edgecolors="black", zorder=4,
                           label="mean" if i == 0 else None)
        ax.set_xticks(range(len(modes)), modes)
        ax.set_title(f"{_label(metric)} (n={n})", fontsize=11)
        finite = np.concatenate(data) if data else np.array([])
        if _is_judge(metric):
            ax.set_ylim(0.7, 5.3)
            ax.set_yticks([1, 2, 3, 4, 5])
            ax.set_ylabel("judge score (1-5)")
        elif finite.size and finite.min() >= 0 and finite.max() <= 1:
            ax.set_ylim(-0.04, 1.04)
            ax.set_ylabel("score (0-1)")
        else:
            ax.set_ylabel("score")
        ax.grid(axis="y", linestyle="--", alpha=0.4)
    axes[0].legend(loc="best", fontsize=8)
    samples = table.loc[table["metric"].isin(metrics), "sample_id"].nunique()
    fig.suptitle(f"Per-sample scores per mode (n={samples} samples): box = middle half, line = median, "
                 "diamond = mean, dot = one sample", fontsize=11)
    fig.tight_layout()
    return fig


def paired_difference_figure(
    table: pd.DataFrame,
    a: str = "finetuned",
    b: str = "prompt_eng",
    metrics: Sequence[str] | None = None,
    *,
    iters: int = 10_000,
    seed: int = 0,
) -> Any:
    """One panel per metric: each sample's a − b as a bar, sorted, with zero, the mean and its 95% CI.

    Green bars are samples `a` won, red ones it lost; ties are grey ticks on zero. The panel title
    counts wins, ties and losses (`paired_differences` holds the same numbers).

    Raises:
        ValueError: no metric has a sample scored in both modes.
    """
    metrics = list(metrics) if metrics is not None else _shared_metrics(table, a, b)
    pairs = {metric: sample_differences(table, a, b, metric) for metric in metrics}
    summary = _paired_summary(pairs, iters=iters, seed=seed)
    summary = summary[summary["n"] > 0]
    if summary.empty:
        raise ValueError(f"paired_difference_figure: no sample is scored in both {a!r} and {b!r}; "
                         f"modes in the table: {sorted(set(table['mode']))}")
    plt = _pyplot()
    from matplotlib.collections import PolyCollection

    fig, axes = _panel_grid(plt, len(summary))
    for ax, row in zip(axes, summary.itertuples(index=False)):
        diffs = np.sort(pairs[row.metric]["diff"].to_numpy())
        xs = np.arange(len(diffs))
        colors = np.where(diffs > 0, WIN_COLOR, np.where(diffs < 0, LOSS_COLOR, TIE_COLOR))
        # One collection of bars, not a Rectangle artist per sample: the same pixels, drawn in one call.
        half = (1.0 if len(diffs) > 40 else 0.8) / 2
        ax.add_collection(PolyCollection([[(x - half, 0), (x - half, d), (x + half, d), (x + half, 0)]
                                          for x, d in zip(xs, diffs)], facecolors=colors, linewidths=0))
        ties = xs[diffs == 0]
        if len(ties):
            ax.scatter(ties, np.zeros(len(ties)), marker="|", color=TIE_COLOR, s=40, zorder=3)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axhspan(row.ci_low, row.ci_high, color="#4c72b0", alpha=0.18, linewidth=0,
                   label=f"95% CI [{row.ci_low:+.3f}, {row.ci_high:+.3f}]")
        ax.axhline(row.mean_diff, color="#4c72b0", linestyle="--", linewidth=1.4, label=f"mean {row.mean_diff:+.3f}")
        reach = max(float(np.abs(diffs).max()), abs(row.ci_low), abs(row.ci_high))
        reach = reach * 1.15 if reach > 0 else (1.0 if _is_judge(row.metric) else 0.05)
        ax.set_ylim(-reach, reach)
        ax.set_xlim(-0.6, len(diffs) - 0.4)
        ax.set_xticks([])
        ax.set_xlabel("samples, sorted by difference")
        ax.set_ylabel(f"{a} − {b}")
        ax.set_title(f"{_label(row.metric)} (n={row.n})\n{row.wins} wins · {row.ties} ties · {row.losses} losses",
                     fontsize=10)
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(axis="y", linestyle="--", alpha=0.4)
    fig.suptitle(f"Per-sample difference {a} − {b} (n={int(summary['n'].max())} paired samples): "
                 f"above zero, {a} scored higher", fontsize=11)
    fig.tight_layout()
    return fig


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a figure, which is then closed (figures left open leak memory over a session)."""
    import matplotlib.pyplot as plt
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    buffer = io.BytesIO()
    try:
        # `fig.tight_layout()` leaves a placeholder layout engine behind, and savefig then draws the
        # whole figure once more before printing it, only to run that (no-op) engine: a third of
        # savefig's time. The layout is already done, so the placeholder goes; the pixels are the same.
        if isinstance(fig.get_layout_engine(), PlaceHolderLayoutEngine):
            fig.set_layout_engine(None)
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    return buffer.getvalue()


@dataclass(frozen=True, slots=True)
class Plot:
    """One report figure: its heading, the file it is also saved as, the PNG, and how to read it."""

    title: str
    filename: str
    png: bytes
    caption: str


MEANS_CAPTION = ("Bar = mean score per mode, whiskers = its 95% bootstrap CI. Whiskers that overlap do not settle "
                 "a difference: the gate table's paired test does.")
DISTRIBUTION_CAPTION = ("Each dot is one sample's score; the box spans the middle half, the line is the median and the "
                        "diamond the mean. A gain carried by a few samples shows as a few dots moving, not the box.")


def paired_difference_caption(a: str, b: str) -> str:
    return (f"One bar per sample: {a}'s score minus {b}'s on that same sample, sorted. Green bars (above zero) are "
            f"samples {a} won, red ones it lost; the dashed line is the mean difference, the band its 95% paired "
            "bootstrap CI (the gates' interval; before the Holm correction they apply across gates).")


def score_plots(
    table: pd.DataFrame,
    *,
    cis: pd.DataFrame | None = None,
    a: str = "finetuned",
    b: str = "prompt_eng",
    iters: int = 10_000,
    seed: int = 0,
) -> list[Plot]:
    """The score figures of a report, in reading order; a figure without data is left out.

    Means per mode (0-1 metrics, then the judge's 1-5 ones), per-sample distributions, and the
    paired a − b differences (when both modes were scored). Each figure is closed once encoded.
    """
    if table.empty:
        return []
    cis = mode_metric_cis(table, seed=seed) if cis is None else cis
    judged = cis["metric"].map(_is_judge).astype(bool)
    plots = []
    if (~judged).any():
        plots.append(Plot("Mean score per mode", "metric_means.png", figure_png(metric_means_figure(cis[~judged])),
                          MEANS_CAPTION))
    if judged.any():
        figure = metric_means_figure(cis[judged], ylim=(1, 5.25), ylabel="mean judge score (1-5)",
                                     title="LLM judge: mean score per mode")
        plots.append(Plot("LLM judge: mean score per mode", "judge_means.png", figure_png(figure),
                          MEANS_CAPTION + " Judge scores are on their 1-5 scale."))
    plots.append(Plot("Per-sample score distribution per mode", "score_distribution.png",
                      figure_png(score_distribution_figure(table, seed=seed)), DISTRIBUTION_CAPTION))
    if any(len(sample_differences(table, a, b, m)) for m in _shared_metrics(table, a, b)):
        plots.append(Plot(f"Per-sample difference {a} − {b}", "paired_difference.png",
                          figure_png(paired_difference_figure(table, a, b, iters=iters, seed=seed)),
                          paired_difference_caption(a, b)))
    return plots
