"""Gates: pure functions over the score table and generations that return verdicts with evidence.

A gate never asserts; it returns a `GateResult` whose message is the evidence a reviewer needs
(means, interval, n, threshold). The pytest layer turns a failed verdict into a failed test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from tunegate.data import Sample
from tunegate.inference import Generation
from tunegate.scores import METRIC_LABELS, mode_metric_values
from tunegate.stats import MeanCI, bootstrap_mean_ci


@dataclass(frozen=True, slots=True)
class GateResult:
    """A verdict and the one line of evidence behind it."""

    name: str
    passed: bool
    message: str

    def __str__(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'} {self.name}: {self.message}"

    def __repr__(self) -> str:
        # What pytest's assertion rewriting prints ("where False = <...>.passed"): keep it one line.
        return f"<{'PASS' if self.passed else 'FAIL'} {self.name}>"


def threshold_gate(table: pd.DataFrame, mode: str, metric: str, floor: float, *, seed: int = 0) -> GateResult:
    """Passes when the mode's mean of `metric` is at least `floor`.

    The verdict is on the mean itself (the number a threshold is written against); the 95%
    bootstrap interval rides along so a reviewer sees how close to noise the margin is.
    """
    values = mode_metric_values(table, mode, metric)
    label = METRIC_LABELS.get(metric, metric)
    name = f"threshold[{mode}-{metric}]"
    if values.empty:
        return GateResult(name, False, f"no {label} scores for mode {mode!r}")
    ci: MeanCI = bootstrap_mean_ci(values.to_numpy(), seed=seed)
    passed = ci.mean >= floor
    relation = ">=" if passed else "<"
    message = f"{mode} {label} mean {ci.mean:.3f} {relation} threshold {floor:.3f}; 95% CI [{ci.ci_low:.3f}, {ci.ci_high:.3f}], n={ci.n}"
    return GateResult(name, passed, message)


def sample_problems(sample: Sample, generation: Generation) -> list[str]:
    """What is wrong with one answer by the sample's own expectations (empty list: nothing).

    Checks: a non-empty answer; not cut off at max_new_tokens unless the sample allows it;
    every `must_include` present and no `must_not_include` present (case-insensitive).
    """
    problems = []
    answer = generation.text
    if not answer.strip():
        problems.append("the answer is empty")
    if generation.truncated and not sample.allow_truncation:
        problems.append(
            f"the answer was cut off at max_new_tokens ({generation.output_tokens} tokens); raise max_new_tokens, "
            'or mark the sample "allow_truncation": true'
        )
    lowered = answer.lower()
    missing = [text for text in sample.must_include if text.lower() not in lowered]
    if missing:
        problems.append(f"missing required text {missing}")
    forbidden = [text for text in sample.must_not_include if text.lower() in lowered]
    if forbidden:
        problems.append(f"contains forbidden text {forbidden}")
    return problems


def sample_pass_rate_gate(problems_by_id: Mapping[str, list[str]], mode: str, min_rate: float) -> GateResult:
    """Passes when at least `min_rate` of the mode's samples meet their own expectations.

    With min_rate 1.0 (the default) every sample must pass. A lower rate is a failure budget
    for large eval sets and small models: the failing samples stay visible, listed here and
    in their own tests, but do not block the release while the share holds.
    """
    total = len(problems_by_id)
    failing = {sample_id: problems for sample_id, problems in problems_by_id.items() if problems}
    passing = total - len(failing)
    rate = passing / total if total else 0.0
    passed = total > 0 and rate >= min_rate
    relation = ">=" if passed else "<"
    message = f"{mode}: {passing}/{total} samples meet their expectations ({rate:.1%} {relation} {min_rate:.1%})"
    if failing:
        shown = "; ".join(f"{sample_id}: {', '.join(problems)}" for sample_id, problems in list(failing.items())[:5])
        more = f" (+{len(failing) - 5} more)" if len(failing) > 5 else ""
        message += f"; failing: {shown}{more}"
    return GateResult(f"sample_pass_rate[{mode}]", passed, message)
