"""Merged-adapter generation: the LoRA merged into the base weights for the finetuned mode, then undone exactly.

An unmerged LoRA costs about 2x throughput on a GPU (issue 9's H100 figures). peft's unmerge is not
exact in floating point, so the touched base tensors are restored from the checkpoint's safetensors
files instead (see `MergedGeneration._merged`). The methods live on `ModelSession` through this
mixin: they read and reset the session's loaded model and its adapters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.errors import ModelError

log = logging.getLogger("tunegate.inference")


@dataclass(frozen=True, slots=True)
class MergeOutcome:
    """How one finetuned generation that asked for merge_adapter ran: merged, or unmerged and why.

    When merged, `tensors` base tensors took the adapter and were restored from the checkpoint
    afterwards. `verify_s` is the one-off proof that the checkpoint holds the loaded tensors (paid
    the first time a tensor is merged in a session); `merge_s` and `restore_s` are paid per call.
    """

    adapter: str  # the peft adapter name ("finetuned", or "run-<hash>" for an ablation run)
    merged: bool
    reason: str = ""  # why it generated unmerged; empty when merged
    tensors: int = 0
    verify_s: float = 0.0
    merge_s: float = 0.0
    restore_s: float = 0.0

    def __str__(self) -> str:
        if not self.merged:
            return f"adapter {self.adapter} generated unmerged: {self.reason}"
        return (
            f"adapter {self.adapter} generated merged into {self.tensors} base tensors, then restored from the "
            f"checkpoint (verify {self.verify_s:.2f}s, merge {self.merge_s:.2f}s, restore {self.restore_s:.2f}s)"
        )


@dataclass(frozen=True, slots=True)
class _MergePlan:
    """The LoRA layers holding one adapter, and where each base tensor they touch lives on disk."""

    layers: tuple[Any, ...]
    tensors: tuple[tuple[Any, Path, str], ...]  # (parameter, safetensors file, key in that file)


class MergedGeneration:
    """`ModelSession`'s merge and exact restore (a mixin: it uses the session's model, adapters and paths)."""

    base_model_dir: Path
    merge_outcomes: list[MergeOutcome]
    _model: Any
    _loaded_adapters: dict[str, str]
    _checkpoint_keys: dict[str, Path] | str | None
    _checkpoint_verified: set[str]

    @contextlib.contextmanager
    def _merged(self, model: Any, adapter_name: str) -> Iterator[None]:
        """The adapter merged into the base weights for the block; afterwards the base is bit-exact again.

        peft's unmerge subtracts the delta again, and fl(fl(W + ΔW) − ΔW) ≠ W in floating point (on the
        demo in float32, all 210 tensors of its r=8 all-linear LoRA come back changed), so base, prompt_eng,
        the local judge and likelihoods would see another model. A saved copy of the touched tensors would
        be a second base for an all-linear LoRA. The checkpoint already is that copy: each touched tensor
        is streamed back from its safetensors file, one at a time, after a one-off check that the file's
        tensor equals the loaded one, which makes the restore exact (same key, same cast). Whatever
        prevents that proof (no safetensors, an unmapped name, a quantized base, a LoRA variant) makes it
        generate unmerged, with the reason in `merge_outcomes` and the log.

        Raises:
            ModelError: the restore failed (a checkpoint file changed or vanished during the run); the
                loaded model is dropped first, so nothing goes on with merged weights.
        """
        verify_started = time.perf_counter()
        plan = self._merge_plan(model, adapter_name)
        reason = plan if isinstance(plan, str) else self._verify_checkpoint(plan)
        if reason:
            log.warning("finetuned (%s): generating with the adapter unmerged: %s", adapter_name, reason)
            self.merge_outcomes.append(MergeOutcome(adapter_name, merged=False, reason=reason))
            yield
            return
        verify_s = time.perf_counter() - verify_started
        merge_started = time.perf_counter()
        try:
            model.merge_adapter(adapter_names=[adapter_name])
            merge_s = time.perf_counter() - merge_started
            yield
        finally:
            restore_started = time.perf_counter()
            self._restore_base(plan)
            restore_s = time.perf_counter() - restore_started
        outcome = MergeOutcome(adapter_name, True, tensors=len(plan.tensors), verify_s=verify_s, merge_s=merge_s,
                               restore_s=restore_s)
        log.info("finetuned: %s", outcome)
        self.merge_outcomes.append(outcome)

    def _merge_plan(self, model: Any, adapter_name: str) -> _MergePlan | str:
        """Every LoRA layer holding the adapter and the checkpoint key of each base tensor it touches,
        or why merging would not be exact to undo or to trust."""
        from peft.tuners.lora.layer import Linear as LoraLinear
        from peft.tuners.tuners_utils import BaseTunerLayer
        from peft.utils import PeftType

        config = model.peft_config[adapter_name]
        if config.peft_type != PeftType.LORA:
            return f"only LoRA adapters are merged, this one is {config.peft_type.value}"
        if getattr(config, "layer_replication", None):
            return "the adapter replicates base layers (layer_replication), which peft cannot merge"
        base = model.get_base_model()
        if getattr(base, "hf_quantizer", None) is not None or getattr(base.config, "quantization_config", None):
            return "the base model is quantized: a merge would round the LoRA into the quantized weights"
        checkpoint = self._checkpoint_index()
        if isinstance(checkpoint, str):
            return checkpoint
        prefix = getattr(base, "base_model_prefix", "")
        layers, tensors = [], []
        for path, module in base.named_modules():
            if not isinstance(module, BaseTunerLayer):
                continue
            if not any(adapter_name in (getattr(module, attr, None) or {}) for attr in module.adapter_layer_names):
                continue
            if type(module) is not LoraLinear:  # Embedding, Conv, trainable tokens, bitsandbytes layers
                return f"{path} is a peft {type(module).__name__} layer; only plain LoRA Linear layers are merged"
            variant = module.lora_variant.get(adapter_name)
            if variant is not None:  # DoRA, aLoRA (applies only after its invocation tokens), ...
                name = getattr(variant, "__name__", type(variant).__name__)
                return f"{path} uses the LoRA variant {name}, whose merge is not the plain W + s·BA checked here"
            layers.append(module)
            for name, param in module.get_base_layer().named_parameters(recurse=False):
                if param.device.type == "meta" or not param.is_floating_point():
                    return f"{path}.{name} is offloaded or quantized ({param.dtype} on {param.device})"
                key = f"{path}.{name}"
                candidates = [key, key.removeprefix(f"{prefix}."), f"{prefix}.{key}"] if prefix else [key]
                found = next((c for c in candidates if c in checkpoint), None)
                if found is None:
                    return f"{key} has no tensor of that name in {self.base_model_dir}'s safetensors files"
                tensors.append((param, checkpoint[found], found))
        if not layers:
            return "no LoRA layer holds this adapter"
        return _MergePlan(tuple(layers), tuple(tensors))

    def _checkpoint_index(self) -> dict[str, Path] | str:
        """Checkpoint key -> safetensors file of the base model (one file, or shards with their index)."""
        if self._checkpoint_keys is None:
            self._checkpoint_keys = _safetensors_index(self.base_model_dir)
        return self._checkpoint_keys

    def _verify_checkpoint(self, plan: _MergePlan) -> str:
        """Why the checkpoint cannot restore the plan's tensors exactly, or "" once each equals its file.

        Each key is checked once per session: after that the tensor only ever holds the file's value.
        """
        import torch

        todo = [(param, file, key) for param, file, key in plan.tensors if key not in self._checkpoint_verified]
        for file, group in _by_file(todo):
            with _open_safetensors(file) as stored:
                for param, key in group:
                    tensor = _as_loaded(stored.get_tensor(key), param)
                    if tensor.shape != param.shape or not torch.equal(tensor, param):
                        return (f"{file.name}: {key} does not equal the loaded tensor (transformers converted it on "
                                "load?), so the checkpoint cannot restore it exactly")
                    self._checkpoint_verified.add(key)
        return ""

    def _restore_base(self, plan: _MergePlan) -> None:
        """Unmerge (peft's bookkeeping), then overwrite every touched tensor with its checkpoint value."""
        import torch

        try:
            for layer in plan.layers:
                if layer.merged:
                    layer.unmerge()
            with torch.no_grad():
                for file, group in _by_file(plan.tensors):
                    with _open_safetensors(file) as stored:
                        for param, key in group:
                            param.copy_(_as_loaded(stored.get_tensor(key), param))
            # A few tensors read back against the file: the copy landed where the plan says.
            probes = [plan.tensors[i] for i in sorted({0, len(plan.tensors) // 2, len(plan.tensors) - 1})]
            for param, file, key in probes:
                with _open_safetensors(file) as stored:
                    if not torch.equal(_as_loaded(stored.get_tensor(key), param), param):
                        raise ModelError(f"{file}: {key} differs from the loaded tensor right after restoring it")
        except Exception as error:
            self._model = None  # the next use reloads the base from disk instead of using merged weights
            self._loaded_adapters.clear()
            self._checkpoint_verified.clear()
            if isinstance(error, ModelError):
                raise
            raise ModelError(
                f"{self.base_model_dir}: restoring the base weights after merged finetuned generation failed "
                f"({error}). Were the weight files changed during the run? Rerun, or set merge_adapter = false."
            ) from error


def _safetensors_index(model_dir: Path) -> dict[str, Path] | str:
    """Checkpoint key -> the safetensors file holding it, or why the directory has none to offer."""
    index = model_dir / "model.safetensors.index.json"
    try:
        if index.is_file():
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            return {key: model_dir / file for key, file in weight_map.items()}
        single = model_dir / "model.safetensors"
        if single.is_file():
            with _open_safetensors(single) as stored:
                return dict.fromkeys(stored.keys(), single)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        return f"{index if index.is_file() else single} cannot be read ({error})"
    found = sorted(p.name for p in model_dir.iterdir() if p.suffix in (".bin", ".pt", ".gguf", ".safetensors"))
    return (f"{model_dir} has no model.safetensors or model.safetensors.index.json to restore the base from "
            f"(found: {', '.join(found) or 'no weight files'})")


def _open_safetensors(file: Path) -> Any:
    from safetensors import safe_open

    return safe_open(str(file), framework="pt", device="cpu")


def _as_loaded(stored: Any, param: Any) -> Any:
    """A checkpoint tensor cast as the loaded parameter is (dtype first, on the CPU, then its device)."""
    return stored.to(dtype=param.dtype).to(param.device)


def _by_file(tensors: Sequence[tuple[Any, Path, str]]) -> Iterator[tuple[Path, list[tuple[Any, str]]]]:
    """(file, [(parameter, key), ...]) in first-seen order, so each shard is opened once."""
    groups: dict[Path, list[tuple[Any, str]]] = {}
    for param, file, key in tensors:
        groups.setdefault(file, []).append((param, key))
    yield from groups.items()
