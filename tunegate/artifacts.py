"""The report's outputs, built once per session from what the run computed.

    GateRun (computed_* only: building a report never generates or judges)
      -> plots (PNG + caption each)                 tunegate/report/, overfitting.py, ablation/
      -> results document -> results.json, summary.md   tunegate/results.py
      -> the HTML summary block for pytest-html      tunegate/report/

The plugin calls `build_artifacts` at the end of the session (and pytest-html's summary hook reuses
the same object), then `write_artifacts` puts everything into `report_dir`, with or without
pytest-html: a CI job that only reads results.json does not need the HTML plugin.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tunegate.config import LIKELIHOOD_METRICS
from tunegate.gates import GateResult
from tunegate.report import (
    Plot,
    baseline_by_sample,
    figure_png,
    metric_means_figure,
    mode_metric_cis,
    samples_table_html,
    score_plots,
    summary_html,
)
from tunegate.report.beyond import beyond_document, beyond_html
from tunegate.results import finite_rows, results_document, write_results, write_summary
from tunegate.run import GateRun

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"
TRAINING_CAPTION = ("Training and validation loss of the adapter's own run, per step. The star marks the best "
                    "validation loss; a divergence, when confirmed, is marked where the gate saw it.")
LIKELIHOOD_CAPTION = ("Mean log-probability per token of the reference answer, teacher-forced after the mode's "
                      "prompt (perplexity = exp(-this)). Fine-tuning on in-domain data should raise it.")
PARETO_CAPTION = ("Quality (the primary metric's mean) against cost (mean latency per request) per mode; ringed "
                  "points are on the Pareto frontier: nothing else is both cheaper and better.")
ABLATION_CAPTION = ("One line per metric along the sweep, shaded band = 95% bootstrap CI, star = best value. "
                    "Notes and confounds are printed under the plot; the ablation gate's message says which "
                    "setting is within noise of the best.")


@dataclass(frozen=True, slots=True)
class ReportArtifacts:
    """Everything the session reports: the figures, the results document and the HTML summary block."""

    plots: tuple[Plot, ...]
    document: dict[str, Any]
    summary_html: str


def phase_seconds(run: GateRun) -> dict[str, float]:
    """Wall seconds per phase, plus the session's total so far."""
    times = run.times
    seconds = {"model_cache_s": times.model_cache_s, "generation_s": times.generation_s,
               "scoring_s": times.scoring_s, "judge_s": times.judge_s}
    if run.computed_ablation() is not None:
        seconds["ablation_s"] = times.ablation_s
    if times.likelihood_s:
        seconds["likelihood_s"] = times.likelihood_s
    if run.computed_safety() is not None:
        seconds["safety_s"] = times.safety_s
    seconds["total_s"] = time.time() - run.started_at.timestamp()
    return {key: round(value, 2) for key, value in seconds.items()}


def build_artifacts(
    run: GateRun,
    gates: Sequence[GateResult],
    *,
    baseline_scores: Mapping[str, Mapping[str, float]] | None = None,
    exit_status: int | None = None,
    judge_block: str | None = None,
) -> ReportArtifacts:
    """Plots, results document and HTML summary from what this session computed (never triggers work).

    Args:
        gates: the verdicts in the order the gates ran.
        baseline_scores: the accepted baseline's `scores` (metric -> {sample id: value}), when the
            non-regression gate read one: the side-by-side table can then sort by loss to it.
        exit_status: pytest's exit status, recorded in results.json (`session.exit_status`).
        judge_block: the judge's HTML block, or None.
    """
    config = run.config
    table = run.computed_table()
    # Drawn once, for the means table, the plots and results.json; a NaN or inf score is missing, not averaged.
    cis = mode_metric_cis(finite_rows(table), seed=config.seed)
    # Plots on the 0-1 (and judge 1-5) scales; the likelihood metrics get their own figure.
    likelihood = cis["metric"].isin(LIKELIHOOD_METRICS) if len(cis) else pd.Series(dtype=bool)
    bounded = table[~table["metric"].isin(LIKELIHOOD_METRICS)]
    plots = list(score_plots(bounded, cis=cis[~likelihood] if len(cis) else cis, iters=config.bootstrap_iters,
                             seed=config.seed))
    loglik = cis[cis["metric"] == "loglik"] if len(cis) else cis
    if len(loglik):
        low = float(loglik["ci_low"].min())
        figure = metric_means_figure(loglik, ylim=(low * 1.15, 0), ylabel="mean log-prob per reference token",
                                     title="Reference log-likelihood per mode (higher: the reference is expected)")
        plots.append(Plot("Reference log-likelihood per mode", "likelihood.png", figure_png(figure), LIKELIHOOD_CAPTION))
    training = run.computed_training()
    if training is not None:
        from tunegate.overfitting import loss_curve_figure

        plots.append(Plot("Training: train and validation loss of the adapter's run", "training_loss.png",
                          figure_png(loss_curve_figure(training.curve, training.divergence)), TRAINING_CAPTION))
    ablation = run.computed_ablation()
    if ablation is not None and ablation.curves:
        from tunegate.ablation import ablation_figure
        from tunegate.ablation.sweep import VARIABLES

        plots.append(Plot(f"Ablation: {VARIABLES.get(ablation.variable, ablation.variable)} ({ablation.source})",
                          "ablation.png", figure_png(ablation_figure(ablation.curves, ablation.variable)),
                          ABLATION_CAPTION))
    efficiency = run.efficiency()
    metric = config.primary_metric
    scored = {mode for mode in efficiency.summaries if ((table["mode"] == mode) & (table["metric"] == metric)).any()}
    if scored:
        from tunegate.efficiency import pareto_figure, pareto_points

        runs = ablation.efficiency if ablation is not None and metric in {c.metric for c in ablation.curves} else {}
        points = pareto_points({mode: efficiency.summaries[mode] for mode in scored}, table, metric, cost="latency",
                               ablation_summaries=runs, ablation_scores=ablation.tables if runs else None)
        if len(points) >= 2:
            plots.append(Plot("Quality vs cost per mode", "pareto.png", figure_png(pareto_figure(points)),
                              PARETO_CAPTION))
    seconds = phase_seconds(run)
    provenance = run.provenance()
    document = results_document(
        provenance=provenance, table=table, gates=gates, gain_checks=run.computed_gain_checks() or (),
        training=training, ablation=ablation, pairwise=run.computed_pairwise(), timings=seconds,
        plots={plot.title: plot.filename for plot in plots}, seed=config.seed, cis=cis,
    )
    document["session"] = {"exit_status": exit_status, "new_answers": dict(run.times.generated)}
    document.update(beyond_document(safety=run.computed_safety(), efficiency=efficiency,
                                    failures=run.failures() or None))
    samples = samples_table_html(
        run.samples, run.computed_generations(), table,
        baseline=baseline_by_sample(baseline_scores) if baseline_scores else None,
        primary_metric=config.primary_metric,
    ) if not table.empty else None
    timings = {name.removesuffix("_s").replace("_", " "): f"{value:.1f} s" for name, value in seconds.items()}
    timings["generation"] += f" (new answers: {run.times.generated_text()})"
    if ablation is not None:
        timings["ablation"] += f" (new answers: {ablation.generated})"
    extra = beyond_html(document)
    block = summary_html(provenance, cis, gates, plots, timings, "\n".join(filter(None, (judge_block, extra))) or None,
                         samples_table=samples, run_time_s=seconds["total_s"])
    return ReportArtifacts(tuple(plots), document, block)


def write_artifacts(artifacts: ReportArtifacts, report_dir: Path) -> list[Path]:
    """Each plot as PNG, results.json and summary.md (linking the PNGs beside it) into `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for plot in artifacts.plots:
        path = report_dir / plot.filename
        path.write_bytes(plot.png)
        written.append(path)
    written.append(write_results(report_dir / RESULTS_FILE, artifacts.document))
    written.append(write_summary(report_dir / SUMMARY_FILE, artifacts.document))
    return written


__all__ = ["ReportArtifacts", "build_artifacts", "phase_seconds", "write_artifacts"]
