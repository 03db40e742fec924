"""Plots and HTML fragments for the report. Everything from a model or an eval set is escaped.

Pure functions from the score table (and verdicts) to figures, PNG bytes and HTML strings; the
plugin decides where they go (pytest-html summary, per-test extras, files in the report dir).
Matplotlib runs on the Agg backend and is imported lazily, so collection stays fast.

pytest-html renders the summary block unescaped (Jinja `|safe`), so its one inline script runs:
that script is a constant, reads its data from the DOM (numbers in `data-k*` attributes that
this module formats), and never receives text from a model or an eval set.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tunegate.data import Sample
from tunegate.gates import GateResult
from tunegate.inference import MODES, Generation
from tunegate.judge import JUDGE_METRICS, JudgeConfig, JudgeUsage
from tunegate.scores import METRIC_LABELS, mode_metric_values
from tunegate.stats import bootstrap_mean_ci, paired_bootstrap_many, resampled_means

_CI_ITERS, _CI_CONFIDENCE = 10_000, 0.95  # the per-mode intervals (`bootstrap_mean_ci` defaults)
MODE_COLORS = {"base": "#9e9e9e", "prompt_eng": "#4c72b0", "finetuned": "#dd8452"}
WIN_COLOR, TIE_COLOR, LOSS_COLOR = "#1b7f3b", "#9e9e9e", "#b00020"
_STYLE = """
<style>
.tg h2 { margin-top: 1.2em; } .tg table { border-collapse: collapse; margin: 0.5em 0 1em; }
.tg td, .tg th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
.tg .pass { color: #1b7f3b; font-weight: bold; } .tg .fail { color: #b00020; font-weight: bold; }
.tg img { max-width: 100%; border: 1px solid #eee; }
.tg-sample pre { white-space: pre-wrap; background: #f7f7f7; padding: 6px; margin: 2px 0 8px; }
</style>
"""
# The summary's own additions; every class is tg-prefixed so pytest-html's CSS and app.js
# (which bind .sortable, .filter, .hidden, .collapsible) never touch them.
_SUMMARY_STYLE = """
<style>
.tg { color: #222; font-size: 13px; max-width: 1400px; }
.tg td, .tg th { vertical-align: top; }
.tg code { font-size: 12px; background: #f3f3f3; padding: 0 3px; }
.tg .tg-headline { font-size: 14px; }
.tg .tg-banner { font-size: 18px; font-weight: bold; padding: 8px 12px; margin: 0.6em 0; border-radius: 3px; color: #fff; }
.tg .tg-banner.pass { background: #1b7f3b; color: #fff; } .tg .tg-banner.fail { background: #b00020; color: #fff; }
.tg .tg-banner.none { background: #777; }
.tg .tg-evidence { white-space: pre-wrap; }
.tg .tg-caption { color: #444; margin: 0.2em 0 0.4em; max-width: 1000px; }
.tg .tg-controls { margin: 0.4em 0; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
.tg .tg-controls input[type=search] { width: 22em; }
.tg .tg-scroll { max-height: 80vh; overflow: auto; border: 1px solid #ddd; }
.tg .tg-samples table { table-layout: fixed; width: 100%; min-width: 1100px; margin: 0; }
.tg .tg-samples thead th { position: sticky; top: 0; background: #f0f0f0; z-index: 1; }
.tg .tg-text { max-height: 9em; overflow: auto; white-space: pre-wrap; overflow-wrap: anywhere;
  font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.tg .tg-scores { margin-top: 4px; font-size: 12px; color: #333; }
.tg .tg-scores .tg-primary { font-weight: bold; }
.tg .tg-truncated { color: #b00020; font-size: 12px; }
.tg tr.tg-worst > td { background: #fff1f1; } .tg tr.tg-worst > td:first-child { border-left: 4px solid #b00020; }
.tg .tg-badge { display: inline-block; background: #b00020; color: #fff; border-radius: 3px; padding: 0 4px;
  font-size: 11px; white-space: nowrap; margin-top: 2px; }
.tg .tg-badge.tg-vs-baseline { background: #6a1b9a; }
.tg .tg-up { color: #1b7f3b; } .tg .tg-down { color: #b00020; font-weight: bold; }
</style>
"""
# Images: handlers set here, so a headless `--dump-dom` shows data-loaded="1" or "error" on each
# (an inline data: image may finish before the script runs, hence the `complete` check).
# Samples table: rows are sorted and filtered in place from their numeric data-k<i> attributes;
# one pass per action (sort, then one DocumentFragment append), so 500+ rows stay fast.
# Everything sits in one function, because pytest-html's own script shares the page's top-level scope.
_SCRIPT = r"""
(function () {
  'use strict';
  var root = (document.currentScript && document.currentScript.parentNode) || document;
  Array.prototype.forEach.call(root.querySelectorAll('img'), function (img) {
    var ok = function () { img.setAttribute('data-loaded', '1'); };
    var bad = function () { img.setAttribute('data-loaded', 'error'); };
    img.onload = ok;
    img.onerror = bad;
    if (img.complete) { if (img.naturalWidth > 0) { ok(); } else { bad(); } }
  });
  Array.prototype.forEach.call(root.querySelectorAll('.tg-samples'), function (box) {
    var tbody = box.querySelector('tbody');
    var rows = Array.prototype.slice.call(tbody.rows);
    var select = box.querySelector('select.tg-sort');
    var reverse = box.querySelector('button.tg-reverse');
    var filter = box.querySelector('input.tg-filter');
    var marked = box.querySelector('input.tg-only-marked');
    var count = box.querySelector('.tg-count');
    var texts = null;
    var descending = false;
    var key = function (row, k) {
      var v = row.getAttribute('data-k' + k);
      return v === null || v === '' ? NaN : parseFloat(v);
    };
    var sort = function () {
      var k = select.value;
      var sign = descending ? -1 : 1;
      var keyed = rows.map(function (row, i) { return [key(row, k), i, row]; });
      keyed.sort(function (x, y) {
        var xn = isNaN(x[0]), yn = isNaN(y[0]);
        if (xn || yn) { return xn === yn ? x[1] - y[1] : (xn ? 1 : -1); }
        return x[0] === y[0] ? x[1] - y[1] : sign * (x[0] - y[0]);
      });
      var fragment = document.createDocumentFragment();
      keyed.forEach(function (entry) { fragment.appendChild(entry[2]); });
      tbody.appendChild(fragment);
      reverse.textContent = descending ? 'highest first (click to reverse)' : 'lowest first (click to reverse)';
    };
    var apply = function () {
      var query = filter.value.trim().toLowerCase();
      if (query && texts === null) { texts = rows.map(function (row) { return row.textContent.toLowerCase(); }); }
      var shown = 0;
      rows.forEach(function (row, i) {
        var show = (!query || texts[i].indexOf(query) !== -1) &&
          (!marked.checked || row.classList.contains('tg-worst'));
        row.style.display = show ? '' : 'none';
        if (show) { shown += 1; }
      });
      count.textContent = shown + ' of ' + rows.length + ' samples shown';
    };
    var timer = null;
    select.addEventListener('change', function () { descending = false; sort(); });
    reverse.addEventListener('click', function () { descending = !descending; sort(); });
    filter.addEventListener('input', function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
    marked.addEventListener('change', apply);
    box.setAttribute('data-ready', '1');
    apply();
  });
})();
"""


def esc(value: Any) -> str:
    """HTML-escape anything shown in the report (quotes too, for attribute safety)."""
    return html.escape(str(value), quote=True)


def summary_script() -> str:
    """The summary block's one inline script (image load markers, samples-table sort and filter).

    It acts on the element that contains it, so it belongs at the end of that block, after the
    images and the samples table: `summary_html` places it there.
    """
    return f"<script>{_SCRIPT}</script>"


def _label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def _is_judge(metric: str) -> bool:
    return metric in JUDGE_METRICS


def _modes(present: Iterable[str]) -> list[str]:
    """Modes in MODES order, then any other mode names alphabetically."""
    present = set(present)
    return [m for m in MODES if m in present] + sorted(present - set(MODES))


def _metrics(table: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(table["metric"])) if len(table) else []


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def png_img(png: bytes, alt: str) -> str:
    """An <img> with the PNG inlined, so the report is one file that opens offline."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


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


def _means_table_html(cis: pd.DataFrame) -> str:
    modes = [m for m in MODES if m in set(cis["mode"])]
    head = "".join(f"<th>{esc(m)}</th>" for m in modes)
    body = []
    for metric in dict.fromkeys(cis["metric"]):
        cells = []
        for mode in modes:
            row = cis[(cis["mode"] == mode) & (cis["metric"] == metric)]
            if row.empty:
                cells.append("<td>-</td>")
            else:
                r = row.iloc[0]
                cells.append(f"<td>{r['mean']:.3f} <small>[{r['ci_low']:.3f}, {r['ci_high']:.3f}]</small></td>")
        body.append(f"<tr><th>{esc(_label(metric))}</th>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def judge_caveat(judge: JudgeConfig, base_model: str) -> str:
    """One line on how far to trust this judge, for the report and the terminal."""
    if judge.backend == "local":
        if judge.model in ("base", "demo") and base_model == "demo":
            return ("local judge on the demo's SmolLM2-135M (expected score from token probabilities): a 135M judge "
                    "is a smoke test of the judging machinery, not a verdict on answer quality")
        return f"local judge {judge.model} (expected score from token probabilities, no network)"
    return f"remote judge {judge.model} (OpenAI-compatible endpoint, temperature 0, strict JSON)"


def judge_usage_frame(usages: Sequence[JudgeUsage], judge: JudgeConfig) -> pd.DataFrame:
    """Calls, tokens, errors and cost per kind and mode, with a total row."""
    rows = [
        {"kind": u.kind, "mode": u.mode, "judgements": u.judgements, "cached": u.cached, "calls": u.calls,
         "errors": u.errors, "tokens in": u.input_tokens, "tokens out": u.output_tokens,
         "cost": u.cost(judge.price_input_per_mtok, judge.price_output_per_mtok)}
        for u in usages
    ]
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    total = {"kind": "total", "mode": ""} | {c: frame[c].sum() for c in ("judgements", "cached", "calls", "errors",
                                                                        "tokens in", "tokens out")}
    total["cost"] = None if frame["cost"].isna().any() else float(frame["cost"].sum())
    frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    frame["cost"] = frame["cost"].map(lambda c: "-" if c is None or c != c else f"{c:.4f}")
    return frame


def judge_html(caveat: str, usage: pd.DataFrame, pairwise: str | None) -> str:
    """The judge's block of the summary: how far to trust it, what it cost, the side-by-side result."""
    parts = ["<h2>LLM judge</h2>", f"<p><b>{esc(caveat)}</b></p>"]
    if not usage.empty:
        head = "".join(f"<th>{esc(c)}</th>" for c in usage.columns)
        body = "".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in row) + "</tr>" for row in usage.itertuples(index=False))
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    if pairwise:
        parts.append(f"<p>Pairwise: {esc(pairwise)}</p>")
    return "\n".join(parts)


# -- what was evaluated, and the verdict ---------------------------------------------------------

# Provenance keys (GateRun.provenance) grouped for the header; any other key lands in "other".
_HEADER_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("model", (("base_model", "base"), ("base_model_sha256", "sha256"), ("adapter", "adapter"),
               ("adapter_sha256", "adapter sha256"), ("device", "device"))),
    ("eval set", (("eval_set", "file"), ("eval_set_sha256", "sha256"), ("samples", "samples"), ("metrics", "metrics"))),
    ("judge", (("judge", "judge"),)),
    ("decoding", (("decoding", "decoding"), ("max_new_tokens", "max_new_tokens"), ("temperature", "temperature"))),
    ("statistics", (("seed", "seed"), ("bootstrap_iters", "bootstrap iters"), ("alpha", "alpha"))),
    ("training", (("training_state", "training state"), ("ablation", "ablation"))),
    ("versions", tuple((name, name.replace("_", "-")) for name in (
        "tunegate", "torch", "transformers", "peft", "python", "pytest", "pytest_html", "numpy", "pandas", "matplotlib",
        "rouge_score", "bert_score"))),
    ("when", (("started_at", "started"),)),
)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def header_html(provenance: Mapping[str, Any], *, run_time_s: float | None = None) -> str:
    """The top of the report: one headline (adapter, base, eval set, hashes), then every provenance key by group.

    Known `GateRun.provenance()` keys are grouped (model, eval set, judge, decoding, training,
    versions, when); unknown keys are shown under "other"; None values are left out, except a
    missing adapter, which is said. `run_time_s` (wall seconds of the session) joins "when".
    """
    if not any(v is not None for v in provenance.values()) and run_time_s is None:
        return "<h2>What was evaluated</h2><p>No provenance was recorded in this session.</p>"

    def value(key: str) -> str:
        return f"<code>{esc(provenance[key])}</code>"

    def with_hash(key: str) -> str:
        hashed = provenance.get(f"{key}_sha256")
        return value(key) + (f" (sha256 <code>{esc(hashed)}</code>)" if hashed is not None else "")

    base = f"base model {with_hash('base_model')}" if provenance.get("base_model") is not None else ""
    if provenance.get("adapter") is not None:
        headline = f"adapter {with_hash('adapter')}" + (f" on {base}" if base else "")
    else:
        headline = base + ("; no adapter (finetuned mode not evaluated)" if "adapter" in provenance else "")
    if provenance.get("eval_set") is not None:
        count = f"{esc(provenance['samples'])} samples of " if provenance.get("samples") is not None else ""
        headline += f", evaluated on {count}{with_hash('eval_set')}"
    headline = headline.lstrip(";, ")
    rows = []
    known = {key for _, keys in _HEADER_GROUPS for key, _ in keys}
    groups = [(group, list(keys)) for group, keys in _HEADER_GROUPS]
    groups.append(("other", [(key, key) for key in provenance if key not in known]))
    for group, keys in groups:
        cells = [f"{esc(label)} {value(key)}" for key, label in keys if provenance.get(key) is not None]
        if group == "model" and "adapter" in provenance and provenance["adapter"] is None:
            cells.append("adapter <i>none</i>")
        if group == "when" and run_time_s is not None:
            cells.append(f"run time <code>{esc(_duration(run_time_s))}</code>")
        if cells:
            rows.append(f"<tr><th>{esc(group)}</th><td>{' · '.join(cells)}</td></tr>")
    table = f"<table>{''.join(rows)}</table>" if rows else ""
    return f'<h2>What was evaluated</h2><p class="tg-headline">{headline}</p>{table}'


def verdict_html(gates: Sequence[GateResult]) -> str:
    """The overall banner (PASS only when every gate passed: N of M) and the gate table, failures first."""
    if not gates:
        return '<h2>Release gate verdicts</h2><div class="tg-banner none">No gate ran in this session.</div>'
    failed = [g for g in gates if not g.passed]
    passed = len(gates) - len(failed)
    word = "FAIL" if failed else "PASS"
    banner = (f'<div class="tg-banner {word.lower()}" data-verdict="{word}">{word}: {passed} of {len(gates)} '
              f"release gates passed{f' ({len(failed)} failed)' if failed else ''}</div>")
    rows = "".join(
        f'<tr><td class="{"pass" if g.passed else "fail"}">{"PASS" if g.passed else "FAIL"}</td>'
        f'<td>{esc(g.name)}</td><td class="tg-evidence">{esc(g.message)}</td></tr>'
        for g in [*failed, *(g for g in gates if g.passed)]
    )
    return (f"<h2>Release gate verdicts</h2>{banner}"
            f"<table><tr><th>verdict</th><th>gate</th><th>evidence</th></tr>{rows}</table>")


# -- answers side by side --------------------------------------------------------------------------


def baseline_by_sample(scores: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """A baseline document's `scores` (metric -> {sample id: value}) turned to sample id -> {metric: value}."""
    by_sample: dict[str, dict[str, float]] = {}
    for metric, per_sample in scores.items():
        for sample_id, value in per_sample.items():
            by_sample.setdefault(str(sample_id), {})[metric] = float(value)
    return by_sample


def _lowest(values: Sequence[float], n: int) -> dict[int, int]:
    """Position -> 1-based rank of the `n` lowest non-NaN values (ties: earlier position first)."""
    finite = sorted((v, p) for p, v in enumerate(values) if not math.isnan(v))
    return {p: rank for rank, (_, p) in enumerate(finite[:max(0, n)], start=1)}


def _primary_metric(metrics: Sequence[str]) -> str | None:
    if "rougeL" in metrics:
        return "rougeL"
    return next((m for m in metrics if not _is_judge(m)), metrics[0] if metrics else None)


def _number(value: float) -> str:
    """A sort key for a data-k attribute: empty for a missing score (the script sorts those last)."""
    return "" if math.isnan(value) else f"{value:.6g}"


def _signed(value: float) -> str:
    if math.isnan(value):
        return "-"
    css = "tg-up" if value > 0 else "tg-down" if value < 0 else ""
    return f'<span class="{css}">{value:+.3f}</span>'


def samples_table_html(
    samples: Sequence[Sample],
    generations: Mapping[str, Sequence[Generation]],
    table: pd.DataFrame,
    *,
    baseline: Mapping[str, Mapping[str, float]] | None = None,
    primary_metric: str | None = None,
    a: str = "finetuned",
    b: str = "prompt_eng",
    worst_n: int = 10,
) -> str:
    """Every sample with its prompt, reference and each mode's answer and scores, worst first.

    Worst first means `a` − `b` on `primary_metric` (default ROUGE-L, else the first non-judge
    metric), most negative first; samples without both scores come last. Only `a` scored: its
    lowest score first. The first `worst_n` rows are marked, and, with a `baseline` (sample id ->
    {metric: value}, see `baseline_by_sample`), the `worst_n` that lost most against it too.
    The sort select, reverse button, text filter and "only marked" box work through
    `summary_script()` (included by `summary_html`); without it the rows stay worst first.

    Args:
        samples: the eval set, in file order (the "eval-set order" sort key).
        generations: answers per mode, as `GateRun.computed_generations()` returns them.
        table: the long score table (sample_id, mode, metric, value).
    """
    scored_modes = set(table["mode"]) if len(table) else set()
    modes = _modes(set(generations) | scored_modes)
    answers = {mode: {g.sample_id: g for g in generations.get(mode, ())} for mode in modes}
    scores: dict[tuple[str, str], dict[str, float]] = {}
    for sample_id, mode, metric, value in zip(table["sample_id"], table["mode"], table["metric"], table["value"]):
        scores.setdefault((str(sample_id), mode), {})[metric] = float(value)
    metrics = _metrics(table)
    primary = primary_metric if primary_metric is not None else _primary_metric(metrics)
    ids = [s.id for s in samples]

    def score(sample_id: str, mode: str, metric: str | None) -> float:
        return scores.get((sample_id, mode), {}).get(metric, math.nan) if metric else math.nan

    paired = a in scored_modes and b in scored_modes
    keys: list[tuple[str, list[float]]] = []  # (label, one value per sample); key 0 orders the rows
    if primary is not None and paired:
        keys.append((f"worst first: {a} − {b} on {_label(primary)}",
                     [score(i, a, primary) - score(i, b, primary) for i in ids]))
    elif primary is not None and scored_modes:
        first = a if a in scored_modes else _modes(scored_modes)[0]
        keys.append((f"worst first: lowest {first} {_label(primary)}", [score(i, first, primary) for i in ids]))
    if keys:
        start = f"{a} lost most to {b}" if paired else f"{first} scored lowest"
        intro = f"Rows start with the samples where {start} on {_label(primary)}"
    baseline_key = None
    if baseline is not None and primary is not None:
        baseline_key = len(keys)
        keys.append((f"lost most vs the accepted baseline: {a} − baseline on {_label(primary)}",
                     [score(i, a, primary) - baseline.get(i, {}).get(primary, math.nan) for i in ids]))
    if paired:
        keys += [(f"{a} − {b}: {_label(m)}", [score(i, a, m) - score(i, b, m) for i in ids]) for m in metrics]
    keys += [(f"{mode}: {_label(m)}", [score(i, mode, m) for i in ids]) for mode in _modes(scored_modes) for m in metrics]
    id_rank = {sample_id: rank for rank, sample_id in enumerate(sorted(ids))}
    keys.append(("sample id", [float(id_rank[i]) for i in ids]))
    keys.append(("eval-set order", [float(position) for position in range(len(ids))]))

    ranked = bool(scored_modes) and primary is not None  # key 0 is a score; otherwise eval-set order
    ordered = keys[0][1] if ranked else keys[-1][1]
    order = sorted(range(len(ids)), key=lambda p: (math.isnan(ordered[p]), 0.0 if math.isnan(ordered[p]) else ordered[p], p))
    worst_rows = _lowest(ordered, worst_n) if ranked else {}
    worst_baseline = _lowest(keys[baseline_key][1], worst_n) if baseline_key is not None else {}

    deltas = [b] if paired and primary is not None else []
    deltas += ["baseline"] if baseline_key is not None else []
    head = "".join(
        ['<th style="width:5em" title="position in the worst-first order">#</th><th style="width:8em">sample</th><th>prompt</th><th>reference</th>']
        + [f'<th style="width:7em">{esc(a)} − {esc(other)}<br>{esc(_label(primary))}</th>' for other in deltas]
        + [f"<th>{esc(mode)}</th>" for mode in modes]
    )
    body = []
    for rank, position in enumerate(order, start=1):
        sample, sample_id = samples[position], ids[position]
        data = " ".join(f'data-k{k}="{_number(values[position])}"' for k, (_, values) in enumerate(keys))
        badges = []
        if position in worst_rows:
            badges.append(f'<span class="tg-badge" title="{esc(keys[0][0])}">worst #{worst_rows[position]}</span>')
        if position in worst_baseline:
            badges.append(f'<span class="tg-badge tg-vs-baseline" title="{esc(keys[baseline_key][0])}">'
                          f"vs baseline #{worst_baseline[position]}</span>")
        cells = [f'<td class="tg-rank">{rank}<br>{"<br>".join(badges)}</td>',
                 f'<td class="tg-id">{esc(sample_id)}</td>',
                 f'<td><div class="tg-text">{esc(sample.prompt)}</div></td>',
                 f'<td><div class="tg-text">{esc(sample.reference)}</div></td>']
        if paired and primary is not None:
            cells.append(f"<td>{_signed(keys[0][1][position])}</td>")
        if baseline_key is not None:
            cells.append(f"<td>{_signed(keys[baseline_key][1][position])}</td>")
        for mode in modes:
            cells.append(_answer_cell(answers[mode].get(sample_id), scores.get((sample_id, mode), {}), primary))
        marked = " tg-worst" if position in worst_rows or position in worst_baseline else ""
        body.append(f'<tr class="tg-row{marked}" {data}>{"".join(cells)}</tr>')
    selected = 0 if ranked else len(keys) - 1
    options = "".join(f'<option value="{k}"{" selected" if k == selected else ""}>{esc(label)}</option>'
                      for k, (label, _) in enumerate(keys))
    if worst_rows:
        intro += (f"; the {len(worst_rows)} worst are marked"
                  f"{', and those that lost most against the accepted baseline' if worst_baseline else ''}. ")
    else:
        intro = "Rows are in eval-set order. "
    return (
        '<div class="tg-samples"><h2>Answers side by side</h2>'
        f'<p class="tg-caption">{esc(intro)}Choose a score to sort by (missing scores go last), reverse the order, or '
        "filter by any text in the row; long texts scroll inside their cell.</p>"
        '<div class="tg-controls">'
        f'<label>sort by <select class="tg-sort">{options}</select></label>'
        '<button type="button" class="tg-reverse">lowest first (click to reverse)</button>'
        '<label>filter <input type="search" class="tg-filter" placeholder="text in id, prompt, reference or answers">'
        "</label>"
        '<label><input type="checkbox" class="tg-only-marked"> only marked rows</label>'
        f'<span class="tg-count">{len(ids)} samples</span></div>'
        f'<div class="tg-scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        "</div>"
    )


def _answer_cell(generation: Generation | None, scores: Mapping[str, float], primary: str | None) -> str:
    if generation is None and not scores:
        return "<td>-</td>"
    text = f'<div class="tg-text">{esc(generation.text)}</div>' if generation is not None else "<i>no answer</i>"
    if generation is not None and generation.truncated:
        text += f'<div class="tg-truncated">cut at max_new_tokens ({esc(generation.output_tokens)} tokens)</div>'
    items = " · ".join(
        f'<span class="{"tg-primary" if m == primary else ""}">{esc(_label(m))} {v:.3f}</span>' for m, v in scores.items()
    )
    return f'<td>{text}<div class="tg-scores">{items}</div></td>'


# -- the summary block -----------------------------------------------------------------------------


def plots_html(plots: Mapping[str, bytes] | Iterable[Plot], captions: Mapping[str, str] | None = None) -> str:
    """Each figure under its heading, with its one-line reading guide, inlined as base64 PNG."""
    items = ([Plot(title, "", png, (captions or {}).get(title, "")) for title, png in plots.items()]
             if isinstance(plots, Mapping) else list(plots))
    parts = []
    for plot in items:
        caption = f'<p class="tg-caption">{esc(plot.caption)}</p>' if plot.caption else ""
        parts.append(f"<h3>{esc(plot.title)}</h3>{caption}{png_img(plot.png, plot.title)}")
    return "\n".join(parts)


def summary_html(
    provenance: Mapping[str, Any],
    cis: pd.DataFrame,
    gates: Sequence[GateResult],
    plots: Mapping[str, bytes] | Iterable[Plot],
    timings: Mapping[str, str],
    judge: str | None = None,
    *,
    captions: Mapping[str, str] | None = None,
    samples_table: str | None = None,
    run_time_s: float | None = None,
) -> str:
    """The report's summary block, one self-contained `<div class="tg">` with its style and script.

    Order: what was evaluated, the verdict banner and gate table (failures first), means with
    CIs, the plots with their captions, the judge block, the answers side by side
    (`samples_table`, from `samples_table_html`), then every provenance key and the timings.

    Args:
        plots: title -> PNG (captions from `captions` by title), or `Plot`s from `score_plots`.
        judge: the block from `judge_html`, or None.
        samples_table: the block from `samples_table_html`, or None.
        run_time_s: the session's wall seconds, shown in the header.
    """
    parts = [_STYLE, _SUMMARY_STYLE, '<div class="tg">', header_html(provenance, run_time_s=run_time_s),
             verdict_html(gates), "<h2>Mean score per mode (95% bootstrap CI)</h2>",
             _means_table_html(cis) if len(cis) else "<p>No scores were computed in this session.</p>"]
    figures = plots_html(plots, captions)
    if figures:
        parts += ["<h2>Plots</h2>", figures]
    if judge:
        parts.append(judge)
    if samples_table:
        parts.append(samples_table)
    parts += ["<h2>Provenance</h2>", _key_value_table(provenance)]
    if timings:
        parts += ["<h2>Time spent</h2>", _key_value_table(timings)]
    parts += [summary_script(), "</div>"]
    return "\n".join(parts)


def _key_value_table(items: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items.items() if v is not None)
    return f"<table>{rows}</table>"


def sample_html(sample: Sample, generation: Generation, scores: Mapping[str, float]) -> str:
    """One sample's evidence for its row in the results table: prompt, reference, answer, scores."""
    score_text = " · ".join(f"{_label(m)} {v:.3f}" for m, v in scores.items())
    facts = (
        f"finish: {generation.finish_reason} · {generation.output_tokens} output tokens · "
        f"{generation.latency_s:.2f} s{' (cached)' if generation.cached else ''}"
    )
    return (
        f'{_STYLE}<div class="tg tg-sample">'
        f"<b>prompt</b><pre>{esc(sample.prompt)}</pre>"
        f"<b>reference</b><pre>{esc(sample.reference)}</pre>"
        f"<b>answer ({esc(generation.mode)})</b><pre>{esc(generation.text)}</pre>"
        f"<p>{esc(score_text)}<br>{esc(facts)}</p></div>"
    )


def scores_cell(scores: Iterable[tuple[str, float]]) -> str:
    """Compact per-sample scores for the results table's Scores column."""
    return esc(" ".join(f"{_label(m)}={v:.3f}" for m, v in scores))
