"""Rule thresholds and headroom (YAML ``rules:``), with documented defaults.

Placeholder: the full set arrives with the rules (see the README).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Thresholds:
    min_coverage: float = 0.25


def parse_thresholds(data: Mapping[str, Any]) -> Thresholds:
    return Thresholds()
