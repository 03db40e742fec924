"""One retry layer for calls to an OpenAI-compatible server: the remote judge now, a served model later.

Why our own instead of the openai client's `max_retries`: the client cannot tell the three kinds of
fault apart, and tunegate must, because they end differently:

    transient   429 (not quota), 408, 409, 5xx, timeouts, lost connections, a 200 whose body is not
                a chat completion: wait (Retry-After when the server gives one, else exponential
                backoff with full jitter) and send again;
    one request 400 and the other 4xx: this request fails (a judge error), the run goes on;
    the run     401, 403, 404, 429 insufficient_quota, a Retry-After beyond `max_retry_after_s`, or a
                server still unreachable after every retry: every further call would fail the same
                way, so stop at once with one paragraph naming the endpoint, the key's variable and
                the fix (`JudgeError`, or the caller's own error family).

The client is built with `max_retries=0` and every call goes through `call_with_retry`, which also
counts the requests an answer took (`Attempts.attempts`, the judge's `calls`). This module also
owns keeping secrets out of what tunegate emits (`redact_url`, `Scrubber`): every message it builds
from a server's words passes through the caller's scrubber.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timezone
from typing import Generic, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai
from openai.types.chat import ChatCompletion

from tunegate.errors import ConfigError, JudgeError, TunegateError

log = logging.getLogger(__name__)

T = TypeVar("T")
REDACTED = "***"


# -- secrets ------------------------------------------------------------------------------------


def redact_url(url: str) -> str:
    """`url` without credentials: no user:password@, every query value replaced, no fragment.

    >>> redact_url("https://bob:pw@gw.example.com/v1?api-key=abc&x=1#top")
    'https://gw.example.com/v1?api-key=***&x=***'
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    query = "&".join(f"{name}={REDACTED}" if value else f"{name}=" for name, value in pairs)
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials inside a URL: the user and password of user:password@, and every query value."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    found = [piece for piece in userinfo.split(":", 1) if piece]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True) if value]
    return tuple(found)


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)
_AUTH_VALUE = re.compile(r"\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_OPENAI_STYLE_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
_MIN_SECRET_CHARS = 4  # shorter "secrets" would blank out ordinary words and numbers


@dataclass(frozen=True, slots=True)
class Scrubber:
    """Removes secrets from any text before tunegate emits it (reply errors, exceptions, log records).

    Three layers: the exact secrets it was given (the API key, URL credentials), any URL's
    credentials (`redact_url`), and anything shaped like `Bearer <token>` or `sk-...`, so a key
    tunegate was never told about (echoed by a proxy, say) is caught too.
    """

    secrets: tuple[str, ...] = field(default=(), repr=False)  # repr=False: a failing assert must not print them

    @classmethod
    def for_endpoint(cls, base_url: str, api_key: str | None) -> Scrubber:
        found = ([api_key] if api_key else []) + list(url_secrets(base_url))
        # Longest first, so a secret that contains another is removed whole.
        unique = sorted({s for s in found if len(s) >= _MIN_SECRET_CHARS}, key=len, reverse=True)
        return cls(tuple(unique))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _URL.sub(lambda match: redact_url(match.group(0)), text)
        text = _AUTH_VALUE.sub(lambda match: f"{match.group(1)} {REDACTED}", text)
        return _OPENAI_STYLE_KEY.sub(f"sk-{REDACTED}", text)


def _no_scrub(text: str) -> str:
    return text


# -- policy -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to keep trying one request.

    Args:
        max_retries: retries after the first attempt (so at most max_retries + 1 requests).
        base_delay_s: backoff before the first retry is drawn from [0, base_delay_s], then doubles.
        max_delay_s: the backoff never exceeds this.
        max_retry_after_s: a server asking to wait longer than this ends the run with a message
            instead of hanging it (rerun later; cached judgements are kept).
    """

    max_retries: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0
    max_retry_after_s: float = 120.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"retry max_retries must be an integer >= 0, got {self.max_retries!r}.")
        for name in ("base_delay_s", "max_delay_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"retry {name} must be a number of seconds >= 0, got {value!r}.")

    def backoff_s(self, retry: int, rng: random.Random) -> float:
        """The wait before retry number `retry` (0-based): full jitter, uniform in [0, min(cap, base * 2**retry)].

        Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015) spreads the retries of
        many workers that failed together, so they do not hit a recovering server in one burst again.
        """
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(retry, 60))
        return rng.uniform(0.0, ceiling)


def retry_after_s(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from `retry-after-ms` or `Retry-After`; None when absent or unreadable.

    `Retry-After` is seconds (fractions accepted, as some servers send them) or an HTTP date (RFC 9110
    section 10.2.3); a date in the past means no wait.
    """
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value.strip()) / divisor
        except ValueError:
            continue
        if seconds == seconds and seconds != float("inf"):  # not NaN, not infinite
            return max(0.0, seconds)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:  # "-0000" parses as naive; an HTTP date is GMT either way
        moment = moment.replace(tzinfo=timezone.utc)
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


# -- classification -----------------------------------------------------------------------------


class MalformedResponse(Exception):
    """A 200 whose body is not a usable response (truncated JSON, an HTML page, no choices): retried like a 5xx."""


def require_chat_completion(value: object) -> ChatCompletion:
    """`value` if it is a chat completion with a first message, else `MalformedResponse`.

    Needed because the client does not raise on every bad 200: given a non-JSON content type (a
    proxy's HTML page) it returns the body as a str, and without strict validation a JSON body
    missing `choices` becomes a ChatCompletion without them.
    """
    if not isinstance(value, ChatCompletion):
        text = " ".join(str(value).split())[:80]
        raise MalformedResponse(f"HTTP 200 with a body that is not a chat completion: {text}")
    try:
        value.choices[0].message  # noqa: B018 - an attribute check
    except (AttributeError, IndexError, KeyError, TypeError):
        raise MalformedResponse("HTTP 200 with a chat completion that has no choices[0].message") from None
    return value


@dataclass(frozen=True, slots=True)
class Fault:
    """What one failed attempt means.

    `action` is "retry", "fail" (this request only) or "fatal" (the run); `reason` one of auth,
    permission, not_found, quota, rate_limit, server, timeout, conflict, connection, malformed, client.
    """

    action: str
    reason: str
    summary: str  # already scrubbed, one line
    status: int | None = None
    retry_after_s: float | None = None


_FATAL_STATUS = {401: "auth", 403: "permission", 404: "not_found"}
_RETRY_STATUS = {408: "timeout", 409: "conflict"}


def classify(error: BaseException, scrub: Callable[[str], str] = _no_scrub) -> Fault | None:
    """The fault an exception from one call stands for, or None when it is not a server fault (a bug: re-raise)."""
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        summary = scrub(f"HTTP {status}{_code_suffix(error)}: {_detail(error)}")
        if status in _FATAL_STATUS:
            return Fault("fatal", _FATAL_STATUS[status], summary, status)
        if status == 429 and "insufficient_quota" in (error.code, error.type):
            return Fault("fatal", "quota", summary, status)
        if status == 429 or status >= 500:
            reason = "rate_limit" if status == 429 else "server"
            return Fault("retry", reason, summary, status, retry_after_s(error.response.headers))
        if status in _RETRY_STATUS:
            return Fault("retry", _RETRY_STATUS[status], summary, status)
        return Fault("fail", "client", summary, status)
    if isinstance(error, openai.APIResponseValidationError):
        return Fault("retry", "malformed", scrub(f"HTTP {error.status_code} with a body that is not a chat completion"), error.status_code)
    if isinstance(error, openai.APITimeoutError):
        return Fault("retry", "timeout", "no answer within the timeout")
    if isinstance(error, openai.APIConnectionError):
        cause = error.__cause__
        return Fault("retry", "connection", scrub(f"connection failed ({type(cause).__name__ if cause else 'no response'})"))
    if isinstance(error, json.JSONDecodeError):
        return Fault("retry", "malformed", f"HTTP 200 with a body that is not JSON ({error.msg} at char {error.pos})")
    if isinstance(error, MalformedResponse):
        return Fault("retry", "malformed", scrub(str(error)))
    return None


def _code_suffix(error: openai.APIStatusError) -> str:
    code = error.code or error.type
    return f" {code}" if code else ""


def _detail(error: openai.APIStatusError, limit: int = 300) -> str:
    """The server's own message: the `message` of its error body, else the body text, else the reason phrase."""
    body = error.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        text = body["message"]
    elif isinstance(body, str) and body.strip():
        text = body
    elif body:
        text = json.dumps(body, default=str)
    else:
        text = error.response.reason_phrase or "no details"
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# -- the loop -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemoteTarget:
    """What fatal messages name: `service` ("judge"), the redacted endpoint, the model, the key's variable."""

    service: str
    endpoint: str
    model: str
    key_env: str | None


@dataclass(frozen=True, slots=True)
class Attempts(Generic[T]):
    """The result of `call_with_retry`: a value, or why this one request failed; and what it took."""

    value: T | None
    error: str | None
    attempts: int  # requests sent, the first one included
    waited_s: float  # time slept between them

    @property
    def ok(self) -> bool:
        return self.error is None


def call_with_retry(
    call: Callable[[], T],
    policy: RetryPolicy,
    target: RemoteTarget,
    *,
    scrub: Callable[[str], str] = _no_scrub,
    sleep: Callable[[float], object] = time.sleep,
    rng: random.Random | None = None,
    fatal: type[TunegateError] = JudgeError,
) -> Attempts[T]:
    """Run `call` until it returns, fails for this request only, or fails for the run.

    Args:
        call: one attempt (one HTTP request); raises openai's exceptions, `json.JSONDecodeError`
            or `MalformedResponse` on a fault. Anything else is a bug and propagates unchanged.
        policy: how many retries and how long to wait.
        target: named in the message of a fatal fault.
        scrub: applied to every string built from the server's answer.
        sleep: waits between attempts (tests pass a recorder; the judge passes one that stops early
            when the run is being cancelled, by raising).
        rng: the jitter's random source; jitter only spaces retries, it never changes a result.
        fatal: the exception raised for a fault that ends the run.

    Returns:
        `Attempts` with the value, or with `error` set when this request cannot succeed.

    Raises:
        `fatal` (JudgeError by default): bad key, no permission, unknown model, exhausted quota,
        a Retry-After beyond `policy.max_retry_after_s`, or a server unreachable after every retry.
    """
    rng = rng if rng is not None else random.Random()
    waited = 0.0
    for attempt in range(1, policy.max_retries + 2):
        try:
            return Attempts(call(), None, attempt, waited)
        except Exception as error:  # noqa: BLE001 - classify() decides; unknown errors are re-raised
            fault = classify(error, scrub)
            if fault is None:
                raise
        if fault.action == "fatal":
            raise fatal(fatal_message(fault, target))
        if fault.action == "fail":
            return Attempts(None, fault.summary, attempt, waited)
        if fault.retry_after_s is not None and fault.retry_after_s > policy.max_retry_after_s:
            raise fatal(fatal_message(fault, target, policy=policy))
        if attempt > policy.max_retries:
            if fault.reason == "connection":
                raise fatal(fatal_message(fault, target, attempts=attempt))
            return Attempts(None, f"gave up after {attempt} attempts: {fault.summary}", attempt, waited)
        delay = fault.retry_after_s if fault.retry_after_s is not None else policy.backoff_s(attempt - 1, rng)
        log.info(
            "%s %s: %s; retry %d of %d in %.2f s%s", target.service, target.model, fault.summary,
            attempt, policy.max_retries, delay, " (Retry-After)" if fault.retry_after_s is not None else "",
        )
        sleep(delay)
        waited += delay
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def fatal_message(fault: Fault, target: RemoteTarget, *, policy: RetryPolicy | None = None, attempts: int = 1) -> str:
    """One paragraph for a fault that ends the run: what the server said, where, and the fix."""
    where = f"The {target.service} endpoint {target.endpoint} (model {target.model!r})"
    fault = Fault(fault.action, fault.reason, fault.summary.rstrip(". "), fault.status, fault.retry_after_s)
    key = f"the environment variable {target.key_env}" if target.key_env else "no API key (api_key_env=None)"
    kept = "Judgements already cached are kept; the rerun asks only for the rest."
    if fault.reason == "auth":
        return (
            f"{where} rejected the API key: {fault.summary}. tunegate sends the key from {key}. "
            f"Fix: put a valid key for this endpoint in {target.key_env or 'a variable and set api_key_env to it'}, "
            f"or point api_key_env at the variable that holds it, then rerun. {kept}"
        )
    if fault.reason == "permission":
        return (
            f"{where} refused access: {fault.summary}. The key from {key} is accepted but may not use this model "
            f"(or this organisation, project or region). Fix: use a key whose project can call {target.model!r}, "
            f"or choose a model it can, then rerun. {kept}"
        )
    if fault.reason == "not_found":
        return (
            f"{where} answered 404: {fault.summary}. Either the model name is not served there (or not visible to "
            f"the account behind {key}) or the base URL is not the API root of an OpenAI-compatible server. Fix: check the model name (GET <base_url>/models lists "
            "them) and that base_url ends at the API root, e.g. https://api.openai.com/v1, http://localhost:8000/v1 "
            f"(vLLM) or http://localhost:11434/v1 (Ollama). {kept}"
        )
    if fault.reason == "quota":
        return (
            f"{where} reports the account behind {key} has no quota left: {fault.summary}. Retrying cannot help. "
            f"Fix: add credit or raise the spending limit of that account, or use another key, then rerun. {kept}"
        )
    if fault.reason == "connection":
        return (
            f"{where} could not be reached after {attempts} attempts: {fault.summary}. Fix: check that the server is "
            f"running and that base_url (scheme, host, port) is right. {kept}"
        )
    if fault.retry_after_s is not None and policy is not None:
        return (
            f"{where} asked to wait {fault.retry_after_s:.0f} s before the next request ({fault.summary}), longer "
            f"than max_retry_after_s = {policy.max_retry_after_s:g} s, so tunegate stops instead of hanging. "
            f"Fix: rerun later, lower the judge's concurrency, or raise max_retry_after_s. {kept}"
        )
    return f"{where} failed: {fault.summary}. {kept}"  # pragma: no cover - every fatal reason is handled above

