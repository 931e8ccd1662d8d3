"""agent/install.sh and the systemd unit, in a sandbox (INSTALL_ROOT, SKIP_USER, SKIP_SYSTEMCTL).

The installer runs for real: a virtualenv is created below the sandbox and the
agent and infrascope-core installed into it. To stay offline and fast both go in
as wheels built here from the source trees (``--no-deps --no-index``), and the
agent's third-party dependencies are this virtualenv's, made visible with
INSTALL_SITE_PACKAGES.
"""

from __future__ import annotations

import base64
import configparser
import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

AGENT = Path(__file__).resolve().parents[1]
CORE = AGENT.parent / "core"
INSTALL_SH = AGENT / "install.sh"
UNIT_SRC = AGENT / "systemd" / "infrascope-agent.service"
EXAMPLE = AGENT / "examples" / "web-config.yml"
PREFIX = "opt/infrascope-agent"
UNIT = "etc/systemd/system/infrascope-agent.service"
WEB_CONFIG = "etc/infrascope-agent/web-config.yml"
DEFAULTS = "etc/default/infrascope-agent"


def build_wheel(out: Path, folder: Path = AGENT) -> Path:
    """A py3-none-any wheel of ``folder``'s project (the agent, core) from its source tree,
    with the stdlib only."""
    project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
    dist = project["name"].replace("-", "_")
    version = project["version"]
    info = f"{dist}-{version}.dist-info"
    out.mkdir(parents=True, exist_ok=True)
    wheel = out / f"{dist}-{version}-py3-none-any.whl"
    records: list[str] = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        def add(name: str, data: bytes) -> None:
            z.writestr(name, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{name},sha256={digest.decode()},{len(data)}")

        src = folder / "src"
        for f in sorted((src / dist).rglob("*")):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc":
                add(f.relative_to(src).as_posix(), f.read_bytes())
        meta = ["Metadata-Version: 2.1", f"Name: {project['name']}", f"Version: {version}",
                f"Requires-Python: {project['requires-python']}"]
        meta += [f"Requires-Dist: {d}" for d in project["dependencies"]]
        add(f"{info}/METADATA", ("\n".join(meta) + "\n").encode())
        add(f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: infrascope-tests\n"
                             b"Root-Is-Purelib: true\nTag: py3-none-any\n")
        scripts = "".join(f"{k} = {v}\n" for k, v in project.get("scripts", {}).items())
        add(f"{info}/entry_points.txt", f"[console_scripts]\n{scripts}".encode())
        z.writestr(f"{info}/RECORD", "\n".join(records + [f"{info}/RECORD,,"]) + "\n")
    return wheel


def run_install(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    env.update(INSTALL_ROOT=str(root), SKIP_USER="1", SKIP_SYSTEMCTL="1",
               INSTALL_PIP_ARGS="--no-deps --no-index",
               # the interpreter the dependencies below were installed for
               INSTALL_PYTHON=os.path.realpath(sys.executable),
               INSTALL_SITE_PACKAGES=sysconfig.get_paths()["purelib"])
    result = subprocess.run(["bash", str(INSTALL_SH), *args], env=env, text=True,
                            capture_output=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"install.sh {' '.join(args)} exited {result.returncode}\n"
                             f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every path below root: type, mode, owner, mtime, and content hash or link target."""
    out: dict[str, tuple[object, ...]] = {}
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(top) / name
            st = path.lstat()
            rel = str(path.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
            else:
                out[rel] = ("file", st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns,
                            hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def files_below(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent's wheel, infrascope-core's beside it (see :func:`packages`)."""
    dist = tmp_path_factory.mktemp("dist")
    build_wheel(dist, CORE)
    return build_wheel(dist)


def packages(wheel: Path) -> list[str]:
    """install.sh's arguments for the agent's wheel and core's beside it."""
    [core] = wheel.parent.glob("infrascope_core-*.whl")
    return ["--core", str(core), str(wheel)]


def test_install_twice_changes_nothing_then_uninstall_removes_it(tmp_path: Path,
                                                                  wheel: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    first = run_install(root, *packages(wheel))
    assert "creating the virtualenv /opt/infrascope-agent" in first.stdout
    assert "systemd is not running here" in first.stdout
    assert (root / UNIT).read_bytes() == UNIT_SRC.read_bytes()
    assert (root / WEB_CONFIG).read_bytes() == EXAMPLE.read_bytes()
    assert stat.S_IMODE((root / WEB_CONFIG).stat().st_mode) == 0o640
    assert stat.S_IMODE((root / UNIT).stat().st_mode) == 0o644
    assert 'ARGS=""' in (root / DEFAULTS).read_text()

    venv = root / PREFIX
    version = subprocess.run([str(venv / "bin" / "infrascope-agent"), "--version"],
                             capture_output=True, text=True, timeout=60, check=True)
    assert version.stdout.strip() == "infrascope-agent 0.1.0"
    where = subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import infrascope_agent; print(infrascope_agent.__file__)"],
                           capture_output=True, text=True, timeout=60, check=True)
    assert where.stdout.strip().startswith(str(venv)), "not the virtualenv's own copy"
    core = subprocess.run([str(venv / "bin" / "python"), "-c",
                           "import infrascope_core; print(infrascope_core.__file__)"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert core.stdout.strip().startswith(str(venv)), "core is not the virtualenv's own copy"

    before = snapshot(root)
    second = run_install(root, *packages(wheel))
    assert snapshot(root) == before, "the second run changed files"
    assert "up to date" in second.stdout
    assert "installed " not in second.stdout and "creating" not in second.stdout

    # the operator's edits survive a re-install; the mode is put right again
    (root / WEB_CONFIG).write_text("basic_auth_users: {}\n")
    (root / WEB_CONFIG).chmod(0o644)
    third = run_install(root, *packages(wheel))
    assert (root / WEB_CONFIG).read_text() == "basic_auth_users: {}\n"
    assert stat.S_IMODE((root / WEB_CONFIG).stat().st_mode) == 0o640
    assert "mode 0640 on /etc/infrascope-agent/web-config.yml" in third.stdout

    # --uninstall removes what it installed, but keeps the edited web config ...
    gone = run_install(root, "--uninstall")
    assert "kept /etc/infrascope-agent/web-config.yml" in gone.stdout
    assert files_below(root) == [WEB_CONFIG]
    # ... which --purge removes too
    run_install(root, "--uninstall", "--purge")
    assert files_below(root) == []
    assert not (root / PREFIX).exists() and not (root / "etc/infrascope-agent").exists()
    # and uninstalling what is not there is fine
    run_install(root, "--uninstall")


def test_unedited_config_goes_with_uninstall(tmp_path: Path, wheel: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    run_install(root, *packages(wheel))
    run_install(root, "--uninstall")
    assert files_below(root) == []


def test_install_sh_refuses_bad_arguments(tmp_path: Path) -> None:
    assert run_install(tmp_path, "--bogus", check=False).returncode == 2
    result = run_install(tmp_path, "--purge", check=False)
    assert result.returncode == 1 and "--purge goes with --uninstall" in result.stderr
    result = run_install(tmp_path, str(tmp_path / "missing.whl"), check=False)
    assert result.returncode == 1 and "no such package" in result.stderr
    result = run_install(tmp_path, "--core", str(tmp_path / "missing-core.whl"), check=False)
    assert result.returncode == 1 and "no such core package" in result.stderr
    result = run_install(tmp_path, "--core", check=False)
    assert result.returncode == 1 and "--core needs a path" in result.stderr
    assert files_below(tmp_path) == []


def test_install_sh_takes_core_from_the_repository_by_default(tmp_path: Path) -> None:
    """Without --core, infrascope-core comes from core/ beside agent/ (pip builds it, as it
    builds the agent folder); the plan says so before anything is built."""
    fake_pip = tmp_path / "root"
    fake_pip.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_REQUIRE"))}
    # an option pip rejects: the install stops right after printing what it installs
    env.update(INSTALL_ROOT=str(fake_pip), SKIP_USER="1", SKIP_SYSTEMCTL="1",
               INSTALL_PIP_ARGS="--no-such-pip-option",
               INSTALL_PYTHON=os.path.realpath(sys.executable))
    result = subprocess.run(["bash", str(INSTALL_SH)], env=env, text=True,
                            capture_output=True, timeout=300)
    assert result.returncode != 0
    assert (f"installing the agent from {AGENT} and infrascope-core from {CORE}"
            in result.stdout), result.stdout + result.stderr


def test_install_sh_needs_root_outside_a_sandbox() -> None:
    nobody = shutil.which("setpriv")
    if os.geteuid() != 0 or nobody is None:
        pytest.skip("needs root and setpriv to run the script as another user")
    env = {k: v for k, v in os.environ.items() if k not in ("INSTALL_ROOT",)}
    result = subprocess.run([nobody, "--reuid=65534", "--regid=65534", "--clear-groups",
                             "bash", str(INSTALL_SH)], env=env, text=True,
                            capture_output=True, timeout=60)
    assert result.returncode == 1 and "run as root" in result.stderr


# --------------------------------------------------------------------------- the unit

# Directives systemd 252 knows in the sections the unit uses (a subset: the ones a
# service like this one could reasonably carry).
KNOWN = {
    "Unit": {"Description", "Documentation", "Wants", "Requires", "After", "Before",
             "ConditionPathExists", "StartLimitIntervalSec", "StartLimitBurst"},
    "Service": {
        "Type", "User", "Group", "EnvironmentFile", "Environment", "ExecStart", "ExecReload",
        "Restart", "RestartSec", "RestartPreventExitStatus", "TimeoutStopSec", "UMask",
        "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem",
        "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
        "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
        "RestrictAddressFamilies", "RestrictNamespaces", "LockPersonality",
        "MemoryDenyWriteExecute", "RestrictRealtime", "RestrictSUIDSGID", "RemoveIPC",
        "SystemCallArchitectures", "SystemCallFilter", "SystemCallErrorNumber",
        "ReadOnlyPaths", "ReadWritePaths", "SupplementaryGroups"},
    "Install": {"WantedBy", "RequiredBy", "Alias"},
}
# Settings that would stop the agent reading /proc, /sys, mounts or the Docker socket.
FORBIDDEN = {"ProtectProc", "ProcSubset", "PrivateUsers", "PrivateNetwork", "ProtectHostname",
             "InaccessiblePaths", "TemporaryFileSystem", "DynamicUser", "IPAddressDeny"}


def parse_unit(text: str) -> list[tuple[str, str, str, int]]:
    """(section, key, value, line number) for every directive; continuation lines joined."""
    out: list[tuple[str, str, str, int]] = []
    section = ""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        m = re.fullmatch(r"\[(\w+)\]", line.strip())
        if m:
            section = m.group(1)
            continue
        key, sep, value = line.partition("=")
        assert sep and key == key.strip() and key, f"line {n}: not 'Key=value': {line!r}"
        assert not value.endswith("\\"), f"line {n}: no continuation lines here"
        out.append((section, key, value, n))
    return out


def test_unit_directives_are_known_and_harden_without_blocking_reads() -> None:
    text = UNIT_SRC.read_text()
    directives = parse_unit(text)
    for section, key, _, n in directives:
        assert section in KNOWN, f"line {n}: unknown section [{section}]"
        assert key in KNOWN[section], f"line {n}: {key} is not a known [{section}] directive"
        assert key not in FORBIDDEN, f"line {n}: {key} would block the agent's reads"
    service = {k: v for s, k, v, _ in directives if s == "Service"}
    expected = {
        "Restart": "on-failure", "User": "infrascope-agent", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ProtectHome": "read-only", "PrivateTmp": "yes",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes", "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert service.get(key) == value, f"{key}={service.get(key)!r}, want {value!r}"
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert "--web.config.file=/etc/infrascope-agent/web-config.yml" in service["ExecStart"]
    assert service["ExecStart"].startswith("/opt/infrascope-agent/bin/infrascope-agent ")
    # the same file read by Python's INI parser (duplicate keys allowed, as in systemd)
    ini = configparser.RawConfigParser(strict=False, delimiters=("=",), interpolation=None)
    ini.optionxform = str  # type: ignore[assignment,method-assign]
    ini.read_string(text)
    assert ini.sections() == ["Unit", "Service", "Install"]
    assert ini["Install"]["WantedBy"] == "multi-user.target"

    # every hardening line carries a comment saying why (a group may share one)
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "Hardening" in line)
    for section, key, _, n in directives:
        if section != "Service" or n - 1 <= start:
            continue
        prev = lines[n - 2]
        prev_key = prev.partition("=")[0]
        assert prev.lstrip().startswith("#") or prev_key[:10] == key[:10] or (
            {prev_key, key} <= {"CapabilityBoundingSet", "AmbientCapabilities"}), \
            f"line {n}: {key} has no comment explaining it"


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed (the directive check above still ran)")
    # verify insists that ExecStart's binary exists: point it at a stand-in
    binary = tmp_path / "bin" / "infrascope-agent"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    unit = tmp_path / "infrascope-agent.service"
    unit.write_text(UNIT_SRC.read_text().replace("ExecStart=/opt/infrascope-agent/bin/",
                                                 f"ExecStart={binary.parent}/"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and output == "", output


def test_systemd_analyze_would_catch_a_typo(tmp_path: Path) -> None:
    """The check above is not vacuous: verify reports an unknown directive."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    unit = tmp_path / "typo.service"
    unit.write_text("[Service]\nExecStart=/bin/true\nProtectSystm=strict\n")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert "Unknown key" in result.stdout + result.stderr


def test_example_web_config_is_valid_both_ways() -> None:
    """As shipped (all commented out) and with its examples uncommented."""
    from infrascope_agent.webconfig import parse_web_config

    text = EXAMPLE.read_text()
    assert parse_web_config(text).tls is None
    lines, keep = [], False
    for line in text.splitlines():
        if re.match(r"# (tls_server_config|http_server_config|basic_auth_users):", line):
            keep = True
        elif line != "#" and not line.startswith("#  "):
            keep = False
        if keep:
            lines.append(line[2:])
    config = parse_web_config("\n".join(lines) + "\n", "/etc/infrascope-agent")
    assert config.tls is not None and config.tls.client_auth_type == "RequireAndVerifyClientCert"
    assert config.tls.cert_file == "/etc/infrascope-agent/agent.crt"
    assert config.tls.client_allowed_sans == ("prometheus.example.com",)
    assert config.headers["X-Frame-Options"] == "deny"
    assert list(config.users) == ["prometheus"]


def test_install_sh_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(INSTALL_SH)], check=True, timeout=30)
    assert os.access(INSTALL_SH, os.X_OK), "install.sh should be executable"
    checker = shutil.which("shellcheck")
    if checker is not None:
        subprocess.run([checker, str(INSTALL_SH)], check=True, timeout=60)



