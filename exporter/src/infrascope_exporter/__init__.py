"""InfraScope exporter: a Prometheus exporter for the Hetzner Cloud API and Robot API.

It will expose fleet inventory (``hetzner_server_info`` and friends), prices
and cost per server, Cloud server metrics, API self-health and rate-limit
state, and a Prometheus HTTP service-discovery endpoint listing every
server's agent target. A one-shot ``backfill`` command will turn the 30 days
of metrics Hetzner keeps into OpenMetrics for
``promtool tsdb create-blocks-from openmetrics``.

Status: skeleton; the implementation arrives with issue 3.
"""

__version__ = "0.1.0"
