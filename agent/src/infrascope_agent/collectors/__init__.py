"""One module per collector; importing this package registers them all."""

from importlib import import_module

_MODULES = ("cpu", "meminfo", "filesystem", "netdev", "loadavg", "stat", "uname", "diskstats",
            "systemd", "docker", "ports")

for _name in _MODULES:
    try:
        import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a collector not written yet must not break the rest
        if exc.name != f"{__name__}.{_name}":
            raise
