"""The one writer of the text format and OpenMetrics: escaping, values, families, and
what promtool makes of its files (it must accept them, and read back what was meant)."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from infrascope_core.exposition import (
    EOF,
    OpenMetricsWriter,
    TextExposition,
    escape_help,
    escape_label_value,
    family_header,
    format_labels,
    format_timestamp,
    format_value,
    sample_line,
)
from infrascope_core.prometheus import binaries_available, promtool_blocks, run_tool

TRICKY = 'rack "B"\\row 3\nüber ✓'
T0 = 1_700_006_400  # a multiple of 2 h: one block


# --- escaping and labels ---------------------------------------------------------------

def test_label_values_escape_backslash_quote_and_newline_only() -> None:
    assert escape_label_value(TRICKY) == 'rack \\"B\\"\\\\row 3\\nüber ✓'
    assert escape_label_value('\\"') == '\\\\\\"'  # the backslash first, then the quote
    assert escape_label_value("\\n") == "\\\\n"  # a literal backslash-n is not a newline
    assert escape_label_value("tab\there\r") == "tab\there\r"
    assert escape_label_value("") == ""


def test_help_escapes_the_quote_in_openmetrics_only() -> None:
    text = 'a "b" \\ c\nd'
    assert escape_help(text) == 'a "b" \\\\ c\\nd'
    assert escape_help(text, openmetrics=True) == 'a \\"b\\" \\\\ c\\nd'


def test_labels_keep_empty_values_order_and_unicode() -> None:
    labels = {"z": "1", "empty": "", "a": TRICKY}
    assert format_labels(labels) == \
        '{z="1",empty="",a="rack \\"B\\"\\\\row 3\\nüber ✓"}'
    assert format_labels(labels, sort=True).startswith('{a="rack')
    assert format_labels({}) == ""


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a.b", "ü", "a b"])
def test_a_label_name_prometheus_cannot_read_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="invalid label name"):
        format_labels({name: "x"})


def test_metric_names_are_checked() -> None:
    assert family_header("a:b_c", "gauge") == "# TYPE a:b_c gauge\n"
    with pytest.raises(ValueError, match="invalid metric name"):
        family_header("a-b", "gauge")


# --- values and timestamps -------------------------------------------------------------

@pytest.mark.parametrize("value,text", [
    (0, "0.0"), (3, "3.0"), (-1, "-1.0"), (2**53 + 1, "9.007199254740992e+15"),
    (1.5, "1.5"), (-0.0, "-0.0"), (0.1 + 0.2, "0.30000000000000004"), (1e-9, "1e-09"),
    (123456.0, "123456.0"), (1234567.0, "1.234567e+06"), (12345678.9, "1.23456789e+07"),
    (10_000_000.0, "1e+07"), (-1234567.0, "-1234567.0"), (1e21, "1e+21"),
    (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf"),
    (Decimal("49.00"), "49.0"), (Decimal("0.0137"), "0.0137"), (Decimal("NaN"), "NaN"),
])
def test_values_are_written_as_prometheus_clients_write_them(value: object,
                                                             text: str) -> None:
    assert format_value(value) == text  # type: ignore[arg-type]
    if not (isinstance(value, float) and math.isnan(value)) and text != "NaN":
        assert float(text) == float(value)  # type: ignore[arg-type]


def test_values_equal_client_pythons() -> None:
    utils = pytest.importorskip("prometheus_client.utils")
    for v in [0.0, -0.0, 1.0, -1.5, 1e-9, 123456.0, 1234567.0, 12345678.9, 1e21, -1e21,
              math.inf, -math.inf, math.nan, 3, 2**53 + 1, 0.1 + 0.2, 999999.5, 1e6,
              5e-324, 1.7976931348623157e308, 4_294_967_296.0, 0.001]:
        assert format_value(v) == utils.floatToGoString(v), v
    rng = random.Random(13)
    for _ in range(20_000):  # every magnitude, both signs, whole and fractional
        v = rng.choice([-1, 1]) * rng.random() * 10 ** rng.randint(-12, 20)
        for x in (v, float(round(v))):
            assert format_value(x) == utils.floatToGoString(x), x


def test_timestamps() -> None:
    assert format_timestamp(1_700_000_000) == "1700000000"
    assert format_timestamp(1_700_000_000.0) == "1700000000"
    assert format_timestamp(1_700_000_000.5) == "1700000000.5"
    # the text format: integer milliseconds, rounded (a float ms/1000 is not exact)
    assert sample_line("m", {}, 1, 1_700_000_000_123 / 1000) == "m 1.0 1700000000123\n"
    assert sample_line("m", {}, 1, 1_700_000_000.5, openmetrics=True) == \
        "m 1.0 1700000000.5\n"


# --- the text format -------------------------------------------------------------------

def test_text_exposition_keeps_families_together_and_parses_back() -> None:
    parser = pytest.importorskip("prometheus_client.parser")
    out = TextExposition()
    out.family("demo_requests_total", "counter", 'Requests\\ "all"\nof them.')
    out.add("demo_up", {"job": "a"}, 1)
    out.add("demo_requests_total", {"code": "200", "path": TRICKY}, 10)
    out.add("demo_up", {"job": "b", "empty": ""}, 0)
    out.family("demo_requests_total", "counter", "ignored: declared already",
               [({"code": "500", "path": ""}, 1.5)])
    text = out.render()
    assert text == (
        '# HELP demo_requests_total Requests\\\\ "all"\\nof them.\n'
        "# TYPE demo_requests_total counter\n"
        'demo_requests_total{code="200",path="rack \\"B\\"\\\\row 3\\nüber ✓"} 10.0\n'
        'demo_requests_total{code="500",path=""} 1.5\n'
        "# TYPE demo_up gauge\n"
        'demo_up{job="a"} 1.0\n'
        'demo_up{job="b",empty=""} 0.0\n')
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    requests = families["demo_requests"]
    assert requests.documentation == 'Requests\\ "all"\nof them.'
    assert [(s.labels, s.value) for s in requests.samples] == [
        ({"code": "200", "path": TRICKY}, 10.0), ({"code": "500", "path": ""}, 1.5)]
    assert families["demo_up"].samples[1].labels == {"job": "b", "empty": ""}


# --- OpenMetrics files -----------------------------------------------------------------

def write_sample_file(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                          list[tuple[int, float]]]:
    """A file using both paths of the writer, and the samples promtool should store
    (labels without the empty ones: Prometheus stores ``a=""`` as no label ``a``)."""
    np = pytest.importorskip("numpy")
    want: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = {}

    def expect(name: str, labels: dict[str, str], ts: int, value: float) -> None:
        key = (name, tuple(sorted((k, v) for k, v in labels.items() if v)))
        want.setdefault(key, []).append((ts * 1000, value))

    with OpenMetricsWriter(path, decimals=3) as w:
        w.family("demo_value", "gauge", 'Help with "quotes", \\ and\na newline.')
        labels = {"where": TRICKY, "empty": "", "server_id": "1"}
        for i, v in enumerate([1.5, 3, 1234567.0, -2.25, math.inf, Decimal("0.0137")]):
            w.sample(labels, v, T0 + 60 * i)  # type: ignore[arg-type]
            expect("demo_value", labels, T0 + 60 * i, float(v))  # type: ignore[arg-type]
        w.family("demo_cpu_seconds", "counter", "Bulk-written counters.")
        rows = [{"cpu": "0", "mode": "idle"}, {"cpu": "0", "mode": "user", "empty": ""},
                {"cpu": "10", "mode": TRICKY}]
        ts = np.arange(T0, T0 + 600, 60)
        values = np.array([np.arange(10) * 1.25, np.arange(10) * -0.5,
                           np.full(10, 12_345_678.9)])
        w.series(rows, values, ts, name="demo_cpu_seconds_total")
        for row, vals in zip(rows, values, strict=True):
            for t, v in zip(ts, vals, strict=True):
                expect("demo_cpu_seconds_total", row, int(t), round(float(v), 3))
    return want


def test_the_writer_enforces_contiguous_families(tmp_path: Path) -> None:
    with OpenMetricsWriter(tmp_path / "x.om") as w:
        w.family("a")
        w.sample({}, 1, T0)
        with pytest.raises(ValueError, match="outside its family"):
            w.sample({}, 1, T0, name="b")
        w.sample({}, 1, T0 + 1, name="a_total")
        w.family("b")
        with pytest.raises(ValueError, match="families must be contiguous"):
            w.family("a")
    text = (tmp_path / "x.om").read_text()
    assert text.endswith(EOF) and text.count(EOF) == 1
    assert w.samples == 2 and w.bytes == len(text.encode())


def test_the_module_does_not_need_numpy() -> None:
    code = ("import sys, infrascope_core.exposition as e; "
            "t = e.TextExposition(); t.add('m', {'a': 'b'}, 1); t.render(); "
            "assert 'numpy' not in sys.modules, 'numpy imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


_DUMP = re.compile(r'^\{(.*)\} (\S+) (\d+)$')
_PAIR = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)=("(?:[^"\\]|\\.)*")')


@pytest.mark.skipif(not binaries_available(), reason="promtool not installed (make apt-deps)")
def test_promtool_accepts_the_file_and_stores_what_was_meant(tmp_path: Path) -> None:
    om = tmp_path / "in.om"
    want = write_sample_file(om)
    data = tmp_path / "data"
    assert promtool_blocks(om, data)
    (data / "wal").mkdir()  # `promtool tsdb dump` reads the WAL too
    proc = run_tool(["promtool", "tsdb", "dump", str(data)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    got: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[int, float]]] = {}
    for line in proc.stdout.splitlines():
        m = _DUMP.match(line)
        assert m, line
        labels = {k: json.loads(v) for k, v in _PAIR.findall(m.group(1))}  # Go-quoted
        name = labels.pop("__name__")
        got.setdefault((name, tuple(sorted(labels.items()))), []).append(
            (int(m.group(3)), float(m.group(2))))
    assert got == want
