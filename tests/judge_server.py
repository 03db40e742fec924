"""A real OpenAI-compatible judge server on 127.0.0.1 for the remote-judge tests, scripted by markers.

`POST /v1/chat/completions` answers as a judge would: scores computed from the graded answer's text
(`expected_scores`), a pairwise winner from the two answers (`expected_winner`), realistic `usage`.
A fault is chosen by a marker anywhere in the user message, `[fault:NAME]`, `[fault:NAME:TIMES]` or
`[fault:NAME:TIMES:ARG]`: the first TIMES requests with that content get the fault (all of them when
TIMES is left out), later ones a good answer. Keying faults by content, not by arrival order, keeps
scripts exact under concurrency.

    429        429 with `Retry-After: ARG` (default the server's `retry_after`, "1")
    429ms      429 with `retry-after-ms: ARG` (default 200)
    longwait   429 with `Retry-After: ARG` (default 600)
    quota      429 whose error code is insufficient_quota
    500 502 503 408 409 400 403 404
               that status with an OpenAI-style error body (`Retry-After: ARG` when ARG is given)
    401        401 whose message echoes the presented key (as some proxies do)
    echo       400 whose message echoes the whole Authorization header
    hang       sleeps ARG seconds (default 1.5) before a good answer: past a short client timeout
    badjson    200, application/json, a truncated body
    html       200, text/html, a proxy's error page
    notjson    200 with content that is prose, not JSON
    range      200 with accuracy 7
    refusal    200 with `message.refusal` set and no content
    refusaltext 200 with "I'm sorry, ..." as the content

Server-wide behaviour: `api_key` (a request with another bearer token gets the 401 above),
`formats` (the response_format types accepted; others get the 400 real servers send), `delay_s`
(every request is this slow), `faults_by_question` (for prompts tunegate builds itself, which hold
no marker: `{"Order NW-19787": "429:1:0.2"}` serves a request whose QUESTION block contains the key
as if `[fault:429:1:0.2]` were in its message; a marker in the message wins, then the first key
that matches, in the mapping's order). Everything is counted: `calls`, `calls_for(request)`, `log` (one
`Call` per request: content hash, response_format, fault), `max_in_flight`.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tunegate.judge import DIMENSIONS, JudgeRequest, json_messages

_SPEC = r"([a-z0-9]+)(?::(\d+))?(?::([0-9.]+))?"  # NAME[:TIMES[:ARG]]
_MARKER = re.compile(rf"\[fault:{_SPEC}\]")
_FAULT_SPEC = re.compile(_SPEC)
_BLOCK = r"<<<{label} ([0-9a-f]{{10}})>>>\n(.*?)\n<<<END {label} \1>>>"
_STATUS_FAULTS = {"400", "403", "404", "408", "409", "500", "502", "503"}
_FAULTS = _STATUS_FAULTS | {"429", "429ms", "longwait", "quota", "401", "echo", "hang", "badjson", "html", "notjson",
                            "range", "refusal", "refusaltext"}


def content_hash(user_message: str) -> str:
    return hashlib.sha256(user_message.encode("utf-8")).hexdigest()[:16]


def request_hash(request: JudgeRequest) -> str:
    """The hash the server logs for a request's content (its user message)."""
    return content_hash(json_messages(request)[1]["content"])


def expected_scores(answer_text: str) -> dict[str, float]:
    """The scores the server gives an answer: 1-5 per dimension, from a hash of the text."""
    digest = hashlib.sha256(answer_text.encode("utf-8")).digest()
    return {dimension: float(1 + digest[i] % 5) for i, dimension in enumerate(DIMENSIONS)}


def expected_winner(answer_a: str, answer_b: str) -> str:
    """The longer answer wins ("A" or "B"); equal lengths tie. Independent of position, as a good judge is."""
    if len(answer_a) == len(answer_b):
        return "tie"
    return "A" if len(answer_a) > len(answer_b) else "B"


def numbered_requests(count: int, kind: str = "reference") -> list[JudgeRequest]:
    """`count` requests with distinct content (the SIGKILL test builds the same list in two processes)."""
    return [
        JudgeRequest(kind, f"s{i:03d}", "finetuned", f"Where is order NW-{10000 + i}?", "It ships Monday.",
                     f"Order NW-{10000 + i} ships {'Monday' if i % 2 else 'Tuesday'}{'!' * (i % 4)}")
        for i in range(count)
    ]


def block_text(user_message: str, label: str) -> str | None:
    found = re.search(_BLOCK.format(label=re.escape(label)), user_message, re.DOTALL)
    return found.group(2) if found else None


@dataclass(frozen=True)
class Call:
    """One request the server received."""

    content: str  # content_hash of the user message ("" when the body was unreadable)
    response_format: str | None  # the type asked for, None when absent
    fault: str | None  # the fault served, None for a good answer
    status: int


class JudgeServer:
    """Context manager: `with JudgeServer() as server: ... server.url ...` (http://127.0.0.1:<port>/v1)."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        formats: tuple[str, ...] = ("json_schema", "json_object"),
        delay_s: float = 0.0,
        retry_after: str = "1",
        model: str = "judge-test",
        faults_by_question: Mapping[str, str] | None = None,
    ) -> None:
        self.api_key = api_key
        self.faults_by_question: dict[str, re.Match[str]] = {}
        for key, spec in (faults_by_question or {}).items():
            parsed = _FAULT_SPEC.fullmatch(spec)
            if not key or parsed is None or parsed.group(1) not in _FAULTS:
                raise ValueError(f"faults_by_question: {key!r} -> {spec!r}: expected a non-empty substring -> "
                                 "'NAME[:TIMES[:ARG]]' with NAME one of the faults above")
            self.faults_by_question[key] = parsed
        self.formats = formats
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.model = model
        self.log: list[Call] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False
        self._httpd.handle_error = lambda request, address: None  # a client that timed out is not news
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def __enter__(self) -> JudgeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- counters -------------------------------------------------------------------------------

    @property
    def calls(self) -> int:
        with self._lock:
            return len(self.log)

    def calls_for(self, request: JudgeRequest) -> int:
        digest = request_hash(request)
        with self._lock:
            return sum(1 for call in self.log if call.content == digest)

    def response_formats(self) -> list[str | None]:
        with self._lock:
            return [call.response_format for call in self.log]

    # -- serving --------------------------------------------------------------------------------

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def _count(self, content: str) -> int:
        """How many times this content has reached the fault script, this time included."""
        with self._lock:
            self._seen[content] += 1
            return self._seen[content]

    def _record(self, call: Call) -> None:
        with self._lock:
            self.log.append(call)

    def _question_fault(self, user: str) -> re.Match[str] | None:
        """The fault `faults_by_question` assigns to this message's QUESTION block, if any."""
        question = block_text(user, "QUESTION") if self.faults_by_question else None
        if question is None:
            return None
        return next((spec for key, spec in self.faults_by_question.items() if key in question), None)

    def respond(self, body: dict[str, Any], authorization: str) -> tuple[int, dict[str, str], bytes, float]:
        """(status, headers, body, seconds to wait before sending) for one request.

        As a real server: the key is checked first, then the parameters, then the script runs; so a
        request refused for its key or its response_format does not use up a fault's TIMES.
        """
        messages = body.get("messages") or []
        user = next((m.get("content", "") for m in messages if m.get("role") == "user"), "")
        system = next((m.get("content", "") for m in messages if m.get("role") == "system"), "")
        digest = content_hash(user)
        fmt = (body.get("response_format") or {}).get("type")
        presented = authorization.removeprefix("Bearer ").strip()
        fault, arg = None, None
        if self.api_key is not None and presented != self.api_key:
            fault = "401"
        elif fmt is not None and fmt not in self.formats:
            self._record(Call(digest, fmt, "format", 400))
            message = f"Invalid parameter: response_format of type '{fmt}' is not supported with this model."
            return 400, {}, _error(message, "invalid_request_error", "response_format", None), self.delay_s
        else:
            seen = self._count(digest)
            marker = _MARKER.search(user) or self._question_fault(user)
            if marker and (marker.group(2) is None or seen <= int(marker.group(2))):
                fault, arg = marker.group(1), marker.group(3)
        status, headers, payload, wait_s = self._serve(fault, arg, user, system, authorization, presented, messages, body)
        self._record(Call(digest, fmt, fault, status))
        return status, headers, payload, wait_s + self.delay_s

    def _serve(self, fault: str | None, arg: str | None, user: str, system: str, authorization: str,
               presented: str, messages: list[dict[str, Any]], body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, float]:
        if fault == "429":
            return 429, {"Retry-After": arg or self.retry_after}, _error("Rate limit reached for requests.", "requests", None, "rate_limit_exceeded"), 0.0
        if fault == "429ms":
            return 429, {"retry-after-ms": arg or "200"}, _error("Rate limit reached for tokens.", "tokens", None, "rate_limit_exceeded"), 0.0
        if fault == "longwait":
            return 429, {"Retry-After": arg or "600"}, _error("Rate limit reached; try again later.", "requests", None, "rate_limit_exceeded"), 0.0
        if fault == "quota":
            return 429, {}, _error("You exceeded your current quota, please check your plan and billing details.",
                                   "insufficient_quota", None, "insufficient_quota"), 0.0
        if fault == "401":
            return 401, {}, _error(f"Incorrect API key provided: {presented}. You can find your API key in your account.",
                                   "invalid_request_error", None, "invalid_api_key"), 0.0
        if fault == "echo":
            return 400, {}, _error(f"Malformed request; received headers: Authorization: {authorization}",
                                   "invalid_request_error", None, None), 0.0
        if fault in _STATUS_FAULTS:
            headers = {"Retry-After": arg} if arg else {}
            messages_by_status = {"404": f"The model `{body.get('model')}` does not exist or you do not have access to it.",
                                  "403": "You are not allowed to sample from this model."}
            message = messages_by_status.get(fault, f"Simulated HTTP {fault}.")
            code = "model_not_found" if fault == "404" else None
            kind = "server_error" if int(fault) >= 500 else "invalid_request_error"
            return int(fault), headers, _error(message, kind, None, code), 0.0
        if fault == "badjson":
            return 200, {}, b'{"id": "chatcmpl-broken", "object": "chat.completion", "choices": [{"index": 0, "mess', 0.0
        if fault == "html":
            return 200, {"Content-Type": "text/html"}, b"<html><body><h1>502 Bad Gateway</h1></body></html>", 0.0
        wait_s = float(arg or 1.5) if fault == "hang" else 0.0
        content: str | None
        refusal = None
        if fault == "notjson":
            content = "The answer looks fine to me; I would give it a four overall."
        elif fault == "range":
            content = json.dumps({"accuracy": 7, "completeness": 3, "conciseness": 3, "reasoning": "very accurate"})
        elif fault == "refusal":
            content, refusal = None, "I can't help with grading this content."
        elif fault == "refusaltext":
            content = "I'm sorry, but I can't evaluate this answer."
        else:
            content = _good_content(user, system)
        return 200, {}, _completion(self.model, content, refusal, messages), wait_s


def _good_content(user: str, system: str) -> str:
    if block_text(user, "ANSWER A") is not None:
        winner = expected_winner(block_text(user, "ANSWER A") or "", block_text(user, "ANSWER B") or "")
        return json.dumps({"winner": winner, "reasoning": "The longer answer covers more."})
    answer = block_text(user, "ANSWER") or ""
    return json.dumps({**{d: int(s) for d, s in expected_scores(answer).items()}, "reasoning": "Deterministic test judge."})


def _completion(model: str, content: str | None, refusal: str | None, messages: list[dict[str, Any]]) -> bytes:
    prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
    prompt_tokens = max(1, prompt_chars // 4)
    completion_tokens = max(1, len(content or refusal or "") // 4)
    return json.dumps({
        "id": "chatcmpl-test", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }).encode("utf-8")


def _error(message: str, type_: str, param: str | None, code: str | None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode("utf-8")


def _handler_for(server: JudgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {}, _error(f"Unknown path {self.path}", "invalid_request_error", None, None))
                return
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(400, {}, _error("Body is not JSON.", "invalid_request_error", None, None))
                return
            server._enter()
            try:
                status, headers, payload, wait_s = server.respond(body, self.headers.get("Authorization", ""))
                if wait_s:
                    time.sleep(wait_s)
                self._send(status, headers, payload)
            finally:
                server._leave()

        def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (its timeout): nothing to answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            pass

    return Handler
