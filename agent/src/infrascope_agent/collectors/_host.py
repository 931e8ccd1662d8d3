"""Helpers shared by the host collectors (filesystem, netdev, diskstats, ...).

Options that node_exporter takes as flags (``--collector.netdev.device-exclude``
...) are read from ``Settings.extra`` under the flag's name without the dashes,
so the CLI (or a test) can pass them straight through; when absent the collector
uses node_exporter 1.5's upstream default.
"""

from __future__ import annotations

import re

from ..registry import Settings


def option(settings: Settings, key: str, default: str) -> str:
    value = settings.extra.get(key, default)
    return default if value is None else str(value)


def compile_optional(pattern: str) -> re.Pattern[str] | None:
    """node_exporter treats an empty regexp flag as "not set"."""
    return re.compile(pattern) if pattern else None


class DeviceFilter:
    """node_exporter's deviceFilter: ignored if it matches exclude or misses include.

    Patterns are searched (unanchored), like Go's ``regexp.MatchString``.
    """

    def __init__(self, exclude: str = "", include: str = "") -> None:
        if exclude and include:
            raise ValueError("device exclude and include are mutually exclusive")
        self.exclude = compile_optional(exclude)
        self.include = compile_optional(include)

    @classmethod
    def from_settings(cls, settings: Settings, prefix: str,
                      default_exclude: str = "") -> DeviceFilter:
        include = option(settings, f"{prefix}.device-include", "")
        exclude = option(settings, f"{prefix}.device-exclude",
                         "" if include else default_exclude)
        return cls(exclude, include)

    def ignored(self, name: str) -> bool:
        if self.exclude is not None and self.exclude.search(name):
            return True
        return self.include is not None and not self.include.search(name)
