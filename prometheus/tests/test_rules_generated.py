"""The committed rule files and README tables are what generate.py makes of config.yaml.

CI fails while they are stale: change prometheus/config.yaml, then run
`.venv/bin/python prometheus/generate.py` and commit the result.
"""

from __future__ import annotations

import copy
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
    assert "cpu_utilisation:p95_30d >= 0.03" in text
    assert 'job="hetzner"' not in text and 'job="infrascope-agent"' not in text
    assert 'job="hcloud"' in text and 'job="node"' in text


@pytest.mark.parametrize(("edit", "message"), [
    (lambda c: c.update(thresholds={}), "config.thresholds: unknown key"),
    (lambda c: c["tiers"]["cpu"].update(high=0.2), "tiers.cpu: bounds must increase"),
    (lambda c: c["tiers"]["cpu"].pop("low"), "tiers.cpu.low: missing"),
    (lambda c: c["alerts"]["InfraScopeAgentDown"][0].update(severity="page"),
     "alerts.InfraScopeAgentDown[0].severity"),
    (lambda c: c["alerts"]["InfraScopeServerIdle"][0].update(min_coverage=80),
     "min_coverage: expected a number between 0 and 1"),
    (lambda c: c["alerts"].pop("InfraScopeExporterDown"), "alerts.InfraScopeExporterDown: missing"),
    (lambda c: c["intervals"].update(window="10m"), "intervals.window: 10m is above 5m"),
    (lambda c: c["alerts"]["InfraScopeDiskNearlyFull"][0].update(**{"for": "soon"}),
     "for: 'soon' is not a duration"),
    (lambda c: c["attributes"].remove("location"), "attributes: location is required"),
    (lambda c: c.update(runbook_base_url="docs/runbooks/"), "runbook_base_url"),
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
