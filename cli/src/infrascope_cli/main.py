"""``infrascope COMMAND ...``: one entry point, a module per command.

Each command module has ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int`` (the exit code); adding a command is one module and one line in
:data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from types import FrameType, ModuleType

from . import __version__

# The command modules, in the order `infrascope --help` lists them.
COMMANDS = ("setup", "doctor", "history")


def _modules() -> list[ModuleType]:
    return [importlib.import_module(f"{__package__}.{name}") for name in COMMANDS]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="infrascope", allow_abbrev=False,
        description="Set up InfraScope for a Hetzner account, check a running installation, "
                    "and load 30 days of history into Prometheus.")
    parser.add_argument("--version", action="version", version=f"infrascope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _modules():
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP,
                                 allow_abbrev=False)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every command cleans up the same way."""


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(args.run(args))
    except KeyboardInterrupt as exc:
        name = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"infrascope: {name}; stopped what it had started", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)
