"""tunegate.batching: a batch that runs out of memory is halved and retried; the smaller size is kept."""

from __future__ import annotations

import pytest
import torch

from tunegate.batching import BatchSizer, is_out_of_memory
from tunegate.errors import ModelError


def runner(fits: int, calls: list[int]):
    """A batch function that fails like CUDA does above `fits` items, and doubles its items otherwise."""

    def run(items):
        calls.append(len(items))
        if len(items) > fits:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [item * 2 for item in items]

    return run


def test_halves_until_it_fits_and_keeps_the_size() -> None:
    calls: list[int] = []
    sizer = BatchSizer(8)
    assert sizer.run(list(range(20)), runner(3, calls)) == [i * 2 for i in range(20)]
    assert sizer.limit == 2 and sizer.halvings == [8, 4]
    # 8 fails, 4 fails, then pieces of 2 for the rest: no further failures.
    assert calls == [8, 4, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]
    calls.clear()
    sizer.run(list(range(4)), runner(3, calls))
    assert calls == [2, 2]  # a later call starts at the size that fitted


def test_one_item_that_does_not_fit_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="max_new_tokens"):
        BatchSizer(4).run([1, 2, 3], runner(0, []))


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken(items):
        calls.append(len(items))
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        BatchSizer(4).run([1, 2], broken)
    assert calls == [2]


def test_recognises_the_allocators_messages() -> None:
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"))
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only runtime errors
