"""Beyond answer quality, in the report: safety refusals, efficiency, failure taxonomy, likelihood.

Three views of each piece of evidence, so the HTML, results.json and summary.md agree: a JSON-ready
dict (`beyond_document`), the HTML block (`beyond_html`) and Markdown lines (`beyond_markdown`, from
the dict). Everything from a model or an eval set is escaped (`esc`, `md_escape`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pandas as pd

from tunegate.inference import MODES
from tunegate.report.labels import esc
from tunegate.taxonomy import LABELS, Diagnosis, failure_counts, worst_examples

if TYPE_CHECKING:  # tunegate.run pulls in the whole pipeline; only its types are needed here
    from tunegate.run import EfficiencyEvidence, SafetyEvidence

WORST_SHOWN = 3  # examples per failure label in the report
_TEXT_SHOWN = 400  # characters of an answer shown beside its failure


def _num(value: Any, digits: int = 6) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    value = float(value)
    return None if not math.isfinite(value) else float(f"{value:.{digits}g}")


# --- the document ------------------------------------------------------------------------------


def beyond_document(
    *,
    safety: SafetyEvidence | None = None,
    efficiency: EfficiencyEvidence | None = None,
    failures: Sequence[Diagnosis] | None = None,
) -> dict[str, Any]:
    """`safety`, `efficiency` and `failures` sections of results.json (null where not computed)."""
    return {
        "safety": _safety_doc(safety) if safety is not None else None,
        "efficiency": _efficiency_doc(efficiency) if efficiency is not None and efficiency.summaries else None,
        "failures": _failures_doc(failures) if failures else None,
    }


def _safety_doc(safety: SafetyEvidence) -> dict[str, Any]:
    rates = safety.rates
    overall = rates[rates["category"] == "all"] if len(rates) else rates
    return {
        "probes": len(safety.probes),
        "rates": [{"mode": r.mode, "kind": r.kind, "category": r.category, "refused": int(r.refused), "n": int(r.n),
                   "rate": _num(r.rate)} for r in rates.itertuples(index=False)],
        "refusal_rate": _rates_by_mode(overall),
        "gate": None if safety.verdict is None else {"name": safety.verdict.name, "passed": safety.verdict.passed,
                                                     "message": safety.verdict.message},
    }


def _rates_by_mode(overall: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """mode -> {"harmful": share refused, "benign": share refused}."""
    found: dict[str, dict[str, Any]] = {}
    for row in overall.itertuples(index=False):
        found.setdefault(row.mode, {})[row.kind] = _num(row.rate)
    return found


def _efficiency_doc(efficiency: EfficiencyEvidence) -> dict[str, Any]:
    modes = {}
    for mode, summary in efficiency.summaries.items():
        fields = {k: _num(v) for k, v in asdict(summary).items() if k not in ("samples", "mode")}
        memory = efficiency.memory.get(mode)
        fields["peak_rss_mb"] = _num(memory.rss_peak_bytes / 2**20) if memory and memory.rss_peak_bytes else None
        fields["gpu_peak_mb"] = _num(memory.gpu_peak_bytes / 2**20) if memory and memory.gpu_peak_bytes else None
        fields["timing_note"] = summary.timing_note
        modes[mode] = fields
    found = efficiency.overhead
    overhead = None if found is None else {
        "mode": found.mode, "baseline": found.baseline, "latency_overhead_pct": _num(found.latency_overhead_pct),
        "ci_pct": [_num(v) for v in found.ci_pct], "pairs": found.pairs, "origin": found.origin,
        "throughput_ratio": _num(found.throughput_ratio), "message": str(found),
    }
    gate = efficiency.verdict
    return {"modes": modes, "overhead": overhead,
            "gate": None if gate is None else {"name": gate.name, "passed": gate.passed, "message": gate.message}}


def _failures_doc(failures: Sequence[Diagnosis]) -> dict[str, Any]:
    counts = failure_counts(failures)
    worst = worst_examples(failures, n=WORST_SHOWN)
    return {
        "labels": list(LABELS),
        "counts": {mode: {"answers": c.answers, **c.counts} for mode, c in counts.items()},
        "worst": {label: [{"sample_id": d.sample_id, "mode": d.mode, "evidence": d.failure(label).evidence,
                           "text": d.text[:_TEXT_SHOWN]} for d in found] for label, found in worst.items()},
    }


# --- HTML --------------------------------------------------------------------------------------


def beyond_html(document: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """The HTML block for the summary: safety, efficiency, failure taxonomy (sections present only)."""
    parts = []
    if document.get("safety"):
        parts.append(_safety_html(document["safety"]))
    if document.get("efficiency"):
        parts.append(_efficiency_html(document["efficiency"]))
    if document.get("failures"):
        parts.append(_failures_html(document["failures"]))
    return "\n".join(parts)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _verdict_line(gate: Mapping[str, Any] | None) -> str:
    if not gate:
        return ""
    word, css = ("PASS", "pass") if gate["passed"] else ("FAIL", "fail")
    return f'<p><span class="{css}">{word}</span> {esc(gate["name"])}: {esc(gate["message"])}</p>'


def _safety_html(safety: Mapping[str, Any]) -> str:
    overall = [r for r in safety["rates"] if r["category"] == "all"]
    rows = [[r["mode"], "harmful (refusal: higher is safer)" if r["kind"] == "harmful" else "benign (over-refusal: lower is better)",
             f"{r['refused']}/{r['n']}", f"{r['rate']:.0%}"] for r in sorted(overall, key=lambda r: (r["kind"], _rank(r["mode"])))]
    by_category = [[r["category"], r["kind"], r["mode"], f"{r['refused']}/{r['n']}"]
                   for r in safety["rates"] if r["category"] != "all"]
    return (f"<h2>Safety regression ({safety['probes']} probes)</h2>{_verdict_line(safety['gate'])}"
            + _table(["mode", "probes", "refused", "rate"], rows)
            + f"<details><summary>by category</summary>{_table(['category', 'kind', 'mode', 'refused'], by_category)}</details>")


def _efficiency_html(efficiency: Mapping[str, Any]) -> str:
    rows = []
    for mode in sorted(efficiency["modes"], key=_rank):
        m = efficiency["modes"][mode]
        rows.append([mode, _f(m["latency_p50_s"], ".3f"), _f(m["latency_p95_s"], ".3f"), _f(m["latency_p99_s"], ".3f"),
                     _f(m["output_tokens_per_s"], ".1f"), _f(m["input_tokens_mean"], ".0f"), _f(m["output_tokens_mean"], ".0f"),
                     f"{m['truncated_share']:.0%}", _f(m["peak_rss_mb"], ".0f"), m["timing_note"]])
    overhead = efficiency.get("overhead")
    note = f"<p>Adapter overhead: {esc(overhead['message'])}</p>" if overhead else ""
    return ("<h2>Efficiency</h2><p>Latency per request = the batch's wall time / its size (batched greedy "
            "generation); p50/p95/p99 over the timed answers.</p>" + _verdict_line(efficiency.get("gate"))
            + _table(["mode", "latency p50 (s)", "p95", "p99", "output tok/s", "tokens in", "tokens out", "truncated",
                      "peak RSS (MB)", "timing"], rows) + note)


def _failures_html(failures: Mapping[str, Any]) -> str:
    labels = failures["labels"]
    rows = [[mode, c["answers"], *(c[label] for label in labels)]
            for mode, c in sorted(failures["counts"].items(), key=lambda item: _rank(item[0]))]
    examples = []
    for label in labels:
        for item in failures["worst"].get(label, []):
            examples.append(f"<tr><td>{esc(label)}</td><td>{esc(item['mode'])}</td><td>{esc(item['sample_id'])}</td>"
                            f"<td>{esc(item['evidence'])}</td><td><div class=\"tg-text\">{esc(item['text'])}</div></td></tr>")
    worst = ("<details><summary>worst examples of each</summary><table><tr><th>failure</th><th>mode</th><th>sample</th>"
             f"<th>evidence</th><th>answer</th></tr>{''.join(examples)}</table></details>") if examples else ""
    return ("<h2>Failure taxonomy</h2><p>Answers per mode carrying each failure label (an answer can carry several); "
            "rules in tunegate/taxonomy.py.</p>" + _table(["mode", "answers", *labels], rows) + worst)


def _rank(mode: str) -> int:
    return MODES.index(mode) if mode in MODES else len(MODES)


def _f(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


# --- Markdown ----------------------------------------------------------------------------------


def beyond_markdown(document: Mapping[str, Any]) -> list[str]:
    """summary.md lines for the same sections (escaped), from the results document."""
    from tunegate.results import md_escape

    lines: list[str] = []
    safety = document.get("safety")
    if safety:
        lines += [f"## Safety regression ({safety['probes']} probes)", ""]
        if safety["gate"]:
            lines += [f"**{'PASS' if safety['gate']['passed'] else 'FAIL'}**: {md_escape(safety['gate']['message'])}", ""]
        lines += ["| mode | kind | refused | rate |", "|---|---|---|---|"]
        lines += [f"| {md_escape(r['mode'])} | {r['kind']} | {r['refused']}/{r['n']} | {r['rate']:.0%} |"
                  for r in safety["rates"] if r["category"] == "all"]
        lines.append("")
    efficiency = document.get("efficiency")
    if efficiency:
        lines += ["## Efficiency", "", "| mode | latency p50 / p95 / p99 (s) | output tok/s | tokens in / out | truncated |",
                  "|---|---|---|---|---|"]
        for mode in sorted(efficiency["modes"], key=_rank):
            m = efficiency["modes"][mode]
            lines.append(f"| {md_escape(mode)} | {_f(m['latency_p50_s'], '.3f')} / {_f(m['latency_p95_s'], '.3f')} / "
                         f"{_f(m['latency_p99_s'], '.3f')} | {_f(m['output_tokens_per_s'], '.1f')} | "
                         f"{_f(m['input_tokens_mean'], '.0f')} / {_f(m['output_tokens_mean'], '.0f')} | "
                         f"{m['truncated_share']:.0%} |")
        if efficiency.get("overhead"):
            lines += ["", f"Adapter overhead: {md_escape(efficiency['overhead']['message'])}"]
        lines.append("")
    failures = document.get("failures")
    if failures:
        labels = failures["labels"]
        lines += ["## Failure taxonomy", "", "| mode | answers | " + " | ".join(labels) + " |",
                  "|---|---|" + "---|" * len(labels)]
        for mode, c in sorted(failures["counts"].items(), key=lambda item: _rank(item[0])):
            lines.append(f"| {md_escape(mode)} | {c['answers']} | " + " | ".join(str(c[label]) for label in labels) + " |")
        lines.append("")
    return lines
