"""Load an eval set file into `Sample`s, with errors that point at the line to fix.

Accepted, detected per record, because these are the shapes people already fine-tune with:

- plain: ``{"id", "prompt", "reference", "system"?, "tags"?, "lang"?, "must_include"?,
  "must_not_include"?, "allow_truncation"?}`` -- tunegate's own format.
- alpaca: ``{"instruction", "input"?, "output", "system"?}`` (Stanford Alpaca and its many
  Chinese derivatives); prompt = instruction, plus "\\n\\n" + input when input is non-empty.
- chat: ``{"messages": [{"role", "content"}, ...]}`` (OpenAI / TRL SFT format); the last
  assistant message is the reference, the user message right before it is the prompt.

Files are ``.jsonl`` (one object per line) or ``.json`` (one array of objects, as alpaca data
is usually shipped). ``field_map`` renames the file's keys onto the names above first, so a set
with ``Question``/``Response`` columns loads without rewriting it. The optional fields above
(tags, lang, ...) are read in every format.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from tunegate.errors import ConfigError, EvalSetError

__all__ = ["Sample", "detect_lang", "eval_set_sha256", "load_eval_set", "pytest_id"]

# Every name field_map may map onto: the plain fields plus the alpaca and chat source keys.
CANONICAL_FIELDS = (
    "id", "prompt", "reference", "system", "tags", "lang", "must_include", "must_not_include",
    "allow_truncation", "instruction", "input", "output", "messages",
)
_EXAMPLE_SOURCE = {"reference": "answer", "prompt": "question", "output": "response"}
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number",
               bool: "boolean", type(None): "null"}
_CJK = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_UNSAFE_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True, slots=True)
class Sample:
    """One eval item; `id` is stable across runs because baselines are keyed on it."""

    id: str
    prompt: str
    reference: str
    system: str | None = None
    history: tuple[tuple[str, str], ...] = ()
    tags: tuple[str, ...] = ()
    lang: str = "en"
    must_include: tuple[str, ...] = ()
    must_not_include: tuple[str, ...] = ()
    allow_truncation: bool = False


def load_eval_set(
    path: str | Path, *, field_map: Mapping[str, str] | None = None, limit: int | None = None
) -> list[Sample]:
    """Read every record of a .jsonl or .json eval set, validated, in file order.

    Args:
        path: The eval set file; shown as given in error messages.
        field_map: Tunegate field name -> the file's key, e.g. ``{"reference": "answer"}``.
        limit: Keep only the first `limit` samples; later records are not read or checked.

    Returns:
        The samples; ids are unique, also after `pytest_id` sanitization.

    Raises:
        ConfigError: `field_map` or `limit` is not valid.
        EvalSetError: The file cannot be read as samples; the message names line and field.
    """
    sources = _check_field_map(field_map)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a whole number >= 1, got {limit!r}. "
                          "Leave it unset to load the whole eval set.")
    file = str(path)
    suffix = Path(path).suffix.lower()
    data = _read_bytes(path)
    if suffix not in (".jsonl", ".json"):
        raise EvalSetError(f"{file}: unsupported eval set file type {suffix or '(none)'!r}. Use "
                           ".jsonl (one JSON object per line) or .json (a JSON array of objects).")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):  # what PowerShell's `>` writes
        raise EvalSetError(f"{file}: the file is UTF-16 (it starts with a UTF-16 byte-order "
                           "mark), not UTF-8. Re-encode it: "
                           f"iconv -f UTF-16 -t UTF-8 {file} > fixed{suffix}")
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # UTF-8 BOM, as Windows editors write
    records = (_jsonl_records if suffix == ".jsonl" else _json_records)(data, file, start)
    samples: list[Sample] = []
    first_seen: dict[str, tuple[int, str]] = {}  # pytest id -> (line or item, original id)
    for place, raw in records:
        sample = _to_sample(raw, place, sources)
        clash = first_seen.get(pytest_id(sample.id))
        if clash is not None and clash[1] == sample.id:
            raise place.fail(
                f'id "{sample.id}" is already used on {place.unit} {clash[0]}',
                "Ids must be unique because baselines are keyed on them; rename one, or drop "
                '"id" from both records to derive ids from their position.')
        if clash is not None:
            raise place.fail(
                f'id "{sample.id}" and id "{clash[1]}" on {place.unit} {clash[0]} both become the '
                f'test id "{pytest_id(sample.id)}"',
                'Rename one so the ids differ in letters, digits, "_", "." or "-".')
        first_seen[pytest_id(sample.id)] = (place.number, sample.id)
        samples.append(sample)
        if len(samples) == limit:
            break  # before the generator parses the next line
    if not samples:
        raise EvalSetError(f"{file}: the eval set has no records (the file is empty or blank). "
                           'Add one JSON object per record, e.g. {"id": "q1", "prompt": "...", '
                           '"reference": "..."}.')
    return samples


def pytest_id(sample_id: str) -> str:
    """Make `sample_id` safe for a pytest node id: [A-Za-z0-9_.-] only, never empty.

    Ids with no ASCII letters or digits at all (e.g. Chinese-only) get a short content hash, so
    distinct ids stay distinct and stable.
    """
    safe = re.sub("_{2,}", "_", _UNSAFE_ID_CHARS.sub("_", sample_id)).strip("_")
    return safe or "id-" + hashlib.sha256(sample_id.encode("utf-8")).hexdigest()[:8]


def eval_set_sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file's bytes, recorded with each run for provenance."""
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def detect_lang(text: str) -> str:
    """Return "zh" when CJK ideographs are at least a quarter of the letters, else "en".

    A quarter, not a half: Chinese text mixes in English terms ("解释 Python 的 GIL"), and one
    ideograph carries about a word where a Latin word takes ~5 letters. Japanese kanji count too.
    """
    letters = [ch for ch in text if ch.isalpha()]
    cjk = sum(1 for ch in letters if _CJK.match(ch))
    return "zh" if letters and cjk / len(letters) >= 0.25 else "en"


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a record sits ("line 7" or "item 7"), to build errors that point there."""

    file: str
    unit: str
    number: int

    def fail(self, problem: str, fix: str) -> EvalSetError:
        return EvalSetError(f"{self.file} {self.unit} {self.number}: {problem}. {fix}")


def _got(value: object, *, typed: bool = True) -> str:
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
    kind = f" ({_JSON_TYPES.get(type(value), type(value).__name__)})" if typed else ""
    return f"got {shown}{kind}"


def _check_field_map(field_map: Mapping[str, str] | None) -> dict[str, str]:
    allowed = ", ".join(sorted(CANONICAL_FIELDS))
    for key, source in (field_map or {}).items():
        if key not in CANONICAL_FIELDS:
            reversed_hint = (f' It looks reversed: try {{ {source} = "{key}" }}; keys are '
                             "tunegate's names, values are your file's."
                             if source in CANONICAL_FIELDS else "")
            raise ConfigError(f'[tool.tunegate] field_map key "{key}" is not a tunegate field '
                              f"(allowed: {allowed}).{reversed_hint}")
        if not isinstance(source, str) or not source.strip():
            raise ConfigError(f'[tool.tunegate] field_map "{key}" must name a field of the eval '
                              f"set file, got {source!r}. "
                              'Example: field_map = { reference = "answer" }.')
    return dict(field_map or {})


def _read_bytes(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise EvalSetError(f"{path}: eval set file not found (resolved to "
                           f"{Path(path).resolve()}). Check the path, or set eval_set in "
                           "[tool.tunegate] / pass --eval-set PATH.") from None
    except IsADirectoryError:
        raise EvalSetError(f"{path}: is a directory, not an eval set file. Point eval_set / "
                           "--eval-set at a .jsonl or .json file.") from None
    except OSError as err:
        raise EvalSetError(f"{path}: cannot read the eval set ({err.strerror}). "
                           "Check that the file is readable.") from err


def _decode(chunk: bytes, file: str, first_line: int, offset: int) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + chunk.count(b"\n", 0, err.start)
        suffix = Path(file).suffix
        raise EvalSetError(
            f"{file} line {line}: bytes {chunk[err.start:err.end]!r} at byte offset "
            f"{offset + err.start} are not valid UTF-8. Save the file as UTF-8; for GBK-encoded "
            f"Chinese data run: iconv -f GBK -t UTF-8 {file} > fixed{suffix}") from None


def _jsonl_records(data: bytes, file: str, start: int) -> Iterator[tuple[_Place, object]]:
    offset = start
    for number, chunk in enumerate(data[start:].split(b"\n"), start=1):
        text = _decode(chunk, file, number, offset)
        offset += len(chunk) + 1
        if not text.strip():
            continue
        place = _Place(file, "line", number)
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            found = _got(text, typed=False)
            raise place.fail(f"invalid JSON at column {err.colno}: {err.msg} ({found})",
                             "Each line must be one complete JSON object; check for a missing "
                             "quote, comma or brace, or a record split across lines.") from None
        yield place, record


def _json_records(data: bytes, file: str, start: int) -> Iterator[tuple[_Place, object]]:
    text = _decode(data[start:], file, 1, start)
    if not text.strip():
        return
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise EvalSetError(f"{file} line {err.lineno}: invalid JSON at column {err.colno}: "
                           f"{err.msg}. A .json eval set must be one JSON array of objects; if it "
                           "holds one object per line, rename it to .jsonl.") from None
    if not isinstance(items, list):
        raise EvalSetError(f"{file}: the top level must be a JSON array of records, "
                           f"{_got(items)}. Wrap the records in [ ... ], or use .jsonl with one "
                           "object per line.")
    for number, item in enumerate(items, start=1):
        yield _Place(file, "item", number), item


@dataclass(frozen=True, slots=True)
class _Record:
    """One record after field_map, with checks whose errors name the user's own field names."""

    values: dict[str, object]
    found: tuple[str, ...]
    place: _Place
    sources: Mapping[str, str]

    def label(self, key: str) -> str:
        if key in self.sources:
            return f'field "{self.sources[key]}" (mapped to "{key}" by field_map)'
        return f'field "{key}"'

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.values.get(key)
        if value is None and not required:
            return None
        if key not in self.values:
            fix = (f'Check [tool.tunegate.field_map] {key} = "{self.sources[key]}": it must match '
                   "the file's key exactly." if key in self.sources else
                   "Add it, or map another field with [tool.tunegate.field_map], e.g. "
                   f'field_map = {{ {key} = "{_EXAMPLE_SOURCE.get(key, "your_field")}" }}.')
            found = ", ".join(self.found) or "none"
            raise self.place.fail(f"{self.label(key)} is missing (found keys: {found})", fix)
        if not isinstance(value, str):
            raise self.place.fail(f"{self.label(key)} must be a string, {_got(value)}",
                                  "Store it as one JSON string.")
        if required and not value.strip():
            raise self.place.fail(f"{self.label(key)} is empty ({_got(value)})",
                                  "Give it a non-blank value, or remove the record.")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.values.get(key)
        items = [] if value is None else [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() for v in items):
            raise self.place.fail(f"{self.label(key)} must be a string or a list of non-blank "
                                  f"strings, {_got(value)}", 'Write it as ["a", "b"] or "a".')
        return tuple(items)


def _to_sample(raw: object, place: _Place, sources: Mapping[str, str]) -> Sample:
    if not isinstance(raw, dict):
        raise place.fail(f"the record is not a JSON object, {_got(raw)}",
                         'Each record must be an object like {"prompt": "...", "reference": "..."}'
                         "; if the file is one JSON array, name it .json.")
    mapped = set(sources.values())
    values = {k: v for k, v in raw.items() if k not in mapped}
    values.update({key: raw[src] for key, src in sources.items() if src in raw})
    record = _Record(values, tuple(raw), place, sources)
    system = record.text("system", required=False)
    history: tuple[tuple[str, str], ...] = ()
    if "messages" in values:
        system, history, prompt, reference = _from_chat(record, system)
    elif "prompt" not in values and "instruction" in values:  # alpaca
        prompt = str(record.text("instruction"))
        extra = record.text("input", required=False)
        prompt = prompt + "\n\n" + extra if extra and extra.strip() else prompt
        reference = str(record.text("reference" if "output" not in values and
                                    "reference" in values else "output"))
    else:
        prompt, reference = str(record.text("prompt")), str(record.text("reference"))
    return Sample(
        id=_sample_id(record),
        prompt=prompt,
        reference=reference,
        system=system if system and system.strip() else None,
        history=history,
        tags=record.strings("tags"),
        lang=_lang(record, prompt, reference),
        must_include=record.strings("must_include"),
        must_not_include=record.strings("must_not_include"),
        allow_truncation=_flag(record, "allow_truncation"),
    )


def _from_chat(
    record: _Record, system: str | None
) -> tuple[str | None, tuple[tuple[str, str], ...], str, str]:
    """Split chat messages into (system, history, prompt, reference); see the module docstring."""
    messages, fail = record.values["messages"], record.place.fail
    name = record.sources.get("messages", "messages")  # the file's own key, for messages below
    if not isinstance(messages, list) or not messages:
        raise fail(f"{record.label('messages')} must be a non-empty list of "
                   f'{{"role", "content"}} objects, {_got(messages)}', "Fix the messages list.")
    turns = []
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str)):
            raise fail(f"{name}[{i}] must be an object with string \"role\" and \"content\", "
                       f"{_got(m)}", 'Write it as {"role": "user", "content": "..."}.')
        turns.append((m["role"], m["content"]))
    if turns[0][0] == "system":
        system, turns, first = turns[0][1], turns[1:], 1
    else:
        first = 0
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    roles = ", ".join(role for role, _ in turns)
    if last is None:
        raise fail(f'{name} has no "assistant" turn (roles: {roles})',
                   "The last assistant message is the reference answer; add one.")
    if last == 0 or turns[last - 1][0] != "user":
        raise fail(f'{name}[{first + last}] is the last assistant turn but no "user" turn comes '
                   f"right before it (roles: {roles})",
                   "Put the user message to evaluate directly before the reference answer.")
    for i, role in ((last - 1, "user"), (last, "assistant")):
        if not turns[i][1].strip():
            raise fail(f"{name}[{first + i}].content ({role}) is empty ({_got(turns[i][1])})",
                       "Give it a non-blank value, or remove the record.")
    return system, tuple(turns[: last - 1]), turns[last - 1][1], turns[last][1]


def _sample_id(record: _Record) -> str:
    value, place = record.values.get("id"), record.place
    if value is None:
        return f"{place.unit}-{place.number:04d}"
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not str(value).strip():
        raise place.fail(f"{record.label('id')} must be a non-blank string or an integer, "
                         f"{_got(value)}", 'Use an id like "q17", or remove it to derive one.')
    return str(value)


def _lang(record: _Record, prompt: str, reference: str) -> str:
    value = record.values.get("lang")
    if value is None:
        # The reference decides how answers are scored; fall back to the prompt for "42".
        return detect_lang(reference if any(ch.isalpha() for ch in reference) else prompt)
    if not isinstance(value, str) or not value.strip():
        raise record.place.fail(f"{record.label('lang')} must be a language code, {_got(value)}",
                                'Use e.g. "en" or "zh", or remove it to detect the language.')
    return value.strip().lower()


def _flag(record: _Record, key: str) -> bool:
    value = record.values.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise record.place.fail(f"{record.label(key)} must be true or false, {_got(value)}",
                                "Use JSON true or false (no quotes).")
    return value
