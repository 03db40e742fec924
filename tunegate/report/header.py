"""The top of the summary: what was evaluated (provenance by group), then the verdict banner and gate table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tunegate.gates import GateResult
from tunegate.report.labels import esc

# Provenance keys (GateRun.provenance) grouped for the header; any other key lands in "other".
_HEADER_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("model", (("base_model", "base"), ("base_model_sha256", "sha256"), ("adapter", "adapter"),
               ("adapter_sha256", "adapter sha256"), ("device", "device"))),
    ("eval set", (("eval_set", "file"), ("eval_set_sha256", "sha256"), ("samples", "samples"), ("metrics", "metrics"))),
    ("judge", (("judge", "judge"),)),
    ("decoding", (("decoding", "decoding"), ("max_new_tokens", "max_new_tokens"), ("temperature", "temperature"))),
    ("statistics", (("seed", "seed"), ("bootstrap_iters", "bootstrap iters"), ("alpha", "alpha"))),
    ("training", (("training_state", "training state"), ("ablation", "ablation"))),
    ("versions", tuple((name, name.replace("_", "-")) for name in (
        "tunegate", "torch", "transformers", "peft", "python", "pytest", "pytest_html", "numpy", "pandas", "matplotlib",
        "rouge_score", "bert_score"))),
    ("when", (("started_at", "started"),)),
)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def header_html(provenance: Mapping[str, Any], *, run_time_s: float | None = None) -> str:
    """The top of the report: one headline (adapter, base, eval set, hashes), then every provenance key by group.

    Known `GateRun.provenance()` keys are grouped (model, eval set, judge, decoding, training,
    versions, when); unknown keys are shown under "other"; None values are left out, except a
    missing adapter, which is said. `run_time_s` (wall seconds of the session) joins "when".
    """
    if not any(v is not None for v in provenance.values()) and run_time_s is None:
        return "<h2>What was evaluated</h2><p>No provenance was recorded in this session.</p>"

    def value(key: str) -> str:
        return f"<code>{esc(provenance[key])}</code>"

    def with_hash(key: str) -> str:
        hashed = provenance.get(f"{key}_sha256")
        return value(key) + (f" (sha256 <code>{esc(hashed)}</code>)" if hashed is not None else "")

    base = f"base model {with_hash('base_model')}" if provenance.get("base_model") is not None else ""
    if provenance.get("adapter") is not None:
        headline = f"adapter {with_hash('adapter')}" + (f" on {base}" if base else "")
    else:
        headline = base + ("; no adapter (finetuned mode not evaluated)" if "adapter" in provenance else "")
    if provenance.get("eval_set") is not None:
        count = f"{esc(provenance['samples'])} samples of " if provenance.get("samples") is not None else ""
        headline += f", evaluated on {count}{with_hash('eval_set')}"
    headline = headline.lstrip(";, ")
    rows = []
    known = {key for _, keys in _HEADER_GROUPS for key, _ in keys}
    groups = [(group, list(keys)) for group, keys in _HEADER_GROUPS]
    groups.append(("other", [(key, key) for key in provenance if key not in known]))
    for group, keys in groups:
        cells = [f"{esc(label)} {value(key)}" for key, label in keys if provenance.get(key) is not None]
        if group == "model" and "adapter" in provenance and provenance["adapter"] is None:
            cells.append("adapter <i>none</i>")
        if group == "when" and run_time_s is not None:
            cells.append(f"run time <code>{esc(_duration(run_time_s))}</code>")
        if cells:
            rows.append(f"<tr><th>{esc(group)}</th><td>{' · '.join(cells)}</td></tr>")
    table = f"<table>{''.join(rows)}</table>" if rows else ""
    return f'<h2>What was evaluated</h2><p class="tg-headline">{headline}</p>{table}'


def verdict_html(gates: Sequence[GateResult]) -> str:
    """The overall banner (PASS only when every gate passed: N of M) and the gate table, failures first."""
    if not gates:
        return '<h2>Release gate verdicts</h2><div class="tg-banner none">No gate ran in this session.</div>'
    failed = [g for g in gates if not g.passed]
    passed = len(gates) - len(failed)
    word = "FAIL" if failed else "PASS"
    banner = (f'<div class="tg-banner {word.lower()}" data-verdict="{word}">{word}: {passed} of {len(gates)} '
              f"release gates passed{f' ({len(failed)} failed)' if failed else ''}</div>")
    rows = "".join(
        f'<tr><td class="{"pass" if g.passed else "fail"}">{"PASS" if g.passed else "FAIL"}</td>'
        f'<td>{esc(g.name)}</td><td class="tg-evidence">{esc(g.message)}</td></tr>'
        for g in [*failed, *(g for g in gates if g.passed)]
    )
    return (f"<h2>Release gate verdicts</h2>{banner}"
            f"<table><tr><th>verdict</th><th>gate</th><th>evidence</th></tr>{rows}</table>")
