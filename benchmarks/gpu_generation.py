"""ModelSession on a GPU with a random-weight model of a real architecture (no weights to download).

    python benchmarks/gpu_generation.py --tokenizer DIR [--shape qwen2.5-1.5b] [--samples 64] [--out FILE]

Builds a Qwen2.5-shaped model with random bfloat16 weights directly on the GPU, saves it with the
given tokenizer (it needs a chat template; the demo model's works), attaches a random LoRA
(r=16, every linear layer), and runs the three modes through `tunegate.inference.ModelSession`
exactly as the gate does: checks the adapter toggles (disabled == a plain base) and measures
generation throughput batched vs one by one. Random weights rarely emit an end-of-turn token, so
every answer runs to max_new_tokens: this measures throughput, not quality.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunegate.data import Sample  # noqa: E402
from tunegate.inference import DecodingConfig, ModelSession  # noqa: E402

SHAPES = {  # hidden, intermediate, layers, heads, kv heads (from the public Qwen2.5 configs)
    "tiny": (64, 128, 2, 4, 2),  # a dry run of this script on a CPU
    "qwen2.5-0.5b": (896, 4864, 24, 14, 2),
    "qwen2.5-1.5b": (1536, 8960, 28, 12, 2),
    "qwen2.5-7b": (3584, 18944, 28, 28, 4),
}


def build_model(shape: str, tokenizer_dir: Path, target: Path, device: str) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    hidden, intermediate, layers, heads, kv_heads = SHAPES[shape]
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
        max_position_embeddings=4096, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def build_adapter(model_dir: Path, target: Path, device: str) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16, device_map=device)
    lora = LoraConfig(r=16, lora_alpha=32, init_lora_weights=False,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    get_peft_model(model, lora).save_pretrained(target)
    del model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--shape", default="qwen2.5-1.5b", choices=sorted(SHAPES))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--one-by-one", type=int, default=8, help="samples timed at batch size 1")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    import torch

    cuda = args.device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    work = Path(tempfile.mkdtemp(prefix="tunegate-gpu-"))
    started = time.perf_counter()
    build_model(args.shape, args.tokenizer, work / "model", args.device)
    build_adapter(work / "model", work / "adapter", args.device)
    setup_s = time.perf_counter() - started
    samples = [Sample(id=f"s{i}", prompt=f"Question {i}: where is my order NW-{10000 + i}? " * (1 + i % 3), reference="-")
               for i in range(args.samples)]
    prompts = {"base": None, "prompt_eng": "You are a concise support agent.", "finetuned": None}
    decoding = DecodingConfig(max_new_tokens=args.max_new_tokens, batch_size=args.samples, device=args.device)
    result: dict = {"shape": args.shape, "device": torch.cuda.get_device_name() if cuda else "cpu", "setup_s": round(setup_s, 1),
                    "torch": torch.__version__, "max_new_tokens": args.max_new_tokens}

    session = ModelSession(work / "model", work / "adapter", prompts, decoding, work / "cache")
    t0 = time.perf_counter()
    session.base_identity  # the content hash of the weights: paid once per model version (memoised)
    result["hash_weights_first_time_s"] = round(time.perf_counter() - t0, 1)
    session.generate(samples[:2], "base", progress=False)  # load + warm-up
    result["load_s"] = round(session.load_seconds or 0, 2)
    result["dtype"] = session.dtype
    for mode in ("base", "prompt_eng", "finetuned"):
        sync()
        t0 = time.perf_counter()
        generations = session.generate(samples[2:], mode, progress=False)
        sync()
        seconds = time.perf_counter() - t0
        tokens = sum(g.output_tokens for g in generations)
        result[f"{mode}_batched"] = {"samples": len(generations), "seconds": round(seconds, 2),
                                     "tokens_per_s": round(tokens / seconds, 1), "s_per_sample": round(seconds / len(generations), 4)}
    result["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 1e9, 1) if cuda else None
    base_texts = [g.text for g in session.generate(samples[2:], "base", progress=False)]
    finetuned_texts = [g.text for g in session.generate(samples[2:], "finetuned", progress=False)]
    result["adapter_changes_answers"] = base_texts != finetuned_texts

    single = ModelSession(work / "model", work / "adapter", prompts, replace(decoding, batch_size=1), work / "cache1")
    single._model = session._model  # the same loaded weights: a benchmark, not the library's path
    single.generate(samples[:1], "finetuned", progress=False)  # hashes and tokenizer, not timed
    subset = samples[2 : 2 + args.one_by_one]
    t0 = time.perf_counter()
    ones = single.generate(subset, "finetuned", progress=False)
    sync()
    seconds = time.perf_counter() - t0
    tokens = sum(g.output_tokens for g in ones)
    result["finetuned_one_by_one"] = {"samples": len(ones), "seconds": round(seconds, 2),
                                      "tokens_per_s": round(tokens / seconds, 1), "s_per_sample": round(seconds / len(ones), 4)}
    result["batched_vs_one_by_one_tokens_per_s"] = round(
        result["finetuned_batched"]["tokens_per_s"] / result["finetuned_one_by_one"]["tokens_per_s"], 1)
    matching = sum(a == b.text for a, b in zip(finetuned_texts, ones))
    result["one_by_one_equal_to_batched"] = f"{matching}/{len(ones)} (bf16 padding can flip a near-tie)"

    plain = ModelSession(work / "model", None, prompts, decoding, work / "cache2")
    plain_texts = [g.text for g in plain.generate(samples[2 : 2 + args.one_by_one], "base", progress=False)]
    result["disabled_adapter_equals_plain_base"] = f"{sum(a == b for a, b in zip(base_texts, plain_texts))}/{len(plain_texts)}"
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
