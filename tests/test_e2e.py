"""End to end: the real release gate (`pytest evals`) on a slice of the demo, as a user runs it.

Runs pytest in a subprocess on the repository's own configuration with a fresh cache (the
converted demo model is shared through a symlink, so it is not rebuilt), then checks the exit
code, the HTML report, the cached rerun and `-m finetuned` selection.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SLICE = 8
# finetuned ROUGE-L and BERTScore floors, the sample pass rate, 4 metrics x 2 opponents of
# significant gain, the fine-tune-or-not verdict, non-regression against baselines/, and the judge's
# error budget per kind (reference, blind, pairwise), the adapter's training curve, and the rank
# sweep (4 adapters on the one loaded base), the safety probes and the adapter's latency overhead.
# test_pairwise is reported, not gated: a skip.
GATES = 3 + 8 + 1 + 1 + 3 + 1 + 1 + 2

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path) -> Path:
    work = tmp_path_factory.mktemp("e2e")
    (work / "cache").mkdir()
    (work / "cache" / "models").symlink_to(demo_model_dir.parent, target_is_directory=True)
    return work


def run_gate(work: Path, *args: str, report: str = "report.html") -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "pytest", "evals", "-p", "no:cacheprovider",
        "--eval-limit", str(SLICE),
        "--tunegate-cache", str(work / "cache"),
        "--report-dir", str(work / "reports"),
        f"--html={work / report}",
        # The configured floor (0.25) is for all 50 samples; an 8-sample slice gets a looser one.
        "--threshold", "finetuned.rougeL=0.20",
        *args,
    ]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)


def outcome_counts(stdout: str) -> dict[str, int]:
    """{"passed": 20, "xfailed": 6, ...} from pytest's last summary line."""
    summary = stdout.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


@pytest.fixture(scope="module")
def first_run(workdir: Path) -> subprocess.CompletedProcess[str]:
    return run_gate(workdir)


def test_gate_passes_on_the_demo_slice(first_run: subprocess.CompletedProcess[str]) -> None:
    assert first_run.returncode == 0, first_run.stdout[-4000:] + first_run.stderr[-2000:]
    assert "tunegate: mean score per mode" in first_run.stdout
    counts = outcome_counts(first_run.stdout)
    # Every finetuned sample and gate passes; base/prompt_eng samples pass or xfail (yardsticks).
    assert counts.get("passed", 0) + counts.get("xfailed", 0) == 3 * SLICE + GATES, counts
    assert counts.get("passed", 0) >= GATES + SLICE * 0.75  # the budget allows one finetuned miss in 8


def test_report_embeds_plots_and_per_mode_means(first_run: subprocess.CompletedProcess[str], workdir: Path) -> None:
    html = (workdir / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html
    assert "Release gate verdicts" in html and "Mean score per mode" in html
    for mode in ("base", "prompt_eng", "finetuned"):
        assert f"test_sample[{mode}-" in html
    assert (workdir / "reports" / "metric_means.png").stat().st_size > 10_000
    assert (workdir / "reports" / "ablation.png").stat().st_size > 10_000  # the rank sweep's curves
    assert "PASS ablation[lora_rank]: 4 adapters on one loaded base, 8 samples each" in first_run.stdout
    # The machine-readable twin: same verdicts, written with or without pytest-html.
    results = json.loads((workdir / "reports" / "results.json").read_text(encoding="utf-8"))
    assert results["schema_version"] == 1 and results["passed"] is True
    assert results["gate_counts"] == {"failed": 0, "passed": GATES, "total": GATES}
    assert results["session"]["exit_status"] == 0
    assert {plot["file"] for plot in results["plots"]} >= {"metric_means.png", "paired_difference.png", "ablation.png"}
    summary = (workdir / "reports" / "summary.md").read_text(encoding="utf-8")
    assert summary.startswith("# tunegate release gate: PASS") and "(ablation.png)" in summary


def test_rerun_with_nothing_changed_generates_nothing(
    first_run: subprocess.CompletedProcess[str], workdir: Path
) -> None:
    assert first_run.returncode == 0
    again = run_gate(workdir, report="again.html")
    assert again.returncode == 0, again.stdout[-3000:]
    assert "new answers: base 0, prompt_eng 0, finetuned 0" in again.stdout
    assert "(0 new answers)" in again.stdout  # the sweep's answers are cached too


def test_marker_selects_the_adapter_gate(first_run: subprocess.CompletedProcess[str], workdir: Path) -> None:
    assert first_run.returncode == 0
    selected = run_gate(workdir, "-m", "finetuned", report="finetuned.html")
    assert selected.returncode == 0, selected.stdout[-3000:]
    counts = outcome_counts(selected.stdout)
    assert counts.get("passed", 0) + counts.get("xfailed", 0) == SLICE + GATES, counts
    assert counts["deselected"] == 2 * SLICE


def test_a_missed_threshold_fails_the_run_with_evidence(
    first_run: subprocess.CompletedProcess[str], workdir: Path
) -> None:
    assert first_run.returncode == 0
    strict = run_gate(workdir, "-m", "finetuned", "--threshold", "finetuned.rougeL=0.99", report="strict.html")
    assert strict.returncode == 1
    assert "FAILED evals/test_gates.py::test_threshold[finetuned-rougeL]" in strict.stdout
    assert re.search(r"finetuned ROUGE-L mean 0\.\d{3} < threshold 0\.990; 95% CI \[0\.\d{3}, 0\.\d{3}\], n=8", strict.stdout)


@pytest.fixture(scope="module")
def null_adapter(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real LoRA adapter whose B matrices are zero (peft's default init): exactly the base model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    adapter = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    path = tmp_path_factory.mktemp("null_adapter")
    adapter.save_pretrained(path)
    return path


def test_a_null_adapter_fails_the_significance_and_baseline_gates_readably(
    first_run: subprocess.CompletedProcess[str], workdir: Path, null_adapter: Path
) -> None:
    assert first_run.returncode == 0
    weak = run_gate(workdir, "-m", "finetuned", "--adapter", str(null_adapter), report="null.html")
    assert weak.returncode == 1, weak.stdout[-3000:]
    out = weak.stdout
    for metric in ("rouge1", "rouge2", "rougeL", "bertscore"):
        assert f"FAILED evals/test_gates.py::test_significant_gain[vs-base-{metric}]" in out
    # Identical answers on every sample: no evidence at all, and the message says so.
    assert re.search(r"finetuned does not significantly beat base \(Holm-adjusted p >= alpha 0\.05\): ROUGE-L "
                     r"finetuned (0\.\d{3}) vs base \1: diff \+0\.000 .*p=1\.000, .*n=8, 8 ties", out)
    assert "FAILED evals/test_gates.py::test_finetune_verdict" in out
    assert re.search(r"(prompt engineering suffices|prompt engineering beats the adapter|inconclusive): ", out)
    assert "FAILED evals/test_baseline.py::test_no_regression" in out
    assert "significantly worse than the accepted baseline" in out
    assert "42 baseline samples are not in this run" in out
