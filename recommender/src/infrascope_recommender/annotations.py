"""Recommendations as Grafana annotations: a pull feed for Infinity, and an optional push.

**Feed** (``GET /api/annotations``): one row per recommendation in the shape the Infinity
datasource reads as annotations: ``time`` and ``timeEnd`` (epoch milliseconds),
``title``, ``text`` and ``tags``. A row spans from when the recommendation was first seen
to when it was decided (or now, while it is pending).

**Push** (:class:`GrafanaPusher`): for Grafana installations without Infinity, the same
recommendations are written through Grafana's annotations HTTP API. It is idempotent:
each recommendation has exactly one annotation, found again by a tag holding the
recommendation id (ids already read ``rec-<hash>``, so the id itself is the tag). A push
creates the missing ones, patches those whose text, tags or times changed, deletes those
whose recommendation is dismissed or gone, and removes duplicates if an earlier push was
interrupted half-way. Pending recommendations are point annotations at ``first_seen``
(they do not move on every push), accepted ones span ``first_seen`` → ``decided_at``.
The Grafana token travels in the ``Authorization`` header only and is never logged.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .config import GrafanaSettings
from .report import action_lines, describe, money, percent, printable
from .state import StoredRecommendation

log = logging.getLogger(__name__)

FEED_TAG = "infrascope"
RECENT_SECONDS = 30 * 86400.0  # default feed: pending + decided in the last 30 days
PUSHED_STATUSES = ("pending", "accepted")  # dismissed and stale ones are removed
_REC_ID = re.compile(r"^rec-[0-9a-f]{16}$")  # model.recommendation_id's format


def _ms(epoch: float) -> int:
    return int(round(epoch * 1000))


def annotation_text(item: StoredRecommendation) -> str:
    """The reasons and the decision, one sentence a line."""
    rec = item.recommendation
    lines = [r.text for r in rec.reasons]
    if rec.target_type:
        lines.append(f"Projected on {rec.target_type}: CPU "
                     f"{percent(rec.projected_cpu_utilisation)}, memory "
                     f"{percent(rec.projected_memory_utilisation)}.")
    lines.append(f"Monthly cost {money(rec.current_monthly_cost)} → "
                 f"{money(rec.projected_monthly_cost)} EUR; confidence {rec.confidence}, "
                 f"risk {rec.risk}.")
    # Reasons and names are typed by people: one line each, control characters shown.
    by = f" by {printable(item.decided_by)}" if item.decided_by else ""
    if item.status == "accepted":
        note = f": {printable(item.reason)}" if item.reason else ""
        lines.append(f"Accepted{by}{note}.")
    elif item.status == "dismissed":
        lines.append(f"Dismissed{by}: {printable(item.reason or '')}.")
    if rec.commands:
        lines.append("Action:")
        lines.extend(action_lines(rec.commands))
    lines.append(f"Id: {rec.id}")
    return "\n".join(lines)


def annotation_tags(item: StoredRecommendation) -> list[str]:
    rec = item.recommendation
    tags = [FEED_TAG, rec.kind, item.status, rec.id]
    for s in rec.servers:
        for tag in (s.source, s.name):
            if tag and tag not in tags:
                tags.append(tag)
    return tags


def annotation(item: StoredRecommendation, now: float) -> dict[str, Any]:
    """One Infinity row (extra columns ``id``, ``kind``, ``status``, ``monthly_savings``)."""
    rec = item.recommendation
    end = item.decided_at if item.decided_at is not None else now
    return {
        "time": _ms(item.first_seen),
        "timeEnd": _ms(max(end, item.first_seen)),
        "title": describe(rec),
        "text": annotation_text(item),
        "tags": annotation_tags(item),
        "id": rec.id,
        "kind": rec.kind,
        "status": item.status,
        "monthly_savings": money(rec.savings),
    }


def feed(items: Iterable[StoredRecommendation], now: float, *,
         statuses: Sequence[str] | None = None, start: float | None = None,
         end: float | None = None, recent_seconds: float = RECENT_SECONDS) -> list[dict[str, Any]]:
    """Rows for ``items`` (already filtered by server and kind), oldest first.

    Without ``statuses``: pending ones plus those decided in the last ``recent_seconds``.
    ``start``/``end`` (epoch seconds, Grafana's dashboard range) keep rows overlapping it.
    """
    rows = []
    for item in items:
        if statuses is not None:
            if item.status not in statuses:
                continue
        elif item.status != "pending" and (item.decided_at is None
                                           or item.decided_at < now - recent_seconds):
            continue
        item_end = item.decided_at if item.decided_at is not None else now
        if start is not None and item_end < start:
            continue
        if end is not None and item.first_seen > end:
            continue
        rows.append(annotation(item, now))
    rows.sort(key=lambda r: (r["time"], r["id"]))
    return rows


# --- push --------------------------------------------------------------------------------

class GrafanaError(Exception):
    """Grafana refused or could not be reached; names the URL, never the token."""


@dataclass
class PushResult:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0


@dataclass(frozen=True)
class _Wanted:
    time: int
    time_end: int
    text: str
    tags: tuple[str, ...]


class GrafanaPusher:
    """Keeps one Grafana annotation per pending or accepted recommendation."""

    def __init__(self, settings: GrafanaSettings, *, client: httpx.Client | None = None,
                 timeout: float = 10.0, limit: int = 10_000) -> None:
        self.settings = settings
        self.limit = limit
        self._client = client or httpx.Client(timeout=timeout)
        self._own_client = client is None

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = self.settings.url + path
        headers = {"Authorization": f"Bearer {self.settings.token.reveal()}",
                   "Accept": "application/json"}
        try:
            response = self._client.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise GrafanaError(f"Grafana at {self.settings.url}: {method} {path} failed: "
                               f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", "")
            except ValueError:
                detail = response.text[:200]
            raise GrafanaError(f"Grafana at {self.settings.url}: {method} {path} returned "
                               f"HTTP {response.status_code}" + (f": {detail}" if detail else ""))
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GrafanaError(f"Grafana at {self.settings.url}: {method} {path} did not "
                               "return JSON") from None

    def _tags(self, item: StoredRecommendation) -> tuple[str, ...]:
        tags = list(self.settings.tags)
        for tag in annotation_tags(item):
            if tag not in tags:
                tags.append(tag)
        return tuple(tags)

    def _wanted(self, item: StoredRecommendation) -> _Wanted:
        end = item.decided_at if item.status == "accepted" and item.decided_at else \
            item.first_seen
        return _Wanted(_ms(item.first_seen), _ms(max(end, item.first_seen)),
                       f"{describe(item.recommendation)}\n{annotation_text(item)}",
                       self._tags(item))

    def existing(self) -> list[dict[str, Any]]:
        """Our annotations in Grafana (all carrying every configured tag)."""
        params: list[tuple[str, str | int]] = [("tags", t) for t in self.settings.tags]
        params += [("type", "annotation"), ("limit", self.limit)]
        if self.settings.dashboard_uid:
            params.append(("dashboardUID", self.settings.dashboard_uid))
        found = self._request("GET", "/api/annotations", params=params)
        if not isinstance(found, list):
            raise GrafanaError(f"Grafana at {self.settings.url}: GET /api/annotations did not "
                               "return a list")
        if len(found) >= self.limit:
            log.warning("grafana annotations hit the query limit; older duplicates may remain",
                        extra={"event": "grafana_push", "limit": self.limit})
        return found

    def push(self, items: Iterable[StoredRecommendation]) -> PushResult:
        """Make Grafana match ``items``: pending and accepted ones shown, the rest removed."""
        wanted = {i.id: self._wanted(i) for i in items if i.status in PUSHED_STATUSES}
        result = PushResult()
        seen: set[str] = set()
        for existing in self.existing():
            rec_id = next((t for t in existing.get("tags") or [] if _REC_ID.match(t)), None)
            if rec_id is None:
                continue  # someone else's annotation with our tags: leave it alone
            ann_id = existing["id"]
            want = wanted.get(rec_id)
            if want is None or rec_id in seen:
                self._request("DELETE", f"/api/annotations/{ann_id}")
                result.deleted += 1
                continue
            seen.add(rec_id)
            same = (existing.get("text") == want.text
                    and sorted(existing.get("tags") or []) == sorted(want.tags)
                    and existing.get("time") == want.time
                    and (existing.get("timeEnd") or existing.get("time")) == want.time_end)
            if same:
                result.unchanged += 1
                continue
            self._request("PATCH", f"/api/annotations/{ann_id}",
                          json={"time": want.time, "timeEnd": want.time_end,
                                "text": want.text, "tags": list(want.tags)})
            result.updated += 1
        for rec_id, want in wanted.items():
            if rec_id in seen:
                continue
            body: dict[str, Any] = {"time": want.time, "timeEnd": want.time_end,
                                    "text": want.text, "tags": list(want.tags)}
            if self.settings.dashboard_uid:
                body["dashboardUID"] = self.settings.dashboard_uid
            self._request("POST", "/api/annotations", json=body)
            result.created += 1
        log.info("pushed annotations to grafana",
                 extra={"event": "grafana_push", "url": self.settings.url,
                        "annotations_created": result.created,
                        "annotations_updated": result.updated,
                        "annotations_deleted": result.deleted,
                        "annotations_unchanged": result.unchanged})
        return result
