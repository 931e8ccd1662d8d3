"""The rule registry: every consumer reads the rules' declarations, the docs are current,
and a declaration that would make two rules indistinguishable is refused."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from infrascope_recommender import rulebook
from infrascope_recommender.config import ConfigError
from infrascope_recommender.model import RuleResult
from infrascope_recommender.report import kind_labels
from infrascope_recommender.rules import (
    Rule,
    RuleSettings,
    Step,
    checked,
    headline,
    kinds,
    registered,
)
from infrascope_recommender.settings import money, setting
from infrascope_recommender.thresholds import Thresholds, parse_thresholds, rule_kinds

REPO = Path(__file__).resolve().parents[2]


def test_the_docs_are_generated_from_the_rules() -> None:
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "rules_docs.py"),
                             "--check"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_setting_is_documented_with_its_default() -> None:
    doc = (REPO / "recommender" / "docs" / "rules.md").read_text()
    for rule in registered():
        assert rulebook.rule_section(rule) in doc, rule.kind
        for f in dataclasses.fields(rule.settings):
            if f.name != "enabled":
                assert f.metadata["why"], (rule.kind, f.name)
                assert f"| `{f.name}` |" in rulebook.rule_section(rule)


def test_kinds_labels_and_thresholds_come_from_the_rules() -> None:
    assert kinds() == ("idle", "consolidation", "rightsize", "underprovisioned",
                       "dedicated_to_cloud")
    assert kind_labels() == {"idle": "Idle", "consolidation": "Consolidation",
                             "rightsize": "Right-sizing",
                             "underprovisioned": "Under-provisioned",
                             "dedicated_to_cloud": "Dedicated → Cloud"}
    assert kind_labels()["gone"] == "gone"  # a kind from a removed rule, still in a state file
    assert set(Thresholds().rules) == set(kinds())
    with pytest.raises(ConfigError, match=r"^rules\.nope: unknown key \(known: confidence, "
                                          r"consolidation, dedicated_to_cloud, ha, headroom, "
                                          r"idle"):
        parse_thresholds({"nope": {}})


def test_thresholds_hold_each_rules_settings_by_kind() -> None:
    t = Thresholds()
    idle = t.rules["idle"]
    assert t.idle is idle and t.settings(type(idle)) is idle
    changed = dataclasses.replace(t, idle=dataclasses.replace(idle, cpu_avg_max=0.02))
    assert changed.idle.cpu_avg_max == 0.02 and changed.rightsize == t.rightsize
    assert t.idle.cpu_avg_max == 0.05  # frozen: the original is untouched
    with pytest.raises(TypeError, match="no rule of kind 'nope'"):
        Thresholds(nope=RuleSettings())
    with pytest.raises(AttributeError):
        t.nope  # noqa: B018


@dataclasses.dataclass(frozen=True)
class _Settings(RuleSettings):
    min_savings_euros: Decimal = setting(Decimal("1.00"), money, "why")


def _rule(kind: str = "extra", **changes: Any) -> Rule:
    base: dict[str, Any] = dict(kind=kind, label=kind.title(), description="d.",
                                settings=_Settings, priority=70,
                                evaluate=lambda fleet, th: RuleResult())
    return Rule(**{**base, **changes})


@pytest.mark.parametrize("rules, message", [
    ([_rule("extra"), _rule("extra", label="Other")], "two rules with the kind 'extra'"),
    ([_rule("a", label="Same"), _rule("b", label="Same")], "two rules with the label 'Same'"),
    ([_rule("a", more_steps=(Step("b", 1, lambda f, t: RuleResult()),)), _rule("b")],
     "two rules with the kind 'b'"),
    ([_rule("Bad-Kind")], "expected a lower-case identifier"),
    ([_rule(settings=object)], "settings must extend RuleSettings"),
])
def test_indistinguishable_or_undeclared_rules_are_refused(rules: list[Rule],
                                                          message: str) -> None:
    with pytest.raises(TypeError, match=message):
        checked(rules)


def test_a_kind_cannot_be_a_general_key() -> None:
    with pytest.raises(TypeError, match="rule kind 'headroom' is a general key of rules:"):
        rule_kinds([_rule("headroom")])


def test_a_setting_must_be_declared() -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain(RuleSettings):
        limit: int = 3

    with pytest.raises(TypeError, match=r"Plain\.limit is not declared with setting"):
        checked([_rule(settings=Plain)])


def test_headline_of_an_unknown_kind_and_the_default_title() -> None:
    from service_fixtures import rightsize

    rec = rightsize()
    rec.kind = "gone"
    assert headline(rec) == "gone web-1: cx42 → cx22"
    assert _rule("extra").headline(rec) == "Extra web-1: cx42 → cx22"
