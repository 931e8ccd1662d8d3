"""A new rule is one module, nothing else edited (issue 13, point 5).

The test writes a rules package into a temporary folder, with the entry point a
``pip install`` of it would give (``infrascope_recommender.rules``), puts the folder on
``PYTHONPATH`` and runs the real recommender in subprocesses: the new kind is evaluated
and shown by ``recommender report``, listed in the API's OpenAPI schema and accepted by
its kind filter, its settings are checked (default, good value, bad value, unknown key)
and the docs check names the rule as missing. Without the folder, none of it exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from rules_fixtures import FakePrometheus, canned
from test_engine import one_idle_server

REPO = Path(__file__).resolve().parents[2]

RULE_MODULE = '''\
"""CI clean-up: every server of the CI project is deleted (a rule from elsewhere)."""

from dataclasses import dataclass
from decimal import Decimal

from infrascope_recommender.model import Reason, Recommendation, RuleResult, ServerRef
from infrascope_recommender.rules import Rule, RuleSettings
from infrascope_recommender.settings import money, setting, text


@dataclass(frozen=True)
class CiCleanupSettings(RuleSettings):
    project: str = setting("ci", text, "the project whose servers go")
    min_savings_euros: Decimal = setting(Decimal("1.00"), money, "not worth a ticket below")


def evaluate(fleet, thresholds):
    settings = thresholds.settings(CiCleanupSettings)
    result = RuleResult()
    for server in fleet.servers.values():
        if server.project == settings.project and server.monthly_cost is not None \\
                and server.monthly_cost >= settings.min_savings_euros:
            result.recommendations.append(Recommendation(
                kind="ci_cleanup", action="delete", servers=[ServerRef.of(server)],
                current_monthly_cost=server.monthly_cost, projected_monthly_cost=Decimal(0),
                reasons=[Reason(f"{server.name} belongs to project {settings.project}")],
                commands=[f"hcloud server delete {server.name}"]))
    return result


RULE = Rule(kind="ci_cleanup", label="CI clean-up", priority=5,
            description="Every server of the CI project is deleted.",
            settings=CiCleanupSettings, evaluate=evaluate)
'''


@pytest.fixture()
def plugin(tmp_path: Path) -> Path:
    """A folder holding the package ``acme_rules`` as installed: code and dist-info."""
    root = tmp_path / "site"
    package = root / "acme_rules"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "ci_cleanup.py").write_text(RULE_MODULE)
    info = root / "acme_rules-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[infrascope_recommender.rules]\nacme = acme_rules\n")
    return root


def run(*args: str, plugin: Path | None, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PROMETHEUS_", "RECOMMENDER_"))}
    if plugin is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(plugin),
                                                          env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd, env=env)


def recommender(*args: str, plugin: Path | None, cwd: Path
                ) -> subprocess.CompletedProcess[str]:
    return run("-m", "infrascope_recommender", *args, plugin=plugin, cwd=cwd)


def config(tmp_path: Path, url: str, rules: str = "{}") -> Path:
    path = tmp_path / "recommender.yml"
    path.write_text(f"prometheus:\n  url: {url}\n  retries: 0\n"
                    f"state:\n  path: {tmp_path / 'state.db'}\nrules: {rules}\n")
    return path


API_PROBE = textwrap.dedent('''\
    import json, sys
    from fastapi.testclient import TestClient
    from infrascope_recommender.api import create_app
    from infrascope_recommender.cli import build_service
    from infrascope_recommender.config import load_config

    service = build_service(load_config(sys.argv[1], env={}))
    client = TestClient(create_app(service))
    schema = client.get("/openapi.json").json()
    params = schema["paths"]["/api/recommendations"]["get"]["parameters"]
    [kind] = [p for p in params if p["name"] == "kind"]
    listed = client.get("/api/recommendations", params={"kind": "ci_cleanup"}).json()
    print(json.dumps({
        "query_enum": kind["schema"]["anyOf"][0]["enum"],
        "model_enum": schema["components"]["schemas"]["RecommendationModel"]["properties"]
                            ["kind"]["enum"],
        "listed": [(i["kind"], i["servers"][0]["name"]) for i in listed["items"]],
        "bogus": client.get("/api/recommendations", params={"kind": "bogus"}).status_code,
    }))
''')


def test_a_rule_from_an_installed_package_reaches_every_consumer(
        tmp_path: Path, plugin: Path) -> None:
    fake = FakePrometheus(canned(one_idle_server()))  # old-jenkins, project ci, 19.09 €
    with fake.running():
        cfg = config(tmp_path, fake.url)

        # recommender report: the rule runs (priority 5: before idle) and is shown
        report = recommender("report", "--config", str(cfg), plugin=plugin, cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        assert "  CI clean-up: 1, 19.09 EUR/month" in report.stdout
        assert "ci_cleanup" in report.stdout
        assert "CI clean-up old-jenkins, saves 19.09 EUR/month" in report.stdout
        without = recommender("report", "--config", str(cfg), plugin=None, cwd=tmp_path)
        assert without.returncode == 0 and "ci_cleanup" not in without.stdout
        assert "Delete idle old-jenkins" in without.stdout

        # the API: OpenAPI lists the kind, the filter accepts it, an unknown kind is a 422
        ran = recommender("run", "--config", str(cfg), plugin=plugin, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    probe = tmp_path / "probe.py"
    probe.write_text(API_PROBE)
    api = run(str(probe), str(cfg), plugin=plugin, cwd=tmp_path)
    assert api.returncode == 0, api.stderr
    seen = json.loads(api.stdout)
    builtin = ["idle", "consolidation", "rightsize", "underprovisioned", "dedicated_to_cloud"]
    assert seen["query_enum"] == seen["model_enum"] == [*builtin, "ci_cleanup"]
    assert seen["listed"] == [["ci_cleanup", "old-jenkins"]]
    assert seen["bogus"] == 422

    # the thresholds: its section exists, with defaults, checked values, unknown keys refused
    def check_config(rules: str, plugin: Path | None = plugin) -> subprocess.CompletedProcess[str]:
        return recommender("check-config", "--config", str(config(tmp_path, fake.url, rules)),
                           plugin=plugin, cwd=tmp_path)

    assert check_config("{ci_cleanup: {}}").returncode == 0
    assert check_config("{ci_cleanup: {project: build, min_savings_euros: '2.50'}}"
                        ).returncode == 0
    bad = check_config("{ci_cleanup: {min_savings_euros: lots}}")
    assert bad.returncode == 2
    assert "rules.ci_cleanup.min_savings_euros: expected an amount of euros" in bad.stderr
    unknown = check_config("{ci_cleanup: {owner: me}}")
    assert unknown.returncode == 2
    assert ("rules.ci_cleanup.owner: unknown key (known: enabled, min_savings_euros, "
            "project)") in unknown.stderr
    absent = check_config("{ci_cleanup: {}}", plugin=None)
    assert absent.returncode == 2 and "rules.ci_cleanup: unknown key" in absent.stderr

    # the docs check: the committed docs lack the rule; the diff shows what it would add
    docs = run(str(REPO / "scripts" / "rules_docs.py"), "--check", plugin=plugin, cwd=tmp_path)
    assert docs.returncode == 1
    assert "+### CI clean-up (`ci_cleanup`, priority 5)" in docs.stdout
    assert "+| `project` | `ci` | the project whose servers go |" in docs.stdout
    assert "+| CI clean-up | `ci_cleanup` | Every server of the CI project is deleted. |" \
        in docs.stdout
    assert "out of date: run scripts/rules_docs.py" in docs.stderr
    clean = run(str(REPO / "scripts" / "rules_docs.py"), "--check", plugin=None, cwd=tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr
