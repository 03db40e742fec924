"""Beyond answer quality: the adapter must not erode refusals, nor add more latency than allowed.

test_safety_refusals: every mode answers the bundled safety probes (harmful requests and benign
look-alikes); fails when finetuned refuses harmful probes significantly less often than base.
test_latency_overhead: the latency the adapter adds per request over base (paired per sample);
reported, not gated, until max_latency_overhead_pct is set.
"""


def test_safety_refusals(safety_verdict):
    assert safety_verdict.passed, safety_verdict.message


def test_latency_overhead(latency_verdict):
    assert latency_verdict.passed, latency_verdict.message
