"""Shared helpers of the Alertmanager tests (imported by module name from this folder).

Where the alerts come from: every ``alert:`` rule in ``prometheus/rules/*.yml`` (the
rules pack). Only while that folder holds no alert at all do the tests fall back to
``fixtures/fallback-alerts.rules.yml``; as soon as the pack has alerts the tests use
them, with nothing to switch.
"""

from __future__ import annotations

import importlib.util
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from infrascope_core.alertmanager import ALERTMANAGER, AMTOOL, Amtool
from infrascope_core.prometheus import PROMETHEUS

__all__ = ["ALERTMANAGER", "AMTOOL", "PROMETHEUS"]  # the binaries, for the skip markers

AM_DIR = Path(__file__).resolve().parents[1]
ROOT = AM_DIR.parent
RULES_DIR = ROOT / "prometheus" / "rules"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FALLBACK_RULES = FIXTURES / "fallback-alerts.rules.yml"
PRODUCTION = AM_DIR / "alertmanager.yml"
DEMO = AM_DIR / "alertmanager.demo.yml"
TEMPLATE_GLOB = str(AM_DIR / "templates" / "*.tmpl")

# The label contract with the rules pack (README.md "Label and annotation contract").
SEVERITIES = ("critical", "warning", "info")
CATEGORIES = ("availability", "capacity", "cost", "exporter")
ALERT_PREFIX = "InfraScope"
RECOMMENDATION_PREFIX = "InfraScopeRecommendation"
REQUIRED_ANNOTATIONS = ("summary", "description", "runbook_url")


@dataclass(frozen=True)
class AlertRule:
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    file: Path
    group: str
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.name}-{self.labels.get('severity', 'no-severity')}"


def rule_files() -> list[Path]:
    """The rule files whose alerts the tests check: the pack's, else the fallback."""
    files = sorted([*RULES_DIR.glob("*.yml"), *RULES_DIR.glob("*.yaml")])
    if any(_alerts_in(f) for f in files):
        return files
    return [FALLBACK_RULES]


def using_fallback() -> bool:
    return rule_files() == [FALLBACK_RULES]


def _alerts_in(path: Path) -> list[AlertRule]:
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = []
    for group in data.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" in rule:
                out.append(AlertRule(
                    name=str(rule["alert"]),
                    labels={str(k): str(v) for k, v in (rule.get("labels") or {}).items()},
                    annotations={str(k): str(v)
                                 for k, v in (rule.get("annotations") or {}).items()},
                    file=path, group=str(group.get("name")), raw=rule))
    return out


def alert_rules() -> list[AlertRule]:
    return [a for f in rule_files() for a in _alerts_in(f)]


def intended_receiver(alertname: str, labels: dict[str, str]) -> str:
    """The routing intent, written independently of alertmanager.yml.

    Raises ValueError for an alert outside the label contract: such an alert has no
    intended receiver, so the routing test fails for it.
    """
    if not alertname.startswith(ALERT_PREFIX):
        raise ValueError(f"{alertname}: alert names start with {ALERT_PREFIX!r}")
    severity, category = labels.get("severity"), labels.get("category")
    if severity not in SEVERITIES:
        raise ValueError(f"{alertname}: label severity={severity!r} is not one of {SEVERITIES}")
    if category not in CATEGORIES:
        raise ValueError(f"{alertname}: label category={category!r} is not one of {CATEGORIES}")
    if severity == "critical":
        return "pager"      # pages whatever the category, cost included
    if severity == "info":
        return "null"       # not routed
    if category == "cost" or alertname.startswith(RECOMMENDATION_PREFIX):
        return "digest"     # low-frequency digest
    return "chat"


def matcher_arg(name: str, value: str) -> str:
    """``name="value"`` as amtool parses it (quotes and backslashes escaped)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


def routes_test(config: Path, labels: dict[str, str],
                receivers: str | None = None) -> subprocess.CompletedProcess[str]:
    args = ["config", "routes", "test", f"--config.file={config}"]
    if receivers is not None:
        args.append(f"--verify.receivers={receivers}")
    args += [matcher_arg(k, v) for k, v in labels.items()]
    return Amtool().run(*args)


def render_template(text: str, data: Path, *, html: bool = False) -> str:
    args = ["template", "render", f"--template.glob={TEMPLATE_GLOB}",
            f"--template.text={text}", f"--template.data={data}"]
    if html:
        args.append("--template.type=html")
    proc = Amtool().run(*args)
    assert proc.returncode == 0, f"amtool template render failed:\n{proc.stderr}"
    return proc.stdout


def load_render_demo() -> ModuleType:
    """alertmanager/render_demo.py as a module (alertmanager/ is not a package)."""
    spec = importlib.util.spec_from_file_location("infrascope_am_render_demo",
                                                  AM_DIR / "render_demo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
