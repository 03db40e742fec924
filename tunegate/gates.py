"""Gates: pure functions over the score table and generations that return verdicts with evidence.

A gate never asserts; it returns a `GateResult` whose message is the evidence a reviewer needs
(means, interval, n, threshold). The pytest layer turns a failed verdict into a failed test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from tunegate.data import Sample
from tunegate.inference import Generation
from tunegate.judge import JudgeFailure, PairwiseResult
from tunegate.scores import METRIC_LABELS, mode_metric_values
from tunegate.stats import Comparison, MeanCI, bootstrap_mean_ci, format_p, holm_adjust, paired_bootstrap_many


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


# -- significance: finetuned against its yardsticks ---------------------------------------------


@dataclass(frozen=True, slots=True)
class GainCheck:
    """finetuned against one opponent on one metric, inside a Holm-adjusted family."""

    metric: str
    opponent: str
    comparison: Comparison  # a = finetuned, b = opponent
    p_adjusted: float
    family_size: int
    alpha: float
    min_gain: float = 0.0

    @property
    def significant(self) -> bool:
        return self.p_adjusted < self.alpha

    @property
    def passed(self) -> bool:
        return self.significant and self.comparison.diff >= self.min_gain

    def evidence(self) -> str:
        """The numbers behind the verdict, in one line."""
        c = self.comparison
        label = METRIC_LABELS.get(self.metric, self.metric)
        ties = f", {c.ties} ties" if c.ties else ""
        return (
            f"{label} finetuned {c.mean_a:.3f} vs {self.opponent} {c.mean_b:.3f}: diff {c.diff:+.3f} "
            f"[{c.confidence:.0%} CI {c.ci_low:+.3f}, {c.ci_high:+.3f}], p={format_p(c.p_value)}, "
            f"Holm-adjusted p={format_p(self.p_adjusted)} over {self.family_size} comparisons; n={c.n}{ties}"
        )


def paired_scores(table: pd.DataFrame, mode_a: str, mode_b: str, metric: str) -> tuple[pd.Series, pd.Series]:
    """Two modes' per-sample values of `metric` on the samples both have, aligned by sample id."""
    first, second = mode_metric_values(table, mode_a, metric), mode_metric_values(table, mode_b, metric)
    common = first.index.intersection(second.index)
    return first.loc[common], second.loc[common]


def gain_checks(
    table: pd.DataFrame,
    metrics: Sequence[str],
    opponents: Sequence[str],
    *,
    alpha: float = 0.05,
    iters: int = 10_000,
    seed: int = 0,
    min_gain: Mapping[str, float] | None = None,
) -> tuple[GainCheck, ...]:
    """Paired bootstrap of finetuned against each opponent on each metric, Holm-adjusted as one family.

    The family is every metric × every opponent of the run: with 4 metrics and 2 opponents, 8
    chances at a lucky "significant", so each p is adjusted to keep the chance of any false
    gain at most alpha.
    """
    comparisons: list[tuple[str, str, Comparison]] = []
    for opponent in opponents:
        # Metrics scored on the same samples share one set of resamples; a metric with gaps (a judge
        # error leaves a sample unscored) is resampled on its own samples.
        groups: dict[tuple[str, ...], dict[str, tuple[pd.Series, pd.Series]]] = {}
        for metric in metrics:
            ours, theirs = paired_scores(table, "finetuned", opponent, metric)
            groups.setdefault(tuple(ours.index), {})[metric] = (ours, theirs)
        by_metric: dict[str, Comparison] = {}
        for group in groups.values():
            by_metric.update(paired_bootstrap_many(
                {m: pair[0].to_numpy() for m, pair in group.items()},
                {m: pair[1].to_numpy() for m, pair in group.items()},
                iters=iters, seed=seed, alpha=alpha,
            ))
        comparisons += [(metric, opponent, by_metric[metric]) for metric in metrics]
    adjusted = holm_adjust([c.p_value for _, _, c in comparisons])
    min_gain = min_gain or {}
    return tuple(
        GainCheck(metric, opponent, comparison, float(p), len(comparisons), alpha, float(min_gain.get(metric, 0.0)))
        for (metric, opponent, comparison), p in zip(comparisons, adjusted)
    )


def gain_gate(check: GainCheck) -> GateResult:
    """Passes when finetuned beats the opponent significantly (Holm) by at least the minimum gain."""
    name = f"gain[finetuned-vs-{check.opponent}-{check.metric}]"
    if check.passed:
        verdict = f"finetuned beats {check.opponent}"
    elif not check.significant:
        verdict = f"finetuned does not significantly beat {check.opponent} (Holm-adjusted p >= alpha {check.alpha})"
    else:
        verdict = f"the gain over {check.opponent} is significant but below the minimum gain {check.min_gain:.3f}"
    if check.min_gain and check.passed:
        verdict += f" by at least the minimum gain {check.min_gain:.3f}"
    return GateResult(name, check.passed, f"{verdict}: {check.evidence()}")


def finetune_verdict(check: GainCheck, ratio_threshold: float = 0.9) -> GateResult:
    """Fine-tune or not, on the primary metric: the source design's decision rule.

    `check` is finetuned against prompt_eng. When prompt_eng reaches `ratio_threshold` of
    finetuned's mean and the difference is not significant, the adapter is not worth shipping:
    "prompt engineering suffices". Every other outcome is named too, so the failure says what
    to do next (ship, drop the adapter, or collect more samples).
    """
    c = check.comparison
    ratio = c.mean_b / c.mean_a if c.mean_a > 0 else (1.0 if c.mean_b >= c.mean_a else 0.0)
    label = METRIC_LABELS.get(check.metric, check.metric)
    share = f"prompt_eng reaches {ratio:.0%} of finetuned's {label}"
    name = "finetune_verdict"
    if check.passed:
        return GateResult(name, True, f"fine-tuning pays off: {share}; {check.evidence()}")
    if c.ci_high < 0:
        return GateResult(name, False, f"prompt engineering beats the adapter: {share}; {check.evidence()}")
    if check.significant:
        return GateResult(
            name, False, f"the adapter's gain is real but below the minimum gain {check.min_gain:.3f}: {share}; {check.evidence()}"
        )
    if ratio >= ratio_threshold:
        return GateResult(
            name,
            False,
            f"prompt engineering suffices: {share} (>= {ratio_threshold:.0%}) and the difference is not significant; "
            f"ship the prompt, not the adapter. {check.evidence()}",
        )
    return GateResult(
        name,
        False,
        f"inconclusive: finetuned leads ({share}) but not significantly at n={c.n}; more eval samples would decide. "
        f"{check.evidence()}",
    )


# -- the judge ----------------------------------------------------------------------------------


def judge_error_gate(kind: str, failures: Sequence[JudgeFailure], judgements: int, budget: float) -> GateResult:
    """Passes while judge errors stay within `budget` (a share of this kind's judgements).

    An error is a reply that could not be a score: unparseable, out of range, a refusal, a
    request the server rejected. Errors are never scored, so many of them silently shrink the
    evidence behind every judge metric; above the budget the judge itself is the problem.
    """
    name = f"judge_errors[{kind}]"
    if judgements == 0:
        return GateResult(name, False, f"no {kind} judgements were made")
    rate = len(failures) / judgements
    passed = rate <= budget
    relation = "<=" if passed else ">"
    message = f"{kind}: {len(failures)}/{judgements} judgements failed ({rate:.1%} {relation} error budget {budget:.1%})"
    if failures:
        shown = "; ".join(str(f) for f in failures[:5])
        more = f" (+{len(failures) - 5} more)" if len(failures) > 5 else ""
        message += f"; e.g. {shown}{more}"
    return GateResult(name, passed, message)


def pairwise_gate(result: PairwiseResult | None, min_net_win: float) -> GateResult:
    """Passes when the candidate's net win rate is above `min_net_win` with its whole 95% CI."""
    name = "pairwise"
    if result is None:
        return GateResult(name, False, "no sample was judged in both orders (every pairwise judgement failed)")
    passed = result.net.ci_low > min_net_win
    relation = ">" if passed else "is not above"
    return GateResult(name, passed, f"{result.summary()}; CI low {result.net.ci_low:+.2f} {relation} {min_net_win:+.2f}")
