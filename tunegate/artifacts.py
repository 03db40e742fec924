"""The report's outputs, built once per session from what the run computed.

    GateRun (computed_* only: building a report never generates or judges)
      -> plots (PNG + caption each)                 tunegate/report.py, overfitting.py, ablation/
      -> results document -> results.json, summary.md   tunegate/results.py
      -> the HTML summary block for pytest-html      tunegate/report.py

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

from tunegate.gates import GateResult
from tunegate.report import (
    Plot,
    baseline_by_sample,
    figure_png,
    mode_metric_cis,
    samples_table_html,
    score_plots,
    summary_html,
)
from tunegate.results import results_document, write_results, write_summary
from tunegate.run import GateRun

RESULTS_FILE = "results.json"
SUMMARY_FILE = "summary.md"
TRAINING_CAPTION = ("Training and validation loss of the adapter's own run, per step. The star marks the best "
                    "validation loss; a divergence, when confirmed, is marked where the gate saw it.")
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
    cis = mode_metric_cis(table, seed=config.seed)
    plots = list(score_plots(table, cis=cis, iters=config.bootstrap_iters, seed=config.seed))
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
    seconds = phase_seconds(run)
    provenance = run.provenance()
    document = results_document(
        provenance=provenance, table=table, gates=gates, gain_checks=run.computed_gain_checks() or (),
        training=training, ablation=ablation, pairwise=run.computed_pairwise(), timings=seconds,
        plots={plot.title: plot.filename for plot in plots}, seed=config.seed,
    )
    document["session"] = {"exit_status": exit_status, "new_answers": dict(run.times.generated)}
    samples = samples_table_html(
        run.samples, run.computed_generations(), table,
        baseline=baseline_by_sample(baseline_scores) if baseline_scores else None,
        primary_metric=config.primary_metric,
    ) if not table.empty else None
    timings = {name.removesuffix("_s").replace("_", " "): f"{value:.1f} s" for name, value in seconds.items()}
    timings["generation"] += f" (new answers: {run.times.generated_text()})"
    if ablation is not None:
        timings["ablation"] += f" (new answers: {ablation.generated})"
    block = summary_html(provenance, cis, gates, plots, timings, judge_block, samples_table=samples,
                         run_time_s=seconds["total_s"])
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
