"""Tests for tunegate.gates: threshold verdicts on the long score table, per-sample problems."""

from __future__ import annotations

import pandas as pd
import pytest

from tunegate.data import Sample
from tunegate.gates import GateResult, sample_problems, threshold_gate, sample_pass_rate_gate
from tunegate.inference import Generation
from tunegate.stats import bootstrap_mean_ci


def score_table(values_by_mode: dict[str, list[float]], metric: str = "rougeL") -> pd.DataFrame:
    rows = [
        (f"s{i:02d}", mode, metric, value)
        for mode, values in values_by_mode.items()
        for i, value in enumerate(values)
    ]
    rows.append(("s00", "finetuned", "rouge1", 0.0))  # another metric must not leak in
    return pd.DataFrame(rows, columns=["sample_id", "mode", "metric", "value"])


def generation(text: str, finish_reason: str = "stop", output_tokens: int = 12) -> Generation:
    return Generation(sample_id="q1", mode="finetuned", text=text, finish_reason=finish_reason,
                      prompt_tokens=20, output_tokens=output_tokens, latency_s=0.1)


# --- threshold_gate --------------------------------------------------------------------------

FINETUNED = [0.6, 0.7, 0.8, 0.5, 0.9, 0.65, 0.75, 0.7]  # mean 0.7
PROMPT_ENG = [0.2, 0.3, 0.25, 0.35, 0.3, 0.2, 0.3, 0.3]  # mean 0.275


def test_threshold_gate_passes_when_the_mean_reaches_the_floor() -> None:
    table = score_table({"finetuned": FINETUNED, "prompt_eng": PROMPT_ENG})
    result = threshold_gate(table, "finetuned", "rougeL", 0.6, seed=3)
    ci = bootstrap_mean_ci(FINETUNED, seed=3)
    assert result == GateResult(
        "threshold[finetuned-rougeL]",
        True,
        f"finetuned ROUGE-L mean 0.700 >= threshold 0.600; 95% CI [{ci.ci_low:.3f}, {ci.ci_high:.3f}], n=8",
    )
    assert str(result).startswith("PASS threshold[finetuned-rougeL]: finetuned ROUGE-L mean 0.700")


def test_threshold_gate_fails_below_the_floor_with_the_evidence() -> None:
    table = score_table({"finetuned": FINETUNED, "prompt_eng": PROMPT_ENG})
    result = threshold_gate(table, "prompt_eng", "rougeL", 0.3)
    ci = bootstrap_mean_ci(PROMPT_ENG)
    assert not result.passed
    assert result.name == "threshold[prompt_eng-rougeL]"
    assert "mean 0.275 < threshold 0.300" in result.message
    assert f"95% CI [{ci.ci_low:.3f}, {ci.ci_high:.3f}]" in result.message
    assert result.message.endswith("n=8")
    assert str(result).startswith("FAIL ")


def test_threshold_gate_is_on_the_mean_not_the_interval() -> None:
    # The lower CI bound is below the floor, but the mean reaches it: the gate passes.
    table = score_table({"finetuned": FINETUNED})
    result = threshold_gate(table, "finetuned", "rougeL", 0.69)
    assert bootstrap_mean_ci(FINETUNED).ci_low < 0.69
    assert result.passed and "mean 0.700 >= threshold 0.690" in result.message


def test_threshold_gate_unknown_metric_keeps_its_name() -> None:
    table = score_table({"finetuned": [0.5, 0.5]}, metric="exact_match")
    result = threshold_gate(table, "finetuned", "exact_match", 0.4)
    assert result.passed and "finetuned exact_match mean 0.500" in result.message


def test_threshold_gate_on_a_missing_mode_is_a_failed_verdict() -> None:
    table = score_table({"finetuned": FINETUNED})
    result = threshold_gate(table, "base", "rougeL", 0.1)
    assert result == GateResult("threshold[base-rougeL]", False, "no ROUGE-L scores for mode 'base'")


def test_threshold_gate_on_a_missing_metric_is_a_failed_verdict() -> None:
    result = threshold_gate(score_table({"finetuned": FINETUNED}), "finetuned", "bertscore", 0.1)
    assert not result.passed and result.message == "no BERTScore F1 scores for mode 'finetuned'"


# --- sample_problems -------------------------------------------------------------------------


def test_a_good_answer_has_no_problems() -> None:
    sample = Sample(id="q1", prompt="p", reference="r", must_include=("Paris",), must_not_include=("London",))
    assert sample_problems(sample, generation("The capital is Paris.")) == []


@pytest.mark.parametrize("text", ["", "   \n\t "])
def test_an_empty_answer_is_a_problem(text: str) -> None:
    assert sample_problems(Sample(id="q1", prompt="p", reference="r"), generation(text)) == ["the answer is empty"]


def test_a_truncated_answer_is_a_problem_naming_the_fix() -> None:
    problems = sample_problems(Sample(id="q1", prompt="p", reference="r"), generation("Once upon", "length", 64))
    assert len(problems) == 1
    assert "cut off at max_new_tokens (64 tokens)" in problems[0]
    assert "raise max_new_tokens" in problems[0] and '"allow_truncation": true' in problems[0]


def test_truncation_is_fine_when_the_sample_allows_it() -> None:
    sample = Sample(id="q1", prompt="p", reference="r", allow_truncation=True)
    assert sample_problems(sample, generation("Once upon", "length")) == []


def test_must_include_is_case_insensitive_and_lists_what_is_missing() -> None:
    sample = Sample(id="q1", prompt="p", reference="r", must_include=("paris", "France", "Seine"))
    assert sample_problems(sample, generation("PARIS is in france.")) == ["missing required text ['Seine']"]


def test_must_not_include_present_is_a_problem() -> None:
    sample = Sample(id="q1", prompt="p", reference="r", must_not_include=("as an ai", "sorry"))
    problems = sample_problems(sample, generation("As an AI language model, I cannot."))
    assert problems == ["contains forbidden text ['as an ai']"]


def test_every_problem_is_reported_together() -> None:
    sample = Sample(id="q1", prompt="p", reference="r", must_include=("x",), must_not_include=(" ",))
    problems = sample_problems(sample, generation("  ", "length"))
    assert problems[0] == "the answer is empty"
    assert "cut off" in problems[1]
    assert problems[2:] == ["missing required text ['x']", "contains forbidden text [' ']"]


# --- sample_pass_rate_gate ---------------------------------------------------------------------


def test_sample_pass_rate_all_pass() -> None:
    verdict = sample_pass_rate_gate({"a": [], "b": []}, "finetuned", 1.0)
    assert verdict.passed
    assert verdict.message == "finetuned: 2/2 samples meet their expectations (100.0% >= 100.0%)"


def test_sample_pass_rate_within_budget_still_names_the_failures() -> None:
    problems = {f"s{i}": [] for i in range(9)} | {"bad": ["missing required text ['NW-1']"]}
    verdict = sample_pass_rate_gate(problems, "finetuned", 0.9)
    assert verdict.passed
    assert "9/10 samples meet their expectations (90.0% >= 90.0%)" in verdict.message
    assert "failing: bad: missing required text ['NW-1']" in verdict.message


def test_sample_pass_rate_below_budget_fails_and_truncates_the_list() -> None:
    problems = {f"s{i}": ["the answer is empty"] for i in range(7)} | {"ok": []}
    verdict = sample_pass_rate_gate(problems, "prompt_eng", 0.5)
    assert not verdict.passed
    assert verdict.name == "sample_pass_rate[prompt_eng]"
    assert "1/8 samples meet their expectations (12.5% < 50.0%)" in verdict.message
    assert verdict.message.endswith("(+2 more)")


def test_sample_pass_rate_of_nothing_fails() -> None:
    assert not sample_pass_rate_gate({}, "finetuned", 0.5).passed


# --- gain_checks, gain_gate, finetune_verdict ------------------------------------------------

import numpy as np  # noqa: E402

from tunegate.gates import finetune_verdict, gain_checks, gain_gate, paired_scores  # noqa: E402
from tunegate.stats import holm_adjust, paired_bootstrap  # noqa: E402


def long_table(values: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    """(mode, metric) -> per-sample values, as the long score table (ids s000, s001, ...)."""
    rows = [
        (f"s{i:03d}", mode, metric, float(v))
        for (mode, metric), vector in values.items()
        for i, v in enumerate(vector)
    ]
    return pd.DataFrame(rows, columns=["sample_id", "mode", "metric", "value"])


def three_modes(n: int = 50, *, gain: float = 0.15, prompt_gain: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Scores where each sample has a shared difficulty; finetuned adds `gain`, prompt_eng `prompt_gain`."""
    rng = np.random.default_rng(seed)
    difficulty = rng.beta(2, 5, n)
    noise = lambda: rng.normal(0, 0.05, n)  # noqa: E731
    values = {}
    for metric in ("rougeL", "bertscore"):
        values["base", metric] = np.clip(difficulty + noise(), 0, 1)
        values["prompt_eng", metric] = np.clip(difficulty + prompt_gain + noise(), 0, 1)
        values["finetuned", metric] = np.clip(difficulty + gain + noise(), 0, 1)
    return long_table(values)


def test_gain_checks_are_paired_bootstraps_holm_adjusted_as_one_family() -> None:
    table = three_modes(gain=0.03)
    checks = gain_checks(table, ["rougeL", "bertscore"], ["base", "prompt_eng"], iters=2000, seed=5)
    assert [(c.opponent, c.metric) for c in checks] == [
        ("base", "rougeL"), ("base", "bertscore"), ("prompt_eng", "rougeL"), ("prompt_eng", "bertscore"),
    ]
    expected_raw = []
    for check in checks:
        ours, theirs = paired_scores(table, "finetuned", check.opponent, check.metric)
        single = paired_bootstrap(ours.to_numpy(), theirs.to_numpy(), iters=2000, seed=5)
        assert check.comparison.diff == pytest.approx(single.diff)
        assert check.comparison.p_value == pytest.approx(single.p_value)
        expected_raw.append(single.p_value)
    assert [c.p_adjusted for c in checks] == pytest.approx(list(holm_adjust(expected_raw)))
    assert all(c.family_size == 4 for c in checks)


def test_a_clear_gain_passes_with_the_evidence_in_the_message() -> None:
    checks = gain_checks(three_modes(gain=0.15), ["rougeL"], ["base", "prompt_eng"], iters=2000)
    for check in checks:
        verdict = gain_gate(check)
        assert verdict.passed, verdict.message
        assert verdict.name == f"gain[finetuned-vs-{check.opponent}-rougeL]"
        assert verdict.message.startswith(f"finetuned beats {check.opponent}: ROUGE-L finetuned 0.")
        for part in ("diff +0.1", "95% CI +0.", "Holm-adjusted p=", "over 2 comparisons", "n=50"):
            assert part in verdict.message


def test_identical_answers_are_no_gain() -> None:
    """A null adapter: finetuned scores exactly what base scores on every sample."""
    table = three_modes()
    base_rows = table[table["mode"] == "base"].assign(mode="finetuned")
    table = pd.concat([table[table["mode"] != "finetuned"], base_rows], ignore_index=True)
    (check,) = gain_checks(table, ["rougeL"], ["base"], iters=2000)
    assert check.comparison.diff == 0 and check.comparison.ties == 50 and check.p_adjusted == 1.0
    verdict = gain_gate(check)
    assert not verdict.passed
    assert "does not significantly beat base" in verdict.message and "50 ties" in verdict.message


def test_a_significant_gain_below_the_minimum_fails() -> None:
    (check,) = gain_checks(three_modes(gain=0.05, n=200), ["rougeL"], ["base"], iters=2000, min_gain={"rougeL": 0.1})
    assert check.significant and not check.passed
    assert "below the minimum gain 0.100" in gain_gate(check).message


def test_holm_can_turn_a_lone_significant_result_into_a_family_failure() -> None:
    """The same comparison is significant alone and not once 8 comparisons share alpha."""
    seeds = range(40)
    flipped = 0
    for seed in seeds:
        table = three_modes(gain=0.02, n=50, seed=seed)
        (alone,) = gain_checks(table, ["rougeL"], ["base"], iters=2000, seed=seed)
        family = gain_checks(table, ["rougeL", "bertscore"], ["base", "prompt_eng"], iters=2000, seed=seed)
        in_family = next(c for c in family if c.opponent == "base" and c.metric == "rougeL")
        assert in_family.p_adjusted >= alone.p_adjusted
        flipped += alone.significant and not in_family.significant
    assert flipped > 0


def test_samples_missing_from_one_mode_are_left_out_of_the_pairing() -> None:
    table = three_modes(n=20)
    table = table[~((table["mode"] == "base") & (table["sample_id"] == "s003"))]
    (check,) = gain_checks(table, ["rougeL"], ["base"], iters=500)
    assert check.comparison.n == 19


def verdict_for(prompt_gain: float, gain: float, n: int = 50, min_gain: float = 0.0) -> GateResult:
    table = three_modes(n=n, gain=gain, prompt_gain=prompt_gain, seed=1)
    checks = gain_checks(table, ["rougeL"], ["prompt_eng"], iters=2000, min_gain={"rougeL": min_gain})
    return finetune_verdict(checks[0], 0.9)


def test_verdict_passes_when_fine_tuning_pays_off() -> None:
    result = verdict_for(prompt_gain=0.0, gain=0.15)
    assert result.passed and result.name == "finetune_verdict"
    assert result.message.startswith("fine-tuning pays off: prompt_eng reaches ")


def test_verdict_says_prompt_engineering_suffices() -> None:
    """prompt_eng within 10% of finetuned and no significant difference: ship the prompt."""
    result = verdict_for(prompt_gain=0.10, gain=0.10)
    assert not result.passed
    assert result.message.startswith("prompt engineering suffices: prompt_eng reaches ")
    assert "(>= 90%)" in result.message and "ship the prompt, not the adapter" in result.message


def test_verdict_says_when_prompt_engineering_is_better() -> None:
    result = verdict_for(prompt_gain=0.15, gain=0.0)
    assert not result.passed
    assert result.message.startswith("prompt engineering beats the adapter")


def test_verdict_is_inconclusive_when_the_lead_is_large_but_noisy() -> None:
    prompt_eng = np.array([0.1, 0.5, 0.2, 0.6, 0.3, 0.4])  # mean 0.35
    swings = np.array([0.4, -0.3, 0.35, -0.25, 0.3, -0.2])  # mean +0.05, but half the samples got worse
    values = {("prompt_eng", "rougeL"): prompt_eng, ("finetuned", "rougeL"): prompt_eng + swings}
    (check,) = gain_checks(long_table(values), ["rougeL"], ["prompt_eng"], iters=2000)
    assert not check.significant and check.comparison.mean_b < 0.9 * check.comparison.mean_a
    result = finetune_verdict(check, 0.9)
    assert not result.passed and result.message.startswith("inconclusive: finetuned leads")
    assert "more eval samples would decide" in result.message


def test_verdict_names_a_real_gain_below_the_minimum() -> None:
    result = verdict_for(prompt_gain=0.0, gain=0.05, n=200, min_gain=0.2)
    assert not result.passed and "below the minimum gain 0.200" in result.message


# --- judge gates -------------------------------------------------------------------------------

from tunegate.gates import judge_error_gate, pairwise_gate  # noqa: E402
from tunegate.judge import JudgeFailure, JudgeReply, build_requests, pairwise_result  # noqa: E402


def failures(count: int) -> list[JudgeFailure]:
    return [JudgeFailure("reference", "finetuned", f"s{i}", "accuracy = 7 is out of range 1-5") for i in range(count)]


def test_judge_errors_within_the_budget_pass() -> None:
    result = judge_error_gate("reference", failures(2), 150, 0.05)
    assert result.passed and result.name == "judge_errors[reference]"
    assert result.message.startswith("reference: 2/150 judgements failed (1.3% <= error budget 5.0%); e.g. finetuned/s0:")


def test_judge_errors_over_the_budget_fail_with_count_and_examples() -> None:
    result = judge_error_gate("reference", failures(9), 150, 0.05)
    assert not result.passed
    assert "9/150 judgements failed (6.0% > error budget 5.0%)" in result.message
    assert "finetuned/s4: accuracy = 7 is out of range 1-5 (+4 more)" in result.message


def test_no_judgements_is_a_failure_not_a_pass() -> None:
    assert not judge_error_gate("blind", [], 0, 0.05).passed


def pairwise_of(verdicts: list[tuple[str, str]]):
    samples = [Sample(id=f"p{i}", prompt="q", reference="r") for i in range(len(verdicts))]
    requests = build_requests("pairwise", samples, {"finetuned": ["f"] * len(samples), "prompt_eng": ["p"] * len(samples)})
    return pairwise_result(requests, [JudgeReply(winner=w) for pair in verdicts for w in pair], iters=2000)


def test_pairwise_gate_needs_the_whole_ci_above_the_bar() -> None:
    clear = pairwise_of([("A", "B")] * 18 + [("tie", "tie")] * 2)
    assert pairwise_gate(clear, 0.0).passed
    assert "CI low +" in pairwise_gate(clear, 0.0).message
    biased = pairwise_of([("A", "A")] * 20)  # always the first shown: all ties
    verdict = pairwise_gate(biased, 0.0)
    assert not verdict.passed and "0 wins, 20 ties, 0 losses" in verdict.message
    assert "the answer shown first was picked in 40/40 decided verdicts" in verdict.message


def test_pairwise_gate_without_any_judged_sample_fails() -> None:
    assert not pairwise_gate(None, 0.0).passed


def test_a_metric_with_unscored_samples_is_compared_on_the_samples_it_has() -> None:
    """A judge error leaves a sample without judge scores; ROUGE still pairs all of them."""
    table = three_modes(n=30)
    judge = table[table["metric"] == "rougeL"].assign(metric="judge_overall", value=lambda t: 1 + 4 * t["value"])
    judge = judge[~judge["sample_id"].isin(["s003", "s011"]) | (judge["mode"] != "finetuned")]
    checks = gain_checks(pd.concat([table, judge]), ["rougeL", "judge_overall"], ["base"], iters=1000)
    assert {c.metric: c.comparison.n for c in checks} == {"rougeL": 30, "judge_overall": 28}
