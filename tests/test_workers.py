"""tunegate.workers (pytest-xdist): each worker's device and threads, the workers' accounts merged,
and `pytest evals -n 2` against `-n 0` end to end on the demo (slow: real generation)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tunegate.gates import GateResult
from tunegate.workers import (
    WorkerOutput,
    WorkerResources,
    apply_worker_resources,
    merge_outputs,
    merge_work,
    visible_gpus,
    worker_resources,
)

REPO = Path(__file__).resolve().parent.parent


# -- devices and threads ------------------------------------------------------------------------


def test_each_worker_takes_its_own_gpu_round_robin() -> None:
    gpus = ["0", "1", "2", "3"]
    chosen = [worker_resources(i, 4, device="auto", gpus=gpus, cpu_count=32).cuda_visible_devices for i in range(4)]
    assert chosen == ["0", "1", "2", "3"]
    # More workers than GPUs: they share, evenly.
    shared = [worker_resources(i, 4, device="cuda", gpus=["6", "7"], cpu_count=32).cuda_visible_devices for i in range(4)]
    assert shared == ["6", "7", "6", "7"]
    assert worker_resources(1, 4, device="auto", gpus=gpus, cpu_count=32).cpu_threads == 8


def test_cpu_workers_split_the_cores_and_an_explicit_device_is_kept() -> None:
    assert worker_resources(0, 2, device="cpu", gpus=["0", "1"], cpu_count=2) == WorkerResources(None, 1)
    assert worker_resources(1, 3, device="cpu", gpus=[], cpu_count=16) == WorkerResources(None, 5)
    assert worker_resources(1, 2, device="cuda:1", gpus=["0", "1"], cpu_count=8).cuda_visible_devices is None
    assert worker_resources(5, 8, device="auto", gpus=[], cpu_count=4).cpu_threads == 1  # never 0


def test_visible_gpus_reads_cuda_visible_devices_first() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 3"}) == ["2", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-5e1c,GPU-77aa"}) == ["GPU-5e1c", "GPU-77aa"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []  # CUDA's "no GPU"


def test_apply_sets_the_gpu_and_keeps_thread_counts_the_user_chose() -> None:
    environ = {"OMP_NUM_THREADS": "3"}
    apply_worker_resources(WorkerResources("1", 4), environ)
    assert environ == {"OMP_NUM_THREADS": "3", "MKL_NUM_THREADS": "4", "CUDA_VISIBLE_DEVICES": "1"}


# -- the workers' accounts ----------------------------------------------------------------------


def test_output_travels_as_json_and_rejects_another_version() -> None:
    output = WorkerOutput((("evals/test_gates.py::test_gain[vs-base-rougeL]", GateResult("gain", True, "p 0.001")),),
                          {"rougeL": {"a": 0.5}}, {"generations": ["base"]})
    assert WorkerOutput.from_json(output.to_json()) == output
    with pytest.raises(ValueError, match="another tunegate version"):
        WorkerOutput.from_json(json.dumps({"version": 999, "gates": []}))


def test_merge_lists_gates_in_collection_order_whatever_the_arrival() -> None:
    order = ["t.py::a", "t.py::b[1]", "t.py::b[2]", "t.py::c"]
    late = WorkerOutput((("t.py::c", GateResult("c", True, "")), ("t.py::a", GateResult("a", False, ""))))
    early = WorkerOutput((("t.py::b[2]", GateResult("b2", True, "")), ("t.py::b[1]", GateResult("b1", True, ""))),
                         baseline_scores={"accepted": 1})
    merged = merge_outputs([late, early], order)
    assert [gate.name for _, gate in merged.gates] == ["a", "b1", "b2", "c"]
    assert merged.baseline_scores == {"accepted": 1}


def test_merge_work_unions_phases_and_sums_costs() -> None:
    first = {"generations": ["base", "finetuned"], "judged": [["reference", "base"]], "ablation": True,
             "times": {"generation_s": 10.0}, "generated": {"base": 3, "finetuned": 0},
             "fresh": {"base": ["a", "b", "c"], "finetuned": []},
             "memory": {"base": {"rss_peak_bytes": 900, "rss_peak_before_bytes": 100, "gpu_peak_bytes": None}}}
    second = {"generations": ["finetuned"], "judged": [["reference", "base"], ["blind", "base"]], "safety": True,
              "times": {"generation_s": 4.0, "judge_s": 2.0}, "generated": {"base": 1, "finetuned": 4},
              "fresh": {"base": ["d"], "finetuned": ["a", "b", "c", "d"]},
              "memory": {"base": {"rss_peak_bytes": 500, "rss_peak_before_bytes": 400, "gpu_peak_bytes": None}}}
    merged = merge_work([first, second])
    assert merged["generations"] == ["base", "finetuned"]
    assert merged["judged"] == [["reference", "base"], ["blind", "base"]]
    assert merged["ablation"] and merged["safety"] and not merged["training"]
    assert merged["times"] == {"generation_s": 14.0, "judge_s": 2.0}
    assert merged["generated"] == {"base": 4, "finetuned": 4}
    assert merged["generated_per_worker"] == [{"base": 3, "finetuned": 0}, {"base": 1, "finetuned": 4}]
    assert merged["fresh"] == {"base": ["a", "b", "c", "d"], "finetuned": ["a", "b", "c", "d"]}
    assert merged["memory"]["base"]["rss_peak_bytes"] == 900
    assert merged["workers"] == 2


# -- end to end: pytest evals -n 2 against -n 0 -------------------------------------------------

SMALL = 4  # samples; batch size 1 makes 4 chunks per mode for the two workers to share


def small_config(work: Path) -> Path:
    """The demo with one cheap metric, no judge, no sweep: a cold run takes seconds per mode."""
    (work / "cache").mkdir(parents=True)
    from tunegate.models import ensure_demo_model

    demo = ensure_demo_model(REPO / ".tunegate_cache")
    (work / "cache" / "models").symlink_to(demo.parent, target_is_directory=True)
    config = work / "tunegate.toml"
    config.write_text(f"""
[tool.tunegate]
base_model = "demo"
adapter = "{REPO / 'fixtures/demo/adapter'}"
eval_set = "{REPO / 'fixtures/demo/test.jsonl'}"
system_prompt_file = "{REPO / 'fixtures/demo/system_prompt.txt'}"
training_state = "{REPO / 'fixtures/demo/adapter/trainer_state.json'}"
baseline_dir = "{REPO / 'baselines'}"
limit = {SMALL}
max_new_tokens = 24
batch_size = 1
metrics = ["rougeL"]
gain_metrics = ["rougeL"]
primary_metric = "rougeL"
cache_dir = "{work / 'cache'}"
report_dir = "{work / 'reports'}"
""", encoding="utf-8")
    return config


def run_small(work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider", "--tunegate-config",
               str(work / "tunegate.toml"), "-rN", *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)


def verdicts(work: Path) -> tuple[list[tuple[str, bool, str]], list[tuple]]:
    results = json.loads((work / "reports" / "results.json").read_text(encoding="utf-8"))
    gates = [(g["name"], g["passed"], g["message"]) for g in results["gates"]]
    scores = sorted(tuple(sorted(row.items())) for row in results["scores"])
    return gates, scores


@pytest.mark.slow
def test_two_workers_split_the_work_and_give_the_same_verdicts(tmp_path: Path) -> None:
    parallel, serial = tmp_path / "n2", tmp_path / "n0"
    small_config(parallel), small_config(serial)
    two = run_small(parallel, "-n", "2")
    one = run_small(serial, "-n", "0")
    assert two.returncode == one.returncode, two.stdout[-3000:] + two.stderr[-2000:]
    assert "tunegate: release gate verdicts" in two.stdout  # the controller prints the merged summary
    # Each answer generated exactly once over both workers, and the workers shared the modes.
    assert f"new answers: base {SMALL}, prompt_eng {SMALL}, finetuned {SMALL}" in two.stdout, two.stdout[-3000:]
    per_worker = re.search(r"xdist: 2 workers, times summed over them; new answers per worker: (.*)", two.stdout)
    assert per_worker, two.stdout[-3000:]
    counts = [sum(int(n) for n in re.findall(r"(\d+)", part)) for part in per_worker.group(1).split(";")]
    assert sum(counts) == 3 * SMALL and min(counts) > 0, per_worker.group(0)  # both generated some
    # Same gates, same messages, same per-sample scores as one process; the same batches made the same answers.
    gates, scores = verdicts(parallel)
    assert gates and (gates, scores) == verdicts(serial)
    provenance = json.loads((parallel / "reports" / "results.json").read_text(encoding="utf-8"))["provenance"]
    assert provenance["xdist_workers"] == 2
    # A rerun with two workers generates nothing.
    again = run_small(parallel, "-n", "2")
    assert "new answers: base 0, prompt_eng 0, finetuned 0" in again.stdout, again.stdout[-3000:]
    assert verdicts(parallel)[0] == gates
