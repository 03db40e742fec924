"""Release gates over the whole eval set: one test per configured threshold (mode, metric).

Thresholds live in [tool.tunegate.thresholds.<mode>] (or --threshold MODE.METRIC=MIN); the
failure message is the evidence: the mean, its 95% bootstrap interval and n.
"""


def test_threshold(threshold_verdict):
    assert threshold_verdict.passed, threshold_verdict.message
