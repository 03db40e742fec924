"""The LLM judge's block of the report: how far to trust it, what it cost, the side-by-side result."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from tunegate.judge import JudgeConfig, JudgeUsage
from tunegate.report.labels import esc


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
