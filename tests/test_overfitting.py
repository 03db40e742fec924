"""Tests for tunegate.overfitting: trainer_state.json in, loss curve, divergence, health and verdict out.

Hand-written curves are written as real trainer_state.json files (the loader is the product), laid
out as the Trainer lays them out. The 20 real files in fixtures/trainer_states/ (see its
README.md) and the demo's own runs pin what the detector says on curves that were looked at.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tunegate.errors import TrainingStateError
from tunegate.overfitting import (
    CheckpointVerdict,
    Divergence,
    LossCurve,
    detect_divergence,
    load_trainer_state,
    loss_curve_figure,
    shipped_checkpoint_verdict,
    training_health,
)
from tunegate.report import figure_png

REPO = Path(__file__).resolve().parent.parent
# Copied into the repository (2 MB) so a clean clone tests them; SOURCES.tsv says where each is from.
REAL_STATES = REPO / "fixtures" / "trainer_states"
REAL_FILES = sorted(REAL_STATES.glob("*.json"))
assert len(REAL_FILES) == 20, f"expected the 20 real trainer_state.json files in {REAL_STATES}"
DEMO = REPO / "fixtures" / "demo"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_state(
    directory: Path,
    train: dict[int, float],
    evals: dict[int, float] | None,
    *,
    steps_per_epoch: float = 100,
    finished: bool = False,
    eval_key: str = "eval_loss",
    **state: object,
) -> Path:
    """A trainer_state.json as the Trainer writes it: one entry per log, eval after train at a shared step."""
    history: list[dict[str, object]] = []
    evals = evals or {}
    for step in sorted(set(train) | set(evals)):
        epoch = step / steps_per_epoch
        if step in train:
            history.append({"epoch": epoch, "grad_norm": 1.3, "learning_rate": 1e-4, "loss": train[step], "step": step})
        if step in evals:
            history.append({"epoch": epoch, eval_key: evals[step], "eval_runtime": 2.1, "eval_samples_per_second": 31.4,
                            "eval_steps_per_second": 3.9, "step": step})
    last = max(set(train) | set(evals))
    if finished:
        history.append({"epoch": last / steps_per_epoch, "step": last, "total_flos": 1.0e15, "train_loss": 1.0,
                        "train_runtime": 600.0, "train_samples_per_second": 4.2, "train_steps_per_second": 0.5})
    content = {
        "best_global_step": None, "best_metric": None, "best_model_checkpoint": None, "epoch": last / steps_per_epoch,
        "eval_steps": 20, "global_step": last, "is_hyper_param_search": False, "is_local_process_zero": True,
        "is_world_process_zero": True, "log_history": history, "logging_steps": 10, "max_steps": last,
        "num_input_tokens_seen": 0, "num_train_epochs": math.ceil(last / steps_per_epoch), "save_steps": 20,
        "total_flos": 1.0e15, "train_batch_size": 8, "trial_name": None, "trial_params": None,
    }
    content.update(state)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "trainer_state.json"
    path.write_text(json.dumps(content, indent=2))  # NaN/Infinity become bare tokens, as in the Trainer's files
    return path


def falling_train(last: int, every: int = 10, start: float = 2.5, rate: float = 0.985) -> dict[int, float]:
    return {step: start * rate**step for step in range(every, last + 1, every)}


def every(step: int, values: list[float], first: int | None = None) -> dict[int, float]:
    first = step if first is None else first
    return {first + i * step: value for i, value in enumerate(values)}


# Val loss falls to 1.21 at step 140, then rises steadily; train loss keeps falling.
OVERFIT_EVAL = every(20, [2.2, 1.8, 1.55, 1.4, 1.3, 1.24, 1.21, 1.27, 1.34, 1.42, 1.5, 1.58, 1.66, 1.74, 1.82])


# --- hand-written curves --------------------------------------------------------------------------


def test_a_steadily_falling_validation_loss_is_no_divergence(tmp_path: Path) -> None:
    evals = every(20, [1.0 + 1.6 * 0.8**k for k in range(10)])
    curve = load_trainer_state(write_state(tmp_path, falling_train(200), evals))
    assert detect_divergence(curve) is None
    assert training_health(curve) == []
    verdict = shipped_checkpoint_verdict(curve, None)
    assert verdict.passed and verdict.shipped_step == 200
    assert verdict.message.startswith("no divergence over 10 evaluations: best eval_loss 1.2147 at step 200")


def test_classic_overfit_names_the_best_step_the_confirmation_and_the_fix(tmp_path: Path) -> None:
    curve = load_trainer_state(write_state(tmp_path, falling_train(300), OVERFIT_EVAL))
    divergence = detect_divergence(curve)
    assert isinstance(divergence, Divergence)
    assert (divergence.best_step, divergence.best_epoch, divergence.best_eval_loss) == (140, 1.4, 1.21)
    assert (divergence.confirmed_step, divergence.confirmed_epoch) == (200, 2.0)  # three evaluations past the best
    assert (divergence.final_step, divergence.final_eval_loss) == (300, 1.82)
    train_near_end = (2.5 * 0.985**290 + 2.5 * 0.985**300) / 2  # train logged since the previous evaluation
    assert divergence.gap == pytest.approx(1.82 - train_near_end)
    assert divergence.min_delta == pytest.approx(0.0121)  # 1% of the best
    assert divergence.advice.startswith("stop at step 140 (epoch 1.4): train with load_best_model_at_end=True")
    for setting in ('metric_for_best_model="eval_loss"', "save_strategy equal to eval_strategy",
                    "EarlyStoppingCallback(early_stopping_patience=3)"):
        assert setting in divergence.advice


def test_a_longer_patience_confirms_later_and_says_so_in_the_advice(tmp_path: Path) -> None:
    curve = load_trainer_state(write_state(tmp_path, falling_train(300), OVERFIT_EVAL))
    divergence = detect_divergence(curve, patience=5)
    assert divergence is not None and (divergence.best_step, divergence.confirmed_step) == (140, 240)
    assert "EarlyStoppingCallback(early_stopping_patience=5)" in divergence.advice


def test_shipping_the_last_step_of_an_overfit_run_fails_with_the_evidence(tmp_path: Path) -> None:
    curve = load_trainer_state(write_state(tmp_path, falling_train(300), OVERFIT_EVAL))
    verdict = shipped_checkpoint_verdict(curve, detect_divergence(curve))
    assert isinstance(verdict, CheckpointVerdict) and not verdict.passed
    assert (verdict.shipped_step, verdict.shipped_eval_loss) == (300, 1.82)
    assert "shipped step 300 (the last step), eval_loss 1.8200 comes after the divergence" in verdict.message
    assert "best eval_loss 1.2100 at step 140" in verdict.message and "confirmed at step 200" in verdict.message
    assert "stop at step 140" in verdict.message and str(verdict).startswith("FAIL: ")


def test_shipping_the_best_checkpoint_of_an_overfit_run_passes(tmp_path: Path) -> None:
    curve = load_trainer_state(write_state(tmp_path, falling_train(300), OVERFIT_EVAL))
    verdict = shipped_checkpoint_verdict(curve, detect_divergence(curve), shipped_step=140)
    assert verdict.passed and "shipped step 140 (as given), eval_loss 1.2100 is the best checkpoint" in verdict.message


def test_a_checkpoint_before_the_confirmation_passes_one_after_it_fails(tmp_path: Path) -> None:
    curve = load_trainer_state(write_state(tmp_path, falling_train(300), OVERFIT_EVAL))
    divergence = detect_divergence(curve)
    early = shipped_checkpoint_verdict(curve, divergence, shipped_step=180)
    assert early.passed and "precedes the confirmed divergence" in early.message
    assert not shipped_checkpoint_verdict(curve, divergence, shipped_step=200).passed


def test_a_finished_run_that_recorded_its_best_checkpoint_ships_that_one(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(300), OVERFIT_EVAL, finished=True,
                       best_model_checkpoint="out/checkpoint-140", best_metric=1.21)
    curve = load_trainer_state(path)
    assert (curve.best_global_step, curve.metric_for_best_model, curve.finished) == (140, "eval_loss", True)
    verdict = shipped_checkpoint_verdict(curve, detect_divergence(curve))
    assert verdict.passed and verdict.shipped_step == 140
    assert "best_model_checkpoint, as load_best_model_at_end reloads it" in verdict.message


def test_a_checkpoint_saved_mid_training_ships_its_own_step_whatever_the_best(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(300), OVERFIT_EVAL, best_model_checkpoint="out/checkpoint-140", best_metric=1.21)
    curve = load_trainer_state(path)
    verdict = shipped_checkpoint_verdict(curve, detect_divergence(curve))
    assert not curve.finished and not verdict.passed and verdict.shipped_step == 300


def test_validation_rising_together_with_train_loss_is_instability_not_overfitting(tmp_path: Path) -> None:
    train = falling_train(140) | {step: 0.4 * (1 + (step - 140) / 40) for step in range(150, 301, 10)}
    curve = load_trainer_state(write_state(tmp_path, train, OVERFIT_EVAL))
    assert detect_divergence(curve) is None


PLATEAU_WIGGLE = [1.006, 0.992, 1.009, 0.975, 1.007, 0.991, 1.004, 0.994, 1.008, 0.998, 1.005, 0.993]


def test_a_noisy_plateau_with_a_lucky_low_is_no_divergence(tmp_path: Path) -> None:
    evals = every(20, [2.0, 1.6, 1.35, 1.2, 1.1, 1.05, 1.02] + PLATEAU_WIGGLE)
    curve = load_trainer_state(write_state(tmp_path, falling_train(380), evals))
    assert detect_divergence(curve) is None
    # Without the median the lucky 0.975 becomes the best and every later wiggle looks like a rise.
    assert detect_divergence(curve, smoothing="none") is not None


@pytest.mark.parametrize(
    "spike", [[1.8], [1.7, 1.6]], ids=["one evaluation", "two evaluations"]
)
def test_a_spike_that_recovers_is_no_divergence(tmp_path: Path, spike: list[float]) -> None:
    evals = every(20, [2.0, 1.7, 1.5, 1.4, 1.33] + spike + [1.28, 1.25, 1.23, 1.22])
    curve = load_trainer_state(write_state(tmp_path, falling_train(20 * len(evals)), evals))
    assert detect_divergence(curve) is None
    assert detect_divergence(curve, smoothing="none") is None


def test_nan_train_loss_is_kept_visible_and_flagged_with_its_first_step(tmp_path: Path) -> None:
    train = falling_train(140) | {step: math.nan for step in range(150, 201, 10)}
    path = write_state(tmp_path, train, every(20, [2.0, 1.7, 1.5, 1.4, 1.33, 1.3, 1.28, math.nan, math.nan, math.nan]))
    assert '"loss": NaN' in path.read_text()
    curve = load_trainer_state(path)
    assert curve.train.steps == tuple(range(10, 201, 10)) and math.isnan(curve.train.losses[14])
    problems = training_health(curve)
    assert problems[0].startswith("train loss is NaN from step 150 (6 of 20 logged values)")
    assert problems[1].startswith("eval loss is NaN from step 160 (3 of 10 logged values)")
    verdict = shipped_checkpoint_verdict(curve, detect_divergence(curve))
    assert not verdict.passed and verdict.message.startswith("training is unhealthy: train loss is NaN from step 150")


def test_infinite_train_loss_is_flagged(tmp_path: Path) -> None:
    train = falling_train(100) | {110: math.inf}
    curve = load_trainer_state(write_state(tmp_path, train, every(20, [2.0, 1.7, 1.5, 1.4, 1.33])))
    assert training_health(curve) == [
        "train loss is infinite from step 110 (1 of 11 logged values): lower the learning rate, keep max_grad_norm "
        "clipping on, or train in bf16 instead of fp16"
    ]


def test_a_train_loss_that_climbs_to_several_times_its_low_is_exploding(tmp_path: Path) -> None:
    train = every(10, [2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.3, 1.25, 3.0, 8.0, 25.0, 80.0])
    curve = load_trainer_state(write_state(tmp_path, train, every(20, [2.0, 1.7, 1.6, 1.5, 9.0, 60.0])))
    [problem] = training_health(curve)
    assert problem.startswith("train loss exploded: its running median rose from 1.3 (step 70) to 8 by step 110 (6.2x)")
    assert not shipped_checkpoint_verdict(curve, detect_divergence(curve)).passed


def test_one_train_loss_a_hundred_times_its_running_median_is_exploding(tmp_path: Path) -> None:
    train = every(10, [2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 250.0, 1.3, 1.25])
    curve = load_trainer_state(write_state(tmp_path, train, every(20, [2.0, 1.7, 1.6, 1.5])))
    assert training_health(curve) == [
        "train loss exploded: 250 at step 70, 179x its running median before: lower the learning rate or add warmup"
    ]


def test_a_near_zero_train_loss_wobbling_after_memorisation_is_healthy(tmp_path: Path) -> None:
    train = every(10, [2.0, 1.0, 0.5, 0.1, 0.02, 0.01, 0.03, 0.02, 0.035, 0.03, 0.04, 0.03])
    curve = load_trainer_state(write_state(tmp_path, train, every(20, [2.0, 1.2, 0.9, 0.8, 0.8, 0.81])))
    assert training_health(curve) == []


def test_a_run_without_eval_loss_gets_an_error_that_says_how_to_log_it(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(100), None)
    with pytest.raises(TrainingStateError) as raised:
        load_trainer_state(path)
    message = str(raised.value)
    assert message.startswith(f'{path}: log_history has 10 entries but none with "eval_loss" (no eval metrics at all)')
    for fix in ("eval_dataset", 'eval_strategy="steps"', "eval_steps=", 'eval_strategy="epoch"'):
        assert fix in message


def test_dpo_rewards_without_an_eval_loss_are_still_no_eval_loss(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(60), every(20, [0.5, 0.8, 1.1]), eval_key="eval_rewards/margins")
    with pytest.raises(TrainingStateError, match=r'none with "eval_loss" \(eval metrics found: eval_rewards/margins\)'):
        load_trainer_state(path)


def test_a_custom_eval_loss_key_is_read_and_named_in_the_advice(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(300), OVERFIT_EVAL, eval_key="eval_nll")
    curve = load_trainer_state(path, eval_loss_key="eval_nll")
    divergence = detect_divergence(curve)
    assert divergence is not None and divergence.best_step == 140
    assert 'metric_for_best_model="eval_nll"' in divergence.advice
    assert "best eval_nll 1.2100 at step 140" in str(divergence)


def test_eval_logged_at_other_steps_than_train_uses_the_train_loss_in_between(tmp_path: Path) -> None:
    train = {step: 3.0 * 0.99**step for step in range(3, 400, 10)}
    evals = every(25, [2.4, 2.0, 1.7, 1.5, 1.38, 1.3, 1.26, 1.24, 1.3, 1.37, 1.45, 1.54, 1.62, 1.7, 1.78, 1.86])
    curve = load_trainer_state(write_state(tmp_path, train, evals))
    assert not set(curve.train.steps) & set(curve.eval.steps)
    divergence = detect_divergence(curve)
    assert divergence is not None and (divergence.best_step, divergence.confirmed_step) == (200, 275)
    since_previous_eval = [3.0 * 0.99**step for step in (383, 393)]
    assert divergence.final_train_loss == pytest.approx(sum(since_previous_eval) / 2)


def test_eval_once_per_epoch_gives_epoch_numbers_in_the_advice(tmp_path: Path) -> None:
    steps_per_epoch = 37
    train = {step: 2.5 * 0.99**step for step in range(10, 37 * 8 + 1, 10)}
    evals = every(37, [1.9, 1.5, 1.35, 1.4, 1.48, 1.57, 1.66, 1.75])
    curve = load_trainer_state(write_state(tmp_path, train, evals, steps_per_epoch=steps_per_epoch))
    assert curve.eval.epochs == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    divergence = detect_divergence(curve)
    assert divergence is not None and (divergence.best_step, divergence.best_epoch) == (111, 3.0)
    assert (divergence.confirmed_step, divergence.confirmed_epoch) == (222, 6.0)
    assert divergence.advice.startswith("stop at step 111 (epoch 3.0):")


def test_too_few_evaluations_cannot_show_a_divergence(tmp_path: Path) -> None:
    curve = load_trainer_state(write_state(tmp_path, falling_train(60), every(20, [1.0, 1.5, 2.0])))
    assert detect_divergence(curve) is None  # three evaluations: a best and only two after it
    assert detect_divergence(curve, patience=2) is not None


# --- loading: paths, errors, fields ----------------------------------------------------------------


def test_an_output_directory_resolves_to_its_latest_checkpoint_by_step_number(tmp_path: Path) -> None:
    write_state(tmp_path / "out" / "checkpoint-50", falling_train(50), every(10, [2.0, 1.9, 1.8, 1.7, 1.6]))
    latest = write_state(tmp_path / "out" / "checkpoint-100", falling_train(100), every(20, [2.0, 1.8, 1.6, 1.5, 1.4]))
    (tmp_path / "out" / "checkpoint-200").mkdir()  # a save that never wrote its state
    curve = load_trainer_state(tmp_path / "out")
    assert curve.source == latest and curve.global_step == 100
    assert load_trainer_state(tmp_path / "out" / "checkpoint-50").global_step == 50


def test_an_output_directory_with_its_own_state_uses_it(tmp_path: Path) -> None:
    write_state(tmp_path / "checkpoint-100", falling_train(100), every(20, [2.0, 1.8, 1.6, 1.5, 1.4]))
    final = write_state(tmp_path, falling_train(120), every(20, [2.0, 1.8, 1.6, 1.5, 1.4, 1.35]), finished=True)
    assert load_trainer_state(tmp_path).source == final


def test_a_directory_without_any_state_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(TrainingStateError, match=r"no trainer_state\.json in this directory or in any checkpoint-N/"):
        load_trainer_state(tmp_path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(TrainingStateError, match=r"nope\.json: no such file or directory\. Point it at"):
        load_trainer_state(tmp_path / "nope.json")


def test_a_truncated_file_reports_line_and_column(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(60), every(20, [1.0, 0.9, 0.8]))
    path.write_text(path.read_text()[:300])
    with pytest.raises(TrainingStateError, match=r"trainer_state\.json line \d+ column \d+: not valid JSON"):
        load_trainer_state(path)


def test_a_json_file_without_log_history_is_not_a_trainer_state(tmp_path: Path) -> None:
    path = tmp_path / "adapter_config.json"
    path.write_text(json.dumps({"r": 8, "lora_alpha": 16}))
    with pytest.raises(TrainingStateError, match=r'no "log_history" list \(found: lora_alpha, r\)'):
        load_trainer_state(path)


def test_a_non_numeric_loss_names_its_entry(tmp_path: Path) -> None:
    path = write_state(tmp_path, {10: 2.0, 20: "high"}, every(10, [1.0, 0.9]))  # type: ignore[dict-item]
    with pytest.raises(TrainingStateError, match=r"log_history\[2\] has loss='high' at step=20"):
        load_trainer_state(path)


def test_a_step_logged_twice_keeps_the_value_logged_during_training(tmp_path: Path) -> None:
    path = write_state(tmp_path, falling_train(100), every(20, [2.0, 1.8, 1.6, 1.5, 1.4]))
    state = json.loads(path.read_text())
    state["log_history"].append({"epoch": 1.0, "eval_loss": 1.2, "step": 100})  # trainer.evaluate() after loading the best
    path.write_text(json.dumps(state))
    assert load_trainer_state(path).eval.losses[-1] == 1.4


# --- the 20 real files -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_FILES, ids=[path.name[:2] for path in REAL_FILES])
def test_every_real_trainer_state_loads_as_a_sorted_curve(path: Path) -> None:
    curve = load_trainer_state(path)
    assert isinstance(curve, LossCurve) and curve.source == path
    assert len(curve.train) >= 5 and len(curve.eval) >= 5
    for series in (curve.train, curve.eval):
        assert list(series.steps) == sorted(set(series.steps))
        assert len(series.losses) == len(series.epochs) == len(series.steps)
    assert curve.global_step >= max(curve.eval.steps)
    assert curve.num_train_epochs is None or curve.num_train_epochs < 1000


def test_real_files_keep_their_quirks_visible() -> None:
    by_number = {path.name[:2]: load_trainer_state(path) for path in REAL_FILES}
    assert by_number["16"].entries_without_step == 10  # predict_* entries
    assert by_number["07"].num_train_epochs is None and by_number["20"].num_train_epochs is None  # sys.maxsize
    assert (by_number["04"].best_global_step, by_number["04"].metric_for_best_model) == (4000, "eval_wer")
    assert (by_number["02"].best_global_step, by_number["02"].metric_for_best_model) == (1500, "eval_loss")
    assert by_number["14"].best_global_step == 1944  # a Windows path: ./results\checkpoint-1944
    assert by_number["09"].eval_metrics[:2] == ("eval_logits/chosen", "eval_logits/rejected")  # DPO
    assert len(by_number["02"].train) == 3500 and len(by_number["03"].train) == 3500


# What the detector says on each real curve, checked against the printed eval series:
# (best step, confirmed step) for a divergence, None for none.
REAL_DIVERGENCE = {
    "01": (200, 800),  # val 0.32 -> 0.55 over 12 evals, train 1.25 -> 0.05: textbook
    "02": None,  # val rises from step 1600, but so does train (3x): an explosion, not overfitting
    "03": None,  # plateau at 0.318-0.322: wiggles under 1%
    "04": (1000, 4000),  # val 0.31 -> 0.47 while train -> 0.0003 (best checkpoint chosen by WER)
    "05": (250, 1000),  # val 0.22 -> 0.40-0.44 and stays (early stopping on WER fired)
    "06": (800, 1400),  # noisy, but 0.23-0.26 -> 0.27-0.29 while train 0.2 -> 0.03
    "07": None,  # whisper val wobbles +-10%; the last rise is 2 smoothed evals
    "08": (132, 528),  # first eval is the best (2.55); never below 3.1 again
    "09": None,  # DPO loss flat at 0.512-0.515
    "10": None,
    "11": None,
    "12": None,
    "13": None,
    "14": None,
    "15": None,  # 0.6275 -> 0.6287: within 1%
    "16": None,  # borderline: +1.3% creep over 4 epochs, under 1% against the smoothed best
    "17": None,
    "18": None,
    "19": None,
    "20": None,
}


@pytest.mark.parametrize("path", REAL_FILES, ids=[path.name[:2] for path in REAL_FILES])
def test_the_detector_on_real_curves(path: Path) -> None:
    divergence = detect_divergence(load_trainer_state(path))
    expected = REAL_DIVERGENCE[path.name[:2]]
    assert (divergence and (divergence.best_step, divergence.confirmed_step)) == expected


def test_real_runs_only_the_exploded_one_is_unhealthy() -> None:
    unhealthy = {path.name[:2]: training_health(load_trainer_state(path)) for path in REAL_FILES}
    assert {number for number, problems in unhealthy.items() if problems} == {"02"}
    assert unhealthy["02"][0].startswith("train loss exploded: its running median rose from 1.155 (step 1467)")


def test_real_verdicts_follow_the_shipped_checkpoint() -> None:
    def verdict(number: str) -> CheckpointVerdict:
        [path] = REAL_STATES.glob(f"{number}_*.json")
        curve = load_trainer_state(path)
        return shipped_checkpoint_verdict(curve, detect_divergence(curve))

    whisper_hi = verdict("04")  # finished; load_best reloaded step 4000, chosen by WER after the loss diverged
    assert not whisper_hi.passed and whisper_hi.shipped_step == 4000
    assert "best_model_checkpoint chosen by eval_wer" in whisper_hi.message
    whisper_tr = verdict("05")  # finished; the best checkpoint is the eval-loss best too
    assert whisper_tr.passed and whisper_tr.shipped_step == 250 and "is the best checkpoint" in whisper_tr.message
    assert not verdict("01").passed and not verdict("02").passed
    assert verdict("10").passed and verdict("20").passed


# --- the demo's own runs ---------------------------------------------------------------------------


def test_the_demo_adapter_plateaus_without_diverging() -> None:
    curve = load_trainer_state(DEMO / "adapter")
    assert (len(curve.train), len(curve.eval), curve.global_step) == (44, 22, 220)
    # The minimum is 1.0707 at step 180; 190-220 sit at 1.081-1.084, under 1% above it: a plateau.
    assert detect_divergence(curve) is None
    verdict = shipped_checkpoint_verdict(curve, None)
    assert verdict.passed and verdict.message == (
        "no divergence over 22 evaluations: best eval_loss 1.0707 at step 180, final 1.0805 at step 220 (+0.9%); "
        "shipped step 220 (the last step), eval_loss 1.0805"
    )


def test_the_demo_overtrained_run_fails_with_advice_naming_the_step() -> None:
    """fixtures/demo/overtrained: 10 epochs on 48 samples, written by the committed training script."""
    curve = load_trainer_state(DEMO / "overtrained")
    assert (len(curve.eval), curve.global_step) == (15, 60)
    divergence = detect_divergence(curve)
    assert divergence is not None
    assert (divergence.best_step, divergence.confirmed_step, divergence.final_step) == (16, 36, 60)
    assert divergence.best_eval_loss == pytest.approx(2.3839, abs=1e-4)
    assert divergence.final_eval_loss == pytest.approx(2.9212, abs=1e-4)
    verdict = shipped_checkpoint_verdict(curve, divergence)
    assert not verdict.passed
    assert "shipped step 60 (the last step), eval_loss 2.9212 comes after the divergence" in verdict.message
    assert "stop at step 16 (epoch 2.7)" in verdict.message
    assert "EarlyStoppingCallback(early_stopping_patience=3)" in verdict.message


def test_the_demo_weak_run_is_too_short_to_judge() -> None:
    if not (DEMO / "runs" / "weak" / "trainer_state.json").exists():
        pytest.skip("fixtures/demo/runs/weak is not in this checkout")
    curve = load_trainer_state(DEMO / "runs" / "weak")
    assert (curve.train.steps, curve.eval.steps) == ((5,), (3, 6))
    assert detect_divergence(curve) is None and shipped_checkpoint_verdict(curve, None).passed


# --- the figure ------------------------------------------------------------------------------------


def test_the_figure_of_an_overfit_run_renders_and_closes(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    curve = load_trainer_state(write_state(tmp_path, falling_train(300), OVERFIT_EVAL))
    fig = loss_curve_figure(curve, detect_divergence(curve))
    ax = fig.axes[0]
    assert fig.get_size_inches()[0] * fig.dpi == 900
    assert ax.get_xlabel() == "training step" and ax.get_ylabel() == "loss"
    assert "diverged after step 140" in ax.get_title()
    labels = ax.get_legend_handles_labels()[1]
    assert "divergence confirmed (step 200)" in labels and "best eval loss 1.21 (step 140)" in labels
    png = figure_png(fig)
    assert png.startswith(PNG_MAGIC) and not plt.fignum_exists(fig.number)


def test_the_figure_handles_nan_points_and_a_3500_step_log(tmp_path: Path) -> None:
    train = falling_train(140) | {step: math.nan for step in range(150, 201, 10)}
    nan_curve = load_trainer_state(write_state(tmp_path, train, every(20, [2.0, 1.7, 1.5, 1.4, 1.33, math.nan])))
    fig = loss_curve_figure(nan_curve)
    assert "NaN/inf loss (7)" in fig.axes[0].get_legend_handles_labels()[1]
    assert figure_png(fig).startswith(PNG_MAGIC)
    [long_log] = REAL_STATES.glob("02_*.json")
    assert figure_png(loss_curve_figure(load_trainer_state(long_log))).startswith(PNG_MAGIC)
