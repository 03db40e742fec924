"""Efficiency per mode: latency, throughput, token counts, peak memory, the adapter's latency
overhead and its gate, and the quality-versus-cost (Pareto) view.

A latency here is amortised: `Generation.latency_s` is the wall time of one batched `generate`
call divided by the batch's size, i.e. seconds of generation per answer at that batch size, not
what one user waits (that is the whole batch's wall time). Every answer of a batch carries the
same float, so batches are recovered by grouping equal latencies (`batch_wall_*`, and the
clusters of the overhead's bootstrap).

Cached answers keep the latency measured when they were generated, possibly on another run or
machine. Timing figures come from the fresh answers whenever there are any, and from the cached
ones only when every answer is cached (`timing_from_cache`); one figure never mixes the two,
since it would then describe neither run. Token counts and truncation describe the answers
themselves (greedy, cache-keyed), so they use every answer.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tunegate.gates import GateResult
from tunegate.inference import Generation
from tunegate.scores import METRIC_LABELS
from tunegate.stats import resampled_means

# Hyndman & Fan type 7, numpy's and pandas' default: linear between order statistics, so the p50
# of [1, 2, 3, 4] is 2.5. With under 100 answers p99 lies between the two slowest.
PERCENTILE_METHOD = "linear"
COSTS = {
    "latency": "mean latency per request (s; batch wall time / batch size)",
    "time_per_token": "generation time per output token (s; 1 / output tokens/s)",
}
_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class SampleTiming:
    """One answer's timing facts, kept so two summaries can be paired sample by sample."""

    sample_id: str
    latency_s: float
    cached: bool
    batch: int  # index of its batch within the summary (equal latency and origin = one batch)


@dataclass(frozen=True, slots=True)
class Efficiency:
    """One mode's cost figures. Latencies are per request (batch wall time / batch size), in seconds,
    over the `timed` answers; token counts and `truncated_share` over all `n` answers."""

    mode: str
    n: int
    fresh: int
    timed: int  # answers behind the timing figures: the fresh ones, or all n when every answer is cached
    timing_from_cache: bool
    latency_mean_s: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    generation_s: float  # sum of the timed latencies: the wall time of their batches
    output_tokens_per_s: float  # timed output tokens / generation_s: batched throughput
    batches: int
    batch_wall_p50_s: float
    batch_wall_p95_s: float
    batch_size: int | None
    input_tokens_mean: float
    input_tokens_p50: float
    input_tokens_p95: float
    output_tokens_mean: float
    output_tokens_p50: float
    output_tokens_p95: float
    truncated_share: float  # share of answers that hit max_new_tokens (finish_reason "length")
    samples: tuple[SampleTiming, ...] = field(default=(), repr=False)

    @property
    def timing_note(self) -> str:
        if self.timing_from_cache:
            return f"all {self.n} answers cached: latency from the cache's original run, not this one"
        left_out = f" ({self.n - self.fresh} cached answers' latencies left out)" if self.fresh < self.n else ""
        return f"timed on {self.fresh} fresh answers{left_out}"

    def __str__(self) -> str:
        return (
            f"{self.mode}: latency per request p50 {self.latency_p50_s:.3f} s, p95 {self.latency_p95_s:.3f} s, "
            f"p99 {self.latency_p99_s:.3f} s ({self.batches} batches, p50 {self.batch_wall_p50_s:.2f} s each); "
            f"{self.output_tokens_per_s:.1f} output tokens/s; tokens in {self.input_tokens_mean:.0f} / out "
            f"{self.output_tokens_mean:.0f} mean; {self.truncated_share:.0%} truncated; {self.timing_note}"
        )


def efficiency_summary(generations: Sequence[Generation], *, batch_size: int | None = None) -> Efficiency:
    """Latency percentiles, throughput, token counts and truncation of one mode's answers.

    Args:
        generations: one mode's answers (fresh, cached or both).
        batch_size: the `DecodingConfig.batch_size` they were generated with, if known: a run of
            equal latencies longer than it is split into batches of that size (equal timings of
            two batches happen only with a coarse clock or made-up data).

    Raises:
        ValueError: no answers, answers of several modes, or a negative/NaN latency.
    """
    if not generations:
        raise ValueError("efficiency_summary: no generations to summarise")
    modes = sorted({g.mode for g in generations})
    if len(modes) > 1:
        raise ValueError(f"efficiency_summary: one mode at a time, got {modes}; summarise each mode on its own")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    latency = np.array([g.latency_s for g in generations], dtype=float)
    bad = np.flatnonzero(~np.isfinite(latency) | (latency < 0))
    if bad.size:
        shown = ", ".join(f"{generations[i].sample_id}={float(latency[i])!r}" for i in bad[:5])
        raise ValueError(f"{modes[0]}: latency_s must be a finite number of seconds >= 0, got {shown}")
    cached = np.array([g.cached for g in generations], dtype=bool)
    prompt = np.array([g.prompt_tokens for g in generations], dtype=float)
    output = np.array([g.output_tokens for g in generations], dtype=float)
    timed = ~cached if not cached.all() else cached
    batch = _batch_ids(latency, cached, batch_size)
    generation_s = float(latency[timed].sum())
    if generation_s <= 0:
        raise ValueError(f"{modes[0]}: the timed answers' latencies sum to 0 s; latency_s was not measured")
    # Batch wall time = the sum of its members' latencies (each is wall time / size).
    wall = np.bincount(batch[timed], weights=latency[timed])
    wall = wall[np.bincount(batch[timed]) > 0]
    p50, p95, p99 = np.percentile(latency[timed], [50, 95, 99], method=PERCENTILE_METHOD)
    in_pct = np.percentile(prompt, [50, 95], method=PERCENTILE_METHOD)
    out_pct = np.percentile(output, [50, 95], method=PERCENTILE_METHOD)
    wall_pct = np.percentile(wall, [50, 95], method=PERCENTILE_METHOD)
    return Efficiency(
        mode=modes[0], n=len(generations), fresh=int((~cached).sum()), timed=int(timed.sum()),
        timing_from_cache=bool(cached.all()),
        latency_mean_s=float(latency[timed].mean()), latency_p50_s=float(p50), latency_p95_s=float(p95),
        latency_p99_s=float(p99), generation_s=generation_s,
        output_tokens_per_s=float(output[timed].sum()) / generation_s,
        batches=int(wall.size), batch_wall_p50_s=float(wall_pct[0]), batch_wall_p95_s=float(wall_pct[1]),
        batch_size=batch_size,
        input_tokens_mean=float(prompt.mean()), input_tokens_p50=float(in_pct[0]), input_tokens_p95=float(in_pct[1]),
        output_tokens_mean=float(output.mean()), output_tokens_p50=float(out_pct[0]), output_tokens_p95=float(out_pct[1]),
        truncated_share=float(np.mean([g.finish_reason == "length" for g in generations])),
        samples=tuple(SampleTiming(g.sample_id, float(g.latency_s), bool(g.cached), int(b))
                      for g, b in zip(generations, batch)),
    )


def _batch_ids(latency: np.ndarray, cached: np.ndarray, batch_size: int | None) -> np.ndarray:
    """Batch index per answer: equal (origin, latency) is one batch, split into runs of batch_size."""
    _, group = np.unique(np.column_stack([cached, latency]), axis=0, return_inverse=True)
    group = group.ravel()
    if batch_size is None:
        return group
    order = np.argsort(group, kind="stable")
    ordered = group[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    rank = np.empty_like(group)
    rank[order] = np.arange(group.size) - np.repeat(starts, np.diff(np.r_[starts, group.size]))
    _, split = np.unique(np.column_stack([group, rank // batch_size]), axis=0, return_inverse=True)
    return split.ravel()


# -- peak memory ------------------------------------------------------------------------------


def peak_rss_bytes() -> int | None:
    """The process's resident-memory high-water mark in bytes; None where the OS does not report it.

    It counts from process start and cannot be reset, so it includes everything loaded before
    (Python, torch, the model) and bounds any one block's use from above.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # Linux writes kB (KiB)
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def _cuda_torch() -> Any:
    """torch when this process imported it and has initialised CUDA, else None.

    Never imports torch: a run whose answers all came from the cache should not pay for it, and
    a process that never imported torch cannot have allocated CUDA memory through it.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch


def gpu_peak_bytes(device: Any = None) -> int | None:
    """torch's CUDA allocator peak (`max_memory_allocated`) in bytes since start or the last reset.

    None when this process has not used CUDA through torch (torch not imported, no GPU, or CUDA
    never initialised). Counts tensors only: the CUDA context and the allocator's cache are extra.
    """
    torch = _cuda_torch()
    return None if torch is None else int(torch.cuda.max_memory_allocated(device))


@dataclass(frozen=True, slots=True)
class PeakMemory:
    """Peak memory around a block: process RSS high-water mark (before and after) and the GPU allocator peak."""

    rss_peak_bytes: int | None
    rss_peak_before_bytes: int | None
    gpu_peak_bytes: int | None  # the block's own peak: the allocator's counter is reset on entry

    @property
    def rss_raised_bytes(self) -> int | None:
        """How far the block raised the process high-water mark (0 if it stayed under an earlier peak)."""
        if self.rss_peak_bytes is None or self.rss_peak_before_bytes is None:
            return None
        return self.rss_peak_bytes - self.rss_peak_before_bytes

    @property
    def peak_memory_mb(self) -> float | None:
        return None if self.rss_peak_bytes is None else self.rss_peak_bytes / _MIB

    def __str__(self) -> str:
        raised = self.rss_raised_bytes
        rss = "peak RSS unknown" if self.rss_peak_bytes is None else (
            f"peak RSS {self.rss_peak_bytes / _MIB:.0f} MiB (process high-water mark"
            + ("" if raised is None else f"; this block raised it by {raised / _MIB:.0f} MiB") + ")")
        gpu = "no CUDA use" if self.gpu_peak_bytes is None else f"GPU allocator peak {self.gpu_peak_bytes / _MIB:.0f} MiB"
        return f"{rss}; {gpu}"


class PeakMemoryMeter:
    """`with PeakMemoryMeter() as meter: ...`, then `meter.result` is the block's `PeakMemory`.

    Side effect: resets torch's CUDA peak counter on entry (`reset_peak_memory_stats`).
    """

    def __init__(self, device: Any = None) -> None:
        self.device = device
        self.result: PeakMemory | None = None
        self._rss_before: int | None = None

    def __enter__(self) -> PeakMemoryMeter:
        self._rss_before = peak_rss_bytes()
        torch = _cuda_torch()
        if torch is not None:
            torch.cuda.reset_peak_memory_stats(self.device)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.result = PeakMemory(peak_rss_bytes(), self._rss_before, gpu_peak_bytes(self.device))


# -- the adapter's overhead and its gate -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overhead:
    """`mode` against `baseline` on per-request latency, paired by sample.

    `latency_ratio` is the geometric mean of the per-sample ratios mode / baseline, with a
    percentile-bootstrap interval that resamples batch pairs (`clusters`), not samples: answers
    of one batch share one timing, so they are one measurement.
    """

    mode: str
    baseline: str
    latency_ratio: float
    ci_low: float
    ci_high: float
    confidence: float
    pairs: int
    clusters: int
    origin: str  # "fresh", "cached" or "mixed": when the paired latencies were measured
    total_time_ratio: float  # sum of mode latencies / sum of baseline latencies over the pairs
    throughput_ratio: float  # output tokens/s, mode / baseline, each over its own timed answers

    @property
    def latency_overhead_pct(self) -> float:
        return 100 * (self.latency_ratio - 1)

    @property
    def ci_pct(self) -> tuple[float, float]:
        return 100 * (self.ci_low - 1), 100 * (self.ci_high - 1)

    def evidence(self) -> str:
        low, high = self.ci_pct
        interval = (f"{self.confidence:.0%} CI [{low:+.1f}%, {high:+.1f}%]" if self.clusters > 1
                    else "no interval: one batch pair is one measurement")
        return (
            f"{interval} (geometric mean of {self.pairs} per-sample ratios in {self.clusters} batch pairs); "
            f"total generation time {100 * (self.total_time_ratio - 1):+.1f}%, "
            f"output tokens/s {100 * (self.throughput_ratio - 1):+.1f}%"
        )

    def __str__(self) -> str:
        return f"{self.mode} vs {self.baseline} latency {self.latency_overhead_pct:+.1f}%; {self.evidence()}; {self.origin} timings"


def overhead(base: Efficiency, other: Efficiency, *, iters: int = 10_000, confidence: float = 0.95,
             seed: int = 0) -> Overhead:
    """Latency and throughput of `other` (finetuned, a merged adapter, an ablation run) against `base`.

    Samples pair by id. Pairs timed fresh in both beat pairs cached in both, which beat mixed
    pairs: a mixed pair compares this run with an earlier one, possibly on another machine.

    Raises:
        ValueError: no sample id in common, or a paired latency of 0 s.
    """
    mine = {t.sample_id: t for t in base.samples}
    theirs = {t.sample_id: t for t in other.samples}
    common = [sid for sid in mine if sid in theirs]
    if not common:
        raise ValueError(f"overhead: {other.mode} and {base.mode} share no sample id; time both on the same eval set")
    groups = {"fresh": [s for s in common if not (mine[s].cached or theirs[s].cached)],
              "cached": [s for s in common if mine[s].cached and theirs[s].cached]}
    origin = next((name for name, ids in groups.items() if ids), "mixed")
    ids = groups.get(origin, common)
    b = np.array([mine[s].latency_s for s in ids])
    o = np.array([theirs[s].latency_s for s in ids])
    if (b <= 0).any() or (o <= 0).any():
        zero = [s for s, x, y in zip(ids, b, o) if x <= 0 or y <= 0][:5]
        raise ValueError(f"overhead: samples {zero} have a latency of 0 s; a ratio needs measured latencies")
    log_ratio = np.log(o) - np.log(b)
    batch_pairs = np.array([(mine[s].batch, theirs[s].batch) for s in ids])
    _, cluster = np.unique(batch_pairs, axis=0, return_inverse=True)
    cluster = cluster.ravel()
    sums, counts = np.bincount(cluster, weights=log_ratio), np.bincount(cluster).astype(float)
    point = float(log_ratio.mean())
    low = high = point
    if sums.size > 1:
        order = np.argsort(sums / counts, kind="stable")  # order-free, as bootstrap_mean_ci sorts
        boot = resampled_means(np.column_stack([sums[order], counts[order]]), iters=iters, seed=seed)
        tail = (1 - confidence) / 2
        low, high = np.quantile(boot[:, 0] / boot[:, 1], [tail, 1 - tail])
    return Overhead(
        mode=other.mode, baseline=base.mode, latency_ratio=math.exp(point), ci_low=math.exp(low),
        ci_high=math.exp(high), confidence=confidence, pairs=len(ids), clusters=int(sums.size), origin=origin,
        total_time_ratio=float(o.sum() / b.sum()), throughput_ratio=other.output_tokens_per_s / base.output_tokens_per_s,
    )


def latency_gate(
    base_generations: Sequence[Generation],
    finetuned_generations: Sequence[Generation],
    *,
    max_overhead_pct: float,
    batch_size: int | None = None,
    iters: int = 10_000,
    seed: int = 0,
) -> GateResult:
    """Passes when the adapter adds at most `max_overhead_pct` % latency per request over base.

    The statistic is the geometric mean of per-sample latency ratios, not a ratio of p50s: pairing
    each prompt with itself takes prompt length (slow in both modes) out of the comparison, the
    geometric mean is the summary for ratios (Fleming & Wallace 1986) and, unlike p50, uses every
    sample. Longer or shorter answers count: they are latency a user waits for; the evidence's
    output tokens/s separates the adapter's per-token cost. As in `threshold_gate`, the verdict is
    on the estimate; the interval (batch pairs resampled) shows how close to noise it is.
    """
    if not math.isfinite(max_overhead_pct) or max_overhead_pct <= -100:
        raise ValueError(f"max_overhead_pct must be a percentage above -100, e.g. 20, got {max_overhead_pct!r}")
    name = "latency_overhead[finetuned-vs-base]"
    if not base_generations or not finetuned_generations:
        return GateResult(name, False, f"no answers to time (base: {len(base_generations)}, "
                                       f"finetuned: {len(finetuned_generations)})")
    base = efficiency_summary(base_generations, batch_size=batch_size)
    finetuned = efficiency_summary(finetuned_generations, batch_size=batch_size)
    if not {t.sample_id for t in base.samples} & {t.sample_id for t in finetuned.samples}:
        return GateResult(name, False, f"no sample was answered in both base ({base.n}) and {finetuned.mode} ({finetuned.n})")
    result = overhead(base, finetuned, iters=iters, seed=seed)
    passed = result.latency_overhead_pct <= max_overhead_pct
    message = (f"{result.mode} latency {result.latency_overhead_pct:+.1f}% vs base "
               f"{'<=' if passed else '>'} limit {max_overhead_pct:+.1f}%; {result.evidence()}")
    low, high = result.ci_pct
    if result.clusters > 1 and low <= max_overhead_pct < high:
        message += "; the interval straddles the limit: within noise of it"
    if 1 < result.clusters < 5:
        message += f"; only {result.clusters} batch pairs, so the interval is rough (a smaller batch_size gives more)"
    if result.origin == "cached":
        message += "; latency from the cache's original run (every paired answer cached), not timed on this run"
    elif result.origin == "mixed":
        message += (f"; timings mix runs (base {base.fresh}/{base.n} fresh, {result.mode} {finetuned.fresh}/"
                    f"{finetuned.n} fresh): cached latencies come from their original run, maybe another machine")
    return GateResult(name, passed, message)


# -- quality versus cost ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParetoPoint:
    """One system on the quality-versus-cost plane: a mode or an ablation run."""

    label: str
    cost: float  # lower is better; its meaning is COSTS[cost_kind]
    quality: float  # the mean of `metric`
    metric: str
    cost_kind: str = "latency"
    kind: str = "mode"  # "mode" or "ablation"
    higher_is_better: bool = True
    timing_from_cache: bool = False


def pareto_front(points: Sequence[ParetoPoint]) -> list[ParetoPoint]:
    """The non-dominated points, cheapest first: no other point is at most as costly and at least
    as good, and strictly one of them. Exact ties are all kept (neither dominates the other).

    Raises:
        ValueError: a NaN cost or quality, or points whose metric directions differ.
    """
    points = list(points)
    if not points:
        return []
    if len({p.higher_is_better for p in points}) > 1:
        raise ValueError("pareto_front: points mix higher-is-better and lower-is-better metrics")
    cost = np.array([p.cost for p in points], dtype=float)
    quality = np.array([p.quality for p in points], dtype=float) * (1 if points[0].higher_is_better else -1)
    if np.isnan(cost).any() or np.isnan(quality).any():
        raise ValueError(f"pareto_front: NaN cost or quality in {[p.label for p in points]}")
    # dominates[j, i]: point j dominates point i.
    no_worse = (cost[:, None] <= cost[None, :]) & (quality[:, None] >= quality[None, :])
    better = (cost[:, None] < cost[None, :]) | (quality[:, None] > quality[None, :])
    dominated = (no_worse & better).any(axis=0)
    front = [p for p, out in zip(points, dominated) if not out]
    return sorted(front, key=lambda p: (p.cost, -p.quality if p.higher_is_better else p.quality, p.label))


def pareto_points(
    summaries: Mapping[str, Efficiency],
    scores: pd.DataFrame,
    metric: str,
    *,
    cost: str = "latency",
    ablation_summaries: Mapping[str, Efficiency] | None = None,
    ablation_scores: Mapping[str, pd.DataFrame] | None = None,
) -> list[ParetoPoint]:
    """One point per mode (labelled by mode) and per ablation run (labelled by run), read from the score tables.

    Args:
        summaries: mode -> its `Efficiency`; quality is the mean of `metric` over that mode's rows of `scores`.
        cost: "latency" (mean seconds per request) or "time_per_token" (1 / output tokens/s).
        ablation_summaries, ablation_scores: run label -> its `Efficiency` and its own long table
            (the `scores` mapping of `curve_from_scores`); quality from the rows of the summary's mode.

    Raises:
        ValueError: an unknown cost, a run without a table, or no rows of `metric` for a point.
    """
    from tunegate.ablation.curves import metric_higher_is_better

    if cost not in COSTS:
        raise ValueError(f"cost must be one of {sorted(COSTS)}, got {cost!r}")
    ablation_summaries, ablation_scores = ablation_summaries or {}, ablation_scores or {}
    missing = sorted(set(ablation_summaries) - set(ablation_scores))
    if missing:
        raise ValueError(f"ablation runs {missing} have no score table (tables for: {sorted(ablation_scores)})")
    entries = [(label, summary, scores, "mode") for label, summary in summaries.items()]
    entries += [(label, summary, ablation_scores[label], "ablation") for label, summary in ablation_summaries.items()]
    points = []
    for label, summary, table, kind in entries:
        values = table.loc[(table["mode"] == summary.mode) & (table["metric"] == metric), "value"]
        if values.empty:
            raise ValueError(f'{label}: no "{metric}" scores for mode {summary.mode!r} '
                             f"(metrics: {sorted(set(table['metric']))})")
        x = summary.latency_mean_s if cost == "latency" else 1 / summary.output_tokens_per_s
        points.append(ParetoPoint(label, float(x), float(values.mean()), metric, cost, kind,
                                  metric_higher_is_better(metric), summary.timing_from_cache))
    return points


def pareto_figure(points: Sequence[ParetoPoint]) -> Any:
    """Quality against cost, one labelled point per mode and ablation run, the Pareto frontier drawn
    as a staircase and its points ringed; the caller closes the figure (`figure_png` does).

    Raises:
        ValueError: no points, or points of different metrics or cost kinds.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tunegate.report import MODE_COLORS

    points = list(points)
    if not points or len({(p.metric, p.cost_kind) for p in points}) > 1:
        raise ValueError(f"pareto_figure needs points of one metric and cost, got "
                         f"{sorted({(p.metric, p.cost_kind) for p in points})}")
    front = pareto_front(points)
    metric, better = METRIC_LABELS.get(points[0].metric, points[0].metric), points[0].higher_is_better
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=110)
    for point in points:
        on_front = point in front
        ax.scatter([point.cost], [point.quality], s=90 if on_front else 50, zorder=3,
                   marker="o" if point.kind == "mode" else "^", alpha=1.0 if on_front else 0.55,
                   color=MODE_COLORS.get(point.label, "#55a868"), edgecolors="black" if on_front else "none",
                   linewidths=1.5)
        text = point.label + (" (cached timing)" if point.timing_from_cache else "")
        ax.annotate(text, (point.cost, point.quality), xytext=(6, 6), textcoords="offset points", fontsize=8)
    ax.plot([p.cost for p in front], [p.quality for p in front], drawstyle="steps-post", linestyle="--",
            color="black", linewidth=1, zorder=2, label="Pareto frontier (ringed: nothing is cheaper and better; faded: dominated)")
    ax.scatter([], [], marker="o", color="gray", label="mode")
    if any(p.kind == "ablation" for p in points):
        ax.scatter([], [], marker="^", color="#55a868", label="ablation run")
    ax.set_xlabel(COSTS[points[0].cost_kind])
    ax.set_ylabel(f"mean {metric} ({'higher' if better else 'lower'} is better)")
    corner = "upper" if better else "lower"
    ax.set_title(f"Quality vs cost: {metric} against {points[0].cost_kind.replace('_', ' ')} ({corner} left is better)",
                 fontsize=10)
    ax.margins(0.15)
    ax.grid(linestyle="--", alpha=0.4)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
