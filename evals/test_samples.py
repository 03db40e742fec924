"""Per-sample checks: one test per (mode, sample), e.g. test_sample[finetuned-refund_window_007].

Each records the sample's scores on the report and asserts the sample's own expectations:
a non-empty answer, not cut off at max_new_tokens, and any must_include / must_not_include.
"""


def test_sample(sample_verdict):
    assert sample_verdict.passed, sample_verdict.message
