"""An installation as ``infrascope setup`` writes it and ``infrascope doctor`` reads it.

The configuration directory (``--config-dir``)::

    exporter.yml                 infrascope-exporter --config.file
    recommender.yml              recommender serve --config
    prometheus/prometheus.yml    prometheus --config.file (rule_files: prometheus/rules/)
    prometheus/rules/*.rules.yml a copy of the rules pack
    alertmanager.yml             alertmanager --config.file (templates: alertmanager/templates/)
    alertmanager/templates/      a copy of the notification templates
    secrets/                     secrets setup was given at its prompts or generated

Both commands also share the read-only credential checks (the exporter's own API
clients, so a check passes exactly when the exporter's requests would) and the
validation of each file by its component's own loader.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infrascope_core.errors import (
    ApiError,
    ApiTimeout,
    ApiUnavailable,
    Malformed,
    RateLimited,
)
from infrascope_exporter.api import CloudClient, RobotClient
from infrascope_exporter.config import CloudProject, RobotAccount
from infrascope_exporter.health import Health

EXPORTER_YML = Path("exporter.yml")
RECOMMENDER_YML = Path("recommender.yml")
PROMETHEUS_YML = Path("prometheus/prometheus.yml")
RULES_DIR = Path("prometheus/rules")
ALERTMANAGER_YML = Path("alertmanager.yml")
AM_TEMPLATES_DIR = Path("alertmanager/templates")
SECRETS_DIR = Path("secrets")

# Job names the rules pack and the recommender select on (prometheus/config.yaml `jobs:`).
JOB_EXPORTER = "hetzner"
JOB_AGENT = "infrascope-agent"
JOB_RECOMMENDER = "infrascope-recommender"

ENV_ALERTMANAGER_DIR = "INFRASCOPE_ALERTMANAGER_DIR"
CHECK_TIMEOUT = 10.0


@dataclass
class Check:
    """One line of output: what was checked, whether it passed, and the fix if not."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        text = f"[{status}] {self.name}: {self.detail}"
        if not self.ok and self.fix:
            text += f" -> fix: {self.fix}"
        return text


# --------------------------------------------------------------------------------------
# Credentials: one read-only call each, with the exporter's clients
# --------------------------------------------------------------------------------------
def check_cloud(project: CloudProject, token_file: str | None = None,
                timeout: float = CHECK_TIMEOUT) -> Check:
    """``GET /servers?per_page=1`` with the project's token."""
    name = f"Cloud project {project.name}"
    where = f"write it to {token_file}" if token_file else "give it to setup again"
    client = CloudClient(project, Health(), timeout=timeout, max_retries=0)
    try:
        body = client.get("/servers", "GET /servers", {"per_page": 1})
    except ApiError as exc:
        return _cloud_failure(name, project, exc, where)
    finally:
        client.close()
    total = None
    if isinstance(body, dict):
        total = ((body.get("meta") or {}).get("pagination") or {}).get("total_entries")
    count = f": {total} servers" if isinstance(total, int) else ""
    return Check(name, True, f"token accepted (read-only GET /servers{count})")


def _cloud_failure(name: str, project: CloudProject, exc: ApiError, where: str) -> Check:
    if exc.status == 401:
        return Check(name, False, "the token was rejected (HTTP 401 unauthorized): it is "
                     "wrong or was revoked",
                     "create an API token in the Hetzner Console (the project > Security > "
                     f"API tokens; Read is enough) and {where}")
    if exc.status == 403:
        return Check(name, False, f"the token may not read servers (HTTP 403 "
                     f"{exc.code or 'forbidden'})",
                     "use a token of this project with at least Read permission (the "
                     f"project > Security > API tokens) and {where}")
    if isinstance(exc, (ApiUnavailable, ApiTimeout)):
        reason = "timed out" if isinstance(exc, ApiTimeout) else "connection failed"
        return Check(name, False, f"the Cloud API at {project.endpoint} is unreachable "
                     f"({reason})",
                     "check the endpoint (--hcloud-endpoint), DNS, a proxy or firewall "
                     "between this machine and it")
    if isinstance(exc, RateLimited):
        return Check(name, False, "the project's request budget is spent (HTTP 429)",
                     "another tool uses this project's 3600 requests an hour; run again "
                     "after the reset time")
    if isinstance(exc, Malformed):
        return Check(name, False, f"{project.endpoint} does not answer like the Cloud API "
                     "(no JSON)", "check the endpoint (--hcloud-endpoint) and any proxy")
    return Check(name, False, f"the Cloud API answered an error: {exc}",
                 "retry later; if it persists see https://status.hetzner.com")


def check_robot(account: RobotAccount, password_file: str | None = None,
                timeout: float = CHECK_TIMEOUT) -> Check:
    """``GET /server`` with the web-service user (one request: Robot blocks an IP for
    10 minutes after three failed logins, so a rejected login is never retried)."""
    name = f"Robot user {account.user}"
    client = RobotClient(account, Health(), timeout=timeout)
    try:
        body = client.get("/server", "GET /server")
    except ApiError as exc:
        if exc.status == 404:  # Robot's answer for an account without servers
            return Check(name, True, "credentials accepted (no dedicated servers)")
        return _robot_failure(name, account, exc, password_file)
    finally:
        client.close()
    count = len(body) if isinstance(body, list) else 0
    return Check(name, True, f"credentials accepted (read-only GET /server: {count} "
                 "dedicated servers)")


def _robot_failure(name: str, account: RobotAccount, exc: ApiError,
                   password_file: str | None) -> Check:
    where = f" in {password_file}" if password_file else ""
    if exc.status == 401:
        return Check(name, False, "user or password rejected (HTTP 401)",
                     "check the web-service user (Robot > Settings > Web service and app "
                     f"settings) and its password{where}; Robot blocks this machine's IP for "
                     "10 minutes after three failed logins, so fix them before trying again")
    if exc.status == 403 and exc.code != "RATE_LIMIT_EXCEEDED":
        return Check(name, False, f"Robot refuses this machine (HTTP 403 "
                     f"{exc.code or 'forbidden'}): its IP is blocked after failed logins, or "
                     "the web-service user is disabled",
                     "wait 10 minutes without logging in, fix the credentials, then run "
                     "again; check the user is enabled in Robot > Settings")
    if isinstance(exc, RateLimited):
        return Check(name, False, "Robot's rate limit is reached (HTTP 403 "
                     "RATE_LIMIT_EXCEEDED; GET /server allows 200 requests an hour)",
                     "another tool polls Robot with this user; wait and run again")
    if isinstance(exc, (ApiUnavailable, ApiTimeout)):
        reason = "timed out" if isinstance(exc, ApiTimeout) else "connection failed"
        return Check(name, False, f"the Robot API at {account.endpoint} is unreachable "
                     f"({reason})", "check the endpoint (--robot-endpoint), DNS, a proxy "
                     "or firewall")
    return Check(name, False, f"Robot answered an error: {exc}",
                 "retry later (Robot answers 503 during maintenance)")


# --------------------------------------------------------------------------------------
# Validation by each component's own loader
# --------------------------------------------------------------------------------------
def validate_exporter(path: Path) -> Check:
    from infrascope_exporter.config import ConfigError, load_config

    try:
        config = load_config(["--config.file", str(path)], environ={})
    except ConfigError as exc:
        return Check(f"{path.name}", False, f"the exporter rejects it: {exc}",
                     f"correct {path} (or run infrascope setup --force again)")
    return Check(path.name, True, f"the exporter's loader accepts it "
                 f"({len(config.projects)} Cloud project(s), Robot "
                 f"{'yes' if config.robot else 'no'}, listening on {config.listen_address})"
                 + _warnings(config.warnings))


def validate_recommender(path: Path) -> Check:
    from infrascope_recommender.config import ConfigError, load_config

    try:
        config = load_config(path, env={})
    except ConfigError as exc:
        return Check(path.name, False, f"the recommender rejects it: {exc}",
                     f"correct {path} (or run infrascope setup --force again)")
    return Check(path.name, True, f"the recommender's loader accepts it (Prometheus "
                 f"{config.prometheus.url}, API on {config.api.listen})"
                 + _warnings(config.warnings))


def _warnings(warnings: tuple[str, ...]) -> str:
    """The loader's warnings (e.g. a secret file others may read), on the same line."""
    return "".join(f"; warning: {w}" for w in warnings)


def tool(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run_tool(cmd: list[str], what: str, path: Path, fix: str) -> Check:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        output = " ".join((proc.stdout + proc.stderr).split())
        return Check(str(path.name), False, f"{what} rejects it: {output[-600:]}", fix)
    return Check(str(path.name), True, f"{what} accepts it")


def validate_prometheus(path: Path) -> Check:
    promtool = tool("promtool")
    if promtool is None:
        return Check(path.name, False, "not validated: promtool is not installed",
                     "install Prometheus (Debian: apt install prometheus)")
    return _run_tool([promtool, "check", "config", str(path)],
                     "promtool check config (with its rule files)", path,
                     f"correct {path} or the rule files it names")


def validate_alertmanager(path: Path) -> Check:
    amtool = tool("amtool")
    if amtool is None:
        return Check(path.name, False, "not validated: amtool is not installed",
                     "install Alertmanager (Debian: apt install prometheus-alertmanager)")
    return _run_tool([amtool, "check-config", str(path)], "amtool check-config", path,
                     f"correct {path}")


def validate_all(config_dir: Path) -> list[Check]:
    return [validate_exporter(config_dir / EXPORTER_YML),
            validate_recommender(config_dir / RECOMMENDER_YML),
            validate_prometheus(config_dir / PROMETHEUS_YML),
            validate_alertmanager(config_dir / ALERTMANAGER_YML)]


# --------------------------------------------------------------------------------------
# Where the shipped files are
# --------------------------------------------------------------------------------------
def find_alertmanager_dir() -> Path:
    """The folder of the shipped ``alertmanager.yml`` and ``templates/``:
    ``$INFRASCOPE_ALERTMANAGER_DIR``, ``<venv>/share/infrascope/alertmanager``, or the
    repository this package is installed from."""
    candidates = []
    if os.environ.get(ENV_ALERTMANAGER_DIR):
        candidates.append(Path(os.environ[ENV_ALERTMANAGER_DIR]))
    candidates.append(Path(sys.prefix) / "share" / "infrascope" / "alertmanager")
    candidates.append(Path(__file__).resolve().parents[3] / "alertmanager")
    for path in candidates:
        if (path / "alertmanager.yml").is_file():
            return path
    raise FileNotFoundError("the shipped alertmanager.yml was not found (looked in "
                            + ", ".join(map(str, candidates)) + f"): set "
                            f"{ENV_ALERTMANAGER_DIR}")


def scrape_address(listen: str) -> str:
    """Where Prometheus reaches a service listening on ``listen`` (HOST:PORT): a
    wildcard host is reached on loopback."""
    host, _, port = listen.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


def read_yaml(path: Path) -> Any:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))
