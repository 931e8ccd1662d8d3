"""What the exporter says about itself that is read from the machine, not from Hetzner:
its build (version, git revision, Python) and the process's own series."""

from __future__ import annotations

import functools
import os
import platform
import re
import subprocess
from pathlib import Path

from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

from . import __version__


def live_registry() -> CollectorRegistry:
    """The series read at scrape time, not from the cached rendering: the process's own
    (``process_*``, ``python_info``), cheap to collect and wrong when stale."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ProcessCollector(registry=None))
    registry.register(PlatformCollector(registry=None))
    return registry


@functools.cache
def build_info_labels() -> dict[str, str]:
    """version, revision (``INFRASCOPE_REVISION``, or the commit of the git checkout the
    package runs from; empty when unknown), python_version and python_implementation."""
    return {"version": __version__, "revision": _revision(),
            "python_version": platform.python_version(),
            "python_implementation": platform.python_implementation()}


def _revision() -> str:
    revision = os.environ.get("INFRASCOPE_REVISION", "").strip()
    if revision:
        return revision
    checkout = Path(__file__).resolve().parents[3]
    if not (checkout / ".git").exists():
        return ""  # an installed package: no checkout to ask
    try:
        result = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) \
        else ""
