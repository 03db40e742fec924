"""A judge behind any OpenAI-compatible chat-completions endpoint: OpenAI, DeepSeek, DashScope, vLLM, Ollama.

    OpenAICompatibleJudge("gpt-4o-mini", "https://api.openai.com/v1")                      # OPENAI_API_KEY
    OpenAICompatibleJudge("deepseek-chat", "https://api.deepseek.com/v1", api_key_env="DEEPSEEK_API_KEY")
    OpenAICompatibleJudge("qwen-plus", "https://dashscope-intl.aliyuncs.com/compatible-mode/v1",
                          api_key_env="DASHSCOPE_API_KEY")
    OpenAICompatibleJudge("Qwen/Qwen2.5-7B-Instruct", "http://localhost:8000/v1", api_key_env=None)   # vLLM
    OpenAICompatibleJudge("qwen2.5:7b", "http://localhost:11434/v1", api_key_env=None)                 # Ollama

The prompt, the strict parse, the cache and the accounting are `tunegate.judge`'s; this module only
talks to the server: bounded concurrency, temperature 0, structured output where the server has it,
retries through `tunegate.retry` (the openai client's own retries are off), and secrets kept out of
everything it emits. The API key is read from an environment variable, never from configuration
files, and never appears in `identity`, reply errors, exceptions or log records.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from tunegate.errors import ConfigError, JudgeError
from tunegate.judge import STRUCTURED_OUTPUT as STRUCTURED_OUTPUTS
from tunegate.judge import (
    JudgeParseError,
    JudgeReply,
    JudgeRequest,
    clip,
    json_messages,
    json_schema,
    parse_scores,
    parse_winner,
)
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

OPENAI_BASE_URL = "https://api.openai.com/v1"
_FALLBACK = {"json_schema": "json_object", "json_object": "none"}
# Sent as the bearer token when api_key_env=None: the openai client insists on some key, and a
# local server (vLLM without --api-key, Ollama) ignores it.
KEYLESS_TOKEN = "no-key-needed"
_CLIP_CHARS = 160


class _Cancelled(Exception):
    """The run is stopping (a fatal fault in another request, or the caller stopped reading): send nothing more."""


@dataclass(frozen=True, slots=True)
class _Answer:
    """What tunegate needs from a chat completion, checked to be there."""

    content: str | None
    refusal: str | None
    finish_reason: str | None
    input_tokens: int
    output_tokens: int


class OpenAICompatibleJudge:
    """A `JudgeBackend` for an OpenAI-compatible `POST <base_url>/chat/completions`.

    Args:
        model: the judge model's name on that server.
        base_url: the API root, e.g. https://api.openai.com/v1 or http://localhost:8000/v1. None: as the
            openai package defaults, $OPENAI_BASE_URL or else https://api.openai.com/v1 (resolved here,
            so `identity` names the server actually used).
        api_key_env: the environment variable holding the key, read once here (a missing or empty
            variable is a `JudgeError` naming it). None for a local server that needs no key: a
            placeholder token is sent instead.
        timeout_s: per request (connect, read, write); a request past it is retried.
        concurrency: requests in flight at most (a thread pool of this size).
        structured_output: "auto" tries a JSON schema, and when the server answers 400 about
            `response_format` falls back to a JSON object, then to the prompt alone, remembered
            for the rest of this backend's life; "json_schema", "json_object" or "none" fix the mode
            (a server rejecting a fixed mode ends the run with a message).
        max_output_tokens: the reply's token limit (`max_tokens`, which every compatible server accepts).
        retry: how long to keep trying a request (see `tunegate.retry`).

    Raises:
        JudgeError: the key's variable is not set.
        ConfigError: an argument out of range.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None,
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        concurrency: int = 4,
        structured_output: str = "auto",
        max_output_tokens: int = 300,
        retry: RetryPolicy = RetryPolicy(),
    ) -> None:
        if base_url is None:
            base_url = os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL
        _check_arguments(model, base_url, timeout_s, concurrency, structured_output, max_output_tokens)
        endpoint = _endpoint(base_url)
        if api_key_env is None:
            api_key = KEYLESS_TOKEN
        else:
            api_key = os.environ.get(api_key_env, "").strip()  # a trailing newline from `$(cat keyfile)` is not part of it
            if not api_key:
                raise JudgeError(
                    f"The judge {model!r} at {endpoint} needs an API key in the environment variable {api_key_env}, "
                    f"which is {'empty' if api_key_env in os.environ else 'not set'}. Fix: export {api_key_env}=<your key> "
                    "before running pytest (or name the variable that holds it with api_key_env); for a local server "
                    "that needs no key (vLLM without --api-key, Ollama), pass api_key_env=None."
                )
        self.model = model
        self.identity = f"openai-compatible:{model}@{endpoint}"
        self.timeout_s = float(timeout_s)
        self.concurrency = concurrency
        self.structured_output = structured_output
        self.max_output_tokens = max_output_tokens
        self.retry = retry
        self._target = RemoteTarget("judge", endpoint, model, api_key_env)
        self._scrub = Scrubber.for_endpoint(base_url, api_key if api_key_env is not None else None)
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=self.timeout_s, max_retries=0)
        self._rng = random.Random()  # jitter only: it spaces retries and never changes a judgement
        self._lock = threading.Lock()
        self._mode = "json_schema" if structured_output == "auto" else structured_output

    def __repr__(self) -> str:
        return f"OpenAICompatibleJudge({self.identity!r}, concurrency={self.concurrency})"

    @property
    def structured_output_in_use(self) -> str:
        """The response_format mode requests are sent with now ("json_schema", "json_object" or "none")."""
        with self._lock:
            return self._mode

    def close(self) -> None:
        """Close the HTTP connection pool (also closed when the judge is garbage-collected)."""
        self._client.close()

    def judge(self, requests: Sequence[JudgeRequest]) -> Iterator[tuple[int, JudgeReply]]:
        """Yield (index, reply) as each judgement completes, at most `concurrency` requests in flight.

        A fault that ends the run raises `JudgeError` as soon as it happens: no request is sent after
        it, waiting retries stop, and the few in flight finish in the background (within `timeout_s`).
        """
        if not requests:
            return
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests)), thread_name_prefix="tunegate-judge")
        try:
            futures = {pool.submit(self._judge_one, request, stop): index for index, request in enumerate(requests)}
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)

    # -- one judgement --------------------------------------------------------------------------

    def _judge_one(self, request: JudgeRequest, stop: threading.Event) -> JudgeReply:
        messages = json_messages(request)
        rejected_formats = [0]  # requests the server refused for their response_format (not retries)

        def attempt() -> _Answer:
            if stop.is_set():
                raise _Cancelled()
            return self._send(request.kind, messages, rejected_formats)

        def wait(seconds: float) -> None:
            if stop.wait(seconds):
                raise _Cancelled()

        started = time.monotonic()
        try:
            outcome = call_with_retry(attempt, self.retry, self._target, scrub=self._scrub, sleep=wait, rng=self._rng)
        except JudgeError:
            stop.set()  # here, not only in judge(): this worker's next request must not start meanwhile
            raise
        calls = outcome.attempts + rejected_formats[0]
        latency_s = time.monotonic() - started
        if outcome.value is None:
            return JudgeReply(error=outcome.error or "no answer", calls=calls, latency_s=latency_s)
        answer = outcome.value
        tokens: dict[str, Any] = {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens,
                                  "calls": calls, "latency_s": latency_s}
        error = self._reply_error(answer)
        if error is not None:
            return JudgeReply(error=error, **tokens)
        try:
            if request.kind == "pairwise":
                winner, reasoning = parse_winner(answer.content or "")
                return JudgeReply(winner=winner, reasoning=self._scrub(reasoning), **tokens)
            scores, reasoning = parse_scores(answer.content or "")
            return JudgeReply(scores=scores, reasoning=self._scrub(reasoning), **tokens)
        except JudgeParseError as parse_error:
            cut = answer.finish_reason == "length"
            note = f" (the reply was cut at max_output_tokens={self.max_output_tokens})" if cut else ""
            return JudgeReply(error=self._scrub(f"{parse_error}{note}"), **tokens)

    def _reply_error(self, answer: _Answer) -> str | None:
        """Why a well-formed completion still holds no judgement: a refusal, or no content at all."""
        if answer.refusal:
            return self._scrub(f"refusal: {clip(answer.refusal, _CLIP_CHARS)}")
        if not (answer.content or "").strip():
            return f"empty reply (finish_reason={answer.finish_reason})"
        return None

    def _send(self, kind: str, messages: list[dict[str, str]], rejected_formats: list[int]) -> _Answer:
        """One attempt; a response_format the server rejects is replaced and resent at once (not a retry)."""
        while True:
            mode = self.structured_output_in_use
            try:
                completion = self._client.chat.completions.create(
                    model=self.model,
                    messages=messages,  # type: ignore[arg-type]
                    temperature=0,
                    max_tokens=self.max_output_tokens,
                    response_format=_response_format(mode, kind),  # type: ignore[arg-type]
                )
            except (openai.BadRequestError, openai.UnprocessableEntityError) as error:
                if mode == "none" or not _rejects_response_format(error):
                    raise
                fault = classify(error, self._scrub)
                summary = fault.summary if fault else "rejected"
                if self.structured_output != "auto":
                    raise JudgeError(
                        f"The judge endpoint {self._target.endpoint} (model {self.model!r}) rejects "
                        f"response_format {mode!r}: {summary}. Fix: set the judge's structured_output to 'auto' "
                        "(tunegate then falls back to a JSON object, then to the prompt alone) or to a mode this "
                        "server supports."
                    ) from None
                rejected_formats[0] += 1
                self._fall_back(mode, summary)
                continue
            return _answer(completion)

    def _fall_back(self, rejected: str, summary: str) -> None:
        """Move to the next structured-output mode once, however many requests saw the rejection at the same time."""
        with self._lock:
            if self._mode != rejected:
                return
            self._mode = _FALLBACK[rejected]
            log.info("judge %s: the server rejects response_format %r (%s); using %r for the rest of the run",
                     self.identity, rejected, summary, self._mode)


def _check_arguments(model: str, base_url: str, timeout_s: float, concurrency: int, structured_output: str,
                     max_output_tokens: int) -> None:
    if not model or not isinstance(model, str):
        raise ConfigError(f"judge model must be a model name, got {model!r}.")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"judge base_url must be an http(s) URL such as https://api.openai.com/v1, got {redact_url(str(base_url))!r}.")
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ConfigError(f"judge timeout_s must be a number of seconds > 0, got {timeout_s!r}.")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"judge concurrency must be an integer >= 1, got {concurrency!r}.")
    if structured_output not in STRUCTURED_OUTPUTS:
        raise ConfigError(f"judge structured_output must be one of {', '.join(STRUCTURED_OUTPUTS)}, got {structured_output!r}.")
    if isinstance(max_output_tokens, bool) or not isinstance(max_output_tokens, int) or max_output_tokens < 1:
        raise ConfigError(f"judge max_output_tokens must be an integer >= 1, got {max_output_tokens!r}.")


def _endpoint(base_url: str) -> str:
    """The base URL as identity and messages show it: redacted, without a trailing slash (…/v1 and …/v1/ are one cache)."""
    parts = urlsplit(redact_url(base_url))
    return urlunsplit(parts._replace(path=parts.path.rstrip("/")))


def _response_format(mode: str, kind: str) -> dict[str, Any] | openai.Omit:
    if mode == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": f"{kind}_judgement", "schema": json_schema(kind), "strict": True}}
    if mode == "json_object":
        return {"type": "json_object"}
    return openai.omit


def _rejects_response_format(error: openai.APIStatusError) -> bool:
    """A 400/422 about structured output (servers word it differently; all name the parameter or the mode)."""
    if error.param == "response_format":
        return True
    text = f"{error.message} {error.body}".lower()
    return any(word in text for word in ("response_format", "json_schema", "json_object", "structured output"))


def _answer(completion: object) -> _Answer:
    """The parts of a completion tunegate uses; a 200 without them is `MalformedResponse` (retried)."""
    choice = require_chat_completion(completion).choices[0]
    content, refusal = choice.message.content, getattr(choice.message, "refusal", None)
    finish_reason = getattr(choice, "finish_reason", None)
    if not isinstance(content, (str, type(None))) or not isinstance(refusal, (str, type(None))):
        raise MalformedResponse("HTTP 200 with a message whose content is not text")
    usage = getattr(completion, "usage", None)
    return _Answer(content, refusal, finish_reason if isinstance(finish_reason, str) else None,
                   _count(getattr(usage, "prompt_tokens", 0)), _count(getattr(usage, "completion_tokens", 0)))


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
