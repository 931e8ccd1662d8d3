#!/usr/bin/env python3
"""Run every ``bench/*_bench.py`` benchmark script and report the outcome.

Each script runs as its own process with the current interpreter, from the
repository root. The exit status is 0 when every script succeeded (or there
are no scripts), 1 when at least one failed, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
PATTERN = "*_bench.py"


def discover(names: Sequence[str] = ()) -> list[Path]:
    scripts = sorted(p for p in BENCH_DIR.glob(PATTERN) if p.is_file())
    if names:
        scripts = [p for p in scripts if any(n in p.stem for n in names)]
    return scripts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", help="run only scripts whose name contains one of these"
    )
    parser.add_argument("--list", action="store_true", help="list the scripts and exit")
    args = parser.parse_args(argv)

    scripts = discover(args.names)
    if not scripts:
        where = BENCH_DIR.relative_to(REPO_ROOT) / PATTERN
        if args.names:
            print(
                f"bench: no benchmark matches {' '.join(args.names)!r} in {where}", file=sys.stderr
            )
            return 2
        print(f"bench: no benchmarks found ({where}); nothing to run")
        return 0
    if args.list:
        for script in scripts:
            print(script.relative_to(REPO_ROOT))
        return 0

    failed: list[str] = []
    for script in scripts:
        rel = script.relative_to(REPO_ROOT)
        print(f"bench: running {rel}", flush=True)
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(script)], cwd=REPO_ROOT, check=False)
        elapsed = time.perf_counter() - start
        status = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode})"
        print(f"bench: {rel} {status} in {elapsed:.2f}s", flush=True)
        if result.returncode != 0:
            failed.append(str(rel))

    print(f"bench: {len(scripts) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print("bench: failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
