"""`make bench`: tunegate against the seed's loop, on the same samples and machine, in one run.

    .venv/bin/python benchmarks/bench.py [--samples 16] [--max-new-tokens 96] [--skip-seed]

Measured, in this order:
  1. seed-style loop (seed 000's shape): per mode, load the base (and the adapter), then one
     `generate` per sample at batch size 1, ROUGE and BERTScore per sample (bert_score.score per
     call, as the seed does); no cache.
  2. tunegate cold: a GateRun on a fresh cache (the converted demo model shared), the same samples,
     three modes, ROUGE + BERTScore; batched generation, one base load, one BERTScore batch.
  3. tunegate cached: the same GateRun again on that cache (nothing generated, no model loaded).
  4. the full demo gate, cached (`pytest evals` in a subprocess after `make demo`): wall time
     including pytest start-up, against the 10 s target; then again with two xdist workers
     (`-n 2`), whose verdicts must equal those of the plain run.
  5. generation tokens/s, batched vs one by one (from 1 and 2), and paired_bootstrap_many at
     n=5,000 x 10 metrics.
  6. peak memory (process RSS high-water mark).

Writes reports/bench.json and prints a table with the ratios against the issue's targets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tunegate.config import load_config  # noqa: E402
from tunegate.efficiency import peak_rss_bytes  # noqa: E402
from tunegate.models import resolve_base_model  # noqa: E402

OUT = ROOT / "reports" / "bench.json"
TARGET_COLD_SPEEDUP = 10.0
TARGET_CACHED_S = 10.0


def seed_style_loop(config, samples, max_new_tokens: int) -> dict:
    """Seed 000's evaluation loop: a model load per mode, one generate per sample, metrics per sample."""
    import torch
    from bert_score import score as bert_score
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunegate.metrics import default_bertscore_model, default_num_layers, rouge_scores

    base_dir = resolve_base_model(config.base_model, config.cache_dir)
    bert_dir = default_bertscore_model()
    started = time.perf_counter()
    generated_tokens, generate_s, loads = 0, 0.0, 0
    for mode in ("base", "prompt_eng", "finetuned"):
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
        model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        if mode == "finetuned":
            model = PeftModel.from_pretrained(model, config.adapter)
        model.eval()
        loads += 1
        system = config.system_prompts[mode]
        for sample in samples:
            messages = ([{"role": "system", "content": system}] if system else []) + [
                {"role": "user", "content": sample.prompt}]
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)
            t0 = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            generate_s += time.perf_counter() - t0
            new = out[0, ids["input_ids"].shape[1]:]
            generated_tokens += int(new.numel())
            answer = tokenizer.decode(new, skip_special_tokens=True).strip()
            rouge_scores([answer], [sample.reference], [sample.lang])
            bert_score([answer], [sample.reference], model_type=str(bert_dir), num_layers=default_num_layers(bert_dir))
        del model
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 2), "model_loads": loads, "generate_s": round(generate_s, 2),
            "output_tokens": generated_tokens, "tokens_per_s": round(generated_tokens / generate_s, 2)}


def tunegate_run(config) -> tuple[dict, object]:
    from tunegate.run import GateRun

    started = time.perf_counter()
    run = GateRun(config)
    table = run.score_table()
    seconds = time.perf_counter() - started
    generations = [g for answers in run.computed_generations().values() for g in answers]
    fresh = [g for g in generations if not g.cached]
    tokens = sum(g.output_tokens for g in fresh)
    gen_s = sum(g.latency_s for g in fresh)
    return ({"seconds": round(seconds, 2), "generation_s": round(run.times.generation_s, 2),
             "scoring_s": round(run.times.scoring_s, 2), "fresh_answers": len(fresh), "rows": len(table),
             "model_loaded": run._session.model_loaded if run._session else False,
             "tokens_per_s": round(tokens / gen_s, 2) if gen_s else None}, run)


def cached_demo_gate(*extra: str, report_dir: str = "reports/bench_gate") -> dict:
    """The full demo gate (`pytest evals`), expected fully cached after `make demo`: wall seconds, and
    its verdicts (name, passed, message) from results.json, so runs with and without -n can be compared."""
    command = [sys.executable, "-m", "pytest", "evals", "-q", "-p", "no:cacheprovider", "--report-dir", report_dir,
               f"--html={report_dir}/report.html", *extra]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    fresh = "new answers: base 0, prompt_eng 0, finetuned 0" in result.stdout
    results = ROOT / report_dir / "results.json"
    gates = ([[g["name"], g["passed"], g["message"]] for g in json.loads(results.read_text(encoding="utf-8"))["gates"]]
             if results.is_file() else [])
    return {"seconds": round(seconds, 2), "exit_code": result.returncode, "summary": last, "all_cached": fresh,
            "gates": gates}


def bootstrap_speed() -> dict:
    import numpy as np

    from tunegate.stats import paired_bootstrap_many

    rng = np.random.default_rng(0)
    a = {f"m{i}": rng.random(5000) for i in range(10)}
    b = {f"m{i}": rng.random(5000) for i in range(10)}
    started = time.perf_counter()
    paired_bootstrap_many(a, b, iters=10_000, seed=0)
    return {"n": 5000, "metrics": 10, "iters": 10_000, "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=16, help="eval samples for the loop comparison")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--skip-seed", action="store_true", help="leave out the (slow) seed-style loop")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tunegate-bench-") as work:
        cache = Path(work) / "cache"
        cache.mkdir()
        demo_cache = ROOT / ".tunegate_cache" / "models"
        if demo_cache.is_dir():
            (cache / "models").symlink_to(demo_cache, target_is_directory=True)
        overrides = {"cache_dir": str(cache), "limit": args.samples, "max_new_tokens": args.max_new_tokens,
                     "metrics": ["rouge1", "rouge2", "rougeL", "bertscore"], "gain_metrics": [],
                     "judge": {"backend": "none"}}
        config = load_config(ROOT / "pyproject.toml", overrides)
        from tunegate.data import load_eval_set

        samples = load_eval_set(config.eval_set, field_map=config.field_map, limit=args.samples)
        report: dict = {"samples": len(samples), "max_new_tokens": args.max_new_tokens, "modes": 3,
                        "machine": f"{platform.machine()} {os.cpu_count()} CPUs", "python": platform.python_version()}
        if not args.skip_seed:
            print(f"seed-style loop on {len(samples)} samples x 3 modes ...", flush=True)
            report["seed_loop"] = seed_style_loop(config, samples, args.max_new_tokens)
        print("tunegate cold ...", flush=True)
        report["tunegate_cold"], _ = tunegate_run(config)
        print("tunegate cached ...", flush=True)
        report["tunegate_cached"], _ = tunegate_run(config)
    print("full demo gate, cached (pytest evals) ...", flush=True)
    report["demo_gate_cached"] = cached_demo_gate()
    print("full demo gate, cached, two xdist workers (pytest evals -n 2) ...", flush=True)
    report["demo_gate_cached_n2"] = cached_demo_gate("-n", "2", report_dir="reports/bench_gate_n2")
    report["demo_gate_cached_n2"]["same_verdicts_as_n0"] = (
        report["demo_gate_cached_n2"]["gates"] == report["demo_gate_cached"]["gates"] != [])
    report["paired_bootstrap_many"] = bootstrap_speed()
    rss = peak_rss_bytes()
    report["peak_rss_mb"] = round(rss / 2**20) if rss else None
    seed, cold = report.get("seed_loop"), report["tunegate_cold"]
    ratios = {}
    if seed:
        ratios["cold_speedup_vs_seed"] = round(seed["seconds"] / cold["seconds"], 2)
        if cold["tokens_per_s"]:
            ratios["batched_vs_one_by_one_tokens_per_s"] = round(cold["tokens_per_s"] / seed["tokens_per_s"], 2)
    ratios["cached_speedup_vs_cold"] = round(cold["seconds"] / max(report["tunegate_cached"]["seconds"], 1e-3), 1)
    report["ratios"] = ratios
    report["targets"] = {
        "cold_speedup_vs_seed >= 10": None if not seed else ratios["cold_speedup_vs_seed"] >= TARGET_COLD_SPEEDUP,
        "demo_gate_cached_s <= 10": report["demo_gate_cached"]["seconds"] <= TARGET_CACHED_S,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    rows = [("seed-style loop", seed["seconds"] if seed else None, ""),
            ("tunegate cold", cold["seconds"], f"{cold['fresh_answers']} answers generated"),
            ("tunegate cached", report["tunegate_cached"]["seconds"],
             f"model loaded: {report['tunegate_cached']['model_loaded']}"),
            ("demo gate cached (pytest evals)", report["demo_gate_cached"]["seconds"], report["demo_gate_cached"]["summary"]),
            ("demo gate cached, -n 2", report["demo_gate_cached_n2"]["seconds"],
             f"same verdicts as -n 0: {report['demo_gate_cached_n2']['same_verdicts_as_n0']}"),
            ("paired_bootstrap_many 5000x10", report["paired_bootstrap_many"]["seconds"], "")]
    print(f"\n{'step':34} {'seconds':>9}  notes")
    for name, seconds, note in rows:
        print(f"{name:34} {('-' if seconds is None else f'{seconds:.2f}'):>9}  {note}")
    print("ratios:", json.dumps(ratios), "\ntargets:", json.dumps(report["targets"]), f"\nwritten to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
