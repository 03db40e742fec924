"""Ablation sweeps: which adapter runs form a controlled experiment, and how a metric moves along one.

    adapter dirs  -> SweepRun (settings from adapter_config.json, trainer_state.json,
                     training_run.json)                                           sweep.py
    SweepRuns     -> Sweep (ordered by the swept value; confounds and notes)      sweep.py
    score tables  -> AblationCurve (bootstrap CI per value, best point)           curves.py
    or a CSV      -> records -> AblationCurve (CIs from ci_low_/ci_high_ columns) curves.py
    AblationCurves -> matplotlib Figure                                           figure.py
    curves (+ per-sample tables) -> best vs smallest value, the gate's verdict    verdict.py

Generating a sweep's answers (every adapter on the session's one loaded base) is GateRun.ablation().

No model is loaded here; matplotlib is imported only when a figure is drawn.
"""

from tunegate.ablation.curves import (
    AblationCurve,
    AblationPoint,
    curve_from_records,
    curve_from_scores,
    metric_columns,
    metric_higher_is_better,
    records_from_csv,
)
from tunegate.ablation.figure import ablation_figure
from tunegate.ablation.sweep import (
    VARIABLES,
    AblationConfig,
    Sweep,
    SweepRun,
    describe_sweep,
    read_sweep_run,
    run_labels,
)
from tunegate.ablation.verdict import AblationResult, CheapestCheck, ablation_gate, cheapest_checks

__all__ = [
    "VARIABLES", "AblationConfig", "AblationResult", "CheapestCheck", "ablation_gate", "cheapest_checks",
    "run_labels", "AblationCurve", "AblationPoint", "Sweep", "SweepRun", "ablation_figure", "curve_from_records",
    "curve_from_scores", "describe_sweep", "metric_columns", "metric_higher_is_better", "read_sweep_run",
    "records_from_csv",
]
