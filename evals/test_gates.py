"""Release gates over the whole eval set.

- thresholds: one test per configured floor (mode, metric), [tool.tunegate.thresholds.<mode>];
- sample pass rate: the share of samples meeting their own expectations, per gated mode;
- significance: finetuned beats base and prompt_eng on each gain metric (paired bootstrap,
  Holm-adjusted over metrics x opponents, at least min_gain);
- the fine-tune-or-not verdict on the primary metric ("prompt engineering suffices" fails it).

Every failure message is the evidence: means, difference, interval, p, n.
"""


def test_threshold(threshold_verdict):
    assert threshold_verdict.passed, threshold_verdict.message


def test_sample_pass_rate(sample_pass_rate_verdict):
    """Enough samples meet their own expectations (min_sample_pass_rate; 1.0 means all)."""
    assert sample_pass_rate_verdict.passed, sample_pass_rate_verdict.message


def test_significant_gain(gain_verdict):
    """finetuned beats the opponent on the metric, and the gain is not noise."""
    assert gain_verdict.passed, gain_verdict.message


def test_finetune_verdict(adapter_verdict):
    """Is the adapter worth shipping over a good system prompt?"""
    assert adapter_verdict.passed, adapter_verdict.message
