"""Errors as types, not strings to search (httpx's way: ``HTTPError → TimeoutException``).

- :class:`ConfigError`: a configuration value is wrong; the message names the key (a
  YAML path such as ``prometheus.timeout``, an environment variable, a flag) and never
  a secret's value.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""
