"""tunegate.retry: the policy, Retry-After, secrets, and each fault through the real openai client and a real server."""

from __future__ import annotations

import random
import socket
import time
from collections.abc import Callable
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone

import openai
import pytest

from tests.judge_server import JudgeServer, block_text, expected_scores
from tunegate.errors import ConfigError, JudgeError
from tunegate.judge import JudgeRequest, json_messages, parse_scores
from tunegate.retry import (
    Attempts,
    RemoteTarget,
    RetryPolicy,
    Scrubber,
    call_with_retry,
    redact_url,
    require_chat_completion,
    retry_after_s,
)

KEY = "sk-tunegate-retry-SECRET-5b1e0c9d77"
KEY_ENV = "TUNEGATE_TEST_RETRY_KEY"
FAST = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)


class Sleeps:
    """Records the waits asked for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def request(question: str, answer: str = "It ships Monday.") -> JudgeRequest:
    return JudgeRequest("reference", "q1", "finetuned", f"Where is my parcel? {question}", "Monday, by courier.", answer)


def chat_call(server: JudgeServer, question: str, *, key: str = KEY, timeout_s: float = 2.0) -> Callable[[], dict[str, float]]:
    """One attempt as a backend makes it: the real client, no retries of its own, a strict parse."""
    client = openai.OpenAI(api_key=key, base_url=server.url, timeout=timeout_s, max_retries=0)
    messages = json_messages(request(question))

    def call() -> dict[str, float]:
        completion = client.chat.completions.create(model="judge-test", messages=messages, temperature=0)  # type: ignore[arg-type]
        return parse_scores(require_chat_completion(completion).choices[0].message.content or "")[0]

    return call


def target(server: JudgeServer | None = None, url: str = "") -> RemoteTarget:
    return RemoteTarget("judge", redact_url(server.url if server else url), "judge-test", KEY_ENV)


def run(server: JudgeServer, question: str, policy: RetryPolicy = FAST, **kwargs: object) -> tuple[Attempts[dict[str, float]], Sleeps]:
    sleeps = Sleeps()
    outcome = call_with_retry(chat_call(server, question, **kwargs), policy, target(server),  # type: ignore[arg-type]
                              scrub=Scrubber.for_endpoint(server.url, KEY), sleep=sleeps, rng=random.Random(7))
    return outcome, sleeps


EXPECTED = expected_scores("It ships Monday.")


# -- the policy on its own ----------------------------------------------------------------------


def test_backoff_is_full_jitter_doubling_up_to_the_cap_and_reproducible_with_a_seed() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(1)
    draws = [[policy.backoff_s(retry, rng) for _ in range(200)] for retry in range(8)]
    for retry, values in enumerate(draws):
        ceiling = min(4.0, 0.5 * 2**retry)
        assert all(0.0 <= v <= ceiling for v in values)
        assert max(values) > 0.8 * ceiling  # full jitter spans the whole range, not just its top
        assert min(values) < 0.2 * ceiling
    again = random.Random(1)
    assert [policy.backoff_s(0, again) for _ in range(200)] == draws[0]
    assert RetryPolicy().backoff_s(10_000, random.Random(0)) <= 30.0  # no overflow, capped


def test_retry_after_reads_milliseconds_fractional_seconds_and_http_dates() -> None:
    now = time.time()
    in_ten = format_datetime(datetime.fromtimestamp(now, timezone.utc) + timedelta(seconds=10), usegmt=True)
    past = format_datetime(datetime.fromtimestamp(now, timezone.utc) - timedelta(seconds=10), usegmt=True)
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "1.5"}) == 1.5
    assert retry_after_s({"retry-after-ms": "100", "retry-after": "9"}) == 0.1  # the finer one wins
    assert 9.0 <= (retry_after_s({"retry-after": in_ten}, now=now) or 0) <= 10.0
    assert retry_after_s({"retry-after": past}, now=now) == 0.0
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None and retry_after_s(None) is None


def test_a_policy_with_negative_values_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="max_retries"):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ConfigError, match="base_delay_s"):
        RetryPolicy(base_delay_s=-0.5)


def test_redact_url_drops_userinfo_query_values_and_fragment() -> None:
    assert redact_url("https://bob:hunter22@gw.example.com:8443/v1?api-key=abc123&v=2#x") == (
        "https://gw.example.com:8443/v1?api-key=***&v=***"
    )
    assert redact_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"
    assert redact_url("https://TOKEN0123@host/v1") == "https://host/v1"
    assert redact_url("not a url") == "not a url"


def test_the_scrubber_removes_the_key_url_credentials_and_anything_shaped_like_a_token() -> None:
    scrub = Scrubber.for_endpoint("https://bob:hunter22@gw.example.com/v1?api-key=qs-secret-9", KEY)
    text = (f"key {KEY} at https://bob:hunter22@gw.example.com/v1?api-key=qs-secret-9, password hunter22, "
            "query qs-secret-9, header Authorization: Bearer other-token-123, and sk-proj-abcdefghijklmnop")
    cleaned = scrub(text)
    secrets = (KEY, "hunter22", "qs-secret-9", "other-token-123", "sk-proj-abcdefghijklmnop")
    assert sum(secret in cleaned for secret in secrets) == 0  # a count: a failure must not print them
    assert "gw.example.com/v1" in cleaned  # where it went is still said
    assert KEY not in repr(scrub) and "hunter22" not in repr(scrub)


# -- each fault through the real client and server ----------------------------------------------


@pytest.mark.parametrize(
    ("marker", "attempts", "server_waits"),
    [
        ("[fault:429:2:0.3]", 3, [0.3, 0.3]),  # Retry-After in (fractional) seconds
        ("[fault:429ms:1:250]", 2, [0.25]),  # retry-after-ms
        ("[fault:503:2:0.2]", 3, [0.2, 0.2]),  # a 5xx's Retry-After is honoured too
        ("[fault:500:1]", 2, None),  # no Retry-After: backoff
        ("[fault:502:1]", 2, None),
        ("[fault:408:1]", 2, None),
        ("[fault:409:1]", 2, None),
        ("[fault:badjson:1]", 2, None),  # 200 with a truncated JSON body
        ("[fault:html:1]", 2, None),  # 200 with a proxy's HTML page
    ],
)
def test_a_transient_fault_is_retried_until_the_right_scores_arrive(
    marker: str, attempts: int, server_waits: list[float] | None
) -> None:
    with JudgeServer() as server:
        outcome, sleeps = run(server, marker)
        assert outcome.ok and outcome.value == EXPECTED
        assert outcome.attempts == attempts == server.calls
    if server_waits is not None:
        assert sleeps.waits == server_waits
    else:
        rng = random.Random(7)
        assert sleeps.waits == [FAST.backoff_s(retry, rng) for retry in range(attempts - 1)]
    assert outcome.waited_s == pytest.approx(sum(sleeps.waits))


def test_a_request_past_the_timeout_is_cut_and_sent_again() -> None:
    with JudgeServer() as server:
        started = time.monotonic()
        outcome, sleeps = run(server, "[fault:hang:1:1.5]", timeout_s=0.5)
        elapsed = time.monotonic() - started
        assert outcome.ok and outcome.value == EXPECTED
        assert outcome.attempts == 2 == server.calls
    assert 0.5 <= elapsed < 1.4  # cut at the timeout, not after the 1.5 s hang
    assert len(sleeps.waits) == 1


def test_retry_after_is_honoured_in_real_time_once() -> None:
    with JudgeServer(retry_after="1") as server:
        started = time.monotonic()
        outcome = call_with_retry(chat_call(server, "[fault:429:1]"), FAST, target(server))
        elapsed = time.monotonic() - started
        assert outcome.ok and outcome.attempts == 2 == server.calls
    assert 1.0 <= elapsed < 1.9


def test_a_bad_request_fails_that_request_only_without_a_retry() -> None:
    with JudgeServer() as server:
        outcome, sleeps = run(server, "[fault:400]")
        assert server.calls == 1
    assert not outcome.ok and outcome.attempts == 1 and sleeps.waits == []
    assert outcome.error is not None and outcome.error.startswith("HTTP 400")


def test_a_fault_that_persists_becomes_a_request_error_after_the_last_retry() -> None:
    with JudgeServer() as server:
        outcome, sleeps = run(server, "[fault:503]", RetryPolicy(max_retries=2, base_delay_s=0.01))
        assert server.calls == 3
    assert not outcome.ok and outcome.attempts == 3 and len(sleeps.waits) == 2
    assert outcome.error is not None and outcome.error.startswith("gave up after 3 attempts: HTTP 503")


@pytest.mark.parametrize(
    ("marker", "key", "words"),
    [
        ("", "sk-wrong-key-0000000000", ["rejected the API key", "HTTP 401"]),  # the server checks the key
        ("[fault:401]", KEY, ["rejected the API key", "HTTP 401"]),
        ("[fault:403]", KEY, ["refused access", "HTTP 403"]),
        ("[fault:404]", KEY, ["404", "model name", "base_url"]),
        ("[fault:quota]", KEY, ["no quota left", "insufficient_quota"]),
    ],
    ids=["wrong-key", "401", "403", "404", "quota"],
)
def test_a_fault_no_retry_can_fix_ends_the_run_after_one_call(marker: str, key: str, words: list[str]) -> None:
    with JudgeServer(api_key=KEY) as server:
        sleeps = Sleeps()
        scrub = Scrubber.for_endpoint(server.url, key)
        with pytest.raises(JudgeError) as raised:
            call_with_retry(chat_call(server, marker, key=key), FAST, target(server), scrub=scrub, sleep=sleeps)
        assert server.calls == 1
    message = str(raised.value)
    assert sleeps.waits == []
    for word in [*words, server.url, KEY_ENV, "Fix:"]:
        assert word in message
    leaked = key in message  # asserted as a bool, so a failure does not print the key either
    assert not leaked and "\n" not in message  # one paragraph, and the server's echo of the key is gone
    assert raised.value.__cause__ is None and raised.value.__context__ is None  # the echoing openai error is not chained


def test_a_retry_after_beyond_the_limit_stops_instead_of_hanging() -> None:
    with JudgeServer() as server:
        sleeps = Sleeps()
        started = time.monotonic()
        with pytest.raises(JudgeError, match=r"wait 600 s .* max_retry_after_s = 120") as raised:
            call_with_retry(chat_call(server, "[fault:longwait]"), RetryPolicy(), target(server), sleep=sleeps)
        assert server.calls == 1
    assert time.monotonic() - started < 1.0 and sleeps.waits == []
    assert "rerun later" in str(raised.value)


def test_an_unreachable_server_ends_the_run_after_its_retries() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    client = openai.OpenAI(api_key=KEY, base_url=url, timeout=1.0, max_retries=0)
    attempts = []

    def call() -> object:
        attempts.append(1)
        return client.chat.completions.create(model="judge-test", messages=[{"role": "user", "content": "hi"}])

    sleeps = Sleeps()
    with pytest.raises(JudgeError, match="could not be reached after 3 attempts") as raised:
        call_with_retry(call, RetryPolicy(max_retries=2), target(url=url), sleep=sleeps)
    assert len(attempts) == 3 and len(sleeps.waits) == 2
    assert url in str(raised.value)


def test_an_exception_that_is_not_a_server_fault_propagates_unretried() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise KeyError("a bug in the caller")

    with pytest.raises(KeyError):
        call_with_retry(broken, FAST, target(url="http://127.0.0.1:1/v1"), sleep=Sleeps())
    assert calls == [1]


def test_the_server_script_scores_the_answer_inside_its_block() -> None:
    user = json_messages(request("", answer="Line one.\nLine two."))[1]["content"]
    assert block_text(user, "ANSWER") == "Line one.\nLine two."
