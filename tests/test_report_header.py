"""tunegate.report.header: what was evaluated, grouped, and the verdict banner with failures first."""

from __future__ import annotations

import re

from tunegate.gates import GateResult
from tunegate.report.header import header_html, verdict_html


def test_header_groups_known_keys_shows_extra_keys_and_the_run_time() -> None:
    provenance = {"base_model": "demo", "base_model_sha256": "b4se", "adapter": "out/adapter", "adapter_sha256": "ad4p",
                  "eval_set": "fixtures/demo/test.jsonl", "eval_set_sha256": "e5e7", "samples": 50, "decoding": "greedy",
                  "max_new_tokens": 64, "judge": None, "torch": "2.5.1", "started_at": "2025-01-02T03:04:05+00:00",
                  "gpu": "H100"}
    html = header_html(provenance, run_time_s=125.4)
    assert html.startswith("<h2>What was evaluated</h2>")
    assert ("adapter <code>out/adapter</code> (sha256 <code>ad4p</code>) on base model <code>demo</code> (sha256 "
            "<code>b4se</code>), evaluated on 50 samples of <code>fixtures/demo/test.jsonl</code> (sha256 <code>e5e7</code>)"
            ) in html
    assert "<tr><th>decoding</th><td>decoding <code>greedy</code> · max_new_tokens <code>64</code></td></tr>" in html
    assert "<tr><th>other</th><td>gpu <code>H100</code></td></tr>" in html
    assert "run time <code>2 min 05 s</code>" in html and "started <code>2025-01-02T03:04:05+00:00</code>" in html
    assert "judge" not in html  # a None value is left out
    no_adapter = header_html({"base_model": "demo", "adapter": None})
    assert "no adapter (finetuned mode not evaluated)" in no_adapter and "adapter <i>none</i>" in no_adapter


def test_verdict_banner_counts_gates_and_the_table_lists_failures_first() -> None:
    verdicts = [GateResult("a", True, "ok"), GateResult("b", False, "worse\nsecond line"), GateResult("c", True, "ok"),
                GateResult("d", False, "worse")]
    html = verdict_html(verdicts)
    assert 'data-verdict="FAIL">FAIL: 2 of 4 release gates passed (2 failed)</div>' in html
    assert re.findall(r"<td>([a-d])</td>", html) == ["b", "d", "a", "c"]
    assert '<td class="tg-evidence">worse\nsecond line</td>' in html
    assert 'data-verdict="PASS">PASS: 2 of 2 release gates passed</div>' in verdict_html(verdicts[::2])
    assert "No gate ran in this session." in verdict_html([])


def test_header_without_provenance_says_so() -> None:
    assert "No provenance was recorded in this session." in header_html({"adapter": None, "judge": None})
    assert "No provenance" not in header_html({}, run_time_s=1.0)
    assert '<p class="tg-headline">base model <code>demo</code>; no adapter (finetuned mode not evaluated)</p>' in (
        header_html({"base_model": "demo", "adapter": None}))
    assert '<p class="tg-headline">evaluated on <code>e.jsonl</code></p>' in header_html({"eval_set": "e.jsonl"})
    assert "<tr><th>versions</th><td>torch <code>2.5</code> · pytest-html <code>4.2.0</code></td></tr>" in header_html(
        {"pytest_html": "4.2.0", "torch": "2.5"})
