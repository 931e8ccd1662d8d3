"""Errors as types, not strings to search (httpx's way: ``HTTPError → TimeoutException``).

- :class:`ConfigError`: a configuration value is wrong; the message names the key (a
  YAML path such as ``prometheus.timeout``, an environment variable, a flag) and never
  a secret's value.
- :class:`ApiError` and its subclasses: a provider API call failed. The class says how
  (and :attr:`ApiError.kind` names it for metrics and logs, the exporter's
  ``outcome`` label); :attr:`ApiError.status` and :attr:`ApiError.code` carry the HTTP
  status and the API's own error code when there was an answer, so a caller asks
  ``isinstance(exc, ClientError) and exc.code == "SERVER_NOT_FOUND"`` instead of
  looking for the code in the message.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the key."""


class ApiError(Exception):
    """A failed API call; a subclass says how it failed (``kind`` names it).

    ``retry_at``: when the API may be asked again (a rate limit's reset), as the caller's
    clock reads it; ``status`` and ``code``: the HTTP status and the API's error code when
    there was an answer (to tell a wrong token, 401, from one without permission, 403).
    """

    kind: ClassVar[str] = "error"

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.kind = kind or cls.kind

    def __init__(self, message: str, retry_at: float | None = None, *,
                 status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.status = status
        self.code = code


class ApiTimeout(ApiError, kind="timeout"):
    """No answer in time."""


class ApiUnavailable(ApiError, kind="unavailable"):
    """No connection (refused, reset, DNS): the API or the network is down."""


class RateLimited(ApiError, kind="rate_limited"):
    """The API refused the call for its rate limit (or the client paused itself)."""


class Unauthorized(ApiError, kind="unauthorized"):
    """The credentials were rejected (401) or lack the permission (403)."""


class ServerError(ApiError, kind="server_error"):
    """The API failed (5xx)."""


class ClientError(ApiError, kind="client_error"):
    """The API refused the request (4xx other than authorisation and rate limits)."""


class Malformed(ApiError, kind="malformed"):
    """The answer is not what the API documents (not JSON, a field missing, a broken
    pagination)."""


#: Every ``kind``, the subclasses' order: transient failures first.
API_ERRORS: tuple[type[ApiError], ...] = (ApiTimeout, ApiUnavailable, RateLimited,
                                          Unauthorized, ServerError, ClientError, Malformed)
#: Failures worth retrying at once (with backoff): the next attempt may well succeed.
TRANSIENT: tuple[type[ApiError], ...] = (ApiTimeout, ApiUnavailable, ServerError)
