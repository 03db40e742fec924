"""Tests for tunegate.report: CI tables, the PNG figure, and HTML that escapes model/eval text."""

from __future__ import annotations

import base64
import io
import re

import pandas as pd
import pytest

from tunegate.data import Sample
from tunegate.gates import GateResult
from tunegate.inference import Generation
from tunegate.report import figure_png, metric_means_figure, mode_metric_cis, sample_html, scores_cell, summary_html
from tunegate.scores import COLUMNS
from tunegate.stats import bootstrap_mean_ci

HOSTILE = "<script>alert(1)</script>"
HOSTILE_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

VALUES = {
    ("finetuned", "rougeL"): [0.6, 0.8, 0.7, 0.9],
    ("finetuned", "rouge1"): [0.7, 0.9, 0.8, 1.0],
    ("prompt_eng", "rougeL"): [0.2, 0.4, 0.3, 0.3],
    ("prompt_eng", "rouge1"): [0.3, 0.5, 0.4, 0.4],
}


def score_table() -> pd.DataFrame:
    rows = [
        (f"s{i}", mode, metric, value)
        for (mode, metric), values in VALUES.items()
        for i, value in enumerate(values)
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_mode_metric_cis_columns_and_values() -> None:
    cis = mode_metric_cis(score_table(), seed=4)
    assert list(cis.columns) == ["mode", "metric", "mean", "ci_low", "ci_high", "n"]
    assert list(zip(cis["mode"], cis["metric"])) == list(VALUES)  # first-seen order
    for row in cis.itertuples():
        expected = bootstrap_mean_ci(VALUES[row.mode, row.metric], seed=4)
        assert (row.mean, row.ci_low, row.ci_high, row.n) == (
            pytest.approx(expected.mean), expected.ci_low, expected.ci_high, 4
        )
        assert row.ci_low <= row.mean <= row.ci_high
    assert cis.set_index(["mode", "metric"]).loc[("prompt_eng", "rougeL"), "mean"] == pytest.approx(0.3)


def test_mode_metric_cis_of_an_empty_table_has_the_columns() -> None:
    cis = mode_metric_cis(pd.DataFrame(columns=COLUMNS))
    assert cis.empty and list(cis.columns) == ["mode", "metric", "mean", "ci_low", "ci_high", "n"]


def test_metric_means_figure_renders_valid_png_and_closes_the_figure() -> None:
    import matplotlib.pyplot as plt
    from PIL import Image

    fig = metric_means_figure(mode_metric_cis(score_table()))
    number = fig.number
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["ROUGE-L", "ROUGE-1"]
    assert fig.axes[0].get_legend_handles_labels()[1] == ["prompt_eng", "finetuned"]  # MODES order
    png = figure_png(fig)
    assert png.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.format == "PNG" and image.size[0] > 100 and image.size[1] > 100
    assert number not in plt.get_fignums()


def gates() -> list[GateResult]:
    return [
        GateResult("threshold[finetuned-rougeL]", True, "finetuned ROUGE-L mean 0.750 >= threshold 0.600"),
        GateResult(f"threshold[{HOSTILE}]", False, f"model said {HOSTILE} & \"quoted\""),
    ]


def test_summary_html_escapes_every_hostile_string() -> None:
    html = summary_html(
        provenance={"adapter": HOSTILE, "eval_set": "fixtures/eval.jsonl", "skipped": None},
        cis=mode_metric_cis(score_table()),
        gates=gates(),
        plots={f"plot {HOSTILE}": figure_png(metric_means_figure(mode_metric_cis(score_table())))},
        timings={HOSTILE: "1.0 s"},
    )
    assert "<script" not in html.lower()
    assert html.count(HOSTILE_ESCAPED) == 6  # provenance, gate name, gate message, plot title + alt, timing
    assert "&amp; &quot;quoted&quot;" in html
    assert "skipped" not in html  # None provenance values are left out


def test_summary_html_shows_verdicts_means_and_an_inline_plot() -> None:
    png = figure_png(metric_means_figure(mode_metric_cis(score_table())))
    html = summary_html({"adapter": "out/adapter"}, mode_metric_cis(score_table()), gates(), {"Means": png}, {})
    assert '<td class="pass">PASS</td><td>threshold[finetuned-rougeL]</td>' in html
    assert '<td class="fail">FAIL</td>' in html
    assert html.index("Release gate verdicts") < html.index("Mean score per mode") < html.index("What was evaluated")
    assert "<th>ROUGE-L</th><td>0.300" in html  # prompt_eng (first MODES column) mean
    assert "Time spent" not in html
    (encoded,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert base64.b64decode(encoded) == png


def test_summary_html_without_gates_or_scores_says_so() -> None:
    html = summary_html({}, pd.DataFrame(), [], {}, {"generation": "3.2 s"})
    assert "No gate ran in this session." in html
    assert "No scores were computed in this session." in html
    assert "data:image/png" not in html
    assert "<th>generation</th><td>3.2 s</td>" in html


NASTY = '<script>x()</script> "q" & \'s\''
NASTY_ESCAPED = "&lt;script&gt;x()&lt;/script&gt; &quot;q&quot; &amp; &#x27;s&#x27;"


def test_sample_html_escapes_prompt_reference_and_answer_and_shows_scores() -> None:
    sample = Sample(id="q1", prompt=f"prompt {NASTY}", reference=f"reference {NASTY}")
    generation = Generation(sample_id="q1", mode="finetuned", text=f"answer {NASTY}", finish_reason="length",
                            prompt_tokens=30, output_tokens=64, latency_s=1.234, cached=True)
    html = sample_html(sample, generation, {"rougeL": 0.5, "bertscore": 0.87654})
    assert "<script" not in html.lower()
    assert "'s'" not in html and '"q"' not in html
    assert f"<pre>prompt {NASTY_ESCAPED}</pre>" in html
    assert f"<pre>reference {NASTY_ESCAPED}</pre>" in html
    assert f"<b>answer (finetuned)</b><pre>answer {NASTY_ESCAPED}</pre>" in html
    assert "ROUGE-L 0.500 · BERTScore F1 0.877" in html
    assert "finish: length · 64 output tokens · 1.23 s (cached)" in html


def test_scores_cell_formats_and_escapes() -> None:
    assert scores_cell([("rouge1", 0.25), ("rougeL", 1.0)]) == "ROUGE-1=0.250 ROUGE-L=1.000"
    assert scores_cell([(HOSTILE, 0.5)]) == f"{HOSTILE_ESCAPED}=0.500"
    assert scores_cell([]) == ""


# --- the judge block ---------------------------------------------------------------------------

from tunegate.judge import JudgeConfig, JudgeUsage  # noqa: E402
from tunegate.report import judge_caveat, judge_html, judge_usage_frame  # noqa: E402


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
