"""tunegate.run.GateRun: lazy per-mode orchestration over the real demo model (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunegate.config import load_config
from tunegate.run import GateRun

pytestmark = pytest.mark.slow


@pytest.fixture
def gate_run(tmp_path: Path, random_adapter_dir: Path, demo_model_dir: Path) -> GateRun:
    (tmp_path / "eval.jsonl").write_text(
        '{"id": "a", "prompt": "Where is order NW-1?", "reference": "Order NW-1 ships today."}\n'
        '{"id": "b", "prompt": "Say hello.", "reference": "Hello!"}\n',
        encoding="utf-8",
    )
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "models").symlink_to(demo_model_dir.parent, target_is_directory=True)
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.tunegate]\neval_set = "eval.jsonl"\nadapter = "{random_adapter_dir}"\n'
        'cache_dir = "cache"\nmax_new_tokens = 16\nmetrics = ["rouge1", "rougeL"]\nprimary_metric = "rougeL"\n',
        encoding="utf-8",
    )
    return GateRun(load_config(tmp_path / "pyproject.toml"))


def test_work_is_done_per_mode_on_demand(gate_run: GateRun) -> None:
    assert gate_run.modes == ("base", "prompt_eng", "finetuned")
    assert gate_run.computed_table().empty
    finetuned = gate_run.scores("finetuned")
    assert set(finetuned["mode"]) == {"finetuned"}
    assert len(finetuned) == 2 * 2  # samples x metrics
    assert set(gate_run.computed_generations()) == {"finetuned"}  # base was never generated
    table = gate_run.score_table()
    assert len(table) == 3 * 2 * 2
    assert gate_run.generation("base", "b").sample_id == "b"


def test_provenance_names_what_was_evaluated(gate_run: GateRun) -> None:
    gate_run.scores("finetuned")
    info = gate_run.provenance()
    assert info["samples"] == 2
    assert len(info["adapter_sha256"]) == 16 and len(info["base_model_sha256"]) == 16
    assert info["device"] == "cpu / float32"
    assert info["judge"] is None  # no [tool.tunegate.judge] here: the report leaves the row out
    assert gate_run.times.generated == {"finetuned": 2}
    gate_run.generations("base")
    assert gate_run.times.generated_text() == "base 2, finetuned 2"
