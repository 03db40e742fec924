"""tunegate.report.judge: the judge's caveat, its usage and cost table, and its escaped block."""

from __future__ import annotations

import pandas as pd

from tests.report_cases import HOSTILE, HOSTILE_ESCAPED
from tunegate.judge import JudgeConfig, JudgeUsage
from tunegate.report.judge import judge_caveat, judge_html, judge_usage_frame
from tunegate.report.summary import summary_html


def test_a_135m_local_judge_is_called_a_smoke_test() -> None:
    caveat = judge_caveat(JudgeConfig(backend="local"), "demo")
    assert "a 135M judge is a smoke test of the judging machinery, not a verdict" in caveat
    assert "smoke test" not in judge_caveat(JudgeConfig(backend="local", model="/models/Qwen2.5-72B"), "/models/q")
    assert judge_caveat(JudgeConfig(backend="openai", model="gpt-4o-mini"), "demo").startswith("remote judge gpt-4o-mini")


def test_usage_frame_totals_and_prices() -> None:
    usages = [JudgeUsage("reference", "base", 50, 10, 45, 2, 40_000, 4_000, 12.0),
              JudgeUsage("pairwise", "finetuned-vs-prompt_eng", 100, 0, 100, 0, 90_000, 5_000, 30.0)]
    priced = judge_usage_frame(usages, JudgeConfig(backend="openai", model="m", price_input_per_mtok=0.15,
                                                   price_output_per_mtok=0.6))
    total = priced.iloc[-1]
    assert (total["kind"], total["judgements"], total["calls"], total["errors"], total["tokens in"]) == ("total", 150, 145, 2, 130_000)
    assert total["cost"] == f"{(130_000 * 0.15 + 9_000 * 0.6) / 1e6:.4f}"
    unpriced = judge_usage_frame(usages, JudgeConfig(backend="local"))
    assert list(unpriced["cost"]) == ["-", "-", "-"]


def test_judge_html_escapes_the_pairwise_summary() -> None:
    html = judge_html("caveat", judge_usage_frame([], JudgeConfig()), f"finetuned vs {HOSTILE}")
    assert HOSTILE_ESCAPED in html and "<script" not in html
    block = judge_html("smoke", judge_usage_frame([JudgeUsage("blind", "base", 1, 0, 0, 0, 10, 0, 0.1)], JudgeConfig()), None)
    assert "<th>tokens in</th>" in block and "Pairwise" not in block
    page = summary_html({}, pd.DataFrame(), [], {}, {}, judge=block)
    assert page.index("LLM judge") > page.index("Mean score per mode")
