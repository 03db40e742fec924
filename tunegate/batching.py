"""Batches that fit in memory: halve a batch that runs out of memory and retry, remember the size.

Why: the right batch size depends on the card, the dtype, the prompt lengths and max_new_tokens.
A configured size that is too large should cost a retry, not the run. The work is sorted
longest prompt first, so the first batches are the heaviest: once one had to be split, the
smaller size is kept for the rest of the session (`BatchSizer.limit`), and later batches are
split up front instead of failing again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tunegate.errors import ModelError

Item = TypeVar("Item")
Result = TypeVar("Result")

_OOM_TEXTS = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, or the CPU/MPS allocators' RuntimeError about memory."""
    if type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and any(text in str(error).lower() for text in _OOM_TEXTS)


@dataclass(slots=True)
class BatchSizer:
    """Runs batches no larger than `limit`, halving on out-of-memory; `limit` only ever shrinks.

    Args:
        limit: the largest batch to try (the configured batch_size).
        free_memory: called after an out-of-memory error, before the retry (e.g. torch.cuda.empty_cache).
    """

    limit: int
    free_memory: Callable[[], None] = lambda: None
    halvings: list[int] = field(default_factory=list)  # the size that failed, each time one did

    def run(self, items: Sequence[Item], run_batch: Callable[[Sequence[Item]], list[Result]]) -> list[Result]:
        """`run_batch` over `items` in order, in pieces of at most `limit`; results in the items' order."""
        results: list[Result] = []
        start = 0
        while start < len(items):
            piece = items[start : start + max(1, self.limit)]
            try:
                results.extend(run_batch(piece))
            except Exception as error:  # noqa: BLE001 - only out-of-memory is retried, the rest re-raised
                if not is_out_of_memory(error):
                    raise
                if len(piece) == 1:
                    raise ModelError(
                        f"one sample alone runs out of memory ({error}). Lower max_new_tokens, load the base in a "
                        "smaller dtype (dtype = \"bfloat16\"), or use a device with more memory."
                    ) from error
                self.halvings.append(len(piece))
                self.limit = len(piece) // 2
                self.free_memory()
                continue  # retry the same items with the smaller limit
            start += len(piece)
        return results
