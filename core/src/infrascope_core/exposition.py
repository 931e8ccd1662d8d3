"""The Prometheus text format (0.0.4) and OpenMetrics 1.0, written one way.

Everything InfraScope writes in either format goes through this module: the agent's
``/metrics`` (:mod:`infrascope_agent.exposition`), the simulated agents, the exporter's
backfill and the OpenMetrics history files of the simulator, the tests and the
benchmarks. One owner for each rule of the formats, so they cannot drift apart:

- label values escape backslash, double quote and newline (``\\\\``, ``\\"``, ``\\n``);
  an empty value is written, not dropped (Prometheus treats ``a=""`` as no label ``a``:
  dropping it is the reader's business);
- ``# HELP`` text escapes backslash and newline, and in OpenMetrics the double quote
  too;
- sample values are written as Prometheus' clients write them (client_python's
  ``floatToGoString``: ``repr`` of the float, Go's exponent form for large positive
  values, ``NaN``, ``+Inf``, ``-Inf``), so the agent's output stays byte-identical to
  prometheus-client's;
- timestamps: integer milliseconds in the text format, seconds in OpenMetrics;
- metric and label names are checked (the legacy character set Prometheus 2 reads);
  a bad one is a :class:`ValueError`, never a line Prometheus rejects.

Standard library only: :meth:`OpenMetricsWriter.series`, the bulk path that formats
whole series with numpy (tens of millions of samples a minute, for 30-day histories),
imports numpy when it is called.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # numpy is needed by OpenMetricsWriter.series alone
    import numpy as np
    import numpy.typing as npt

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
EOF = "# EOF\n"
#: Sample-name suffixes a family's samples may carry (OpenMetrics).
SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_info", "_gcount", "_gsum")

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_INF = math.inf
_NEG_INF = -math.inf


@functools.lru_cache(maxsize=8192)
def is_metric_name(name: str) -> bool:
    """A legacy metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``)."""
    return _METRIC_NAME.fullmatch(name) is not None


@functools.lru_cache(maxsize=8192)
def is_label_name(name: str) -> bool:
    """A legacy label name (``[a-zA-Z_][a-zA-Z0-9_]*``)."""
    return _LABEL_NAME.fullmatch(name) is not None


def escape_label_value(value: str) -> str:
    """Backslash, double quote and newline escaped; nothing else changes."""
    if "\\" in value or "\n" in value or '"' in value:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return value


def escape_help(text: str, *, openmetrics: bool = False) -> str:
    """``# HELP`` text: backslash and newline escaped (OpenMetrics: the quote too)."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def format_labels(labels: Mapping[str, str], *, sort: bool = False) -> str:
    """``{a="1",b=""}`` in the given order (``sort``: by name), or ``""`` for none.

    Raises :class:`ValueError` for a label name Prometheus would not read.
    """
    if not labels:
        return ""
    parts = []
    for k in sorted(labels) if sort else labels:
        if not is_label_name(k):
            raise ValueError(f"invalid label name {k!r}")
        parts.append(f'{k}="{escape_label_value(labels[k])}"')
    return "{" + ",".join(parts) + "}"


def format_value(value: float | int | Decimal) -> str:
    """A sample value as Prometheus' clients write it (client_python's
    ``floatToGoString``): ``repr`` of the float; for positive values of seven or more
    integer digits Go's exponent form (``1.234567e+06``); ``NaN``, ``+Inf``, ``-Inf``."""
    v = float(value)
    if _NEG_INF < v < 1e6:  # the common case, first (NaN fails the comparison)
        return repr(v)
    if v != v:
        return "NaN"
    if v == _INF:
        return "+Inf"
    if v == _NEG_INF:
        return "-Inf"
    s = repr(v)
    whole, dot, fraction = s.partition(".")
    if dot and len(whole) > 6:  # Go switches to exponents sooner than Python (1e6 to 1e16)
        tail = (whole[1:] + fraction).rstrip("0")
        return f"{whole[0]}.{tail}e+{len(whole) - 1:02d}" if tail \
            else f"{whole[0]}e+{len(whole) - 1:02d}"
    return s


def format_timestamp(seconds: float) -> str:
    """An OpenMetrics timestamp: seconds, without a fraction when whole."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def family_header(name: str, type_: str, help_: str | None = None, *,
                  openmetrics: bool = False) -> str:
    """``# HELP`` (if ``help_`` is given) and ``# TYPE`` lines of family ``name``."""
    if not is_metric_name(name):
        raise ValueError(f"invalid metric name {name!r}")
    head = f"# HELP {name} {escape_help(help_, openmetrics=openmetrics)}\n" \
        if help_ is not None else ""
    return f"{head}# TYPE {name} {type_}\n"


def sample_line(name: str, labels: Mapping[str, str], value: float | int | Decimal,
                timestamp: float | None = None, *, openmetrics: bool = False,
                sort: bool = False) -> str:
    """One sample line; ``timestamp`` in seconds (written as milliseconds in the text
    format, as seconds in OpenMetrics)."""
    line = f"{name}{format_labels(labels, sort=sort)} {format_value(value)}"
    if timestamp is None:
        return line + "\n"
    stamp = format_timestamp(timestamp) if openmetrics else str(round(float(timestamp) * 1000))
    return f"{line} {stamp}\n"


class TextExposition:
    """A text-format (0.0.4) exposition built family by family and rendered once.

    Families are written in the order they are first named, each with its samples
    together, whatever order the samples came in.
    """

    def __init__(self) -> None:
        self._families: dict[str, tuple[str, list[str]]] = {}

    def family(self, name: str, type_: str = "gauge", help_: str | None = None,
               samples: Iterable[tuple[Mapping[str, str], float | int | Decimal]] = ()
               ) -> None:
        """Declare family ``name`` (idempotent: the first type and help stay) and add
        ``samples``, (labels, value) pairs of the family's own name."""
        if name not in self._families:
            self._families[name] = (family_header(name, type_, help_), [])
        lines = self._families[name][1]
        for labels, value in samples:
            lines.append(sample_line(name, labels, value))

    def add(self, name: str, labels: Mapping[str, str], value: float | int | Decimal, *,
            type_: str = "gauge", timestamp: float | None = None) -> None:
        """One sample of family ``name`` (declared with ``type_`` if new)."""
        if name not in self._families:
            self.family(name, type_)
        self._families[name][1].append(sample_line(name, labels, value, timestamp))

    def render(self) -> str:
        return "".join(head + "".join(lines) for head, lines in self._families.values())


class OpenMetricsWriter:
    """Writes an OpenMetrics file for ``promtool tsdb create-blocks-from openmetrics``.

    Call :meth:`family` once per metric family, then :meth:`sample` / :meth:`series`
    for its samples, and :meth:`close` (or leave the ``with`` block) to write
    ``# EOF``. The writer enforces what promtool needs: every family's samples
    contiguous (one ``# TYPE`` line per family; returning to an earlier family is an
    error) and every series contiguous with increasing timestamps (the caller's duty
    within one :meth:`series` call).

    :meth:`sample` writes values as :func:`format_value` does; :meth:`series` (numpy)
    writes them in fixed point with ``decimals`` digits (zero-padded integer part, which
    Prometheus parses normally) and timestamps in whole seconds. Counts of samples and
    bytes are kept in :attr:`samples` and :attr:`bytes`.
    """

    def __init__(self, path: str | Path, decimals: int = 6, chunk_bytes: int = 64 << 20
                 ) -> None:
        self.path = Path(path)
        self.decimals = decimals
        self.chunk_bytes = chunk_bytes
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 - close()
        self._families: set[str] = set()
        self._current: str | None = None
        self.samples = 0
        self.bytes = 0

    def __enter__(self) -> OpenMetricsWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _write(self, data: bytes) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: writer is closed")
        self._file.write(data)
        self.bytes += len(data)

    def family(self, name: str, type_: str = "gauge", help_: str | None = None) -> None:
        """Start family ``name`` (``# TYPE``, and ``# HELP`` if given)."""
        header = family_header(name, type_, help_, openmetrics=True)
        if name in self._families:
            raise ValueError(f"family {name} already written: families must be contiguous")
        self._families.add(name)
        self._current = name
        self._write(header.encode())

    def _prefix(self, name: str | None, labels: Mapping[str, str]) -> bytes:
        name = name or self._current
        if self._current is None or name is None or (
                name != self._current and name not in
                {self._current + suffix for suffix in SUFFIXES}):
            raise ValueError(f"sample of {name} outside its family ({self._current})")
        return (name + format_labels(labels) + " ").encode()

    def sample(self, labels: Mapping[str, str], value: float | int | Decimal,
               timestamp: float, name: str | None = None) -> None:
        """One sample of the current family (``name`` for ``_total`` etc.)."""
        text = f"{format_value(value)} {format_timestamp(timestamp)}\n"
        self._write(self._prefix(name, labels) + text.encode())
        self.samples += 1

    def series(self, labels: Sequence[Mapping[str, str]], values: npt.ArrayLike,
               timestamps: npt.ArrayLike, name: str | None = None) -> None:
        """Many series of the current family sharing ``timestamps`` (needs numpy).

        ``values`` has shape ``(len(labels), len(timestamps))`` (one series:
        ``(1, n)`` or ``(n,)`` with one label set); every value must be finite.
        ``timestamps`` are whole seconds, increasing. Series may be written in
        another order than given (they are grouped by the length of their
        label text to format them as one numpy array).
        """
        import numpy as np

        vals = np.asarray(values, dtype=np.float64)
        ts = np.asarray(timestamps, dtype=np.int64)
        if vals.ndim == 1:
            vals = vals.reshape(1, -1)
        if vals.shape != (len(labels), ts.size):
            raise ValueError(f"values shape {vals.shape} != ({len(labels)}, {ts.size})")
        if ts.size == 0 or not labels:
            return
        if not np.all(np.isfinite(vals)):
            raise ValueError("values must be finite")
        if ts.size > 1 and not np.all(np.diff(ts) > 0):
            raise ValueError("timestamps must increase")
        if ts.min() < 0:
            raise ValueError("timestamps must not be negative")
        prefixes = [self._prefix(name, lbl) for lbl in labels]
        scale = 10 ** self.decimals
        scaled = np.rint(np.abs(vals) * scale).astype(np.int64)
        negative = (vals < 0) & (scaled > 0)
        int_width = len(str(int((scaled // scale).max())))
        sign = bool(negative.any())
        ts_text = _digits(ts, len(str(int(ts.max()))))
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prefixes):
            by_length.setdefault(len(p), []).append(i)
        value_width = sign + int_width + (1 + self.decimals if self.decimals else 0)
        for plen, idx in by_length.items():
            width = plen + value_width + 1 + ts_text.shape[1] + 1
            per_batch = max(1, self.chunk_bytes // (width * ts.size))
            for b in range(0, len(idx), per_batch):
                rows = np.asarray(idx[b:b + per_batch])
                self._write(self._lines(
                    [prefixes[i] for i in rows], scaled[rows], negative[rows], int_width,
                    sign, ts_text, width))
        self.samples += vals.size

    def _lines(self, prefixes: list[bytes], scaled: npt.NDArray[np.int64],
               negative: npt.NDArray[np.bool_], int_width: int, sign: bool,
               ts_text: npt.NDArray[np.uint8], width: int) -> bytes:
        import numpy as np

        n, m = scaled.shape
        plen = len(prefixes[0])
        out = np.empty((n, m, width), np.uint8)
        pre = np.frombuffer(b"".join(prefixes), np.uint8).reshape(n, plen)
        out[:, :, :plen] = pre[:, None, :]
        col = plen
        if sign:
            out[:, :, col] = np.where(negative, ord("-"), ord("+"))
            col += 1
        scale = 10 ** self.decimals
        out[:, :, col:col + int_width] = _digits(scaled // scale, int_width)
        col += int_width
        if self.decimals:
            out[:, :, col] = ord(".")
            out[:, :, col + 1:col + 1 + self.decimals] = _digits(scaled % scale, self.decimals)
            col += 1 + self.decimals
        out[:, :, col] = ord(" ")
        col += 1
        out[:, :, col:col + ts_text.shape[1]] = ts_text[None, :, :]
        out[:, :, -1] = ord("\n")
        return bytes(out.tobytes())

    def close(self) -> None:
        """Write ``# EOF`` and close the file (idempotent)."""
        if self._file is not None:
            self._write(EOF.encode())
            self._file.close()
            self._file = None


def _digits(x: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """ASCII decimal digits of non-negative integers, zero-padded: shape (*x.shape, width)."""
    import numpy as np

    out = np.empty((*x.shape, width), np.uint8)
    x = x.copy()
    for i in range(width - 1, -1, -1):
        out[..., i] = 48 + x % 10
        x //= 10
    return out
