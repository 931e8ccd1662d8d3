"""``infrascope setup``: the configuration of a native installation, for one account.

Asks (on a terminal; tokens without echo) or takes flags (``--non-interactive``) for
the Cloud projects' tokens, the Robot web-service user and where the services listen;
checks every credential with one read-only call (the exporter's own API clients);
then writes, every file 0600 and secrets only as file references::

    DIR/exporter.yml  DIR/recommender.yml  DIR/prometheus/prometheus.yml
    DIR/prometheus/rules/*.rules.yml  DIR/alertmanager.yml  DIR/alertmanager/templates/
    DIR/secrets/ (typed tokens, the recommender's generated API token)

and validates each file with its component's own loader (the exporter's and the
recommender's, ``promtool check config``, ``amtool check-config``). Nothing is
overwritten without ``--force``. Every address is one that exists on the machine
(loopback by default): no compose host names.
"""

from __future__ import annotations

import argparse
import copy
import getpass
import os
import pwd
import re
import secrets
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infrascope_core import address
from infrascope_core.errors import ConfigError
from infrascope_core.secrets import Secret, read_secret_file
from infrascope_exporter.config import (
    DEFAULT_CLOUD_ENDPOINT,
    DEFAULT_ROBOT_ENDPOINT,
    CloudProject,
    RobotAccount,
)

from . import installation as inst
from . import rulespack

NAME = "setup"
HELP = "write the configuration of an installation (exporter, recommender, Prometheus, " \
       "Alertmanager) after checking the Hetzner credentials"

DEFAULT_PROMETHEUS_URL = "http://127.0.0.1:9090"
DEFAULT_EXPORTER = "127.0.0.1:8790"
DEFAULT_RECOMMENDER = "127.0.0.1:8792"
DEFAULT_ALERTMANAGER = "127.0.0.1:9093"
DEFAULT_AGENT_PORT = 8791
SECRET_PATH_PREFIX = "/etc/alertmanager/secrets/"  # where alertmanager.yml names secrets
_PROJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$")
_URL = re.compile(r"^https?://[^/\s]+")
# Alertmanager receiver integrations (replaced by one webhook with --alert-webhook-url).
_NOTIFIERS = ("email_configs", "pagerduty_configs", "slack_configs", "webhook_configs",
              "opsgenie_configs", "pushover_configs", "victorops_configs", "wechat_configs",
              "sns_configs", "telegram_configs", "discord_configs", "webex_configs",
              "msteams_configs")


class SetupError(Exception):
    """Setup cannot go on; the message says why and what to do."""


@dataclass
class Project:
    name: str
    token_file: Path | None = None  # given (non-interactive)
    token: Secret | None = None  # typed (interactive): written to DIR/secrets/


@dataclass
class Answers:
    config_dir: Path
    projects: list[Project] = field(default_factory=list)
    hcloud_endpoint: str = DEFAULT_CLOUD_ENDPOINT
    robot_user: str | None = None
    robot_password_file: Path | None = None
    robot_password: Secret | None = None
    robot_endpoint: str = DEFAULT_ROBOT_ENDPOINT
    prometheus_url: str = DEFAULT_PROMETHEUS_URL
    exporter_address: str = DEFAULT_EXPORTER
    recommender_address: str = DEFAULT_RECOMMENDER
    alertmanager_address: str = DEFAULT_ALERTMANAGER
    agent_port: int = DEFAULT_AGENT_PORT
    agent_address: str = "public_ipv4"
    alert_webhook_url: str | None = None
    recommender_state: Path | None = None
    owner: str | None = None
    prometheus_owner: str | None = None


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("Every written file is 0600 and holds secrets only as file references "
                     "(token_file, password_file). See cli/README.md.")
    a = parser.add_argument
    a("--non-interactive", action="store_true",
      help="take everything from flags, ask nothing (default: ask on a terminal)")
    a("--config-dir", type=Path, default=None,
      help="where to write the configuration (e.g. /etc/infrascope)")
    a("--hcloud-token-file", type=Path, action="append", default=[], metavar="FILE",
      help="file holding one Cloud project's API token (repeatable; paired in order with "
           "--hcloud-project)")
    a("--hcloud-project", action="append", default=[], metavar="NAME",
      help="name of the project whose token is the --hcloud-token-file at the same position "
           "(repeatable)")
    a("--hcloud-endpoint", default=DEFAULT_CLOUD_ENDPOINT, metavar="URL",
      help=f"Cloud API base URL (default {DEFAULT_CLOUD_ENDPOINT})")
    a("--robot-user", default=None, metavar="USER",
      help="Robot web-service user, for dedicated servers (optional)")
    a("--robot-password-file", type=Path, default=None, metavar="FILE",
      help="file holding the Robot web-service password")
    a("--robot-endpoint", default=DEFAULT_ROBOT_ENDPOINT, metavar="URL",
      help=f"Robot API base URL (default {DEFAULT_ROBOT_ENDPOINT})")
    a("--prometheus-url", default=DEFAULT_PROMETHEUS_URL, metavar="URL",
      help=f"the Prometheus the recommender and doctor query (default "
           f"{DEFAULT_PROMETHEUS_URL}); also its own scrape target")
    a("--exporter-address", default=DEFAULT_EXPORTER, metavar="HOST:PORT",
      help=f"where the exporter listens and Prometheus scrapes it (default {DEFAULT_EXPORTER})")
    a("--recommender-address", default=DEFAULT_RECOMMENDER, metavar="HOST:PORT",
      help=f"where the recommender's API listens (default {DEFAULT_RECOMMENDER})")
    a("--alertmanager-address", default=DEFAULT_ALERTMANAGER, metavar="HOST:PORT",
      help=f"where Alertmanager listens (default {DEFAULT_ALERTMANAGER})")
    a("--agent-port", type=int, default=DEFAULT_AGENT_PORT, metavar="PORT",
      help=f"port of the agent on every server, in the exporter's /sd targets (default "
           f"{DEFAULT_AGENT_PORT})")
    a("--agent-address", default="public_ipv4",
      help="which address of a server its agent is scraped on: public_ipv4 (default), "
           "public_ipv6 or private:<network id>")
    a("--alert-webhook-url", default=None, metavar="URL",
      help="send every notification to this webhook instead of the shipped receivers "
           "(PagerDuty, Slack, e-mail, whose secrets go to DIR/secrets/alertmanager/)")
    a("--recommender-state", type=Path, default=None, metavar="FILE",
      help="the recommender's SQLite state (default DIR/recommender.db)")
    a("--owner", default=None, metavar="USER",
      help="run as root: the exporter's and recommender's files and secrets belong to USER, "
           "the user their services run as (default: infrascope, when that user exists — "
           "scripts/install.sh creates it)")
    a("--prometheus-owner", default=None, metavar="USER",
      help="run as root: DIR/prometheus/ and Alertmanager's files belong to USER (default: "
           "prometheus, Debian's user for both, when it exists)")
    a("--force", action="store_true", help="overwrite files a previous setup wrote")


def _address(value: str, flag: str) -> str:
    try:
        address.parse_host_port(value)
    except address.AddressError as exc:
        raise SetupError(f"{flag}: {value!r}: {exc}") from None
    return value


def _url(value: str, flag: str) -> str:
    if not _URL.match(value):
        raise SetupError(f"{flag}: {value!r} is not an http:// or https:// URL")
    return value.rstrip("/")


def answers_from_flags(args: argparse.Namespace) -> Answers:
    if args.config_dir is None:
        raise SetupError("--config-dir: required (e.g. /etc/infrascope)")
    if len(args.hcloud_token_file) != len(args.hcloud_project):
        raise SetupError(f"{len(args.hcloud_token_file)} --hcloud-token-file but "
                         f"{len(args.hcloud_project)} --hcloud-project: give one project name "
                         "per token file, in the same order")
    projects = [Project(name, token_file=f.resolve())
                for name, f in zip(args.hcloud_project, args.hcloud_token_file, strict=True)]
    if args.robot_user and args.robot_password_file is None:
        raise SetupError("--robot-user needs --robot-password-file")
    if args.robot_password_file is not None and not args.robot_user:
        raise SetupError("--robot-password-file needs --robot-user")
    return Answers(
        config_dir=args.config_dir.resolve(), projects=projects,
        hcloud_endpoint=_url(args.hcloud_endpoint, "--hcloud-endpoint"),
        robot_user=args.robot_user,
        robot_password_file=(args.robot_password_file.resolve()
                             if args.robot_password_file else None),
        robot_endpoint=_url(args.robot_endpoint, "--robot-endpoint"),
        prometheus_url=_url(args.prometheus_url, "--prometheus-url"),
        exporter_address=args.exporter_address,
        recommender_address=args.recommender_address,
        alertmanager_address=args.alertmanager_address,
        agent_port=args.agent_port, agent_address=args.agent_address,
        alert_webhook_url=(_url(args.alert_webhook_url, "--alert-webhook-url")
                           if args.alert_webhook_url else None),
        recommender_state=args.recommender_state.resolve() if args.recommender_state else None,
        owner=args.owner, prometheus_owner=args.prometheus_owner)


Ask = Callable[[str], str]


def answers_from_prompts(args: argparse.Namespace, ask: Ask = input,
                         ask_secret: Ask = getpass.getpass) -> Answers:
    """The questions of an interactive setup; flags given on the command line are the
    defaults shown. Tokens and the Robot password are read without echo."""

    def question(text: str, default: str | None = None) -> str:
        shown = f" [{default}]" if default else ""
        while True:
            value = ask(f"{text}{shown}: ").strip()
            if value or default is not None:
                return value or (default or "")

    def yes(text: str, default: bool) -> bool:
        value = ask(f"{text} [{'Y/n' if default else 'y/N'}]: ").strip().lower()
        return default if not value else value.startswith("y")

    print("InfraScope setup: answers in [brackets] are the defaults (Enter keeps them).")
    config_dir = Path(question("Configuration directory",
                               str(args.config_dir or "/etc/infrascope"))).expanduser()
    projects: list[Project] = []
    print("Hetzner Cloud: one API token per project (the Console: the project > Security > "
          "API tokens; Read is enough). An empty project name ends the list.")
    endpoint = _url(question("Cloud API endpoint", args.hcloud_endpoint), "endpoint")
    while True:
        name = ask(f"Cloud project name #{len(projects) + 1} (empty: done): ").strip()
        if not name:
            break
        token = ask_secret(f"API token of {name} (not shown): ").strip()
        if not token:
            print("  no token given: project skipped")
            continue
        projects.append(Project(name, token=Secret(token)))
    robot_user = robot_password = None
    robot_endpoint = args.robot_endpoint
    if yes("Dedicated servers through the Robot web service?", bool(args.robot_user)):
        robot_user = question("Robot web-service user", args.robot_user)
        robot_password = Secret(ask_secret("Robot web-service password (not shown): ").strip())
        robot_endpoint = question("Robot API endpoint", args.robot_endpoint)
    prometheus_url = question("Prometheus URL", args.prometheus_url)
    exporter = question("Exporter listen address", args.exporter_address)
    recommender = question("Recommender listen address", args.recommender_address)
    alertmanager = question("Alertmanager address", args.alertmanager_address)
    agent_port = int(question("Agent port on every server", str(args.agent_port)))
    return Answers(config_dir=config_dir.resolve(), projects=projects,
                   hcloud_endpoint=endpoint, robot_user=robot_user,
                   robot_password=robot_password,
                   robot_endpoint=_url(robot_endpoint, "Robot endpoint"),
                   prometheus_url=_url(prometheus_url, "Prometheus URL"),
                   exporter_address=exporter, recommender_address=recommender,
                   alertmanager_address=alertmanager, agent_port=agent_port,
                   agent_address=args.agent_address,
                   alert_webhook_url=args.alert_webhook_url,
                   recommender_state=args.recommender_state)


# --------------------------------------------------------------------------------------
# Checking the answers and the credentials
# --------------------------------------------------------------------------------------
def check_secret_file(path: Path, what: str, *, spaces: bool = False) -> Secret:
    """The secret in ``path`` as the exporter reads it (:mod:`infrascope_core.secrets`):
    a file it would refuse is refused here, before any request. Messages name the file,
    never its content."""
    try:
        return read_secret_file(path, what, spaces=spaces)
    except ConfigError as exc:
        raise SetupError(str(exc)) from None


def check_answers(a: Answers) -> None:
    for flag, value in (("--exporter-address", a.exporter_address),
                        ("--recommender-address", a.recommender_address),
                        ("--alertmanager-address", a.alertmanager_address)):
        _address(value, flag)
    if not 0 < a.agent_port < 65536:
        raise SetupError(f"--agent-port: {a.agent_port} is not a TCP port")
    if a.agent_address not in ("public_ipv4", "public_ipv6") and \
            not a.agent_address.startswith("private:"):
        raise SetupError("--agent-address: public_ipv4, public_ipv6 or private:<network id>")
    names = [p.name for p in a.projects]
    for name in names:
        if not _PROJECT.match(name):
            raise SetupError(f"project name {name!r}: letters, digits, '.', '_' and '-' only")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SetupError(f"project name {dupes[0]!r} is given twice")
    if not a.projects and not a.robot_user:
        raise SetupError("nothing to monitor: give at least one Cloud project "
                         "(--hcloud-token-file with --hcloud-project) or a Robot user")


def cloud_projects(a: Answers) -> list[tuple[CloudProject, str | None]]:
    out = []
    for p in a.projects:
        if p.token is not None:
            token = p.token
        elif p.token_file is not None:
            token = check_secret_file(p.token_file, f"token of project {p.name}")
        else:
            raise SetupError(f"project {p.name}: no token")
        out.append((CloudProject(p.name, token, a.hcloud_endpoint),
                    str(p.token_file) if p.token_file else None))
    return out


def robot_account(a: Answers) -> RobotAccount | None:
    if not a.robot_user:
        return None
    password = a.robot_password
    if password is None and a.robot_password_file is not None:
        password = check_secret_file(a.robot_password_file, "Robot password", spaces=True)
    if not password:
        raise SetupError("Robot user given without a password")
    return RobotAccount(a.robot_user, password, a.robot_endpoint)


# --------------------------------------------------------------------------------------
# What is written
# --------------------------------------------------------------------------------------
def _header(what: str) -> str:
    return (f"# {what}\n# Written by `infrascope setup`; run it again with --force to "
            "rewrite (secrets are file references only).\n")


def _dump(doc: Any) -> str:
    return yaml.safe_dump(doc, sort_keys=False, width=1000, allow_unicode=True)


def _secret_path(a: Answers, name: str) -> Path:
    return a.config_dir / inst.SECRETS_DIR / name


def exporter_yml(a: Answers) -> str:
    doc: dict[str, Any] = {}
    if a.projects:
        doc["cloud"] = {"endpoint": a.hcloud_endpoint, "projects": [
            {"name": p.name, "token_file": str(p.token_file or _secret_path(
                a, f"hcloud-{p.name}.token"))} for p in a.projects]}
    if a.robot_user:
        doc["robot"] = {"endpoint": a.robot_endpoint, "user": a.robot_user,
                        "password_file": str(a.robot_password_file
                                             or _secret_path(a, "robot-password"))}
    doc["web"] = {"listen_address": a.exporter_address}
    doc["sd"] = {"address": a.agent_address, "agent_port": a.agent_port}
    return _header("infrascope-exporter --config.file " + str(a.config_dir / inst.EXPORTER_YML)
                   ) + _dump(doc)


def recommender_yml(a: Answers) -> str:
    doc = {"prometheus": {"url": a.prometheus_url,
                          "exporter_job": inst.JOB_EXPORTER, "agent_job": inst.JOB_AGENT},
           "state": {"path": str(a.recommender_state or a.config_dir / "recommender.db")},
           "api": {"listen": a.recommender_address,
                   "token_file": str(_secret_path(a, "recommender-api-token"))}}
    return _header("recommender serve --config " + str(a.config_dir / inst.RECOMMENDER_YML)
                   + "\n# The API token (for accept/dismiss) is in api.token_file.") + _dump(doc)


def _host_port(url: str) -> str:
    rest = url.split("://", 1)[1].split("/", 1)[0]
    if ":" in rest.rsplit("]", 1)[-1]:
        return rest
    return rest + (":443" if url.startswith("https") else ":80")


def prometheus_yml(a: Answers) -> str:
    exporter = inst.scrape_address(a.exporter_address)
    prom_scheme = "https" if a.prometheus_url.startswith("https") else "http"
    prom_path = "/" + a.prometheus_url.split("://", 1)[1].partition("/")[2]
    prom_job: dict[str, Any] = {"job_name": "prometheus",
                                "static_configs": [{"targets": [_host_port(a.prometheus_url)]}]}
    if prom_scheme == "https":
        prom_job["scheme"] = "https"
    if prom_path.strip("/"):
        prom_job["metrics_path"] = prom_path.rstrip("/") + "/metrics"
    doc = {
        "global": {"scrape_interval": "30s", "evaluation_interval": "1m",
                   "external_labels": {"infrascope": socket.gethostname() or "infrascope"}},
        "rule_files": [str(a.config_dir / inst.RULES_DIR / rulespack.RULES_GLOB)],
        "alerting": {"alertmanagers": [{"static_configs": [
            {"targets": [inst.scrape_address(a.alertmanager_address)]}]}]},
        "scrape_configs": [
            prom_job,
            {"job_name": inst.JOB_EXPORTER, "scrape_interval": "60s", "scrape_timeout": "30s",
             "static_configs": [{"targets": [exporter]}]},
            {"job_name": inst.JOB_AGENT, "scrape_interval": "30s",
             "http_sd_configs": [{"url": f"http://{exporter}/sd", "refresh_interval": "1m"}]},
            {"job_name": inst.JOB_RECOMMENDER, "scrape_interval": "60s",
             "static_configs": [{"targets": [inst.scrape_address(a.recommender_address)]}]},
            {"job_name": "alertmanager",
             "static_configs": [{"targets": [inst.scrape_address(a.alertmanager_address)]}]},
        ],
    }
    return (_header(f"prometheus --config.file={a.config_dir / inst.PROMETHEUS_YML} "
                    "--storage.tsdb.retention.time=35d")
            + "# Jobs as the rules pack expects them (prometheus/README.md): hetzner = the "
              "exporter,\n# infrascope-agent = every server's agent (targets from the "
              "exporter's /sd; keep its\n# interval at 1m or less), infrascope-recommender. "
              "Retention: at least 35 days.\n" + _dump(doc))


def alertmanager_yml(a: Answers, shipped: dict[str, Any]) -> str:
    doc = copy.deepcopy(shipped)
    doc["templates"] = [str(a.config_dir / inst.AM_TEMPLATES_DIR / Path(t).name)
                        for t in doc.get("templates") or []]
    secrets_dir = a.config_dir / inst.SECRETS_DIR / "alertmanager"
    if a.alert_webhook_url:
        glob = doc.get("global") or {}
        for key in list(glob):
            if key.startswith(("smtp_", "slack_", "opsgenie_", "pagerduty_")):
                del glob[key]
        if not glob:
            doc.pop("global", None)
        receivers = []
        for receiver in doc.get("receivers") or []:
            if any(k in receiver for k in _NOTIFIERS):
                receivers.append({"name": receiver["name"], "webhook_configs": [
                    {"url": a.alert_webhook_url, "send_resolved": True}]})
            else:
                receivers.append({"name": receiver["name"]})
        doc["receivers"] = receivers
        note = f"every notification goes to the webhook {a.alert_webhook_url}"
    else:
        _move_secret_files(doc, secrets_dir)
        note = (f"receivers' secrets are files under {secrets_dir}/ (create them), and the "
                "example.com addresses are to be replaced")
    return _header(f"alertmanager --config.file={a.config_dir / inst.ALERTMANAGER_YML}; "
                   f"from the shipped alertmanager.yml: {note}") + _dump(doc)


def _move_secret_files(node: Any, secrets_dir: Path) -> None:
    """Every ``*_file`` naming the shipped secret folder now names ``secrets_dir``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key.endswith("_file") and isinstance(value, str) and \
                    value.startswith(SECRET_PATH_PREFIX):
                node[key] = str(secrets_dir / value[len(SECRET_PATH_PREFIX):])
            else:
                _move_secret_files(value, secrets_dir)
    elif isinstance(node, list):
        for item in node:
            _move_secret_files(item, secrets_dir)


def planned_files(a: Answers) -> dict[Path, str]:
    """Every file setup writes (absolute path -> content)."""
    d = a.config_dir
    rules_dir = rulespack.find_rules_dir()
    am_dir = inst.find_alertmanager_dir()
    files: dict[Path, str] = {
        d / inst.EXPORTER_YML: exporter_yml(a),
        d / inst.RECOMMENDER_YML: recommender_yml(a),
        d / inst.PROMETHEUS_YML: prometheus_yml(a),
        d / inst.ALERTMANAGER_YML: alertmanager_yml(
            a, inst.read_yaml(am_dir / "alertmanager.yml")),
    }
    for path in sorted(rules_dir.glob(rulespack.RULES_GLOB)):
        files[d / inst.RULES_DIR / path.name] = path.read_text(encoding="utf-8")
    for path in sorted((am_dir / "templates").glob("*.tmpl")):
        files[d / inst.AM_TEMPLATES_DIR / path.name] = path.read_text(encoding="utf-8")
    for p in a.projects:
        if p.token is not None:
            files[_secret_path(a, f"hcloud-{p.name}.token")] = p.token.reveal() + "\n"
    if a.robot_password is not None:
        files[_secret_path(a, "robot-password")] = a.robot_password.reveal() + "\n"
    # The recommender's API token survives a --force run: clients that use it keep working.
    api_token = _secret_path(a, "recommender-api-token")
    kept = api_token.read_text(encoding="utf-8").strip() if api_token.is_file() else ""
    files[api_token] = (kept or secrets.token_urlsafe(32)) + "\n"
    return files


def _user(name: str | None, default: str, flag: str) -> tuple[str, int, int] | None:
    """(name, uid, gid) of ``name`` (an error if it does not exist), or of ``default``
    when that user exists, or None."""
    try:
        entry = pwd.getpwnam(name or default)
    except KeyError:
        if name:
            raise SetupError(f"{flag}: no user {name!r}") from None
        return None
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def give_to_owners(a: Answers, files: Mapping[Path, str]) -> list[tuple[Path, str]]:
    """As root: every written file (and the folders setup made under the config folder)
    to the user that reads it — the services' user for the exporter's and recommender's
    files and secrets, Prometheus' user for ``prometheus/`` and Alertmanager's files —
    so that 0600 files stay readable by their one reader. Returns what was given."""
    if os.geteuid() != 0:
        if a.owner or a.prometheus_owner:
            raise SetupError("--owner and --prometheus-owner need root")
        return []
    service = _user(a.owner, "infrascope", "--owner")
    monitoring = _user(a.prometheus_owner, "prometheus", "--prometheus-owner") or service
    d = a.config_dir
    by_prometheus = (d / inst.PROMETHEUS_YML).parent
    alertmanager = {d / inst.ALERTMANAGER_YML, (d / inst.AM_TEMPLATES_DIR)}
    given: dict[Path, str] = {}
    for path in files:
        reader = monitoring if (by_prometheus in path.parents or path in alertmanager
                                or (d / inst.AM_TEMPLATES_DIR) in path.parents) else service
        if reader is None:
            continue
        name, uid, gid = reader
        for target in [path, *(p for p in path.parents if d in p.parents)]:
            os.chown(target, uid, gid)
        given[path] = name
    return sorted(given.items())


def write_private(path: Path, text: str) -> None:
    """Create or replace ``path`` with mode 0600 from the first byte (never briefly
    readable by others); folders made 0700."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.setup-tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --------------------------------------------------------------------------------------
# Run
# --------------------------------------------------------------------------------------
def setup(a: Answers, force: bool = False, out: Any = None) -> int:
    out = out or sys.stdout

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    check_answers(a)
    files = planned_files(a)
    existing = sorted(p for p in files if p.exists())
    if existing and not force:
        shown = ", ".join(map(str, existing[:3])) + (
            f" and {len(existing) - 3} more" if len(existing) > 3 else "")
        raise SetupError(f"{shown} already exist{'s' if len(existing) == 1 else ''}: "
                         "nothing was written; run again with --force to overwrite")
    # The credentials, each with one read-only call, before anything is written.
    checks = [inst.check_cloud(project, token_file) for project, token_file in
              cloud_projects(a)]
    robot = robot_account(a)
    if robot is not None:
        checks.append(inst.check_robot(robot, str(a.robot_password_file)
                                       if a.robot_password_file else None))
    for check in checks:
        say(check.line())
    if not all(c.ok for c in checks):
        say("infrascope setup: nothing was written (a credential was not accepted)")
        return 1
    for path, text in files.items():
        write_private(path, text)
    say(f"wrote {len(files)} files under {a.config_dir} (mode 0600)")
    for path, user in give_to_owners(a, files):
        say(f"{path} belongs to {user}")
    validations = inst.validate_all(a.config_dir)
    for check in validations:
        say(check.line())
    if not all(c.ok for c in validations):
        say("infrascope setup: a written file did not validate (see above)")
        return 1
    say(next_steps(a))
    return 0


def next_steps(a: Answers) -> str:
    d = a.config_dir
    return "\n".join([
        "done. Next:",
        f"  infrascope-exporter --config.file {d / inst.EXPORTER_YML}",
        f"  recommender serve --config {d / inst.RECOMMENDER_YML}",
        f"  prometheus --config.file={d / inst.PROMETHEUS_YML} "
        "--storage.tsdb.retention.time=35d "
        f"--web.listen-address={_host_port(a.prometheus_url)}",
        f"  alertmanager --config.file={d / inst.ALERTMANAGER_YML} "
        f"--web.listen-address={a.alertmanager_address}",
        f"  infrascope history load --config-dir {d} --prometheus-url {a.prometheus_url}",
        f"  infrascope doctor --config-dir {d}",
    ])


def run(args: argparse.Namespace) -> int:
    try:
        if args.non_interactive:
            answers = answers_from_flags(args)
        elif sys.stdin.isatty():
            answers = answers_from_prompts(args)
        else:
            raise SetupError("standard input is not a terminal: give --non-interactive and "
                             "the flags (see infrascope setup --help)")
        return setup(answers, force=args.force)
    except (SetupError, rulespack.RulesPackError, FileNotFoundError) as exc:
        print(f"infrascope setup: {exc}", file=sys.stderr)
        return 1
    except (EOFError, ValueError) as exc:
        print(f"infrascope setup: no answer ({exc or 'end of input'})", file=sys.stderr)
        return 1
