"""Read the Trainer's trainer_state.json into a loss curve, whatever shape real files come in.

Real files are messy: eval logged at other steps than train or once per epoch, entries without a
step, NaN written as a bare token, runs saved mid-training, a best checkpoint chosen by another
metric, num_train_epochs = sys.maxsize. `load_trainer_state` survives all of them (tested on 20
public files) and fails with one clear paragraph when a file cannot be a curve, above all when
there is no eval loss at all. `tunegate.overfitting` judges the curve.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tunegate.errors import TrainingStateError

STATE_FILE = "trainer_state.json"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)$")
_EVAL_BOOKKEEPING = ("_runtime", "_samples_per_second", "_steps_per_second")
_MAX_SANE_EPOCHS = 1e6  # num_train_epochs is sys.maxsize when max_steps drives training


@dataclass(frozen=True, slots=True)
class LossSeries:
    """Loss values logged at training steps, sorted by step (one value per step; NaN kept as NaN)."""

    steps: tuple[int, ...]
    losses: tuple[float, ...]
    epochs: tuple[float | None, ...]

    def __len__(self) -> int:
        return len(self.steps)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(steps, losses) as numpy arrays, for plotting and arithmetic."""
        return np.asarray(self.steps, dtype=float), np.asarray(self.losses, dtype=float)


@dataclass(frozen=True, slots=True)
class LossCurve:
    """The train and validation loss of one run, plus what the Trainer recorded about its best checkpoint.

    `best_global_step` comes from the file or, in older files, from the number in
    `best_model_checkpoint`. `metric_for_best_model` is not stored by the Trainer; it is recovered
    as the eval metric whose value at the best step equals `best_metric` (None if none does).
    `finished` is True when the log ends with the Trainer's end-of-training summary (`train_runtime`),
    which is logged after `load_best_model_at_end` reloads the best checkpoint; checkpoints saved
    mid-training never have it.
    """

    source: Path
    train: LossSeries
    eval: LossSeries
    global_step: int
    max_steps: int | None
    num_train_epochs: float | None
    best_model_checkpoint: str | None
    best_metric: float | None
    best_global_step: int | None
    metric_for_best_model: str | None
    eval_metrics: tuple[str, ...]
    finished: bool
    entries_without_step: int
    eval_loss_key: str = "eval_loss"


# --- loading -------------------------------------------------------------------------------------


def load_trainer_state(
    path: str | Path, *, eval_loss_key: str = "eval_loss", train_loss_key: str = "loss"
) -> LossCurve:
    """Read a trainer_state.json, a checkpoint directory, or a training output directory.

    A directory with its own trainer_state.json uses it; otherwise its latest `checkpoint-N`
    (by N) that has one. Entries without a `step` (Seq2Seq `predict_*`) are counted and skipped;
    when a step is logged twice the first value wins (a later `trainer.evaluate()` at the same step
    measures the reloaded best model, not that step's).

    Raises:
        TrainingStateError: missing file, invalid JSON, no `log_history`, or no eval loss logged.
    """
    file = _resolve_state_file(Path(path))
    state = _read_json(file)
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        found = ", ".join(sorted(state)) if isinstance(state, dict) else type(state).__name__
        raise TrainingStateError(
            f'{file}: no "log_history" list (found: {found}), so this is not a transformers TrainerState. '
            f"Pass the {STATE_FILE} the Trainer writes into every checkpoint-N/ directory, or call "
            f"trainer.save_state() after training to write one into output_dir."
        )
    entries = [entry if isinstance(entry, dict) else {} for entry in history]  # keeps log_history indices
    without_step = sum(1 for entry in entries if "step" not in entry)
    train = _series(entries, train_loss_key, file)
    evals = _series(entries, eval_loss_key, file)
    if not len(evals):
        raise TrainingStateError(_no_eval_message(file, entries, eval_loss_key))
    logged_steps = train.steps + evals.steps
    checkpoint = state.get("best_model_checkpoint") if isinstance(state.get("best_model_checkpoint"), str) else None
    best_step = _int(state.get("best_global_step"))
    if best_step is None and checkpoint:
        match = _CHECKPOINT.search(checkpoint.replace("\\", "/").rstrip("/"))
        best_step = int(match.group(1)) if match else None
    best_metric = _float(state.get("best_metric"))
    epochs = _float(state.get("num_train_epochs"))
    return LossCurve(
        source=file,
        train=train,
        eval=evals,
        global_step=_int(state.get("global_step")) or max(logged_steps),
        max_steps=_int(state.get("max_steps")) or None,
        num_train_epochs=epochs if epochs is not None and 0 < epochs < _MAX_SANE_EPOCHS else None,
        best_model_checkpoint=checkpoint,
        best_metric=best_metric,
        best_global_step=best_step,
        metric_for_best_model=_recover_best_metric_name(entries, best_metric, best_step, eval_loss_key),
        eval_metrics=_eval_metric_names(entries, eval_loss_key),
        finished=any("train_runtime" in entry for entry in entries),
        entries_without_step=without_step,
        eval_loss_key=eval_loss_key,
    )


def _resolve_state_file(path: Path) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        if (path / STATE_FILE).is_file():
            return path / STATE_FILE
        checkpoints = sorted(
            (int(m.group(1)), child)
            for child in path.iterdir()
            if child.is_dir() and (m := _CHECKPOINT.match(child.name)) and (child / STATE_FILE).is_file()
        )
        if checkpoints:
            return checkpoints[-1][1] / STATE_FILE
        raise TrainingStateError(
            f"{path}: no {STATE_FILE} in this directory or in any checkpoint-N/ below it. Pass the Trainer's "
            f"output_dir (it needs save_strategy other than \"no\"), one checkpoint-N/ directory, or the file "
            f"written by trainer.save_state() after training."
        )
    raise TrainingStateError(
        f"{path}: no such file or directory. Point it at the {STATE_FILE} of the run that produced the adapter "
        f"(the Trainer's output_dir, a checkpoint-N/ directory in it, or the file itself)."
    )


def _read_json(file: Path) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TrainingStateError(
            f"{file}: cannot be read as UTF-8 text ({error}). Pass the {STATE_FILE} the Trainer wrote."
        ) from error
    try:
        return json.loads(text)  # accepts the bare NaN / Infinity tokens the Trainer writes
    except json.JSONDecodeError as error:
        raise TrainingStateError(
            f"{file} line {error.lineno} column {error.colno}: not valid JSON ({error.msg}). A run killed while "
            f"saving leaves a truncated file; use the {STATE_FILE} of the previous checkpoint-N/ directory."
        ) from error


def _series(entries: list[dict], key: str, file: Path) -> LossSeries:
    points: dict[int, tuple[float, float | None]] = {}
    for index, entry in enumerate(entries):
        if key not in entry or "step" not in entry:
            continue
        step, loss = _int(entry["step"]), entry[key]
        if step is None or isinstance(loss, bool) or not isinstance(loss, (int, float, type(None))):
            raise TrainingStateError(
                f'{file}: log_history[{index}] has {key}={loss!r} at step={entry["step"]!r}; both must be numbers. '
                f"Fix or remove that entry."
            )
        points.setdefault(step, (math.nan if loss is None else float(loss), _float(entry.get("epoch"))))
    ordered = sorted(points.items())
    return LossSeries(
        steps=tuple(step for step, _ in ordered),
        losses=tuple(loss for _, (loss, _) in ordered),
        epochs=tuple(epoch for _, (_, epoch) in ordered),
    )


def _no_eval_message(file: Path, entries: list[dict], key: str) -> str:
    others = _eval_metric_names(entries, key)
    found = f"eval metrics found: {', '.join(others)}" if others else "no eval metrics at all"
    return (
        f'{file}: log_history has {len(entries)} entries but none with "{key}" ({found}), so there is no '
        f"validation curve to check for overfitting. Pass an eval_dataset to the Trainer and set "
        f'TrainingArguments(eval_strategy="steps", eval_steps=50) (or eval_strategy="epoch"), then train again.'
    )


def _eval_metric_names(entries: list[dict], key: str) -> tuple[str, ...]:
    names = {name for entry in entries for name in entry if name.startswith("eval_") and name != key}
    return tuple(sorted(name for name in names if not name.endswith(_EVAL_BOOKKEEPING)))


def _recover_best_metric_name(entries: list[dict], best: float | None, step: int | None, key: str) -> str | None:
    if best is None or not math.isfinite(best):
        return None
    names = [
        name
        for entry in entries
        if step is None or entry.get("step") == step
        for name, value in entry.items()
        if name.startswith("eval_") and _float(value) is not None and math.isclose(value, best, rel_tol=1e-9)
    ]
    return key if key in names else (names[0] if names else None)


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        return None
    return int(value)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
