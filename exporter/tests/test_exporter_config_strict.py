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
