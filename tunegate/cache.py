"""On-disk cache of expensive results (generations, scores, file hashes), one JSON file per entry.

Why one file per entry: a run killed halfway keeps every batch it finished (each entry is
written with an atomic rename, so a reader never sees half a file), and two pytest-xdist
workers can share the directory without a database. Keys are content fingerprints, so a
changed input simply misses; nothing is ever invalidated by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_CHUNK_BYTES = 8 * 1024 * 1024


def fingerprint(*parts: Any) -> str:
    """A stable hex digest of JSON-serialisable parts (dict keys sorted), for cache keys."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class DiskCache:
    """JSON entries under `root/namespace/<2 hex>/<key>.json`.

    Args:
        root: the cache directory (created on first write).
        namespace: a sub-folder per kind of entry, e.g. "generations" or "bertscore".
    """

    def __init__(self, root: str | Path, namespace: str) -> None:
        self.root = Path(root)
        self.namespace = namespace
        self.directory = self.root / namespace

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry, or None when absent or unreadable (a damaged entry is a miss, not a crash)."""
        try:
            with open(self._path(key), encoding="utf-8") as handle:
                value = json.load(handle)
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def get_many(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Entries found for `keys`, by key; misses are left out."""
        found = {}
        for key in keys:
            value = self.get(key)
            if value is not None:
                found[key] = value
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        """Write atomically: a temporary file in the same folder, then `os.replace`."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(value, handle, ensure_ascii=False, sort_keys=True)
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        if not self.directory.is_dir():
            return 0
        # pathlib globs match dot-files: skip the ".tmp-*" of an in-flight or killed put.
        return sum(1 for path in self.directory.glob("*/*.json") if not path.name.startswith(".tmp-"))


def file_sha256(path: str | Path, memo: DiskCache | None = None) -> str:
    """SHA-256 of a file's bytes, remembered by (path, size, mtime) so a 15 GB checkpoint is read once.

    Args:
        path: the file to hash.
        memo: where to remember digests between runs; None hashes every time.
    """
    path = Path(path).resolve()
    stat = path.stat()
    memo_key = fingerprint("file_sha256", str(path), stat.st_size, stat.st_mtime_ns)
    if memo is not None and (entry := memo.get(memo_key)) is not None:
        return str(entry["sha256"])
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    hexdigest = digest.hexdigest()
    if memo is not None:
        memo.put(memo_key, {"path": str(path), "sha256": hexdigest})
    return hexdigest
