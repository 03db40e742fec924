"""Command line for setup chores: `python -m tunegate demo-model [--cache-dir DIR]`.

Prints the local directory of the embedded demo model, converting it from the wheel's GGUF on
first use, so `make demo` can time the model-cache step on its own.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tunegate.errors import TunegateError
from tunegate.models import ensure_demo_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunegate")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo-model", help="build (once) and print the demo model directory")
    demo.add_argument("--cache-dir", type=Path, default=Path(".tunegate_cache"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        path = ensure_demo_model(args.cache_dir)
    except TunegateError as error:
        print(f"tunegate: {error}", file=sys.stderr)
        return 2
    print(f"demo model ready: {path} ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
