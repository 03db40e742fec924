"""The report: figures and HTML from the score table and the verdicts. Everything from a model or an eval set is escaped.

Pure functions from the score table (and verdicts) to figures, PNG bytes and HTML strings; the
plugin decides where they go (pytest-html summary, per-test extras, files in the report dir), and
`tunegate/artifacts.py` builds them once per session.

    names, escaping (`esc`), display order of modes and metrics   labels.py
    mean and CI per mode and metric, paired a − b differences     intervals.py
    score table   -> matplotlib figures -> PNG + caption (Plot)    figures.py
    provenance, gates -> "What was evaluated", verdict banner      header.py
    judge config, usage -> caveat, cost table, judge block         judge.py
    samples, answers, scores -> samples table; per-test extras     samples.py
    the pieces above  -> the summary block for pytest-html         summary.py
    the summary's CSS and its one inline script (constants)        assets.py
    safety, efficiency, failure taxonomy (document, HTML, Markdown) beyond.py

Matplotlib is imported only when a figure is drawn, so importing this package stays fast.
`beyond.py` is not re-exported here: import it as `tunegate.report.beyond`.
"""

from tunegate.report.assets import _SCRIPT, summary_script
from tunegate.report.figures import (
    DISTRIBUTION_CAPTION,
    LOSS_COLOR,
    MEANS_CAPTION,
    MODE_COLORS,
    TIE_COLOR,
    WIN_COLOR,
    Plot,
    figure_png,
    metric_means_figure,
    paired_difference_caption,
    paired_difference_figure,
    score_distribution_figure,
    score_plots,
)
from tunegate.report.header import header_html, verdict_html
from tunegate.report.intervals import mode_metric_cis, paired_differences, sample_differences
from tunegate.report.judge import judge_caveat, judge_html, judge_usage_frame
from tunegate.report.labels import esc
from tunegate.report.samples import baseline_by_sample, sample_html, samples_table_html, scores_cell
from tunegate.report.summary import plots_html, png_img, summary_html

__all__ = [
    "DISTRIBUTION_CAPTION", "LOSS_COLOR", "MEANS_CAPTION", "MODE_COLORS", "TIE_COLOR", "WIN_COLOR", "_SCRIPT", "Plot",
    "baseline_by_sample", "esc", "figure_png", "header_html", "judge_caveat", "judge_html", "judge_usage_frame",
    "metric_means_figure", "mode_metric_cis", "paired_difference_caption", "paired_difference_figure",
    "paired_differences", "plots_html", "png_img", "sample_differences", "sample_html", "samples_table_html",
    "score_distribution_figure", "score_plots", "scores_cell", "summary_html", "summary_script", "verdict_html",
]
