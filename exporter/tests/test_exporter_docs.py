"""The README documents every metric and every configuration key the exporter has."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from exporter_testlib import demo_config_data, refresh_all
from infrascope_exporter.config import FLAG_ALIASES, SCALARS
from infrascope_exporter.exporter import Exporter

README = (Path(__file__).parents[1] / "README.md").read_text()


def documented_names() -> set[str]:
    names: set[str] = set()
    for row in README.splitlines():
        if not row.startswith(("| `hetzner_", "| `infrascope_", "| `process_", "| `python_")):
            continue
        names.update(re.findall(r"`([a-z_]+)`", row.split("|")[1]))
    return names


def test_every_exposed_metric_is_documented(served, make_config) -> None:
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter)
    # what a scrape gets: the rendering and the series collected per scrape
    families = {f.name for f in text_string_to_metric_families(exporter.exposition().decode())}
    assert {"infrascope_exporter_build_info", "process_cpu_seconds_total"} <= {
        f + "_total" if f.startswith("process_cpu") else f for f in families}
    exposed = {name + "_total" if name in ("hetzner_api_requests",
                                           "hetzner_exporter_skipped_records",
                                           "process_cpu_seconds") else name
               for name in families}
    documented = documented_names()
    missing = sorted(n for n in exposed if n not in documented)
    assert missing == [], f"add to exporter/README.md: {missing}"


def test_every_setting_is_documented() -> None:
    for path, flag, env, _ in SCALARS:
        assert f"`{path}`" in README, path
        row = next(r for r in README.splitlines() if r.startswith(f"| `{path}` |"))
        flags = row.split("|")[2]
        assert f"`{flag}`" in flags or f"`{flag.replace('--', '--[no-]', 1)}`" in flags, flag
        alias = FLAG_ALIASES.get(path)
        if alias:  # the old spelling is listed as an alias on the same row
            assert f"alias `{alias}`" in flags or f"alias `{alias.replace('--', '--[no-]', 1)}`" \
                in flags, alias
        assert f"`{env}`" in row, env
