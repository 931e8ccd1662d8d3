#!/usr/bin/env python3
"""Recording-rule passes for the compose backfill (service ``backfill-rules``).

Runs in the exporter image (docker-compose.yml, profiles ``demo`` and ``backfill``):

    python /etc/infrascope/backfill_rules.py --output-dir /var/lib/infrascope/rule-passes \\
        /etc/prometheus/rules

It reads the rules pack's ``*.rules.yml`` in the given folder, keeps the groups whose
history the 30-day figures read -- the per-minute utilisation ratios and the hourly
averages and maxima, the same choice and intervals as ``make demo`` (``BACKFILL_GROUPS``
in ``scripts/demo.py``) -- and orders their recording rules into dependency passes with
the exporter's own ``backfill split-rules`` logic. ``compose/backfill-load.sh`` then
evaluates ``pass-N.yml`` with ``promtool tsdb create-blocks-from rules``, pass by pass
(exporter/docs/backfill.md, step 5). The other groups (30-day figures, tiers, cost) are
evaluated by Prometheus itself over that history once it runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from infrascope_exporter.backfill import split_rules
from infrascope_exporter.config import ConfigError

# Group name -> interval promtool evaluates it at (None: the group's own). The per-minute
# group runs every 5 minutes: its CPU series are 5-minute rates, so twelve of them tile
# each hour and the hourly averages stay exact, at a fifth of the work.
BACKFILL_GROUPS: dict[str, str | None] = {
    "infrascope-utilisation": "5m",
    "infrascope-utilisation-hourly": None,
}
# promtool's --max-block-duration for these passes (used by backfill-load.sh): 486 hours
# are 5832 steps of 5 minutes per range query, under Prometheus' 11,000-point limit.
RULES_BLOCK = "486h"


def select(documents: list[tuple[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The BACKFILL_GROUPS of the rule files, recording rules only, with their intervals."""
    selected: list[tuple[str, dict[str, Any]]] = []
    found: set[str] = set()
    for name, doc in documents:
        groups = []
        for group in (doc or {}).get("groups") or []:
            if group.get("name") not in BACKFILL_GROUPS:
                continue
            found.add(group["name"])
            kept = {**group, "rules": [r for r in group.get("rules") or [] if "record" in r]}
            interval = BACKFILL_GROUPS[group["name"]]
            if interval:
                kept["interval"] = interval
            groups.append(kept)
        if groups:
            selected.append((name, {"groups": groups}))
    missing = sorted(set(BACKFILL_GROUPS) - found)
    if missing:
        raise ConfigError(f"rule groups {', '.join(missing)} not found in the rule files")
    return selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-dir", required=True, type=Path,
                        help="where pass-N.yml are written (older pass files are removed)")
    parser.add_argument("rules_dir", type=Path, help="folder of the rules pack's *.rules.yml")
    args = parser.parse_args(argv)
    files = sorted(args.rules_dir.glob("*.rules.yml"))
    try:
        if not files:
            raise ConfigError(f"{args.rules_dir}: no *.rules.yml")
        documents = [(str(p), yaml.safe_load(p.read_text(encoding="utf-8"))) for p in files]
        passes = split_rules(select(documents))
    except (ConfigError, OSError, yaml.YAMLError) as exc:
        print(f"backfill_rules: {exc}", file=sys.stderr)
        return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for old in args.output_dir.glob("pass-*.yml"):
        old.unlink()
    for n, doc in enumerate(passes, start=1):
        (args.output_dir / f"pass-{n}.yml").write_text(
            yaml.safe_dump(doc, sort_keys=False, width=1000), encoding="utf-8")
        rules = sum(len(g["rules"]) for g in doc["groups"])
        print(f"backfill_rules: {args.output_dir}/pass-{n}.yml: {rules} recording rules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
