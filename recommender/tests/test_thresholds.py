"""Rule thresholds: defaults, YAML parsing, errors naming the key."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from infrascope_recommender.config import ConfigError, load_config
from infrascope_recommender.thresholds import Thresholds, parse_thresholds

REPO = Path(__file__).resolve().parents[2]


def test_defaults_are_documented_values() -> None:
    t = parse_thresholds({})
    assert t == Thresholds()
    assert t.min_coverage == 0.25
    assert (t.confidence.high, t.confidence.medium) == (0.9, 0.5)
    assert (t.headroom.cpu, t.headroom.memory, t.headroom.disk) == (0.6, 0.8, 0.8)
    assert t.headroom.peak == 0.9 and t.max_options == 3
    assert t.idle.cpu_avg_max == 0.05 and t.idle.memory_p95_max == 0.30
    assert t.idle.delete_cpu_max == 0.10
    assert t.rightsize.min_savings_euros == Decimal("1.00")
    assert t.rightsize.min_savings_percent == Decimal("10")
    assert t.consolidation.env_values == ("staging", "stage", "dev", "development", "test")
    assert t.dedicated_to_cloud.locations == {"fsn1": "fsn1", "nbg1": "nbg1", "hel1": "hel1"}
    assert (t.ha.replica_label, t.ha.placement_group_types) == ("ha_group", ("spread",))
    assert parse_thresholds(None) == Thresholds()


def test_defaults_match_the_rules_pack() -> None:
    """Under-provisioned = the rules pack's critical tier; same minimum coverage."""
    pack = yaml.safe_load((REPO / "prometheus" / "config.yaml").read_text())
    t = Thresholds()
    assert t.underprovisioned.cpu_p95_min == pack["tiers"]["cpu"]["critical"]
    assert t.underprovisioned.memory_p95_min == pack["tiers"]["memory"]["critical"]
    assert t.min_coverage == pack["tiers"]["min_coverage"]
    # idle: the average is below the pack's "low" CPU bound (5 %)
    assert t.idle.cpu_avg_max == pack["tiers"]["cpu"]["low"]


def test_overrides_are_applied() -> None:
    t = parse_thresholds({
        "min_coverage": 0.5,
        "confidence": {"high": 0.95},
        "headroom": {"cpu": 0.7, "peak": 0.8},
        "same_cpu_type": False,
        "ha": {"replica_label": " replica-of ", "placement_group_types": []},
        "max_options": 5,
        "idle": {"cpu_avg_max": 0.03, "delete_cpu_max": 0.2, "min_savings_euros": "2.50"},
        "consolidation": {"env_values": ["qa", "preview"], "name_pattern": "",
                          "name_patterns": {"webshop": "^ws-dev-"}, "min_servers": 3},
        "rightsize": {"min_savings_euros": 3, "min_savings_percent": "12.5"},
        "underprovisioned": {"cpu_p95_min": 0.8},
        "dedicated_to_cloud": {"locations": {"FSN1": "NBG1"}, "cpu_types": ["dedicated"],
                               "min_savings_euros": 0.5},
    })
    assert t.min_coverage == 0.5
    assert t.confidence.high == 0.95 and t.confidence.medium == 0.5
    assert t.headroom.cpu == 0.7 and t.headroom.memory == 0.8 and t.headroom.peak == 0.8
    assert t.same_cpu_type is False and t.max_options == 5
    assert (t.ha.replica_label, t.ha.placement_group_types) == ("replica-of", ())
    assert parse_thresholds({"ha": {"replica_label": ""}}).ha.replica_label == ""
    assert parse_thresholds({"ha": {"placement_group_types": ["spread", " x "]}}
                            ).ha.placement_group_types == ("spread", "x")
    assert t.idle.cpu_avg_max == 0.03 and t.idle.min_savings_euros == Decimal("2.50")
    assert t.consolidation.env_values == ("qa", "preview")
    assert t.consolidation.name_pattern == ""
    assert t.consolidation.name_patterns == {"webshop": "^ws-dev-"}
    assert t.consolidation.min_servers == 3
    assert t.rightsize.min_savings_euros == Decimal("3")
    assert t.rightsize.min_savings_percent == Decimal("12.5")
    assert t.underprovisioned.cpu_p95_min == 0.8
    assert t.dedicated_to_cloud.locations == {"fsn1": "nbg1"}
    assert t.dedicated_to_cloud.cpu_types == ("dedicated",)
    assert t.dedicated_to_cloud.min_savings_euros == Decimal("0.5")


@pytest.mark.parametrize(("data", "key"), [
    ({"idle": {"cpu_avg_max": 5}}, "rules.idle.cpu_avg_max"),
    ({"idle": {"cpu_avg_max": 0}}, "rules.idle.cpu_avg_max"),
    ({"idle": {"cpu_avg_max": "low"}}, "rules.idle.cpu_avg_max"),
    ({"idle": {"cpu_avg_max": True}}, "rules.idle.cpu_avg_max"),
    ({"idle": {"enabled": "yes"}}, "rules.idle.enabled"),
    ({"idle": {"cpu_max": 0.1}}, "rules.idle.cpu_max"),
    ({"idle": [1]}, "rules.idle"),
    ({"idle": {"delete_cpu_max": 0.01}}, "rules.idle.delete_cpu_max"),
    ({"min_coverage": -0.1}, "rules.min_coverage"),
    ({"min_coverage": 0.8}, "rules.min_coverage"),
    ({"confidence": {"medium": 0.95}}, "rules.confidence.medium"),
    ({"headroom": {"cpu": 1.5}}, "rules.headroom.cpu"),
    ({"headroom": {"network": 0.5}}, "rules.headroom.network"),
    ({"ha": {"replica_label": None}}, "rules.ha.replica_label"),
    ({"ha": {"replica_label": ["ha_group"]}}, "rules.ha.replica_label"),
    ({"ha": {"placement_group_types": "spread"}}, "rules.ha.placement_group_types"),
    ({"ha": {"placement_group_types": [""]}}, "rules.ha.placement_group_types"),
    ({"ha": {"label": "x"}}, "rules.ha.label"),
    ({"ha": "spread"}, "rules.ha"),
    ({"headroom": {"peak": 1.2}}, "rules.headroom.peak"),
    ({"max_options": 0}, "rules.max_options"),
    ({"max_options": 2.5}, "rules.max_options"),
    ({"unknown_rule": {}}, "rules.unknown_rule"),
    ({"consolidation": {"name_pattern": "(unclosed"}}, "rules.consolidation.name_pattern"),
    ({"consolidation": {"name_patterns": {"shop": "[x"}}},
     "rules.consolidation.name_patterns.shop"),
    ({"consolidation": {"min_servers": 1}}, "rules.consolidation.min_servers"),
    ({"consolidation": {"env_values": []}}, "rules.consolidation.env_values"),
    ({"consolidation": {"env_label": ""}}, "rules.consolidation.env_label"),
    ({"rightsize": {"min_savings_euros": "a lot"}}, "rules.rightsize.min_savings_euros"),
    ({"rightsize": {"min_savings_euros": "-1"}}, "rules.rightsize.min_savings_euros"),
    ({"rightsize": {"min_savings_percent": 150}}, "rules.rightsize.min_savings_percent"),
    ({"rightsize": {"cpu_p95_max": 0.9}}, "rules.rightsize.cpu_p95_max"),
    ({"dedicated_to_cloud": {"cpu_types": ["fast"]}}, "rules.dedicated_to_cloud.cpu_types"),
    ({"dedicated_to_cloud": {"locations": "fsn1"}}, "rules.dedicated_to_cloud.locations"),
])
def test_bad_values_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_thresholds(data)
    assert str(info.value).startswith(key + ":"), str(info.value)


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=re.escape("rules.idle.cpu_max: unknown key (known: "
                                                    "cpu_avg_max, delete_cpu_max, enabled")):
        parse_thresholds({"idle": {"cpu_max": 0.1}})


def test_frozen() -> None:
    t = Thresholds()
    with pytest.raises(AttributeError):
        t.idle.cpu_avg_max = 0.2  # type: ignore[misc]


def test_config_file_rules_section(tmp_path: Path) -> None:
    path = tmp_path / "recommender.yaml"
    path.write_text("rules:\n  idle:\n    cpu_avg_max: 0.02\n  headroom:\n    memory: 0.7\n")
    config = load_config(path, env={})
    assert config.thresholds.idle.cpu_avg_max == 0.02
    assert config.thresholds.headroom.memory == 0.7
    path.write_text("rules:\n  rightsize:\n    min_savings_percent: 101\n")
    with pytest.raises(ConfigError, match=r"^rules\.rightsize\.min_savings_percent: "):
        load_config(path, env={})


def test_the_documented_example_parses() -> None:
    doc = (REPO / "recommender" / "docs" / "rules.md").read_text()
    block = doc.split("## Configuration example", 1)[1].split("```yaml\n", 1)[1]
    data = yaml.safe_load(block.split("```", 1)[0])
    t = parse_thresholds(data["rules"])
    assert t.consolidation.name_patterns == {"webshop": "^ws-(dev|stg)-"}
    assert t.dedicated_to_cloud.min_savings_euros == Decimal("5.00")
    # the example restates the defaults apart from the project pattern
    assert t == parse_thresholds({"consolidation": {"name_patterns": {"webshop":
                                                                      "^ws-(dev|stg)-"}}})
