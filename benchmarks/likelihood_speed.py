"""Reference log-likelihood speed: the old right-padded full-logits pass vs tunegate.likelihood.

    .venv/bin/python benchmarks/likelihood_speed.py [--model random|demo] [--rows 16]
        [--prompt-tokens 500] [--reference-tokens 60] [--repeats 2]

Same rows, same weights, one forward pass per batch for both; prints each time (best of
--repeats), the ratio, and the largest difference between the two approaches' mean log-probs.
"random" is a random-weight Llama with the demo model's vocabulary (49152), so the vocabulary
projection costs what it does in practice; "demo" is the converted SmolLM2-135M-Instruct.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunegate.likelihood import score_references  # noqa: E402


def old_score_batch(model, rows, starts, pad_token_id, device):
    """The algorithm of ModelSession._score_batch before tunegate.likelihood, copied as the baseline."""
    import torch

    width = max(len(row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, : len(row)] = torch.tensor(row)
        attention[r, : len(row)] = 1
    with torch.inference_mode():
        logits = model(input_ids=input_ids.to(device), attention_mask=attention.to(device)).logits
    logprobs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = input_ids[:, 1:].to(logprobs.device)
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1).cpu()
    scored = []
    for r, (row, start) in enumerate(zip(rows, starts)):
        answer = picked[r, start - 1 : len(row) - 1]
        scored.append((int(answer.numel()), float(answer.mean())))
    return scored


def load_model(name: str):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    if name == "demo":
        from tunegate.models import ensure_demo_model

        return AutoModelForCausalLM.from_pretrained(ensure_demo_model(ROOT / ".tunegate_cache"),
                                                    dtype=torch.float32).eval()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048)
    return LlamaForCausalLM(config).eval()


def best_time(function, repeats: int):
    seconds, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds = min(seconds, time.perf_counter() - started)
    return seconds, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="random", choices=["random", "demo"])
    parser.add_argument("--rows", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=500)
    parser.add_argument("--reference-tokens", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import torch

    model = load_model(args.model)
    vocab = model.config.vocab_size
    rng = random.Random(0)
    # Lengths vary a little around the requested ones, as real prompts and answers do.
    shapes = [(args.prompt_tokens - rng.randrange(0, 40), args.reference_tokens - rng.randrange(0, 20))
              for _ in range(args.rows)]
    rows = [[rng.randrange(1, vocab) for _ in range(p + a)] for p, a in shapes]
    starts = [p for p, _ in shapes]
    score_references(model, rows[:2], starts[:2], pad_token_id=0, device="cpu")  # warm-up, not timed
    old_s, old = best_time(lambda: old_score_batch(model, rows, starts, 0, "cpu"), args.repeats)
    new_s, new = best_time(lambda: score_references(model, rows, starts, pad_token_id=0, device="cpu"),
                           args.repeats)
    print(json.dumps({
        "model": args.model, "rows": args.rows, "prompt_tokens": args.prompt_tokens,
        "reference_tokens": args.reference_tokens, "torch_threads": torch.get_num_threads(),
        "old_s": round(old_s, 3), "new_s": round(new_s, 3), "speedup": round(old_s / new_s, 2),
        "old_s_per_sample": round(old_s / args.rows, 3), "new_s_per_sample": round(new_s / args.rows, 3),
        "same_token_counts": [t for t, _ in old] == [t for t, _ in new],
        "max_abs_diff_mean_logprob": max(abs(a - b) for (_, a), (_, b) in zip(old, new)),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
