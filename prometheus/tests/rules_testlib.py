"""Shared helpers of the rules-pack tests: paths, tools, and the rule files parsed."""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from infrascope_core.service import executable
from infrascope_core.victoriametrics import VMALERT

PROMETHEUS_DIR = Path(__file__).resolve().parent.parent
REPO = PROMETHEUS_DIR.parent
RULES_DIR = PROMETHEUS_DIR / "rules"
TESTS_DIR = PROMETHEUS_DIR / "tests"
RUNBOOKS_DIR = REPO / "docs" / "runbooks"
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
PROMTOOL_TESTS = sorted(TESTS_DIR.glob("*.test.yml"))

needs_vmalert = pytest.mark.skipif(
    not executable(VMALERT), reason="vmalert not installed (apt-get install victoria-metrics)")


@cache
def generator() -> ModuleType:
    """prometheus/generate.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("infrascope_rules_generate",
                                                  PROMETHEUS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def load_rule_file(path: Path) -> list[dict[str, Any]]:
    """The groups of a rule file."""
    return yaml.safe_load(path.read_text())["groups"]


def all_rules() -> list[tuple[str, dict[str, Any]]]:
    """(group name, rule) of every rule in the committed rule files."""
    return [(g["name"], r) for path in RULE_FILES for g in load_rule_file(path)
            for r in g["rules"]]


def recording_rules() -> list[dict[str, Any]]:
    return [r for _, r in all_rules() if "record" in r]


def alerting_rules() -> list[dict[str, Any]]:
    return [r for _, r in all_rules() if "alert" in r]
