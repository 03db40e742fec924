"""tunegate.judge_remote against a real OpenAI-compatible server on 127.0.0.1 (tests/judge_server.py); no mocks."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.judge_server import JudgeServer, expected_scores, expected_winner, numbered_requests, request_hash
from tunegate.cache import DiskCache
from tunegate.errors import ConfigError, JudgeError
from tunegate.judge import JudgeReply, JudgeRequest, request_key, run_judge
from tunegate.judge_remote import OpenAICompatibleJudge
from tunegate.retry import RetryPolicy

REPO = Path(__file__).resolve().parent.parent
KEY = "tg-judge-SECRET-8d2f61c4a9e0"  # not sk-shaped: only the exact-key layer of the scrubber can catch it
KEY_ENV = "TUNEGATE_TEST_JUDGE_KEY"
FAST = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)


@pytest.fixture(autouse=True)
def judge_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)


def make_judge(server: JudgeServer, **options: object) -> OpenAICompatibleJudge:
    settings: dict[str, object] = {"api_key_env": KEY_ENV, "timeout_s": 2.0, "retry": FAST, **options}
    return OpenAICompatibleJudge("judge-test", server.url, **settings)  # type: ignore[arg-type]


def parcel(marker: str = "", answer: str = "It ships Monday.", kind: str = "reference") -> JudgeRequest:
    return JudgeRequest(kind, "q1", "finetuned", f"Where is my parcel? {marker}".strip(), "Monday, by courier.", answer)


def judge_all(judge: OpenAICompatibleJudge, requests: list[JudgeRequest]) -> list[JudgeReply]:
    replies: list[JudgeReply | None] = [None] * len(requests)
    for index, reply in judge.judge(requests):
        assert replies[index] is None, f"index {index} yielded twice"
        replies[index] = reply
    assert all(reply is not None for reply in replies)
    return [reply for reply in replies if reply is not None]


# -- answers ------------------------------------------------------------------------------------


def test_good_answers_come_back_as_the_server_scored_them() -> None:
    short, long = "Monday.", "It ships Monday, by courier, with tracking."
    requests = [
        parcel(answer=short),
        JudgeRequest("blind", "q1", "finetuned", "Where is my parcel?", None, long),
        JudgeRequest("pairwise", "q1", "finetuned-vs-prompt_eng", "Where is my parcel?", "Monday.", short, long, "candidate_first"),
        JudgeRequest("pairwise", "q1", "finetuned-vs-prompt_eng", "Where is my parcel?", "Monday.", long, short, "candidate_second"),
    ]
    with JudgeServer() as server:
        judge = make_judge(server)
        replies = judge_all(judge, requests)
    assert judge.identity == f"openai-compatible:judge-test@{server.url}"
    assert replies[0].scores == expected_scores(short) and replies[1].scores == expected_scores(long)
    assert [r.winner for r in replies[2:]] == [expected_winner(short, long), expected_winner(long, short)] == ["B", "A"]
    for reply in replies:
        assert reply.ok and reply.calls == 1 and not reply.cached
        assert reply.input_tokens > 200 and reply.output_tokens > 0 and reply.latency_s > 0
        assert reply.reasoning


def test_transient_faults_end_in_the_right_scores_with_exact_calls_per_content() -> None:
    script = {  # marker -> requests the server must see for that content
        "": 1,
        "[fault:500:1]": 2,
        "[fault:503:2]": 3,
        "[fault:429:2:0.1]": 3,
        "[fault:429ms:1:100]": 2,
        "[fault:408:1]": 2,
        "[fault:409:1]": 2,
        "[fault:badjson:1]": 2,
        "[fault:html:1]": 2,
        "[fault:hang:1:1.5]": 2,
    }
    requests = [parcel(marker, answer=f"It ships Monday ({i}).") for i, marker in enumerate(script)]
    with JudgeServer() as server:
        replies = judge_all(make_judge(server, timeout_s=0.5, concurrency=4), requests)
        calls = [server.calls_for(r) for r in requests]
        assert server.calls == sum(script.values())
    assert calls == list(script.values())
    for request, reply, expected_calls in zip(requests, replies, script.values()):
        assert reply.ok, (request.question, reply.error)
        assert reply.scores == expected_scores(request.answer)
        assert reply.calls == expected_calls
    hang = replies[-1]
    assert 0.5 <= hang.latency_s < 1.4  # cut by the 0.5 s timeout, not served after the 1.5 s hang
    assert replies[3].latency_s >= 0.2  # two Retry-After waits of 0.1 s


def test_unusable_replies_are_judge_errors_sent_once_and_never_cached(tmp_path: Path) -> None:
    script = {
        "[fault:notjson]": "not a JSON object",
        "[fault:range]": "accuracy = 7 is out of range 1-5",
        "[fault:refusal]": "refusal: I can't help with grading this content.",
        "[fault:refusaltext]": "refusal: I'm sorry, but I can't evaluate this answer.",
        "[fault:400]": "HTTP 400",
    }
    requests = [parcel(marker) for marker in script] + [parcel("fine")]
    with JudgeServer() as server:
        judge = make_judge(server)
        replies = run_judge(judge, requests, tmp_path, progress=False)
        assert [server.calls_for(r) for r in requests] == [1] * len(requests)
        again = run_judge(judge, requests, tmp_path, progress=False)
        assert [server.calls_for(r) for r in requests] == [2] * len(script) + [1]  # errors asked again, the score not
    for reply, words in zip(replies, script.values()):
        assert not reply.ok and reply.error is not None and words in reply.error
        assert reply.calls == 1 and not reply.scores
    assert replies[-1].ok and again[-1].cached
    assert len(DiskCache(tmp_path, "judge")) == 1


def test_a_bad_key_stops_the_run_after_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "tg-wrong-key-0000000000000"
    monkeypatch.setenv(KEY_ENV, wrong)
    with JudgeServer(api_key=KEY) as server:
        with pytest.raises(JudgeError) as raised:
            judge_all(make_judge(server), [parcel()])
        assert server.calls == 1
    message = str(raised.value)
    assert "rejected the API key" in message and KEY_ENV in message and server.url in message
    leaked = wrong in message  # a bool, so a failing assert does not print the key either
    assert not leaked  # the server echoed it; tunegate did not pass it on


def test_exhausted_quota_stops_the_run_at_once_and_sends_nothing_more() -> None:
    requests = [parcel("[fault:quota]")] + numbered_requests(11)
    with JudgeServer(delay_s=0.3) as server:
        started = time.monotonic()
        with pytest.raises(JudgeError, match="no quota left"):
            judge_all(make_judge(server, concurrency=2), requests)
        elapsed = time.monotonic() - started
        time.sleep(0.4)  # anything still to arrive would have by now
        assert server.calls_for(requests[0]) == 1
        assert server.calls <= 3  # the quota call, the one in flight beside it, at most one more racing the stop
    assert elapsed < 0.9  # the whole batch would take 1.8 s


# -- concurrency and structured output ----------------------------------------------------------


def test_concurrency_never_exceeds_the_bound() -> None:
    with JudgeServer(delay_s=0.1) as server:
        replies = judge_all(make_judge(server, concurrency=3), numbered_requests(12))
        assert server.max_in_flight == 3
    assert all(reply.ok for reply in replies)


def test_structured_output_falls_back_step_by_step_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tunegate")
    requests = numbered_requests(3)
    with JudgeServer(formats=()) as server:  # a server with no structured output at all
        judge = make_judge(server, concurrency=1)
        replies = judge_all(judge, requests)
        later = judge_all(judge, numbered_requests(4)[3:])  # the same run, another batch
        formats = server.response_formats()
    assert formats == ["json_schema", "json_object", None, None, None, None]
    assert [r.calls for r in replies] == [3, 1, 1]  # the rejected formats are counted as calls, not as retries
    assert all(r.ok for r in replies + later)
    assert judge.structured_output_in_use == "none"
    assert len([r for r in caplog.records if "rejects response_format" in r.getMessage()]) == 2


def test_concurrent_rejections_of_json_schema_fall_back_to_json_object_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tunegate")
    with JudgeServer(formats=("json_object",), delay_s=0.05) as server:
        judge = make_judge(server, concurrency=4)
        replies = judge_all(judge, numbered_requests(12))
        formats = server.response_formats()
    first_object = formats.index("json_object")
    assert 1 <= formats.count("json_schema") <= 4  # only the requests already in flight when it was rejected
    assert set(formats[first_object:]) == {"json_object"} and formats.count("json_object") == 12
    assert all(r.ok for r in replies) and judge.structured_output_in_use == "json_object"
    assert len([r for r in caplog.records if "rejects response_format" in r.getMessage()]) == 1


@pytest.mark.parametrize(("mode", "sent"), [("json_schema", "json_schema"), ("json_object", "json_object"), ("none", None)])
def test_a_fixed_structured_output_mode_is_what_the_server_receives(mode: str, sent: str | None) -> None:
    with JudgeServer() as server:
        replies = judge_all(make_judge(server, structured_output=mode), numbered_requests(2))
        assert server.response_formats() == [sent, sent]
    assert all(r.ok for r in replies)


def test_a_fixed_mode_the_server_rejects_stops_the_run_with_the_fix() -> None:
    with JudgeServer(formats=("json_object",)) as server:
        with pytest.raises(JudgeError, match="structured_output to 'auto'"):
            judge_all(make_judge(server, structured_output="json_schema"), [parcel()])
        assert server.calls == 1


# -- secrets and keys ---------------------------------------------------------------------------


def test_the_key_never_reaches_replies_exceptions_logs_or_the_cache(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: tunegate's, openai's, httpx2's
    requests = [parcel("[fault:echo]"), parcel("[fault:500:1]"), parcel("[fault:429:1:0.05]"), parcel("[fault:refusal]"), parcel()]
    with JudgeServer(api_key=KEY) as server:
        judge = make_judge(server)
        replies = run_judge(judge, requests, tmp_path, progress=False)
        monkeypatch.setenv(KEY_ENV, KEY + "-revoked")  # a key the server rejects and echoes back
        with pytest.raises(JudgeError) as raised:
            run_judge(make_judge(server), [parcel("other")], tmp_path, progress=False)
    echoed = "Authorization: Bearer ***" in (replies[0].error or "")
    assert echoed  # the echo arrived, scrubbed (a bool: a failure must not print the error text)
    assert [r.ok for r in replies] == [False, True, True, False, True]
    assert any(r.name == "tunegate.retry" for r in caplog.records)  # the retries were logged
    emitted = [repr(replies), str(raised.value), repr(raised.value.args), judge.identity, repr(judge)]
    emitted += [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]
    emitted += [path.read_text(encoding="utf-8") for path in tmp_path.rglob("*") if path.is_file()]
    assert len(DiskCache(tmp_path, "judge")) == 3
    leaks = [text for text in emitted if KEY in text]
    assert not leaks, f"{len(leaks)} emitted strings hold the key"  # the message itself must not print it


@pytest.mark.parametrize(("value", "word"), [(None, "not set"), ("  ", "empty")])
def test_an_unset_or_empty_key_variable_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, value: str | None, word: str) -> None:
    if value is None:
        monkeypatch.delenv(KEY_ENV)
    else:
        monkeypatch.setenv(KEY_ENV, value)
    with pytest.raises(JudgeError) as raised:
        OpenAICompatibleJudge("gpt-4o-mini", "https://api.openai.com/v1", api_key_env=KEY_ENV)
    message = str(raised.value)
    assert f"environment variable {KEY_ENV}, which is {word}" in message
    assert f"export {KEY_ENV}=" in message and "api_key_env=None" in message


def test_a_local_server_without_a_key_takes_api_key_env_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with JudgeServer() as server:
        judge = OpenAICompatibleJudge("judge-test", server.url, api_key_env=None, retry=FAST)
        replies = judge_all(judge, [parcel()])
    assert replies[0].scores == expected_scores(parcel().answer)


def test_identity_names_model_and_endpoint_but_no_credentials() -> None:
    judge = OpenAICompatibleJudge("gpt-4o-mini", "https://bob:hunter22@gw.example.com/v1/?token=qs-secret-1",
                                  api_key_env=KEY_ENV)
    assert judge.identity == "openai-compatible:gpt-4o-mini@https://gw.example.com/v1?token=***"
    leaked = sum(s in judge.identity or s in repr(judge) for s in ("hunter22", "qs-secret-1", KEY))
    assert leaked == 0  # a count, so a failure does not print the secrets
    judge.close()


def test_no_base_url_means_the_openai_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    assert OpenAICompatibleJudge("gpt-4o-mini", None, api_key_env=KEY_ENV).identity == (
        "openai-compatible:gpt-4o-mini@https://api.openai.com/v1"
    )
    monkeypatch.setenv("OPENAI_BASE_URL", "http://localhost:8000/v1/")
    assert OpenAICompatibleJudge("m", None, api_key_env=KEY_ENV).identity == "openai-compatible:m@http://localhost:8000/v1"


@pytest.mark.parametrize(
    ("option", "value"),
    [("concurrency", 0), ("structured_output", "xml"), ("timeout_s", 0), ("max_output_tokens", 0)],
)
def test_arguments_out_of_range_are_config_errors(option: str, value: object) -> None:
    with pytest.raises(ConfigError, match=option):
        OpenAICompatibleJudge("gpt-4o-mini", "https://api.openai.com/v1", api_key_env=KEY_ENV, **{option: value})  # type: ignore[arg-type]


# -- the cache ----------------------------------------------------------------------------------


def test_run_judge_twice_makes_no_calls_the_second_time(tmp_path: Path) -> None:
    requests = numbered_requests(6) + numbered_requests(2, kind="blind")
    with JudgeServer() as server:
        first = run_judge(make_judge(server), requests, tmp_path, progress=False)
        assert server.calls == 8
        second = run_judge(make_judge(server), requests, tmp_path, progress=False)
        assert server.calls == 8
    assert all(r.ok and not r.cached for r in first) and all(r.cached and r.calls == 0 for r in second)
    assert [r.scores for r in second] == [r.scores for r in first] == [expected_scores(q.answer) for q in requests]


CHILD = """
import sys
from tests.judge_server import numbered_requests
from tunegate.judge import run_judge
from tunegate.judge_remote import OpenAICompatibleJudge
url, cache_dir, key_env = sys.argv[1:4]
run_judge(OpenAICompatibleJudge("judge-test", url, api_key_env=key_env, concurrency=2), numbered_requests(30), cache_dir, progress=False)
"""


def test_a_killed_run_resumes_with_exactly_the_judgements_it_lacks(tmp_path: Path) -> None:
    requests = numbered_requests(30)
    cache = DiskCache(tmp_path, "judge")
    with JudgeServer(api_key=KEY, delay_s=0.15) as server:
        child = subprocess.Popen([sys.executable, "-c", CHILD, server.url, str(tmp_path), KEY_ENV], cwd=REPO,
                                 env={**os.environ, KEY_ENV: KEY})
        try:
            deadline = time.monotonic() + 30
            while len(cache) < 5:
                assert child.poll() is None, "the child ended before it could be killed"
                assert time.monotonic() < deadline, "the child cached nothing in 30 s"
                time.sleep(0.01)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        settled = -1
        while settled != server.calls:  # let requests the child sent just before dying be logged first
            settled = server.calls
            time.sleep(0.3)
        judge = make_judge(server, concurrency=2)
        done = {request_hash(r) for r in requests if cache.get(request_key(judge.identity, r)) is not None}
        k = len(done)
        assert 5 <= k < 30 and k == len(cache)
        replies = run_judge(judge, requests, tmp_path, progress=False)
        new = [call.content for call in server.log[settled:]]
    assert len(new) == 30 - k
    assert not set(new) & done  # nothing judged before the kill was asked again
    assert sorted(new) == sorted({request_hash(r) for r in requests} - done)
    assert sum(r.cached for r in replies) == k
    assert [r.scores for r in replies] == [expected_scores(r.answer) for r in requests]
