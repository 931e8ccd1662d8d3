"""The exporter's exposition and /sd for the demo fleet, against a recorded golden.

The golden (``golden/demo_exposition.json``) holds, family by family, the name, type,
help and every sample (name, labels, value) the exporter produced for the demo fleet
with simulator and exporter on one fixed clock, so a refactoring that changes a
series, a label, a help text or a value shows up here, named. Left out: the
process's own series (``process_*``, ``python_info``: they describe this process);
masked: the figures that measure this run (refresh and render durations) and the
build labels that name this checkout and this Python.

After an intended change of the exposition: ``INFRASCOPE_UPDATE_GOLDEN=1 pytest
exporter/tests/test_exporter_golden.py`` rewrites the files; review their diff.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter_testlib import demo_config_data, refresh_all, serving
from infrascope_exporter.config import load_config
from infrascope_exporter.exporter import Exporter
from infrascope_sim.fleet import load_fleet
from infrascope_sim.server import running
from infrascope_sim.state import Simulator

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 17, 9, 30, tzinfo=UTC).timestamp()
LIVE = ("process_", "python_info")
MASKED_VALUES = ("hetzner_exporter_refresh_duration_seconds",
                 "hetzner_exporter_render_duration_seconds")
MASKED_LABELS = {"infrascope_exporter_build_info": ("revision", "python_version",
                                                    "python_implementation")}
UPDATE = os.environ.get("INFRASCOPE_UPDATE_GOLDEN") == "1"


def families(text: str) -> list[dict[str, Any]]:
    """The exposition family by family, samples sorted, run-specific parts masked."""
    out = []
    for fam in text_string_to_metric_families(text):
        if fam.name.startswith(LIVE):
            continue
        samples = []
        for s in fam.samples:
            labels = dict(sorted(s.labels.items()))
            for key in MASKED_LABELS.get(fam.name, ()):
                labels[key] = "<masked>"
            value: Any = "<masked>" if fam.name in MASKED_VALUES else s.value
            samples.append([s.name, labels, value])
        samples.sort(key=lambda s: (s[0], sorted(s[1].items())))
        out.append({"name": fam.name, "type": fam.type, "help": fam.documentation,
                    "samples": samples})
    return sorted(out, key=lambda f: f["name"])


def dump(value: Any) -> str:
    """JSON with one family header or one sample (or /sd target group) per line."""
    if isinstance(value, dict):
        return "{\n" + ",\n".join(f"{json.dumps(k)}: {dump(v).rstrip()}"
                                   for k, v in value.items()) + "\n}\n"
    rows = []
    for item in value:
        if isinstance(item, dict) and "samples" in item:
            head = json.dumps({k: v for k, v in item.items() if k != "samples"})
            body = ",\n".join("  " + json.dumps(s) for s in item["samples"])
            rows.append(head[:-1] + ', "samples": [\n' + body + "]}")
        else:
            rows.append(json.dumps(item))
    return "[\n" + ",\n".join(rows) + "\n]\n"


def compare(name: str, got: Any) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(dump(got))
    want = json.loads(path.read_text())
    if isinstance(got, list) and got and "samples" in got[0]:
        by_name = {f["name"]: f for f in want}
        got_names = [f["name"] for f in got]
        assert got_names == [f["name"] for f in want], "families added or removed"
        for fam in got:  # family by family: the first difference names its family
            assert fam == by_name[fam["name"]], fam["name"]
    assert got == want


@pytest.fixture(scope="module")
def demo_exporter(tmp_path_factory: pytest.TempPathFactory):
    clock = lambda: NOW  # noqa: E731
    with running(Simulator(load_fleet("demo"), clock=clock)) as endpoints:
        path = tmp_path_factory.mktemp("golden") / "exporter.yml"
        path.write_text(yaml.safe_dump(demo_config_data(endpoints)))
        exporter = Exporter(load_config(["--config.file", str(path)], environ={}), clock=clock)
        refresh_all(exporter)
        with serving(exporter) as url:
            yield exporter, url


def test_the_demo_exposition_is_the_golden_one(demo_exporter) -> None:
    exporter, url = demo_exporter
    text = httpx.get(url + "/metrics").text
    assert text.startswith(exporter.rendered.decode())
    compare("demo_exposition.json", families(text))


def test_the_demo_service_discovery_is_the_golden_one(demo_exporter) -> None:
    _, url = demo_exporter
    got = {path: httpx.get(url + path).json() for path in ("/sd", "/sd/cloud", "/sd/dedicated")}
    compare("demo_sd.json", got)
