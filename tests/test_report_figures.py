"""tunegate.report.figures: each figure renders a valid PNG, on its own scale, and is closed once encoded."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from tests.report_cases import PNG_MAGIC, paired_table, score_table
from tunegate.report.figures import (
    figure_png,
    metric_means_figure,
    paired_difference_figure,
    score_distribution_figure,
    score_plots,
)
from tunegate.report.intervals import mode_metric_cis
from tunegate.scores import COLUMNS


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
