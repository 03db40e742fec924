"""fixtures/demo/train_adapter.py: the committed training script is deterministic and writes what
the gate and the overfitting check read (slow: two short real training runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def train(output: Path, cache_dir: Path) -> None:
    command = [
        sys.executable, str(REPO / "fixtures" / "demo" / "train_adapter.py"),
        "--output", str(output), "--cache-dir", str(cache_dir),
        "--train-limit", "16", "--val-limit", "8", "--epochs", "1", "--eval-steps", "1",
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=600)


def test_same_seed_same_adapter(tmp_path: Path, demo_model_dir: Path) -> None:
    cache_dir = demo_model_dir.parent.parent
    train(tmp_path / "one", cache_dir)
    train(tmp_path / "two", cache_dir)
    one, two = tmp_path / "one", tmp_path / "two"
    assert (one / "adapter_model.safetensors").read_bytes() == (two / "adapter_model.safetensors").read_bytes()
    history_one = json.loads((one / "trainer_state.json").read_text())["log_history"]
    history_two = json.loads((two / "trainer_state.json").read_text())["log_history"]
    strip = lambda h: [{k: v for k, v in e.items() if "runtime" not in k and "per_second" not in k} for e in h]  # noqa: E731
    assert strip(history_one) == strip(history_two)
    assert [e["step"] for e in history_one if "eval_loss" in e] == [1, 2]  # a real val curve
    config = json.loads((one / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert not (one / "README.md").exists()
    run = json.loads((one / "training_run.json").read_text())
    assert run["train_samples"] == 16 and run["global_step"] == 2
