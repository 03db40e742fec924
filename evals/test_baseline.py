"""Non-regression against the last accepted release (baselines/test_baseline/test_no_regression.json).

`pytest evals --snapshot-update` accepts the current adapter's per-sample scores as the baseline.
Otherwise the comparison is a paired test, not equality: it fails only when the adapter is
significantly worse than the baseline by more than [tool.tunegate.regression_margin].
"""


def test_no_regression(baseline_scores, baseline_snapshot):
    assert baseline_scores == baseline_snapshot
