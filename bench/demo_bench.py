#!/usr/bin/env python3
"""`make demo`: time from the command to the printed recommendation report.

Runs ``make -s demo DEMO_ARGS="--once --state-dir <tmp> --<each>-port 0"`` (the
dependencies already installed, so ``apt-deps`` and ``venv`` are checks only) and
measures the wall-clock time from starting make to the first line of the report on
its stdout, then the time until everything is stopped again. Prints the demo's own
breakdown (from ``demo.json`` in the state folder: history and blocks, rule passes,
Prometheus, recommender, and the steps inside them) and the ratio to the 60-second
target; exits 1 when the target is missed or the demo fails.

    .venv/bin/python bench/demo_bench.py [--runs N]

The machine's load average is printed with each run: the demo uses both cores for
most of its minute, so a busy machine shows up directly in the figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 60.0
PORTS = ("sim", "exporter", "agent", "recommender", "webhook", "prometheus", "alertmanager")
REPORT_FIRST_LINE = "InfraScope recommendations"


def one_run() -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="infrascope-demo-bench-"))
    state = tmp / "state"
    args = ["--once", "--state-dir", str(state)]
    for name in PORTS:
        args += [f"--{name}-port", "0"]
    load = os.getloadavg()[0]
    start = time.monotonic()
    report_at: list[float] = []
    try:
        proc = subprocess.Popen(["make", "-s", "-C", str(ROOT), "demo",
                                 "DEMO_ARGS=" + " ".join(args)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stderr: list[str] = []
        reader = threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True)
        reader.start()
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(REPORT_FIRST_LINE) and not report_at:
                report_at.append(time.monotonic() - start)
        code = proc.wait(timeout=900)
        total = time.monotonic() - start
        reader.join(timeout=5)
        if code != 0 or not report_at:
            raise SystemExit(f"demo_bench: make demo failed (exit {code}):\n{''.join(stderr)}")
        info = json.loads((state / "demo.json").read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"report_s": report_at[0], "total_s": total, "load": load, "info": info}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    results = []
    for i in range(args.runs):
        r = one_run()
        results.append(r)
        info = r["info"]
        phases = ", ".join(f"{k} {v:.1f} s" for k, v in info["phases"].items())
        steps = ", ".join(f"{k} {v:.1f} s" for k, v in info["steps"].items())
        print(f"run {i + 1}: report printed after {r['report_s']:.1f} s (demo's own clock "
              f"{info['ready_seconds']:.1f} s), stopped after {r['total_s']:.1f} s; "
              f"load average before {r['load']:.2f}")
        print(f"  phases: {phases}")
        print(f"  steps (overlapping): {steps}")
    median = statistics.median(r["report_s"] for r in results)
    ratio = median / TARGET_SECONDS
    met = median < TARGET_SECONDS
    print(f"make demo to printed report: {median:.1f} s (median of {len(results)}), target "
          f"< {TARGET_SECONDS:.0f} s: ratio {ratio:.2f}, {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
