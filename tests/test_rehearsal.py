"""The rehearsal: a new user's path from an empty directory to recommendations, on a
simulated account that is not the demo fleet.

The Hetzner API simulator plays the account: a generated fleet of 40 Cloud servers in
two projects and 6 dedicated servers (Robot), every server with a loopback address on
which the simulator serves its agent — so Prometheus scrapes the agents the
exporter's /sd lists, on loopback only. Then, with the real commands and no file
edited between them (the README's "From the demo to a real account" copies them):

    infrascope setup --non-interactive --config-dir DIR ...
    infrascope-exporter --config.file DIR/exporter.yml
    recommender serve --config DIR/recommender.yml
    prometheus-alertmanager --config.file=DIR/alertmanager.yml ...
    prometheus --config.file=DIR/prometheus/prometheus.yml --storage.tsdb.path=DATA ...
    infrascope history load --config-dir DIR --openmetrics agents.om
    recommender report --format json --config DIR/recommender.yml
    infrascope doctor --config-dir DIR

``doctor`` passes, then fails with the right line when a project's token is revoked in
the simulator and when the exporter is stopped. 10 days of history keep the test
shorter (the figures need 25% of 30 days); the steps are those of 30 days.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrascope_core.prometheus import binaries_available, free_port, wait_until

ALERTMANAGER = shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
pytestmark = [
    pytest.mark.skipif(not binaries_available() or ALERTMANAGER is None
                       or shutil.which("amtool") is None,
                       reason="prometheus, promtool, alertmanager and amtool are installed "
                              "by make apt-deps"),
    pytest.mark.timeout(1200),
]

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DAYS = 10
PROJECTS = ("rehearsal-shop", "rehearsal-data")
CLOUD_PER_PROJECT = 20
DEDICATED = 6
SERVERS = len(PROJECTS) * CLOUD_PER_PROJECT + DEDICATED
ROBOT_USER = "#ws+Rehearsal"
TYPES = ["cx33", "cx43", "cpx32", "ccx23", "cx23", "cpx22", "ccx13", "cx53"]
PROFILES = ["idle", "steady-low", "diurnal-web", "idle", "batch", "steady-low",
            "database", "bursty"]
LOCATIONS = ["fsn1", "nbg1", "hel1"]
PRODUCTS = ["AX42", "AX52", "EX44", "AX102", "EX101", "SX65"]


def fleet(tokens: dict[str, str], robot_password: str) -> dict[str, Any]:
    """40 Cloud servers in two projects and 6 dedicated ones, each with its own loopback
    address (127.81.P.N), so its agent is reachable without leaving this machine."""
    projects = []
    for p, name in enumerate(PROJECTS):
        servers = []
        for i in range(CLOUD_PER_PROJECT):
            n = p * CLOUD_PER_PROJECT + i
            servers.append({
                "name": f"{name[10:]}-{i:02d}", "type": TYPES[n % len(TYPES)],
                "location": LOCATIONS[(n // 2) % len(LOCATIONS)],
                "ipv4": f"127.81.{p}.{i + 1}",
                "labels": {"env": ["production", "staging"][n % 2], "team": f"t{n % 5}"},
                "backups": n % 3 == 0,
                "workload": {"profile": PROFILES[n % len(PROFILES)]},
            })
        projects.append({"name": name, "token": tokens[name], "servers": servers})
    dedicated = [{
        "name": f"dedi-{i:02d}", "product": PRODUCTS[i], "ip": f"127.81.9.{i + 1}",
        "dc": f"{['FSN1', 'NBG1', 'HEL1'][i % 3]}-DC{2 + i}",
        "workload": {"profile": ["idle", "steady-low", "database"][i % 3]},
    } for i in range(DEDICATED)]
    return {"default_created": "2025-09-01T00:00:00Z", "cloud": {"projects": projects},
            "robot": {"user": ROBOT_USER, "password": robot_password, "servers": dedicated}}


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def get_json(url: str, data: bytes | None = None, method: str | None = None) -> Any:
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


class Processes:
    """Processes this test starts, each stopped by its own pid."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, cmd: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child holds it
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    p = Processes(logs)
    try:
        yield p
    finally:
        p.stop_all()


def lines_of(text: str) -> dict[str, str]:
    """doctor's output: check name -> its line."""
    out = {}
    for line in text.splitlines():
        if line.startswith("[") and "] " in line:
            name = line.split("] ", 1)[1].split(": ", 1)[0]
            out[name] = line
    return out


def readme_commands() -> dict[str, list[str]]:
    """The commands of the README's "From the demo to a real account" block, by name
    (``make install``, ``setup``, ``history load``), as argument lists without sudo."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From the demo to a real account"):]
    block = section[section.index("```sh\n") + 6:]
    block = block[:block.index("```")]
    out: dict[str, list[str]] = {}
    for command in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(command)
        if argv[:1] == ["sudo"]:
            argv = argv[1:]
        name = " ".join(argv[1:3]) if argv[:1] == ["infrascope"] else " ".join(argv[:2])
        out[name.replace(" --non-interactive", "")] = argv
    return out


def flags(argv: list[str]) -> set[str]:
    return {a for a in argv if a.startswith("--")}


def test_the_readme_gives_three_commands_install_setup_history() -> None:
    commands = readme_commands()
    assert list(commands) == ["make install", "setup", "history load"]
    # make install is scripts/install.sh, which tests/test_install.py runs for real
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/install.sh" in makefile[makefile.index("\ninstall:"):]


def test_rehearsal_setup_history_report_doctor(tmp_path: Path, procs: Processes) -> None:
    started = time.monotonic()
    ports = {name: free_port() for name in ("sim", "exporter", "recommender", "alertmanager",
                                            "prometheus", "agents", "webhook")}
    sim = f"http://127.0.0.1:{ports['sim']}"
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"

    # The account: tokens and the Robot password in files of their own, as a user keeps them.
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    tokens = {name: f"tok-{name}-{os.urandom(8).hex()}" for name in PROJECTS}
    robot_password = f"pw-{os.urandom(8).hex()}"
    for name, token in tokens.items():
        (secrets_dir / f"{name}.token").write_text(token + "\n")
    (secrets_dir / "robot-password").write_text(robot_password + "\n")
    for path in secrets_dir.iterdir():
        path.chmod(0o600)
    fleet_file = tmp_path / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(fleet(tokens, robot_password), sort_keys=False))
    fleet_file.chmod(0o600)

    procs.start("simulator", [str(BIN / "infrascope-sim"), "serve", "--fleet", str(fleet_file),
                              "--listen", f"127.0.0.1:{ports['sim']}",
                              "--agents-port", str(ports["agents"])])
    wait_until(lambda: http_ok(sim + "/healthz"), 30, "the simulator")

    # 1. setup, from an empty directory.
    config_dir = tmp_path / "infrascope"
    setup = [str(BIN / "infrascope"), "setup", "--non-interactive",
             "--config-dir", str(config_dir)]
    for name in PROJECTS:
        setup += ["--hcloud-token-file", str(secrets_dir / f"{name}.token"),
                  "--hcloud-project", name]
    setup += ["--hcloud-endpoint", f"{sim}/v1",
              "--robot-user", ROBOT_USER,
              "--robot-password-file", str(secrets_dir / "robot-password"),
              "--robot-endpoint", f"{sim}/robot",
              "--prometheus-url", prometheus,
              "--exporter-address", f"127.0.0.1:{ports['exporter']}",
              "--recommender-address", f"127.0.0.1:{ports['recommender']}",
              "--alertmanager-address", f"127.0.0.1:{ports['alertmanager']}",
              "--agent-port", str(ports["agents"]),
              "--alert-webhook-url", f"http://127.0.0.1:{ports['webhook']}/alerts"]
    # The README's setup, with this account's files and the simulator's endpoints.
    assert flags(readme_commands()["setup"]) <= flags(setup)
    result = run(setup)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    for name in PROJECTS:
        assert f"[ok  ] Cloud project {name}: token accepted" in out
    assert f"[ok  ] Robot user {ROBOT_USER}: credentials accepted" in out
    for name in ("exporter.yml", "recommender.yml", "prometheus.yml", "alertmanager.yml"):
        assert f"[ok  ] {name}:" in out, out
    written = [p for p in config_dir.rglob("*") if p.is_file()]
    assert {p.relative_to(config_dir).as_posix() for p in written} >= {
        "exporter.yml", "recommender.yml", "prometheus/prometheus.yml", "alertmanager.yml",
        "secrets/recommender-api-token", "prometheus/rules/infrascope-recording.rules.yml"}
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in written)
    for secret in [*tokens.values(), robot_password]:
        assert secret not in out
        assert not any(secret in p.read_text() for p in written)
    prom_doc = yaml.safe_load((config_dir / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in prom_doc["scrape_configs"]}
    assert jobs["hetzner"]["static_configs"][0]["targets"] == [
        f"127.0.0.1:{ports['exporter']}"]
    assert jobs["infrascope-agent"]["http_sd_configs"][0]["url"] == \
        f"http://127.0.0.1:{ports['exporter']}/sd"

    # 2. the services, from the generated files (Prometheus' data directory empty).
    data_dir = tmp_path / "prometheus-data"
    procs.start("exporter", [str(BIN / "infrascope-exporter"), "--config.file",
                             str(config_dir / "exporter.yml")])
    # Every project's and Robot's inventory in /sd (rendered every 10 s) before Prometheus
    # starts: its first service discovery then finds every agent.
    wait_until(lambda: http_ok(f"http://127.0.0.1:{ports['exporter']}/readyz")
               and len(get_json(f"http://127.0.0.1:{ports['exporter']}/sd")) == SERVERS, 90,
               "every server in the exporter's /sd")
    sd = get_json(f"http://127.0.0.1:{ports['exporter']}/sd")
    assert all(t.startswith("127.81.") for g in sd for t in g["targets"])  # loopback only
    procs.start("recommender", [str(BIN / "recommender"), "serve", "--config",
                                str(config_dir / "recommender.yml")])
    procs.start("alertmanager", [ALERTMANAGER or "alertmanager",
                                 f"--config.file={config_dir / 'alertmanager.yml'}",
                                 f"--storage.path={tmp_path / 'alertmanager-data'}",
                                 f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
                                 "--cluster.listen-address="])
    procs.start("prometheus", ["prometheus",
                               f"--config.file={config_dir / 'prometheus' / 'prometheus.yml'}",
                               f"--storage.tsdb.path={data_dir}",
                               "--storage.tsdb.retention.time=35d",
                               f"--web.listen-address=127.0.0.1:{ports['prometheus']}"])
    wait_until(lambda: http_ok(prometheus + "/-/ready"), 60, "Prometheus")

    # 3. history, into the running Prometheus (the URL from the configuration, its data
    # directory as it reports it): Hetzner's kept metrics through the exporter's
    # backfill, and the simulated agents' past (memory comes only from agents).
    agents_om = tmp_path / "agents.om"
    result = run([str(BIN / "infrascope-sim"), "agents-history", "--fleet", str(fleet_file),
                  "--output", str(agents_om), "--days", str(DAYS), "--cpus", "1"])
    assert result.returncode == 0, result.stderr
    load = [str(BIN / "infrascope"), "history", "load", "--config-dir", str(config_dir),
            "--days", str(DAYS), "--openmetrics", str(agents_om), "--progress", "lines"]
    # The README's command, plus the shorter history and the simulated agents' past.
    assert flags(readme_commands()["history load"]) <= flags(load)
    result = run(load, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"history loaded into {data_dir}" in result.stdout
    history_done = time.monotonic()

    def count(expr: str) -> int:
        body = get_json(prometheus + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": f"count({expr})"}))
        result = body["data"]["result"]
        return int(float(result[0]["value"][1])) if result else 0

    # Every server judged: targets up, then the 30-day groups (every 4 minutes) over
    # the loaded history.
    try:
        wait_until(lambda: count('up{job="infrascope-agent"} == 1') == SERVERS
                   and count('up{job="hetzner"} == 1') == 1
                   and count('up{job="infrascope-recommender"} == 1') == 1, 180,
                   "every target up")
        wait_until(lambda: count("source_server_id:utilisation:tier30d") >= SERVERS
                   and count("source_server_id:cpu_utilisation:coverage30d >= 0.25")
                   >= SERVERS, 420, "the 30-day figures of every server")
    except TimeoutError:
        print(procs.log("prometheus"), procs.log("exporter"))
        raise
    figures_done = time.monotonic()

    # 4. the report names recommendations for this fleet.
    result = run([str(BIN / "recommender"), "report", "--format", "json", "--config",
                  str(config_dir / "recommender.yml")], timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    recs = report["recommendations"]
    assert report["totals"]["servers"] == SERVERS
    names = {s["name"] for r in recs for s in r["servers"]}
    fleet_names = {s["name"] for p in fleet(tokens, robot_password)["cloud"]["projects"]
                   for s in p["servers"]} | {f"dedi-{i:02d}" for i in range(DEDICATED)}
    assert names and names <= fleet_names
    kinds = {r["kind"] for r in recs}
    assert "idle" in kinds and "rightsize" in kinds, kinds
    idle_names = {s["name"] for r in recs if r["kind"] == "idle" for s in r["servers"]}
    # The idle profile's Cloud servers (every 4th of the mix, profile index 0 and 3).
    assert len(idle_names & fleet_names) >= 5, idle_names
    for r in recs:
        saving = Decimal(r["monthly_savings"])  # decimal strings, to the cent
        assert isinstance(r["monthly_savings"], str) and saving.as_tuple().exponent == -2
        assert Decimal(r["current_monthly_cost"]) - Decimal(r["projected_monthly_cost"]) \
            == saving
    assert Decimal(report["totals"]["pending_monthly_savings"]) > 0
    projects = {s["project"] for r in recs for s in r["servers"] if s["source"] == "cloud"}
    assert projects == set(PROJECTS)

    # 5. doctor passes on it.
    doctor = [str(BIN / "infrascope"), "doctor", "--config-dir", str(config_dir)]
    result = run(doctor, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = lines_of(result.stdout)
    assert all(line.startswith("[ok  ]") for line in checks.values()), result.stdout
    assert {"config exporter.yml", "config recommender.yml", "config prometheus.yml",
            "config alertmanager.yml", f"Cloud project {PROJECTS[0]}",
            f"Cloud project {PROJECTS[1]}", f"Robot user {ROBOT_USER}", "exporter",
            "recommender", "prometheus", "scrape hetzner", "scrape infrascope-agent",
            "scrape infrascope-recommender", "rule groups", "history", "retention",
            "alertmanager"} <= set(checks), result.stdout
    assert f"all {SERVERS} agents are scraped" in checks["scrape infrascope-agent"]

    # 6. ... and fails with the right line when a project's token is revoked ...
    fault = get_json(sim + "/_sim/faults", json.dumps(
        {"kind": "revoked_token", "api": "cloud", "project": PROJECTS[1]}).encode(),
        "POST")["faults"][0]
    result = run(doctor, timeout=300)
    assert result.returncode == 1, result.stdout
    checks = lines_of(result.stdout)
    revoked = checks[f"Cloud project {PROJECTS[1]}"]
    assert revoked.startswith("[FAIL]") and "HTTP 401" in revoked
    assert "API tokens" in revoked and str(secrets_dir / f"{PROJECTS[1]}.token") in revoked
    assert checks[f"Cloud project {PROJECTS[0]}"].startswith("[ok  ]")
    assert [n for n, line in checks.items() if line.startswith("[FAIL]")] == \
        [f"Cloud project {PROJECTS[1]}"], result.stdout
    assert tokens[PROJECTS[1]] not in result.stdout + result.stderr
    get_json(f"{sim}/_sim/faults/{fault['id']}", method="DELETE")

    # ... and when the exporter is stopped.
    procs.stop("exporter")
    result = run(doctor, timeout=300)
    assert result.returncode == 1, result.stdout
    checks = lines_of(result.stdout)
    line = checks["exporter"]
    assert line.startswith("[FAIL] exporter: does not answer at "
                           f"127.0.0.1:{ports['exporter']}"), line
    assert "fix: start it: infrascope-exporter --config.file " \
        f"{config_dir / 'exporter.yml'}" in line
    assert checks[f"Cloud project {PROJECTS[1]}"].startswith("[ok  ]")  # given back
    print(f"rehearsal: setup+history {history_done - started:.0f} s, figures after "
          f"{figures_done - history_done:.0f} s, total {time.monotonic() - started:.0f} s")
