"""Speed and memory of the paired bootstrap: metrics one call each vs one `paired_bootstrap_many`.

    .venv/bin/python benchmarks/stats_speed.py [--n 5000] [--iters 10000] [--metrics 10] [--repeats 3] [--validity]

Times `paired_bootstrap` on n samples for each metric separately and `paired_bootstrap_many` on all
of them at once (same seed, best of --repeats), checks that both give the same Comparisons, times
`holm_adjust` over the p-values of two opponents (2 x metrics), and measures peak Python-heap
memory with tracemalloc (numpy reports its buffers there). Writes benchmarks/results/stats_speed.json.

--validity also runs the false-alarm and power simulations of tests/test_stats_validity.py (a few
seconds) and prints their table; the numbers go into the JSON too.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
import timeit
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tunegate.stats import holm_adjust, paired_bootstrap, paired_bootstrap_many  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "stats_speed.json"
VALIDITY_MODULE = ROOT / "tests" / "test_stats_validity.py"


def make_systems(n: int, metrics: int, seed: int = 0) -> tuple[dict[str, np.ndarray], ...]:
    """Three systems' scores on the same n samples: a shared difficulty per sample and metric, plus noise.

    The first system gains 0.0015 x (metric index) over the other two, from nothing to a few
    standard errors, so Holm has both kinds of p-value to sort.
    """
    rng = np.random.default_rng(seed)
    systems: tuple[dict[str, np.ndarray], ...] = ({}, {}, {})
    for m in range(metrics):
        difficulty = rng.beta(2, 2, n)
        for system, shift in zip(systems, (0.0015 * m, 0.0, 0.0)):
            system[f"metric_{m}"] = np.clip(difficulty + shift + rng.normal(0, 0.1, n), 0, 1)
    return systems


def best_of(repeats: int, work: Callable[[], object]) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def peak_mb(work: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def load_validity_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("test_stats_validity", VALIDITY_MODULE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5_000)
    parser.add_argument("--iters", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--validity", action="store_true", help="also run and print the false-alarm/power simulations")
    args = parser.parse_args()

    a, b, c = make_systems(args.n, args.metrics)
    settings = {"iters": args.iters, "seed": args.seed}

    separate_s, separate = best_of(args.repeats, lambda: {m: paired_bootstrap(a[m], b[m], **settings) for m in a})
    many_s, many = best_of(args.repeats, lambda: paired_bootstrap_many(a, b, **settings))
    max_gap = {  # the documented contract: equal up to rounding in the matrix product
        field: max(abs(getattr(separate[m], field) - getattr(many[m], field)) for m in a)
        for field in ("diff", "ci_low", "ci_high", "p_value")
    }
    p_values = np.array([cmp.p_value for cmp in many.values()]
                        + [cmp.p_value for cmp in paired_bootstrap_many(a, c, **settings).values()])
    holm_loops = 10_000
    holm_s = min(timeit.repeat(lambda: holm_adjust(p_values), number=holm_loops, repeat=args.repeats))
    holm_us = holm_s / holm_loops * 1e6
    first = next(iter(a))
    peak_single_mb = peak_mb(lambda: paired_bootstrap(a[first], b[first], **settings))
    peak_many_mb = peak_mb(lambda: paired_bootstrap_many(a, b, **settings))

    results = {
        "n": args.n, "iters": args.iters, "metrics": args.metrics, "repeats": args.repeats,
        "separate_calls_s": round(separate_s, 3),
        "separate_per_metric_s": round(separate_s / args.metrics, 3),
        "many_call_s": round(many_s, 3),
        "speedup": round(separate_s / many_s, 2),
        "max_abs_gap_many_vs_separate": {field: float(f"{gap:.3g}") for field, gap in max_gap.items()},
        "holm_p_values": int(p_values.size),
        "holm_us": round(holm_us, 2),
        "holm_significant_at_0.05": int(np.sum(holm_adjust(p_values) < 0.05)),
        "peak_mb_single_call": round(peak_single_mb, 1),
        "peak_mb_many_call": round(peak_many_mb, 1),
        "full_index_matrix_mb": round(args.iters * args.n * 8 / 2**20, 1),
        "machine": {
            "python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform(),
            "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
        },
    }

    print(f"paired bootstrap, n={args.n}, iters={args.iters}, {args.metrics} metrics, best of {args.repeats}")
    rows = [
        (f"{args.metrics} x paired_bootstrap", f"{separate_s:.3f} s", f"{peak_single_mb:.0f} MB (one call)"),
        ("1 x paired_bootstrap_many", f"{many_s:.3f} s", f"{peak_many_mb:.0f} MB"),
        ("speedup", f"{separate_s / many_s:.1f}x", ""),
        (f"holm_adjust ({p_values.size} p-values)", f"{holm_us:.1f} us", ""),
        ("full iters x n index matrix", "", f"{results['full_index_matrix_mb']:.0f} MB (never built)"),
    ]
    print(f"{'':34}{'time':>12}  peak memory")
    for label, seconds, memory in rows:
        print(f"{label:34}{seconds:>12}  {memory}")
    print("max |many − separate|: " + ", ".join(f"{k} {v:.2g}" for k, v in max_gap.items()))

    if args.validity:
        validity = load_validity_module()
        started = time.perf_counter()
        table = validity.validity_table()
        results["validity_s"] = round(time.perf_counter() - started, 2)
        results["validity"] = table
        print()
        print(validity.format_table(table))
        print(f"({results['validity_s']} s)")

    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
