"""Fixtures: a real simulator on loopback, and exporter configs pointing at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from infrascope_exporter.config import Config, load_config
from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import Endpoints, running
from infrascope_sim.state import Simulator


@pytest.fixture
def sim() -> Simulator:
    return Simulator(load_fleet("demo"))


@pytest.fixture
def served(sim: Simulator) -> Iterator[Endpoints]:
    with running(sim) as endpoints:
        yield endpoints


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Write exporter YAML to a file and load it like the CLI does (no environment)."""
    def make(data: dict[str, Any], *argv: str) -> Config:
        path = tmp_path / "exporter.yaml"
        path.write_text(yaml.safe_dump(data))
        return load_config(["--config.file", str(path), *argv], environ={})
    return make
