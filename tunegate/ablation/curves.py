"""Results along a sweep: one point per swept value with its mean and interval, and the best one.

Points come from per-sample score tables (`curve_from_scores`, bootstrap intervals) or from a CSV with
one row per run (`records_from_csv`, the shape of seed 000's ablation step).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tunegate.ablation.sweep import SEED_NAMES, Sweep, format_value, number_or_none
from tunegate.errors import AblationError
from tunegate.scores import COLUMNS, METRIC_LABELS
from tunegate.stats import bootstrap_mean_ci

_RESERVED = ("variable", "value", "label")
_CI_PREFIXES = ("ci_low_", "ci_high_")


@dataclass(frozen=True, slots=True)
class AblationPoint:
    """One swept value's result: the mean of a metric, its interval and n (None where the source has none)."""

    value: float
    mean: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    label: str | None = None

    def __str__(self) -> str:
        ci = f" [{self.ci_low:.3f}, {self.ci_high:.3f}]" if self.ci_low is not None and self.ci_high is not None else ""
        return f"{format_value(self.value)}: {self.mean:.3f}{ci}" + (f" (n={self.n})" if self.n else "")


@dataclass(frozen=True, slots=True)
class AblationCurve:
    """One metric along one swept variable, points ordered by value, with the sweep's confounds and notes."""

    variable: str
    metric: str
    points: tuple[AblationPoint, ...]
    higher_is_better: bool = True
    confounds: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def best(self) -> AblationPoint:
        """Highest mean (lowest when lower is better); a tie goes to the smallest value, the cheaper run."""
        sign = 1.0 if self.higher_is_better else -1.0
        return max(self.points, key=lambda point: (sign * point.mean, -point.value))

    def __str__(self) -> str:
        tail = "; confounded: " + "; ".join(self.confounds) if self.confounds else ""
        return f"{metric_label(self.metric)} along {self.variable}: best {self.best} of {len(self.points)} values{tail}"


def metric_higher_is_better(metric: str) -> bool:
    """False for losses and perplexities (names containing "loss" or "perplexity"), True otherwise."""
    name = metric.lower()
    return not ("loss" in name or "perplexity" in name or name == "ppl")


# --- from a CSV ----------------------------------------------------------------------------------


def records_from_csv(path: str | Path) -> pd.DataFrame:
    """Ablation results with one row per run, in seed 000's shape: `variable, value` and one column per metric.

    Optional columns: `label`, and `ci_low_<metric>`/`ci_high_<metric>` in pairs. Seed 000's variable
    names (`rank`, `epoch`, `data_size`) become `lora_rank`, `epochs`, `train_samples`. An empty metric
    cell is NaN (no result for that run). The index is the CSV line number, so errors can name lines.

    Raises:
        AblationError: no file, no rows, a missing or unpaired column, or a cell that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise AblationError(f"{path}: no such file. Pass the CSV the ablation step wrote (one row per run).")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise AblationError(f"{path}: cannot be read as UTF-8 text ({error}). Pass the ablation results CSV.") from error
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    example = "Write a header and one row per run, e.g. `variable,value,rougeL` then `lora_rank,8,0.41`."
    if not rows:
        raise AblationError(f"{path}: empty file. {example}")
    (_, header), body = rows[0], rows[1:]
    columns = [name.strip() for name in header]
    absent = [name for name in ("variable", "value") if name not in columns]
    if absent or len(set(columns)) < len(columns):
        problem = f'no column "{absent[0]}"' if absent else "a column name appears twice"
        raise AblationError(f"{path} line {rows[0][0]}: {problem} (columns: {', '.join(columns)}). {example}")
    metrics = [name for name in columns if name not in _RESERVED and not name.startswith(_CI_PREFIXES)]
    if not metrics:
        raise AblationError(f"{path}: no metric column besides {', '.join(columns)}. {example}")
    for name in columns:
        if name.startswith(_CI_PREFIXES):
            metric = name.split("_", 2)[2]
            partner = ("ci_high_" if name.startswith("ci_low_") else "ci_low_") + metric
            if metric not in metrics or partner not in columns:
                raise AblationError(f'{path}: column "{name}" needs a metric column "{metric}" and a "{partner}" '
                                    "column beside it.")
    if not body:
        raise AblationError(f"{path}: a header but no rows. {example}")
    records = []
    for line, row in body:
        if len(row) != len(columns):
            raise AblationError(f"{path} line {line}: {len(row)} cells, the header has {len(columns)}. "
                                "Quote cells that contain commas.")
        cells = {name: cell.strip() for name, cell in zip(columns, row)}
        if not cells["variable"]:
            raise AblationError(f'{path} line {line}: "variable" is empty. Name the swept setting, e.g. lora_rank.')
        record: dict[str, Any] = {name: _cell(path, line, name, cells[name]) for name in columns if name not in _RESERVED}
        record.update(variable=SEED_NAMES.get(cells["variable"], cells["variable"]),
                      value=_cell(path, line, "value", cells["value"], required=True))
        if "label" in cells:
            record["label"] = cells["label"] or None
        for metric in metrics:
            low, high = record.get(f"ci_low_{metric}"), record.get(f"ci_high_{metric}")
            if low is not None and high is not None and (math.isnan(low) != math.isnan(high) or low > high):
                raise AblationError(f"{path} line {line}: ci_low_{metric} = {low:g} and ci_high_{metric} = {high:g}; "
                                    "give both, with low ≤ high.")
        records.append(record)
    frame = pd.DataFrame(records, index=pd.Index([line for line, _ in body], name="line"))
    return frame[[name for name in columns if name in frame.columns]]


def metric_columns(records: pd.DataFrame) -> tuple[str, ...]:
    """The metric columns of a `records_from_csv` frame, in file order."""
    return tuple(name for name in records.columns if name not in _RESERVED and not name.startswith(_CI_PREFIXES))


def curve_from_records(
    records: pd.DataFrame, variable: str, metric: str, *, higher_is_better: bool | None = None, sweep: Sweep | None = None
) -> AblationCurve:
    """One metric along one variable from a `records_from_csv` frame; CIs from its ci_low_/ci_high_ columns.

    Args:
        higher_is_better: None infers it from the name (`metric_higher_is_better`).
        sweep: the runs behind the rows: their confounds and notes travel with the curve.

    Raises:
        AblationError: no such metric or variable, two rows with the same value, or no row with a result.
    """
    variable = SEED_NAMES.get(variable, variable)
    if metric not in metric_columns(records):
        raise AblationError(f'no metric "{metric}" in the records (metrics: {", ".join(metric_columns(records))}).')
    rows = records[records["variable"] == variable]
    if rows.empty:
        raise AblationError(f'no rows with variable "{variable}" (variables: {", ".join(sorted(set(records["variable"])))}).')
    twice = rows[rows["value"].duplicated(keep=False)]
    if len(twice):
        raise AblationError(f"{variable} = {format_value(twice['value'].iloc[0])} on {len(twice)} rows (lines "
                            f"{', '.join(map(str, twice.index))}): keep one row per value.")
    if sweep is not None and (sweep.variable != variable or set(sweep.values) != set(rows["value"])):
        raise AblationError(f"the sweep's {sweep.variable} values {sorted(sweep.values)} do not match the records' "
                            f"{variable} values {sorted(rows['value'])}: pass the sweep of the runs these rows describe.")
    rows = rows[rows[metric].notna()].sort_values("value")
    if rows.empty:
        raise AblationError(f'every "{metric}" cell is empty for variable "{variable}".')
    low, high = f"ci_low_{metric}", f"ci_high_{metric}"
    points = tuple(
        AblationPoint(float(row["value"]), float(row[metric]), number_or_none(row.get(low)),
                      number_or_none(row.get(high)), None, row.get("label") if isinstance(row.get("label"), str) else None)
        for _, row in rows.iterrows()
    )
    return _curve(variable, metric, points, higher_is_better, sweep)


# --- from per-sample scores ----------------------------------------------------------------------


def curve_from_scores(
    sweep: Sweep,
    scores: Mapping[str, pd.DataFrame],
    metric: str,
    *,
    mode: str = "finetuned",
    higher_is_better: bool | None = None,
    iters: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> AblationCurve:
    """Mean and bootstrap interval of `metric` for each run of the sweep, from each run's long score table.

    Args:
        scores: run label -> that run's table (`sample_id, mode, metric, value`).
        mode: whose rows to read; "finetuned" holds the adapter's answers.
        higher_is_better: None infers it from the name (`metric_higher_is_better`).
        iters, confidence, seed: for `bootstrap_mean_ci`; every run uses the same seed.

    Raises:
        AblationError: a run without a table or rows, a repeated sample id, NaN scores, or runs scored
            on different samples (their means would not be comparable).
    """
    points, samples = [], {}
    for run, value in zip(sweep.runs, sweep.values):
        table = scores.get(run.label)
        if table is None or set(COLUMNS) - set(table.columns):
            found = "no table" if table is None else f"columns {', '.join(map(str, table.columns))}"
            raise AblationError(f"run {run.label} ({run.adapter_dir}): {found}; scores needs a long table "
                                f"({', '.join(COLUMNS)}) for every run, keyed by label (has: {', '.join(sorted(scores))}).")
        rows = table[(table["mode"] == mode) & (table["metric"] == metric)].sort_values("sample_id")
        if rows.empty or rows["sample_id"].duplicated().any():
            modes, metrics = ", ".join(sorted(set(table["mode"]))), ", ".join(sorted(set(table["metric"])))
            problem = "repeats a sample_id" if len(rows) else f"has no rows (modes: {modes}; metrics: {metrics})"
            raise AblationError(f'run {run.label}: mode "{mode}", metric "{metric}" {problem}. Score each sample once.')
        samples[run.label] = set(rows["sample_id"])
        try:
            ci = bootstrap_mean_ci(rows["value"].to_numpy(dtype=float), iters=iters, confidence=confidence, seed=seed)
        except ValueError as error:
            raise AblationError(f'run {run.label}, metric "{metric}": {error}') from error
        points.append(AblationPoint(float(value), ci.mean, ci.ci_low, ci.ci_high, ci.n, run.label))
    first, *others = sweep.runs
    for run in others:
        if samples[run.label] != samples[first.label]:
            raise AblationError(
                f"run {run.label} was scored on {len(samples[run.label])} samples and {first.label} on "
                f"{len(samples[first.label])} ({len(samples[run.label] & samples[first.label])} in common): "
                "score every run on the same eval set."
            )
    return _curve(sweep.variable, metric, tuple(points), higher_is_better, sweep)


# --- small readers -------------------------------------------------------------------------------


def _curve(
    variable: str, metric: str, points: tuple[AblationPoint, ...], higher: bool | None, sweep: Sweep | None
) -> AblationCurve:
    higher = metric_higher_is_better(metric) if higher is None else higher
    return AblationCurve(variable, metric, points, higher, sweep.confounds if sweep else (), sweep.notes if sweep else ())


def _cell(path: Path, line: int, column: str, cell: str, *, required: bool = False) -> float:
    if not cell and not required:
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AblationError(f'{path} line {line}: column "{column}" is {cell!r}, not a number. Write a plain number '
                            f"(0.41, with a dot){'' if required else ', or leave the cell empty when there is no result'}.")
    return value


def metric_label(metric: str) -> str:
    """The display name from tunegate.scores (ROUGE-L for rougeL), else the metric's own name."""
    return METRIC_LABELS.get(metric, metric)
