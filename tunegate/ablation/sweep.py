"""Which adapter runs form one controlled experiment: their settings, their order, what else differs.

An ablation changes one setting (LoRA rank, lora_alpha, epochs, training samples) and holds the rest;
a run that differs in more than that cannot be attributed to the swept setting (seed 000: change one
variable at a time). Settings come from the files a run leaves beside its adapter; no weights are read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.errors import AblationError
from tunegate.training_state import STATE_FILE

CONFIG_FILE = "adapter_config.json"
RUN_FILE = "training_run.json"  # written by fixtures/demo/train_adapter.py next to the adapter
VARIABLES = {"lora_rank": "LoRA rank r", "lora_alpha": "lora_alpha", "epochs": "epochs trained",
             "train_samples": "training samples"}
SEED_NAMES = {"rank": "lora_rank", "epoch": "epochs", "data_size": "train_samples"}  # seed 000's CSV names
_SOURCES = {
    "lora_rank": f'"r" in {CONFIG_FILE}', "lora_alpha": f'"lora_alpha" in {CONFIG_FILE}',
    "epochs": f"{STATE_FILE} next to the adapter", "train_samples": f'"train_samples" in {RUN_FILE}',
    "base_model": f'"base_model_name_or_path" in {CONFIG_FILE}', "target_modules": f'"target_modules" in {CONFIG_FILE}',
    "lora_dropout": f'"lora_dropout" in {CONFIG_FILE}', "peft_type": f'"peft_type" in {CONFIG_FILE}',
    "use_rslora": f'"use_rslora" in {CONFIG_FILE}', "use_dora": f'"use_dora" in {CONFIG_FILE}',
}
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")


@dataclass(frozen=True, slots=True)
class AblationConfig:
    """`[tool.tunegate.ablation]`: the runs of one sweep (or a results CSV) and what to score them on.

    Exactly one source: `adapters` (every run is generated on the session's one loaded base and
    scored like the finetuned mode) or `results_csv` (seed 000's table of results computed elsewhere).
    """

    variable: str | None = None  # None: no ablation configured
    adapters: tuple[Path, ...] = ()
    results_csv: Path | None = None
    metrics: tuple[str, ...] = ()  # () : the run's configured metrics (adapters) or every CSV metric column

    @property
    def enabled(self) -> bool:
        return self.variable is not None


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One trained adapter and the settings an ablation compares; None where the run did not record one."""

    adapter_dir: Path
    label: str
    lora_rank: int | None
    lora_alpha: float | None
    target_modules: tuple[str, ...] | str | None  # sorted names, or peft's string form ("all-linear", a regex)
    lora_dropout: float | None
    base_model: str | None
    peft_type: str | None
    use_rslora: bool
    use_dora: bool
    epochs: float | None  # the last epoch the Trainer logged (fractional when max_steps ended training)
    train_samples: int | None


@dataclass(frozen=True, slots=True)
class Sweep:
    """The runs of one ablation, ordered by the swept value, with what else differs between them.

    `confounds` name settings other than `variable` that differ between runs: an effect along the sweep
    cannot be attributed to `variable` alone. `notes` are facts that do not break attribution: lora_alpha
    scaling with rank (constant alpha/r, see `describe_sweep`), alpha held fixed in a rank sweep, a setting
    some runs did not record.
    """

    variable: str
    runs: tuple[SweepRun, ...]
    confounds: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def values(self) -> tuple[float, ...]:
        return tuple(getattr(run, self.variable) for run in self.runs)

    @property
    def confounded(self) -> bool:
        return bool(self.confounds)

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.confounds + self.notes

    def __str__(self) -> str:
        runs = ", ".join(f"{format_value(value)} ({run.label})" for value, run in zip(self.values, self.runs))
        tail = "; confounded: " + "; ".join(self.confounds) if self.confounds else "; nothing else differs"
        return f"{self.variable} sweep of {len(self.runs)} runs: {runs}{tail}"


def read_sweep_run(adapter_dir: str | Path, *, label: str | None = None) -> SweepRun:
    """Settings of one run from its adapter directory; `label` defaults to the directory's name.

    Reads adapter_config.json (required), trainer_state.json in the directory or its latest
    checkpoint-N/ (epochs) and training_run.json (train_samples), both optional. Adapter weights are
    not required: every compared setting is in these files, and scoring checks the weights.

    Raises:
        AblationError: no directory, adapter_config.json missing or not a JSON object, a field of the
            wrong type, or an optional file that exists but is not valid JSON.
    """
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise AblationError(
            f"{adapter_dir}: no such directory. Pass, for each run of the sweep, the folder that "
            f"PeftModel.save_pretrained wrote (it holds {CONFIG_FILE})."
        )
    file = adapter_dir / CONFIG_FILE
    if not file.is_file():
        found = ", ".join(sorted(child.name for child in adapter_dir.iterdir())[:12]) or "nothing"
        raise AblationError(
            f"{file}: missing (found: {found}). Point at the adapter folder of the run itself, the one "
            f"PeftModel.save_pretrained (or Trainer.save_model) wrote, or copy the run's {CONFIG_FILE} back."
        )
    config = _read_object(file, f"Save the adapter again with PeftModel.save_pretrained to rewrite {CONFIG_FILE}.")
    modules = config.get("target_modules")
    if isinstance(modules, (list, tuple)) and all(isinstance(name, str) for name in modules):
        modules = tuple(sorted(set(modules)))
    elif modules is not None and not isinstance(modules, str):
        raise AblationError(f'{file}: "target_modules" is {modules!r}; peft writes a list of module names or a string.')
    return SweepRun(
        adapter_dir=adapter_dir,
        label=label or adapter_dir.resolve().name,
        lora_rank=_field(config, "r", int, file),
        lora_alpha=_field(config, "lora_alpha", float, file),
        target_modules=modules,
        lora_dropout=_field(config, "lora_dropout", float, file),
        base_model=_field(config, "base_model_name_or_path", str, file),
        peft_type=_field(config, "peft_type", str, file),
        use_rslora=bool(config.get("use_rslora")),
        use_dora=bool(config.get("use_dora")),
        epochs=_epochs(adapter_dir),
        train_samples=_train_samples(adapter_dir),
    )


def run_labels(adapter_dirs: Iterable[str | Path]) -> tuple[str, ...]:
    """A short, unique name per run: the folder's name, or as many parent folders as make it unique.

    Sweeps are often laid out as runs/r8/adapter, runs/r16/adapter: the last part alone would
    repeat, "r8/adapter" does not.
    """
    parts = [Path(d).resolve().parts for d in adapter_dirs]
    depth = 1
    while True:
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels) or depth >= max((len(p) for p in parts), default=1):
            return tuple(labels)
        depth += 1


def describe_sweep(runs: Iterable[SweepRun], variable: str) -> Sweep:
    """Order runs by `variable` and name every other setting that differs between them.

    In a rank sweep where lora_alpha changes with the rank at a constant ratio (alpha = 2 × r, the
    demo's default), this is one note, not a confound: peft scales the update by alpha/r, so a constant
    ratio holds the scaling fixed and leaves the rank as the one change; a fixed alpha is a note too.
    Any other change of lora_alpha in a rank sweep is a confound.

    Raises:
        AblationError: an unknown variable, fewer than 2 runs, a duplicate label, a run without a value
            for `variable`, or two runs with the same value of it.
    """
    variable = _variable(variable, VARIABLES)
    runs = tuple(runs)
    if len(runs) < 2:
        raise AblationError(f"a {variable} sweep needs at least 2 runs, got {len(runs)}. "
                            "Pass one adapter directory per value.")
    labels = [run.label for run in runs]
    if len(set(labels)) < len(labels):
        twice = sorted({label for label in labels if labels.count(label) > 1})
        raise AblationError(f"run label {twice[0]!r} is used twice; pass label= to read_sweep_run "
                            "so each run is named once.")
    unknown = [run for run in runs if getattr(run, variable) is None]
    if unknown:
        raise AblationError(
            f"{variable} is not recorded for {', '.join(f'{run.label} ({run.adapter_dir})' for run in unknown)}: it comes "
            f"from {_SOURCES[variable]}. Write it for every run, or sweep another variable."
        )
    by_value: dict[float, list[SweepRun]] = {}
    for run in runs:
        by_value.setdefault(getattr(run, variable), []).append(run)
    for value, clash in by_value.items():
        if len(clash) > 1:
            differ = [name for name in VARIABLES if name != variable and len({getattr(run, name) for run in clash}) > 1]
            raise AblationError(
                f"{variable} = {format_value(value)} in {len(clash)} runs: "
                f"{', '.join(f'{run.label} ({run.adapter_dir})' for run in clash)}. "
                f"A sweep needs one run per value of {variable}: keep one of them"
                + (f", or sweep {' or '.join(differ)}, which differ between them." if differ else ".")
            )
    ordered = tuple(sorted(runs, key=lambda run: getattr(run, variable)))
    confounds: list[str] = []
    notes: list[str] = []
    for setting in _SOURCES:
        if setting == variable:
            continue
        if setting == "lora_alpha" and variable == "lora_rank" and (note := _alpha_note(ordered)):
            notes.append(note)
            continue
        known = [run for run in ordered if getattr(run, setting) is not None]
        if len({getattr(run, setting) for run in known}) > 1:
            confounds.append(f"{setting} differs: {_by_value(known, setting)}")
        missing = [run.label for run in ordered if getattr(run, setting) is None]
        if missing and setting in VARIABLES:
            notes.append(f"{setting} not recorded for {', '.join(missing)} (no {_SOURCES[setting]}): "
                         "cannot check that it was held fixed")
    return Sweep(variable, ordered, tuple(confounds), tuple(notes))


def _alpha_note(runs: tuple[SweepRun, ...]) -> str | None:
    if any(run.lora_alpha is None or not run.lora_rank for run in runs):
        return None
    alphas = [run.lora_alpha for run in runs]
    ratios = [run.lora_alpha / run.lora_rank for run in runs]
    rslora = " (use_rslora: the applied scaling is alpha/sqrt(r))" if any(run.use_rslora for run in runs) else ""
    if len(set(alphas)) == 1:
        return (f"lora_alpha is fixed at {format_value(alphas[0])} while the rank varies, so the scaling alpha/r "
                f"falls from {format_value(ratios[0])} to {format_value(ratios[-1])}{rslora}: rank and scaling change "
                "together (a common choice, noted rather than counted as a confound)")
    if all(math.isclose(ratio, ratios[0], rel_tol=1e-9) for ratio in ratios):
        return (f"lora_alpha scales with rank: alpha = {format_value(ratios[0])} × r in every run "
                f"({_by_value(runs, 'lora_alpha')}), so the scaling alpha/r stays {format_value(ratios[0])}{rslora}: "
                "a deliberate choice, not counted as a confound")
    return None


# --- small readers -------------------------------------------------------------------------------


def _variable(name: str, allowed: Mapping[str, str]) -> str:
    name = SEED_NAMES.get(name, name)
    if name not in allowed:
        raise AblationError(f"cannot sweep {name!r}: the settings read from adapter runs are {', '.join(allowed)}.")
    return name


def _read_object(file: Path, fix: str) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise AblationError(f"{file}: cannot be read as UTF-8 text ({error}). {fix}") from error
    except json.JSONDecodeError as error:
        where = f"{file} line {error.lineno} column {error.colno}"
        raise AblationError(f"{where}: not valid JSON ({error.msg}). {fix}") from error
    if not isinstance(data, dict):
        raise AblationError(f"{file}: a JSON {type(data).__name__}, not an object. {fix}")
    return data


def _field(config: dict, key: str, kind: type, file: Path) -> Any:
    value = config.get(key)
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str and isinstance(value, str):
        return value
    if kind is float and number and value >= 0:
        return float(value)
    if kind is int and number and value == int(value) and value > 0:
        return int(value)
    wanted = {str: "a string", float: "a non-negative number", int: "a positive integer"}[kind]
    raise AblationError(f'{file}: "{key}" is {value!r}, not {wanted}. Fix the field, or save the adapter again.')


def _epochs(adapter_dir: Path) -> float | None:
    file = adapter_dir / STATE_FILE
    if not file.is_file():  # the Trainer's output_dir: its latest checkpoint-N/ (as load_trainer_state)
        found = sorted((int(m.group(1)), child / STATE_FILE) for child in adapter_dir.iterdir()
                       if (m := _CHECKPOINT.match(child.name)) and (child / STATE_FILE).is_file())
        if not found:
            return None
        file = found[-1][1]
    state = _read_object(file, f"Use the {STATE_FILE} of an earlier checkpoint-N/, or delete this one.")
    history = state.get("log_history") if isinstance(state.get("log_history"), list) else []
    logged = [entry["epoch"] for entry in history
              if isinstance(entry, dict) and number_or_none(entry.get("epoch")) is not None]
    if logged:
        return round(float(logged[-1]), 4)
    total = number_or_none(state.get("num_train_epochs"))
    return total if total is not None and 0 < total < 1e6 else None  # sys.maxsize when max_steps drives training


def _train_samples(adapter_dir: Path) -> int | None:
    file = adapter_dir / RUN_FILE
    if not file.is_file():
        return None
    return _field(_read_object(file, f"Write {RUN_FILE} again, or delete it."), "train_samples", int, file)


def _by_value(runs: Iterable[SweepRun], setting: str) -> str:
    groups: dict[Any, list[str]] = {}
    for run in runs:
        groups.setdefault(getattr(run, setting), []).append(run.label)
    return ", ".join(f"{format_value(value)} ({', '.join(labels)})" for value, labels in groups.items())


def format_value(value: Any) -> str:
    """A setting as a reader writes it: 8 not 8.0, module lists in brackets."""
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def number_or_none(value: object) -> float | None:
    """A finite number as float, anything else (None, NaN, text, bools) as None."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None
