"""OpenMetrics backfill files for tests, benchmarks and the demo, written fast.

- :class:`OpenMetricsWriter` writes backfill files: whole series (or many
  series sharing timestamps) are formatted with numpy, not per sample in
  Python — tens of millions of samples a minute.

The Prometheus and promtool runners these files are loaded with live in
:mod:`infrascope_core.prometheus`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np
import numpy.typing as npt

# ----------------------------------------------------------------------------
# OpenMetrics
# ----------------------------------------------------------------------------
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SUFFIXES = ("_total", "_created", "_count", "_sum", "_bucket", "_info", "_gcount", "_gsum")


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: Mapping[str, str]) -> str:
    """``{a="1",b="2"}`` (empty values dropped, as Prometheus does), or ``""``."""
    parts = []
    for k, v in labels.items():
        if not _LABEL_NAME.match(k):
            raise ValueError(f"invalid label name {k!r}")
        if v != "":
            parts.append(f'{k}="{escape_label_value(v)}"')
    return "{" + ",".join(parts) + "}" if parts else ""


def format_value(value: float) -> str:
    """A sample value as OpenMetrics spells it (``NaN``, ``+Inf``, ``-Inf``, ``repr``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _digits(x: npt.NDArray[np.int64], width: int) -> npt.NDArray[np.uint8]:
    """ASCII decimal digits of non-negative integers, zero-padded: shape (*x.shape, width)."""
    out = np.empty((*x.shape, width), np.uint8)
    x = x.copy()
    for i in range(width - 1, -1, -1):
        out[..., i] = 48 + x % 10
        x //= 10
    return out


class OpenMetricsWriter:
    """Writes an OpenMetrics file for ``promtool tsdb create-blocks-from openmetrics``.

    Call :meth:`family` once per metric family, then :meth:`series` /
    :meth:`sample` for its samples, and :meth:`close` (or leave the ``with``
    block) to write ``# EOF``. The writer enforces what promtool needs: every
    family's samples contiguous (one ``# TYPE`` line per family; returning to
    an earlier family is an error) and every series contiguous with increasing
    timestamps (the caller's duty within one :meth:`series` call).

    Values are written in fixed-point with ``decimals`` digits (zero-padded
    integer part, which Prometheus parses normally), timestamps in whole
    seconds. Counts of samples and bytes are kept in :attr:`samples` and
    :attr:`bytes`.
    """

    def __init__(self, path: Path, decimals: int = 6, chunk_bytes: int = 64 << 20) -> None:
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
        if not _NAME.match(name):
            raise ValueError(f"invalid metric name {name!r}")
        if name in self._families:
            raise ValueError(f"family {name} already written: families must be contiguous")
        self._families.add(name)
        self._current = name
        if help_ is not None:
            self._write(f"# HELP {name} {escape_label_value(help_)}\n".encode())
        self._write(f"# TYPE {name} {type_}\n".encode())

    def _prefix(self, name: str | None, labels: Mapping[str, str]) -> bytes:
        name = name or self._current
        if self._current is None or name is None or (
                name != self._current and name not in
                {self._current + suffix for suffix in _SUFFIXES}):
            raise ValueError(f"sample of {name} outside its family ({self._current})")
        return (name + format_labels(labels) + " ").encode()

    def sample(self, labels: Mapping[str, str], value: float, timestamp: float,
               name: str | None = None) -> None:
        """One sample of the current family (``name`` for ``_total`` etc.)."""
        text = f"{format_value(value)} {timestamp:.3f}\n"
        self._write(self._prefix(name, labels) + text.encode())
        self.samples += 1

    def series(self, labels: Sequence[Mapping[str, str]], values: npt.ArrayLike,
               timestamps: npt.ArrayLike, name: str | None = None) -> None:
        """Many series of the current family sharing ``timestamps``.

        ``values`` has shape ``(len(labels), len(timestamps))`` (one series:
        ``(1, n)`` or ``(n,)`` with one label set); every value must be finite.
        ``timestamps`` are whole seconds, increasing. Series may be written in
        another order than given (they are grouped by the length of their
        label text to format them as one numpy array).
        """
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
        int_part = scaled // scale
        int_width = len(str(int(int_part.max())))
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
        return out.tobytes()

    def close(self) -> None:
        """Write ``# EOF`` and close the file (idempotent)."""
        if self._file is not None:
            self._write(b"# EOF\n")
            self._file.close()
            self._file = None
