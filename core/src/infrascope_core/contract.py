"""The series contract: every metric family an InfraScope component emits, and the
vocabularies their labels take.

One declaration per family — name, type, unit, help, labels and the component that
emits it — in the style of the node_exporter and kube-state-metrics docs, read by the
components that produce the series and by the checks that keep the rest honest:
the exporter renders its families from here, and the contract tests compare every
component's exposition (on the demo fleet), the recording rules, the recommender's
queries, the dashboards and the READMEs against it (``tests/test_contract.py``).

Names are the ones PromQL sees: a counter is declared with its ``_total`` suffix.
Names written with ``<placeholder>`` parts declare a generated group (node_exporter's
``node_memory_<field>_bytes``: one family per /proc/meminfo field).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

# ---- vocabularies ---------------------------------------------------------------

PROVIDERS = ("hetzner",)
"""Value of ``provider``: whose servers (the exporter's naming: ``hetzner_*``)."""
SOURCES = ("cloud", "dedicated")
"""Value of ``source``: Cloud server or dedicated (Robot) server."""
IDENTITY = ("source", "server_id")
"""The labels that name one server; every per-server join is ``on (source, server_id)``."""
TIERS = ("idle", "low", "moderate", "high", "critical")
"""Utilisation tiers, lowest first; the index is the tier number of ``tier30d``."""
TIER_UNKNOWN = "unknown"
"""Tier of a server with too little data (tier number -1)."""
EXCLUDED_FSTYPES = ("tmpfs", "ramfs", "squashfs", "iso9660", "overlay", "nsfs", "fuse.lxcfs")
"""Filesystem types that are not disk capacity: left out of every disk figure (rules,
dashboards, recommender). The agent still exposes them, as node_exporter does."""
COST_COMPONENTS = ("server", "backup", "primary_ipv4", "primary_ipv6")
"""Value of ``component`` in ``hetzner_server_monthly_cost_breakdown_euros``."""
DIRECTIONS = ("read", "write", "in", "out")
"""Value of ``direction`` in the Cloud metrics (disk: read/write; network: in/out)."""


EXCLUDED_NETDEVS = ("lo", "veth.*", "docker.*", "br-.*", "virbr.*", "cni.*", "flannel.*",
                    "cali.*", "vxlan.*", "tun.*", "tap.*", "kube-ipvs.*", "cilium.*")
"""Network devices whose bytes are not the server's own traffic (loopback, container and
bridge devices: they repeat what crosses the real interfaces): left out of every
network figure. VPN devices (``wg*``, ``tailscale*``) stay: their traffic is work."""


def excluded_fstypes_regex() -> str:
    """``EXCLUDED_FSTYPES`` as the right-hand side of a PromQL ``fstype!~"..."``."""
    return "|".join(EXCLUDED_FSTYPES)


def excluded_netdevs_regex() -> str:
    """``EXCLUDED_NETDEVS`` as the right-hand side of a PromQL ``device!~"..."``."""
    return "|".join(EXCLUDED_NETDEVS)


# ---- units: the provider's "GB" and "TB" in bytes -------------------------------------
# The Hetzner APIs give sizes as bare numbers of "GB" or "TB"; every *_bytes series is in
# bytes. Each conversion has one owner, here: the exporter, the simulator and the
# recommender's texts use these. The tests that check a unit against an independent
# model of the machine keep their own literal on purpose (else they would check nothing).
# Source of the field texts quoted: the Hetzner Cloud API reference
# (https://docs.hetzner.cloud/), as the official hcloud-python client repeats it.

DISK_BYTES_PER_GB = 10**9
"""Disks are decimal GB. ``server_types[].disk``: "Disk size a server of this type will
have in GB"; ``servers[].primary_disk_size`` (GB) "Size of the primary Disk";
``volumes[].size``: "Size in GB of the Volume". Storage is sold in decimal GB (a Robot
product's "2 x 512 GB NVMe SSD" are 512·10^9-byte drives). Converts the API's figure for
``hetzner_server_disk_bytes``, ``hetzner_server_type_disk_bytes`` and the neutral
``source_server_id:server_disk_bytes:normalised`` /
``server_type:server_type_disk_bytes:normalised``. Checked by
``recommender/tests/test_scenario_disk_units.py::test_disk_sizes_match_the_agents_filesystems``:
on a real Prometheus the agent's ``/`` filesystem (modelled independently: ext4 on an
N GB disk, N·10^9 bytes less 2 %) is 95-100 % of the recorded disk size (with GiB: 91 %)."""
MEMORY_BYTES_PER_GB = 2**30
"""Memory is binary GB (GiB). ``server_types[].memory``: "Memory a server of this type
will have in GB" (a float); a server is given that many GiB (a cx23's "4 GB" are 4 GiB of
RAM, the guest's ``MemTotal`` that less what the kernel reserves), as every hypervisor
and DIMM counts. Converts the API's figure for ``hetzner_server_memory_bytes`` and
``hetzner_server_type_memory_bytes``. Checked by
``recommender/tests/test_scenario_disk_units.py::test_memory_sizes_match_the_agents_memtotal``
(the agent's ``MemTotal``, modelled independently in GiB, against the recorded size)."""
TRAFFIC_BYTES_PER_TB = 2**40
"""Traffic is binary TB (TiB). ``server_types[].prices[].included_traffic`` "Free traffic
per month in bytes" and ``servers[].included_traffic``: a server's "20 TB" is
21990232555520 = 20·2^40 bytes there; ``price_per_tb_traffic`` is per that TB. Used by
the exporter's traffic overage and the simulator's included traffic. Checked by
``exporter/tests/test_exporter_cost.py::test_traffic_overage_uses_tib_and_per_tb_price``
(10.5·10^12 bytes, projected to 21·10^12, are no overage of 20 TB)."""


def byte_rate_text(bytes_per_second: float) -> str:
    """A rate in decimal units, as network tools print them: 52000 -> '52 kB/s' (one
    decimal at most; 999,999.99 is '1 MB/s'). The recommender's reasons and the rules
    pack's descriptions both write rates with it."""
    def short(value: float, digits: int) -> str:
        text = f"{value:.{digits}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text

    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if round(bytes_per_second / size, 1) >= 1:
            return f"{short(bytes_per_second / size, 1)} {unit}"
    return f"{short(bytes_per_second, 0)} B/s"


# ---- components ------------------------------------------------------------------

EXPORTER = "exporter"
AGENT = "agent"
RECOMMENDER = "recommender"
RULES = "rules"
"""The rules pack (``prometheus/rules``): recorded series."""
COMPONENTS = (EXPORTER, AGENT, RECOMMENDER, RULES)
PROCESS = (EXPORTER, AGENT, RECOMMENDER)
"""Every long-running Python component: client_python's process collector."""

TYPES = ("gauge", "counter")
UNITS = ("", "bytes", "seconds", "euros", "ratio", "bytes_per_second", "per_second",
         "per_hour", "cores")
"""Units, as the name's suffix says them (``timestamp_seconds`` is ``seconds``)."""


@dataclass(frozen=True)
class Family:
    """One metric family of the contract."""

    name: str
    """As PromQL sees it (counters with ``_total``); ``<part>`` for a generated group."""
    type: str
    unit: str
    help: str
    labels: tuple[str, ...]
    """Every label the component itself sets (target labels such as ``job`` not included)."""
    emitted_by: tuple[str, ...]
    section: str = ""
    """Where the owner's README documents it (a heading)."""
    cached: bool = False
    """Exporter: rendered from data refreshed in the background (its HELP says so)."""
    dynamic_labels: str = ""
    """Prefix of labels named after data (``label_`` + a Hetzner label key)."""
    when: str = ""
    """Emitted only under this condition (empty: always, on the demo fleet)."""

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"{self.name}: type {self.type!r} not in {TYPES}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"{self.name}: a counter's name ends in _total")
        if self.unit not in UNITS:
            raise ValueError(f"{self.name}: unit {self.unit!r} not in {UNITS}")
        base = self.name.removesuffix("_total")
        if self.unit and not base.endswith("_" + self.unit) and ":" not in self.name:
            raise ValueError(f"{self.name}: the name ends in its unit ({self.unit})")
        if self.type == "gauge" and self.name.endswith("_total"):
            raise ValueError(f"{self.name}: _total is for counters")

    @property
    def metric(self) -> str:
        """The family name of the exposition formats (counters without ``_total``)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name

    @property
    def generated(self) -> bool:
        return "<" in self.name

    def matches(self, name: str) -> bool:
        """Whether ``name`` (as PromQL sees it) is this family or one of its group."""
        return _pattern(self.name).fullmatch(name) is not None

    def member(self, name: str) -> str | None:
        """What ``name`` puts in the placeholder of a generated group
        (``node_memory_<field>_bytes``, ``node_memory_MemTotal_bytes`` -> ``MemTotal``);
        None when ``name`` is not of the group or the family is not one."""
        m = _pattern(self.name).fullmatch(name)
        return m.group(1) if m and m.groups() else None


@cache
def _pattern(name: str) -> re.Pattern[str]:
    parts = re.split(r"<[a-z_]+>", name)
    return re.compile("([A-Za-z0-9_]+?)".join(re.escape(p) for p in parts))


def _g(name: str, unit: str, help_: str, labels: Iterable[str], by: str | tuple[str, ...],
       section: str, **kw: object) -> Family:
    return Family(name, "gauge", unit, help_, tuple(labels),
                  (by,) if isinstance(by, str) else by, section, **kw)  # type: ignore[arg-type]


def _c(name: str, unit: str, help_: str, labels: Iterable[str], by: str | tuple[str, ...],
       section: str, **kw: object) -> Family:
    return Family(name, "counter", unit, help_, tuple(labels),
                  (by,) if isinstance(by, str) else by, section, **kw)  # type: ignore[arg-type]


ID = IDENTITY

# ---- exporter: hetzner_* (the exporter's own naming) and its self-health ----------

INVENTORY = "Inventory"
COST = "Cost"
CATALOGUE = "Catalogue (what the recommender picks targets from)"
CLOUD_METRICS = "Cloud metrics"
SELF_HEALTH = "Self-health"
BUILD = "Build and process"

_EXPORTER = (
    _g('hetzner_cost_info', '',
       'Price mode and currency of every *_euros series (1).',
       ('currency', 'price_mode'), EXPORTER, COST),
    _g('hetzner_server_info', '',
       'Attributes of a server (1).',
       (*ID, 'server_name', 'server_type', 'location', 'datacenter', 'network_zone',
        'architecture', 'cpu_type', 'hcloud_project', 'image', 'product'),
       EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_status', '',
       'Current status of the server (1 for the reported status).',
       (*ID, 'status'), EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_labels', '',
       'Hetzner labels of the server as label_<key> (1).',
       ID, EXPORTER, INVENTORY, cached=True, dynamic_labels='label_'),
    _g('hetzner_server_placement_group_info', '',
       'The placement group of the server (1); a spread group keeps its servers on '
       'different physical hosts.',
       (*ID, 'placement_group_id', 'placement_group', 'placement_group_type'), EXPORTER,
       INVENTORY, cached=True, when='a server is in a placement group'),
    _g('hetzner_server_cpu_cores', '',
       'vCPUs of the server.',
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_memory_bytes', 'bytes',
       'Memory of the server type.',
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_disk_bytes', 'bytes',
       "Primary disk size (the API's GB × 10^9; may exceed or trail the type's disk after "
       "a rescale).",
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_created_timestamp_seconds', 'seconds',
       'When the server was created.',
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_backups_enabled', '',
       '1 if automatic backups are on.',
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_price_known', '',
       "1 if the server's price is known (else no cost series).",
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_monthly_cost_euros', 'euros',
       "This month's projected bill of the server: its hourly price capped at the "
       'monthly price, plus backups and its primary IPs.',
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_hourly_cost_euros', 'euros',
       'Hourly price of the server with backups and primary IPs.',
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_monthly_cost_breakdown_euros', 'euros',
       'Parts of hetzner_server_monthly_cost_euros (do not add both).',
       (*ID, 'component'), EXPORTER, COST, cached=True),
    _g('hetzner_server_traffic_included_bytes', 'bytes',
       "Traffic included in the server's price this month.",
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_traffic_outgoing_bytes', 'bytes',
       'Outgoing traffic so far this billing month.',
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_traffic_ingoing_bytes', 'bytes',
       'Incoming traffic so far this billing month (not billed).',
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_traffic_projected_bytes', 'bytes',
       'Outgoing traffic extrapolated to the end of the month.',
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_traffic_overage_projected_cost_euros', 'euros',
       'Projected cost of outgoing traffic above the included amount this month.',
       ID, EXPORTER, COST, cached=True),
    _g('hetzner_server_cpu_cores_used', '',
       "Average vCPUs in use over the last metrics window (Hetzner's percent of one vCPU"
       ' / 100).',
       ID, EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_server_disk_iops', '',
       'Average disk operations per second over the last metrics window.',
       (*ID, 'direction'), EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_server_disk_bandwidth_bytes_per_second', 'bytes_per_second',
       'Average disk throughput over the last metrics window.',
       (*ID, 'direction'), EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_server_network_bandwidth_bytes_per_second', 'bytes_per_second',
       'Average public network throughput over the last metrics window.',
       (*ID, 'direction'), EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_server_network_packets_per_second', 'per_second',
       'Average public network packets per second over the last metrics window.',
       (*ID, 'direction'), EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_server_metrics_window_seconds', 'seconds',
       'Length of the window the Cloud metrics averages cover.',
       ID, EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_server_metrics_end_timestamp_seconds', 'seconds',
       'End of the window the Cloud metrics averages cover.',
       ID, EXPORTER, CLOUD_METRICS, cached=True),
    _g('hetzner_resource_monthly_cost_euros', 'euros',
       "This month's projected bill of a resource that is not part of a server's cost "
       '(volumes, floating IPs, load balancers, snapshots, unassigned primary IPs).',
       ('hcloud_project', 'kind', 'resource_id', 'resource_name', 'location', 'server_id'),
       EXPORTER, COST,
       cached=True),
    _g('hetzner_server_type_info', '',
       'A Cloud server type (1).',
       ('server_type', 'cpu_type', 'architecture', 'category'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_cpu_cores', '',
       'vCPUs of a server type.',
       ('server_type',), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_memory_bytes', 'bytes',
       'Memory of a server type.',
       ('server_type',), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_disk_bytes', 'bytes',
       "Disk of a server type (the API's GB × 10^9).",
       ('server_type',), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_monthly_price_euros', 'euros',
       'Monthly price of a server type in a location (new orders).',
       ('server_type', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_hourly_price_euros', 'euros',
       'Hourly price of a server type in a location (new orders).',
       ('server_type', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_included_traffic_bytes', 'bytes',
       'Traffic included with a server type in a location.',
       ('server_type', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_traffic_tebibyte_price_euros', 'euros',
       'Price of each TB (2^40 bytes) of outgoing traffic above the included amount, for a '
       'server type in a location.',
       ('server_type', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_available', '',
       '1 if the type can be ordered in the location.',
       ('server_type', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_server_type_deprecated', '',
       '1 if the type is deprecated in the location.',
       ('server_type', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_pricing_vat_rate_ratio', 'ratio',
       'VAT rate of the account (0.19 = 19 %).',
       ('hcloud_project',), EXPORTER, COST, cached=True),
    _g('hetzner_pricing_backup_ratio', 'ratio',
       'Backup surcharge as a share of the server price.',
       ('hcloud_project',), EXPORTER, COST, cached=True),
    _g('hetzner_server_cancelled', '',
       '1 if the dedicated server is cancelled.',
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_server_paid_until_timestamp_seconds', 'seconds',
       'End of the period the dedicated server is paid for.',
       ID, EXPORTER, INVENTORY, cached=True),
    _g('hetzner_dedicated_product_monthly_price_euros', 'euros',
       'Robot catalogue list price of a dedicated product.',
       ('product', 'location'), EXPORTER, CATALOGUE, cached=True),
    _g('hetzner_api_up', '',
       '1 if the last call to this API succeeded, 0 if it failed (data is kept).',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_api_last_success_timestamp_seconds', 'seconds',
       'When a call to this API last succeeded (0: never).',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_api_credentials_rejected', '',
       '1 if the API rejected the configured token or password.',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _c('hetzner_api_requests_total', '',
       'API requests by endpoint and outcome.',
       ('api', 'project', 'endpoint', 'outcome'), EXPORTER, SELF_HEALTH),
    _g('hetzner_api_rate_limit_limit', '',
       'RateLimit-Limit: requests per hour allowed.',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_api_rate_limit_remaining', '',
       'RateLimit-Remaining at the last response.',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_api_rate_limit_reset_timestamp_seconds', 'seconds',
       'RateLimit-Reset: when the bucket is full again.',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_exporter_request_budget_per_hour', 'per_hour',
       'Requests per hour the exporter allows itself (share of the limit).',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_exporter_metrics_poll_interval_seconds', 'seconds',
       'Per-server Cloud metrics interval, stretched to fit the budget.',
       ('api', 'project'), EXPORTER, SELF_HEALTH),
    _g('hetzner_exporter_refresh_duration_seconds', 'seconds',
       'Duration of the last completed refresh.',
       ('api', 'project', 'kind'), EXPORTER, SELF_HEALTH),
    _g('hetzner_exporter_last_refresh_timestamp_seconds', 'seconds',
       'When the last refresh of this kind completed.',
       ('api', 'project', 'kind'), EXPORTER, SELF_HEALTH),
    _c('hetzner_exporter_skipped_records_total', '',
       'API records skipped because they could not be parsed or priced.',
       ('api', 'project', 'kind'), EXPORTER, SELF_HEALTH,
       when='a record could not be parsed or priced'),
    _g('hetzner_exporter_render_duration_seconds', 'seconds',
       'Duration of the previous rendering of this exposition.',
       (), EXPORTER, SELF_HEALTH),
    _g('hetzner_exporter_render_timestamp_seconds', 'seconds',
       'When this exposition was rendered.',
       (), EXPORTER, SELF_HEALTH),
    _g('infrascope_exporter_build_info', '',
       'Version of the exporter and the Python running it (1).',
       ('version', 'revision', 'python_version', 'python_implementation'), EXPORTER, BUILD),
    _g('hetzner_exporter_series', '',
       'Series in this exposition.',
       (), EXPORTER, SELF_HEALTH),
)

# ---- process: client_python's process and platform collectors ----------------------

_PROCESS = (
    _c("process_cpu_seconds_total", "seconds", "Total user and system CPU time spent in seconds.",
       (), PROCESS, BUILD),
    _g("process_resident_memory_bytes", "bytes", "Resident memory size in bytes.", (), PROCESS,
       BUILD),
    _g("process_virtual_memory_bytes", "bytes", "Virtual memory size in bytes.", (), PROCESS,
       BUILD),
    _g("process_start_time_seconds", "seconds",
       "Start time of the process since unix epoch in seconds.", (), PROCESS, BUILD),
    _g("process_open_fds", "", "Number of open file descriptors.", (), PROCESS, BUILD),
    _g("process_max_fds", "", "Maximum number of open file descriptors.", (), PROCESS, BUILD),
    _g("python_info", "", "Python platform information",
       ("implementation", "major", "minor", "patchlevel", "version"), EXPORTER, BUILD),
)

# ---- agent: node_exporter's names for the host, its own for discovered services -----
# Sections are the agent's collectors (``--collector.<name>``).

_AGENT = (
    _c("node_cpu_seconds_total", "seconds", "Seconds the CPUs spent in each mode.",
       ("cpu", "mode"), AGENT, "cpu"),
    _c("node_cpu_guest_seconds_total", "seconds",
       "Seconds the CPUs spent in guests (VMs) for each mode.", ("cpu", "mode"), AGENT, "cpu"),
    _g("node_memory_<field>_bytes", "bytes",
       "Memory information field <field> (/proc/meminfo).", (), AGENT, "meminfo"),
    _g("node_memory_MemTotal_bytes", "bytes", "Memory information field MemTotal_bytes.", (),
       AGENT, "meminfo"),
    _g("node_memory_MemAvailable_bytes", "bytes",
       "Memory information field MemAvailable_bytes.", (), AGENT, "meminfo"),
    _g("node_memory_<field>", "",
       "Memory information field <field> (/proc/meminfo, a count).", (), AGENT, "meminfo"),
    _g("node_filesystem_size_bytes", "bytes", "Filesystem size in bytes.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _g("node_filesystem_free_bytes", "bytes", "Filesystem free space in bytes.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _g("node_filesystem_avail_bytes", "bytes",
       "Filesystem space available to non-root users in bytes.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _g("node_filesystem_files", "", "Filesystem total file nodes.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _g("node_filesystem_files_free", "", "Filesystem total free file nodes.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _g("node_filesystem_readonly", "", "Filesystem read-only status.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _g("node_filesystem_device_error", "",
       "Whether an error occurred while getting statistics for the given device.",
       ("device", "fstype", "mountpoint"), AGENT, "filesystem"),
    _c("node_network_<field>_total", "", "Network device statistic <field> (/proc/net/dev).",
       ("device",), AGENT, "netdev"),
    _c("node_network_receive_bytes_total", "bytes",
       "Bytes received by a network device.", ("device",), AGENT, "netdev"),
    _c("node_network_transmit_bytes_total", "bytes",
       "Bytes sent by a network device.", ("device",), AGENT, "netdev"),
    _c("node_network_receive_packets_total", "",
       "Packets received by a network device.", ("device",), AGENT, "netdev"),
    _c("node_network_transmit_packets_total", "",
       "Packets sent by a network device.", ("device",), AGENT, "netdev"),
    _g("node_load1", "", "1m load average.", (), AGENT, "loadavg"),
    _g("node_load5", "", "5m load average.", (), AGENT, "loadavg"),
    _g("node_load15", "", "15m load average.", (), AGENT, "loadavg"),
    _g("node_boot_time_seconds", "seconds", "Node boot time, in unixtime.", (), AGENT, "stat"),
    _c("node_context_switches_total", "", "Total number of context switches.", (), AGENT,
       "stat"),
    _c("node_forks_total", "", "Total number of forks.", (), AGENT, "stat"),
    _c("node_intr_total", "", "Total number of interrupts serviced.", (), AGENT, "stat"),
    _g("node_procs_running", "", "Number of processes in runnable state.", (), AGENT, "stat"),
    _g("node_procs_blocked", "", "Number of processes blocked waiting for I/O to complete.",
       (), AGENT, "stat"),
    _g("node_uname_info", "", "Labeled system information as provided by the uname system call.",
       ("sysname", "release", "version", "machine", "nodename", "domainname"), AGENT, "uname"),
    _g("node_disk_info", "", "Info of /sys/block/<block_device>.",
       ("device", "major", "minor", "path", "wwn", "model", "serial", "revision"), AGENT,
       "diskstats"),
    _g("node_disk_filesystem_info", "", "Info about disk filesystem.",
       ("device", "type", "usage", "uuid", "version"), AGENT, "diskstats",
       when="udev data names a filesystem on the disk"),
    _g("node_disk_device_mapper_info", "", "Info about disk device mapper.",
       ("device", "name", "uuid", "vg_name", "lv_name", "lv_layer"), AGENT, "diskstats",
       when="the host has device-mapper devices"),
    _g("node_disk_ata_<field>", "", "ATA disk feature <field> (udev data).", ("device",), AGENT,
       "diskstats", when="udev data of an ATA disk"),
    _c("node_disk_<field>_total", "", "Disk statistic <field> (/proc/diskstats).", ("device",),
       AGENT, "diskstats"),
    _g("node_disk_io_now", "", "The number of I/Os currently in progress.", ("device",), AGENT,
       "diskstats"),
    _c("node_disk_reads_completed_total", "",
       "The total number of reads completed successfully.", ("device",), AGENT, "diskstats"),
    _c("node_disk_writes_completed_total", "",
       "The total number of writes completed successfully.", ("device",), AGENT, "diskstats"),
    _c("node_disk_read_bytes_total", "bytes", "The total number of bytes read successfully.",
       ("device",), AGENT, "diskstats"),
    _c("node_disk_written_bytes_total", "bytes",
       "The total number of bytes written successfully.", ("device",), AGENT, "diskstats"),
    _c("node_disk_io_time_seconds_total", "seconds", "Total seconds spent doing I/Os.",
       ("device",), AGENT, "diskstats"),
    _g("node_time_seconds", "seconds", "System time in seconds since epoch (1970).", (), AGENT,
       "time", when="the simulator's agents (the agent has no time collector yet)"),
    _g("node_scrape_collector_duration_seconds", "seconds",
       "node_exporter: Duration of a collector scrape.", ("collector",), AGENT, "every"),
    _g("node_scrape_collector_success", "",
       "node_exporter: Whether a collector succeeded.", ("collector",), AGENT, "every"),
    _g("infrascope_service_info", "",
       "A service on the host (1): a Docker container or a systemd unit.",
       ("kind", "service", "state", "sub_state", "image", "compose_project", "compose_service"),
       AGENT, "docker, systemd", when="Docker or systemd on the host"),
    _c("infrascope_service_cpu_seconds_total", "seconds", "CPU time used by a service.",
       ("kind", "service"), AGENT, "docker, systemd",
       when="a service whose cgroup is readable"),
    _g("infrascope_service_memory_bytes", "bytes",
       "Memory a service uses (working set: usage minus inactive file cache).",
       ("kind", "service"), AGENT, "docker, systemd",
       when="a service whose cgroup is readable"),
    _g("infrascope_listen_port_info", "", "A listening socket and the service that owns it.",
       ("port", "protocol", "address", "kind", "service", "process"), AGENT, "ports"),
    _g("infrascope_agent_build_info", "",
       "A metric with a constant '1' value labeled by the version of the InfraScope agent "
       "and the Python it runs on.", ("version", "python_version"), AGENT, BUILD),
)

# ---- recommender ---------------------------------------------------------------------

_RECOMMENDER = (
    _g("infrascope_recommendation_monthly_savings_euros", "euros",
       "Monthly euros a pending or accepted recommendation saves (negative: an upgrade "
       "costs more), per recommendation.",
       ("id", "kind", "action", "status", "source", "server_id", "server_names", "project",
        "target_type"), RECOMMENDER, "Grafana"),
    _g("infrascope_recommendations_monthly_savings_euros", "euros",
       "Monthly euros the recommendations of a status save together.", ("status",),
       RECOMMENDER, "Grafana"),
    _g("infrascope_recommendations", "", "Number of recommendations by kind and status.",
       ("kind", "status"), RECOMMENDER, "Grafana"),
    _g("infrascope_recommender_last_run_timestamp_seconds", "seconds",
       "Unix time the last regeneration started.", (), RECOMMENDER, "Grafana",
       when="after the first regeneration"),
    _g("infrascope_recommender_last_run_duration_seconds", "seconds",
       "Wall time of the last regeneration.", (), RECOMMENDER, "Grafana",
       when="after the first regeneration"),
    _g("infrascope_recommender_last_run_success", "",
       "1 if the last regeneration succeeded, 0 if it failed (e.g. Prometheus unreachable).",
       (), RECOMMENDER, "Grafana", when="after the first regeneration"),
    _g("infrascope_recommender_last_run_promql_queries", "",
       "PromQL queries the last regeneration made (constant per run, whatever the fleet "
       "size).", (), RECOMMENDER, "Grafana", when="after the first regeneration"),
    _g("infrascope_recommender_last_success_timestamp_seconds", "seconds",
       "Unix time the last successful regeneration started.", (), RECOMMENDER, "Grafana",
       when="after the first successful regeneration"),
    _g("infrascope_recommender_last_run_excluded_servers", "",
       "Servers the last successful regeneration left without a recommendation, by cause: "
       "data (too little measured data to judge), inventory (price or size unknown), target "
       "(judged, but no type to move to fits or can be ordered), ha (idle, but kept as the "
       "replica of a busy server). Every cause, 0 included.",
       ("cause",), RECOMMENDER, "Grafana", when="after the first successful regeneration"),
    _c("infrascope_recommender_runs_total", "",
       "Regenerations this process ran, by outcome (success, prometheus_error, error).",
       ("outcome",), RECOMMENDER, "Grafana"),
    _g("infrascope_recommender_ready", "",
       "1 when the last regeneration of this process succeeded.", (), RECOMMENDER, "Grafana"),
    _g("infrascope_recommender_grafana_push_success", "",
       "1 if the last push of annotations to Grafana worked (0 before the first).", (),
       RECOMMENDER, "Grafana", when="annotations are pushed to Grafana"),
    _g("infrascope_recommender_build_info", "",
       "A metric with a constant '1' value labeled by the version of the recommender and "
       "the Python it runs on.", ("version", "python_version"), RECOMMENDER, "Grafana"),
)

# ---- rules pack: recorded series (``prometheus/generate.py`` writes the rules) -------
# Labels: the ones every configuration gives; ATTRIBUTES are joined from
# hetzner_server_info as configured (``attributes`` in prometheus/config.yaml), and the
# cost-by-label series exist once per configured ``cost_labels`` entry.

ATTRIBUTES = ("server_name", "server_type", "location", "hcloud_project")
"""The attributes the rules pack joins onto per-server series by default."""
RECORDED = "Recorded series"


def _r(name: str, unit: str, help_: str, labels: Iterable[str], **kw: object) -> Family:
    return _g(name, unit, help_, labels, RULES, RECORDED, **kw)


_FIGURES_30D = {
    "avg30d": "{Name} utilisation averaged over 30 days (mean of the hourly averages).",
    "max30d": "Highest 5-minute {lower} utilisation of the 30 days.",
    "p95_30d": "95th percentile of the hourly {lower} averages over 30 days.",
    "coverage30d": "Share of the 30 days with {lower} data (hours with a value / 720).",
}
#: CPU only: the level each UTC day's busiest hourly average reaches on at least
#: ``utilisation.recurring_peak_share`` of the 30 days (prometheus/config.yaml).
_CPU_FIGURES_30D = {
    "daily_peak30d": "Recurring daily peak of the {lower} utilisation: the level each UTC "
                     "day's busiest hourly average reaches on at least "
                     "utilisation.recurring_peak_share of the 30 days (default half).",
}


_NETWORK_FIGURES_30D = {
    "avg30d": "Network throughput (bytes/s, per direction) averaged over 30 days.",
    "max30d": "Highest 5-minute network throughput (bytes/s, per direction) of the 30 days.",
    "p95_30d": "95th percentile of the hourly network throughput averages over 30 days.",
    "coverage30d": "Share of the 30 days with network data (hours with a value / 720).",
}


def _window_figures() -> tuple[Family, ...]:
    out = []
    for metric, name, lower in (("cpu", "CPU", "CPU"), ("memory", "Memory", "memory")):
        figures = {**_FIGURES_30D, **(_CPU_FIGURES_30D if metric == "cpu" else {})}
        for fig, text in figures.items():
            meaning = text.format(Name=name, lower=lower)
            out.append(_r(f"shard_source_server_id:{metric}_utilisation:{fig}", "ratio",
                          meaning + " Before the attributes are joined.",
                          ("shard", *ID)))
            out.append(_r(f"source_server_id:{metric}_utilisation:{fig}", "ratio", meaning,
                          (*ID, *ATTRIBUTES)))
    for fig, meaning in _NETWORK_FIGURES_30D.items():
        unit = "ratio" if fig == "coverage30d" else "bytes_per_second"
        out.append(_r(f"shard_source_server_id:network_bytes_per_second:{fig}", unit,
                      meaning + " Before the attributes are joined.",
                      ("shard", *ID, "direction")))
        out.append(_r(f"source_server_id:network_bytes_per_second:{fig}", unit, meaning,
                      (*ID, "direction", *ATTRIBUTES)))
    return tuple(out)


# ---- rules pack: the provider-neutral layer ------------------------------------------
# Each provider's exporter keeps its own naming (``hetzner_*``; later ``aws_*``). One
# rule group per provider (``infrascope-provider-<provider>``, every ``intervals.inventory``)
# renames its native series into the families below, adds ``provider`` and drops the
# scrape labels ``job`` and ``instance``: the recommender's loader and the dashboards
# read only these for inventory, sizes, cost, traffic, the catalogue and pricing.
# Names: ``<level>:<metric>:normalised`` (level: the labels that identify a series,
# metric: the neutral name, operation ``normalised``: renamed and labelled, nothing
# aggregated). A new provider adds an entry to ``PROVIDER_SERIES``; nothing else of the
# pack, the loader or the dashboards changes.

NORMALISED = "normalised"
"""The operation part of every provider-neutral recorded name."""
PROVIDER_ID = ("provider", *ID)
_INFO_LABELS = ("server_name", "server_type", "location", "datacenter", "network_zone",
                "architecture", "cpu_type", "hcloud_project", "image", "product")


def _n(level: str, metric: str, unit: str, help_: str, labels: Iterable[str],
       **kw: object) -> Family:
    return _r(f"{level}:{metric}:{NORMALISED}", unit, help_ + " Provider-neutral.",
              labels, **kw)


_NEUTRAL = (
    _n("source_server_id", "server_info", "",
       "Attributes of a server (1).", (*PROVIDER_ID, *_INFO_LABELS)),
    _n("source_server_id", "server_status", "",
       "Current status of the server (1 for the reported status).", (*PROVIDER_ID, "status")),
    _n("source_server_id", "server_labels", "",
       "The provider's labels (tags) of the server as label_<key> (1).", PROVIDER_ID,
       dynamic_labels="label_"),
    _n("source_server_id", "server_placement_group_info", "",
       "The placement group of the server (1): a spread group keeps its servers on "
       "different physical hosts.",
       (*PROVIDER_ID, "placement_group_id", "placement_group", "placement_group_type"),
       when="a server is in a placement group"),
    _n("source_server_id", "server_backups_enabled", "",
       "1 if automatic backups are on.", PROVIDER_ID),
    _n("source_server_id", "server_cpu_cores", "",
       "CPU cores (vCPUs) of the server.", PROVIDER_ID),
    _n("source_server_id", "server_memory_bytes", "bytes",
       "Memory of the server.", PROVIDER_ID),
    _n("source_server_id", "server_disk_bytes", "bytes",
       "Primary disk size of the server (the API's GB × 10^9).", PROVIDER_ID),
    _n("source_server_id", "server_price_known", "",
       "1 if the server's price is known (else no cost series).", PROVIDER_ID),
    _n("source_server_id", "server_monthly_cost_euros", "euros",
       "This month's projected bill of the server (with its own surcharges).", PROVIDER_ID),
    _n("source_server_id", "server_monthly_cost_breakdown_euros", "euros",
       "Parts of the server's monthly cost by component.", (*PROVIDER_ID, "component")),
    _n("source_server_id", "server_traffic_included_bytes", "bytes",
       "Traffic included in the server's price this month.", PROVIDER_ID),
    _n("source_server_id", "server_traffic_outgoing_bytes", "bytes",
       "Outgoing traffic so far this billing month.", PROVIDER_ID),
    _n("source_server_id", "server_traffic_projected_bytes", "bytes",
       "Outgoing traffic extrapolated to the end of the month.", PROVIDER_ID),
    _n("source_server_id", "server_traffic_overage_projected_cost_euros", "euros",
       "Projected cost of outgoing traffic above the included amount this month.",
       PROVIDER_ID),
    _n("resource_id", "resource_monthly_cost_euros", "euros",
       "This month's projected bill of a resource that is not part of a server's cost "
       "(server_id: the server it is attached to, empty if none).",
       ("provider", "hcloud_project", "kind", "resource_id", "resource_name", "location",
        "server_id")),
    _n("server_type", "server_type_info", "",
       "A server type of the provider's catalogue (1).",
       ("provider", "server_type", "cpu_type", "architecture", "category")),
    _n("server_type", "server_type_cpu_cores", "",
       "CPU cores (vCPUs) of a server type.", ("provider", "server_type")),
    _n("server_type", "server_type_memory_bytes", "bytes",
       "Memory of a server type.", ("provider", "server_type")),
    _n("server_type", "server_type_disk_bytes", "bytes",
       "Disk of a server type (the API's GB × 10^9).", ("provider", "server_type")),
    _n("server_type_location", "server_type_monthly_price_euros", "euros",
       "Monthly price of a server type in a location (new orders).",
       ("provider", "server_type", "location")),
    _n("server_type_location", "server_type_included_traffic_bytes", "bytes",
       "Outgoing traffic included with a server type in a location, a month.",
       ("provider", "server_type", "location")),
    _n("server_type_location", "server_type_traffic_tebibyte_price_euros", "euros",
       "Price of each TB (2^40 bytes) of outgoing traffic above the included amount.",
       ("provider", "server_type", "location")),
    _n("server_type_location", "server_type_available", "",
       "1 if the type can be ordered in the location.", ("provider", "server_type", "location")),
    _n("server_type_location", "server_type_deprecated", "",
       "1 if the type is deprecated in the location.", ("provider", "server_type", "location")),
    _n("provider", "cost_info", "",
       "Price mode and currency of the provider's *_euros series (1).",
       ("provider", "currency", "price_mode")),
    _n("hcloud_project", "pricing_backup_ratio", "ratio",
       "Backup surcharge as a share of the server price, per project.",
       ("provider", "hcloud_project")),
)

PROVIDER_SERIES: dict[str, dict[str, str]] = {
    "hetzner": {
        f.name: "hetzner_" + f.name.split(":")[1]
        for f in _NEUTRAL
    },
}
"""Per provider (``PROVIDERS``): provider-neutral recorded family -> the provider's
native (exporter) family it is recorded from. The rules pack writes one rule group per
provider from this table."""

_RULES = (
    _r("source_server_id:node_cpu_utilisation:ratio_rate5m", "ratio",
       "CPU busy share measured by the agent over 5 minutes.", ID),
    _r("source_server_id:node_memory_utilisation:ratio", "ratio",
       "Memory in use measured by the agent: 1 - MemAvailable / MemTotal.", ID),
    _r("source_server_id:hetzner_server_cpu_utilisation:ratio", "ratio",
       "CPU busy share from the Hetzner Cloud API.", ID),
    _r("source_server_id:cpu_utilisation:ratio", "ratio",
       "CPU utilisation of every server: the agent's where one reports, the Cloud API's "
       "otherwise (label via).", (*ID, "via", *ATTRIBUTES)),
    _r("source_server_id:memory_utilisation:ratio", "ratio",
       "Memory utilisation of every server with an agent.", (*ID, "via", *ATTRIBUTES)),
    _r("source_server_id:network_bytes_per_second:rate5m", "bytes_per_second",
       "Network throughput of every server over 5 minutes, per direction: the agent's "
       "(its interfaces but loopback, container and bridge devices) where one reports, the "
       "Cloud API's public interface otherwise (label via).",
       (*ID, "direction", "via", *ATTRIBUTES)),
    _r("source_server_id:network_bytes_per_second:avg1h", "bytes_per_second",
       "Network throughput averaged over the clock hour before, per direction (one sample "
       "per hour).", (*ID, "direction", "shard")),
    _r("source_server_id:network_bytes_per_second:max1h", "bytes_per_second",
       "Highest 5-minute network throughput of the clock hour before, per direction (one "
       "sample per hour).", (*ID, "direction", "shard")),
    _r("source_server_id:cpu_utilisation:avg1h", "ratio",
       "CPU utilisation averaged over the clock hour before (one sample per hour).",
       (*ID, "shard")),
    _r("source_server_id:cpu_utilisation:max1h", "ratio",
       "Highest 5-minute CPU utilisation of the clock hour before (one sample per "
       "hour).",
       (*ID, "shard")),
    _r("source_server_id:memory_utilisation:avg1h", "ratio",
       "Memory utilisation averaged over the clock hour before (one sample per hour).",
       (*ID, "shard")),
    _r("source_server_id:memory_utilisation:max1h", "ratio",
       "Highest 5-minute memory utilisation of the clock hour before (one sample per "
       "hour).",
       (*ID, "shard")),
    *_window_figures(),
    _r("shard_source_server_id:utilisation:tier30d", "",
       "Utilisation tier number before the tier name and the attributes are added.",
       ("shard", *ID)),
    _r("source_server_id:utilisation:tier30d", "",
       "Utilisation tier from the 30-day p95 figures (number; name in label tier).",
       (*ID, "tier", *ATTRIBUTES)),
    _r("source_server_id:monthly_cost_euros:sum", "euros",
       "This month's projected bill of each server with its attached resources and traffic "
       "overage.", (*ID, *ATTRIBUTES), dynamic_labels="label_"),
    _r(":monthly_cost_euros:sum", "euros", "This month's projected bill of the whole fleet.",
       ()),
    _r("source:monthly_cost_euros:sum", "euros", "Projected monthly bill by source.",
       ("source",)),
    _r("location:monthly_cost_euros:sum", "euros", "Projected monthly bill by location.",
       ("location",)),
    _r("hcloud_project:monthly_cost_euros:sum", "euros",
       "Projected monthly bill by Hetzner Cloud project.", ("hcloud_project",)),
    _r("label_<key>:monthly_cost_euros:sum", "euros",
       "Projected monthly bill by a Hetzner label (one per configured cost label).", (),
       dynamic_labels="label_"),
    _r("tier:monthly_cost_euros:sum", "euros", "Projected monthly cost by utilisation tier.",
       ("tier",)),
    _r(":monthly_cost_euros:avg1d", "euros",
       "The fleet's projected monthly bill averaged over the past day.", ()),
    _r("label_<key>:monthly_cost_euros:avg1d", "euros",
       "A cost-label roll-up averaged over the past day.", (), dynamic_labels="label_"),
)

FAMILIES: tuple[Family, ...] = (*_EXPORTER, *_PROCESS, *_AGENT, *_RECOMMENDER, *_NEUTRAL,
                                 *_RULES)
"""Every family of the contract."""


def _check(families: tuple[Family, ...]) -> None:
    seen: set[str] = set()
    for f in families:
        if f.name in seen:
            raise ValueError(f"{f.name}: declared twice")
        seen.add(f.name)
        for by in f.emitted_by:
            if by not in COMPONENTS:
                raise ValueError(f"{f.name}: unknown component {by!r}")


_check(FAMILIES)
_BY_NAME = {f.name: f for f in FAMILIES}
for _provider, _mapping in PROVIDER_SERIES.items():
    if _provider not in PROVIDERS:
        raise ValueError(f"PROVIDER_SERIES: unknown provider {_provider!r}")
    for _neutral, _native in _mapping.items():
        if _neutral not in _BY_NAME or _native not in _BY_NAME:
            raise ValueError(f"PROVIDER_SERIES[{_provider!r}]: {_neutral} <- {_native} "
                             "is not declared")


def neutral(metric: str) -> str:
    """The provider-neutral recorded family whose metric part is ``metric``
    (``server_info`` -> ``source_server_id:server_info:normalised``)."""
    for f in _NEUTRAL:
        if f.name.split(":")[1] == metric:
            return f.name
    raise KeyError(metric)


NEUTRAL_FAMILIES: tuple[Family, ...] = _NEUTRAL
"""The provider-neutral recorded families, in declaration order."""


def family(name: str) -> Family:
    """The family declared under ``name`` (as PromQL sees it); KeyError if none."""
    return _BY_NAME[name]


def lookup(name: str) -> Family | None:
    """The family ``name`` belongs to: its own declaration, else the generated group it
    matches (the most specific one: ``node_network_receive_bytes_total`` is declared on
    its own, ``node_network_receive_drop_total`` only by its group)."""
    found = _BY_NAME.get(name)
    if found is not None:
        return found
    groups = [f for f in FAMILIES if f.generated and f.matches(name)]
    return max(groups, key=lambda f: len(f.name), default=None)


def emitted_by(component: str) -> tuple[Family, ...]:
    """The families ``component`` emits."""
    return tuple(f for f in FAMILIES if component in f.emitted_by)


def markdown_table(component: str) -> str:
    """The families ``component`` emits as a Markdown table (name, type, labels, help),
    for its README (``scripts/contract_docs.py`` writes it between markers)."""
    rows = ["| name | type | labels | meaning |", "|---|---|---|---|"]
    own = [f for f in emitted_by(component) if len(f.emitted_by) == 1]
    shared = [f for f in emitted_by(component) if len(f.emitted_by) > 1]
    for f in (*own, *shared):
        labels = ", ".join(f.labels) or "–"
        if f.dynamic_labels:
            labels += f", {f.dynamic_labels}<key>…"
        meaning = f.help + (f" Only when {f.when}." if f.when else "")
        rows.append(f"| `{f.name}` | {f.type} | {labels} | {meaning.replace('|', '/')} |")
    return "\n".join(rows) + "\n"
