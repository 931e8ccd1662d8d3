"""One module per collector; importing this package registers them all."""

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
