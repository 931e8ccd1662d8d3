"""alertmanager.yml and its demo variant: valid, production-shaped, and in step.

- ``amtool check-config`` accepts both files.
- The demo file is what render_demo.py makes of the production file (not stale), and
  both have the same routing tree, inhibition rules and receiver names.
- Secrets appear only as ``*_file`` fields; matchers use ``matchers`` syntax only.
- The real Alertmanager loads the production file with the flags README.md gives.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from alertmanager_testlib import AMTOOL, DEMO, PRODUCTION, load_render_demo

from infrascope_core.alertmanager import Alertmanager, Amtool

pytestmark = pytest.mark.skipif(not Path(AMTOOL).exists(),
                                reason="amtool (Debian prometheus-alertmanager) is not installed")

# Fields that would hold a secret inline; each has a *_file (or credentials_file) twin.
INLINE_SECRETS = {
    "slack_api_url", "api_url", "smtp_auth_password", "auth_password", "auth_secret",
    "routing_key", "service_key", "api_key", "password", "bearer_token", "credentials",
    "token", "bot_token", "webhook_url", "opsgenie_api_key", "wechat_api_secret",
    "victorops_api_key", "user_key",
}
DEPRECATED_MATCHING = {"match", "match_re", "source_match", "source_match_re",
                       "target_match", "target_match_re"}


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def walk(node: Any, path: str = "") -> list[tuple[str, str, Any]]:
    """Every (path, key, value) of a YAML tree."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((path, str(key), value))
            out += walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out += walk(value, f"{path}[{i}]")
    return out


@pytest.mark.parametrize("config", [PRODUCTION, DEMO], ids=["production", "demo"])
def test_amtool_check_config(amtool: Amtool, config: Path) -> None:
    proc = amtool.check_config(config)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout
    assert "1 templates" in proc.stdout


def test_demo_file_is_generated_from_production() -> None:
    render_demo = load_render_demo()
    expected = render_demo.dump(render_demo.render(load(PRODUCTION)))
    assert DEMO.read_text(encoding="utf-8") == expected, (
        "alertmanager.demo.yml is stale: run .venv/bin/python alertmanager/render_demo.py")
    assert render_demo.main(["--check"]) == 0


def test_demo_and_production_trees_are_identical() -> None:
    production, demo = load(PRODUCTION), load(DEMO)
    assert demo["route"] == production["route"]
    assert demo["inhibit_rules"] == production["inhibit_rules"]
    assert demo["templates"] == production["templates"]
    assert [r["name"] for r in demo["receivers"]] == [r["name"] for r in production["receivers"]]


def test_demo_receivers_are_local_webhooks() -> None:
    for receiver in load(DEMO)["receivers"]:
        kinds = {k for k in receiver if k.endswith("_configs")}
        if receiver["name"] == "null":
            assert kinds == set()
            continue
        assert kinds == {"webhook_configs"}, receiver
        for hook in receiver["webhook_configs"]:
            assert hook["url"].startswith("http://127.0.0.1:"), hook
            assert hook["url"].endswith("/" + receiver["name"])


def test_fast_render_changes_only_timings(amtool: Amtool, tmp_path: Path) -> None:
    render_demo = load_render_demo()
    production = load(PRODUCTION)
    fast = render_demo.render(production, "http://127.0.0.1:1/alerts", fast=True,
                              template_dir=PRODUCTION.parent)

    def strip(route: dict[str, Any]) -> dict[str, Any]:
        return {k: ([strip(r) for r in v] if k == "routes" else v) for k, v in route.items()
                if k not in ("group_wait", "group_interval", "repeat_interval")}

    assert strip(fast["route"]) == strip(production["route"])
    assert fast["route"]["group_wait"] == "1s"
    assert all(r.get("group_wait", "1s") == "1s" for r in fast["route"]["routes"])
    assert fast["templates"] == [str(PRODUCTION.parent / "templates" / "*.tmpl")]
    out = tmp_path / "fast.yml"
    out.write_text(render_demo.dump(fast))
    proc = amtool.check_config(out)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_production_secrets_only_from_files() -> None:
    config = load(PRODUCTION)
    file_fields = []
    for path, key, value in walk(config):
        assert key not in INLINE_SECRETS, f"inline secret {path}.{key}: use {key}_file"
        if key.endswith("_file"):
            file_fields.append(key)
            assert str(value).startswith("/etc/alertmanager/secrets/"), (path, key, value)
    # Slack, SMTP and PagerDuty all get theirs from files.
    assert {"slack_api_url_file", "smtp_auth_password_file",
            "routing_key_file"} <= set(file_fields)


@pytest.mark.parametrize("config", [PRODUCTION, DEMO], ids=["production", "demo"])
def test_matchers_syntax_only(config: Path) -> None:
    for path, key, _ in walk(load(config)):
        assert key not in DEPRECATED_MATCHING, f"{path}.{key}: use matchers"


def test_production_shape() -> None:
    config = load(PRODUCTION)
    root = config["route"]
    assert "matchers" not in root  # the root matches everything
    # One notification per alert name and receiver: no route groups per server.
    assert root["group_by"] == ["alertname"]
    assert all(r["group_by"] == (["category"] if r["receiver"] == "digest" else ["alertname"])
               for r in root["routes"] if r["receiver"] != "null")
    assert (root["group_wait"], root["group_interval"], root["repeat_interval"]) == (
        "30s", "5m", "4h")
    digests = [r for r in root["routes"] if r["receiver"] == "digest"]
    assert digests and all(
        (r["group_by"], r["group_wait"], r["group_interval"], r["repeat_interval"])
        == (["category"], "10m", "24h", "7d") for r in digests)
    null = next(r for r in config["receivers"] if r["name"] == "null")
    assert null == {"name": "null"}
    first = config["inhibit_rules"][0]
    assert first["source_matchers"] == ['severity="critical"']
    assert first["target_matchers"] == ['severity="warning"']
    assert {"alertname", "source", "server_id"} <= set(first["equal"])


def test_alertmanager_loads_production_config(alertmanager: Callable[..., Alertmanager]
                                              ) -> None:
    """The real Alertmanager starts on the production file (secret files absent: they are
    read at send time) and, with --data.retention=192h, warns about nothing."""
    am = alertmanager(PRODUCTION, flags=["--data.retention=192h"])
    status = am.get("/status")
    assert status["config"]["original"]  # loaded
    am.stop()
    text = am.log_file.read_text()
    assert "level=warn" not in text and "level=error" not in text, text
