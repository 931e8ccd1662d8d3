"""``infrascope setup`` against the Hetzner API simulator (real HTTP on loopback): the
files it writes, what it refuses to overwrite, and its message for each credential
failure. The whole path (setup, the services, history, report, doctor) is
tests/test_rehearsal.py."""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from infrascope_cli import setup as setup_cmd
from infrascope_cli.main import main
from infrascope_core.prometheus import free_port
from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import Endpoints, running
from infrascope_sim.state import Settings, Simulator

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None or shutil.which("amtool")
                                is None, reason="promtool and amtool: make apt-deps")

TOKENS = {"webshop": "demo-webshop-token", "analytics": "demo-analytics-token"}
ROBOT_USER, ROBOT_PASSWORD = "#ws+DemoShop", "demo-robot-password"


@pytest.fixture
def sim() -> Iterator[tuple[Simulator, Endpoints]]:
    simulator = Simulator(load_fleet("demo"), Settings())
    with running(simulator) as endpoints:
        yield simulator, endpoints


def secret_file(folder: Path, name: str, value: str) -> Path:
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def flags(tmp: Path, ep: Endpoints, tokens: dict[str, str] | None = None,
          robot_password: str | None = ROBOT_PASSWORD, *extra: str) -> list[str]:
    keep = tmp / "keep"
    keep.mkdir(exist_ok=True)
    args = ["setup", "--non-interactive", "--config-dir", str(tmp / "conf"),
            "--hcloud-endpoint", ep.cloud, "--robot-endpoint", ep.robot,
            "--alert-webhook-url", "http://127.0.0.1:9/alerts"]
    for name, token in (TOKENS if tokens is None else tokens).items():
        args += ["--hcloud-token-file", str(secret_file(keep, f"{name}.token", token)),
                 "--hcloud-project", name]
    if robot_password is not None:
        args += ["--robot-user", ROBOT_USER, "--robot-password-file",
                 str(secret_file(keep, "robot", robot_password))]
    return args + list(extra)


def test_setup_writes_validated_private_files_with_file_references(
        sim: tuple[Simulator, Endpoints], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    _, ep = sim
    conf = tmp_path / "conf"
    assert main(flags(tmp_path, ep, None, ROBOT_PASSWORD, "--exporter-address",
                      "0.0.0.0:18790", "--agent-port", "19100")) == 0
    out, err = capsys.readouterr()
    assert "[ok  ] Cloud project webshop: token accepted (read-only GET /servers: " in out
    assert "[ok  ] Robot user #ws+DemoShop: credentials accepted" in out
    assert "[ok  ] prometheus.yml: promtool check config" in out
    assert "[ok  ] alertmanager.yml: amtool check-config accepts it" in out
    assert f"infrascope history load --config-dir {conf}" in out
    written = sorted(p for p in conf.rglob("*") if p.is_file())
    assert len(written) > 50  # the rules pack's files among them
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {"0o600"}
    everything = out + err + "".join(p.read_text() for p in written)
    assert not any(t in everything for t in [*TOKENS.values(), ROBOT_PASSWORD])

    exporter = yaml.safe_load((conf / "exporter.yml").read_text())
    assert exporter["cloud"]["projects"] == [
        {"name": n, "token_file": str(tmp_path / "keep" / f"{n}.token")} for n in TOKENS]
    assert exporter["robot"]["password_file"] == str(tmp_path / "keep" / "robot")
    assert exporter["sd"] == {"address": "public_ipv4", "agent_port": 19100}
    prom = yaml.safe_load((conf / "prometheus" / "prometheus.yml").read_text())
    assert prom["rule_files"] == [str(conf / "prometheus" / "rules" / "*.rules.yml")]
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    # A wildcard listen address is scraped on loopback; no compose host names anywhere.
    assert jobs["hetzner"]["static_configs"][0]["targets"] == ["127.0.0.1:18790"]
    assert jobs["infrascope-agent"]["http_sd_configs"][0]["url"] == \
        "http://127.0.0.1:18790/sd"
    assert jobs["infrascope-recommender"]["static_configs"][0]["targets"] == \
        ["127.0.0.1:8792"]
    assert prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == \
        ["127.0.0.1:9093"]
    rec = yaml.safe_load((conf / "recommender.yml").read_text())
    assert rec["api"]["token_file"] == str(conf / "secrets" / "recommender-api-token")
    assert len((conf / "secrets" / "recommender-api-token").read_text().strip()) >= 40
    am = yaml.safe_load((conf / "alertmanager.yml").read_text())
    assert am["templates"] == [str(conf / "alertmanager" / "templates" / "*.tmpl")]
    assert (conf / "alertmanager" / "templates" / "infrascope.tmpl").is_file()
    assert {r["name"] for r in am["receivers"] if "webhook_configs" in r} == \
        {"pager", "chat", "digest"}


def test_shipped_receivers_keep_their_secrets_as_files_under_the_config_dir(
        sim: tuple[Simulator, Endpoints], tmp_path: Path) -> None:
    _, ep = sim
    args = flags(tmp_path, ep)
    i = args.index("--alert-webhook-url")
    del args[i:i + 2]
    assert main(args) == 0
    am = yaml.safe_load((tmp_path / "conf" / "alertmanager.yml").read_text())
    secrets = tmp_path / "conf" / "secrets" / "alertmanager"
    assert am["global"]["slack_api_url_file"] == str(secrets / "slack_api_url")
    assert am["global"]["smtp_auth_password_file"] == str(secrets / "smtp_password")
    pager = next(r for r in am["receivers"] if r["name"] == "pager")
    assert pager["pagerduty_configs"][0]["routing_key_file"] == \
        str(secrets / "pagerduty_routing_key")


def test_nothing_is_overwritten_without_force(sim: tuple[Simulator, Endpoints],
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _, ep = sim
    assert main(flags(tmp_path, ep)) == 0
    conf = tmp_path / "conf"
    exporter = conf / "exporter.yml"
    exporter.write_text("# the user's edit\n" + exporter.read_text())
    token = (conf / "secrets" / "recommender-api-token").read_text()
    capsys.readouterr()
    assert main(flags(tmp_path, ep, None, ROBOT_PASSWORD, "--agent-port", "9999")) == 1
    err = capsys.readouterr().err
    assert str(exporter) in err and "--force" in err and "nothing was written" in err
    assert exporter.read_text().startswith("# the user's edit")
    assert main(flags(tmp_path, ep, None, ROBOT_PASSWORD, "--agent-port", "9999",
                      "--force")) == 0
    assert "agent_port: 9999" in exporter.read_text()
    # The recommender's API token is kept (its clients keep working), still 0600.
    assert (conf / "secrets" / "recommender-api-token").read_text() == token
    assert (conf / "secrets" / "recommender-api-token").stat().st_mode & 0o777 == 0o600


def expect_failure(args: list[str], capsys: pytest.CaptureFixture[str],
                   conf: Path) -> str:
    assert main(args) == 1
    out, err = capsys.readouterr()
    assert "nothing was written" in out + err
    assert not conf.exists() or not any(conf.rglob("*.yml"))
    return out + err


def test_a_wrong_token_is_named_with_its_fix(sim: tuple[Simulator, Endpoints],
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _, ep = sim
    text = expect_failure(flags(tmp_path, ep, {"webshop": TOKENS["webshop"],
                                               "analytics": "not-the-token"}),
                          capsys, tmp_path / "conf")
    assert "[ok  ] Cloud project webshop" in text
    line = next(x for x in text.splitlines() if "Cloud project analytics" in x)
    assert line.startswith("[FAIL]") and "HTTP 401" in line and "wrong or was revoked" in line
    assert "Security > API tokens" in line and str(tmp_path / "keep/analytics.token") in line
    assert "not-the-token" not in text


def test_a_token_without_read_permission(sim: tuple[Simulator, Endpoints], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, ep = sim
    httpx.post(ep.control + "/faults", json={"kind": "forbidden", "api": "cloud",
                                             "project": "webshop"}).raise_for_status()
    text = expect_failure(flags(tmp_path, ep), capsys, tmp_path / "conf")
    line = next(x for x in text.splitlines() if "Cloud project webshop" in x)
    assert line.startswith("[FAIL]") and "may not read servers (HTTP 403 forbidden)" in line
    assert "Read permission" in line


def test_robot_user_rejected_then_blocked(sim: tuple[Simulator, Endpoints], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    simulator, ep = sim
    text = expect_failure(flags(tmp_path, ep, {}, "wrong"), capsys, tmp_path / "conf")
    line = next(x for x in text.splitlines() if "Robot user" in x)
    assert line.startswith("[FAIL]") and "rejected (HTTP 401)" in line
    assert "three failed logins" in line and "wrong" not in line.split("fix:")[0][-10:]
    # Two more failures: Robot blocks this IP; then even the right password is refused.
    for _ in range(2):
        expect_failure(flags(tmp_path, ep, {}, "wrong"), capsys, tmp_path / "conf")
    assert simulator.robot_blocked_until
    text = expect_failure(flags(tmp_path, ep, {}, ROBOT_PASSWORD), capsys, tmp_path / "conf")
    line = next(x for x in text.splitlines() if "Robot user" in x)
    assert "IP is blocked after failed logins" in line and "wait 10 minutes" in line


def test_unreachable_api(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    ep = Endpoints(dead)
    text = expect_failure(flags(tmp_path, ep), capsys, tmp_path / "conf")
    line = next(x for x in text.splitlines() if "Cloud project webshop" in x)
    assert f"the Cloud API at {dead}/v1 is unreachable (connection failed)" in line
    assert "--hcloud-endpoint" in line
    line = next(x for x in text.splitlines() if "Robot user" in x)
    assert f"the Robot API at {dead}/robot is unreachable" in line


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a + ["--hcloud-project", "third"], "give one project name per token file"),
    (lambda a: a + ["--exporter-address", "exporter"], "--exporter-address"),
    (lambda a: [x for x in a if x != "--non-interactive"], "not a terminal"),
])
def test_bad_flags_are_named(sim: tuple[Simulator, Endpoints], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str], change: Any,
                             message: str) -> None:
    _, ep = sim
    assert main(change(flags(tmp_path, ep))) == 1
    assert message in capsys.readouterr().err


def test_interactive_setup_reads_tokens_without_echo(sim: tuple[Simulator, Endpoints],
                                                     tmp_path: Path) -> None:
    _, ep = sim
    conf = tmp_path / "conf"
    answers = iter([str(conf), ep.cloud, "webshop", "", "y", ROBOT_USER, ep.robot,
                    "http://127.0.0.1:9090", "", "", "", ""])
    secrets = iter([TOKENS["webshop"], ROBOT_PASSWORD])
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    def ask_secret(prompt: str) -> str:
        asked.append(prompt)
        return next(secrets)

    parser = argparse.ArgumentParser()
    setup_cmd.add_arguments(parser)
    args = parser.parse_args(["--alert-webhook-url", "http://127.0.0.1:9/alerts"])
    a = setup_cmd.answers_from_prompts(args, ask, ask_secret)
    assert next(answers, None) is None and next(secrets, None) is None
    assert any("API token of webshop (not shown)" in p for p in asked)
    assert setup_cmd.setup(a) == 0
    token_file = conf / "secrets" / "hcloud-webshop.token"
    assert token_file.read_text().strip() == TOKENS["webshop"]
    assert token_file.stat().st_mode & 0o777 == 0o600
    exporter = yaml.safe_load((conf / "exporter.yml").read_text())
    assert exporter["cloud"]["projects"] == [{"name": "webshop",
                                              "token_file": str(token_file)}]
    assert exporter["robot"]["password_file"] == str(conf / "secrets" / "robot-password")
    assert TOKENS["webshop"] not in (conf / "exporter.yml").read_text()


def test_doctor_on_an_installation_that_does_not_run(sim: tuple[Simulator, Endpoints],
                                                     tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """Configuration and credentials pass; every service that does not run fails with
    the command that starts it; exit 1. (Passing and the other failures:
    tests/test_rehearsal.py.)"""
    _, ep = sim
    ports = [str(free_port()) for _ in range(4)]
    assert main(flags(tmp_path, ep, None, ROBOT_PASSWORD,
                      "--exporter-address", f"127.0.0.1:{ports[0]}",
                      "--recommender-address", f"127.0.0.1:{ports[1]}",
                      "--alertmanager-address", f"127.0.0.1:{ports[2]}",
                      "--prometheus-url", f"http://127.0.0.1:{ports[3]}")) == 0
    capsys.readouterr()
    conf = tmp_path / "conf"
    assert main(["doctor", "--config-dir", str(conf), "--timeout", "3"]) == 1
    lines = capsys.readouterr().out.splitlines()
    by_name = {x.split("] ", 1)[1].split(": ", 1)[0]: x for x in lines if x.startswith("[")}
    for name in ("config exporter.yml", "config recommender.yml", "config prometheus.yml",
                 "config alertmanager.yml", "Cloud project webshop", "Cloud project analytics",
                 "Robot user #ws+DemoShop"):
        assert by_name[name].startswith("[ok  ]"), by_name[name]
    assert by_name["exporter"].startswith(f"[FAIL] exporter: does not answer at "
                                          f"127.0.0.1:{ports[0]}")
    assert f"fix: start it: infrascope-exporter --config.file {conf / 'exporter.yml'}" in \
        by_name["exporter"]
    assert f"recommender serve --config {conf / 'recommender.yml'}" in by_name["recommender"]
    assert by_name["prometheus"].startswith(
        f"[FAIL] prometheus: does not answer at http://127.0.0.1:{ports[3]}")
    for name in ("scrape hetzner", "scrape infrascope-agent", "rule groups", "history",
                 "retention"):
        assert "not checked: Prometheus does not answer" in by_name[name]
    assert by_name["alertmanager"].startswith("[FAIL]") and "--web.listen-address=" \
        f"127.0.0.1:{ports[2]}" in by_name["alertmanager"]
    assert lines[-1] == f"7 of {len(by_name)} checks passed; {len(by_name) - 7} failed"
    # Where nothing was set up, it says so.
    assert main(["doctor", "--config-dir", str(tmp_path / "nothing")]) == 1
    assert "run infrascope setup" in capsys.readouterr().err


def test_interactive_setup_on_a_terminal(sim: tuple[Simulator, Endpoints],
                                         tmp_path: Path) -> None:
    """The real command on a pseudo-terminal: it asks (no --non-interactive needed) and
    the typed token is never echoed."""
    import os
    import pty
    import sys
    import time

    _, ep = sim
    conf = tmp_path / "conf"
    answers = [str(conf), ep.cloud, "webshop", TOKENS["webshop"], "", "n", "", "", "", "",
               ""]
    pid, fd = pty.fork()
    if pid == 0:  # the child: the installed command on the terminal
        exe = str(Path(sys.executable).with_name("infrascope"))
        os.execv(exe, [exe, "setup", "--alert-webhook-url", "http://127.0.0.1:9/alerts"])
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
            if chunk.endswith(b": ") and answers:
                os.write(fd, answers.pop(0).encode() + b"\n")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = shown.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert answers == [] and "API token of webshop (not shown): " in text
    assert TOKENS["webshop"] not in text
    assert "[ok  ] Cloud project webshop: token accepted" in text
    assert (conf / "secrets" / "hcloud-webshop.token").read_text().strip() == TOKENS["webshop"]


def test_token_file_shape_and_mode(sim: tuple[Simulator, Endpoints], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A token file the exporter would refuse (two lines) is refused before any request,
    naming the file and not its content; one others may read is accepted with the
    exporter's own warning."""
    simulator, ep = sim
    args = flags(tmp_path, ep, {"webshop": TOKENS["webshop"]}, None)
    token_file = tmp_path / "keep" / "webshop.token"
    token_file.write_text(TOKENS["webshop"] + "\nsecond-line\n")
    assert main(args) == 1
    err = capsys.readouterr().err
    assert str(token_file) in err and "2 lines" in err
    assert TOKENS["webshop"] not in err and "second-line" not in err
    assert not simulator.requests  # nothing was asked of the API
    token_file.write_text(TOKENS["webshop"] + "\n")
    token_file.chmod(0o644)
    assert main(args) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("[ok  ] exporter.yml"))
    assert f"warning: cloud.projects[0].token_file: {token_file}" in line
    assert f"chmod 600 {token_file}" in line


def test_readme_lists_every_flag_of_setup_and_doctor() -> None:
    from infrascope_cli.main import build_parser

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    history = sub.choices["history"]
    load = next(a for a in history._actions
                if isinstance(a, argparse._SubParsersAction)).choices["load"]
    for command, parser_ in (("setup", sub.choices["setup"]),
                             ("doctor", sub.choices["doctor"]), ("history load", load)):
        for action in parser_._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in readme or f"{flag} " in readme, (command, flag)
