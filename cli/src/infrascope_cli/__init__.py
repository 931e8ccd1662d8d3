"""The ``infrascope`` command: from a Hetzner token to a report (setup, doctor, history)."""

__version__ = "0.1.0"
