"""The committed rule files and README tables are what generate.py makes of config.yaml.

CI fails while they are stale: change prometheus/config.yaml, then run
`.venv/bin/python prometheus/generate.py` and commit the result.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml
from rules_testlib import PROMETHEUS_DIR, RULE_FILES, RULES_DIR, generator

CONFIG = PROMETHEUS_DIR / "config.yaml"


def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def generate(tmp_path: Path, cfg: dict | None = None, readme: bool = True) -> dict[str, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg if cfg is not None else config()))
    out = tmp_path / "rules"
    argv = ["--config", str(path), "--output-dir", str(out)]
    if readme:
        shutil.copy(PROMETHEUS_DIR / "README.md", tmp_path / "README.md")
        argv += ["--readme", str(tmp_path / "README.md")]
    assert generator().main(argv) == 0
    files = {p.name: p.read_text() for p in sorted(out.iterdir())}
    if readme:
        files["README.md"] = (tmp_path / "README.md").read_text()
    return files


def test_committed_rules_are_not_stale(tmp_path: Path) -> None:
    fresh = generate(tmp_path)
    committed = {p.name: p.read_text() for p in RULE_FILES}
    committed["README.md"] = (PROMETHEUS_DIR / "README.md").read_text()
    assert sorted(fresh) == sorted(committed), "rule files added or removed: regenerate"
    for name, text in fresh.items():
        assert committed[name] == text, (
            f"{name} is stale: run `.venv/bin/python prometheus/generate.py` and commit")


def test_check_mode_reports_stale_files(tmp_path: Path, capsys) -> None:
    gen = generator()
    assert gen.main(["--check"]) == 0, "the repository's generated files are stale"
    stale = tmp_path / "rules"
    shutil.copytree(RULES_DIR, stale)
    (stale / gen.ALERTS_FILE).write_text("# edited by hand\n")
    assert gen.main(["--check", "--output-dir", str(stale)]) == 1
    assert gen.ALERTS_FILE in capsys.readouterr().err


def test_thresholds_come_from_the_config(tmp_path: Path) -> None:
    cfg = config()
    cfg["alerts"]["InfraScopeServerCpuSaturated"] = [
        {"severity": "critical", "above": 0.8, "for": "45m"}]
    cfg["tiers"]["cpu"]["low"] = 0.03
    cfg["jobs"] = {"exporter": "hcloud", "agent": "node"}
    files = generate(tmp_path, cfg, readme=False)
    alerts = yaml.safe_load(files["infrascope-alerts.rules.yml"])["groups"]
    cpu = [r for g in alerts for r in g["rules"] if r["alert"] == "InfraScopeServerCpuSaturated"]
    assert len(cpu) == 1
    assert cpu[0]["expr"].endswith("> 0.8") and cpu[0]["for"] == "45m"
    assert cpu[0]["labels"]["severity"] == "critical"
    assert "(above 80% for 45m)" in cpu[0]["annotations"]["description"]
    text = "".join(files.values())
    assert re.search(r"cpu_utilisation:p95_30d\{[^}]*\} >= bool 0\.03\b", text)
    assert 'job="hetzner"' not in text and 'job="infrascope-agent"' not in text
    assert 'job="hcloud"' in text and 'job="node"' in text


def test_traffic_tier_bound_comes_from_the_config_and_can_be_left_out(tmp_path: Path) -> None:
    cfg = config()
    cfg["tiers"]["network"] = {"low": 1_000_000}
    text = "".join(generate(tmp_path, cfg, readme=False).values())
    assert re.search(r"network_bytes_per_second:avg30d\{[^}]*\}\)\s+>= bool 1e\+06", text)
    assert "traffic below 1 MB/s where measured" in text
    cfg["tiers"].pop("network")
    text = "".join(generate(tmp_path, cfg, readme=False).values())
    assert '"figure", "network"' not in text and "traffic below" not in text


@pytest.mark.parametrize(("share", "quantile"), [(0.5, "0.5"), (0.8, "0.2"), (0.25, "0.75")])
def test_recurring_peak_share_is_the_quantile_of_the_daily_peaks(
        tmp_path: Path, share: float, quantile: str) -> None:
    """Reached on at least ``share`` of the days: the 1 - share quantile of each day's
    busiest hour, over the UTC days (a subquery step of 1d), CPU only."""
    cfg = config()
    cfg["utilisation"]["recurring_peak_share"] = share
    files = generate(tmp_path, cfg, readme=False)
    rules = {r["record"]: r["expr"]
             for g in yaml.safe_load(files["infrascope-utilisation-30d-0.rules.yml"])["groups"]
             for r in g["rules"]}
    assert rules["shard_source_server_id:cpu_utilisation:daily_peak30d"] == (
        f"quantile_over_time({quantile}, max_over_time("
        'source_server_id:cpu_utilisation:avg1h{shard=~"00|50"}[1d])[30d:1d])')
    assert "source_server_id:cpu_utilisation:daily_peak30d" in rules
    assert not any("memory_utilisation:daily_peak" in name for name in rules)


@pytest.mark.parametrize(("every", "condition"), [
    ("1h", None), ("5m", "and on () (vector(time()) % 3600 < 300)")])
def test_hourly_rules_write_one_sample_an_hour_at_any_interval(
        tmp_path: Path, every: str, condition: str | None) -> None:
    """Once an hour (the default) every evaluation writes; more often, only the first of
    the hour. Either way the value is the clock hour before, from the raw inputs."""
    cfg = config()
    cfg["intervals"]["hourly"] = every
    files = generate(tmp_path, cfg, readme=False)
    groups = yaml.safe_load(files["infrascope-recording.rules.yml"])["groups"]
    hourly = next(g for g in groups if g["name"] == "infrascope-utilisation-hourly")
    assert hourly["interval"] == every and len(hourly["rules"]) == 6  # cpu, memory, network
    for rule in hourly["rules"]:
        expr = rule["expr"]
        assert ")[59m59s:5m]" in expr and ")[1h:1h]" in expr
        assert ":ratio" not in expr  # the raw inputs, not the per-minute records
        assert (condition in expr) if condition else ("vector(time())" not in expr)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(thresholds={}), "config.thresholds: unknown key"),
    (lambda c: c["tiers"]["cpu"].update(high=0.2), "tiers.cpu: bounds must increase"),
    (lambda c: c["tiers"]["cpu"].pop("low"), "tiers.cpu.low: missing"),
    (lambda c: c["tiers"]["network"].update(low="50 kB/s"),
     "tiers.network.low: expected a number >= 0, got '50 kB/s'"),
    (lambda c: c["tiers"]["network"].update(high=10**6), "tiers.network.high: unknown key"),
    (lambda c: c["alerts"]["InfraScopeAgentDown"][0].update(severity="page"),
     "alerts.InfraScopeAgentDown[0].severity"),
    (lambda c: c["alerts"]["InfraScopeServerIdle"][0].update(min_coverage=80),
     "min_coverage: expected a number between 0 and 1"),
    (lambda c: c["alerts"].pop("InfraScopeExporterDown"), "alerts.InfraScopeExporterDown: missing"),
    (lambda c: c["intervals"].update(window="10m"), "intervals.window: 10m is above 5m"),
    (lambda c: c["intervals"].update(hourly="7m"), "intervals.hourly: 7m must divide 1h"),
    (lambda c: c["alerts"]["InfraScopeDiskNearlyFull"][0].update(**{"for": "soon"}),
     "for: 'soon' is not a duration"),
    (lambda c: c["attributes"].remove("location"), "attributes: location is required"),
    (lambda c: c.update(runbook_base_url="docs/runbooks/"), "runbook_base_url"),
    (lambda c: c.update(providers={"aws": "aws"}), "providers.aws: unknown key"),
    (lambda c: c.update(providers={"hetzner": 'a"b'}), "providers.hetzner: expected"),
    (lambda c: c["utilisation"].update(recurring_peak_share=1),
     "utilisation.recurring_peak_share: expected a ratio in (0, 1), got 1.0"),
    (lambda c: c["utilisation"].update(recurring_peak_share=0),
     "utilisation.recurring_peak_share: expected a ratio in (0, 1)"),
    (lambda c: c["utilisation"].update(recurring_peak_share="half"),
     "utilisation.recurring_peak_share: expected a number between 0 and 1"),
])
def test_invalid_config_is_refused_naming_the_key(edit, message: str, tmp_path: Path,
                                                  capsys) -> None:
    cfg = copy.deepcopy(config())
    edit(cfg)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "rules"
    assert generator().main(["--config", str(path), "--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def _shard_label(server_id: str) -> str:
    """What the hourly rules' two label_replace calls make of a server id."""
    if re.fullmatch(r"[0-9]", server_id):
        return "0" + server_id
    m = re.fullmatch(r".*([0-9][0-9])", server_id)
    assert m, server_id
    return m.group(1)


def _matcher_regex(matcher: str) -> str:
    """The regular expression of a generated `shard="x"` / `shard=~"x"` matcher."""
    m = re.fullmatch(r'shard(=~?)"([^"]*)"', matcher)
    assert m, matcher
    return m.group(2) if m.group(1) == "=~" else re.escape(m.group(2))


@pytest.mark.parametrize("shards", [1, 2, 4, 5, 10, 20, 25, 50, 100])
def test_shards_partition_the_servers(shards: int) -> None:
    """Every server id falls into exactly one shard's group, through its hourly series'
    `shard` label and, for the inventory join, through its id, and both agree."""
    gen = generator()
    cfg = gen.validate_config({**config(), "window_shards": shards})
    b = gen.Builder(cfg)
    ids = [str(i) for i in range(0, 1000)] + ["4711", "2391100", "58213977", "100000000"]
    for server_id in ids:
        by_label = [j for j in range(shards) if not b.shard_matcher(j)
                    or re.fullmatch(_matcher_regex(b.shard_matcher(j)), _shard_label(server_id))]
        by_id = [j for j in range(shards) if b.shard_id_regex(j) is None
                 or re.fullmatch(b.shard_id_regex(j), server_id)]
        assert by_label == by_id and len(by_label) == 1, (server_id, by_label, by_id)
    names = [b.shard_group_name(j) for j in range(shards)]
    assert len(set(names)) == shards


def test_one_provider_group_per_provider_from_the_contract() -> None:
    """The neutral layer: a group per configured provider, one rule per entry of the
    contract's PROVIDER_SERIES, selecting the provider's exporter job."""
    from infrascope_core import contract

    gen = generator()
    cfg = gen.validate_config({**config(), "providers": {"hetzner": "hz-prod"}})
    files = gen.render(cfg)
    doc = yaml.safe_load(files["infrascope-provider-hetzner.rules.yml"])
    [group] = doc["groups"]
    assert group["name"] == "infrascope-provider-hetzner"
    assert group["interval"] == cfg["intervals"]["inventory"][0]
    rules = {r["record"]: r for r in group["rules"]}
    assert set(rules) == set(contract.PROVIDER_SERIES["hetzner"])
    for neutral, native in contract.PROVIDER_SERIES["hetzner"].items():
        assert f'{native}{{job="hz-prod"}}' in rules[neutral]["expr"]
        assert rules[neutral].get("labels") == {"provider": "hetzner"}


def test_window_shards_is_validated() -> None:
    gen = generator()
    for bad in (0, 3, 7, 200, "10", True):
        with pytest.raises(gen.ConfigError, match="window_shards"):
            gen.validate_config({**config(), "window_shards": bad})


def test_fewer_shards_remove_the_files_of_the_others(tmp_path: Path) -> None:
    files = generate(tmp_path, readme=False)
    assert "infrascope-utilisation-30d-9.rules.yml" in files
    cfg = {**config(), "window_shards": 5}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    argv = ["--config", str(tmp_path / "config.yaml"), "--output-dir", str(tmp_path / "rules")]
    assert generator().main([*argv, "--check"]) == 1  # the extra files count as stale
    assert generator().main(argv) == 0
    left = sorted(p.name for p in (tmp_path / "rules").glob("infrascope-utilisation-30d*"))
    assert left == [f"infrascope-utilisation-30d-{j}.rules.yml" for j in range(5)]
    assert generator().main([*argv, "--check"]) == 0
