"""Generation through an OpenAI-compatible server that serves the base and the adapter under two names.

    vllm serve Qwen/Qwen2.5-7B-Instruct --served-model-name qwen-base --generation-config vllm \\
        --enable-lora --lora-modules support-lora=/adapters/support --max-lora-rank 64

    base        model = served.base_model_name     the base system prompt
    prompt_eng  model = served.base_model_name     the engineered system prompt
    finetuned   model = served.adapter_model_name  the adapter's system prompt

`ServedSession` is the part of `ModelSession` a run generates with, for models that need several GPUs
or nodes: the serving engine (vLLM, SGLang, any server that names an adapter as a model) scales,
tunegate stays the same. Requests are chat messages built as the local session builds them, greedy
(temperature 0), `concurrency` in flight at most, retried by `tunegate.retry`'s rules (429, 5xx,
timeouts; not other 4xx), and each answer is cached the moment it arrives, so an interrupted run
keeps its work.

The cache key is the served model name, the adapter's content hash (when `adapter_dir` is given,
else the served adapter name), the mode, the messages and the decoding settings, in a namespace of
its own: served and local answers never mix. The endpoint is not in the key: the same names behind
another URL (a port-forward, a replica) reuse the answers, so give the model a new name when its
weights change. The API key comes from an environment variable, read on the first cache miss (a
fully cached rerun needs neither server nor key), and never reaches messages, logs or the cache.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from tunegate.cache import DiskCache, fingerprint
from tunegate.claims import claim_chunks, lock_path
from tunegate.config import did_you_mean
from tunegate.data import Sample
from tunegate.errors import AdapterError, ConfigError, ModelError
from tunegate.inference import MODES, DecodingConfig, Generation, chat_messages, system_prompt_for
from tunegate.models import ModelIdentity, adapter_identity
from tunegate.retry import (
    MalformedResponse,
    RemoteTarget,
    RetryPolicy,
    Scrubber,
    call_with_retry,
    classify,
    redact_url,
    require_chat_completion,
)

log = logging.getLogger(__name__)

KEYLESS_TOKEN = "no-key-needed"  # the openai client insists on a key; a server without --api-key ignores it
# finish_reason as servers spell it -> tunegate's: vLLM/SGLang/OpenAI say stop/length, TGI also eos_token.
FINISH_REASONS = {"stop": "stop", "eos_token": "stop", "stop_sequence": "stop", "length": "length"}
_JUDGE_KEPT = "Judgements already cached are kept; the rerun asks only for the rest."
_KEPT = "Answers already cached are kept; the rerun asks only for the missing ones."


@dataclass(frozen=True, slots=True)
class ServedConfig:
    """`[tool.tunegate.served]`: where the models are served and how hard the server may be pushed.

    `api_key_env` names the variable holding the key (None: a server without one, such as vLLM
    without --api-key; the user's OPENAI_API_KEY is never sent to a self-hosted server by default).
    `ablation_model_names` maps each ablation adapter directory (resolved) to its served name.
    """

    base_url: str
    base_model_name: str
    adapter_model_name: str | None = None
    api_key_env: str | None = None
    concurrency: int = 16
    timeout_s: float = 300.0  # per request; a long answer on a busy server queues before it starts
    max_retries: int = 6
    seed: int = 0  # sent with every request (ignored under temperature 0 by vLLM; some servers want one)
    ablation_model_names: Mapping[Path, str] = field(default_factory=dict)


_SERVED_TYPES: dict[str, tuple[type, ...]] = {
    "base_url": (str,), "base_model_name": (str,), "adapter_model_name": (str,), "api_key_env": (str,),
    "concurrency": (int,), "timeout_s": (float, int), "max_retries": (int,), "seed": (int,),
    "ablation_model_names": (dict,),
}


def served_config(table: Mapping[str, Any], base: Path, origin: str) -> ServedConfig:
    """`[tool.tunegate.served]` into a `ServedConfig`, every key checked; relative paths resolve against `base`.

    Raises:
        ConfigError: an unknown key, a key written into the file, a wrong type or range, a missing name.
    """
    where = f"{origin}: served"
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where} must be a table, e.g. served = {{base_url = "http://localhost:8000/v1", '
                          'base_model_name = "qwen-base", adapter_model_name = "support-lora"}.')
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key == "api_key":
            raise ConfigError(f"{where}.api_key: never write an API key into a config file. Put it in an environment "
                              'variable and name the variable: api_key_env = "VLLM_API_KEY".')
        if key not in _SERVED_TYPES:
            raise ConfigError(f"{where}.{key}: unknown key. {did_you_mean(key, _SERVED_TYPES)}"
                              f"Known keys: {', '.join(sorted(_SERVED_TYPES))}.")
        expected = _SERVED_TYPES[key]
        if isinstance(value, bool) or not isinstance(value, expected):
            raise ConfigError(f"{where}.{key} must be {' or '.join(t.__name__ for t in expected)}, got {value!r}.")
        if key == "api_key_env" and value.strip().lower() in ("", "none"):
            value = None  # TOML has no null: "none" is a server that needs no key
        elif key in ("concurrency", "timeout_s") and not value > 0:
            raise ConfigError(f"{where}.{key} must be positive, got {value!r}.")
        elif key == "max_retries" and value < 0:
            raise ConfigError(f"{where}.max_retries must be 0 or more, got {value!r}.")
        elif key == "timeout_s":
            value = float(value)
        elif key == "ablation_model_names":
            if not all(isinstance(k, str) and isinstance(v, str) and v for k, v in value.items()):
                raise ConfigError(f'{where}.ablation_model_names maps adapter directories to served names, e.g. '
                                  f'{{"runs/r8" = "r8", "runs/r16" = "r16"}}, got {value!r}.')
            value = MappingProxyType({(base / k).resolve(): v for k, v in value.items()})
        values[key] = value
    for required, example in (("base_url", "http://localhost:8000/v1"), ("base_model_name", "qwen-base")):
        if not values.get(required):
            raise ConfigError(f'{where}: {required} is missing. Set it, e.g. {required} = "{example}".')
    if not values["base_url"].startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL such as http://localhost:8000/v1, "
                          f"got {redact_url(values['base_url'])!r}.")
    return ServedConfig(**values)


@dataclass(frozen=True, slots=True)
class _Reply:
    text: str
    finish_reason: str | None  # as the server spelled it
    prompt_tokens: int
    output_tokens: int


class _Cancelled(Exception):
    """Another request ended the run: send nothing more."""


class ServedSession:
    """Answers for the three modes from an OpenAI-compatible server; a drop-in for `ModelSession.generate`.

    Args:
        served: the endpoint, the two model names, concurrency, timeout and retries.
        adapter_dir: the adapter's local directory, hashed for the cache key and provenance (the
            server must serve these same files); None: the served adapter name stands for it.
        system_prompts: the system prompt of each mode; None means the chat template's default.
        decoding: max_new_tokens and repetition_penalty are used; batch_size, dtype and device are the server's.
        cache_dir: the root of the on-disk cache.
        retry: how long to keep trying a request; None: `RetryPolicy(max_retries=served.max_retries)`.
    """

    def __init__(
        self,
        served: ServedConfig,
        adapter_dir: str | Path | None,
        system_prompts: Mapping[str, str | None],
        decoding: DecodingConfig,
        cache_dir: str | Path,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        if adapter_dir is not None and served.adapter_model_name is None:
            raise ConfigError(
                f"adapter {str(adapter_dir)!r} is set, but not the name the server serves it under. Set "
                '[tool.tunegate.served] adapter_model_name = "<name>" (vLLM: --lora-modules <name>=<dir>).'
            )
        self.served = served
        self.adapter_dir = Path(adapter_dir) if adapter_dir is not None else None
        self.system_prompts = dict(system_prompts)
        self.decoding = decoding
        self.retry = retry if retry is not None else RetryPolicy(max_retries=served.max_retries)
        self.endpoint = _endpoint(served.base_url)
        self.device = f"server {self.endpoint}"  # what the report's provenance prints where a local run shows cuda/cpu
        self.dtype = "as served"
        self._cache = DiskCache(cache_dir, "served_generations")
        self._hash_memo = DiskCache(cache_dir, "file_hashes")
        self._identities: dict[Path, ModelIdentity] = {}
        self._client: openai.OpenAI | None = None
        self._scrub = Scrubber.for_endpoint(served.base_url, None)
        self._lock = threading.Lock()
        self._rng = random.Random()  # jitter only: it spaces retries and never changes an answer

    def __repr__(self) -> str:
        served = self.served
        return f"ServedSession({self.endpoint!r}, base={served.base_model_name!r}, adapter={served.adapter_model_name!r})"

    # -- identities and messages (no server needed) -------------------------------------------

    @property
    def base_identity(self) -> ModelIdentity:
        """The served base: its name is its identity (sha256 is the name's fingerprint, not the weights')."""
        name = self.served.base_model_name
        return ModelIdentity(path=f"{name}@{self.endpoint}", sha256=fingerprint("served-model/v1", name))

    @property
    def adapter_identity(self) -> ModelIdentity | None:
        """The adapter's content hash when its directory is given, else its served name's; None without an adapter."""
        return self.identity_of(None)

    def identity_of(self, adapter_dir: str | Path | None) -> ModelIdentity | None:
        """The content identity of an adapter: the session's own (None), or an ablation run's directory."""
        directory = self.adapter_dir if adapter_dir is None else Path(adapter_dir)
        if directory is None:
            name = self.served.adapter_model_name
            if name is None:
                return None
            return ModelIdentity(f"{name}@{self.endpoint}", fingerprint("served-adapter/v1", name))
        resolved = directory.resolve()
        if resolved not in self._identities:
            self._identities[resolved] = adapter_identity(resolved, self._hash_memo)
        return self._identities[resolved]

    def model_name_for(self, mode: str, adapter_dir: str | Path | None = None) -> str:
        """The served model a mode's requests name: the base for base and prompt_eng, an adapter for finetuned."""
        if mode != "finetuned":
            return self.served.base_model_name
        if adapter_dir is None:
            if self.served.adapter_model_name is None:
                raise AdapterError(
                    "The finetuned mode needs the name the server serves the adapter under: set [tool.tunegate.served] "
                    'adapter_model_name = "<name>" (vLLM: --enable-lora --lora-modules <name>=<adapter dir>), or '
                    "deselect it with -m 'not finetuned'."
                )
            return self.served.adapter_model_name
        name = self.served.ablation_model_names.get(Path(adapter_dir).resolve())
        if name is not None:
            return name
        own = self.identity_of(None)
        if self.adapter_dir is not None and own is not None and self.identity_of(adapter_dir).sha256 == own.sha256:
            return self.model_name_for(mode)  # the shipped adapter itself, run again as part of a sweep
        raise AdapterError(
            f"{adapter_dir}: no served model name for this ablation adapter. Through a server, every run of a sweep "
            "must be served under its own name (vLLM: --lora-modules r8=runs/r8 r16=runs/r16). Fix: map each "
            'directory to its name in [tool.tunegate.served] ablation_model_names = {"runs/r8" = "r8", ...}.'
        )

    def system_prompt_for(self, sample: Sample, mode: str) -> str | None:
        return system_prompt_for(self.system_prompts, sample, mode)

    def messages_for(self, sample: Sample, mode: str) -> list[dict[str, str]]:
        """The exact chat messages sent for `sample` in `mode` (the server applies its chat template)."""
        return chat_messages(sample, self.system_prompt_for(sample, mode))

    def decoding_fields(self) -> dict[str, Any]:
        """Every request parameter that can change an answer; all are part of the cache key."""
        return {"temperature": 0, "max_tokens": self.decoding.max_new_tokens,
                "repetition_penalty": self.decoding.repetition_penalty, "seed": self.served.seed}

    def cache_key(self, messages: Sequence[Mapping[str, str]], mode: str, adapter_dir: str | Path | None = None) -> str:
        adapter = self.identity_of(adapter_dir) if mode == "finetuned" else None
        return fingerprint(
            "served-generation/v1",
            self.served.base_model_name,
            self.model_name_for(mode, adapter_dir),
            adapter.sha256 if adapter else None,
            mode,
            list(messages),
            self.decoding_fields(),
        )

    def provenance(self) -> dict[str, Any]:
        """What the report's header should say about a served run (no credentials)."""
        adapter = self.adapter_identity
        return {"served": self.endpoint, "served_base_model": self.served.base_model_name,
                "served_adapter_model": self.served.adapter_model_name,
                "adapter_sha256": adapter.sha256[:16] if adapter and self.adapter_dir else None,
                "decoding": (f"greedy (temperature 0), max_tokens {self.decoding.max_new_tokens}, repetition_penalty "
                             f"{self.decoding.repetition_penalty:g}, seed {self.served.seed}, "
                             f"concurrency {self.served.concurrency}")}

    # -- what a chat-completions server cannot do ---------------------------------------------

    def reference_likelihoods(self, *args: Any, **kwargs: Any) -> Any:
        raise ModelError(
            "loglik and perplexity need the log-probability of every reference token, teacher-forced after its "
            f"prompt; the served backend ({self.endpoint}) sends chat completions, which return no such thing. "
            "Fix: remove loglik and perplexity from [tool.tunegate] metrics while [tool.tunegate.served] is set, "
            "or measure them in a run on a local base_model."
        )

    def base_weights(self) -> Any:
        raise ModelError(
            f"judge.model = \"base\" shares the run's loaded base weights, but this run's base is served at "
            f"{self.endpoint} and nothing is loaded here. Fix: judge the answers through the same server "
            f'([tool.tunegate.judge] backend = "openai", base_url = "{self.endpoint}", model = '
            f'"{self.served.base_model_name}"), or set judge.model to a local model directory.'
        )

    @property
    def tokenizer(self) -> Any:
        raise ModelError(f"the served backend has no local tokenizer: the server at {self.endpoint} applies its own "
                         "chat template. Anything that needs the tokenizer needs a local base_model.")

    # -- generation ---------------------------------------------------------------------------

    def generate(
        self,
        samples: Sequence[Sample],
        mode: str,
        *,
        progress: bool = True,
        adapter_dir: str | Path | None = None,
        desc: str | None = None,
    ) -> list[Generation]:
        """Answers for `samples` in `mode`, in the samples' order; cached ones are read, the rest requested.

        `latency_s` is one request's wall time (its last attempt, without retry waits), with up to
        `concurrency` requests sharing the server: what a user waits, not a batch's share.

        Args:
            adapter_dir: finetuned mode only: an ablation run's adapter, served under the name
                `ablation_model_names` gives it; None: the session's adapter.
            desc: the progress bar's label (default "generate <mode>").

        Raises:
            ModelError: a request the server refused (a 4xx other than 408/409/429), one that kept
                failing through every retry, or a fault that ends the run (bad key, unknown model).
                Every answer that arrived before is cached.
            AdapterError: finetuned without a served adapter name.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if adapter_dir is not None and mode != "finetuned":
            raise ValueError(f"adapter_dir is for the finetuned mode; {mode} runs with the adapter off")
        model = self.model_name_for(mode, adapter_dir)
        messages = [self.messages_for(sample, mode) for sample in samples]
        keys = [self.cache_key(m, mode, adapter_dir) for m in messages]
        found = self._cache.get_many(keys)
        results: dict[int, Generation] = {}
        for i, (sample, key) in enumerate(zip(samples, keys)):
            if key in found and (cached := _from_cache(found[key], sample.id, mode)) is not None:
                results[i] = cached
        pending: dict[str, list[int]] = {}  # one request per distinct key: identical conversations share it
        for i, key in enumerate(keys):
            if i not in results:
                pending.setdefault(key, []).append(i)
        if not pending:
            return [results[i] for i in range(len(samples))]

        def arrived(chunk: Sequence[str]) -> bool:
            """Answers another process (an xdist worker) cached meanwhile; True when the chunk is complete."""
            for key in chunk:
                entry = self._cache.get(key)
                if entry is not None and (cached := _from_cache(entry, samples[pending[key][0]].id, mode)) is not None:
                    for i in pending[key]:
                        results[i] = Generation(**{**asdict(cached), "sample_id": samples[i].id})
            return all(pending[key][0] in results for key in chunk)

        def request(chunk: Sequence[str]) -> None:
            todo = {key: pending[key] for key in chunk if pending[key][0] not in results}
            for key, generation in self._request_all(todo, samples, messages, mode, model, progress,
                                                     desc or f"generate {mode}"):
                for i in pending[key]:
                    results[i] = Generation(**{**asdict(generation), "sample_id": samples[i].id})

        # Claimed chunk by chunk (tunegate.claims), so pytest-xdist workers never send a request twice.
        keys_pending = list(pending)
        size = max(self.served.concurrency, self.decoding.batch_size, 1)
        claim_chunks([keys_pending[start : start + size] for start in range(0, len(keys_pending), size)],
                     lock_for=lambda chunk: lock_path(self._cache.root, self._cache.namespace, chunk),
                     is_done=arrived, work=request)
        return [results[i] for i in range(len(samples))]

    def close(self) -> None:
        """Close the HTTP connection pool (also closed when the session is garbage-collected)."""
        if self._client is not None:
            self._client.close()

    def _request_all(self, pending: Mapping[str, list[int]], samples: Sequence[Sample],
                     messages: Sequence[list[dict[str, str]]], mode: str, model: str, progress: bool,
                     desc: str) -> Iterator[tuple[str, Generation]]:
        """Yield (key, generation) as answers arrive, `concurrency` requests in flight at most; stop at the first failure."""
        from tqdm.auto import tqdm

        client = self._connect()
        stop = threading.Event()
        workers = min(self.served.concurrency, len(pending))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tunegate-served")
        try:
            futures = {
                pool.submit(self._generate_one, client, samples[first], mode, model, messages[first], key, stop): key
                for key, (first, *_) in pending.items()
            }
            with tqdm(total=sum(map(len, pending.values())), desc=desc, unit="sample", disable=not progress) as bar:
                for future in as_completed(futures):
                    try:
                        generation = future.result()
                    except _Cancelled:
                        continue  # the failure that stopped the run comes from its own future
                    bar.update(len(pending[futures[future]]))
                    yield futures[future], generation
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    def _generate_one(self, client: openai.OpenAI, sample: Sample, mode: str, model: str,
                      messages: list[dict[str, str]], key: str, stop: threading.Event) -> Generation:
        """One answer, retried as the judge's are; written to the cache here, the moment it arrives."""
        seconds = [0.0]
        last_error: list[BaseException | None] = [None]

        def attempt() -> _Reply:
            if stop.is_set():
                raise _Cancelled()
            started = time.perf_counter()
            try:
                reply = self._send(client, model, messages)
            except Exception as error:
                last_error[0] = error
                raise
            seconds[0] = time.perf_counter() - started
            return reply

        def wait(delay_s: float) -> None:
            if stop.wait(delay_s):
                raise _Cancelled()

        target = RemoteTarget("served model", self.endpoint, model, self.served.api_key_env)
        try:
            outcome = call_with_retry(attempt, self.retry, target, scrub=self._scrub, sleep=wait, rng=self._rng,
                                      fatal=ModelError)
        except ModelError as error:
            stop.set()
            raise ModelError(self._fatal_text(str(error), model, last_error[0])) from None
        if outcome.value is None:
            stop.set()
            raise ModelError(self._failed_text(sample, mode, model, outcome.error or "no answer", last_error[0]))
        reply = outcome.value
        finish_reason = FINISH_REASONS.get(reply.finish_reason or "")
        if finish_reason is None:
            stop.set()
            raise ModelError(
                f"{sample.id} ({mode}): the server at {self.endpoint} ended the answer of {model!r} with finish_reason "
                f"{self._scrub(repr(reply.finish_reason))}, neither stop nor length, so tunegate cannot tell whether the answer is whole "
                "and does not score it. Fix: check the server's logs (a content filter, an aborted request, a tool "
                f"call) and rerun. {_KEPT}"
            )
        generation = Generation(sample.id, mode, reply.text.strip(), finish_reason, reply.prompt_tokens,
                                reply.output_tokens, seconds[0])
        stored = {**{k: v for k, v in asdict(generation).items() if k not in ("sample_id", "mode", "cached")},
                  "model": model}
        self._cache.put(key, stored)
        return generation

    def _send(self, client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> _Reply:
        """One request. repetition_penalty is not an OpenAI parameter: sent in the body only when it is not 1.0
        (vLLM and SGLang take it there; OpenAI's own API would refuse it)."""
        penalty = self.decoding.repetition_penalty
        completion = client.chat.completions.create(
            model=model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=self.decoding.max_new_tokens,
            seed=self.served.seed,
            extra_body={"repetition_penalty": penalty} if penalty != 1.0 else None,
        )
        choice = require_chat_completion(completion).choices[0]
        content = choice.message.content
        if not isinstance(content, (str, type(None))):
            raise MalformedResponse("HTTP 200 with a message whose content is not text")
        finish_reason = getattr(choice, "finish_reason", None)
        usage = getattr(completion, "usage", None)
        return _Reply(content or "", finish_reason if isinstance(finish_reason, str) else None,
                      _count(getattr(usage, "prompt_tokens", 0)), _count(getattr(usage, "completion_tokens", 0)))

    def _connect(self) -> openai.OpenAI:
        """The client, built on the first cache miss: the key is read only when a request must be sent."""
        with self._lock:
            if self._client is None:
                env = self.served.api_key_env
                api_key = KEYLESS_TOKEN if env is None else os.environ.get(env, "").strip()
                if not api_key:
                    raise ModelError(
                        f"The served models at {self.endpoint} need an API key in the environment variable {env}, which "
                        f"is {'empty' if env in os.environ else 'not set'}. Fix: export {env}=<the key the server was "
                        'started with (vLLM: --api-key)>, or, for a server without a key, set [tool.tunegate.served] '
                        'api_key_env = "none".'
                    )
                if env is not None:
                    self._scrub = Scrubber.for_endpoint(self.served.base_url, api_key)
                self._client = openai.OpenAI(api_key=api_key, base_url=self.served.base_url,
                                             timeout=self.served.timeout_s, max_retries=0)
            return self._client

    # -- messages -----------------------------------------------------------------------------

    def _fatal_text(self, message: str, model: str, error: BaseException | None) -> str:
        """retry.fatal_message's paragraph, about answers instead of judgements, with the serving fix for a 404."""
        message = message.replace(_JUDGE_KEPT, _KEPT) if _JUDGE_KEPT in message else f"{message} {_KEPT}"
        if isinstance(error, openai.NotFoundError):
            message += (
                f" The server must serve the base as {self.served.base_model_name!r} and the adapter as "
                f"{self.served.adapter_model_name!r} (vLLM: --served-model-name {self.served.base_model_name} "
                f"--enable-lora --lora-modules {self.served.adapter_model_name or '<name>'}=<adapter dir>); or set "
                "[tool.tunegate.served] base_model_name and adapter_model_name to names GET <base_url>/models lists."
            )
        return message

    def _failed_text(self, sample: Sample, mode: str, model: str, summary: str, error: BaseException | None) -> str:
        """Why this one request cannot succeed: refused (not retried), or still failing after every retry."""
        where = f"{sample.id} ({mode}): the server at {self.endpoint}"
        fault = classify(error, self._scrub) if error is not None else None
        if fault is not None and fault.action == "retry":
            return (
                f"{where} kept failing for model {model!r}: {summary}. Fix: check the server's health and load, then "
                f"lower [tool.tunegate.served] concurrency (now {self.served.concurrency}), or raise timeout_s (now "
                f"{self.served.timeout_s:g} s) or max_retries (now {self.retry.max_retries}). {_KEPT}"
            )
        return (
            f"{where} refused the request for model {model!r}: {summary}. A 4xx answer is not retried: the same request "
            "would be refused again. Fix what the server names; often the prompt plus max_new_tokens "
            f"({self.decoding.max_new_tokens}) exceeds its context length (vLLM: raise --max-model-len, or lower "
            "max_new_tokens), or it does not take a parameter (repetition_penalty is sent only when it is not 1.0; "
            f"OpenAI's own API refuses it). {_KEPT}"
        )


def _from_cache(entry: Mapping[str, Any], sample_id: str, mode: str) -> Generation | None:
    """The cached answer, or None (a miss) for an entry that lacks a field."""
    try:
        return Generation(sample_id, mode, entry["text"], entry["finish_reason"], entry["prompt_tokens"],
                          entry["output_tokens"], entry["latency_s"], cached=True)
    except KeyError:
        return None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _endpoint(base_url: str) -> str:
    """The base URL as messages and provenance show it: redacted, without a trailing slash."""
    parts = urlsplit(redact_url(base_url))
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))
