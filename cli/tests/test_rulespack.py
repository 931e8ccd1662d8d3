"""The rules pack as the history pipeline reads it: found, its backfill groups, passes
in dependency order."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from infrascope_cli import rulespack

REPO_RULES = Path(__file__).resolve().parents[2] / "prometheus" / "rules"


def test_split_passes_orders_by_dependency_and_drops_alerts() -> None:
    docs = [("a.yml", {"groups": [{"name": "g", "interval": "1m", "rules": [
        {"record": "s:cpu:avg1h", "expr": "avg_over_time(s:cpu:ratio[1h])"},
        {"alert": "Busy", "expr": "s:cpu:avg1h > 0.9"},
        {"record": "s:cpu:ratio", "expr": "hetzner_server_cpu_cores_used / on(source, "
                                          "server_id) hetzner_server_cpu_cores"}]}]}),
            ("b.yml", {"groups": [{"name": "g", "interval": "1h", "rules": [
                {"record": "x:cpu:avg30d", "expr": "avg_over_time(s:cpu:avg1h[30d])"},
                {"record": "x:raw", "expr": "sum(hetzner_server_cpu_cores)"}]}]})]
    passes = rulespack.split_passes(docs)
    names = [[[r["record"] for r in g["rules"]] for g in p["groups"]] for p in passes]
    assert names == [[["s:cpu:ratio"], ["x:raw"]], [["s:cpu:avg1h"]], [["x:cpu:avg30d"]]]
    assert passes[0]["groups"][0]["interval"] == "1m"
    assert len({g["name"] for g in passes[0]["groups"]}) == 2  # unique within a file
    assert [len(rulespack.one_rule_files(p)) for p in passes] == [2, 1, 1]


def test_a_cycle_and_a_broken_file_are_named() -> None:
    with pytest.raises(rulespack.RulesPackError, match="cycle: a:b -> c:d -> a:b"):
        rulespack.split_passes([("c.yml", {"groups": [{"name": "g", "rules": [
            {"record": "a:b", "expr": "c:d"}, {"record": "c:d", "expr": "a:b + 1"}]}]})])
    with pytest.raises(rulespack.RulesPackError, match="x.yml: not a Prometheus rule file"):
        rulespack.split_passes([("x.yml", ["not", "a", "rule", "file"])])


def test_the_committed_pack_backfills_every_hourly_series_the_30_day_figures_read() -> None:
    documents = rulespack.load(rulespack.find_rules_dir())
    passes = rulespack.split_passes(rulespack.backfill_groups(documents))
    recorded = {r["record"] for p in passes for g in p["groups"] for r in g["rules"]}
    groups = [g for _, doc in documents for g in doc["groups"]]
    read_by_30d = {name for g in groups if g["name"].startswith("infrascope-utilisation-30d")
                   for r in g["rules"] for name in re.findall(r"[a-z_]+:[a-z_]+:[a-z0-9_]+1h",
                                                              str(r["expr"]))}
    assert read_by_30d and read_by_30d <= recorded
    # The per-minute group runs every 5 minutes over the history (5-minute rates tile hours).
    intervals = {g["name"]: g.get("interval") for p in passes for g in p["groups"]}
    assert intervals["infrascope-utilisation"] == "5m"


def test_missing_groups_are_an_error_naming_them(tmp_path: Path) -> None:
    (tmp_path / "x.rules.yml").write_text(yaml.safe_dump({"groups": [
        {"name": "infrascope-utilisation", "rules": []}]}))
    with pytest.raises(rulespack.RulesPackError, match="infrascope-utilisation-hourly"):
        rulespack.backfill_groups(rulespack.load(tmp_path))


def test_the_pack_is_found_explicitly_by_environment_or_in_the_repository(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(rulespack.RulesPackError, match="no \\*.rules.yml"):
        rulespack.find_rules_dir(tmp_path)
    (tmp_path / "a.rules.yml").write_text("groups: []\n")
    assert rulespack.find_rules_dir(tmp_path) == tmp_path
    monkeypatch.setenv(rulespack.ENV_RULES_DIR, str(tmp_path))
    assert rulespack.find_rules_dir() == tmp_path
    monkeypatch.delenv(rulespack.ENV_RULES_DIR)
    assert rulespack.find_rules_dir().resolve() == REPO_RULES.resolve()
