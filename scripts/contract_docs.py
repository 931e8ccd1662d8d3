#!/usr/bin/env python3
"""Write the metric tables of the components' READMEs from the series contract
(``infrascope_core.contract``), between ``<!-- BEGIN GENERATED: metrics (contract) -->``
and ``<!-- END GENERATED: metrics -->``. ``--check``: exit 1 if a README is out of date.

    python scripts/contract_docs.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from infrascope_core import contract

ROOT = Path(__file__).resolve().parents[1]
READMES = {contract.AGENT: ROOT / "agent" / "README.md",
           contract.RECOMMENDER: ROOT / "recommender" / "README.md"}
BEGIN = "<!-- BEGIN GENERATED: metrics (scripts/contract_docs.py) -->"
END = "<!-- END GENERATED: metrics -->"


def updated(text: str, component: str, path: Path) -> str:
    pattern = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path}: no {BEGIN} … {END} section")
    return pattern.sub(lambda _: f"{BEGIN}\n{contract.markdown_table(component)}{END}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale READMEs")
    args = parser.parse_args(argv)
    stale = []
    for component, path in READMES.items():
        text = path.read_text()
        new = updated(text, component, path)
        if new != text:
            stale.append(path)
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("out of date (run scripts/contract_docs.py): "
              + ", ".join(str(p.relative_to(ROOT)) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
