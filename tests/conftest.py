"""Shared fixtures for the library's tests: the real demo model and a real (random) LoRA adapter."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# The report tests' shared markup checks assert outside a test module: rewrite them as pytest does.
pytest.register_assert_rewrite("tests.report_cases")

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def demo_model_dir() -> Path:
    """The converted demo model in the repository's cache (built once by `make demo-model`)."""
    from tunegate.models import ensure_demo_model

    return ensure_demo_model(REPO / ".tunegate_cache")


@pytest.fixture(scope="session")
def random_adapter_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real peft LoRA adapter with random (non-zero) B matrices, so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    adapter = get_peft_model(model, config)
    path = tmp_path_factory.mktemp("adapter")
    adapter.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def second_adapter_dir(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another random LoRA with other modules and rank: an ablation run beside random_adapter_dir."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
                        init_lora_weights=False)
    adapter = get_peft_model(model, config)
    path = tmp_path_factory.mktemp("adapter2")
    adapter.save_pretrained(path)
    return path
