"""The LLM judge's own gates ([tool.tunegate.judge]); its scores go through test_gates.py like any metric.

- judge errors: per kind (reference, blind, pairwise), replies that could not be a score
  (unparseable, out of range, refusals) must stay within judge.error_budget;
- pairwise: finetuned against prompt_eng side by side, both orders; gated by judge.pairwise_min_net_win.
"""


def test_judge_errors(judge_error_verdict):
    assert judge_error_verdict.passed, judge_error_verdict.message


def test_pairwise(pairwise_verdict):
    """finetuned wins more than it loses against its opponent, judged both ways round."""
    assert pairwise_verdict.passed, pairwise_verdict.message
