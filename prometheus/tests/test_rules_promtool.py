"""`promtool check rules` and `promtool test rules` on the rules pack, and
`promtool check config` on the example prometheus.yml (which loads the rule files)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from rules_testlib import PROMETHEUS_DIR, PROMTOOL_TESTS, RULE_FILES

from infrascope_core.prometheus import Promtool


def test_check_rules_is_clean(promtool: Promtool) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "config.yaml").read_text())
    shards, providers = config["window_shards"], len(config.get("providers") or ["hetzner"])
    # recording, alerts, one file per 30-day shard, one per provider (the neutral layer)
    assert len(RULE_FILES) == 2 + shards + providers
    proc = promtool.run("check", "rules", "--lint=all", "--lint-fatal", *RULE_FILES,
                        cwd=PROMETHEUS_DIR)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert out.count("SUCCESS") == len(RULE_FILES), out
    assert "WARNING" not in out.upper(), out


# window.test.yml evaluates the 50 shard groups every hour of 721 hours: about 3 minutes of
# CPU for promtool, 7 minutes of wall time on a loaded 2-core machine. The bound is there
# for a hang, not as a speed check (the rules bench measures speed).
PROMTOOL_TEST_TIMEOUT = 900.0


@pytest.mark.timeout(PROMTOOL_TEST_TIMEOUT + 60)
@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests(promtool: Promtool, path: Path) -> None:
    proc = promtool.run("test", "rules", path, cwd=PROMETHEUS_DIR,
                        timeout=PROMTOOL_TEST_TIMEOUT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "FAILED" not in out and "SUCCESS" in out, out


def test_example_prometheus_config_is_valid(promtool: Promtool) -> None:
    proc = promtool.run("check", "config", "--lint=all", "--lint-fatal", "prometheus.yml",
                        cwd=PROMETHEUS_DIR)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # it loads every rule file of the pack
    for path in RULE_FILES:
        assert path.name in out, out
