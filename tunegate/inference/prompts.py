"""The chat each mode sends: the mode's system prompt, the sample's own system text and history, the prompt."""

from __future__ import annotations

from collections.abc import Mapping

from tunegate.data import Sample


def system_prompt_for(system_prompts: Mapping[str, str | None], sample: Sample, mode: str) -> str | None:
    """The mode's system prompt, followed by the sample's own system text when it has one."""
    parts = [p for p in (system_prompts.get(mode), sample.system) if p]
    return "\n\n".join(parts) if parts else None


def chat_messages(sample: Sample, system: str | None) -> list[dict[str, str]]:
    """The conversation a mode answers: system (when any), the sample's history, then its prompt.

    Shared by the local session (which renders it through the chat template) and the served one
    (which sends it as is), so both ask the same question.
    """
    messages: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    messages.extend({"role": role, "content": content} for role, content in sample.history)
    messages.append({"role": "user", "content": sample.prompt})
    return messages
