"""The report's summary block: one self-contained `<div class="tg">` for pytest-html's summary.

It puts together, top down, the header and verdicts (`header.py`), the means table, the figures
inlined as base64 PNG (`figures.py`), the judge block and samples table (built by their own
modules and passed in as HTML), the provenance and timings, then the script (`assets.py`).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from tunegate.gates import GateResult
from tunegate.inference import MODES
from tunegate.report.assets import _STYLE, _SUMMARY_STYLE, summary_script
from tunegate.report.figures import Plot
from tunegate.report.header import header_html, verdict_html
from tunegate.report.labels import _label, esc


def png_img(png: bytes, alt: str) -> str:
    """An <img> with the PNG inlined, so the report is one file that opens offline."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


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
