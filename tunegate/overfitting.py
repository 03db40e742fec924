"""Overfitting: read the Trainer's trainer_state.json and judge the validation-loss curve.

A fine-tune that trained past its best checkpoint ships a model that generalises worse than one it
already had. The Trainer logs everything needed to see that (`log_history` in trainer_state.json),
so the gate reads it: `load_trainer_state` -> `LossCurve`, `detect_divergence` -> `Divergence`,
`training_health` -> problems, `shipped_checkpoint_verdict` -> `CheckpointVerdict` (what the
plugin asserts on), `loss_curve_figure` for the report. Pure numpy; matplotlib is imported lazily.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from tunegate.training_state import STATE_FILE, LossCurve, LossSeries, load_trainer_state  # noqa: F401  (re-exported)


@dataclass(frozen=True, slots=True)
class Divergence:
    """Validation loss rose past its best while training loss did not: the run memorised its train set."""

    best_step: int
    best_epoch: float | None
    best_eval_loss: float
    confirmed_step: int
    confirmed_epoch: float | None
    final_step: int
    final_eval_loss: float
    final_train_loss: float | None
    gap: float | None  # final eval loss − train loss around the final evaluation
    patience: int
    min_delta: float
    advice: str
    eval_loss_key: str = "eval_loss"

    def __str__(self) -> str:
        best, final = self.best_eval_loss, self.final_eval_loss
        rise = (final - best) / abs(best) if best else math.inf
        gap = "" if self.gap is None else f", train/val gap {self.gap:.3f}"
        return (
            f"validation loss diverged: best {self.eval_loss_key} {best:.4f} at step {self.best_step}, rising for "
            f"{self.patience}+ evaluations (confirmed at step {self.confirmed_step}{_epoch(self.confirmed_epoch)}), "
            f"final {final:.4f} at step {self.final_step} ({rise:+.1%}){gap}"
        )


@dataclass(frozen=True, slots=True)
class CheckpointVerdict:
    """Whether the checkpoint that ships is a good one on the evidence of its own training curve."""

    passed: bool
    message: str
    shipped_step: int
    shipped_eval_loss: float | None
    divergence: Divergence | None
    health: tuple[str, ...]

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}: {self.message}"

    def __repr__(self) -> str:
        # What pytest's assertion rewriting prints ("where False = <...>.passed"): keep it one line.
        return f"<{'PASS' if self.passed else 'FAIL'} shipped step {self.shipped_step}>"


# --- detection -----------------------------------------------------------------------------------


def detect_divergence(
    curve: LossCurve,
    *,
    patience: int = 3,
    min_delta: float | None = None,
    smoothing: Literal["median3", "none"] = "median3",
) -> Divergence | None:
    """The confirmed divergence still under way at the end of the run, or None.

    Divergence: the (smoothed) eval loss stays more than `min_delta` above its best for `patience`
    consecutive evaluations up to the last one, while the train loss around those evaluations has
    not risen by more than 25% since the best (train loss averaged between evaluations still
    wobbles by up to ~20% in real runs; instabilities multiply it); a rise of both is instability,
    which `training_health` reports. A run whose eval loss came back within `min_delta` of its
    best has not diverged.

    `min_delta` None means max(1e-3, 1% of the best): scale-free, and above the eval-to-eval wiggle
    of a plateau (0.1-0.5% in the real runs of fixtures/trainer_states: a fixed validation set
    has no sampling noise), well below real overfitting (+10% to +70% there); the 1e-3 floor keeps
    near-zero losses from tripping on rounding. `median3` is a centred running median of three
    (ends unchanged): it removes a one-evaluation spike or lucky dip entirely, so neither a spike
    nor a lucky low "best" starts a streak, and unlike an EMA it leaves a monotone rise exactly
    as it is. The smoothed curve decides whether the run diverged; the raw one, when they agree,
    dates the confirmation as EarlyStoppingCallback counts: `patience` evaluations after the best.
    """
    if patience < 1:
        raise ValueError(f"patience must be at least 1, got {patience}")
    if smoothing not in ("median3", "none"):
        raise ValueError(f'smoothing must be "median3" or "none", got {smoothing!r}')
    steps, losses, epochs = _finite_eval(curve)
    if len(losses) < patience + 1:
        return None
    smooth = _median3(losses) if smoothing == "median3" else losses
    smoothed_start = _final_streak(smooth, min_delta)
    if smoothed_start is None or len(losses) - smoothed_start < patience:
        return None
    raw_start = _final_streak(losses, min_delta)
    first = raw_start if raw_start is not None and len(losses) - raw_start >= patience else smoothed_start
    train_at = _train_loss_at(curve, steps)
    for confirm in range(first + patience - 1, len(losses)):
        best_index = int(np.argmin(losses[:confirm]))
        before, after = train_at[best_index], train_at[confirm]
        if math.isnan(before) or math.isnan(after) or after <= before + max(1e-3, 0.25 * abs(before)):
            break
    else:
        return None
    final_train = None if math.isnan(train_at[-1]) else float(train_at[-1])
    best_step = int(steps[best_index])
    return Divergence(
        best_step=best_step,
        best_epoch=epochs[best_index],
        best_eval_loss=float(losses[best_index]),
        confirmed_step=int(steps[confirm]),
        confirmed_epoch=epochs[confirm],
        final_step=int(steps[-1]),
        final_eval_loss=float(losses[-1]),
        final_train_loss=final_train,
        gap=None if final_train is None else float(losses[-1]) - final_train,
        patience=patience,
        min_delta=float(min_delta if min_delta is not None else _relative_delta(losses[best_index])),
        advice=(
            f"stop at step {best_step}{_epoch(epochs[best_index])}: train with load_best_model_at_end=True, "
            f'metric_for_best_model="{curve.eval_loss_key}", save_strategy equal to eval_strategy (save_steps = '
            f"eval_steps) and callbacks=[EarlyStoppingCallback(early_stopping_patience={patience})], so the Trainer "
            f"keeps step {best_step} and stops after {patience} evaluations without improvement"
        ),
        eval_loss_key=curve.eval_loss_key,
    )


def training_health(curve: LossCurve) -> list[str]:
    """What is broken in the run regardless of overfitting (empty list: nothing).

    NaN or infinite train or eval loss (with the first step), and exploding train loss: a running
    median (window 5% of the log, at least 3) that climbs to more than 3x its lowest earlier
    value, or one value 100x above it. Rises smaller than half the starting loss (the first
    window's median) are ignored: a loss near zero after memorisation triples in noise alone.
    """
    problems = []
    for name, series in (("train", curve.train), ("eval", curve.eval)):
        steps, losses = series.arrays()
        for label, bad in (("NaN", np.isnan(losses)), ("infinite", np.isinf(losses))):
            if bad.any():
                problems.append(
                    f"{name} loss is {label} from step {int(steps[bad][0])} ({int(bad.sum())} of {len(losses)} logged "
                    f"values): lower the learning rate, keep max_grad_norm clipping on, or train in bf16 instead of fp16"
                )
    explosion = _explosion(curve.train)
    if explosion:
        problems.append(explosion)
    return problems


def _explosion(train: LossSeries) -> str | None:
    steps, losses = train.arrays()
    finite = np.isfinite(losses)
    steps, losses = steps[finite], losses[finite]
    window = max(3, len(losses) // 20)
    if len(losses) < window + 1:
        return None
    rolling = np.median(np.lib.stride_tricks.sliding_window_view(losses, window), axis=1)
    lowest = np.minimum.accumulate(rolling)
    floor = 0.5 * abs(rolling[0])
    sustained = (rolling > 3 * lowest) & (rolling - lowest > floor) & (lowest > 0)
    spike = (losses[window:] > 100 * lowest[:-1]) & (losses[window:] - lowest[:-1] > floor) & (lowest[:-1] > 0)
    if sustained.any():
        j = int(np.argmax(sustained))
        low_at = int(steps[int(np.argmin(rolling[: j + 1])) + window - 1])
        return (
            f"train loss exploded: its running median rose from {lowest[j]:.4g} (step {low_at}) to {rolling[j]:.4g} "
            f"by step {int(steps[j + window - 1])} ({rolling[j] / lowest[j]:.1f}x): lower the learning rate or add warmup"
        )
    if spike.any():
        j = int(np.argmax(spike))
        return (
            f"train loss exploded: {losses[j + window]:.4g} at step {int(steps[j + window])}, "
            f"{losses[j + window] / lowest[j]:.0f}x its running median before: lower the learning rate or add warmup"
        )
    return None


def _final_streak(values: np.ndarray, min_delta: float | None) -> int | None:
    """Index where the run of values above their running best (+ min delta) that reaches the end began."""
    best, start = values[0], None
    for i, value in enumerate(values[1:], start=1):
        if value > best + (min_delta if min_delta is not None else _relative_delta(best)):
            start = i if start is None else start
        else:
            start, best = None, min(best, value)
    return start


def _relative_delta(best: float) -> float:
    return max(1e-3, 0.01 * abs(best))


def _finite_eval(curve: LossCurve) -> tuple[np.ndarray, np.ndarray, list[float | None]]:
    steps, losses = curve.eval.arrays()
    keep = np.isfinite(losses)
    return steps[keep], losses[keep], [epoch for epoch, k in zip(curve.eval.epochs, keep) if k]


def _median3(values: np.ndarray) -> np.ndarray:
    smooth = values.copy()
    if len(values) >= 3:
        smooth[1:-1] = np.median(np.stack([values[:-2], values[1:-1], values[2:]]), axis=0)
    return smooth


def _train_loss_at(curve: LossCurve, eval_steps: np.ndarray) -> np.ndarray:
    """Mean finite train loss logged since the previous evaluation; interpolated where none was logged."""
    steps, losses = curve.train.arrays()
    keep = np.isfinite(losses)
    steps, losses = steps[keep], losses[keep]
    result = np.full(len(eval_steps), np.nan)
    if not len(losses):
        return result
    previous = -math.inf
    for i, step in enumerate(eval_steps):
        inside = (steps > previous) & (steps <= step)
        result[i] = losses[inside].mean() if inside.any() else np.interp(step, steps, losses)
        previous = step
    return result


def _epoch(epoch: float | None) -> str:
    return "" if epoch is None else f" (epoch {epoch:.1f})"


# --- the gate ------------------------------------------------------------------------------------


def shipped_checkpoint_verdict(
    curve: LossCurve, divergence: Divergence | None, shipped_step: int | None = None
) -> CheckpointVerdict:
    """Fails when training was unhealthy, or when the shipped checkpoint comes from after a confirmed divergence.

    `shipped_step` None means: the best checkpoint when `best_model_checkpoint` is set and the log
    ends with the end-of-training summary (load_best_model_at_end reloads it before that summary),
    else `global_step`. Its eval loss is the one logged at that step, or the latest before it.
    A shipped checkpoint within `min_delta` of the best eval loss passes even after divergence.
    """
    step, how = _shipped_step(curve, shipped_step)
    steps, losses, _ = _finite_eval(curve)
    before = np.flatnonzero(steps <= step)
    shipped_loss = float(losses[before[-1]]) if len(before) else None
    health = tuple(training_health(curve))
    key = curve.eval_loss_key
    shipped = f"shipped step {step} ({how})"
    loss_text = "" if shipped_loss is None else f", {key} {shipped_loss:.4f}"

    def verdict(passed: bool, message: str) -> CheckpointVerdict:
        return CheckpointVerdict(passed, message, step, shipped_loss, divergence, health)

    if health:
        return verdict(False, f"training is unhealthy: {'; '.join(health)}")
    if divergence is None:
        if not len(losses):
            return verdict(True, f"{shipped}: no finite {key} logged")
        best = int(np.argmin(losses))
        rise = (losses[-1] - losses[best]) / abs(losses[best]) if losses[best] else 0.0
        return verdict(
            True,
            f"no divergence over {len(losses)} evaluations: best {key} {losses[best]:.4f} at step {int(steps[best])}, "
            f"final {losses[-1]:.4f} at step {int(steps[-1])} ({rise:+.1%}); {shipped}{loss_text}",
        )
    close_to_best = shipped_loss is not None and shipped_loss <= divergence.best_eval_loss + divergence.min_delta
    if step >= divergence.confirmed_step and not close_to_best:
        return verdict(False, f"{shipped}{loss_text} comes after the divergence: {divergence}; {divergence.advice}")
    where = "is the best checkpoint" if close_to_best else "precedes the confirmed divergence"
    return verdict(True, f"{shipped}{loss_text} {where}; {divergence}")


def _shipped_step(curve: LossCurve, shipped_step: int | None) -> tuple[int, str]:
    if shipped_step is not None:
        return shipped_step, "as given"
    if curve.best_global_step is not None and curve.finished:
        metric = curve.metric_for_best_model
        chosen = "" if metric in (None, curve.eval_loss_key) else f" chosen by {metric}"
        return curve.best_global_step, f"best_model_checkpoint{chosen}, as load_best_model_at_end reloads it"
    return curve.global_step, "the last step"


# --- the picture ---------------------------------------------------------------------------------


def loss_curve_figure(curve: LossCurve, divergence: Divergence | None = None) -> Any:
    """Train and eval loss against step, best and divergence marked; 900 px wide. The caller closes it.

    Non-finite losses are left out of the lines and marked as red crosses along the bottom edge.
    A log scale is used when the values span more than two decades (train and eval on other scales).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=100)
    train_steps, train = curve.train.arrays()
    eval_steps, evals = curve.eval.arrays()
    dense = len(train) > 300
    if len(train):
        ax.plot(train_steps, np.where(np.isfinite(train), train, np.nan), color="tab:blue",
                alpha=0.55 if dense else 0.9, linewidth=0.8 if dense else 1.4, marker=None if dense else ".",
                label="train loss")
    ax.plot(eval_steps, np.where(np.isfinite(evals), evals, np.nan), color="tab:orange", linewidth=1.8,
            marker="o" if len(evals) <= 120 else None, markersize=4, label=curve.eval_loss_key)
    bad = np.concatenate([train_steps[~np.isfinite(train)], eval_steps[~np.isfinite(evals)]])
    if len(bad):
        ax.plot(bad, np.full(len(bad), 0.02), "x", color="red", transform=ax.get_xaxis_transform(), clip_on=False,
                label=f"NaN/inf loss ({len(bad)})")
    steps, losses, _ = _finite_eval(curve)
    if divergence is not None:
        best_step, best_loss = divergence.best_step, divergence.best_eval_loss
        ax.axvline(divergence.confirmed_step, color="tab:red", linestyle="--", linewidth=1.2,
                   label=f"divergence confirmed (step {divergence.confirmed_step})")
        ax.axvspan(divergence.confirmed_step, max(divergence.final_step, curve.global_step),
                   color="tab:red", alpha=0.06)
    elif len(losses):
        best_step, best_loss = int(steps[np.argmin(losses)]), float(losses.min())
    if len(losses):
        ax.axvline(best_step, color="tab:green", linestyle=":", linewidth=1.2)
        ax.plot([best_step], [best_loss], "*", color="tab:green", markersize=12,
                label=f"best eval loss {best_loss:.4g} (step {best_step})")
    values = np.concatenate([train[np.isfinite(train)], losses])
    if len(values) and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    name = curve.source.parent.name if curve.source.name == STATE_FILE else curve.source.stem
    verdict = "no divergence" if divergence is None else f"diverged after step {divergence.best_step}"
    if training_health(curve):
        verdict += ", training unhealthy"
    ax.set_title(f"Train and validation loss: {name[:50]} ({verdict})")
    ax.grid(linestyle="--", alpha=0.4)
    ax.legend(loc="best", fontsize=9, framealpha=0.9)  # "best": a rising eval curve must stay visible
    fig.tight_layout()
    return fig
