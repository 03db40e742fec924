"""tunegate.claims: chunks of work shared by real processes through file locks, each done once."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

from tunegate.claims import ClaimCounts, claim_chunks, lock_path


def _done_file(root: Path, chunk: int) -> Path:
    return root / "done" / f"{chunk}.json"


def _worker(root: str, name: str, chunks: list[int], seconds: float) -> None:
    """One process of the race: claims chunks, 'computes' each for `seconds`, logs what it did."""
    base = Path(root)

    def work(chunk: int) -> None:
        with open(base / "log.txt", "a", encoding="utf-8") as log:
            log.write(f"{name} {chunk}\n")
        time.sleep(seconds)
        _done_file(base, chunk).parent.mkdir(parents=True, exist_ok=True)
        _done_file(base, chunk).write_text(json.dumps({"by": name}))

    counts = claim_chunks(
        chunks,
        lock_for=lambda chunk: lock_path(base, "test", chunk),
        is_done=lambda chunk: _done_file(base, chunk).exists(),
        work=work,
    )
    (base / f"{name}.counts").write_text(json.dumps([counts.done_here, counts.found_done, counts.waited]))


def _race(root: Path, workers: int, chunks: list[int], seconds: float) -> list[multiprocessing.Process]:
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_worker, args=(str(root), f"w{i}", chunks, seconds)) for i in range(workers)]
    for process in processes:
        process.start()
    return processes


def test_two_processes_split_the_chunks_and_none_is_done_twice(tmp_path: Path) -> None:
    chunks = list(range(8))
    for process in _race(tmp_path, 2, chunks, 0.3):
        process.join(60)
        assert process.exitcode == 0
    log = (tmp_path / "log.txt").read_text().split("\n")[:-1]
    done = [int(line.split()[1]) for line in log]
    assert sorted(done) == chunks  # every chunk exactly once
    by_worker = {name: sum(line.startswith(name) for line in log) for name in ("w0", "w1")}
    assert all(count >= 1 for count in by_worker.values()), by_worker  # both did work: it was split
    for name in ("w0", "w1"):
        done_here, found_done, waited = json.loads((tmp_path / f"{name}.counts").read_text())
        assert done_here + found_done + waited == len(chunks)
        assert done_here == by_worker[name]


def test_a_process_arriving_later_only_reads(tmp_path: Path) -> None:
    first = claim_chunks([1, 2], lock_for=lambda c: lock_path(tmp_path, c),
                         is_done=lambda c: _done_file(tmp_path, c).exists(),
                         work=lambda c: (_done_file(tmp_path, c).parent.mkdir(exist_ok=True),
                                         _done_file(tmp_path, c).write_text("{}")))
    assert first == ClaimCounts(done_here=2)
    calls: list[int] = []
    second = claim_chunks([1, 2], lock_for=lambda c: lock_path(tmp_path, c),
                          is_done=lambda c: _done_file(tmp_path, c).exists(), work=calls.append)
    assert second == ClaimCounts(found_done=2) and calls == []


def test_a_killed_process_does_not_block_the_other(tmp_path: Path) -> None:
    # w0 takes chunk 0 and is killed while "computing" it (60 s); w1 must not wait for it forever.
    (slow,) = _race(tmp_path, 1, [0], 60.0)
    deadline = time.monotonic() + 60
    while not (tmp_path / "log.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "log.txt").exists(), "the first process never started its chunk"
    os.kill(slow.pid, signal.SIGKILL)
    slow.join(10)
    done_by = []
    counts = claim_chunks([0], lock_for=lambda c: lock_path(tmp_path, "test", c),
                          is_done=lambda c: _done_file(tmp_path, c).exists(),
                          work=lambda c: (done_by.append(c), _done_file(tmp_path, c).parent.mkdir(exist_ok=True),
                                          _done_file(tmp_path, c).write_text("{}")))
    assert done_by == [0] and counts.done_here == 1


def test_a_busy_chunk_is_waited_for_and_then_read(tmp_path: Path) -> None:
    # w0 holds chunk 0 for 1.5 s; this process skips it, does chunk 1, then waits and finds 0 done.
    (other,) = _race(tmp_path, 1, [0], 1.5)
    deadline = time.monotonic() + 60
    while not (tmp_path / "log.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    done_here: list[int] = []

    def work(chunk: int) -> None:
        done_here.append(chunk)
        _done_file(tmp_path, chunk).parent.mkdir(exist_ok=True)
        _done_file(tmp_path, chunk).write_text("{}")

    counts = claim_chunks([0, 1], lock_for=lambda c: lock_path(tmp_path, "test", c),
                          is_done=lambda c: _done_file(tmp_path, c).exists(), work=work)
    other.join(30)
    assert done_here == [1]
    assert counts == ClaimCounts(done_here=1, waited=1)
