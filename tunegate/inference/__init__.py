"""Generation for the three modes from one loaded base model, with an on-disk cache.

    base        adapter disabled, the base system prompt (None: the chat template's default)
    prompt_eng  adapter disabled, the engineered system prompt           (same weights as base)
    finetuned   adapter enabled,  the system prompt the adapter was trained with

Where things are:
    records.py  MODES, DecodingConfig, Generation, ReferenceLikelihood: plain data, no torch
    prompts.py  the chat each mode sends (system prompt, the sample's history, the prompt)
    runtime.py  device and dtype resolution, installed versions (without importing torch)
    session.py  ModelSession: one base load per run, adapters switched in, cached batched
                generation and reference likelihoods, batches claimed for xdist workers
    merged.py   merged-adapter generation and the exact restore of the base afterwards

An ablation's adapters (`generate(..., adapter_dir=...)`) load onto the same base as further
named peft adapters and are switched in with `set_adapter`: one base load for any number of runs.
With `DecodingConfig(merge_adapter=True)` the finetuned mode generates with its LoRA merged into
the base weights, and the touched base tensors are then restored bit-exactly from the checkpoint.
"""

from tunegate.inference.merged import MergeOutcome
from tunegate.inference.prompts import chat_messages, system_prompt_for
from tunegate.inference.records import MODES, DecodingConfig, Generation, ReferenceLikelihood
from tunegate.inference.runtime import installed_version, resolve_device, resolve_dtype
from tunegate.inference.session import ModelSession

__all__ = [
    "MODES",
    "DecodingConfig",
    "Generation",
    "MergeOutcome",
    "ModelSession",
    "ReferenceLikelihood",
    "chat_messages",
    "installed_version",
    "resolve_device",
    "resolve_dtype",
    "system_prompt_for",
]
