"""Command-line entry point of the ``infrascope-agent`` console script.

Only ``--version`` works so far; everything else reports that the component
is not implemented yet and exits with status 2 (issue 4).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from infrascope_agent import __version__

PROG = "infrascope-agent"
ISSUE = 4
EXIT_NOT_IMPLEMENTED = 2
DESCRIPTION = "InfraScope agent: node_exporter-compatible host metrics plus discovered services."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=DESCRIPTION,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    print(f"{PROG}: not implemented yet (see issue {ISSUE})", file=sys.stderr)
    return EXIT_NOT_IMPLEMENTED


if __name__ == "__main__":
    raise SystemExit(main())
