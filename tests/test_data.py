"""Tests for tunegate.data: every accepted format, and every error a user can hit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tunegate.data import Sample, detect_lang, eval_set_sha256, load_eval_set, pytest_id
from tunegate.errors import ConfigError, EvalSetError


def write_jsonl(tmp_path: Path, records: list[object], name: str = "eval.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    return path


def load_error(path: Path, **kwargs: object) -> str:
    """Load `path` expecting an EvalSetError; return its message."""
    with pytest.raises(EvalSetError) as info:
        load_eval_set(path, **kwargs)
    return str(info.value)


# --- formats ---------------------------------------------------------------------------------


def test_plain_jsonl_with_all_optional_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [
        {"id": "q1", "prompt": "What is 2+2?", "reference": "4", "system": "Be terse.",
         "tags": ["math", "easy"], "lang": "en", "must_include": ["4"],
         "must_not_include": "five", "allow_truncation": True},
        {"id": "q2", "prompt": "Name a colour.", "reference": "Blue  is   one."},
    ])
    first, second = load_eval_set(path)
    assert first == Sample(id="q1", prompt="What is 2+2?", reference="4", system="Be terse.",
                           tags=("math", "easy"), lang="en", must_include=("4",),
                           must_not_include=("five",), allow_truncation=True)
    # Defaults, and text kept byte-for-byte (internal whitespace is not normalised).
    assert second == Sample(id="q2", prompt="Name a colour.", reference="Blue  is   one.")


def test_single_string_tags_and_null_optionals(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": "a", "prompt": "p", "reference": "r", "tags": "smoke",
                                   "system": None, "lang": None, "allow_truncation": None}])
    (sample,) = load_eval_set(path)
    assert sample.tags == ("smoke",)
    assert sample.system is None and sample.allow_truncation is False and sample.lang == "en"


def test_alpaca_joins_instruction_and_input(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [
        {"instruction": "Translate to French.", "input": "Good morning", "output": "Bonjour",
         "system": "You translate."},
        {"instruction": "Say hi.", "input": "", "output": "Hi"},
    ])
    first, second = load_eval_set(path)
    assert first.prompt == "Translate to French.\n\nGood morning"
    assert first.reference == "Bonjour" and first.system == "You translate."
    assert second.prompt == "Say hi." and second.reference == "Hi" and second.system is None


def test_alpaca_json_array_gets_item_ids(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": f"Q{i}", "output": f"A{i}"} for i in range(3)]),
                    encoding="utf-8")
    samples = load_eval_set(path)
    assert [s.id for s in samples] == ["item-0001", "item-0002", "item-0003"]
    assert [s.reference for s in samples] == ["A0", "A1", "A2"]


def test_chat_messages_split_into_system_history_prompt_reference(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": "c1", "messages": [
        {"role": "system", "content": "You are kind."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What's 3*3?"},
        {"role": "assistant", "content": "9"},
    ]}])
    (sample,) = load_eval_set(path)
    assert sample.system == "You are kind."
    assert sample.history == (("user", "Hi"), ("assistant", "Hello!"))
    assert sample.prompt == "What's 3*3?" and sample.reference == "9"


def test_chat_without_system_has_no_system(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"messages": [{"role": "user", "content": "Q"},
                                                {"role": "assistant", "content": "A"}]}])
    (sample,) = load_eval_set(path)
    assert sample.system is None and sample.history == () and sample.id == "line-0001"


def test_formats_can_mix_within_one_file(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [
        {"prompt": "p", "reference": "r"},
        {"instruction": "i", "output": "o"},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
    ])
    assert [(s.prompt, s.reference) for s in load_eval_set(path)] == [
        ("p", "r"), ("i", "o"), ("u", "a")]


def test_utf8_bom_and_blank_lines_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    body = '{"prompt": "p1", "reference": "r1"}\n\n   \n{"prompt": "p2", "reference": "r2"}\r\n'
    path.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    samples = load_eval_set(path)
    # Derived ids count physical lines, blank ones included, so they match an editor.
    assert [s.id for s in samples] == ["line-0001", "line-0004"]


def test_int_id_becomes_string(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": 7, "prompt": "p", "reference": "r"}])
    assert load_eval_set(path)[0].id == "7"


# --- field_map and limit ---------------------------------------------------------------------


def test_field_map_renames_source_keys(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"qid": 3, "Question": "Why?", "Response": "Because.",
                                   "prompt": "ignored: the mapped field wins"}])
    (sample,) = load_eval_set(
        path, field_map={"prompt": "Question", "reference": "Response", "id": "qid"})
    assert (sample.id, sample.prompt, sample.reference) == ("3", "Why?", "Because.")


def test_field_map_can_swap_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "the answer", "reference": "the question"}])
    (sample,) = load_eval_set(path, field_map={"prompt": "reference", "reference": "prompt"})
    assert (sample.prompt, sample.reference) == ("the question", "the answer")


def test_field_map_feeds_format_detection(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"conversation": [{"role": "user", "content": "u"},
                                                    {"role": "assistant", "content": "a"}]}])
    (sample,) = load_eval_set(path, field_map={"messages": "conversation"})
    assert (sample.prompt, sample.reference) == ("u", "a")


def test_field_map_unknown_key_is_config_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": "r"}])
    with pytest.raises(ConfigError) as info:
        load_eval_set(path, field_map={"answer": "reference"})
    message = str(info.value)
    assert '"answer"' in message and "allowed:" in message and "reference" in message
    assert 'reference = "answer"' in message  # spots the reversed mapping


def test_field_map_mapped_field_missing_names_both(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "answer": "r"}])
    message = load_error(path, field_map={"reference": "Response"})
    assert f"{path} line 1:" in message
    assert 'field "Response" (mapped to "reference" by field_map) is missing' in message
    assert "found keys: prompt, answer" in message


def test_limit_keeps_first_samples_and_skips_later_lines(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"prompt": "a", "reference": "1"}\n{"prompt": "b", "reference": "2"}\n'
                    "this line is broken\n", encoding="utf-8")
    assert [s.prompt for s in load_eval_set(path, limit=2)] == ["a", "b"]
    assert "line 3" in load_error(path)


@pytest.mark.parametrize("limit", [0, -1, 1.5, True])
def test_bad_limit_is_config_error(tmp_path: Path, limit: object) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": "r"}])
    with pytest.raises(ConfigError, match="limit must be a whole number"):
        load_eval_set(path, limit=limit)  # type: ignore[arg-type]


# --- language, ids, hash ---------------------------------------------------------------------


def test_lang_detected_per_sample_and_explicit_lang_wins(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [
        {"id": "zh", "prompt": "请解释 Python 中的 GIL 是什么？", "reference": "GIL 是全局解释器锁。"},
        {"id": "en", "prompt": "Explain the GIL.", "reference": "It is a global lock."},
        {"id": "forced", "prompt": "你好", "reference": "你好！", "lang": "EN"},
        {"id": "num", "prompt": "二加二等于几？", "reference": "4"},
    ])
    assert [s.lang for s in load_eval_set(path)] == ["zh", "en", "en", "zh"]


@pytest.mark.parametrize(("text", "lang"), [
    ("这是一个中文句子。", "zh"),
    ("This is an English sentence.", "en"),
    ("Translate 你好 into English, please.", "en"),
    ("用 pandas 读取 CSV 文件", "zh"),
    ("", "en"),
    ("12345 !?", "en"),
])
def test_detect_lang(text: str, lang: str) -> None:
    assert detect_lang(text) == lang


@pytest.mark.parametrize(("raw", "safe"), [
    ("q-1.a_b", "q-1.a_b"),
    ("a b/c", "a_b_c"),
    ("a   //  b", "a_b"),
    ("__x__", "x"),
    ("[x]", "x"),
    ("问题1", "1"),
])
def test_pytest_id_sanitizes(raw: str, safe: str) -> None:
    assert pytest_id(raw) == safe


def test_pytest_id_never_empty_and_stays_distinct() -> None:
    first, second = pytest_id("问题"), pytest_id("答案")
    assert first and second and first != second
    assert pytest_id("问题") == first  # stable across calls
    assert pytest_id("") != ""


def test_eval_set_sha256_hashes_file_bytes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": "r"}])
    assert eval_set_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    assert eval_set_sha256(str(path)) == eval_set_sha256(path)


# --- file-level errors -----------------------------------------------------------------------


def test_missing_file_names_resolved_path_and_config_key(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = load_error(Path("fixtures/nope.jsonl"))
    assert message.startswith("fixtures/nope.jsonl: eval set file not found")
    assert str(tmp_path / "fixtures" / "nope.jsonl") in message
    assert "eval_set" in message and "--eval-set" in message
    with pytest.raises(EvalSetError, match="not found"):
        eval_set_sha256("fixtures/nope.jsonl")


def test_directory_is_rejected(tmp_path: Path) -> None:
    message = load_error(tmp_path)
    assert str(tmp_path) in message and "is a directory" in message and "--eval-set" in message


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "eval.csv"
    path.write_text("prompt,reference\n", encoding="utf-8")
    message = load_error(path)
    assert str(path) in message and "'.csv'" in message and ".jsonl" in message


@pytest.mark.parametrize(("name", "body"), [
    ("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n"), ("empty.json", ""), ("array.json", "[]"),
])
def test_empty_file_has_no_records(tmp_path: Path, name: str, body: str) -> None:
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    message = load_error(path)
    assert str(path) in message and "no records" in message and '"reference"' in message


def test_non_utf8_names_line_offset_and_iconv(tmp_path: Path) -> None:
    path = tmp_path / "gbk.jsonl"
    first = '{"prompt": "p", "reference": "r"}\n'.encode()
    path.write_bytes(first + '{"prompt": "中文", "reference": "r"}\n'.encode("gbk"))
    message = load_error(path)
    assert f"{path} line 2:" in message
    assert f"byte offset {len(first) + 12}" in message  # the first GBK byte of "中"
    assert "not valid UTF-8" in message and "iconv -f GBK -t UTF-8" in message


def test_non_utf8_in_json_array_counts_lines(tmp_path: Path) -> None:
    path = tmp_path / "gbk.json"
    path.write_bytes(b'[\n{"instruction": "i", "output": "o"},\n{"instruction": "\xd6\xd0"}]')
    message = load_error(path)
    assert f"{path} line 3:" in message and "iconv -f GBK" in message


def test_utf16_file_gets_its_own_hint(tmp_path: Path) -> None:
    path = tmp_path / "win.jsonl"
    path.write_bytes('{"prompt": "p", "reference": "r"}\n'.encode("utf-16"))
    assert "iconv -f UTF-16 -t UTF-8" in load_error(path)


def test_invalid_json_line_names_line_column_and_message(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"prompt": "p", "reference": "r"}\n{"prompt": "p" "reference": "r"}\n',
                    encoding="utf-8")
    message = load_error(path)
    assert f"{path} line 2: invalid JSON at column 16: Expecting ',' delimiter" in message
    assert "got '{\"prompt\"" in message and "missing quote, comma or brace" in message


def test_invalid_json_array_suggests_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text('{"prompt": "p", "reference": "r"}\n{"prompt": "q", "reference": "s"}\n',
                    encoding="utf-8")
    message = load_error(path)
    assert f"{path} line 2: invalid JSON" in message and "Extra data" in message
    assert "rename it to .jsonl" in message


def test_json_top_level_must_be_list(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text('{"prompt": "p", "reference": "r"}', encoding="utf-8")
    message = load_error(path)
    assert str(path) in message and "top level must be a JSON array" in message
    assert "(object)" in message and "[ ... ]" in message


@pytest.mark.parametrize("line", ['["p", "r"]', '"just text"', "42"])
def test_line_that_is_not_an_object(tmp_path: Path, line: str) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"prompt": "p", "reference": "r"}\n' + line + "\n", encoding="utf-8")
    message = load_error(path)
    assert f"{path} line 2: the record is not a JSON object, got {json.loads(line)!r}" in message
    assert "name it .json" in message


def test_json_item_that_is_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text('[{"instruction": "i", "output": "o"}, "oops"]', encoding="utf-8")
    assert f"{path} item 2: the record is not a JSON object, got 'oops'" in load_error(path)


# --- record-level errors ---------------------------------------------------------------------


def test_missing_field_lists_found_keys_and_field_map_fix(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": "a", "prompt": "p", "reference": "r"},
                                  {"id": "b", "prompt": "p", "answer": "r"}])
    message = load_error(path)
    assert message.startswith(f'{path} line 2: field "reference" is missing '
                              "(found keys: id, prompt, answer).")
    assert "[tool.tunegate.field_map]" in message and 'field_map = { reference = "answer" }' in message


def test_missing_field_in_json_item(tmp_path: Path) -> None:
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps([{"instruction": "i", "output": "o"}, {"instruction": "i"}]),
                    encoding="utf-8")
    message = load_error(path)
    assert f'{path} item 2: field "output" is missing (found keys: instruction)' in message
    assert "field_map = { output =" in message


@pytest.mark.parametrize("field", ["prompt", "reference"])
@pytest.mark.parametrize("value", ["", "   \n\t"])
def test_blank_prompt_or_reference(tmp_path: Path, field: str, value: str) -> None:
    record = {"prompt": "p", "reference": "r", field: value}
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": "r"}, record])
    message = load_error(path)
    assert f'{path} line 2: field "{field}" is empty (got {value!r}' in message
    assert "non-blank value" in message


def test_reference_of_wrong_type(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": ["a", "b"]}])
    message = load_error(path)
    assert f"{path} line 1: field \"reference\" must be a string, got ['a', 'b'] (array)" in message
    assert "JSON string" in message


def test_long_values_are_truncated_in_messages(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": list(range(500))}])
    message = load_error(path)
    assert "..." in message and "499" not in message and len(message) < 300


@pytest.mark.parametrize(("record", "field", "found"), [
    ({"tags": 3}, "tags", "got 3"),
    ({"tags": ["ok", ""]}, "tags", "got ['ok', '']"),
    ({"must_include": [1]}, "must_include", "got [1]"),
    ({"must_not_include": {"a": 1}}, "must_not_include", "got {'a': 1}"),
    ({"allow_truncation": "true"}, "allow_truncation", "got 'true'"),
    ({"lang": 5}, "lang", "got 5"),
    ({"id": ["x"]}, "id", "got ['x']"),
    ({"id": True}, "id", "got True"),
    ({"id": "  "}, "id", "got '  '"),
    ({"system": 1}, "system", "got 1"),
])
def test_optional_field_of_wrong_type(tmp_path: Path, record: dict[str, object], field: str,
                                      found: str) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": "r", **record}])
    message = load_error(path)
    assert f'{path} line 1: field "{field}"' in message and found in message
    # Every message ends with a fix after the description.
    assert message.rstrip(".").count(". ") >= 1


def test_duplicate_id_names_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": "q1", "prompt": "p", "reference": "r"},
                                  {"id": "q2", "prompt": "p", "reference": "r"},
                                  {"id": "q1", "prompt": "p", "reference": "r"}])
    message = load_error(path)
    assert f'{path} line 3: id "q1" is already used on line 1' in message
    assert "unique" in message and "rename one" in message


def test_int_and_string_ids_that_match_are_duplicates(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": 7, "prompt": "p", "reference": "r"},
                                  {"id": "7", "prompt": "p", "reference": "r"}])
    assert 'line 2: id "7" is already used on line 1' in load_error(path)


def test_explicit_id_colliding_with_derived_id(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"prompt": "p", "reference": "r"},
                                  {"id": "line-0001", "prompt": "p", "reference": "r"}])
    assert 'line 2: id "line-0001" is already used on line 1' in load_error(path)


def test_ids_colliding_after_sanitization_name_both_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"id": "a/b", "prompt": "p", "reference": "r"},
                                  {"id": "c", "prompt": "p", "reference": "r"},
                                  {"id": "a b", "prompt": "p", "reference": "r"}])
    message = load_error(path)
    assert f'{path} line 3: id "a b" and id "a/b" on line 1 both become the test id "a_b"' in message
    assert "Rename one" in message


def test_duplicate_ids_in_json_array_name_items(tmp_path: Path) -> None:
    path = tmp_path / "eval.json"
    path.write_text(json.dumps([{"id": "x", "instruction": "i", "output": "o"}] * 2),
                    encoding="utf-8")
    assert f'{path} item 2: id "x" is already used on item 1' in load_error(path)


# --- chat errors -----------------------------------------------------------------------------


def test_chat_without_assistant_turn(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"messages": [{"role": "system", "content": "s"},
                                                {"role": "user", "content": "u"}]}])
    message = load_error(path)
    assert f'{path} line 1: messages has no "assistant" turn (roles: user)' in message
    assert "add one" in message


def test_chat_without_user_before_last_assistant(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"messages": [{"role": "system", "content": "s"},
                                                {"role": "assistant", "content": "a"}]}])
    message = load_error(path)
    assert f'{path} line 1: messages[1] is the last assistant turn but no "user" turn' in message
    assert "directly before the reference" in message


@pytest.mark.parametrize(("messages", "found"), [
    ("hello", "got 'hello'"),
    ([], "got []"),
    ([{"role": "user"}], "messages[0]"),
    ([{"role": "user", "content": [{"type": "text", "text": "x"}]}], "messages[0]"),
])
def test_chat_malformed_messages(tmp_path: Path, messages: object, found: str) -> None:
    path = write_jsonl(tmp_path, [{"messages": messages}])
    message = load_error(path)
    assert f"{path} line 1:" in message and found in message and '"role"' in message


def test_chat_blank_reference(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path, [{"messages": [{"role": "user", "content": "u"},
                                                {"role": "assistant", "content": " "}]}])
    message = load_error(path)
    assert f"{path} line 1: messages[1].content (assistant) is empty" in message
    assert "non-blank" in message
