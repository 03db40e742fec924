"""Where and with what generation runs: the device and dtype, installed versions, freeing memory.

Everything here avoids importing torch when it can: a cached rerun needs the device class and the
versions for its cache keys, not the library (1-2 s to import).
"""

from __future__ import annotations

import functools
from pathlib import Path


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu". A CPU-only torch build is recognised from its
    files, without importing torch (1-2 s), so a cached rerun on a CPU runner never imports it."""
    if device != "auto":
        return device
    if not _torch_has_gpu_build():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _torch_has_gpu_build() -> bool:
    """Whether the installed torch was built with CUDA or ROCm (its c10_cuda / c10_hip library is there)."""
    import importlib.util

    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True  # unknown layout: let torch answer
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return not lib.is_dir() or any(lib.glob("*c10_cuda*")) or any(lib.glob("*c10_hip*"))


@functools.lru_cache(maxsize=None)
def installed_version(distribution: str) -> str | None:
    """A distribution's version from its metadata: what the cache keys record, without importing it."""
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        return "bfloat16" if device.startswith("cuda") else "float32"
    return dtype


def _free_accelerator_memory() -> None:
    """After an out-of-memory error: hand the failed batch's cached blocks back before the retry."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
