"""Ablation sweeps: which adapter runs form a controlled experiment, and how a metric moves along one.

    adapter dirs  -> SweepRun (settings from adapter_config.json, trainer_state.json,
                     training_run.json)                                           sweep.py
    SweepRuns     -> Sweep (ordered by the swept value; confounds and notes)      sweep.py
    score tables  -> AblationCurve (bootstrap CI per value, best point)           curves.py
    or a CSV      -> records -> AblationCurve (CIs from ci_low_/ci_high_ columns) curves.py
    AblationCurves -> matplotlib Figure                                           figure.py

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
from tunegate.ablation.sweep import VARIABLES, Sweep, SweepRun, describe_sweep, read_sweep_run

__all__ = [
    "VARIABLES", "AblationCurve", "AblationPoint", "Sweep", "SweepRun", "ablation_figure", "curve_from_records",
    "curve_from_scores", "describe_sweep", "metric_columns", "metric_higher_is_better", "read_sweep_run",
    "records_from_csv",
]
