"""Generation for the three modes from one loaded base model, with an on-disk cache.

    base        adapter disabled, the base system prompt (None: the chat template's default)
    prompt_eng  adapter disabled, the engineered system prompt           (same weights as base)
    finetuned   adapter enabled,  the system prompt the adapter was trained with

An ablation's adapters (`generate(..., adapter_dir=...)`) load onto the same base as further
named peft adapters and are switched in with `set_adapter`: one base load for any number of runs.

The base weights load once per session and only on a cache miss: a rerun with nothing changed
tokenises prompts (to key the cache) and loads no model. Each cache key covers the base model's
content hash, the adapter's content hash (finetuned only), the mode, the fully rendered chat
prompt (so system prompt, history and template changes all count), the decoding settings, the
dtype/device class and the torch/transformers versions; change one and exactly the affected
generations are redone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tunegate.cache import DiskCache, fingerprint
from tunegate.data import Sample
from tunegate.errors import AdapterError, ModelError
from tunegate.models import ModelIdentity, adapter_identity, model_identity

log = logging.getLogger(__name__)

MODES = ("base", "prompt_eng", "finetuned")
_ADAPTER_NAME = "finetuned"


@dataclass(frozen=True, slots=True)
class DecodingConfig:
    """Greedy decoding settings; every field is part of the generation cache key except batch_size.

    batch_size only changes padding, which greedy decoding should not see; it is left out of the
    key so a different batch size on another runner still reuses the cache.
    """

    max_new_tokens: int = 128
    batch_size: int = 16
    repetition_penalty: float = 1.0
    dtype: str = "auto"  # "auto": float32 on CPU, bfloat16 on CUDA
    device: str = "auto"  # "auto": cuda when available, else cpu

    def cache_fields(self) -> dict[str, Any]:
        fields = asdict(self)
        fields.pop("batch_size")
        return fields


@dataclass(frozen=True, slots=True)
class Generation:
    """One model answer with the facts a gate or a report needs about how it ended."""

    sample_id: str
    mode: str
    text: str
    finish_reason: str  # "stop" (end-of-turn token) or "length" (hit max_new_tokens)
    prompt_tokens: int
    output_tokens: int
    latency_s: float  # the batch's wall time divided by its size
    cached: bool = False

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass(frozen=True, slots=True)
class ReferenceLikelihood:
    """How likely the mode finds the sample's reference answer, teacher-forced after its prompt.

    `mean_logprob` is the mean natural-log probability per reference token (higher: the model
    expected this answer); perplexity is exp(−mean_logprob). A fine-tuned adapter should raise it
    on in-domain references: it is the training objective, measured on held-out samples.
    """

    sample_id: str
    mode: str
    tokens: int
    mean_logprob: float
    cached: bool = False

    @property
    def perplexity(self) -> float:
        import math

        return math.exp(-self.mean_logprob)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


class ModelSession:
    """Owns the one loaded base model (plus adapter) for a whole run; loads lazily, on first miss.

    Args:
        base_model_dir: a local model directory (config.json, weights, tokenizer, chat template).
        adapter_dir: a PEFT adapter directory, or None when only base modes are run.
        system_prompts: the system prompt of each mode; None means the chat template's default.
        decoding: greedy decoding settings.
        cache_dir: the root of the on-disk cache.
    """

    def __init__(
        self,
        base_model_dir: str | Path,
        adapter_dir: str | Path | None,
        system_prompts: Mapping[str, str | None],
        decoding: DecodingConfig,
        cache_dir: str | Path,
    ) -> None:
        self.base_model_dir = Path(base_model_dir)
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.system_prompts = dict(system_prompts)
        self.decoding = decoding
        self.device = resolve_device(decoding.device)
        self.dtype = resolve_dtype(decoding.dtype, self.device)
        self._cache = DiskCache(cache_dir, "generations")
        self._likelihood_cache = DiskCache(cache_dir, "likelihoods")
        self._hash_memo = DiskCache(cache_dir, "file_hashes")
        self._tokenizer: Any = None
        self._model: Any = None
        self._base_identity: ModelIdentity | None = None
        self._adapter_identity: ModelIdentity | None = None
        self._extra_identities: dict[Path, ModelIdentity] = {}  # ablation adapters, by resolved directory
        self._loaded_adapters: dict[str, str] = {}  # adapter content hash -> its peft adapter name
        self.load_seconds: float | None = None
        self.adapter_load_seconds = 0.0  # loading ablation adapters onto the already loaded base

    # -- identities and prompts (cheap: no model weights) ------------------------------------

    @property
    def base_identity(self) -> ModelIdentity:
        if self._base_identity is None:
            self._base_identity = model_identity(self.base_model_dir, self._hash_memo)
        return self._base_identity

    @property
    def adapter_identity(self) -> ModelIdentity | None:
        if self.adapter_dir is None:
            return None
        if self._adapter_identity is None:
            self._adapter_identity = adapter_identity(self.adapter_dir, self._hash_memo)
        return self._adapter_identity

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(self.base_model_dir)
            except (OSError, ValueError) as error:
                raise ModelError(
                    f"{self.base_model_dir}: cannot load a tokenizer ({error}). The base model directory "
                    "needs the tokenizer files saved beside the weights (`tokenizer.save_pretrained(dir)`)."
                ) from error
            if not tokenizer.chat_template:
                raise ModelError(
                    f"{self.base_model_dir}: the tokenizer has no chat template, so system prompts cannot be "
                    "applied. Use an instruct/chat model, or save one with `tokenizer.chat_template = ...`."
                )
            tokenizer.padding_side = "left"
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizer = tokenizer
        return self._tokenizer

    def system_prompt_for(self, sample: Sample, mode: str) -> str | None:
        """The mode's system prompt, followed by the sample's own system text when it has one."""
        parts = [p for p in (self.system_prompts.get(mode), sample.system) if p]
        return "\n\n".join(parts) if parts else None

    def render_prompt(self, sample: Sample, mode: str) -> str:
        """The exact text the model sees, through the tokenizer's chat template."""
        messages: list[dict[str, str]] = []
        system = self.system_prompt_for(sample, mode)
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend({"role": role, "content": content} for role, content in sample.history)
        messages.append({"role": "user", "content": sample.prompt})
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def identity_of(self, adapter_dir: str | Path | None) -> ModelIdentity | None:
        """The content identity of an adapter: the session's own (None), or an ablation run's directory."""
        if adapter_dir is None:
            return self.adapter_identity
        resolved = Path(adapter_dir).resolve()
        if resolved not in self._extra_identities:
            self._extra_identities[resolved] = adapter_identity(resolved, self._hash_memo)
        return self._extra_identities[resolved]

    def cache_key(self, rendered_prompt: str, mode: str, adapter_dir: str | Path | None = None) -> str:
        """Keyed by the adapter's content hash, not its path: a sweep run that equals the shipped
        adapter, or a copy of it elsewhere, reuses the same answers."""
        import torch
        import transformers

        adapter = self.identity_of(adapter_dir) if mode == "finetuned" else None
        return fingerprint(
            "generation/v1",
            self.base_identity.sha256,
            adapter.sha256 if adapter else None,
            mode,
            rendered_prompt,
            self.decoding.cache_fields(),
            self.dtype,
            self.device.split(":")[0],
            torch.__version__,
            transformers.__version__,
        )

    # -- the model (expensive: loaded once, only when something is missing) ------------------

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCausalLM

        started = time.perf_counter()
        try:
            model = AutoModelForCausalLM.from_pretrained(self.base_model_dir, dtype=getattr(torch, self.dtype))
        except (OSError, ValueError) as error:
            raise ModelError(f"{self.base_model_dir}: cannot load the base model: {error}") from error
        if self.adapter_dir is not None:
            from peft import PeftModel

            try:
                model = PeftModel.from_pretrained(model, self.adapter_dir, adapter_name=_ADAPTER_NAME)
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                raise AdapterError(
                    f"{self.adapter_dir}: the adapter does not load onto {self.base_model_dir}: {error}. "
                    "Check that adapter_config.json's base_model_name_or_path is this base model "
                    "(same architecture and sizes) and that target_modules exist in it."
                ) from error
            self._loaded_adapters[self.adapter_identity.sha256] = _ADAPTER_NAME
        model.to(self.device)
        model.eval()
        self._model = model
        self.load_seconds = time.perf_counter() - started
        log.info("loaded %s (+adapter %s) in %.2fs", self.base_model_dir, self.adapter_dir, self.load_seconds)
        return model

    @contextlib.contextmanager
    def base_weights(self) -> Iterator[Any]:
        """The loaded model with the adapter switched off, for scoring with the base weights.

        The local judge (and later likelihood metrics) reuse the run's one loaded base instead
        of loading a second copy; the adapter is back on when the block ends.
        """
        import torch

        model = self._load()
        with torch.inference_mode(), _adapters_off(model):
            yield model

    def _activate(self, adapter_dir: str | Path | None) -> Any:
        """The loaded model with this adapter active (loaded onto the base on first use, never reloaded).

        The session's own adapter is "finetuned"; an ablation adapter gets a name from its content
        hash, so two directories holding the same weights share one copy.
        """
        model = self._load()
        identity = self.identity_of(adapter_dir)
        name = self._loaded_adapters.get(identity.sha256)
        if name is None:
            from peft import PeftModel

            name = f"run-{identity.sha256[:12]}"
            started = time.perf_counter()
            try:
                if isinstance(model, PeftModel):
                    model.load_adapter(adapter_dir, adapter_name=name)
                else:  # a session without its own adapter: the first ablation adapter wraps the base
                    model = PeftModel.from_pretrained(model, adapter_dir, adapter_name=name)
            except (OSError, ValueError, KeyError, RuntimeError) as error:
                raise AdapterError(
                    f"{adapter_dir}: the adapter does not load onto {self.base_model_dir}: {error}. Every run of "
                    "an ablation must be trained on this base model (same architecture and sizes)."
                ) from error
            model.to(self.device)
            model.eval()  # a freshly loaded adapter is in train mode: its dropout would change greedy answers
            self._model = model
            self._loaded_adapters[identity.sha256] = name
            self.adapter_load_seconds += time.perf_counter() - started
        model.set_adapter(name)
        return model

    def render_with_reference(self, sample: Sample, mode: str) -> tuple[str, str]:
        """(prompt text, prompt + reference as the assistant's turn), both through the chat template.

        The reference's tokens are those of the second text after the first: the template's own
        end-of-turn marker is kept, so "stopping here" is part of what is scored.
        """
        prompt = self.render_prompt(sample, mode)
        messages: list[dict[str, str]] = []
        system = self.system_prompt_for(sample, mode)
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend({"role": role, "content": content} for role, content in sample.history)
        messages += [{"role": "user", "content": sample.prompt}, {"role": "assistant", "content": sample.reference}]
        full = self.tokenizer.apply_chat_template(messages, tokenize=False).rstrip("\n")
        if not full.startswith(prompt):
            raise ModelError(
                f"{self.base_model_dir}: the chat template does not render the prompt as a prefix of the conversation "
                "with its answer, so the reference's likelihood cannot be measured; leave loglik and perplexity "
                "out of metrics for this model."
            )
        return prompt, full

    def reference_likelihoods(
        self,
        samples: Sequence[Sample],
        mode: str,
        *,
        adapter_dir: str | Path | None = None,
        progress: bool = True,
    ) -> list[ReferenceLikelihood]:
        """Mean log-probability of each sample's reference under `mode`, teacher-forced, batched, cached.

        Same weights as generation (adapter off for base and prompt_eng), same rendered prompt; one
        forward pass per batch, no generation. Cached per (model, adapter, mode, rendered text).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode == "finetuned" and self.adapter_dir is None and adapter_dir is None:
            raise AdapterError("the finetuned mode needs an adapter: set [tool.tunegate] adapter (or --adapter).")
        texts = [self.render_with_reference(sample, mode) for sample in samples]
        keys = [fingerprint("likelihood/v1", self.cache_key(full, mode, adapter_dir)) for _, full in texts]
        found = self._likelihood_cache.get_many(keys)
        results: dict[int, ReferenceLikelihood] = {
            i: ReferenceLikelihood(sample.id, mode, found[key]["tokens"], found[key]["mean_logprob"], cached=True)
            for i, (sample, key) in enumerate(zip(samples, keys)) if key in found
        }
        missing = [i for i in range(len(samples)) if i not in results]
        if missing:
            from tqdm.auto import tqdm

            model = self._activate(adapter_dir) if mode == "finetuned" else self._load()
            try:
                batch_size = max(1, self.decoding.batch_size)
                with tqdm(total=len(missing), desc=f"likelihood {mode}", unit="sample", disable=not progress) as bar:
                    for start in range(0, len(missing), batch_size):
                        batch = missing[start : start + batch_size]
                        scored = self._score_batch(model, [texts[i] for i in batch], mode)
                        for index, (tokens, mean_logprob) in zip(batch, scored):
                            self._likelihood_cache.put(keys[index], {"tokens": tokens, "mean_logprob": mean_logprob})
                            results[index] = ReferenceLikelihood(samples[index].id, mode, tokens, mean_logprob)
                        bar.update(len(batch))
            finally:
                if adapter_dir is not None and self.adapter_dir is not None:
                    self._activate(None)
        return [results[i] for i in range(len(samples))]

    def _score_batch(self, model: Any, texts: Sequence[tuple[str, str]], mode: str) -> list[tuple[int, float]]:
        """(reference tokens, mean log-prob) per (prompt, full) pair, from one right-padded forward pass."""
        import torch

        tokenizer = self.tokenizer
        rows, starts = [], []
        for prompt, full in texts:
            prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
            # Tokenising the joined text can merge across the boundary; the prompt's length still marks
            # where the answer starts (the chat template ends the prompt with a special token).
            rows.append(full_ids)
            starts.append(len(prompt_ids))
        width = max(len(row) for row in rows)
        pad = tokenizer.pad_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, row in enumerate(rows):
            input_ids[r, : len(row)] = torch.tensor(row)
            attention[r, : len(row)] = 1
        adapters_off = _adapters_off(model) if mode != "finetuned" else contextlib.nullcontext()
        with torch.inference_mode(), adapters_off:
            logits = model(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)).logits
        logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        targets = input_ids[:, 1:].to(logprobs.device)
        picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()
        scored = []
        for r, (row, start) in enumerate(zip(rows, starts)):
            answer = picked[r, start - 1 : len(row) - 1]  # position t predicts token t + 1
            if answer.numel() == 0:
                raise ModelError(f"the reference of a {mode} sample has no tokens after its prompt; give it a reference.")
            scored.append((int(answer.numel()), float(answer.mean())))
        return scored

    def _generation_config(self) -> Any:
        from transformers import GenerationConfig

        tokenizer = self.tokenizer
        eos_ids = _eos_token_ids(self._model, tokenizer)
        # A fresh config, so a checkpoint's own generation_config.json (often do_sample=True with a
        # temperature) cannot make a release gate sample.
        return GenerationConfig(
            max_new_tokens=self.decoding.max_new_tokens,
            do_sample=False,
            num_beams=1,
            repetition_penalty=self.decoding.repetition_penalty,
            eos_token_id=eos_ids,
            pad_token_id=tokenizer.pad_token_id,
        )

    # -- generation -----------------------------------------------------------------------

    def generate(
        self,
        samples: Sequence[Sample],
        mode: str,
        *,
        progress: bool = True,
        adapter_dir: str | Path | None = None,
        desc: str | None = None,
    ) -> list[Generation]:
        """Answers for `samples` in `mode`, in the samples' order; cached ones are read, the rest generated.

        Misses are generated in batches sorted by prompt length (less padding), and each batch is
        written to the cache as soon as it finishes, so an interrupted run keeps its work.

        Args:
            adapter_dir: finetuned mode only: answer with this adapter instead of the session's own
                (an ablation run), loaded onto the same base; None: the session's adapter.
            desc: the progress bar's label (default "generate <mode>").
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if adapter_dir is not None and mode != "finetuned":
            raise ValueError(f"adapter_dir is for the finetuned mode; {mode} runs with the adapter off")
        if mode == "finetuned" and self.adapter_dir is None and adapter_dir is None:
            raise AdapterError(
                "The finetuned mode needs an adapter: set [tool.tunegate] adapter (or --adapter) to a PEFT "
                "adapter directory, or deselect it with -m 'not finetuned'."
            )
        rendered = [self.render_prompt(sample, mode) for sample in samples]
        keys = [self.cache_key(text, mode, adapter_dir) for text in rendered]
        found = self._cache.get_many(keys)
        results: dict[int, Generation] = {}
        for index, (sample, key) in enumerate(zip(samples, keys)):
            if key in found:
                results[index] = Generation(**{**found[key], "sample_id": sample.id, "mode": mode, "cached": True})
        missing = [i for i in range(len(samples)) if i not in results]
        if missing:
            model = self._activate(adapter_dir) if mode == "finetuned" else self._load()
            try:
                for index, generation in self._generate_missing(
                    model, samples, rendered, keys, missing, mode, progress, desc or f"generate {mode}"
                ):
                    results[index] = generation
            finally:
                if adapter_dir is not None and self.adapter_dir is not None:
                    self._activate(None)  # the session's own adapter is active again, whatever happened
        return [results[i] for i in range(len(samples))]

    def _generate_missing(
        self,
        model: Any,
        samples: Sequence[Sample],
        rendered: Sequence[str],
        keys: Sequence[str],
        missing: list[int],
        mode: str,
        progress: bool,
        desc: str,
    ):
        from tqdm.auto import tqdm

        tokenizer = self.tokenizer
        lengths = {i: len(tokenizer(rendered[i], add_special_tokens=False)["input_ids"]) for i in missing}
        order = sorted(missing, key=lambda i: -lengths[i])
        batch_size = max(1, self.decoding.batch_size)
        with tqdm(total=len(order), desc=desc, unit="sample", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                for index, generation in zip(batch, self._generate_batch(model, [rendered[i] for i in batch], mode)):
                    generation = Generation(**{**asdict(generation), "sample_id": samples[index].id})
                    stored = asdict(generation)
                    for transient in ("sample_id", "mode", "cached"):
                        stored.pop(transient)
                    self._cache.put(keys[index], stored)
                    yield index, generation
                bar.update(len(batch))

    def _generate_batch(self, model: Any, prompts: Sequence[str], mode: str) -> list[Generation]:
        import torch

        tokenizer = self.tokenizer
        # The chat template already wrote the BOS/special tokens; adding them again shifts the prompt.
        encoded = tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        config = self._generation_config()
        adapters_off = _adapters_off(model) if mode != "finetuned" else contextlib.nullcontext()
        started = time.perf_counter()
        with torch.inference_mode(), adapters_off:
            output = model.generate(**encoded, generation_config=config)
        seconds = time.perf_counter() - started
        new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        eos_ids = set(config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id])
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        generations = []
        for row, prompt_tokens in zip(new_tokens, prompt_lengths):
            stop_at = next((i for i, token in enumerate(row) if token in eos_ids), None)
            content = row if stop_at is None else row[:stop_at]
            generations.append(
                Generation(
                    sample_id="",
                    mode=mode,
                    text=tokenizer.decode(content, skip_special_tokens=True).strip(),
                    finish_reason="stop" if stop_at is not None else "length",
                    prompt_tokens=int(prompt_tokens),
                    output_tokens=len(content),
                    latency_s=seconds / len(prompts),
                )
            )
        return generations


def _adapters_off(model: Any) -> contextlib.AbstractContextManager:
    """Every adapter switched off for the block (the base weights alone); nothing to do on a bare model."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if disable is not None and getattr(model, "peft_config", None) else contextlib.nullcontext()


def _eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a turn: the model's generation_config eos ids plus the tokenizer's eos."""
    ids: list[int] = []
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.append(configured)
    elif configured:
        ids.extend(configured)
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    return sorted(set(ids))
