"""A small PromQL client for the Prometheus HTTP API.

Works against anything that serves ``/api/v1/query`` and ``/api/v1/query_range``:
Prometheus, Thanos, Mimir (give ``X-Scope-OrgID`` in ``headers``), VictoriaMetrics.
Queries are POSTed form-encoded, so long expressions never hit a URL length limit.

Failures raise :class:`PrometheusError`; its message names the URL (never a token or
password) and what went wrong: ``connection refused``, ``timed out after 30s``,
``HTTP 503: ...``, ``status=error errorType=bad_data: ...``, ``malformed JSON``,
``credentials rejected (HTTP 401)``.

Retries: connection errors, timeouts, HTTP 429 and 502/503/504 are retried
``settings.retries`` times with exponential backoff (``backoff_seconds`` doubling each
time, capped at 30 s, plus up to 10 % jitter; a numeric ``Retry-After`` of a 429/503 is
honoured up to the cap). A bad query (400/422) or rejected credentials (401/403) are
never retried: repeating them cannot help. Retries are quiet: each failed attempt is one
DEBUG line, and the error raised at the end is the one summary, e.g. ``Prometheus at URL
unreachable after 4 attempts over 3.5 s: connection refused``. Queries that run side by
side can share a ``cancel`` event: once one of them has given up (Prometheus is down for
all of them), the others stop waiting for their next attempt and raise
:class:`QueryCancelled` instead of retrying on their own.

Counters: :attr:`PrometheusClient.queries` counts logical queries (one per
:meth:`~PrometheusClient.query` / :meth:`~PrometheusClient.query_range` call, whatever
the retries); :attr:`PrometheusClient.attempts` counts HTTP requests, retries included.
"""

from __future__ import annotations

import logging
import random
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson

from .config import PrometheusSettings

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({429, 502, 503, 504})
MAX_BACKOFF_SECONDS = 30.0


class PrometheusError(Exception):
    """Prometheus could not answer; ``str()`` names the URL and the failure."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status  # HTTP status when there was one


class QueryCancelled(PrometheusError):
    """The query was abandoned because its ``cancel`` event was set (another query of the
    same batch failed); the batch reports that query's error, not this one."""


def display_url(url: str) -> str:
    """``url`` without any ``user:password@`` part (safe for messages and logs)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def _ssl_context(settings: PrometheusSettings) -> ssl.SSLContext | bool:
    tls = settings.tls
    if not (tls.ca_file or tls.cert_file or tls.insecure_skip_verify):
        return True
    ctx = ssl.create_default_context(cafile=tls.ca_file) if tls.ca_file else \
        ssl.create_default_context()
    if tls.cert_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _describe(exc: httpx.TransportError, timeout: float) -> str:
    """A transport failure in a few words (no URL: the caller adds it)."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out after {timeout:g}s"
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered \
            or "name resolution" in lowered:
        return f"cannot resolve the host ({text})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({text})"
    return f"{type(exc).__name__}: {text}"


class PrometheusClient:
    """``query``/``query_range`` over one HTTP connection pool; close it when done."""

    def __init__(self, settings: PrometheusSettings, *,
                 transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.base_url = settings.url.rstrip("/")
        self.queries = 0
        self.attempts = 0
        self._count_lock = threading.Lock()  # the loader queries from several threads
        self._sleep = sleep
        headers = {"Accept": "application/json",
                   "Accept-Encoding": "gzip" if settings.compression else "identity",
                   "User-Agent": "infrascope-recommender"}
        headers.update({str(k): str(v) for k, v in settings.headers.items()})
        if settings.bearer_token:
            headers["Authorization"] = f"Bearer {settings.bearer_token.reveal()}"
        auth: httpx.BasicAuth | None = None
        if settings.basic_auth_user is not None:
            password = settings.basic_auth_password.reveal() \
                if settings.basic_auth_password else ""
            auth = httpx.BasicAuth(settings.basic_auth_user, password)
        self._client = httpx.Client(
            headers=headers, auth=auth, verify=_ssl_context(settings),
            timeout=httpx.Timeout(settings.timeout_seconds), transport=transport,
            follow_redirects=False, trust_env=False)

    # -------------------------------------------------------------------- public API

    def query(self, expr: str, at: float | None = None, *,
              cancel: threading.Event | None = None) -> list[dict[str, Any]]:
        """Instant query: the ``data.result`` list (``[{"metric": {...}, "value": [t, "v"]}]``).

        A scalar or string result is returned as one sample without labels. ``cancel``:
        when it is set, no further attempt is made (:class:`QueryCancelled`).
        """
        params = {"query": expr}
        if at is not None:
            params["time"] = _num(at)
        return self._run("/api/v1/query", params, expr, cancel)

    def query_range(self, expr: str, start: float, end: float,
                    step: float) -> list[dict[str, Any]]:
        """Range query: ``[{"metric": {...}, "values": [[t, "v"], ...]}]``."""
        params = {"query": expr, "start": _num(start), "end": _num(end), "step": _num(step)}
        return self._run("/api/v1/query_range", params, expr)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -------------------------------------------------------------------- internals

    def _run(self, path: str, params: dict[str, str], expr: str,
             cancel: threading.Event | None = None) -> list[dict[str, Any]]:
        with self._count_lock:
            self.queries += 1
        url = self.base_url + path
        shown = display_url(url)
        # evaluation timeout for the server, in seconds (a float is accepted everywhere)
        params = {**params, "timeout": _num(float(self.settings.timeout_seconds))}
        retries = max(0, self.settings.retries)
        attempt = 0
        started = time.monotonic()
        while True:
            if cancel is not None and cancel.is_set():
                raise QueryCancelled(f"Prometheus at {shown}: query abandoned (another query "
                                     "of the batch failed)", url=shown)
            attempt += 1
            with self._count_lock:
                self.attempts += 1
            try:
                response = self._client.post(url, data=params)
            except httpx.TransportError as exc:
                failure = _describe(exc, self.settings.timeout_seconds)
                self._failed(shown, attempt, retries, failure)
                if attempt <= retries:
                    self._backoff(attempt, None, cancel)
                    continue
                elapsed = time.monotonic() - started
                if attempt == 1:
                    message = f"Prometheus at {shown}: {failure}"
                else:
                    message = (f"Prometheus at {shown} unreachable after {attempt} attempts "
                               f"over {elapsed:.1f} s: {failure}")
                raise PrometheusError(message, url=shown) from None
            status = response.status_code
            if status in RETRY_STATUS and attempt <= retries:
                self._failed(shown, attempt, retries, f"HTTP {status}")
                self._backoff(attempt, response.headers.get("Retry-After"), cancel)
                continue
            return self._result(response, shown, expr, attempt, time.monotonic() - started)

    def _message(self, shown: str, failure: str, attempts: int, elapsed: float = 0.0) -> str:
        suffix = f" (after {attempts} attempts over {elapsed:.1f} s)" if attempts > 1 else ""
        return f"Prometheus at {shown}: {failure}{suffix}"

    @staticmethod
    def _failed(shown: str, attempt: int, retries: int, failure: str) -> None:
        """One DEBUG line per failed attempt; the caller's error is the summary."""
        then = "retrying" if attempt <= retries else "giving up"
        log.debug("Prometheus at %s: attempt %d of %d failed: %s; %s", shown, attempt,
                  retries + 1, failure, then)

    def _backoff(self, attempt: int, retry_after: str | None,
                 cancel: threading.Event | None) -> None:
        delay = min(self.settings.backoff_seconds * 2 ** (attempt - 1), MAX_BACKOFF_SECONDS)
        if retry_after:
            try:
                delay = min(max(delay, float(retry_after)), MAX_BACKOFF_SECONDS)
            except ValueError:
                pass  # an HTTP date: keep the exponential delay
        delay += random.uniform(0, delay * 0.1)
        if cancel is None:
            self._sleep(delay)
        else:
            cancel.wait(delay)  # returns early when the batch gives up; checked next round

    def _result(self, response: httpx.Response, shown: str, expr: str,
                attempts: int, elapsed: float) -> list[dict[str, Any]]:
        status = response.status_code
        if status in (401, 403):
            raise PrometheusError(
                self._message(shown, f"credentials rejected (HTTP {status})", attempts, elapsed),
                url=shown, status=status)
        try:
            body = orjson.loads(response.content)
        except ValueError:  # orjson.JSONDecodeError, invalid UTF-8 included
            body = None
        if not isinstance(body, dict):
            if status >= 300:
                snippet = " ".join(response.text[:200].split())
                failure = f"HTTP {status}: {snippet}" if snippet else f"HTTP {status}"
            else:
                failure = f"malformed JSON in the HTTP {status} response"
            raise PrometheusError(self._message(shown, failure, attempts, elapsed), url=shown,
                                  status=status)
        if body.get("status") != "success":
            failure = (f"status={body.get('status')} errorType={body.get('errorType')}: "
                       f"{body.get('error')}")
            if status >= 300:
                failure = f"HTTP {status}, {failure}"
            raise PrometheusError(
                self._message(shown, f"{failure} (query: {_short(expr)})", attempts, elapsed),
                url=shown, status=status)
        if status >= 300:
            raise PrometheusError(self._message(shown, f"HTTP {status}", attempts, elapsed),
                                  url=shown, status=status)
        for warning in body.get("warnings") or []:
            log.warning("Prometheus at %s warns: %s (query: %s)", shown, warning, _short(expr))
        data = body.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("result"), list | str):
            raise PrometheusError(
                self._message(shown, "malformed JSON: no data.result in the response",
                              attempts, elapsed), url=shown, status=status)
        result = data["result"]
        if data.get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        if not all(isinstance(item, dict) for item in result):
            raise PrometheusError(
                self._message(shown, "malformed JSON: data.result holds non-objects",
                              attempts, elapsed), url=shown, status=status)
        return list(result)


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


def _short(expr: str, limit: int = 160) -> str:
    text = " ".join(expr.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
