"""Typos in the configuration fail at start, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infrascope_exporter.config import ConfigError, load_config


@pytest.mark.parametrize("data,key", [
    ({"refresh": {"inventory_intervall": "5m"}}, "refresh.inventory_intervall"),
    ({"prices": []}, "prices: must be a mapping"),
    ({"cloud": {"token": "s3cr3t-token-value"}}, "cloud.token: unknown key"),
    ({"robot": "me"}, "robot: must be a mapping"),
])
def test_unknown_keys_and_wrong_shapes(tmp_path: Path, data: dict, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cloud": {"projects": [{"name": "p", "token": "t"}]}, **data}
                                   if "cloud" not in data else data))
    with pytest.raises(ConfigError) as err:
        load_config(["--config.file", str(path)], environ={})
    assert key in str(err.value)


def test_unknown_key_error_does_not_echo_the_value(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cloud": {"token": "s3cr3t-token-value"}}))
    with pytest.raises(ConfigError) as err:
        load_config(["--config.file", str(path)], environ={})
    assert "s3cr3t-token-value" not in str(err.value)


def test_robot_interval_must_stay_within_robots_hourly_limit(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"robot": {"user": "u", "password": "p"},
                                    "refresh": {"robot_interval": "10s"}}))
    with pytest.raises(ConfigError) as err:
        load_config(["--config.file", str(path)], environ={})
    assert "refresh.robot_interval" in str(err.value)


# ---------------------------------------------------------------------------
# Every depth, token shape, addresses, secret file modes (issue 12, point 5)
# ---------------------------------------------------------------------------
TOKEN = "s3cr3t-token-value"


def _load(tmp_path: Path, data: dict, *argv: str, environ: dict | None = None):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    path.chmod(0o600)
    return load_config(["--config.file", str(path), *argv], environ=environ or {})


@pytest.mark.parametrize("data,message", [
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN, "tokn": "x"}]}},
     "cloud.projects[0].tokn: unknown key"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN},
                             {"name": "q", "token": TOKEN, "labels": {"a": "b"}}]}},
     "cloud.projects[1].labels: unknown key"),
    ({"cloud": {"projects": [{"name": "p", "token": [TOKEN, "other"]}]}},
     "cloud.projects[0].token: must be a string"),
    ({"cloud": {"projects": [{"name": "p", "token": {"value": TOKEN}}]}},
     "cloud.projects[0].token: must be a string"),
    ({"cloud": {"projects": [{"name": "p", "token": 123456}]}},
     "cloud.projects[0].token: must be a string"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN + " second-word"}]}},
     "cloud.projects[0].token: must be one line without whitespace"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN + "\nline2"}]}},
     "cloud.projects[0].token: must be one line without whitespace"),
    ({"cloud": {"projects": [{"name": "p", "token_file": ["/a", "/b"]}]}},
     "cloud.projects[0].token_file: must be a string"),
    ({"cloud": {"projects": [{"name": ["p"], "token": TOKEN}]}},
     "cloud.projects[0].name: must be a string"),
    ({"cloud": {"projects": ["p"]}}, "cloud.projects[0]: must be a mapping"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN}]},
      "robot": {"user": "#ws+x", "password": ["a", "b"]}}, "robot.password: must be a string"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN}]},
      "robot": {"user": "#ws+x", "password": "pw", "labels": {2391001: {"env": {"a": 1}}}}},
     "robot.labels.2391001.env: must be a string"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN}]},
      "web": {"listen_address": ["127.0.0.1:8790"]}}, "web.listen_address: must be a string"),
    ({"cloud": {"projects": [{"name": "p", "token": TOKEN}], "token_file": {"a": 1}}},
     "cloud.token_file: must be a string"),
])
def test_every_depth_is_strict_and_tokens_are_one_word_strings(
        tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, data)
    assert str(err.value).startswith(message), str(err.value)
    assert TOKEN not in str(err.value) and "second-word" not in str(err.value)


def test_a_token_from_the_environment_is_checked_too() -> None:
    with pytest.raises(ConfigError) as err:
        load_config([], environ={"HCLOUD_TOKEN": TOKEN + " trailing-junk"})
    assert str(err.value).startswith("HCLOUD_TOKEN: must be one line without whitespace")
    assert TOKEN not in str(err.value)


@pytest.mark.parametrize("content", [
    TOKEN + "\n" + TOKEN + "\n",   # two tokens, two lines
    TOKEN + "\nsecond-line",
    TOKEN + " " + TOKEN + "\n",    # two words on one line
    "\t" + TOKEN + "\n",
])
def test_a_token_file_must_hold_one_line_without_whitespace(tmp_path: Path, content: str
                                                            ) -> None:
    token_file = tmp_path / "hcloud.token"
    token_file.write_text(content)
    token_file.chmod(0o600)
    for argv, key in ((["--hcloud-token-file", str(token_file)], "cloud.token_file"),
                      ([], "cloud.projects[0].token_file")):
        data = {} if argv else {"cloud": {"projects": [{"name": "p",
                                                        "token_file": str(token_file)}]}}
        with pytest.raises(ConfigError) as err:
            _load(tmp_path, data, *argv)
        message = str(err.value)
        assert message.startswith(f"{key}: {token_file}"), message
        assert "one line" in message
        assert TOKEN not in message and "second-line" not in message


@pytest.mark.parametrize("ending", ["", "\n", "\r\n"])
def test_a_token_file_with_a_trailing_newline_is_fine(tmp_path: Path, ending: str) -> None:
    token_file = tmp_path / "hcloud.token"
    token_file.write_bytes((TOKEN + ending).encode())
    token_file.chmod(0o600)
    config = load_config(["--hcloud-token-file", str(token_file)], environ={})
    assert config.projects[0].token.reveal() == TOKEN
    assert config.warnings == ()


def test_a_robot_password_file_must_be_one_line(tmp_path: Path) -> None:
    password = tmp_path / "robot.password"
    password.write_text("first line\nsecond line\n")
    password.chmod(0o600)
    with pytest.raises(ConfigError) as err:
        load_config(["--robot-user", "#ws+x", "--robot-password-file", str(password)],
                    environ={})
    assert str(err.value).startswith(f"robot.password_file: {password}")
    assert "first line" not in str(err.value) and "second" not in str(err.value)


@pytest.mark.parametrize("address", [
    "999.1.1.1:99999", "999.1.1.1:8790", "127.0.0.1:99999", "127.0.0.1:-1", "127.0.0.1:",
    "127.0.0.1", "8790", "[::1:8790", "[fe80::zz]:8790", "::1:8790", "bad_host!:8790",
    "-leading-hyphen:8790", "a..b:8790", "127.0.0.1:80 ", "host name:8790", "1.2.3:8790",
    "127.0.0.1:0x50", "127.0.0.1:８０",
])
def test_listen_addresses_are_validated(tmp_path: Path, address: str) -> None:
    data = {"cloud": {"projects": [{"name": "p", "token": TOKEN}]}}
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, {**data, "web": {"listen_address": address}})
    assert str(err.value).startswith("web.listen_address:"), str(err.value)
    # the same rule for the flag and the environment variable, named as given
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, data, f"--web.listen-address={address}")
    assert str(err.value).startswith("--web.listen-address:"), str(err.value)
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, data, environ={"INFRASCOPE_LISTEN_ADDRESS": address})
    assert str(err.value).startswith("INFRASCOPE_LISTEN_ADDRESS:"), str(err.value)


@pytest.mark.parametrize("address", [
    "0.0.0.0:8790", "127.0.0.1:1", ":8790", "[::]:8790", "[::1]:65535", "localhost:8790",
    "exporter.example.com:8790", "my-host:8790", "127.0.0.1:0",
])
def test_valid_listen_addresses_pass(tmp_path: Path, address: str) -> None:
    data = {"cloud": {"projects": [{"name": "p", "token": TOKEN}]},
            "web": {"listen_address": address}}
    assert _load(tmp_path, data).listen_address == address


def test_secret_files_readable_by_others_warn_naming_the_file_and_the_fix(tmp_path: Path
                                                                         ) -> None:
    token_file = tmp_path / "hcloud.token"
    token_file.write_text(TOKEN + "\n")
    password = tmp_path / "robot.password"
    password.write_text("pw\n")
    token_file.chmod(0o644)
    password.chmod(0o640)
    config = _load(tmp_path, {"cloud": {"projects": [{"name": "p",
                                                      "token_file": str(token_file)}]},
                              "robot": {"user": "#ws+x", "password_file": str(password)}})
    assert config.projects[0].token.reveal() == TOKEN  # a warning, not an error
    assert len(config.warnings) == 2, config.warnings
    by_file = {str(token_file): config.warnings[0], str(password): config.warnings[1]}
    for path, warning in by_file.items():
        assert path in warning and f"chmod 600 {path}" in warning, warning
        assert TOKEN not in warning and "pw" not in warning.replace(path, "")
    token_file.chmod(0o600)
    password.chmod(0o400)
    quiet = _load(tmp_path, {"cloud": {"projects": [{"name": "p",
                                                     "token_file": str(token_file)}]},
                             "robot": {"user": "#ws+x", "password_file": str(password)}})
    assert quiet.warnings == ()


def test_a_config_file_with_inline_secrets_readable_by_others_warns(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"cloud": {"projects": [{"name": "p", "token": TOKEN}]}}))
    path.chmod(0o644)
    config = load_config(["--config.file", str(path)], environ={})
    assert len(config.warnings) == 1 and str(path) in config.warnings[0]
    assert f"chmod 600 {path}" in config.warnings[0]
    # without a secret in it, a readable configuration file is fine
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    path.write_text(yaml.safe_dump({"cloud": {"projects": [{"name": "p",
                                                            "token_file": str(token_file)}]}}))
    assert load_config(["--config.file", str(path)], environ={}).warnings == ()


def test_check_config_prints_the_warning_and_rejects_a_two_line_token_file(
        tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    cli = Path(sys.executable).parent / "infrascope-exporter"
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HCLOUD_", "ROBOT_", "INFRASCOPE_"))}
    token_file = tmp_path / "hcloud.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    ok = subprocess.run([str(cli), "check-config", "--hcloud-token-file", str(token_file)],
                        capture_output=True, text=True, timeout=60, env=clean)
    assert ok.returncode == 0, ok.stderr
    assert "configuration OK" in ok.stdout
    assert "warning" in ok.stderr and str(token_file) in ok.stderr and "chmod 600" in ok.stderr
    token_file.write_text(TOKEN + "\n" + TOKEN + "\n")
    token_file.chmod(0o600)
    bad = subprocess.run([str(cli), "check-config", "--hcloud-token-file", str(token_file)],
                         capture_output=True, text=True, timeout=60, env=clean)
    assert bad.returncode == 2
    assert f"cloud.token_file: {token_file}" in bad.stderr and "one line" in bad.stderr
    assert TOKEN not in bad.stdout + bad.stderr


# ---------------------------------------------------------------------------
# One flag style (issue 12, point 7): --section.flag-name, old spellings as aliases
# ---------------------------------------------------------------------------
def test_every_flag_is_in_prometheus_style_and_old_spellings_still_work(tmp_path: Path
                                                                         ) -> None:
    import re

    from infrascope_exporter.config import FLAG_ALIASES, SCALARS, build_parser

    parser = build_parser()
    primary = {a.option_strings[0] for a in parser._actions if a.option_strings != ["-h",
                                                                                  "--help"]}
    for flag in primary:
        assert re.fullmatch(r"--[a-z]+\.[a-z]+(-[a-z]+)*", flag), flag
    assert {flag for _, flag, _, _ in SCALARS} | {"--config.file"} == primary
    token_file = tmp_path / "t"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    new_style = ["--cloud.token-file", str(token_file), "--cloud.project-name", "shop",
                 "--cloud.endpoint", "http://127.0.0.1:9/v1", "--prices.mode", "gross",
                 "--prices.vat-rate-percent", "19", "--no-prices.dedicated-default-from-catalogue",
                 "--refresh.inventory-interval", "7m", "--refresh.pricing-interval", "2h",
                 "--refresh.metrics-interval", "9m", "--refresh.robot-interval", "20m",
                 "--refresh.render-interval", "30s", "--budget.share", "0.5",
                 "--no-cloud.metrics", "--http.timeout", "3s", "--robot.user", "#ws+x",
                 "--robot.password-file", str(token_file), "--robot.endpoint",
                 "http://127.0.0.1:9"]
    old_style = ["--hcloud-token-file", str(token_file), "--hcloud-project-name", "shop",
                 "--hcloud-endpoint", "http://127.0.0.1:9/v1", "--price-mode", "gross",
                 "--vat-rate-percent", "19", "--no-dedicated-prices-from-catalogue",
                 "--inventory-interval", "7m", "--pricing-interval", "2h",
                 "--metrics-interval", "9m", "--robot-interval", "20m",
                 "--render-interval", "30s", "--request-budget", "0.5",
                 "--no-cloud-metrics", "--http-timeout", "3s", "--robot-user", "#ws+x",
                 "--robot-password-file", str(token_file), "--robot-endpoint",
                 "http://127.0.0.1:9"]
    assert set(FLAG_ALIASES.values()) <= {a for a in old_style if a.startswith("--")} | {
        "--dedicated-prices-from-catalogue", "--cloud-metrics"}
    new = load_config(new_style, environ={})
    old = load_config(old_style, environ={})
    assert new == old
    assert (new.projects[0].name, new.price_mode, new.inventory_interval, new.request_budget,
            new.cloud_metrics, new.http_timeout, new.robot_interval,
            new.dedicated_prices.default_from_catalogue) == (
        "shop", "gross", 420.0, 0.5, False, 3.0, 1200.0, False)
    # an error names the flag as it was typed
    for flag in ("--refresh.inventory-interval", "--inventory-interval"):
        with pytest.raises(ConfigError, match=f"^{flag}:"):
            load_config(["--cloud.token-file", str(token_file), flag, "soon"], environ={})
