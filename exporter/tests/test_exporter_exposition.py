"""The exposition, the HTTP endpoints and the configuration of the exporter.

The exposition of the demo fleet after a full refresh (with Cloud metrics)
must pass ``promtool check metrics`` silently; every per-server series is
keyed by ``source`` and ``server_id``; scrapes never reach the APIs. Then the
configuration: errors name their key, precedence is default < YAML < env <
flag, and no output ever shows a token.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter_testlib import (
    ANALYTICS_TOKEN,
    ROBOT_PASSWORD,
    SECRETS,
    WEBSHOP_TOKEN,
    demo_config_data,
    refresh_all,
    serving,
)
from infrascope_core.prometheus import Promtool
from infrascope_exporter.config import (
    DEFAULT_CLOUD_ENDPOINT,
    ConfigError,
    Secret,
    load_config,
)
from infrascope_exporter.exporter import Exporter
from infrascope_exporter.exposition import CACHED, label_name
from infrascope_sim.fleet import PlacementGroup, load_fleet
from infrascope_sim.state import Simulator

EXPORTER_CLI = Path(sys.executable).parent / "infrascope-exporter"


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture
def refreshed(served, make_config) -> Iterator[Exporter]:
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter, metrics=True)
    yield exporter
    exporter.stop()


# ---------------------------------------------------------------------------
# The exposition
# ---------------------------------------------------------------------------
def test_promtool_check_metrics_reports_nothing(promtool: Promtool, refreshed: Exporter
                                                ) -> None:
    text = refreshed.rendered
    assert b"hetzner_server_cpu_cores_used" in text  # metrics were polled
    result = promtool.check_metrics(text)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_no_duplicate_series(refreshed: Exporter) -> None:
    series: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for fam in text_string_to_metric_families(refreshed.rendered.decode()):
        for s in fam.samples:
            series[(s.name, tuple(sorted(s.labels.items())))] += 1
    assert [k for k, n in series.items() if n > 1] == []


def test_every_per_server_series_has_source_and_server_id(refreshed: Exporter) -> None:
    fams = families(refreshed.rendered.decode())
    per_server = [f for name, f in fams.items()
                  if name.startswith("hetzner_server_") and not name.startswith(
                      "hetzner_server_type_")]
    assert len(per_server) >= 20
    ids: dict[str, set[str]] = {"cloud": set(), "dedicated": set()}
    for fam in per_server:
        assert fam.samples, fam.name
        for s in fam.samples:
            assert s.labels.get("source") in ("cloud", "dedicated"), (fam.name, s.labels)
            assert s.labels.get("server_id", "").isdigit(), (fam.name, s.labels)
            ids[s.labels["source"]].add(s.labels["server_id"])
    fleet = load_fleet("demo")
    assert ids["cloud"] == {str(s.id) for p in fleet.projects for s in p.servers}
    assert fleet.robot is not None
    assert ids["dedicated"] == {str(d.number) for d in fleet.robot.servers}
    info = fams["hetzner_server_info"].samples
    assert len(info) == 23
    names = {s.labels["server_id"]: s.labels["server_name"] for s in info}
    assert names["41000108"] == "old-jenkins" and names["2391006"] == "auction-box"
    assert len(fams["hetzner_server_cpu_cores_used"].samples) == 16


def test_help_says_cached(refreshed: Exporter) -> None:
    fams = families(refreshed.rendered.decode())
    data = [f for name, f in fams.items()
            if name.startswith(("hetzner_server_", "hetzner_resource_", "hetzner_pricing_",
                                "hetzner_dedicated_"))]
    assert len(data) >= 30
    for fam in data:
        assert fam.documentation.endswith(CACHED.strip()), fam.name
        assert "Cached" in fam.documentation and "hetzner_api_last_success_timestamp_seconds" \
            in fam.documentation
    # Freshness and up are exposed next to the cached data.
    assert {s.labels["project"] for s in fams["hetzner_api_up"].samples} == {
        "webshop", "analytics", "robot"}
    assert all(s.value == 1 for s in fams["hetzner_api_up"].samples)
    assert all(s.value > 0 for s in
               fams["hetzner_api_last_success_timestamp_seconds"].samples)


def test_label_keys_are_sanitised(sim: Simulator, served, make_config) -> None:
    web1 = sim.fleet.projects[0].servers[0]
    assert web1.name == "shop-web-1"
    web1.labels.update({"app.kubernetes.io/part-of": "shop", "cost-center": "4711",
                        "Team_Name": "Web Ops"})
    data = demo_config_data(served)
    data["robot"]["labels"][2391006] = {"backup.policy": "none", "owner-team": "infra"}
    exporter = Exporter(make_config(data))
    refresh_all(exporter, metrics=False)
    try:
        fams = families(exporter.rendered.decode())
        labels = {(s.labels["source"], s.labels["server_id"]): s.labels
                  for s in fams["hetzner_server_labels"].samples}
        sd = {g["labels"]["server_id"]: g["labels"] for g in json.loads(exporter.rendered_sd)}
    finally:
        exporter.stop()
    web = labels[("cloud", "41000101")]
    assert web["label_app_kubernetes_io_part_of"] == "shop"
    assert web["label_cost_center"] == "4711"
    assert web["label_Team_Name"] == "Web Ops"
    assert web["label_env"] == "production" and web["label_role"] == "web"
    assert not any(k.startswith("label_") and not k[6:].replace("_", "").isalnum()
                   for k in web)
    auction = labels[("dedicated", "2391006")]
    assert auction["label_backup_policy"] == "none" and auction["label_owner_team"] == "infra"
    assert "label_env" not in auction  # configured labels replace, they are not merged
    assert label_name("a.b-c/d e") == "label_a_b_c_d_e"
    # http_sd carries the same keys as Prometheus' hetzner_sd_configs meta labels.
    assert sd["41000101"]["__meta_hetzner_hcloud_label_app_kubernetes_io_part_of"] == "shop"
    assert sd["41000101"]["__meta_hetzner_hcloud_labelpresent_cost_center"] == "true"
    assert sd["2391006"]["__meta_hetzner_robot_label_backup_policy"] == "none"
    # Still a valid exposition.
    if (promtool := Promtool()).available():
        result = promtool.check_metrics(exporter.rendered)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_placement_groups_come_from_the_servers_list(sim: Simulator, served,
                                                     make_config) -> None:
    """Each Cloud server in a placement group gets one info series, read from the group
    the server embeds in GET /servers: the exporter asks /placement_groups nothing."""
    webshop = sim.fleet.projects[0]
    web1, web2 = (next(s for s in webshop.servers if s.name == n)
                  for n in ("shop-web-1", "shop-web-2"))
    group = PlacementGroup(4242, "web-spread", "spread", web1.created, {"role": "web"},
                           [web1.id, web2.id])
    webshop.placement_groups.append(group)
    web1.placement_group = web2.placement_group = group.id
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter, metrics=False)
    try:
        fams = families(exporter.rendered.decode())
    finally:
        exporter.stop()
    info = fams["hetzner_server_placement_group_info"]
    assert info.documentation.endswith(CACHED)
    groups = {g.id: g for p in sim.fleet.projects for g in p.placement_groups}
    grouped = [s for p in sim.fleet.projects for s in p.servers if s.placement_group]
    assert {s.name for s in grouped} == {"shop-web-1", "shop-web-2", "search-1", "search-2"}
    assert {s.labels["server_id"]: (s.labels, s.value) for s in info.samples} == {
        str(s.id): ({"source": "cloud", "server_id": str(s.id),
                     "placement_group_id": str(s.placement_group),
                     "placement_group": groups[s.placement_group].name,
                     "placement_group_type": "spread"}, 1.0)
        for s in grouped}
    assert info.samples and {s.labels["placement_group"] for s in info.samples} == {
        "web-spread", "search-spread"}
    endpoints = {row["endpoint"] for row in sim.stats()["rows"]}
    assert "GET /servers" in endpoints
    assert not any("placement_groups" in e for e in endpoints)
    if (promtool := Promtool()).available():
        result = promtool.check_metrics(exporter.rendered)
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


# ---------------------------------------------------------------------------
# HTTP endpoints
# ---------------------------------------------------------------------------
def test_endpoints(served, make_config) -> None:
    exporter = Exporter(make_config(demo_config_data(served)))
    with serving(exporter) as base:
        assert httpx.get(base + "/healthz").status_code == 200
        before = httpx.get(base + "/readyz")
        assert before.status_code == 503
        refresh_all(exporter, metrics=False)
        assert httpx.get(base + "/readyz").status_code == 200
        assert httpx.get(base + "/healthz").status_code == 200

        landing = httpx.get(base + "/")
        assert landing.status_code == 200
        assert landing.headers["content-type"].startswith("text/html")
        assert 'href="/metrics"' in landing.text

        plain = httpx.get(base + "/metrics", headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200
        assert "content-encoding" not in plain.headers
        assert plain.headers["content-type"].startswith("text/plain; version=0.0.4")
        raw = httpx.Client().send(
            httpx.Request("GET", base + "/metrics", headers={"Accept-Encoding": "gzip"}),
            stream=True)
        try:
            assert raw.headers["content-encoding"] == "gzip"
            compressed = b"".join(raw.iter_raw())
        finally:
            raw.close()
        assert int(raw.headers["content-length"]) == len(compressed) < len(plain.content)
        # the rendering, then the process's own series collected at each scrape
        assert gzip.decompress(compressed).startswith(exporter.rendered)
        assert plain.content.startswith(exporter.rendered)
        assert b"\nprocess_cpu_seconds_total " in plain.content

        head = httpx.head(base + "/metrics")
        assert head.status_code == 200 and head.content == b""
        assert httpx.get(base + "/nope").status_code == 404

        everything = httpx.get(base + "/sd").json()
        cloud = httpx.get(base + "/sd/cloud").json()
        dedicated = httpx.get(base + "/sd/dedicated").json()
    assert len(everything) == 23 and len(cloud) == 16 and len(dedicated) == 7
    assert {g["labels"]["source"] for g in cloud} == {"cloud"}
    assert {g["labels"]["source"] for g in dedicated} == {"dedicated"}
    assert {g["labels"]["__meta_hetzner_role"] for g in cloud} == {"hcloud"}
    assert {g["labels"]["__meta_hetzner_role"] for g in dedicated} == {"robot"}
    key = lambda g: g["labels"]["server_id"]  # noqa: E731
    assert sorted(cloud + dedicated, key=key) == sorted(everything, key=key)
    for g in everything:
        assert len(g["targets"]) == 1 and g["targets"][0].endswith(":8791")
        assert {"source", "server_id", "server_name"} <= set(g["labels"])


def test_scrapes_never_call_the_api(served, make_config) -> None:
    exporter = Exporter(make_config(demo_config_data(served)))
    refresh_all(exporter, metrics=True)
    with serving(exporter) as base:
        before = httpx.get(served.control + "/stats").json()
        assert before["total"] > 0
        for _ in range(20):
            assert httpx.get(base + "/metrics").status_code == 200
            assert httpx.get(base + "/metrics",
                             headers={"Accept-Encoding": "gzip"}).status_code == 200
        for path in ("/sd", "/sd/cloud", "/sd/dedicated", "/readyz", "/healthz", "/"):
            assert httpx.get(base + path).status_code == 200
        after = httpx.get(served.control + "/stats").json()
    assert after == before


# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------
def _load(tmp_path: Path, data: Any, *argv: str, environ: dict[str, str] | None = None):
    path = tmp_path / "exporter.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return load_config(["--config.file", str(path), *argv], environ=environ or {})


GOOD: dict[str, Any] = {"cloud": {"projects": [{"name": "webshop", "token": WEBSHOP_TOKEN}]}}


@pytest.mark.parametrize(("data", "key"), [
    ({**GOOD, "metrics": {"port": 1}}, "metrics: unknown configuration section"),
    ({**GOOD, "refresh": {"inventory_interval": "5 minutes"}}, "refresh.inventory_interval:"),
    ({**GOOD, "refresh": {"metrics_interval": "0s"}}, "refresh.metrics_interval:"),
    ({**GOOD, "http": {"timeout": "-1s"}}, "http.timeout:"),
    ({"cloud": {"projects": [{"name": "webshop"}]}}, "cloud.projects[0].token:"),
    ({"cloud": {"projects": [{"token": WEBSHOP_TOKEN}]}}, "cloud.projects[0].name:"),
    ({"cloud": {"projects": [{"name": "a", "token": "x", "token_file": "/nonexistent"}]}},
     "cloud.projects[0]:"),
    ({"cloud": {"projects": "webshop"}}, "cloud.projects:"),
    ({}, "cloud.projects: nothing to export"),
    ({**GOOD, "prices": {"dedicated_servers": {2391001: 109.0}}},
     "prices.dedicated_servers.2391001:"),
    ({**GOOD, "prices": {"dedicated_products": {"AX42": 52.5}}},
     "prices.dedicated_products.AX42:"),
    ({**GOOD, "prices": {"cloud_servers": {41000101: "cheap"}}}, "prices.cloud_servers.41000101:"),
    ({**GOOD, "prices": {"cloud_servers": {"web-1": "4.99"}}}, "prices.cloud_servers.web-1:"),
    ({**GOOD, "prices": {"vat_rate_percent": 19.0}}, "prices.vat_rate_percent:"),
    ({**GOOD, "prices": ["AX42", "52.00"]}, "prices: must be a mapping"),
    ({**GOOD, "prices": {"dedicated_products": ["AX42"]}}, "prices.dedicated_products:"),
    ({**GOOD, "prices": {"mode": "brutto"}}, "prices.mode:"),
    ({**GOOD, "budget": {"share": 1.5}}, "budget.share:"),
    ({**GOOD, "sd": {"address": "private_ipv4"}}, "sd.address:"),
    ({**GOOD, "sd": {"agent_port": 70000}}, "sd.agent_port:"),
    ({**GOOD, "web": {"listen_address": "8790"}}, "web.listen_address:"),
    ({**GOOD, "robot": {"user": "#ws+x"}}, "robot.password:"),
    ({**GOOD, "robot": {"user": "#ws+x", "password": "p", "labels": {"db": {"a": "b"}}}},
     "robot.labels.db:"),
    ({**GOOD, "cloud": {"projects": [{"name": "a", "token": "x"},
                                     {"name": "a", "token": "y"}]}}, "cloud.projects:"),
    ("cloud: [unclosed", "config.file:"),
    ("- just\n- a list\n", "config.file:"),
])
def test_bad_config_names_the_key(tmp_path: Path, data: Any, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, data)
    assert str(err.value).startswith(key), str(err.value)
    assert WEBSHOP_TOKEN not in str(err.value)


def test_env_and_flags_override_yaml(tmp_path: Path) -> None:
    data = {**GOOD, "refresh": {"inventory_interval": "5m"}, "prices": {"mode": "net"},
            "cloud": {**GOOD["cloud"], "metrics": True}, "sd": {"agent_port": 9000}}
    assert _load(tmp_path, data).inventory_interval == 300.0
    env = {"INFRASCOPE_INVENTORY_INTERVAL": "10m", "INFRASCOPE_PRICE_MODE": "gross",
           "INFRASCOPE_CLOUD_METRICS": "false", "INFRASCOPE_SD_AGENT_PORT": "9100"}
    from_env = _load(tmp_path, data, environ=env)
    assert (from_env.inventory_interval, from_env.price_mode, from_env.cloud_metrics,
            from_env.agent_port) == (600.0, "gross", False, 9100)
    flags = _load(tmp_path, data, "--inventory-interval", "15m", "--price-mode", "net",
                  "--cloud-metrics", "--sd.agent-port", "9200", environ=env)
    assert (flags.inventory_interval, flags.price_mode, flags.cloud_metrics,
            flags.agent_port) == (900.0, "net", True, 9200)
    # An empty variable does not override; a bad one is named by its variable or flag.
    assert _load(tmp_path, data, environ={"INFRASCOPE_INVENTORY_INTERVAL": ""}
                 ).inventory_interval == 300.0
    with pytest.raises(ConfigError, match="^INFRASCOPE_INVENTORY_INTERVAL:"):
        _load(tmp_path, data, environ={"INFRASCOPE_INVENTORY_INTERVAL": "soon"})
    with pytest.raises(ConfigError, match="^--inventory-interval:"):
        _load(tmp_path, data, "--inventory-interval", "soon")
    # INFRASCOPE_CONFIG names the file when no flag does.
    path = tmp_path / "exporter.yaml"
    assert load_config([], environ={"INFRASCOPE_CONFIG": str(path)}).inventory_interval == 300


def test_defaults() -> None:
    config = load_config([], environ={"HCLOUD_TOKEN": "t"})
    assert (config.inventory_interval, config.pricing_interval, config.metrics_interval,
            config.robot_interval, config.request_budget, config.price_mode,
            config.listen_address, config.sd_address, config.agent_port) == (
        300.0, 21600.0, 300.0, 600.0, 0.8, "net", "0.0.0.0:8790", "public_ipv4", 8791)
    assert config.robot is None


def test_hcloud_token_single_project_mode() -> None:
    config = load_config([], environ={"HCLOUD_TOKEN": WEBSHOP_TOKEN})
    assert len(config.projects) == 1
    project = config.projects[0]
    assert (project.name, project.endpoint) == ("default", DEFAULT_CLOUD_ENDPOINT)
    assert project.token.reveal() == WEBSHOP_TOKEN
    named = load_config([], environ={"HCLOUD_TOKEN": WEBSHOP_TOKEN,
                                     "HCLOUD_PROJECT_NAME": "shop",
                                     "HCLOUD_ENDPOINT": "http://127.0.0.1:9/v1/"})
    assert (named.projects[0].name, named.projects[0].endpoint) == ("shop",
                                                                   "http://127.0.0.1:9/v1")
    assert WEBSHOP_TOKEN not in repr(named) and WEBSHOP_TOKEN not in str(named.describe())
    assert repr(Secret(WEBSHOP_TOKEN)) == "Secret('***')" == str(Secret(WEBSHOP_TOKEN))


def test_single_project_joins_yaml_projects(tmp_path: Path) -> None:
    data = {"cloud": {"projects": [{"name": "analytics", "token": ANALYTICS_TOKEN}]}}
    config = _load(tmp_path, data, environ={"HCLOUD_TOKEN": WEBSHOP_TOKEN,
                                            "HCLOUD_PROJECT_NAME": "webshop"})
    assert [p.name for p in config.projects] == ["analytics", "webshop"]
    with pytest.raises(ConfigError, match="^cloud.projects: duplicate"):
        _load(tmp_path, data, environ={"HCLOUD_TOKEN": WEBSHOP_TOKEN,
                                       "HCLOUD_PROJECT_NAME": "analytics"})


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(WEBSHOP_TOKEN + "\n")
    config = load_config(["--hcloud-token-file", str(token_file)],
                         environ={"HCLOUD_TOKEN": "ignored-when-a-file-is-given"})
    assert config.projects[0].token.reveal() == WEBSHOP_TOKEN
    via_env = load_config([], environ={"HCLOUD_TOKEN_FILE": str(token_file)})
    assert via_env.projects[0].token.reveal() == WEBSHOP_TOKEN
    listed = _load(tmp_path, {"cloud": {"projects": [
        {"name": "webshop", "token_file": str(token_file)}]}})
    assert listed.projects[0].token.reveal() == WEBSHOP_TOKEN
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match="^cloud.token_file: .* is empty"):
        load_config(["--hcloud-token-file", str(empty)], environ={})
    with pytest.raises(ConfigError, match="^cloud.token_file: cannot read"):
        load_config(["--hcloud-token-file", str(tmp_path / "missing")], environ={})
    with pytest.raises(ConfigError, match=r"^cloud.projects\[0\].token_file: cannot read"):
        _load(tmp_path, {"cloud": {"projects": [
            {"name": "webshop", "token_file": str(tmp_path / "missing")}]}})
    password = tmp_path / "password"
    password.write_text(ROBOT_PASSWORD)
    robot = load_config(["--robot-user", "#ws+x", "--robot-password-file", str(password)],
                        environ={})
    assert robot.robot is not None and robot.robot.password.reveal() == ROBOT_PASSWORD


def _check_config(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HCLOUD_", "ROBOT_", "INFRASCOPE_"))}
    return subprocess.run([str(EXPORTER_CLI), "check-config", *argv], capture_output=True,
                          text=True, timeout=60, env={**clean, **(env or {})})


@pytest.mark.skipif(not EXPORTER_CLI.exists() and shutil.which("infrascope-exporter") is None,
                    reason="console script not installed")
def test_check_config_exit_codes_and_no_secrets(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({
        "cloud": {"projects": [{"name": "webshop", "token": WEBSHOP_TOKEN},
                               {"name": "analytics", "token": ANALYTICS_TOKEN}]},
        "robot": {"user": "#ws+DemoShop", "password": ROBOT_PASSWORD},
    }))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "cloud": {"projects": [{"name": "webshop", "token": WEBSHOP_TOKEN}]},
        "robot": {"user": "#ws+DemoShop", "password": ROBOT_PASSWORD},
        "refresh": {"inventory_interval": "every now and then"},
    }))
    # Invalid YAML on the very line that holds a secret: YAML's own error message would quote
    # that line, so the exporter must report the position only.
    broken = tmp_path / "broken.yaml"
    broken.write_text(f'cloud:\n  projects:\n    - name: webshop\n      token: "{WEBSHOP_TOKEN}\n'
                      f"robot: {{user: x, password: {ROBOT_PASSWORD}: y}}\n")
    broken_flow = tmp_path / "broken_flow.yaml"
    broken_flow.write_text(f"cloud: {{projects: [{{name: a, token: {WEBSHOP_TOKEN}: x}}]}}\n")

    ok = _check_config("--config.file", str(good))
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout
    assert "webshop" in ok.stdout and "analytics" in ok.stdout
    ok_env = _check_config(env={"HCLOUD_TOKEN": ANALYTICS_TOKEN})
    assert ok_env.returncode == 0, ok_env.stderr

    failed = _check_config("--config.file", str(bad))
    assert failed.returncode == 2
    assert "refresh.inventory_interval" in failed.stderr
    for path in (broken, broken_flow):
        result = _check_config("--config.file", str(path))
        assert result.returncode == 2
        assert "config.file:" in result.stderr and "not valid YAML at line" in result.stderr
    nothing = _check_config()
    assert nothing.returncode == 2 and "nothing to export" in nothing.stderr
    bad_flag = _check_config("--config.file", str(good), "--price-mode", "brutto")
    assert bad_flag.returncode == 2 and "prices.mode" in bad_flag.stderr

    outputs = [ok, ok_env, failed, nothing, bad_flag,
               *(_check_config("--config.file", str(p)) for p in (broken, broken_flow))]
    for result in outputs:
        for secret in SECRETS:
            assert secret not in result.stdout + result.stderr, (secret, result.args)
