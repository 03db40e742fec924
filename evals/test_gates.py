"""Release gates over the whole eval set: one test per configured threshold (mode, metric),
and the share of samples meeting their expectations per gated mode.

Thresholds live in [tool.tunegate.thresholds.<mode>] (or --threshold MODE.METRIC=MIN); the
failure message is the evidence: the mean, its 95% bootstrap interval and n.
"""


def test_threshold(threshold_verdict):
    assert threshold_verdict.passed, threshold_verdict.message


def test_sample_pass_rate(sample_pass_rate_verdict):
    """Enough samples meet their own expectations (min_sample_pass_rate; 1.0 means all)."""
    assert sample_pass_rate_verdict.passed, sample_pass_rate_verdict.message
