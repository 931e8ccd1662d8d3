"""Smoke tests for the ``recommender`` console script, run as a real subprocess."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

import pytest

SCRIPT = "recommender"
MODULE = "infrascope_recommender"
DIST = "infrascope-recommender"
ISSUE = 6


def _installed_script() -> Path | None:
    """The console script pip generated next to this interpreter, if any."""
    for directory in {Path(sysconfig.get_path("scripts")), Path(sys.executable).parent}:
        candidate = directory / SCRIPT
        if candidate.is_file():
            return candidate
    return None


def _invocations() -> list[pytest.ParameterSet]:
    script = _installed_script()
    return [
        pytest.param([sys.executable, "-m", MODULE], id="python-m"),
        pytest.param(
            [str(script)] if script else [],
            id="console-script",
            marks=pytest.mark.skipif(script is None, reason=f"{SCRIPT} not installed"),
        ),
    ]


def _run(cmd: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("cmd", _invocations())
def test_version(cmd: list[str]) -> None:
    result = _run(cmd, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{SCRIPT} 0.1.0"
    # The CLI and the installed distribution metadata must agree.
    assert version(DIST) == "0.1.0"


@pytest.mark.parametrize("cmd", _invocations())
def test_not_implemented_exits_2(cmd: list[str]) -> None:
    result = _run(cmd)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == f"{SCRIPT}: not implemented yet (see issue {ISSUE})"
