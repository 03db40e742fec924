"""tunegate.report.samples: the samples table (worst first, sortable, escaped) and one sample's evidence."""

from __future__ import annotations

import re
from html import escape as html_escape

import pandas as pd

from tests.report_cases import (
    HOSTILE,
    HOSTILE_ESCAPED,
    METRIC_ATTACK,
    Markup,
    assert_only_our_markup,
    hostile_run,
    paired_run,
    paired_table,
)
from tunegate.data import Sample
from tunegate.inference import Generation
from tunegate.report.samples import baseline_by_sample, sample_html, samples_table_html, scores_cell
from tunegate.scores import COLUMNS


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


def test_the_samples_table_puts_only_numbers_and_escaped_text_in_attributes() -> None:
    samples, generations, table = hostile_run()
    html = samples_table_html(samples, generations, table, baseline={samples[0].id: {METRIC_ATTACK: 1.0}}, worst_n=3,
                              primary_metric=METRIC_ATTACK)
    assert METRIC_ATTACK not in html and html.count(html_escape(METRIC_ATTACK)) > 5
    markup = assert_only_our_markup(html, scripts=0)
    number = re.compile(r"-?\d+(\.\d+)?(e[+-]?\d+)?")
    for row in markup.rows:
        attrs = row["attrs"]
        assert set(attrs) - {"class"} == {f"data-k{k}" for k in range(len(attrs) - 1)}
        assert all(v == "" or number.fullmatch(v) for k, v in attrs.items() if k.startswith("data-k")), attrs
    titles = [attrs["title"] for tag, attrs in markup.tags if attrs.get("title", "").startswith("worst first")]
    assert titles == [f"worst first: finetuned − prompt_eng on {METRIC_ATTACK}"] * 3  # whole, so escaped
    (baseline_title,) = [attrs["title"] for tag, attrs in markup.tags if attrs.get("title", "").startswith("lost")]
    assert baseline_title == f"lost most vs the accepted baseline: finetuned − baseline on {METRIC_ATTACK}"


def test_samples_table_starts_where_finetuned_lost_most_and_marks_the_worst() -> None:
    samples, generations = paired_run()
    html = samples_table_html(samples, generations, paired_table(), worst_n=2)
    rows = assert_only_our_markup(html, scripts=0).rows
    # rougeL finetuned − prompt_eng: s0 +0.4, s1 0, s2 −0.4, s3 +0.6, s4 unpaired (last)
    assert [r["id"] for r in rows] == ["s2", "s1", "s0", "s3", "s4"]
    assert [r["badges"] for r in rows] == [["worst #1"], ["worst #2"], [], [], []]
    assert [r["attrs"]["class"] for r in rows] == ["tg-row tg-worst", "tg-row tg-worst", "tg-row", "tg-row", "tg-row"]
    assert [r["attrs"]["data-k0"] for r in rows] == ["-0.4", "0", "0.4", "0.6", ""]
    assert "Rows start with the samples where finetuned lost most to prompt_eng on ROUGE-L; the 2 worst" in html
    judged = Markup(samples_table_html(samples, generations, paired_table(), primary_metric="judge_overall")).rows
    assert [r["id"] for r in judged] == ["s1", "s3", "s2", "s0", "s4"]  # −2, −1, 0 (earlier first), +2


def test_samples_table_orders_against_the_accepted_baseline_too() -> None:
    samples, generations = paired_run()
    baseline = {"s0": {"rougeL": 0.9}, "s1": {"rougeL": 0.3}, "s2": {"rougeL": 0.15}, "s3": {"rougeL": 0.9}}
    html = samples_table_html(samples, generations, paired_table(), baseline=baseline, worst_n=2)
    markup = Markup(html)
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]*)</option>', html)
    (key,) = [k for k, label in options if label == "lost most vs the accepted baseline: finetuned − baseline on ROUGE-L"]
    by_id = {r["id"]: r for r in markup.rows}
    values = {i: r["attrs"][f"data-k{key}"] for i, r in by_id.items()}
    assert values == {"s0": "-0.3", "s1": "0.1", "s2": "-0.05", "s3": "0", "s4": ""}
    assert by_id["s0"]["badges"] == ["vs baseline #1"] and by_id["s2"]["badges"] == ["worst #1", "vs baseline #2"]
    assert by_id["s1"]["badges"] == ["worst #2"] and by_id["s3"]["badges"] == []
    assert by_id["s0"]["attrs"]["class"] == "tg-row tg-worst"  # marked rows are what "only marked rows" keeps
    assert baseline_by_sample({"rougeL": {"s0": 0.9, "s1": 0.3}, "bertscore": {"s0": 0.5}}) == {
        "s0": {"rougeL": 0.9, "bertscore": 0.5}, "s1": {"rougeL": 0.3}}


def test_samples_table_offers_sorting_by_every_score_and_a_text_filter() -> None:
    samples, generations = paired_run()
    html = samples_table_html(samples, generations, paired_table())
    markup = Markup(html)
    options = re.findall(r'<option value="(\d+)"( selected)?>([^<]*)</option>', html)
    labels = [label for _, _, label in options]
    assert labels == [
        "worst first: finetuned − prompt_eng on ROUGE-L",
        "finetuned − prompt_eng: ROUGE-L", "finetuned − prompt_eng: Judge overall",
        "prompt_eng: ROUGE-L", "prompt_eng: Judge overall", "finetuned: ROUGE-L", "finetuned: Judge overall",
        "sample id", "eval-set order",
    ]
    assert [k for k, selected, _ in options if selected] == ["0"]
    assert all(f"data-k{k}" in row["attrs"] for k, _, _ in options for row in markup.rows)
    controls = {(tag, attrs.get("class"), attrs.get("type")) for tag, attrs in markup.tags}
    assert {("select", "tg-sort", None), ("button", "tg-reverse", "button"), ("input", "tg-filter", "search"),
            ("input", "tg-only-marked", "checkbox")} <= controls
    finetuned = {r["id"]: r["attrs"]["data-k5"] for r in markup.rows}
    assert finetuned == {"s0": "0.6", "s1": "0.4", "s2": "0.1", "s3": "0.9", "s4": "0.7"}
    assert '<span class="tg-primary">ROUGE-L 0.100</span>' in html  # the primary metric stands out in each cell


def test_samples_table_without_scores_keeps_eval_set_order() -> None:
    samples, generations = paired_run()
    html = samples_table_html(samples, generations, pd.DataFrame(columns=COLUMNS))
    markup = Markup(html)
    assert [r["id"] for r in markup.rows] == ["s0", "s1", "s2", "s3", "s4"]
    assert "Rows are in eval-set order." in html and "worst #" not in html
    assert re.findall(r"<option[^>]*>([^<]*)</option>", html) == ["sample id", "eval-set order"]


def test_samples_table_of_600_samples_is_one_row_each_with_ten_marked() -> None:
    samples, generations, table = hostile_run(n_extra=595)
    html = samples_table_html(samples, generations, table)
    markup = Markup(html)
    assert len(markup.rows) == 600 and sum(bool(r["badges"]) for r in markup.rows) == 10
    assert html.count("<tr") == 601  # the header row and one row per sample
