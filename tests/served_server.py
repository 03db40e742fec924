"""A real OpenAI-compatible generation server on 127.0.0.1 for tests/test_served.py.

It extends the scripted judge server (tests/judge_server.py) with what a vLLM server started with
`--served-model-name <base> --enable-lora --lora-modules <adapter>=<dir>` does: it serves a fixed set
of model names (any other gets vLLM's 404) and answers as a model would, deterministically, from the
model name and the conversation (`expected_text`), with `usage` counted in words (`expected_usage`).
Every request body is kept (`bodies`), so tests assert on what the server received.

The judge server's fault markers work unchanged, read from the prompt (the last user message):
`[fault:429:1:0.05]`, `[fault:400:1]`, `[fault:hang:1:1.0]`, `[fault:echo]`, ... One marker is added:
`[finish:REASON]` answers with that finish_reason; for "length" the answer is cut at the request's
max_tokens words.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from tests.judge_server import Call, JudgeServer, content_hash

_FINISH = re.compile(r"\[finish:([a-z_]+)\]")


def expected_text(model: str, messages: list[dict[str, Any]], max_tokens: int | None = None) -> str:
    """The answer the server gives: names the model, the system prompt and the user's words (cut at max_tokens)."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "-")
    user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
    words = f"{model} answers [{system}] to: {user}".split()
    return " ".join(words if max_tokens is None else (words * max_tokens)[:max_tokens])


def expected_usage(messages: list[dict[str, Any]], text: str) -> tuple[int, int]:
    """(prompt_tokens, completion_tokens): words in every message, words in the answer."""
    return sum(len(str(m["content"]).split()) for m in messages), len(text.split())


class ServedModelServer(JudgeServer):
    """Context manager: `with ServedModelServer(models=("base-test", "lora-test")) as server: ... server.url ...`."""

    def __init__(self, *, models: tuple[str, ...] = ("base-test", "lora-test"), api_key: str | None = None,
                 delay_s: float = 0.0) -> None:
        super().__init__(api_key=api_key, delay_s=delay_s, model=models[0], formats=())
        self.models = models
        self.bodies: list[dict[str, Any]] = []

    def bodies_for(self, model: str) -> list[dict[str, Any]]:
        with self._lock:
            return [body for body in self.bodies if body.get("model") == model]

    def contents(self, start: int = 0) -> list[str]:
        """The user message of every request received since request number `start`."""
        with self._lock:
            return [next(m["content"] for m in reversed(b["messages"]) if m["role"] == "user") for b in self.bodies[start:]]

    def respond(self, body: dict[str, Any], authorization: str) -> tuple[int, dict[str, str], bytes, float]:
        with self._lock:
            self.bodies.append(body)
        key_ok = self.api_key is None or authorization.removeprefix("Bearer ").strip() == self.api_key
        if key_ok and body.get("model") not in self.models:
            user = next((m.get("content", "") for m in body.get("messages") or [] if m.get("role") == "user"), "")
            self._record(Call(content_hash(user), None, "model", 404))
            message = f"The model `{body.get('model')}` does not exist."
            error = {"error": {"message": message, "type": "NotFoundError", "param": None, "code": 404}}
            return 404, {}, json.dumps(error).encode("utf-8"), 0.0
        # The judge server reads markers from the first user message; a generation request's prompt is
        # the last one (after the history), so the script sees that one first.
        messages = body.get("messages") or []
        prompt = [m for m in messages if m.get("role") == "user"][-1:]
        return super().respond({**body, "messages": prompt + messages, "_messages": messages}, authorization)

    def _serve(self, fault: str | None, arg: str | None, user: str, system: str, authorization: str,
               presented: str, messages: list[dict[str, Any]], body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, float]:
        if fault not in (None, "hang"):
            return super()._serve(fault, arg, user, system, authorization, presented, messages, body)
        wait_s = float(arg or 1.5) if fault == "hang" else 0.0
        messages = body["_messages"]
        marker = _FINISH.search(user)
        finish = marker.group(1) if marker else "stop"
        text = expected_text(body["model"], messages, body.get("max_tokens") if finish == "length" else None)
        prompt_tokens, completion_tokens = expected_usage(messages, text)
        payload = {
            "id": "chatcmpl-served", "object": "chat.completion", "created": int(time.time()), "model": body["model"],
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }
        return 200, {}, json.dumps(payload).encode("utf-8"), wait_s
