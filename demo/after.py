#!/usr/bin/env python3
"""Wait for what a demo process needs, run its one-off steps, then become it.

The demo's supervisor starts every component at once; this puts the few orderings
the demo needs into a component's command itself, e.g.::

    after.py --url http://127.0.0.1:8790/readyz -- prometheus --config.file=...
    after.py --prometheus http://127.0.0.1:9190 --promql 'count(up) > 0' \\
             --run 'recommender run --config rec.yml' -- recommender serve --config rec.yml

It waits until every ``--file`` exists, every ``--url`` answers 2xx and every
``--promql`` instant query (against ``--prometheus``) returns a non-empty result, runs
each ``--run`` command (which must exit 0), then replaces itself with the command after
``--`` (same pid, so the supervisor stops the real program). Gives up with exit 1 after
``--timeout`` seconds. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request


def url_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return 200 <= r.status < 300
    except (urllib.error.URLError, OSError):
        return False


def promql_ok(base: str, expr: str) -> bool:
    data = urllib.parse.urlencode({"query": expr}).encode()
    try:
        with urllib.request.urlopen(base.rstrip("/") + "/api/v1/query", data, timeout=5) as r:
            body = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return body.get("status") == "success" and bool(body["data"]["result"])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("after.py: the command to run goes after --", file=sys.stderr)
        return 2
    cut = argv.index("--")
    command = argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="after.py", description=__doc__.splitlines()[0])
    parser.add_argument("--file", action="append", default=[], help="must exist")
    parser.add_argument("--url", action="append", default=[], help="must answer 2xx")
    parser.add_argument("--prometheus", default=None, help="Prometheus base URL for --promql")
    parser.add_argument("--promql", action="append", default=[],
                        help="instant query that must return a non-empty result")
    parser.add_argument("--run", action="append", default=[],
                        help="a command (shell words) to run once before, must exit 0")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--name", default=None, help="name shown in messages")
    args = parser.parse_args(argv[:cut])
    name = args.name or (command[0] if command else "after.py")
    if not command:
        parser.error("no command after --")
    if args.promql and not args.prometheus:
        parser.error("--promql needs --prometheus")

    started = time.monotonic()
    deadline = started + args.timeout
    next_note = started + 10
    pending = ([("file", f) for f in args.file] + [("url", u) for u in args.url]
               + [("promql", q) for q in args.promql])

    def met(kind: str, what: str) -> bool:
        if kind == "file":
            return os.path.exists(what)
        if kind == "url":
            return url_ok(what)
        return promql_ok(args.prometheus, what)

    while pending:
        # In order: files first, then URLs, then queries (they need the URLs).
        while pending and met(*pending[0]):
            pending.pop(0)
        if not pending:
            print(f"{name}: ready after {time.monotonic() - started:.1f} s", flush=True)
            break
        waiting = ", ".join(what for _, what in pending)
        if time.monotonic() > deadline:
            print(f"{name}: gave up after {args.timeout:g} s waiting for {waiting}",
                  file=sys.stderr, flush=True)
            return 1
        if time.monotonic() > next_note:
            next_note += 10
            print(f"{name}: still waiting for {waiting}", flush=True)
        time.sleep(0.2)
    for step in args.run:
        words = shlex.split(step)
        print(f"{name}: running {words[0]} {' '.join(words[1:2])}", flush=True)
        result = subprocess.run(words, check=False)
        if result.returncode != 0:
            print(f"{name}: {words[0]} exited with {result.returncode}", file=sys.stderr,
                  flush=True)
            return 1
    sys.stdout.flush()
    os.execvp(command[0], command)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
