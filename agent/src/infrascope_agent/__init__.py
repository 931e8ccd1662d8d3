"""InfraScope agent: a small node exporter for every server in the fleet.

It will expose node_exporter-compatible series (``node_cpu_seconds_total``,
``node_memory_MemAvailable_bytes``, ``node_filesystem_*``, ``node_network_*``,
``node_load*``, ``node_boot_time_seconds``, ``node_uname_info``) with the same
names, labels and units, plus discovered services: Docker containers, systemd
units, and listening ports tied to the service that owns them. It depends on
prometheus-client (plus bcrypt and PyYAML for web configs), so it installs on bare hosts.

Status: skeleton; the implementation arrives with issue 4.
"""

__version__ = "0.1.0"
