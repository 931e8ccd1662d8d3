"""One module per collector; importing this package registers them all.

The framework (:mod:`infrascope_agent.registry`) never imports its collectors:
whoever builds a collector set imports this package (:func:`build`).
"""

from ..registry import COLLECTORS, Collector, Settings
from . import (  # noqa: F401 - imported for their @register side effect
    cpu,
    diskstats,
    docker,
    filesystem,
    loadavg,
    meminfo,
    netdev,
    ports,
    stat,
    systemd,
    uname,
)


def build(settings: Settings, enabled: dict[str, bool] | None = None) -> list[Collector]:
    """Instantiate the enabled collectors (``enabled`` overrides the defaults by name)."""
    enabled = enabled or {}
    unknown = set(enabled) - set(COLLECTORS)
    if unknown:
        raise ValueError(f"unknown collector(s): {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(COLLECTORS))})")
    return [cls(settings) for name, cls in sorted(COLLECTORS.items())
            if enabled.get(name, cls.default_enabled)]
