"""``recommender check-config`` and the configuration it checks: strict at every depth,
token files of one line without whitespace, listen addresses that can exist, a warning
for secret files others may read — and never a secret in a message."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrascope_recommender import cli
from infrascope_recommender.config import ConfigError, load_config

TOKEN = "rec-api-token-0123456789abcdef"
SECOND_LINE = "second-line-of-the-secret-file"
MODULE = "infrascope_recommender"


def write(tmp_path: Path, data: Any, name: str = "recommender.yml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def secret_file(tmp_path: Path, text: str, mode: int = 0o600, name: str = "token") -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def load(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> Any:
    return load_config(write(tmp_path, data), env=env or {})


# --- every key at every depth -------------------------------------------------------------

@pytest.mark.parametrize("data,key", [
    ({"prometheus": {"urll": "http://x"}}, "prometheus.urll: unknown key"),
    ({"prometheus": {"basic_auth": {"user": "u"}}}, "prometheus.basic_auth.user: unknown key"),
    ({"prometheus": {"tls": {"ca": "x"}}}, "prometheus.tls.ca: unknown key"),
    ({"state": {"file": "x.db"}}, "state.file: unknown key"),
    ({"api": {"token": TOKEN}}, "api.token: unknown key"),
    ({"schedule": {"every": "1h"}}, "schedule.every: unknown key"),
    ({"grafana": {"url": "http://g", "token_file": "/t", "folder": 1}},
     "grafana.folder: unknown key"),
    ({"rules": {"idle": {"cpu_max": 0.1}}}, "rules.idle.cpu_max"),
    ({"api": [TOKEN]}, "api: expected a mapping"),
    ({"prometheus": {"headers": [TOKEN]}}, "prometheus.headers: expected a mapping"),
    ({"prometheus": {"headers": []}}, "prometheus.headers: expected a mapping"),
    ({"rules": []}, "rules: expected a mapping"),
    ({"state": "recommender.db"}, "state: expected a mapping"),
])
def test_unknown_keys_and_wrong_shapes_at_every_depth(tmp_path: Path, data: dict,
                                                      key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data)
    assert key in str(err.value)
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("data,key", [
    ({"api": {"token_file": ["/a", "/b"]}}, "api.token_file: expected a non-empty string"),
    ({"api": {"token_file": ""}}, "api.token_file: expected a non-empty string"),
    ({"prometheus": {"bearer_token_file": {"path": "/x"}}},
     "prometheus.bearer_token_file: expected a non-empty string"),
    ({"prometheus": {"exporter_job": ["hetzner"]}}, "prometheus.exporter_job: expected"),
    ({"prometheus": {"agent_job": 7}}, "prometheus.agent_job: expected"),
    ({"prometheus": {"url": ["http://x"]}}, "prometheus.url: expected"),
    ({"prometheus": {"tls": {"insecure_skip_verify": "no"}}},
     "prometheus.tls.insecure_skip_verify: expected true or false"),
    ({"prometheus": {"tls": {"ca_file": ["/etc/ssl/ca.pem"]}}}, "prometheus.tls.ca_file"),
    ({"prometheus": {"basic_auth": {"username": ["u"], "password_file": "/p"}}},
     "prometheus.basic_auth.username: expected"),
    ({"prometheus": {"headers": {"X Bad": "v"}}}, "prometheus.headers: 'X Bad' is not"),
    ({"prometheus": {"headers": {"X-Scope-OrgID": "a\r\nInjected: 1"}}},
     "prometheus.headers.X-Scope-OrgID: expected one line"),
    ({"prometheus": {"headers": {"X-Scope-OrgID": ["a"]}}},
     "prometheus.headers.X-Scope-OrgID: expected one line"),
    ({"state": {"path": 5}}, "state.path: expected"),
    ({"grafana": {"url": "http://g", "token_file": "/t", "dashboard_uid": 12}},
     "grafana.dashboard_uid: expected"),
    ({"dashboard_url": ["http://g"]}, "dashboard_url: expected"),
])
def test_values_of_the_wrong_type_name_the_key(tmp_path: Path, data: dict, key: str) -> None:
    if "grafana" in data:  # a valid token file, so the error is the key under test
        data["grafana"]["token_file"] = str(secret_file(tmp_path, TOKEN))
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data)
    assert key in str(err.value)


def test_header_values_are_never_echoed(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"prometheus": {"headers": {"Authorization": f"Bearer {TOKEN}\n"}}})
    assert TOKEN not in str(err.value)
    # invalid YAML on the line holding a header value: the position, not the line
    broken = f'prometheus:\n  headers: {{Authorization: "Bearer {TOKEN}}}\n  url: [\n'
    with pytest.raises(ConfigError) as err:
        load(tmp_path, broken)
    assert "not valid YAML at line" in str(err.value) and TOKEN not in str(err.value)


# --- token files --------------------------------------------------------------------------

@pytest.mark.parametrize("text", [TOKEN, TOKEN + "\n", TOKEN + "\r\n"])
def test_a_token_file_is_one_line(tmp_path: Path, text: str) -> None:
    path = secret_file(tmp_path, text)
    config = load(tmp_path, {"api": {"token_file": str(path)}})
    assert config.api.token is not None and config.api.token.reveal() == TOKEN
    assert config.warnings == ()


@pytest.mark.parametrize("text,problem", [
    (f"{TOKEN}\n{SECOND_LINE}\n", "holds 2 lines; a token is one line"),
    (f"{TOKEN}\n\n", "holds 2 lines; a token is one line"),
    (f"{TOKEN} {SECOND_LINE}", "contains whitespace"),
    (f"{TOKEN}\t", "contains whitespace"),
    (f" {TOKEN}", "contains whitespace"),
    ("\n", "is empty"),
    ("", "is empty"),
])
@pytest.mark.parametrize("key", ["api.token_file", "prometheus.bearer_token_file",
                                 "grafana.token_file"])
def test_bad_token_files_name_the_file_never_the_secret(tmp_path: Path, text: str,
                                                        problem: str, key: str) -> None:
    path = secret_file(tmp_path, text)
    section, field = key.split(".")
    data: dict[str, Any] = {section: {field: str(path)}}
    if section == "grafana":
        data["grafana"]["url"] = "http://grafana:3000"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, data)
    message = str(err.value)
    assert message.startswith(f"{key}: ") and problem in message
    assert str(path) in message
    assert TOKEN not in message and SECOND_LINE not in message


def test_tokens_from_the_environment_have_the_same_shape(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="^RECOMMENDER_API_TOKEN: must be one line without "
                                          r"whitespace \(it contains whitespace\)"):
        load_config(None, env={"RECOMMENDER_API_TOKEN": f"{TOKEN} x"})
    two = secret_file(tmp_path, f"{TOKEN}\n{SECOND_LINE}\n")
    with pytest.raises(ConfigError) as err:
        load_config(None, env={"PROMETHEUS_BEARER_TOKEN_FILE": str(two)})
    assert str(err.value).startswith("PROMETHEUS_BEARER_TOKEN_FILE: ")
    assert TOKEN not in str(err.value) and SECOND_LINE not in str(err.value)


def test_a_password_may_hold_spaces_but_not_a_second_line(tmp_path: Path) -> None:
    password = secret_file(tmp_path, "correct horse battery staple\n")
    config = load(tmp_path, {"prometheus": {"basic_auth": {"username": "u",
                                                           "password_file": str(password)}}})
    assert config.prometheus.basic_auth_password is not None
    assert config.prometheus.basic_auth_password.reveal() == "correct horse battery staple"
    secret_file(tmp_path, f"pass word\n{SECOND_LINE}\n", name="token")
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"prometheus": {"basic_auth": {"username": "u",
                                                      "password_file": str(tmp_path / "token")}}})
    assert "a password is one line" in str(err.value) and SECOND_LINE not in str(err.value)


# --- listen addresses -----------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1:8792", "0.0.0.0:1", ":8792", "[::1]:8792",
                                     "[::]:65535", "localhost:8792",
                                     "recommender.internal.example:443"])
def test_valid_listen_addresses(tmp_path: Path, address: str) -> None:
    assert load(tmp_path, {"api": {"listen": address}}).api.listen == address


@pytest.mark.parametrize("address,problem", [
    ("999.1.1.1:99999", "port '99999' is not a number from 1 to 65535"),
    ("999.1.1.1:8792", "'999.1.1.1' is not an IPv4 address"),
    ("1.2.3:8792", "'1.2.3' is not an IPv4 address"),
    ("127.0.0.1:0", "port '0' is not a number from 1 to 65535"),
    ("127.0.0.1:", "port '' is not a number"),
    ("127.0.0.1", "expected [HOST]:PORT"),
    ("[::zz]:8792", "[::zz] is not an IPv6 address"),
    ("::1:8792", "is neither an IP address nor a host name"),
    ("host_name:8792", "is neither an IP address nor a host name"),
    ("-bad.example:8792", "is neither an IP address nor a host name"),
])
def test_listen_addresses_that_cannot_exist(tmp_path: Path, address: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"api": {"listen": address}})
    assert str(err.value).startswith("api.listen: ") and problem in str(err.value)
    # the same check for the flag and the environment variable
    with pytest.raises(ConfigError, match="^api.listen: "):
        load_config(None, env={"RECOMMENDER_LISTEN_ADDRESS": address})
    with pytest.raises(ConfigError, match="^api.listen: "):
        load_config(None, env={}, overrides={"listen": address})


# --- file modes ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,warned", [(0o600, False), (0o400, False), (0o640, True),
                                         (0o644, True), (0o604, True), (0o620, True)])
def test_secret_files_others_may_read_are_a_warning(tmp_path: Path, mode: int,
                                                    warned: bool) -> None:
    path = secret_file(tmp_path, TOKEN, mode)
    config = load(tmp_path, {"api": {"token_file": str(path)}})
    if not warned:
        assert config.warnings == ()
        return
    [warning] = config.warnings
    assert warning.startswith(f"api.token_file: {path} holds a secret and is accessible by "
                              "group or others")
    assert f"(mode {mode:04o})" in warning and f"chmod 600 {path}" in warning
    assert TOKEN not in warning


# --- the command ----------------------------------------------------------------------------

def check_config(*args: str, env: dict[str, str] | None = None,
                 ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PROMETHEUS_", "RECOMMENDER_"))}
    return subprocess.run([sys.executable, "-m", MODULE, "check-config", *args],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**clean, **(env or {})})


def test_check_config_command(tmp_path: Path) -> None:
    token = secret_file(tmp_path, TOKEN + "\n")
    good = write(tmp_path, {"prometheus": {"url": "http://prometheus:9090"},
                            "api": {"listen": "0.0.0.0:8792", "token_file": str(token)}})
    ok = check_config("--config.file", str(good))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("recommender: configuration OK: prometheus "
                                "http://prometheus:9090")
    assert "writes enabled" in ok.stdout and ok.stderr == ""

    token.chmod(0o644)
    warned = check_config("--config", str(good))  # the old spelling still works
    assert warned.returncode == 0, warned.stderr
    assert warned.stderr == (f"recommender: warning: api.token_file: {token} holds a secret "
                             f"and is accessible by group or others (mode 0644); run "
                             f"chmod 600 {token}\n")

    token.write_text(f"{TOKEN}\n{SECOND_LINE}\n")
    two_lines = check_config("--config.file", str(good))
    assert two_lines.returncode == 2 and two_lines.stdout == ""
    assert two_lines.stderr == (f"recommender: api.token_file: {token} holds 2 lines; "
                                f"a token is one line without whitespace\n")

    bad_listen = check_config("--web.listen-address", "999.1.1.1:99999")
    assert bad_listen.returncode == 2
    assert "api.listen: port '99999' is not a number from 1 to 65535" in bad_listen.stderr
    nested = check_config("--config.file", str(write(
        tmp_path, {"prometheus": {"tls": {"insecure": True}}}, "nested.yml")))
    assert nested.returncode == 2 and "prometheus.tls.insecure: unknown key" in nested.stderr
    from_env = check_config(env={"RECOMMENDER_API_TOKEN": f"{TOKEN} {SECOND_LINE}"})
    assert from_env.returncode == 2 and "contains whitespace" in from_env.stderr

    for result in (ok, warned, two_lines, bad_listen, nested, from_env):
        assert TOKEN not in result.stdout + result.stderr
        assert SECOND_LINE not in result.stdout + result.stderr


def test_run_and_serve_log_the_warnings(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import service_fixtures as fx

    for key in list(os.environ):
        if key.startswith(("PROMETHEUS_", "RECOMMENDER_")):
            monkeypatch.delenv(key)
    monkeypatch.setattr(cli, "make_runner", lambda config: fx.Runner(fx.run_result()))
    token = secret_file(tmp_path, TOKEN, 0o644)
    config = write(tmp_path, {"api": {"token_file": str(token)},
                              "state": {"path": str(tmp_path / "s.db")}})
    assert cli.main(["run", "--config.file", str(config)]) == 0
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if "chmod 600" in line]
    assert re.match(r"^ts=\S+Z level=warn msg=", line) and "event=config" in line
    assert TOKEN not in err


# --- flags --------------------------------------------------------------------------------

def all_options(parser: argparse.ArgumentParser) -> set[str]:
    out = set()
    for action in parser._actions:  # noqa: SLF001
        out.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for sub in action.choices.values():
                out |= all_options(sub)
    return out


def test_flags_are_prometheus_style_with_the_old_spellings_as_aliases() -> None:
    style = re.compile(r"^--[a-z0-9]+(-[a-z0-9]+)*(\.[a-z0-9]+(-[a-z0-9]+)*)+$")
    aliases = {a for names in cli.FLAGS.values() for a in names[1:]}
    sectionless = {"--help", "--version", "--format", "--output", "--from-state"}
    for flag in all_options(cli.build_parser()) - aliases - sectionless:
        assert style.match(flag), flag
    parser = cli.build_parser()
    values = {"config": "r.yml", "prometheus_url": "http://p:9090", "state": "s.db",
              "listen": "127.0.0.1:8792", "interval": "6h", "log_level": "debug"}
    new = parser.parse_args(["serve", *(f"{cli.FLAGS[d][0]}={v}" for d, v in values.items())])
    for dest, value in values.items():
        assert getattr(new, dest) == value
        for alias in cli.FLAGS[dest][1:]:
            old = parser.parse_args(["serve", alias, value])
            assert getattr(old, dest) == value, alias


def test_readme_flag_table_names_every_flag_and_alias() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for names in cli.FLAGS.values():
        for name in names:
            assert f"`{name}`" in readme, name
    assert "recommender check-config" in readme
