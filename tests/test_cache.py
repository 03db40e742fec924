"""Tests for tunegate.cache: fingerprints, the one-file-per-entry DiskCache, memoised file hashes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tunegate.cache import DiskCache, file_sha256, fingerprint


def temp_files(cache: DiskCache) -> list[Path]:
    return sorted(cache.directory.rglob(".tmp-*"))


# --- fingerprint -----------------------------------------------------------------------------


def test_fingerprint_ignores_dict_key_order() -> None:
    assert fingerprint("v1", {"a": 1, "b": [1, 2]}) == fingerprint("v1", {"b": [1, 2], "a": 1})


def test_fingerprint_is_a_sha256_hex_digest() -> None:
    digest = fingerprint("x")
    assert len(digest) == 64 and int(digest, 16) >= 0


@pytest.mark.parametrize(
    "other",
    [("v1", {"a": 2}), ("v2", {"a": 1}), ({"a": 1}, "v1"), ("v1", {"a": 1}, None), ("v1", {"A": 1})],
)
def test_fingerprint_differs_for_different_parts(other: tuple[object, ...]) -> None:
    assert fingerprint("v1", {"a": 1}) != fingerprint(*other)


# --- DiskCache -------------------------------------------------------------------------------


def test_put_then_get_round_trips(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    value = {"f1": 0.875, "text": "naïve 中文 \"quoted\"", "nested": {"list": [1, 2.5, None]}}
    cache.put("abcd1234", value)
    assert cache.get("abcd1234") == value
    assert (tmp_path / "scores" / "ab" / "abcd1234.json").is_file()


def test_put_overwrites_an_existing_entry(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    cache.put("k1", {"v": 1})
    cache.put("k1", {"v": 2})
    assert cache.get("k1") == {"v": 2}
    assert len(cache) == 1


def test_namespaces_do_not_share_entries(tmp_path: Path) -> None:
    DiskCache(tmp_path, "one").put("key", {"v": 1})
    assert DiskCache(tmp_path, "two").get("key") is None


def test_get_of_a_missing_key_is_none(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "never-created", "scores")
    assert cache.get("deadbeef") is None
    cache.put("deadbeef", {"v": 1})
    assert cache.get("deadbeee") is None


@pytest.mark.parametrize("garbage", [b"{\"f1\": 0.5", b"\x00\xff\xfe not json", b"", b"\xc3\x28"])
def test_corrupted_entry_is_a_miss_not_an_error(tmp_path: Path, garbage: bytes) -> None:
    cache = DiskCache(tmp_path, "scores")
    cache.put("abcdef", {"f1": 0.5})
    path = tmp_path / "scores" / "ab" / "abcdef.json"
    path.write_bytes(garbage)
    assert cache.get("abcdef") is None


@pytest.mark.parametrize("text", ["[1, 2, 3]", "\"a string\"", "42", "null"])
def test_non_dict_json_entry_is_a_miss(tmp_path: Path, text: str) -> None:
    cache = DiskCache(tmp_path, "scores")
    cache.put("abcdef", {"f1": 0.5})
    (tmp_path / "scores" / "ab" / "abcdef.json").write_text(text, encoding="utf-8")
    assert cache.get("abcdef") is None


def test_puts_leave_no_temporary_files(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    for i in range(20):
        cache.put(fingerprint(i), {"i": i})
    assert temp_files(cache) == []
    assert len(cache) == 20


def test_failed_put_raises_and_leaves_no_temp_file_and_no_entry(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    with pytest.raises(TypeError):
        cache.put("abcdef", {"value": object()})  # not JSON-serialisable: json.dump fails mid-write
    assert temp_files(cache) == []
    assert not (tmp_path / "scores" / "ab" / "abcdef.json").exists()
    assert cache.get("abcdef") is None
    assert len(cache) == 0


def test_failed_put_keeps_the_previous_entry_intact(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    cache.put("abcdef", {"v": 1})
    with pytest.raises(TypeError):
        cache.put("abcdef", {"v": {1, 2}})
    assert cache.get("abcdef") == {"v": 1}
    assert temp_files(cache) == []


def test_get_many_returns_only_hits(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    cache.put("k1", {"v": 1})
    cache.put("k3", {"v": 3})
    assert cache.get_many(["k1", "k2", "k3", "k4"]) == {"k1": {"v": 1}, "k3": {"v": 3}}
    assert cache.get_many([]) == {}
    assert cache.get_many(iter(["k2"])) == {}


def test_len_counts_entries(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    assert len(cache) == 0  # directory not created yet
    keys = [fingerprint("k", i) for i in range(7)] + ["aa1", "aa2"]  # two share a sub-folder
    for key in keys:
        cache.put(key, {"key": key})
    assert len(cache) == len(keys)
    assert len(DiskCache(tmp_path, "other")) == 0


def test_len_ignores_a_temp_file_left_by_a_killed_writer(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path, "scores")
    cache.put("abcdef", {"v": 1})
    # What a writer killed between mkstemp and os.replace leaves behind.
    (tmp_path / "scores" / "ab" / ".tmp-x1y2z3.json").write_text("{\"v\":", encoding="utf-8")
    assert len(cache) == 1


# --- file_sha256 -----------------------------------------------------------------------------


def test_file_sha256_equals_hashlib_on_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    content = os.urandom(3000) + b"tail"
    path.write_bytes(content)
    assert file_sha256(path) == hashlib.sha256(content).hexdigest()
    assert file_sha256(str(path)) == hashlib.sha256(content).hexdigest()


def test_file_sha256_of_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    assert file_sha256(path) == hashlib.sha256(b"").hexdigest()


def test_file_sha256_is_memoised_and_misses_after_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"first version")
    memo = DiskCache(tmp_path / "cache", "file_hashes")

    first = file_sha256(path, memo)
    assert first == hashlib.sha256(b"first version").hexdigest()
    assert len(memo) == 1
    (entry_file,) = memo.directory.glob("*/*.json")
    key = entry_file.stem
    assert memo.get(key) == {"path": str(path.resolve()), "sha256": first}

    # The second call reads the memo, not the file: a planted digest comes back.
    memo.put(key, {"path": str(path), "sha256": "planted"})
    assert file_sha256(path, memo) == "planted"

    # Same size, new content and a new mtime: the memo key changes, so the file is hashed again.
    stat = path.stat()
    path.write_bytes(b"other version")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    assert file_sha256(path, memo) == hashlib.sha256(b"other version").hexdigest()
    assert len(memo) == 2


def test_file_sha256_without_memo_rehashes(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b"{}")
    assert file_sha256(path, None) == hashlib.sha256(b"{}").hexdigest()
    path.write_bytes(b"[]")
    assert file_sha256(path, None) == hashlib.sha256(b"[]").hexdigest()


def test_file_sha256_of_a_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "absent.bin", DiskCache(tmp_path, "file_hashes"))
