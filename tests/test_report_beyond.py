"""tunegate.report.beyond: safety, efficiency and failure taxonomy as document, HTML and Markdown."""

from __future__ import annotations

import json

import pandas as pd

from tunegate.data import Sample
from tunegate.efficiency import efficiency_summary, overhead
from tunegate.inference import Generation
from tunegate.report.beyond import beyond_document, beyond_html, beyond_markdown
from tunegate.run import EfficiencyEvidence, SafetyEvidence
from tunegate.safety import refusal_rates, safety_gate, safety_rows
from tunegate.taxonomy import diagnose

HOSTILE = "<script>alert(1)</script>"


def answers(mode: str, texts: list[str], latency: float = 0.5) -> list[Generation]:
    return [Generation(f"s{i}", mode, text, "stop", 10, len(text.split()), latency) for i, text in enumerate(texts)]


def evidence() -> tuple[SafetyEvidence, EfficiencyEvidence, list]:
    probes = [Sample(id="weapons-harmful-01", prompt="p", reference="refuse", tags=("weapons", "harmful")),
              Sample(id="weapons-benign-01", prompt="q", reference="answer helpfully", tags=("weapons", "benign"))]
    gens = {"base": [Generation(p.id, "base", "I can't help with that.", "stop", 5, 5, 0.1) for p in probes],
            "finetuned": [Generation(p.id, "finetuned", "Sure: " + HOSTILE, "stop", 5, 5, 0.1) for p in probes]}
    table = safety_rows(probes, gens)
    safety = SafetyEvidence(tuple(probes), table, refusal_rates(table, probes), safety_gate(table, iters=1000), gens)
    base = answers("base", ["a b c", "d e f"], 0.5)
    tuned = answers("finetuned", ["a b c", HOSTILE + " 555-1234 " * 5], 0.6)
    summaries = {"base": efficiency_summary(base, batch_size=1), "finetuned": efficiency_summary(tuned, batch_size=1)}
    efficiency = EfficiencyEvidence(summaries, {}, overhead(summaries["base"], summaries["finetuned"], iters=500), None)
    samples = [Sample(id="s0", prompt="x", reference="a b c"), Sample(id="s1", prompt="y", reference="d e f")]
    failures = diagnose(samples, tuned)
    return safety, efficiency, failures


def test_document_is_json_ready_and_counts_what_happened() -> None:
    safety, efficiency, failures = evidence()
    document = beyond_document(safety=safety, efficiency=efficiency, failures=failures)
    json.dumps(document, allow_nan=False)
    assert document["safety"]["refusal_rate"] == {"base": {"benign": 1.0, "harmful": 1.0},
                                                  "finetuned": {"benign": 0.0, "harmful": 0.0}}
    assert document["safety"]["gate"]["name"] == "safety[finetuned-vs-base]"
    assert document["efficiency"]["modes"]["finetuned"]["latency_p50_s"] == 0.6
    assert document["efficiency"]["overhead"]["latency_overhead_pct"] > 0
    counts = document["failures"]["counts"]["finetuned"]
    assert counts["answers"] == 2 and counts["repetition_loop"] == 1
    assert beyond_document() == {"safety": None, "efficiency": None, "failures": None}


def test_html_and_markdown_escape_model_text() -> None:
    document = beyond_document(**dict(zip(("safety", "efficiency", "failures"), evidence())))
    html = beyond_html(document)
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for heading in ("Safety regression (2 probes)", "Efficiency", "Failure taxonomy"):
        assert heading in html
    markdown = "\n".join(beyond_markdown(document))
    assert "<script>" not in markdown and "## Failure taxonomy" in markdown
    assert "| finetuned | harmful | 0/1 | 0% |" in markdown
    assert beyond_html(beyond_document()) == ""
    assert isinstance(pd.DataFrame(document["safety"]["rates"]), pd.DataFrame)
