#!/usr/bin/env python3
"""Write what the docs say of each recommendation rule from the rules' own declarations
(``infrascope_recommender.rulebook``): in ``recommender/docs/rules.md`` the rule sections,
the precedence list and the table of ``rules.ha``, in ``recommender/README.md`` the table
of rules, each between ``<!-- BEGIN GENERATED: <part> (scripts/rules_docs.py) -->`` and
``<!-- END GENERATED: <part> -->``. ``--check``: print what is out of date (a diff) and
exit 1, writing nothing.

    python scripts/rules_docs.py [--check]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from infrascope_recommender import rulebook

ROOT = Path(__file__).resolve().parents[1]
RULES_MD = ROOT / "recommender" / "docs" / "rules.md"
README = ROOT / "recommender" / "README.md"
PARTS: dict[Path, dict[str, Callable[[], str]]] = {
    RULES_MD: {"rules": rulebook.rules_sections, "precedence": rulebook.precedence,
               "ha-settings": rulebook.ha_settings},
    README: {"rules-table": rulebook.readme_table},
}


def markers(part: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED: {part} (scripts/rules_docs.py) -->",
            f"<!-- END GENERATED: {part} -->")


def updated(text: str, path: Path, parts: dict[str, Callable[[], str]]) -> str:
    for part, render in parts.items():
        begin, end = markers(part)
        pattern = re.compile(re.escape(begin) + r"\n.*?" + re.escape(end), re.S)
        if not pattern.search(text):
            raise SystemExit(f"{path}: no {begin} … {end} section")
        content = render()
        text = pattern.sub(lambda _: f"{begin}\n{content}{end}", text)  # noqa: B023
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="print what is out of date and exit 1, writing nothing")
    args = parser.parse_args(argv)
    stale = False
    for path, parts in PARTS.items():
        text = path.read_text()
        new = updated(text, path, parts)
        if new == text:
            continue
        stale = True
        if args.check:
            name = str(path.relative_to(ROOT))
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), new.splitlines(keepends=True),
                f"{name} (committed)", f"{name} (from the rules)"))
        else:
            path.write_text(new)
    if args.check and stale:
        print("out of date: run scripts/rules_docs.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
