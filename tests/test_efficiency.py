"""Tests for tunegate.efficiency: latency figures, peak memory, the overhead gate, the Pareto view."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from tunegate.efficiency import (
    ParetoPoint,
    PeakMemoryMeter,
    efficiency_summary,
    gpu_peak_bytes,
    latency_gate,
    overhead,
    pareto_figure,
    pareto_front,
    pareto_points,
    peak_rss_bytes,
)
from tunegate.inference import Generation
from tunegate.report import figure_png
from tunegate.stats import bootstrap_mean_ci


def answer(i: int, latency_s: float, *, mode: str = "base", cached: bool = False, prompt_tokens: int = 20,
           output_tokens: int = 10, finish_reason: str = "stop") -> Generation:
    return Generation(f"s{i:02d}", mode, "an answer", finish_reason, prompt_tokens, output_tokens, latency_s, cached)


def batched(batch_walls_s: list[float], sizes: list[int], *, mode: str = "base", cached: bool = False,
            output_tokens: int = 10) -> list[Generation]:
    """What inference writes: every answer of a batch carries the batch's wall time / its size."""
    answers, i = [], 0
    for wall, size in zip(batch_walls_s, sizes):
        for _ in range(size):
            answers.append(answer(i, wall / size, mode=mode, cached=cached, output_tokens=output_tokens))
            i += 1
    return answers


# --- efficiency_summary ----------------------------------------------------------------------


def test_percentiles_of_a_hand_built_latency_list_use_linear_interpolation() -> None:
    summary = efficiency_summary([answer(i, float(i)) for i in range(1, 11)])  # 1 .. 10 s
    # Type 7: position (n - 1) q = 9 q over the sorted list 1..10, so the value is 1 + 9 q.
    assert summary.latency_p50_s == pytest.approx(5.5)
    assert summary.latency_p95_s == pytest.approx(9.55)
    assert summary.latency_p99_s == pytest.approx(9.91)
    assert summary.latency_mean_s == pytest.approx(5.5)
    assert (summary.n, summary.fresh, summary.timed, summary.timing_from_cache) == (10, 10, 10, False)


def test_tokens_per_second_is_output_tokens_over_summed_latency() -> None:
    answers = [answer(0, 0.5, output_tokens=30), answer(1, 1.5, output_tokens=50)]
    assert efficiency_summary(answers).output_tokens_per_s == pytest.approx(80 / 2.0)


def test_token_counts_and_truncated_share() -> None:
    answers = [answer(i, 0.1, prompt_tokens=p, output_tokens=o, finish_reason=f)
               for i, (p, o, f) in enumerate([(10, 5, "stop"), (20, 64, "length"), (30, 7, "stop"), (40, 64, "length")])]
    summary = efficiency_summary(answers)
    assert summary.input_tokens_mean == 25 and summary.input_tokens_p50 == 25
    assert summary.input_tokens_p95 == pytest.approx(38.5)  # 30 + 0.85 * 10
    assert summary.output_tokens_mean == pytest.approx(35) and summary.output_tokens_p50 == pytest.approx(35.5)
    assert summary.truncated_share == 0.5


def test_batches_are_recovered_from_equal_latencies() -> None:
    summary = efficiency_summary(batched([0.8, 1.2, 0.3], [4, 4, 2]))
    assert summary.batches == 3
    assert summary.generation_s == pytest.approx(2.3)
    assert summary.batch_wall_p50_s == pytest.approx(0.8)
    assert summary.latency_p50_s == pytest.approx(0.2)  # per request: wall / size, 10 answers


def test_batch_size_splits_two_batches_with_the_same_timing() -> None:
    answers = batched([0.8, 0.8], [4, 4])  # equal walls: one run of 8 equal latencies
    assert efficiency_summary(answers).batches == 1
    split = efficiency_summary(answers, batch_size=4)
    assert split.batches == 2 and split.batch_wall_p50_s == pytest.approx(0.8)


def test_timing_uses_fresh_answers_when_some_are_cached() -> None:
    fresh = [answer(i, 0.2, output_tokens=10) for i in range(3)]
    stale = [answer(i, 30.0, cached=True, output_tokens=40, finish_reason="length") for i in range(3, 5)]
    summary = efficiency_summary(fresh + stale)
    assert (summary.n, summary.fresh, summary.timed, summary.timing_from_cache) == (5, 3, 3, False)
    assert summary.latency_p99_s == pytest.approx(0.2)  # the 30 s cached latencies are left out
    assert summary.output_tokens_per_s == pytest.approx(30 / 0.6)
    assert summary.output_tokens_mean == pytest.approx((30 + 80) / 5)  # counts use every answer
    assert summary.truncated_share == pytest.approx(0.4)
    assert "timed on 3 fresh answers (2 cached answers' latencies left out)" in str(summary)


def test_cached_only_input_is_reported_as_from_the_cache() -> None:
    summary = efficiency_summary([answer(i, 0.25, cached=True) for i in range(4)])
    assert summary.timing_from_cache and summary.fresh == 0 and summary.timed == 4
    assert summary.latency_p50_s == pytest.approx(0.25)
    assert "all 4 answers cached: latency from the cache's original run" in str(summary)


@pytest.mark.parametrize(("answers", "needle"), [
    ([], "no generations"),
    ([answer(0, 0.1), answer(1, 0.1, mode="finetuned")], "one mode at a time"),
    ([answer(0, float("nan"))], "s00=nan"),
    ([answer(0, 0.0), answer(1, 0.0)], "sum to 0 s"),
])
def test_bad_input_is_an_error_that_names_it(answers: list[Generation], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        efficiency_summary(answers)


# --- peak memory -----------------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_peak_rss_is_in_bytes_and_rises_with_a_touched_allocation() -> None:
    status = open("/proc/self/status").read()
    rss_now = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024
    before = peak_rss_bytes()
    assert before is not None and before >= rss_now
    extra = 48 * 1024 * 1024
    with PeakMemoryMeter() as meter:
        block = b"\x01" * (before - rss_now + extra)  # writes every byte: the pages are resident
    del block
    assert meter.result is not None
    # Bytes, not KiB: the high-water mark moved by tens of MiB (a KiB mix-up reads 1024× off).
    assert meter.result.rss_raised_bytes >= extra // 2
    assert "process high-water mark" in str(meter.result)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="compares with /proc/self/status")
def test_peak_rss_without_proc_falls_back_to_getrusage_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    from tunegate import efficiency

    from_proc = peak_rss_bytes()

    def no_proc(*_: object) -> types.SimpleNamespace:
        def unreadable() -> str:
            raise OSError("no /proc here")
        return types.SimpleNamespace(read_text=unreadable)

    monkeypatch.setattr(efficiency, "Path", no_proc)
    # ru_maxrss is KiB on Linux; the kernel's two counters agree to within its lazy RSS bookkeeping.
    assert peak_rss_bytes() == pytest.approx(from_proc, abs=4 * 1024 * 1024)


def fake_torch(available: bool, initialised: bool = True, peak: int = 123) -> types.ModuleType:
    calls = []
    cuda = types.SimpleNamespace(is_available=lambda: available, is_initialized=lambda: initialised,
                                 max_memory_allocated=lambda device=None: peak,
                                 reset_peak_memory_stats=lambda device=None: calls.append(device))
    module = types.ModuleType("torch")
    module.cuda = cuda
    module.resets = calls
    return module


def test_gpu_peak_reads_the_allocator_only_when_cuda_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=True, peak=4096))
    assert gpu_peak_bytes() == 4096
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=False))
    assert gpu_peak_bytes() is None
    monkeypatch.setitem(sys.modules, "torch", fake_torch(available=True, initialised=False))
    assert gpu_peak_bytes() is None
    monkeypatch.delitem(sys.modules, "torch")
    assert gpu_peak_bytes() is None  # and torch was not imported to find out
    assert "torch" not in sys.modules


def test_peak_memory_meter_resets_the_gpu_counter_on_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = fake_torch(available=True, peak=2 * 1024 * 1024)
    monkeypatch.setitem(sys.modules, "torch", torch)
    with PeakMemoryMeter(device="cuda:0") as meter:
        assert torch.resets == ["cuda:0"]
    assert meter.result.gpu_peak_bytes == 2 * 1024 * 1024
    assert "GPU allocator peak 2 MiB" in str(meter.result)


# --- overhead and the latency gate -----------------------------------------------------------

BASE_S = [0.21, 0.35, 0.18, 0.52, 0.27, 0.44, 0.31, 0.25, 0.39, 0.29, 0.33, 0.47]


def per_sample(latencies: list[float], mode: str, *, cached: bool = False) -> list[Generation]:
    return [answer(i, s, mode=mode, cached=cached) for i, s in enumerate(latencies)]


def noisy(factor: float, seed: int = 1) -> list[float]:
    rng = np.random.default_rng(seed)
    return [s * factor * float(np.exp(rng.normal(0, 0.02))) for s in BASE_S]


def test_gate_passes_at_five_percent_overhead_with_a_twenty_percent_limit() -> None:
    result = latency_gate(per_sample(BASE_S, "base"), per_sample(noisy(1.05), "finetuned"), max_overhead_pct=20)
    assert result.passed, result
    assert result.name == "latency_overhead[finetuned-vs-base]"
    assert "finetuned latency +" in result.message and "<= limit +20.0%" in result.message
    assert "12 per-sample ratios in 12 batch pairs" in result.message
    assert "cache" not in result.message


def test_gate_fails_at_sixty_percent_overhead() -> None:
    result = latency_gate(per_sample(BASE_S, "base"), per_sample(noisy(1.6), "finetuned"), max_overhead_pct=20)
    assert not result.passed
    assert "> limit +20.0%" in result.message
    ratio = overhead(efficiency_summary(per_sample(BASE_S, "base")),
                     efficiency_summary(per_sample(noisy(1.6), "finetuned")))
    assert 55 < ratio.latency_overhead_pct < 65 and ratio.ci_pct[0] > 20


def test_exact_overhead_is_the_ratio_with_a_degenerate_interval() -> None:
    result = overhead(efficiency_summary(per_sample(BASE_S, "base")),
                      efficiency_summary(per_sample([s * 1.25 for s in BASE_S], "finetuned")))
    assert result.latency_ratio == pytest.approx(1.25)
    assert result.ci_low == pytest.approx(1.25) and result.ci_high == pytest.approx(1.25)
    assert result.total_time_ratio == pytest.approx(1.25)
    assert result.throughput_ratio == pytest.approx(1 / 1.25)  # same tokens, 25% more time
    assert (result.pairs, result.clusters, result.origin) == (12, 12, "fresh")


def test_unbatched_interval_is_bootstrap_mean_ci_of_the_log_ratios() -> None:
    slower = noisy(1.1, seed=7)
    result = overhead(efficiency_summary(per_sample(BASE_S, "base")), efficiency_summary(per_sample(slower, "finetuned")),
                      seed=3, iters=2000)
    expected = bootstrap_mean_ci(np.log(slower) - np.log(BASE_S), seed=3, iters=2000)
    assert np.log(result.latency_ratio) == pytest.approx(expected.mean)
    assert np.log(result.ci_low) == pytest.approx(expected.ci_low)
    assert np.log(result.ci_high) == pytest.approx(expected.ci_high)


def test_batched_answers_count_as_one_measurement_per_batch_pair() -> None:
    base = efficiency_summary(batched([0.8, 1.2, 0.3], [4, 4, 2]))
    finetuned = efficiency_summary(batched([0.88, 1.32, 0.33], [4, 4, 2], mode="finetuned"))
    result = overhead(base, finetuned)
    assert (result.pairs, result.clusters) == (10, 3)
    assert result.latency_ratio == pytest.approx(1.1)
    gate = latency_gate(batched([0.8, 1.2, 0.3], [4, 4, 2]), batched([0.88, 1.32, 0.33], [4, 4, 2], mode="finetuned"),
                        max_overhead_pct=20)
    assert gate.passed and "in 3 batch pairs" in gate.message and "only 3 batch pairs" in gate.message
    one_batch = overhead(efficiency_summary(batched([0.8], [4])), efficiency_summary(batched([1.0], [4], mode="finetuned")))
    assert one_batch.clusters == 1 and "no interval: one batch pair is one measurement" in one_batch.evidence()


def test_cached_only_gate_says_the_latency_is_from_the_original_run() -> None:
    result = latency_gate(per_sample(BASE_S, "base", cached=True),
                          per_sample(noisy(1.05), "finetuned", cached=True), max_overhead_pct=20)
    assert result.passed
    assert "latency from the cache's original run (every paired answer cached), not timed on this run" in result.message


def test_fresh_pairs_are_preferred_and_mixed_runs_are_named() -> None:
    base = per_sample(BASE_S, "base")
    finetuned = per_sample(noisy(1.05), "finetuned")
    # Cached finetuned answers from a slower earlier run must not enter the fresh comparison.
    finetuned[:4] = [answer(i, 5.0, mode="finetuned", cached=True) for i in range(4)]
    fresh = overhead(efficiency_summary(base), efficiency_summary(finetuned))
    assert (fresh.origin, fresh.pairs) == ("fresh", 8)
    assert fresh.latency_overhead_pct < 10
    mixed = latency_gate(per_sample(BASE_S, "base", cached=True), per_sample(noisy(1.05), "finetuned"),
                         max_overhead_pct=20)
    assert "timings mix runs (base 0/12 fresh, finetuned 12/12 fresh)" in mixed.message


def test_gate_without_common_samples_fails_with_the_reason() -> None:
    other = [answer(i + 50, 0.3, mode="finetuned") for i in range(3)]
    result = latency_gate(per_sample(BASE_S, "base"), other, max_overhead_pct=20)
    assert not result.passed and "no sample was answered in both" in result.message
    assert not latency_gate([], other, max_overhead_pct=20).passed


# --- the Pareto view -------------------------------------------------------------------------


def point(label: str, cost: float, quality: float, **extra: object) -> ParetoPoint:
    return ParetoPoint(label, cost, quality, "rougeL", **extra)


KNOWN = [point("a", 1.0, 0.40), point("b", 2.0, 0.60), point("c", 3.0, 0.55),  # c: dearer and worse than b
         point("d", 2.0, 0.50),  # d: as dear as b, worse
         point("e", 4.0, 0.80), point("f", 0.5, 0.10)]


def test_pareto_front_of_a_known_point_set() -> None:
    assert [p.label for p in pareto_front(KNOWN)] == ["f", "a", "b", "e"]


def test_pareto_front_keeps_exact_ties_and_drops_equal_cost_worse_quality() -> None:
    points = [point("x", 1.0, 0.5), point("y", 1.0, 0.5), point("z", 1.0, 0.4), point("w", 1.0, 0.5 - 1e-9)]
    assert [p.label for p in pareto_front(points)] == ["x", "y"]


def test_pareto_front_for_a_lower_is_better_metric() -> None:
    points = [ParetoPoint(n, c, q, "perplexity", higher_is_better=False)
              for n, c, q in [("a", 1.0, 9.0), ("b", 2.0, 5.0), ("c", 3.0, 7.0)]]
    assert [p.label for p in pareto_front(points)] == ["a", "b"]


def scores_table(means: dict[str, float]) -> pd.DataFrame:
    rows = [(f"s{i}", mode, "rougeL", mean + delta) for mode, mean in means.items() for i, delta in enumerate([-0.1, 0.1])]
    return pd.DataFrame(rows, columns=["sample_id", "mode", "metric", "value"])


def test_pareto_points_read_quality_from_the_score_tables_and_cost_from_summaries() -> None:
    summaries = {mode: efficiency_summary(per_sample([s * f for s in BASE_S], mode)) for mode, f in
                 [("base", 1.0), ("prompt_eng", 1.2), ("finetuned", 1.1)]}
    run = efficiency_summary(per_sample([s * 1.05 for s in BASE_S], "finetuned", cached=True))
    points = pareto_points(summaries, scores_table({"base": 0.2, "prompt_eng": 0.3, "finetuned": 0.5}), "rougeL",
                           ablation_summaries={"r=4": run}, ablation_scores={"r=4": scores_table({"finetuned": 0.45})})
    by_label = {p.label: p for p in points}
    assert by_label["finetuned"].quality == pytest.approx(0.5)
    assert by_label["finetuned"].cost == pytest.approx(summaries["finetuned"].latency_mean_s)
    assert by_label["r=4"].kind == "ablation" and by_label["r=4"].timing_from_cache
    assert [p.label for p in pareto_front(points)] == ["base", "r=4", "finetuned"]
    per_token = pareto_points(summaries, scores_table({"base": 0.2, "prompt_eng": 0.3, "finetuned": 0.5}), "rougeL",
                              cost="time_per_token")
    assert per_token[0].cost == pytest.approx(1 / summaries["base"].output_tokens_per_s)
    with pytest.raises(ValueError, match='no "bleu" scores'):
        pareto_points(summaries, scores_table({"base": 0.2, "prompt_eng": 0.3, "finetuned": 0.5}), "bleu")


def test_pareto_figure_draws_the_frontier_renders_and_is_closed() -> None:
    import matplotlib.pyplot as plt

    points = KNOWN + [point("finetuned", 1.5, 0.7, timing_from_cache=True), point("r=8", 3.5, 0.9, kind="ablation")]
    fig = pareto_figure(points)
    ax = fig.axes[0]
    frontier = next(line for line in ax.get_lines() if line.get_label().startswith("Pareto frontier"))
    assert list(frontier.get_xdata()) == [p.cost for p in pareto_front(points)] == [0.5, 1.0, 1.5, 3.5]  # r=8 dominates e, finetuned b
    assert "mean ROUGE-L (higher is better)" == ax.get_ylabel() and "latency per request" in ax.get_xlabel()
    assert any(t.get_text() == "finetuned (cached timing)" for t in ax.texts)
    png = figure_png(fig)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
