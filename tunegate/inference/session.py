"""`ModelSession`: the one loaded base model (plus adapters) of a run, its cache and its batches.

The base weights load once per session and only on a cache miss: a rerun with nothing changed
loads no model, no tokenizer and no torch (its keys come from remembered chat-template renderings).
Each cache key covers the base model's content hash, the adapter's content hash (finetuned only),
the mode, the fully rendered chat prompt (so system prompt, history and template changes all
count), the decoding settings, the dtype/device class and the torch/transformers versions; change
one and exactly the affected generations are redone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tunegate.batching import BatchSizer
from tunegate.cache import DiskCache, file_sha256, fingerprint
from tunegate.claims import claim_chunks, lock_path
from tunegate.data import Sample
from tunegate.errors import AdapterError, ModelError
from tunegate.inference.merged import MergedGeneration, MergeOutcome
from tunegate.inference.prompts import chat_messages, system_prompt_for
from tunegate.inference.records import MODES, DecodingConfig, Generation, ReferenceLikelihood
from tunegate.inference.runtime import _free_accelerator_memory, installed_version, resolve_device, resolve_dtype
from tunegate.models import WEIGHT_SUFFIXES, ModelIdentity, adapter_identity, model_identity

log = logging.getLogger("tunegate.inference")

_ADAPTER_NAME = "finetuned"


class ModelSession(MergedGeneration):
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
        self._render_memo = DiskCache(cache_dir, "rendered_prompts")
        self._tokenizer: Any = None
        self._model: Any = None
        self._base_identity: ModelIdentity | None = None
        self._adapter_identity: ModelIdentity | None = None
        self._extra_identities: dict[Path, ModelIdentity] = {}  # ablation adapters, by resolved directory
        self._loaded_adapters: dict[str, str] = {}  # adapter content hash -> its peft adapter name
        self.load_seconds: float | None = None
        self.adapter_load_seconds = 0.0  # loading ablation adapters onto the already loaded base
        self.merge_outcomes: list[MergeOutcome] = []  # one per finetuned generation that asked to merge
        self._checkpoint_keys: dict[str, Path] | str | None = None  # key -> safetensors file, or why none
        self._checkpoint_verified: set[str] = set()  # keys proven equal to the loaded tensor
        self.may_load = True  # False in the xdist controller: everything must come from the workers' cache
        self._sizer = BatchSizer(max(1, decoding.batch_size), free_memory=_free_accelerator_memory)

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
        return system_prompt_for(self.system_prompts, sample, mode)

    def render_prompt(self, sample: Sample, mode: str) -> str:
        """The exact text the model sees, through the tokenizer's chat template."""
        return self._render(chat_messages(sample, self.system_prompt_for(sample, mode)), add_generation_prompt=True)

    def _render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        """The chat template applied to `messages`, remembered on disk.

        Cache keys hold the rendered text (so a template change is a change), but loading the tokenizer
        to render it costs a cached rerun ~2 s and the transformers import. The remembered rendering is
        keyed by the tokenizer's files (every non-weight file of the model directory, by content) and
        the transformers version, so it is the text the template would give.
        """
        key = fingerprint("render/v1", self._template_identity, installed_version("transformers"), messages,
                          add_generation_prompt)
        if (entry := self._render_memo.get(key)) is not None:
            return str(entry["text"])
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
        self._render_memo.put(key, {"text": text})
        return text

    @functools.cached_property
    def _template_identity(self) -> str:
        """Content hash of the files that make the tokenizer and its chat template (all but the weights)."""
        files = sorted(p for p in self.base_model_dir.iterdir()
                       if p.is_file() and p.suffix not in WEIGHT_SUFFIXES and not p.name.startswith("."))
        return fingerprint([(p.name, file_sha256(p, self._hash_memo)) for p in files])

    def identity_of(self, adapter_dir: str | Path | None) -> ModelIdentity | None:
        """The content identity of an adapter: the session's own (None), or an ablation run's directory."""
        if adapter_dir is None:
            return self.adapter_identity
        resolved = Path(adapter_dir).resolve()
        if resolved not in self._extra_identities:
            self._extra_identities[resolved] = adapter_identity(resolved, self._hash_memo)
        return self._extra_identities[resolved]

    def cache_key(
        self, rendered_prompt: str, mode: str, adapter_dir: str | Path | None = None, *, merge_adapter: bool = False
    ) -> str:
        """Keyed by the adapter's content hash, not its path: a sweep run that equals the shipped
        adapter, or a copy of it elsewhere, reuses the same answers.

        merge_adapter (finetuned only) keys what was asked for. Whether the merge could happen follows
        from what the key already covers (the base's weight files, the adapter, dtype, device), so one
        key names one computation: merged, or its logged fallback. Base and prompt_eng never depend on it.
        """
        adapter = self.identity_of(adapter_dir) if mode == "finetuned" else None
        decoding = self.decoding.cache_fields()
        if merge_adapter and mode == "finetuned":
            decoding["merge_adapter"] = True
        return fingerprint(
            "generation/v1",
            self.base_identity.sha256,
            adapter.sha256 if adapter else None,
            mode,
            rendered_prompt,
            decoding,
            self.dtype,
            self.device.split(":")[0],
            installed_version("torch"),  # the same strings as torch.__version__ / transformers.__version__
            installed_version("transformers"),
        )

    # -- the model (expensive: loaded once, only when something is missing) ------------------

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        if not self.may_load:
            raise ModelError(
                f"{self.base_model_dir}: the pytest-xdist controller would have to load the model: a result the "
                "workers reported is missing from the cache (deleted during the run?). Rerun; the cache keeps "
                "everything that was finished."
            )
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

    def _adapter_name(self, adapter_dir: str | Path | None) -> str:
        """The peft name of a loaded adapter: the session's own, or an ablation run's."""
        return self._loaded_adapters[self.identity_of(adapter_dir).sha256]

    def render_with_reference(self, sample: Sample, mode: str) -> tuple[str, str]:
        """(prompt text, prompt + reference as the assistant's turn), both through the chat template.

        The reference's tokens are those of the second text after the first: the template's own
        end-of-turn marker is kept, so "stopping here" is part of what is scored.
        """
        prompt = self.render_prompt(sample, mode)
        messages = chat_messages(sample, self.system_prompt_for(sample, mode))
        messages.append({"role": "assistant", "content": sample.reference})
        full = self._render(messages, add_generation_prompt=False).rstrip("\n")
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

        def from_cache(index: int, entry: Mapping[str, Any]) -> ReferenceLikelihood:
            return ReferenceLikelihood(samples[index].id, mode, entry["tokens"], entry["mean_logprob"], cached=True)

        def score_batch(model: Any, indices: Sequence[int]) -> list[tuple[dict[str, Any], ReferenceLikelihood]]:
            scored = self._score_batch(model, [texts[i] for i in indices], mode)
            return [({"tokens": tokens, "mean_logprob": mean_logprob},
                     ReferenceLikelihood(samples[index].id, mode, tokens, mean_logprob))
                    for index, (tokens, mean_logprob) in zip(indices, scored)]

        results = self._fill(
            keys, self._likelihood_cache, from_cache, score_batch, lambda: self._length_sorted_chunks([f for _, f in texts]),
            mode=mode, adapter_dir=adapter_dir, merge=False, desc=f"likelihood {mode}", progress=progress,
        )
        return [results[i] for i in range(len(samples))]

    def _score_batch(self, model: Any, texts: Sequence[tuple[str, str]], mode: str) -> list[tuple[int, float]]:
        """(reference tokens, mean log-prob) per (prompt, full) pair, from one left-padded forward pass
        that projects only the references' positions onto the vocabulary (`tunegate.likelihood`)."""
        from tunegate.likelihood import score_references

        tokenizer = self.tokenizer
        rows, starts = [], []
        for prompt, full in texts:
            # Tokenising the joined text can merge across the boundary; the prompt's length still marks
            # where the answer starts (the chat template ends the prompt with a special token).
            rows.append(tokenizer(full, add_special_tokens=False)["input_ids"])
            starts.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        adapters_off = _adapters_off(model) if mode != "finetuned" else contextlib.nullcontext()
        with adapters_off:
            return score_references(model, rows, starts, pad_token_id=tokenizer.pad_token_id, device=self.device)

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
        written to the cache as soon as it finishes, so an interrupted run keeps its work. Batches are
        claimed through file locks, so pytest-xdist workers split the work (see `_fill`), and a batch
        that runs out of memory is halved and retried (`tunegate.batching`).

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
        merge = mode == "finetuned" and self.decoding.merge_adapter
        keys = [self.cache_key(text, mode, adapter_dir, merge_adapter=merge) for text in rendered]

        def from_cache(index: int, entry: Mapping[str, Any]) -> Generation:
            return Generation(**{**entry, "sample_id": samples[index].id, "mode": mode, "cached": True})

        def generate_batch(model: Any, indices: Sequence[int]) -> list[tuple[dict[str, Any], Generation]]:
            made = []
            for index, generation in zip(indices, self._generate_batch(model, [rendered[i] for i in indices], mode)):
                generation = Generation(**{**asdict(generation), "sample_id": samples[index].id})
                stored = asdict(generation)
                for transient in ("sample_id", "mode", "cached"):
                    stored.pop(transient)
                made.append((stored, generation))
            return made

        results = self._fill(
            keys, self._cache, from_cache, generate_batch, lambda: self._length_sorted_chunks(rendered),
            mode=mode, adapter_dir=adapter_dir, merge=merge, desc=desc or f"generate {mode}", progress=progress,
        )
        return [results[i] for i in range(len(samples))]

    def _fill(
        self,
        keys: Sequence[str],
        cache: DiskCache,
        from_cache: Any,
        compute: Any,
        chunks: Any,
        *,
        mode: str,
        adapter_dir: str | Path | None,
        merge: bool,
        desc: str,
        progress: bool,
    ) -> dict[int, Any]:
        """Results for every key: read from the cache, the rest computed in claimed chunks and cached.

        The shared skeleton of generation and likelihood scoring. Chunks (`chunks()`, cut only when
        something is missing) are claimed through file locks (`tunegate.claims`), so pytest-xdist
        workers split the missing work instead of repeating it. The model is loaded (and the adapter
        activated, and merged when asked) only when this process has a chunk to compute; the session's
        own adapter is switched back on, and merged weights restored, whatever happens.

        Args:
            from_cache: (index, stored entry) -> result, for a hit.
            compute: (model, indices) -> [(entry to store, result)] for one batch; batches are split
                on out-of-memory by the session's BatchSizer.
        """
        results: dict[int, Any] = {}

        def read_cached(indices: Sequence[int]) -> bool:
            wanted = [i for i in indices if i not in results]
            found = cache.get_many(keys[i] for i in wanted)
            for i in wanted:
                if keys[i] in found:
                    results[i] = from_cache(i, found[keys[i]])
            return all(i in results for i in indices)

        if read_cached(range(len(keys))):
            return results
        from tqdm.auto import tqdm

        missing = sum(i not in results for i in range(len(keys)))
        with contextlib.ExitStack() as active, tqdm(total=missing, desc=desc, unit="sample", disable=not progress) as bar:
            loaded: list[Any] = []

            def model() -> Any:
                if not loaded:  # only when this process has something to compute
                    loaded.append(self._activate(adapter_dir) if mode == "finetuned" else self._load())
                    if adapter_dir is not None and self.adapter_dir is not None:
                        active.callback(self._activate, None)  # the session's own adapter is active again
                    if merge:  # restores the base before the session's own adapter is switched back on
                        active.enter_context(self._merged(loaded[0], self._adapter_name(adapter_dir)))
                return loaded[0]

            def settled(chunk: Sequence[int]) -> bool:
                before = sum(i in results for i in chunk)
                done = read_cached(chunk)
                bar.update(sum(i in results for i in chunk) - before)
                return done

            def work(chunk: Sequence[int]) -> None:
                todo = [i for i in chunk if i not in results]
                made = self._sizer.run(todo, lambda indices: compute(model(), indices))
                for index, (stored, result) in zip(todo, made):
                    cache.put(keys[index], stored)  # each batch kept as soon as it is done
                    results[index] = result
                bar.update(len(todo))

            claim_chunks(chunks(), lock_for=lambda chunk: lock_path(cache.root, cache.namespace, [keys[i] for i in chunk]),
                         is_done=settled, work=work)
        return results

    def _length_sorted_chunks(self, texts: Sequence[str]) -> list[list[int]]:
        """Indices of `texts` cut into batches, longest prompt first (less padding, heaviest batch first).

        Every text is in a chunk, cached or not, so two processes cut the same chunks (and lock the same
        files), and a sample is always generated among the same companions (padding can change a
        greedy answer in the last bits, so this keeps reruns reproducible).
        """
        tokenizer = self.tokenizer
        lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        order = sorted(range(len(texts)), key=lambda i: (-lengths[i], i))
        size = max(1, self.decoding.batch_size)
        return [order[start : start + size] for start in range(0, len(order), size)]

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
