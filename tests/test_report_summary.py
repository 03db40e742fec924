"""tunegate.report.summary: the summary block reads top down, shows its evidence, and escapes everything."""

from __future__ import annotations

import base64
import re

import pandas as pd

from tests.report_cases import (
    ATTACKS,
    HOSTILE,
    HOSTILE_ESCAPED,
    METRIC_ATTACK,
    assert_only_our_markup,
    gates,
    hostile_run,
    html_text,
    paired_run,
    paired_table,
    score_table,
)
from tunegate.gates import GateResult
from tunegate.report.assets import summary_script
from tunegate.report.figures import Plot, figure_png, metric_means_figure, score_plots
from tunegate.report.intervals import mode_metric_cis
from tunegate.report.samples import samples_table_html
from tunegate.report.summary import summary_html


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
