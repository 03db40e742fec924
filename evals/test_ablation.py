"""Ablation: the sweep in [tool.tunegate.ablation], every run on the session's one loaded base.

Each adapter of the sweep is loaded onto the already loaded base model and switched in (no base
reload), answers the same eval set with the finetuned mode's prompt, and is scored with the same
metrics. The report draws one curve per metric with 95% CIs and the best point; this test fails
when the runs differ in more than the swept setting (the curve would not be that setting's effect),
and otherwise carries the evidence: each metric's best run, tested against the sweep's smallest value.
"""


def test_ablation_sweep(ablation_verdict):
    assert ablation_verdict.passed, ablation_verdict.message
