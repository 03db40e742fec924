"""pytest-xdist: each worker's device and threads, what it computed, and the controller's merge.

`pytest evals -n 2` starts two worker processes; the controller process runs no test. The
workers share the work through the cache (`tunegate.claims`: each generation batch is claimed by
one worker, the other reads it). At the end each worker reports what it computed (`WorkerOutput`:
its gate verdicts with the test that gave them, the phases it ran, its timings); the controller
merges them and re-reads those phases from the cache, so the terminal summary, report.html,
results.json and summary.md say what a run without -n says. The controller never loads a model.

Devices: on a runner with several GPUs each worker gets its own (`CUDA_VISIBLE_DEVICES` set
before torch starts, round-robin when there are more workers than GPUs); on CPU the cores are
split between workers (two workers with all cores each would only fight over them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tunegate.gates import GateResult

PAYLOAD_VERSION = 1


@dataclass(frozen=True, slots=True)
class WorkerResources:
    """What one xdist worker may use: a GPU of its own (None: leave CUDA_VISIBLE_DEVICES alone) and CPU threads."""

    cuda_visible_devices: str | None
    cpu_threads: int


def worker_resources(
    worker_index: int, worker_count: int, *, device: str, gpus: Sequence[str], cpu_count: int
) -> WorkerResources:
    """The GPU and thread count of worker `worker_index` (0-based) out of `worker_count`.

    `device` is the configured one: "cpu" takes no GPU; an explicit "cuda:N" is the user's choice
    and is kept; "auto" or "cuda" take GPU `gpus[index % len(gpus)]`.
    """
    threads = max(1, cpu_count // max(1, worker_count))
    if device == "cpu" or ":" in device or not gpus:
        return WorkerResources(None, threads)
    return WorkerResources(gpus[worker_index % len(gpus)], threads)


def visible_gpus(environ: Mapping[str, str]) -> list[str]:
    """The GPUs this process may use, without importing torch (which would start CUDA too early).

    CUDA_VISIBLE_DEVICES when set (its entries, indices or UUIDs), otherwise nvidia-smi's list;
    none on a machine without either.
    """
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [entry.strip() for entry in listed.split(",") if entry.strip() and entry.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        found = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in found.stdout.splitlines() if line.strip().isdigit()]


def apply_worker_resources(resources: WorkerResources, environ: Any = os.environ) -> None:
    """Pin this worker process: its GPU, and its share of the CPU threads (unless the user set them)."""
    if resources.cuda_visible_devices is not None:
        environ["CUDA_VISIBLE_DEVICES"] = resources.cuda_visible_devices
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environ.setdefault(name, str(resources.cpu_threads))
    import sys

    if "torch" in sys.modules:  # already imported (by a conftest): set it directly as well
        sys.modules["torch"].set_num_threads(int(environ["OMP_NUM_THREADS"]))


@dataclass(frozen=True, slots=True)
class WorkerOutput:
    """What one worker computed, in JSON-safe form (it travels over xdist's channel).

    `gates` pairs each verdict with the test node that gave it, so the controller can list them in
    collection order. `work` names the phases to re-read from the cache (see `GateRun.work_done`).
    """

    gates: tuple[tuple[str, GateResult], ...] = ()
    baseline_scores: dict[str, Any] | None = None
    work: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({
            "version": PAYLOAD_VERSION,
            "gates": [{"nodeid": nodeid, **asdict(gate)} for nodeid, gate in self.gates],
            "baseline_scores": self.baseline_scores,
            "work": self.work,
        })

    @classmethod
    def from_json(cls, text: str) -> WorkerOutput:
        data = json.loads(text)
        if data.get("version") != PAYLOAD_VERSION:
            raise ValueError(f"a worker of another tunegate version reported (payload {data.get('version')})")
        gates = tuple((g["nodeid"], GateResult(g["name"], g["passed"], g["message"])) for g in data["gates"])
        return cls(gates, data.get("baseline_scores"), data.get("work") or {})


def merge_outputs(outputs: Sequence[WorkerOutput], collection_order: Sequence[str]) -> WorkerOutput:
    """One output from several workers' (in any arrival order): gates in test collection order.

    Work and timings are merged by `merge_work`; the accepted baseline's scores come from the one
    worker that ran the non-regression test.
    """
    position = {nodeid: i for i, nodeid in enumerate(collection_order)}
    gates = [pair for output in outputs for pair in output.gates]
    # Stable: gates of one test keep their order; unknown tests (none expected) go last, by id.
    gates.sort(key=lambda pair: (position.get(pair[0], len(position)), pair[0]))
    baseline = next((o.baseline_scores for o in outputs if o.baseline_scores is not None), None)
    return WorkerOutput(tuple(gates), baseline, merge_work([o.work for o in outputs]))


def merge_work(works: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The union of the phases run, and the workers' timings summed (work done, not wall time).

    Fresh-answer counts are summed per mode: with the work claimed batch by batch, their sum is
    exactly the number of answers generated, which shows that nothing was generated twice.
    """
    merged: dict[str, Any] = {"generations": [], "scores": [], "judged": [], "pairwise": False, "gain_checks": False, "training": False,
                              "ablation": False, "safety": False, "times": {}, "generated": {}, "memory": {},
                              "fresh": {}, "ablation_generated": 0, "merge_outcomes": [], "workers": len(works),
                              "generated_per_worker": [dict(work.get("generated", {})) for work in works]}
    for work in works:
        for key in ("generations", "scores", "judged"):
            for item in work.get(key, []):
                if item not in merged[key]:
                    merged[key].append(item)
        for key in ("pairwise", "gain_checks", "training", "ablation", "safety"):
            merged[key] = merged[key] or bool(work.get(key))
        for name, seconds in work.get("times", {}).items():
            merged["times"][name] = merged["times"].get(name, 0.0) + seconds
        for mode, count in work.get("generated", {}).items():
            merged["generated"][mode] = merged["generated"].get(mode, 0) + count
        for mode, memory in work.get("memory", {}).items():
            kept = merged["memory"].get(mode)
            if kept is None or (memory.get("rss_peak_bytes") or 0) > (kept.get("rss_peak_bytes") or 0):
                merged["memory"][mode] = memory  # the worker that generated it saw the real peak
        for mode, ids in work.get("fresh", {}).items():
            kept = merged["fresh"].setdefault(mode, [])
            kept += [i for i in ids if i not in kept]
        merged["ablation_generated"] += work.get("ablation_generated", 0)
        merged["merge_outcomes"] += work.get("merge_outcomes", [])
    return merged
