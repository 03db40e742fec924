"""Plots and HTML fragments for the report. Everything from a model or an eval set is escaped.

Pure functions from the score table (and verdicts) to figures, PNG bytes and HTML strings; the
plugin decides where they go (pytest-html summary, per-test extras, files in the report dir).
Matplotlib runs on the Agg backend and is imported lazily, so collection stays fast.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from tunegate.data import Sample
from tunegate.gates import GateResult
from tunegate.inference import MODES, Generation
from tunegate.judge import JudgeConfig, JudgeUsage
from tunegate.scores import METRIC_LABELS
from tunegate.stats import bootstrap_mean_ci

MODE_COLORS = {"base": "#9e9e9e", "prompt_eng": "#4c72b0", "finetuned": "#dd8452"}
_STYLE = """
<style>
.tg h2 { margin-top: 1.2em; } .tg table { border-collapse: collapse; margin: 0.5em 0 1em; }
.tg td, .tg th { border: 1px solid #ccc; padding: 3px 8px; text-align: left; font-size: 13px; }
.tg .pass { color: #1b7f3b; font-weight: bold; } .tg .fail { color: #b00020; font-weight: bold; }
.tg img { max-width: 100%; border: 1px solid #eee; }
.tg-sample pre { white-space: pre-wrap; background: #f7f7f7; padding: 6px; margin: 2px 0 8px; }
</style>
"""


def esc(value: Any) -> str:
    """HTML-escape anything shown in the report (quotes too, for attribute safety)."""
    return html.escape(str(value), quote=True)


def mode_metric_cis(table: pd.DataFrame, *, seed: int = 0) -> pd.DataFrame:
    """Mean and 95% bootstrap CI per (mode, metric): columns mode, metric, mean, ci_low, ci_high, n."""
    rows = []
    for (mode, metric), group in table.groupby(["mode", "metric"], sort=False):
        ci = bootstrap_mean_ci(group["value"].to_numpy(), seed=seed)
        rows.append({"mode": mode, "metric": metric, "mean": ci.mean, "ci_low": ci.ci_low, "ci_high": ci.ci_high, "n": ci.n})
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    ax.set_xticks(range(len(metrics)), [METRIC_LABELS.get(m, m) for m in metrics])
    ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    n = int(cis["n"].max()) if len(cis) else 0
    ax.set_title(f"{title}, 95% bootstrap CI (n={n} samples)")
    ax.legend(title="mode", loc="upper left", ncols=len(modes), fontsize=9)
    ax.grid(axis="y", linestyle="--", alpha=0.4)
    fig.tight_layout()
    return fig


def figure_png(fig: Any) -> bytes:
    """PNG bytes of a figure, which is then closed (figures left open leak memory over a session)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


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
        body.append(f"<tr><th>{esc(METRIC_LABELS.get(metric, metric))}</th>{''.join(cells)}</tr>")
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


def summary_html(
    provenance: Mapping[str, Any],
    cis: pd.DataFrame,
    gates: Sequence[GateResult],
    plots: Mapping[str, bytes],
    timings: Mapping[str, str],
    judge: str | None = None,
) -> str:
    """The report's summary block: verdicts first, then means with CIs, the judge, plots, provenance, timings."""
    parts = [_STYLE, '<div class="tg">', "<h2>Release gate verdicts</h2>"]
    if gates:
        rows = "".join(
            f'<tr><td class="{"pass" if g.passed else "fail"}">{"PASS" if g.passed else "FAIL"}</td>'
            f"<td>{esc(g.name)}</td><td>{esc(g.message)}</td></tr>"
            for g in gates
        )
        parts.append(f"<table><tr><th>verdict</th><th>gate</th><th>evidence</th></tr>{rows}</table>")
    else:
        parts.append("<p>No gate ran in this session.</p>")
    parts.append("<h2>Mean score per mode (95% bootstrap CI)</h2>")
    parts.append(_means_table_html(cis) if len(cis) else "<p>No scores were computed in this session.</p>")
    if judge:
        parts.append(judge)
    for title, png in plots.items():
        parts.append(f"<h3>{esc(title)}</h3>{png_img(png, title)}")
    parts.append("<h2>What was evaluated</h2>")
    parts.append(_key_value_table(provenance))
    if timings:
        parts.append("<h2>Time spent</h2>")
        parts.append(_key_value_table(timings))
    parts.append("</div>")
    return "\n".join(parts)


def _key_value_table(items: Mapping[str, Any]) -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items.items() if v is not None)
    return f"<table>{rows}</table>"


def sample_html(sample: Sample, generation: Generation, scores: Mapping[str, float]) -> str:
    """One sample's evidence for its row in the results table: prompt, reference, answer, scores."""
    score_text = " · ".join(f"{METRIC_LABELS.get(m, m)} {v:.3f}" for m, v in scores.items())
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
    return esc(" ".join(f"{METRIC_LABELS.get(m, m)}={v:.3f}" for m, v in scores))
