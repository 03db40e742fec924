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
