"""InfraScope's Hetzner API simulator: Cloud, Robot and simulated agents.

The simulator is the contract the exporter is tested against; it follows
``shared/reference/hetzner-api.md`` and the official client libraries.
"""

__version__ = "0.1.0"
