"""Work shared by several processes through the on-disk cache, each piece done once.

Why: `pytest evals -n 2` (pytest-xdist) runs two workers that each need every mode's answers.
Without coordination both would generate everything. Here the work is cut into chunks (a
generation batch, a batch of judge calls); a process claims a chunk by taking its file lock
without waiting, does it and writes the results to the cache. A chunk whose lock is held is
skipped and taken up at the end: by then the other process has usually finished it, so the
lock is free and the cache holds the results. So two workers that need the same mode at the
same time split it between them (each generating half), and one that arrives later reads.

File locks (fcntl/msvcrt through `filelock`) are released by the operating system when a
process dies, so a worker killed mid-chunk never blocks the others: the waiting one takes the
lock, finds the chunk still missing and does it itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tunegate.cache import fingerprint

Chunk = TypeVar("Chunk")

LOCK_FOLDER = "locks"


@dataclass(frozen=True, slots=True)
class ClaimCounts:
    """How a call's chunks were settled: done here, found done, or done here after waiting."""

    done_here: int = 0
    found_done: int = 0
    waited: int = 0


def lock_path(cache_dir: str | Path, *parts: object) -> Path:
    """The lock file of one piece of work, named by a fingerprint of what identifies it."""
    return Path(cache_dir) / LOCK_FOLDER / f"{fingerprint(*parts)[:32]}.lock"


def claim_chunks(
    chunks: Sequence[Chunk],
    *,
    lock_for: Callable[[Chunk], Path],
    is_done: Callable[[Chunk], bool],
    work: Callable[[Chunk], None],
) -> ClaimCounts:
    """Do each chunk that is not done yet, unless another process is doing it right now.

    Args:
        chunks: the pieces of work, in the order to try them.
        lock_for: the lock file of a chunk; the same chunk must give the same path in every process.
        is_done: whether a chunk's results are all in the cache (read again after each wait).
        work: does a chunk and writes its results to the cache; called with the chunk's lock held.

    Returns the counts; on return every chunk is done (by this process or another).
    """
    from filelock import FileLock, Timeout

    done_here = found_done = waited = 0
    deferred: list[Chunk] = []
    for chunk in chunks:
        if is_done(chunk):
            found_done += 1
            continue
        lock = _lock(lock_for(chunk), FileLock)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            deferred.append(chunk)  # another process has it: come back once the free chunks are done
            continue
        try:
            if is_done(chunk):
                found_done += 1
            else:
                work(chunk)
                done_here += 1
        finally:
            lock.release()
    for chunk in deferred:
        with _lock(lock_for(chunk), FileLock):  # waits for the other process to finish (or die)
            if is_done(chunk):
                waited += 1
            else:
                work(chunk)  # the other process died or gave up: do it here
                done_here += 1
    return ClaimCounts(done_here, found_done, waited)


def _lock(path: Path, lock_type: type) -> object:
    path.parent.mkdir(parents=True, exist_ok=True)
    return lock_type(str(path))
