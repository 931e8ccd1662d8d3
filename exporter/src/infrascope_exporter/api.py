"""HTTP clients for the Hetzner Cloud API and the Robot web service.

Both raise every failure as a subclass of :class:`~infrascope_core.errors.ApiError`
(its ``kind`` is the outcome in :data:`health.OUTCOMES`), count every
request in :class:`Health`, and never put a credential into a message: the
token and the Robot password only ever travel in request headers.

Cloud requests are paced by a client-side token bucket holding the
configured share of the project's hourly limit, and also stay above a reserve
of the server-reported ``RateLimit-Remaining`` — so in steady state the
exporter never sees a 429 even when the refresh is bursty. A 429 pauses the
project until ``RateLimit-Reset``; 5xx answers and timeouts are retried with
truncated exponential backoff and full jitter.
"""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from infrascope_core.errors import (
    TRANSIENT,
    ApiError,
    ApiTimeout,
    ApiUnavailable,
    ClientError,
    Malformed,
    RateLimited,
    ServerError,
    Unauthorized,
)

from .config import CloudProject, RobotAccount
from .health import Health
from .model import RecordError

log = logging.getLogger("infrascope_exporter.api")

USER_AGENT = "infrascope-exporter/0.1"
AUTH_FAILURE_PAUSE = 3600.0  # Robot: no new login for this long after a rejected one


class Stopped(Exception):
    """The exporter is shutting down."""


class Pacer:
    """Client-side token bucket: ``per_hour`` requests an hour, bursts up to ``burst``."""

    def __init__(self, per_hour: float, burst: float, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.rate = per_hour / 3600.0
        self.burst = max(1.0, burst)
        self.tokens = self.burst
        self.clock = clock
        self.updated = clock()
        self.lock = threading.Lock()

    def set_rate(self, per_hour: float, burst: float) -> None:
        with self.lock:
            self._refill()
            self.rate = per_hour / 3600.0
            self.burst = max(1.0, burst)
            self.tokens = min(self.tokens, self.burst)

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def wait_time(self) -> float:
        with self.lock:
            self._refill()
            if self.tokens >= 1.0:
                return 0.0
            return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf

    def take(self) -> bool:
        with self.lock:
            self._refill()
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


def _json(response: httpx.Response, what: str) -> Any:
    ctype = response.headers.get("content-type", "")
    if "json" not in ctype:
        shown = ctype.split(";")[0] or "none"
        raise Malformed(f"{what}: expected JSON, got content type {shown!r} "
                        f"(HTTP {response.status_code})")
    try:
        return json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Malformed(f"{what}: invalid JSON ({exc})") from exc


def _error_text(body: Any) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        err = body["error"]
        return f"{err.get('code')}: {err.get('message')}"
    return "no error body"


def _error_code(response: httpx.Response) -> str | None:
    """The ``error.code`` of a JSON error body, if any."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        code = body["error"].get("code")
        return str(code) if code is not None else None
    return None


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class CloudClient:
    """One project's Cloud API client (thread-safe for sequential use by one worker)."""

    def __init__(self, project: CloudProject, health: Health, *, timeout: float = 10.0,
                 budget_share: float = 0.8, max_retries: int = 2, backoff_base: float = 1.0,
                 backoff_cap: float = 30.0, clock: Callable[[], float] = time.time,
                 stop: threading.Event | None = None,
                 wait: Callable[[float], bool] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.project = project
        self.health = health
        self.budget_share = budget_share
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self.stop = stop or threading.Event()
        self.wait = wait or self.stop.wait
        self.limit = 3600
        self.remaining: int | None = None
        self.paused_until = 0.0
        self.pacer = Pacer(self._sustainable(self.limit), self._burst(self.limit), clock=clock)
        self.client = httpx.Client(
            base_url=project.endpoint, timeout=timeout, transport=transport,
            headers={"Authorization": f"Bearer {project.token.reveal()}",
                     "User-Agent": USER_AGENT, "Accept": "application/json"})

    def close(self) -> None:
        self.client.close()

    # A token bucket with burst B and rate r allows at most B + r·T requests in any
    # window T. With B = a quarter of the budget and r = the other three quarters per
    # hour, no hour ever exceeds the budget, bursts (a first listing) stay fast, and
    # planning uses r as the sustainable rate.
    BURST_SHARE = 0.25

    def _burst(self, limit: int) -> float:
        return max(1.0, limit * self.budget_share * self.BURST_SHARE)

    def _sustainable(self, limit: int) -> float:
        return limit * self.budget_share - self._burst(limit)

    @property
    def sustainable_per_hour(self) -> float:
        """Requests per hour the refresh plan may count on (the pacer's refill rate)."""
        return self._sustainable(self.limit)

    @property
    def budget_per_hour(self) -> float:
        return self.limit * self.budget_share

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.wait(seconds):
            raise Stopped()

    def _pace(self) -> None:
        now = self.clock()
        if self.paused_until > now:
            raise RateLimited(f"Cloud project {self.project.name}: rate limited "
                              f"until {time.strftime('%H:%M:%S', time.gmtime(self.paused_until))} "
                              "UTC", self.paused_until)
        # Keep a reserve of the server-side bucket for other users of the project.
        reserve = self.limit * (1 - self.budget_share)
        if self.remaining is not None and self.remaining < max(1.0, reserve):
            self._sleep(3600.0 / self.limit)
        while not self.pacer.take():
            self._sleep(min(self.pacer.wait_time(), 5.0))

    def _record_rate(self, response: httpx.Response) -> None:
        limit = _int_header(response.headers, "ratelimit-limit")
        remaining = _int_header(response.headers, "ratelimit-remaining")
        reset = _int_header(response.headers, "ratelimit-reset")
        if limit and limit != self.limit:
            self.limit = limit
            self.pacer.set_rate(self._sustainable(limit), self._burst(limit))
        if remaining is not None:
            self.remaining = remaining
        self.health.rate_limit("cloud", self.project.name, limit, remaining,
                               float(reset) if reset is not None else None)

    def get(self, path: str, endpoint: str, params: Mapping[str, Any] | None = None,
            parse: Callable[[Any], Any] | None = None) -> Any:
        """GET with pacing and retries; returns ``parse(body)`` (or the body) or raises ApiError.

        ``parse`` decides whether a 200 answer is usable: if it raises RecordError
        or ApiError the request is counted once, as ``malformed``, not as a success.
        """
        attempt = 0
        while True:
            try:
                return self._get_once(path, endpoint, params, parse)
            except ApiError as exc:
                if not isinstance(exc, TRANSIENT) or attempt >= self.max_retries:
                    raise
                delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))
                log.info("retrying", extra={"event": "api_retry", "api": "cloud",
                                            "project": self.project.name, "endpoint": endpoint,
                                            "reason": exc.kind, "delay_s": round(delay, 2)})
                self._sleep(delay)
                attempt += 1

    def _get_once(self, path: str, endpoint: str, params: Mapping[str, Any] | None,
                  parse: Callable[[Any], Any] | None = None) -> Any:
        self._pace()
        what = f"Cloud project {self.project.name}: GET {endpoint}"
        try:
            response = self.client.get(path, params=params)
        except httpx.TimeoutException as exc:
            self.health.request("cloud", self.project.name, endpoint, "timeout")
            raise ApiTimeout(f"{what}: timed out") from exc
        except httpx.TransportError as exc:
            self.health.request("cloud", self.project.name, endpoint, "unavailable")
            raise ApiUnavailable(f"{what}: {type(exc).__name__}") from exc
        self._record_rate(response)
        status = response.status_code
        if status == 429:
            reset = _int_header(response.headers, "ratelimit-reset")
            now = self.clock()
            until = min(float(reset), now + 3600.0) if reset else now + 60.0
            self.paused_until = max(until, now + 1.0)
            self.health.request("cloud", self.project.name, endpoint, "rate_limited")
            raise RateLimited(f"{what}: 429 rate limit exceeded, pausing until "
                              "RateLimit-Reset", self.paused_until)
        if status in (401, 403):
            self.health.request("cloud", self.project.name, endpoint, "unauthorized")
            raise Unauthorized(f"{what}: HTTP {status} — the token was rejected",
                               status=status, code=_error_code(response))
        if status >= 500:
            self.health.request("cloud", self.project.name, endpoint, "server_error")
            body_text = ""
            try:
                body_text = _error_text(response.json())
            except ValueError:
                pass
            raise ServerError(f"{what}: HTTP {status} {body_text}".rstrip())
        if status >= 400:
            self.health.request("cloud", self.project.name, endpoint, "client_error")
            try:
                text = _error_text(response.json())
            except ValueError:
                text = "no error body"
            raise ClientError(f"{what}: HTTP {status} {text}", status=status,
                              code=_error_code(response))
        try:
            body = _json(response, what)
            if parse is not None:
                body = parse(body)
        except RecordError as exc:
            self.health.request("cloud", self.project.name, endpoint, "malformed")
            raise Malformed(f"{what}: {exc}") from exc
        except ApiError:
            self.health.request("cloud", self.project.name, endpoint, "malformed")
            raise
        self.health.request("cloud", self.project.name, endpoint, "success")
        return body

    def list_all(self, path: str, key: str, endpoint: str,
                 params: Mapping[str, Any] | None = None, per_page: int = 50) -> list[Any]:
        """Every entry of a paginated list; any broken page fails the whole listing."""
        items: list[Any] = []
        page: int | None = 1
        pages = 0
        while page:
            what = f"Cloud project {self.project.name}: GET {endpoint} page {page}"

            def check(body: Any, page: int = page,
                      what: str = what) -> tuple[list[Any], int | None]:
                """A usable page: its entries and the next page; else malformed."""
                if not isinstance(body, Mapping) or not isinstance(body.get(key), list):
                    raise Malformed(f"{what}: no {key!r} list in the response")
                meta = body.get("meta")
                pagination = meta.get("pagination") if isinstance(meta, Mapping) else None
                if not isinstance(pagination, Mapping):
                    raise Malformed(f"{what}: meta.pagination is not an object")
                nxt = pagination.get("next_page")
                if nxt is not None and (not isinstance(nxt, int) or nxt <= page):
                    raise Malformed(f"{what}: next_page {nxt!r} does not advance")
                total = pagination.get("total_entries")
                seen = len(items) + len(body[key])
                if nxt is None and isinstance(total, int) and seen < total:
                    raise Malformed(f"{what}: the listing ended after {seen} of "
                                    f"{total} entries (pagination broke)")
                return body[key], nxt

            entries, page = self.get(path, endpoint,
                                     {**(params or {}), "page": page, "per_page": per_page},
                                     parse=check)
            items.extend(entries)
            pages += 1
            if pages > 100_000:
                raise Malformed(f"{what}: pagination does not end")
        return items


class RobotClient:
    """The Robot web service: basic auth, 200 requests/hour on /server, never retries a 401."""

    def __init__(self, account: RobotAccount, health: Health, *, timeout: float = 10.0,
                 clock: Callable[[], float] = time.time,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.account = account
        self.health = health
        self.clock = clock
        self.paused_until = 0.0
        self.client = httpx.Client(
            base_url=account.endpoint, timeout=timeout, transport=transport,
            auth=(account.user, account.password.reveal()),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"})

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, endpoint: str, parse: Callable[[Any], Any] | None = None) -> Any:
        now = self.clock()
        what = f"Robot: GET {endpoint}"
        if self.paused_until > now:
            raise RateLimited(f"{what}: paused after a rate limit or rejected "
                              "credentials", self.paused_until)
        try:
            response = self.client.get(path)
        except httpx.TimeoutException as exc:
            self.health.request("robot", "robot", endpoint, "timeout")
            raise ApiTimeout(f"{what}: timed out") from exc
        except httpx.TransportError as exc:
            self.health.request("robot", "robot", endpoint, "unavailable")
            raise ApiUnavailable(f"{what}: {type(exc).__name__}") from exc
        status = response.status_code
        body: Any = None
        if "json" in response.headers.get("content-type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        code = body.get("error", {}).get("code") if isinstance(body, Mapping) and isinstance(
            body.get("error"), Mapping) else None
        if status == 401:
            # Pause every endpoint: another login with the same password would only
            # bring the IP closer to Robot's block (the loop may shorten or extend this).
            self.paused_until = now + AUTH_FAILURE_PAUSE
            self.health.request("robot", "robot", endpoint, "unauthorized")
            raise Unauthorized(f"{what}: 401 — the Robot credentials were rejected "
                               "(not retried: Robot blocks the IP after three failures)",
                               status=status, code=code)
        if status == 403 and code == "RATE_LIMIT_EXCEEDED":
            interval = body["error"].get("interval")
            wait = float(interval) if isinstance(interval, (int, float)) else 600.0
            self.paused_until = now + min(wait, 3600.0)
            self.health.request("robot", "robot", endpoint, "rate_limited")
            raise RateLimited(f"{what}: 403 RATE_LIMIT_EXCEEDED "
                              f"(max_request={body['error'].get('max_request')}, "
                              f"interval={interval})", self.paused_until)
        if status >= 500:
            self.health.request("robot", "robot", endpoint, "server_error")
            raise ServerError(f"{what}: HTTP {status} {code or ''}".rstrip())
        if status >= 400:
            self.health.request("robot", "robot", endpoint, "client_error")
            raise ClientError(f"{what}: HTTP {status} {code or ''}".rstrip(),
                              status=status, code=code)
        try:
            parsed = _json(response, what)
            if parse is not None:
                parsed = parse(parsed)
        except RecordError as exc:
            self.health.request("robot", "robot", endpoint, "malformed")
            raise Malformed(f"{what}: {exc}") from exc
        except ApiError:
            self.health.request("robot", "robot", endpoint, "malformed")
            raise
        self.health.request("robot", "robot", endpoint, "success")
        return parsed
