"""Generation throughput, batched vs one by one, on the same demo samples and the same weights.

    .venv/bin/python benchmarks/generation_speed.py [--samples 16] [--mode finetuned]

Each setting writes to its own fresh temporary cache, so nothing is served from disk. Greedy
decoding, so both settings must produce the same answers; the script checks it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunegate.config import load_config  # noqa: E402
from tunegate.data import load_eval_set  # noqa: E402
from tunegate.inference import ModelSession  # noqa: E402
from tunegate.models import resolve_base_model  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--mode", default="finetuned", choices=["base", "prompt_eng", "finetuned"])
    args = parser.parse_args()
    config = load_config(ROOT / "pyproject.toml")
    samples = load_eval_set(config.eval_set, limit=args.samples)
    base_dir = resolve_base_model(config.base_model, config.cache_dir)
    results = {}
    texts = {}
    for label, batch_size in (("batched", config.batch_size), ("one_by_one", 1)):
        with tempfile.TemporaryDirectory() as cache:
            decoding = replace(config.decoding, batch_size=batch_size)
            session = ModelSession(base_dir, config.adapter, config.system_prompts, decoding, cache)
            session.generate(samples[:1], args.mode, progress=False)  # warm-up (and load), not timed
            timed = samples[1:]
            started = time.perf_counter()
            generations = session.generate(timed, args.mode, progress=False)
            seconds = time.perf_counter() - started
            tokens = sum(g.output_tokens for g in generations)
            results[label] = {"batch_size": batch_size, "samples": len(timed), "output_tokens": tokens,
                              "seconds": round(seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
                              "s_per_sample": round(seconds / len(timed), 3)}
            texts[label] = [g.text for g in generations]
    results["speedup"] = round(results["batched"]["tokens_per_s"] / results["one_by_one"]["tokens_per_s"], 2)
    results["same_answers"] = texts["batched"] == texts["one_by_one"]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
