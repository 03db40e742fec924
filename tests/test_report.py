"""Tests for tunegate.report: CI tables, figures, and HTML that escapes model/eval text and runs only our script."""

from __future__ import annotations

import base64
import io
import math
import re
import shutil
import subprocess
from html import escape as html_escape
from html.parser import HTMLParser

import pandas as pd
import pytest

from tunegate.data import Sample
from tunegate.gates import GateResult
from tunegate.inference import Generation
from tunegate.report import (
    _SCRIPT,
    Plot,
    baseline_by_sample,
    figure_png,
    header_html,
    metric_means_figure,
    mode_metric_cis,
    paired_difference_figure,
    paired_differences,
    sample_html,
    samples_table_html,
    score_distribution_figure,
    score_plots,
    scores_cell,
    summary_html,
    summary_script,
    verdict_html,
)
from tunegate.scores import COLUMNS
from tunegate.stats import bootstrap_mean_ci, paired_bootstrap

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
        # Groups of one size share one draw and one matrix product: equal to the one-group call to rounding.
        assert (row.mean, row.ci_low, row.ci_high, row.n) == (
            pytest.approx(expected.mean), pytest.approx(expected.ci_low, rel=1e-12),
            pytest.approx(expected.ci_high, rel=1e-12), 4
        )
        assert row.ci_low <= row.mean <= row.ci_high
    assert cis.set_index(["mode", "metric"]).loc[("prompt_eng", "rougeL"), "mean"] == pytest.approx(0.3)


def test_mode_metric_cis_groups_of_other_sizes_and_single_values_match_bootstrap_mean_ci() -> None:
    """Groups of one size share a draw; another size, or one value, is its own bootstrap."""
    values = {("base", "rougeL"): [0.2, 0.4, 0.1, 0.5], ("finetuned", "rougeL"): [0.9, 0.3, 0.6],
              ("finetuned", "bleu"): [0.25], ("base", "bleu"): [0.1, 0.7, 0.3, 0.3]}
    rows = [(f"s{i}", mode, metric, v) for (mode, metric), vs in values.items() for i, v in enumerate(vs)]
    cis = mode_metric_cis(pd.DataFrame(rows, columns=COLUMNS), seed=2)
    assert list(zip(cis["mode"], cis["metric"])) == list(values)
    for row in cis.itertuples():
        expected = bootstrap_mean_ci(values[row.mode, row.metric], seed=2)
        assert row.n == expected.n and row.mean == pytest.approx(expected.mean)
        assert (row.ci_low, row.ci_high) == (pytest.approx(expected.ci_low, rel=1e-12),
                                             pytest.approx(expected.ci_high, rel=1e-12))
    with pytest.raises(ValueError, match="NaN"):  # a missing score is never averaged silently
        mode_metric_cis(pd.DataFrame([*rows, ("s9", "base", "bleu", math.nan)], columns=COLUMNS))


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
    assert HOSTILE not in html
    assert_only_our_markup(html)
    # header headline + model row + provenance table, gate name, gate message, plot title + alt, timing
    assert html.count(HOSTILE_ESCAPED) == 8
    assert "&amp; &quot;quoted&quot;" in html
    assert "skipped" not in html  # None provenance values are left out


def test_summary_html_shows_verdicts_means_and_an_inline_plot() -> None:
    png = figure_png(metric_means_figure(mode_metric_cis(score_table())))
    html = summary_html({"adapter": "out/adapter"}, mode_metric_cis(score_table()), gates(), {"Means": png}, {},
                        captions={"Means": "How to read the means."})
    assert '<td class="pass">PASS</td><td>threshold[finetuned-rougeL]</td>' in html
    assert '<td class="fail">FAIL</td>' in html
    assert html.index("Release gate verdicts") < html.index("Mean score per mode") < html.index("Provenance")
    assert "<th>ROUGE-L</th><td>0.300" in html  # prompt_eng (first MODES column) mean
    assert "Time spent" not in html
    assert '<h3>Means</h3><p class="tg-caption">How to read the means.</p><img' in html
    (encoded,) = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert base64.b64decode(encoded) == png


def test_summary_html_without_gates_or_scores_says_so() -> None:
    html = summary_html({}, pd.DataFrame(), [], {}, {"generation": "3.2 s"})
    assert "No gate ran in this session." in html
    assert "No scores were computed in this session." in html
    assert "data:image/png" not in html and "<h2>Plots</h2>" not in html
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


# --- markup checks shared by the tests below ------------------------------------------------------

# What our own HTML may contain; a hostile string that escaped `esc` shows up as another tag
# (script, img, textarea, iframe...), an on* attribute, or a second script.
OUR_TAGS = {"style", "div", "h2", "h3", "p", "table", "thead", "tbody", "tr", "th", "td", "code", "i", "b", "small",
            "br", "img", "script", "span", "label", "select", "option", "button", "input", "pre"}


class Markup(HTMLParser):
    """Tags, attributes and script bodies of an HTML string, parsed as a browser's tokenizer would."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self.rows: list[dict[str, object]] = []  # the samples table's rows: attrs, id cell text, badges
        self._cell: str | None = None
        self._in_script = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "script":
            self.scripts.append("")
            self._in_script = True
        elif tag == "tr" and "tg-row" in (attributes.get("class") or ""):
            self.rows.append({"attrs": attributes, "id": "", "badges": []})
        elif tag == "td" and attributes.get("class") == "tg-id":
            self._cell = "id"
        elif tag == "span" and "tg-badge" in (attributes.get("class") or "") and self.rows:
            self._cell = "badge"
            self.rows[-1]["badges"].append("")  # type: ignore[union-attr]

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"
        if tag in ("td", "span"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data
        elif self._cell == "id":
            self.rows[-1]["id"] += data  # type: ignore[operator]
        elif self._cell == "badge":
            self.rows[-1]["badges"][-1] += data  # type: ignore[index]


def assert_only_our_markup(html: str, *, scripts: int = 1) -> Markup:
    __tracebackhide__ = True
    markup = Markup(html)
    assert markup.scripts == [_SCRIPT] * scripts, "a script other than ours is in the HTML"
    assert {tag for tag, _ in markup.tags} <= OUR_TAGS, {tag for tag, _ in markup.tags} - OUR_TAGS
    handlers = [(tag, name) for tag, attrs in markup.tags for name in attrs if name.startswith("on")]
    assert not handlers, handlers
    for tag, attrs in markup.tags:
        if tag == "img":
            assert (attrs.get("src") or "").startswith("data:image/png;base64,"), attrs.get("src")
        assert "href" not in attrs and (tag != "script" or "src" not in attrs)  # nothing external
    return markup


ATTACKS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</textarea><iframe src=javascript:alert(1)>",
    "' onmouseover='alert(1)",
    "</td></tr></table><script>alert(2)</script>",
]
METRIC_ATTACK = 'metric"><img src=x onerror=alert(3)>'  # a metric name reaches labels, options and titles


def hostile_run(n_extra: int = 0) -> tuple[list[Sample], dict[str, list[Generation]], pd.DataFrame]:
    """Samples whose ids, prompts, references and answers are all attacks, scored in three modes."""
    samples, generations, rows = [], {"base": [], "prompt_eng": [], "finetuned": []}, []
    for i, attack in enumerate(ATTACKS + [f"plain {k}" for k in range(n_extra)]):
        sample_id = f"id{i} {attack}"
        samples.append(Sample(id=sample_id, prompt=f"prompt {attack}", reference=f"reference {attack}"))
        for shift, mode in enumerate(generations):
            generations[mode].append(Generation(sample_id, mode, f"{mode} says {attack}", "length" if i == 1 else "stop",
                                                10, 20, 0.1))
            rows += [(sample_id, mode, "rougeL", (i * 7 % 10) / 10 * (shift + 1) / 3),
                     (sample_id, mode, "judge_overall", float(1 + (i + shift) % 5)),
                     (sample_id, mode, METRIC_ATTACK, (i % 3) / 2)]
    return samples, generations, pd.DataFrame(rows, columns=COLUMNS)


def test_no_hostile_string_from_a_model_or_eval_set_reaches_the_summary_unescaped() -> None:
    samples, generations, table = hostile_run()
    baseline = {s.id: {"rougeL": 0.5} for s in samples}
    cis = mode_metric_cis(table)
    provenance = {"adapter": ATTACKS[1], "eval_set": ATTACKS[2], "base_model": ATTACKS[0], ATTACKS[3]: ATTACKS[4]}
    verdicts = [GateResult(f"gate {a}", i % 2 == 0, f"evidence {a}") for i, a in enumerate(ATTACKS)]
    plots = [Plot(f"title {a}", "x.png", figure_png(metric_means_figure(cis)), f"caption {a}") for a in ATTACKS[:2]]
    html = summary_html(provenance, cis, verdicts, plots, {ATTACKS[0]: ATTACKS[1]}, "<h2>LLM judge</h2>",
                        samples_table=samples_table_html(samples, generations, table, baseline=baseline, worst_n=2,
                                                         primary_metric=METRIC_ATTACK),
                        run_time_s=3.0)
    for attack in [*ATTACKS, METRIC_ATTACK]:
        assert attack not in html
    markup = assert_only_our_markup(html)
    assert len([t for t, _ in markup.tags if t == "img"]) == 2
    assert [row["id"] for row in markup.rows][:1] and {row["id"] for row in markup.rows} == {s.id for s in samples}
    text = html_text(html)
    for attack in ATTACKS:  # shown, as text, in every place it was given
        for where in (f"prompt {attack}", f"reference {attack}", f"finetuned says {attack}", f"gate {attack}",
                      f"evidence {attack}"):
            assert where in text, where


def html_text(html: str) -> str:
    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []

        def handle_data(self, data: str) -> None:
            self.parts.append(data)

    parser = Text()
    parser.feed(html)
    return "".join(parser.parts)


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


# --- header and verdict ---------------------------------------------------------------------------


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


# --- paired differences and the new figures -------------------------------------------------------

PAIRED = {  # sample -> (finetuned, prompt_eng); s4 has no prompt_eng answer, so it is not paired
    "rougeL": {"s0": (0.6, 0.2), "s1": (0.4, 0.4), "s2": (0.1, 0.5), "s3": (0.9, 0.3), "s4": (0.7, None)},
    "judge_overall": {"s0": (5.0, 3.0), "s1": (2.0, 4.0), "s2": (3.0, 3.0), "s3": (1.0, 2.0), "s4": (4.0, None)},
}


def paired_table() -> pd.DataFrame:
    rows = [(sample_id, mode, metric, value)
            for metric, per_sample in PAIRED.items()
            for sample_id, values in per_sample.items()
            for mode, value in zip(("finetuned", "prompt_eng"), values) if value is not None]
    return pd.DataFrame(rows, columns=COLUMNS)


def test_paired_differences_counts_wins_ties_losses_and_the_mean_on_shared_samples() -> None:
    result = paired_differences(paired_table(), iters=2000, seed=3).set_index("metric")
    rouge, judge = result.loc["rougeL"], result.loc["judge_overall"]
    assert (rouge["n"], rouge["wins"], rouge["ties"], rouge["losses"]) == (4, 2, 1, 1)
    assert rouge["mean_diff"] == pytest.approx(0.15)
    expected = paired_bootstrap([0.6, 0.4, 0.1, 0.9], [0.2, 0.4, 0.5, 0.3], iters=2000, seed=3)
    assert (rouge["ci_low"], rouge["ci_high"]) == (pytest.approx(expected.ci_low), pytest.approx(expected.ci_high))
    assert (judge["n"], judge["wins"], judge["ties"], judge["losses"]) == (4, 1, 1, 2)
    assert judge["mean_diff"] == pytest.approx(-0.25)
    reverse = paired_differences(paired_table(), "prompt_eng", "finetuned", ["rougeL"], iters=100).iloc[0]
    assert (reverse["wins"], reverse["losses"], reverse["mean_diff"]) == (1, 2, pytest.approx(-0.15))
    nothing = paired_differences(paired_table(), "finetuned", "base", ["rougeL"]).iloc[0]
    assert nothing["n"] == 0 and math.isnan(nothing["mean_diff"])


def assert_png_and_closed(make_figure) -> bytes:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt
    from PIL import Image

    __tracebackhide__ = True
    before = plt.get_fignums()
    fig = make_figure()
    assert plt.get_fignums() == [*before, fig.number]
    png = figure_png(fig)
    assert plt.get_fignums() == before == []
    assert png.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(png)) as image:
        image.verify()
        assert image.format == "PNG" and 600 <= image.size[0] <= 1400 and image.size[1] > 300
    return png


def test_paired_difference_figure_titles_its_counts_and_draws_the_mean() -> None:
    panels: list = []

    def make():  # type: ignore[no-untyped-def]
        fig = paired_difference_figure(paired_table(), iters=500)
        panels.extend((ax.get_title(), ax.get_ylim(), ax.get_legend_handles_labels()[1]) for ax in fig.axes
                      if ax.get_visible())
        panels.append(fig._suptitle.get_text())
        return fig

    assert_png_and_closed(make)
    (rouge_title, rouge_ylim, rouge_legend), (judge_title, _, _), suptitle = panels
    assert rouge_title == "ROUGE-L (n=4)\n2 wins · 1 ties · 1 losses"
    assert judge_title == "Judge overall (n=4)\n1 wins · 1 ties · 2 losses"
    assert rouge_legend[1] == "mean +0.150" and rouge_legend[0].startswith("95% CI [")
    assert rouge_ylim[0] == pytest.approx(-rouge_ylim[1]) and rouge_ylim[1] >= 0.6  # zero centred, every bar shown
    assert "finetuned − prompt_eng (n=4 paired samples)" in suptitle
    with pytest.raises(ValueError, match="no sample is scored in both 'finetuned' and 'base'"):
        paired_difference_figure(paired_table(), "finetuned", "base")


def test_score_distribution_figure_has_a_panel_per_metric_on_its_own_scale() -> None:
    panels: list = []

    def make():  # type: ignore[no-untyped-def]
        fig = score_distribution_figure(paired_table())
        panels.extend((ax.get_title(), ax.get_ylim(), [t.get_text() for t in ax.get_xticklabels()], ax.get_ylabel())
                      for ax in fig.axes if ax.get_visible())
        return fig

    first = assert_png_and_closed(make)
    (rouge, rouge_ylim, rouge_modes, rouge_label), (judge, judge_ylim, _, judge_label) = panels
    assert (rouge, judge) == ("ROUGE-L (n=5)", "Judge overall (n=5)")
    assert rouge_modes == ["prompt_eng", "finetuned"]  # MODES order, not first-seen order
    assert rouge_ylim == pytest.approx((-0.04, 1.04)) and rouge_label == "score (0-1)"
    assert judge_ylim == pytest.approx((0.7, 5.3)) and judge_label == "judge score (1-5)"
    assert assert_png_and_closed(lambda: score_distribution_figure(paired_table())) == first  # seeded jitter
    with pytest.raises(ValueError, match="no rows"):
        score_distribution_figure(paired_table(), ["bertscore"])


def test_score_plots_returns_each_figure_with_a_file_name_and_a_caption() -> None:
    plots = score_plots(paired_table(), iters=200)
    assert [(p.title, p.filename) for p in plots] == [
        ("Mean score per mode", "metric_means.png"),
        ("LLM judge: mean score per mode", "judge_means.png"),
        ("Per-sample score distribution per mode", "score_distribution.png"),
        ("Per-sample difference finetuned − prompt_eng", "paired_difference.png"),
    ]
    assert all(p.png.startswith(PNG_MAGIC) and p.caption for p in plots)
    assert "Green bars (above zero) are samples finetuned won" in plots[-1].caption
    only_finetuned = paired_table().query("mode == 'finetuned' and metric == 'rougeL'")
    assert [p.filename for p in score_plots(only_finetuned)] == ["metric_means.png", "score_distribution.png"]
    assert score_plots(pd.DataFrame(columns=COLUMNS)) == []


# --- the samples table ----------------------------------------------------------------------------


def paired_run() -> tuple[list[Sample], dict[str, list[Generation]]]:
    samples = [Sample(id=f"s{i}", prompt=f"prompt {i}", reference=f"reference {i}") for i in range(5)]
    generations = {mode: [Generation(s.id, mode, f"{mode} answer {s.id}", "stop", 5, 5, 0.1) for s in samples
                          if mode == "finetuned" or s.id != "s4"] for mode in ("prompt_eng", "finetuned")}
    return samples, generations


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


# --- the summary block as a whole -----------------------------------------------------------------


def test_summary_html_reads_top_down_in_one_block_with_our_script_last() -> None:
    samples, generations = paired_run()
    table = paired_table()
    html = summary_html({"base_model": "demo"}, mode_metric_cis(table), gates(), score_plots(table, iters=100),
                        {"generation": "1 s"}, "<h2>LLM judge</h2>", samples_table=samples_table_html(
                            samples, generations, table), run_time_s=2.0)
    headings = ["What was evaluated", "Release gate verdicts", "FAIL: 1 of 2", "Mean score per mode (95%",
                "<h2>Plots</h2>", "Per-sample score distribution", "Per-sample difference", "<h2>LLM judge</h2>",
                "Answers side by side", "<h2>Provenance</h2>", "Time spent"]
    positions = [html.index(h) for h in headings]
    assert positions == sorted(positions)
    assert html.count('<div class="tg">') == 1 and html.rstrip().endswith(f"{summary_script()}\n</div>")
    markup = assert_only_our_markup(html)
    assert len([t for t, _ in markup.tags if t == "img"]) == 4


def test_the_script_marks_every_image_and_keeps_to_itself() -> None:
    # pytest-html's own script shares the page's top-level scope: ours declares nothing there.
    assert _SCRIPT.strip().startswith("(function () {") and _SCRIPT.strip().endswith("})();")
    assert "img.onload = ok;" in _SCRIPT and "img.onerror = bad;" in _SCRIPT
    assert "setAttribute('data-loaded', '1')" in _SCRIPT and "setAttribute('data-loaded', 'error')" in _SCRIPT
    assert "innerHTML" not in _SCRIPT and "</" not in _SCRIPT  # no markup from data; nothing closes the tag early
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the script's syntax is checked where it is")
    check = subprocess.run([node, "--check", "-"], input=_SCRIPT, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr


def test_header_without_provenance_says_so() -> None:
    assert "No provenance was recorded in this session." in header_html({"adapter": None, "judge": None})
    assert "No provenance" not in header_html({}, run_time_s=1.0)
    assert '<p class="tg-headline">base model <code>demo</code>; no adapter (finetuned mode not evaluated)</p>' in (
        header_html({"base_model": "demo", "adapter": None}))
    assert '<p class="tg-headline">evaluated on <code>e.jsonl</code></p>' in header_html({"eval_set": "e.jsonl"})
    assert "<tr><th>versions</th><td>torch <code>2.5</code> · pytest-html <code>4.2.0</code></td></tr>" in header_html(
        {"pytest_html": "4.2.0", "torch": "2.5"})
