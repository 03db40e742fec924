"""Merged finetuned generation (tunegate.inference, merge_adapter) on the real demo model and real LoRAs.

What must hold: merged answers equal unmerged ones in float32; afterwards the base is bit-exact
(weights, logits and answers equal a fresh session's and the checkpoint's); and whatever prevents an
exact restore makes it generate unmerged, saying why. Slow: loads the model and generates.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunegate.data import load_eval_set
from tunegate.inference import DecodingConfig, ModelSession

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SAMPLES = load_eval_set(REPO / "fixtures/demo/test.jsonl", limit=4)
PROMPTS = {"base": None, "prompt_eng": "You are Northwind's support agent. Answer in one sentence.", "finetuned": None}
PROBE = "Where is my order NW-12345? I paid for express shipping."


def session(model_dir: Path, cache: Path, adapter: Path | None, **decoding: Any) -> ModelSession:
    settings = {"max_new_tokens": 16, "batch_size": 4, **decoding}
    return ModelSession(model_dir, adapter, PROMPTS, DecodingConfig(**settings), cache)


def lora_layers(model: Any) -> list[Any]:
    from peft.tuners.lora import LoraLayer

    return [module for module in model.modules() if isinstance(module, LoraLayer)]


def base_tensors(model: Any, *, wrapped_only: bool = True) -> dict[str, Any]:
    """Base tensors by checkpoint key (`...q_proj.base_layer.weight` -> `...q_proj.weight`): those a LoRA
    layer wraps, or every base tensor."""
    return {
        name.removeprefix("base_model.model.").replace(".base_layer.", "."): param
        for name, param in model.named_parameters()
        if ".base_layer." in name or not (wrapped_only or ".lora_" in name)
    }


def checkpoint_tensors(model_dir: Path, keys: list[str]) -> dict[str, Any]:
    """The tensors as the checkpoint holds them, read through the shard index when there is one."""
    from safetensors import safe_open

    index = model_dir / "model.safetensors.index.json"
    files = json.loads(index.read_text())["weight_map"] if index.is_file() else dict.fromkeys(keys, "model.safetensors")
    tensors = {}
    for key in keys:
        with safe_open(str(model_dir / files[key]), framework="pt") as stored:
            tensors[key] = stored.get_tensor(key)
    return tensors


def spy_on_merging(monkeypatch: pytest.MonkeyPatch, target: ModelSession) -> list[set[bool]]:
    """Record, for every generated batch, whether the LoRA layers were merged at that moment."""
    seen: list[set[bool]] = []
    generate_batch = target._generate_batch

    def spy(model: Any, prompts: Any, mode: str) -> Any:
        seen.append({layer.merged for layer in lora_layers(model)})
        return generate_batch(model, prompts, mode)

    monkeypatch.setattr(target, "_generate_batch", spy)
    return seen


def probe_logits(target: ModelSession, *, adapter_on: bool) -> Any:
    """Logits of one fixed input, with the adapter off (base_weights) or on (the finetuned weights)."""
    import torch

    ids = target.tokenizer(PROBE, return_tensors="pt")["input_ids"]
    if not adapter_on:
        with target.base_weights() as model:
            return model(input_ids=ids).logits
    with torch.inference_mode():
        return target._activate(None)(input_ids=ids).logits


def tokens_per_s(generations: list[Any]) -> float:
    return sum(g.output_tokens for g in generations) / sum(g.latency_s for g in generations)


@pytest.fixture(scope="module", params=["random", "demo"])
def adapter(request: pytest.FixtureRequest) -> Path:
    """A random r=4 q/v LoRA, and the demo's trained r=8 all-linear LoRA."""
    if request.param == "demo":
        return REPO / "fixtures/demo/adapter"
    return request.getfixturevalue("random_adapter_dir")


@pytest.fixture(scope="module")
def unmerged_answers(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path], list[Any]]:
    """An adapter's finetuned answers generated the usual way, with the LoRA beside the weights (once each)."""
    found: dict[Path, list[Any]] = {}

    def answers(adapter: Path) -> list[Any]:
        if adapter not in found:
            plain = session(demo_model_dir, tmp_path_factory.mktemp("unmerged"), adapter)
            found[adapter] = plain.generate(SAMPLES, "finetuned", progress=False)
            assert plain.merge_outcomes == []  # nothing asked to merge, nothing tried
        return found[adapter]

    return answers


def test_merged_answers_equal_unmerged_ones_in_float32(
    demo_model_dir: Path, adapter: Path, unmerged_answers: Callable[[Path], list[Any]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unmerged = unmerged_answers(adapter)
    merged = session(demo_model_dir, tmp_path, adapter, merge_adapter=True)
    seen = spy_on_merging(monkeypatch, merged)
    generations = merged.generate(SAMPLES, "finetuned", progress=False)
    assert seen == [{True}]  # the batch really ran on merged weights
    [outcome] = merged.merge_outcomes
    assert outcome.merged and outcome.reason == ""
    assert outcome.tensors == len(base_tensors(merged._activate(None)))
    assert [g.text for g in generations] == [g.text for g in unmerged]
    assert [g.output_tokens for g in generations] == [g.output_tokens for g in unmerged]
    # Timing is reported, not asserted: CPU throughput swings with whatever else runs.
    print(f"\n{adapter.name}: unmerged {tokens_per_s(unmerged):.1f} tok/s, merged {tokens_per_s(generations):.1f} "
          f"tok/s; {outcome}")
    # A rerun is served from the cache under the merged key: no model, no merge.
    again = session(demo_model_dir, tmp_path, adapter, merge_adapter=True)
    assert all(g.cached for g in again.generate(SAMPLES, "finetuned", progress=False))
    assert not again.model_loaded and again.merge_outcomes == []


def test_merge_adapter_keys_finetuned_answers_only(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    merging = session(demo_model_dir, tmp_path, random_adapter_dir, merge_adapter=True)
    plain = session(demo_model_dir, tmp_path, random_adapter_dir)
    text = plain.render_prompt(SAMPLES[0], "finetuned")
    assert merging.cache_key(text, "finetuned", merge_adapter=True) != plain.cache_key(text, "finetuned")
    # Asking without merging (likelihoods), or base modes, keep the keys they had before the field existed.
    assert merging.cache_key(text, "finetuned") == plain.cache_key(text, "finetuned")
    assert merging.cache_key(text, "base", merge_adapter=True) == plain.cache_key(text, "base")
    assert "merge_adapter" not in DecodingConfig(merge_adapter=True).cache_fields()


def test_after_merged_runs_the_base_is_bit_exact(
    demo_model_dir: Path, random_adapter_dir: Path, second_adapter_dir: Path, tmp_path: Path
) -> None:
    import torch

    merged = session(demo_model_dir, tmp_path / "merged", random_adapter_dir, merge_adapter=True)
    merged.generate(SAMPLES, "finetuned", progress=False)
    # An ablation run merges too (k_proj and o_proj are new tensors to verify and restore).
    merged.generate(SAMPLES[:1], "finetuned", adapter_dir=second_adapter_dir, progress=False)
    assert [o.merged for o in merged.merge_outcomes] == [True, True]
    assert merged.merge_outcomes[1].adapter.startswith("run-") and merged.merge_outcomes[1].tensors == 4 * 30
    after = merged.generate(SAMPLES, "base", progress=False)

    fresh = session(demo_model_dir, tmp_path / "fresh", random_adapter_dir)
    assert [g.text for g in after] == [g.text for g in fresh.generate(SAMPLES, "base", progress=False)]
    assert torch.equal(probe_logits(merged, adapter_on=False), probe_logits(fresh, adapter_on=False))
    # The unmerged finetuned path is intact too: the adapter on the restored base gives the fresh logits.
    assert torch.equal(probe_logits(merged, adapter_on=True), probe_logits(fresh, adapter_on=True))

    restored = base_tensors(merged._activate(None))
    assert len(restored) == 4 * 30  # q, k, v, o in all 30 layers: both adapters' tensors
    stored = checkpoint_tensors(demo_model_dir, sorted(restored))
    untouched = base_tensors(fresh._activate(None), wrapped_only=False)
    for key, tensor in restored.items():
        assert torch.equal(tensor, stored[key]), key
        assert torch.equal(tensor, untouched[key]), key
    assert all(not layer.merged for layer in lora_layers(merged._activate(None)))


def test_peft_unmerge_alone_would_leave_the_base_changed(demo_model_dir: Path, tmp_path: Path) -> None:
    """Why the restore reads the checkpoint: W + ΔW − ΔW is not W in float32 (and the check above can fail)."""
    import torch

    target = session(demo_model_dir, tmp_path, REPO / "fixtures/demo/adapter")
    model = target._activate(None)
    model.merge_adapter(adapter_names=["finetuned"])
    model.unmerge_adapter()
    tensors = base_tensors(model)
    stored = checkpoint_tensors(demo_model_dir, sorted(tensors))
    changed = [key for key, tensor in tensors.items() if not torch.equal(tensor, stored[key])]
    assert len(changed) > len(tensors) // 2
    assert max(float((tensors[k] - stored[k]).abs().max()) for k in changed) < 1e-5  # close, not equal


def test_a_sharded_checkpoint_restores_through_its_index(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    sharded = tmp_path / "sharded"
    AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32).save_pretrained(
        sharded, max_shard_size="100MB"
    )
    for item in demo_model_dir.iterdir():
        if item.suffix in (".json", ".jinja") and not (sharded / item.name).exists():
            shutil.copy(item, sharded / item.name)
    shards = json.loads((sharded / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(set(shards.values())) > 1

    merged = session(sharded, tmp_path / "cache", random_adapter_dir, max_new_tokens=4, merge_adapter=True)
    merged.generate(SAMPLES[:2], "finetuned", progress=False)
    assert merged.merge_outcomes[0].merged
    restored = base_tensors(merged._activate(None))
    assert len({shards[key] for key in restored}) > 1  # the touched tensors span several shards
    stored = checkpoint_tensors(sharded, sorted(restored))
    assert all(torch.equal(tensor, stored[key]) for key, tensor in restored.items())


def test_without_safetensors_it_generates_unmerged_and_says_why(
    demo_model_dir: Path, random_adapter_dir: Path, unmerged_answers: Callable[[Path], list[Any]], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch
    from safetensors.torch import load_file

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save(load_file(demo_model_dir / "model.safetensors"), pickled / "pytorch_model.bin")
    for item in demo_model_dir.iterdir():
        if item.suffix != ".safetensors":
            (pickled / item.name).symlink_to(item)

    fallback = session(pickled, tmp_path / "cache", random_adapter_dir, merge_adapter=True)
    seen = spy_on_merging(monkeypatch, fallback)
    generations = fallback.generate(SAMPLES, "finetuned", progress=False)
    assert seen == [{False}]
    [outcome] = fallback.merge_outcomes
    assert not outcome.merged and "no model.safetensors" in outcome.reason and "pytorch_model.bin" in outcome.reason
    assert "generated unmerged" in str(outcome)
    assert [g.text for g in generations] == [g.text for g in unmerged_answers(random_adapter_dir)]


def test_a_loaded_tensor_that_differs_from_its_file_is_never_merged(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As if transformers had converted a tensor on load: restoring it from the file would change the base."""
    import torch

    target = session(demo_model_dir, tmp_path, random_adapter_dir, max_new_tokens=4, merge_adapter=True)
    key, tensor = sorted(base_tensors(target._activate(None)).items())[-1]
    with torch.no_grad():
        tensor[0, 0] += 1.0
    converted = tensor.clone()
    seen = spy_on_merging(monkeypatch, target)
    target.generate(SAMPLES[:1], "finetuned", progress=False)
    assert seen == [{False}]
    [outcome] = target.merge_outcomes
    assert not outcome.merged and key in outcome.reason and "does not equal the loaded tensor" in outcome.reason
    assert torch.equal(tensor, converted)  # left as loaded, not "restored" to the file


def test_a_dora_adapter_generates_unmerged_and_says_why(
    demo_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(demo_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"], use_dora=True, init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(tmp_path / "dora")

    target = session(demo_model_dir, tmp_path / "cache", tmp_path / "dora", max_new_tokens=4, merge_adapter=True)
    seen = spy_on_merging(monkeypatch, target)
    target.generate(SAMPLES[:1], "finetuned", progress=False)
    assert seen == [{False}]
    [outcome] = target.merge_outcomes
    assert not outcome.merged and outcome.tensors == 0
    assert "DoraLinearVariant" in outcome.reason, outcome.reason


def test_a_quantized_base_or_an_unmapped_name_is_refused_before_merging(
    demo_model_dir: Path, random_adapter_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = session(demo_model_dir, tmp_path, random_adapter_dir, merge_adapter=True)
    model = target._activate(None)
    assert not isinstance(target._merge_plan(model, "finetuned"), str)  # unpatched, it would merge
    with monkeypatch.context() as patched:
        patched.setattr(model.get_base_model(), "hf_quantizer", object(), raising=False)  # what from_pretrained sets
        assert "quantized" in target._merge_plan(model, "finetuned")
    with monkeypatch.context() as patched:  # a checkpoint whose keys transformers renames on load
        patched.setattr(target, "_checkpoint_keys", {"model.embed_tokens.weight": demo_model_dir / "model.safetensors"})
        reason = target._merge_plan(model, "finetuned")
        assert "model.layers.0.self_attn.q_proj.weight has no tensor of that name" in reason
    assert all(not layer.merged for layer in lora_layers(model))
