"""Finetuned generation throughput with the LoRA unmerged vs merged, same samples, same batch size.

    .venv/bin/python benchmarks/merged_speed.py [--samples 16] [--max-new-tokens 32] [--batch-size 16]

Each setting gets a fresh temporary cache and one untimed warm-up sample (model load and, for the
merged setting, the one-off check of the checkpoint). The timed call's tokens/s is given twice:
generation only, and end to end (merged: plus the merge and the restore from the checkpoint, which
a gate pays once per finetuned call). Greedy decoding in float32 on CPU: the script reports whether
both settings gave the same answers.
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
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the project's batch_size")
    parser.add_argument("--adapter", type=Path, default=None, help="default: the project's adapter")
    args = parser.parse_args()
    config = load_config(ROOT / "pyproject.toml")
    samples = load_eval_set(config.eval_set, limit=args.samples + 1)
    warm_up, timed = samples[:1], samples[1:]
    base_dir = resolve_base_model(config.base_model, config.cache_dir)
    adapter = args.adapter or config.adapter
    results: dict[str, dict] = {}
    texts = {}
    for label, merge in (("unmerged", False), ("merged", True)):
        decoding = replace(
            config.decoding, merge_adapter=merge, max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size or config.batch_size,
        )
        with tempfile.TemporaryDirectory() as cache:
            session = ModelSession(base_dir, adapter, config.system_prompts, decoding, cache)
            session.generate(warm_up, "finetuned", progress=False)
            started = time.perf_counter()
            generations = session.generate(timed, "finetuned", progress=False)
            end_to_end_s = time.perf_counter() - started
        tokens = sum(g.output_tokens for g in generations)
        generation_s = sum(g.latency_s for g in generations)  # each batch's wall time, spread over its samples
        results[label] = {
            "batch_size": decoding.batch_size, "samples": len(timed), "output_tokens": tokens,
            "generation_s": round(generation_s, 2), "end_to_end_s": round(end_to_end_s, 2),
            "tokens_per_s": round(tokens / generation_s, 1), "tokens_per_s_end_to_end": round(tokens / end_to_end_s, 1),
        }
        if merge:
            first, last = session.merge_outcomes[0], session.merge_outcomes[-1]
            results[label].update(merged=last.merged, reason=last.reason, tensors=last.tensors,
                                  verify_s_once=round(first.verify_s, 2), merge_s=round(last.merge_s, 2),
                                  restore_s=round(last.restore_s, 2))
        texts[label] = [g.text for g in generations]
    results["ratio_merged_over_unmerged"] = round(
        results["merged"]["tokens_per_s"] / results["unmerged"]["tokens_per_s"], 2
    )
    results["ratio_end_to_end"] = round(
        results["merged"]["tokens_per_s_end_to_end"] / results["unmerged"]["tokens_per_s_end_to_end"], 2
    )
    results["same_answers"] = texts["merged"] == texts["unmerged"]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
