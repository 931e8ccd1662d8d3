"""The JSON API (FastAPI): recommendations, decisions, fleet views, annotations, /metrics.

``create_app(service)`` builds the app; ``recommender serve`` runs it under uvicorn.
The OpenAPI schema is at ``/openapi.json`` (interactive docs at ``/docs``); every request
and response body is a Pydantic model, money is a string with two decimals (``"12.34"``,
euros per month unless the name says ``yearly``) so no client rounds it through a float.

Writes (accept, dismiss, reopen, run) need ``Authorization: Bearer <token>`` where the
token is the configured ``api.token_file`` / ``RECOMMENDER_API_TOKEN``. Without a
configured token the write endpoints are *disabled* (403 saying how to configure one)
rather than open: the API usually listens next to Prometheus on a shared network, and a
forgotten setting must not let anyone dismiss recommendations. A missing or wrong token
is a 401 with ``WWW-Authenticate: Bearer``. Reads need no token, like Prometheus' own API.

Errors are JSON ``{"detail": ...}``: 401/403 auth, 404 unknown id or server, 405 wrong
method (with ``Allow``), 409 a reopen that would put a server in two pending
recommendations, 413 a body over ``api.max_request_bytes``, 422 invalid query or body,
503 when there is no data yet or Prometheus fails (the detail names the URL and the
failure).

What a client sends is never echoed back whole: a body over the limit is refused before
it is read (:mod:`.body_limit`), a 422 names the location and the problem with at most a
short prefix of the offending value, and an id that cannot be one is a 404 that does not
repeat it. Decision texts (reason, note, by) are one line of plain text: they end up in
the HTML and Markdown reports and in Grafana annotations. Every GET endpoint answers HEAD.
"""

from __future__ import annotations

import hmac
import logging
import math
import unicodedata
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.routing import Match
from starlette.types import Message, Receive, Scope, Send

from infrascope_core import contract
from infrascope_core.durations import parse_duration
from infrascope_core.errors import ConfigError

from . import __version__
from .annotations import feed
from .api_docs import add_docs_routes
from .body_limit import BodyLimit
from .config import DEFAULT_MAX_REQUEST_BYTES
from .metrics import registry_for
from .metrics import render as render_metrics
from .model import RECOMMENDATION_ID, Fleet, Server, ServerKey, Source, cents
from .report import NoRunYet, render, view_from_store
from .rules import kinds
from .service import HistoryUnavailable, RecommenderService, RunFailed
from .state import Conflict, NotFound, RunRecord, StoredRecommendation

log = logging.getLogger(__name__)

Money = Annotated[str, Field(pattern=r"^-?\d+\.\d{2}$", examples=["12.34"],
                             description="Euros with two decimals")]
StatusName = Literal["pending", "accepted", "dismissed"]
if TYPE_CHECKING:
    KindName = str
else:  # every registered rule's kind, in listing order (an enum in the OpenAPI schema)
    KindName = Literal[kinds()]
if TYPE_CHECKING:
    SourceName = Source
    TierName = str
else:  # the series contract's vocabularies (enums in the OpenAPI schema)
    SourceName = Literal[contract.SOURCES]
    TierName = Literal[(*contract.TIERS, contract.TIER_UNKNOWN)]
Level = Literal["high", "medium", "low"]
SortKey = Literal["name", "-name", "cost", "-cost", "cpu", "-cpu", "memory", "-memory"]

# The classic text format every Prometheus 2.x/3.x, Mimir and VictoriaMetrics scrape; all
# names here are legacy-valid, so the body is the same as prometheus-client's 1.0.0 format.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_UNTIL = timedelta(days=3660)  # a dismissal may last ten years, not forever-by-typo
MAX_SERVER_ID = 64  # Cloud and Robot ids are integers; 64 characters leave room to spare
INPUT_PREFIX = 32  # what a 422 shows of the value it refuses
MAX_ERRORS = 20  # problems listed in one 422
# One line of plain text: no control characters (NUL, newlines, tabs, escapes), no format
# characters (bidi overrides, zero-width), no surrogates, no line/paragraph separators.
NOT_PLAIN_TEXT = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
UNKNOWN_ID = ("no recommendation with this id (an id is 'rec-' and 16 hexadecimal digits, "
              "e.g. rec-0123456789abcdef)")
TOKEN_HELP = ("write endpoints are disabled because no API token is configured: set "
              "api.token_file in the configuration file, or RECOMMENDER_API_TOKEN / "
              "RECOMMENDER_API_TOKEN_FILE in the environment, and send it as "
              "'Authorization: Bearer <token>'")


def _money(value: Decimal | None) -> str | None:
    return None if value is None else str(cents(value))


def _dt(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def plain_text(value: str | None) -> str | None:
    """Refuse a decision text that is not one line of plain text (``ValueError``).

    Reasons and notes are shown in the HTML and Markdown reports and in Grafana: a NUL, a
    newline or a bidi override there breaks a table row or hides what the text says.
    """
    if value is None:
        return None
    for position, char in enumerate(value, 1):
        if unicodedata.category(char) in NOT_PLAIN_TEXT:
            raise ValueError(f"control or format character U+{ord(char):04X} at position "
                             f"{position}: expected one line of plain text")
    return value


def _clip(value: str, limit: int = INPUT_PREFIX) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def _validation_error(error: Any) -> dict[str, Any]:
    """One problem of a 422: where, what, and at most a short prefix of the value."""
    loc = [item if isinstance(item, int) else _clip(str(item)) for item in error.get("loc", ())]
    shown: dict[str, Any] = {"loc": loc, "msg": _clip(str(error.get("msg", "")), 300),
                             "type": str(error.get("type", ""))}
    value = error.get("input")
    if isinstance(value, str):
        shown["input"] = _clip(value)
    elif value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
        # NaN and Infinity (Python's json reads them) cannot be written back as JSON
        plain = not isinstance(value, float) or math.isfinite(value)
        shown["input"] = value if plain and len(text) <= INPUT_PREFIX else _clip(text)
    return shown  # a mapping or a list as input: not shown at all


# --- models ------------------------------------------------------------------------------

class ErrorModel(BaseModel):
    detail: Any = Field(description="What went wrong (a list of problems for 422)")


class ServerRefModel(BaseModel):
    source: SourceName
    server_id: str
    name: str
    server_type: str
    location: str
    project: str = ""


class ReasonModel(BaseModel):
    text: str
    figures: dict[str, str] = Field(default_factory=dict,
                                    description="The numbers behind the sentence, as shown")


class RecommendationOptionModel(BaseModel):
    target_type: str
    in_place: bool = Field(description="A type change of the server itself (else a new server)")
    projected_monthly_cost: Money
    monthly_savings: Money
    projected_cpu_utilisation: float | None = Field(
        default=None, description="30-day p95 CPU as a ratio 0..1 of the target's cores")
    projected_peak_utilisation: float | None = Field(
        default=None, description="The recurring daily peak (busiest hour on at least half "
                                  "the days) as a ratio of the target's cores; above 1: slowed")
    projected_memory_utilisation: float | None = None
    performance_risk: Level = Field(
        description="low: the daily peak within rules.headroom.peak and the busiest 5 minutes "
                    "within the cores; medium: the peak within the cores; high: above them")
    slowdown: float | None = Field(default=None, description="How many times longer the "
                                   "daily peak would take (peak cores / target cores)")
    text: str = Field(examples=["the daily peak of 6.5 cores would take ~3.3x longer on 2 "
                                "cores"])


class RecommendationModel(BaseModel):
    id: str
    kind: KindName
    action: Literal["delete", "change_type", "merge", "migrate"]
    status: StatusName
    servers: list[ServerRefModel]
    current_monthly_cost: Money
    projected_monthly_cost: Money
    monthly_savings: Money = Field(description="Negative when the change costs more")
    savings_percent: str = Field(examples=["76.9"])
    target_type: str | None = None
    target_location: str | None = None
    projected_cpu_utilisation: float | None = Field(default=None, description="Ratio 0..1 of the "
                                                    "target's capacity")
    projected_memory_utilisation: float | None = None
    confidence: Level
    risk: Level
    reasons: list[ReasonModel]
    confidence_reasons: list[ReasonModel]
    risk_reasons: list[ReasonModel]
    preconditions: list[str]
    commands: list[str] = Field(description="The exact action, in order")
    options: list[RecommendationOptionModel] = Field(
        default_factory=list, description="The targets offered, ranked: the chosen one (the "
        "cheapest that holds the recurring daily peak) first, then cheaper ones with how much "
        "they would slow it")
    first_seen: datetime
    last_seen: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    reason: str | None = Field(default=None, description="The dismissal reason or the accept note")
    dismissed_until: datetime | None = None

    @classmethod
    def of(cls, item: StoredRecommendation) -> RecommendationModel:
        return cls.model_validate(item.to_dict())


class RecommendationList(BaseModel):
    items: list[RecommendationModel]
    total: int = Field(description="Matching recommendations before limit/offset")
    monthly_savings: Money = Field(description="Sum over all matching recommendations")


PLAIN = "One line of plain text: no control characters (newlines, tabs, NUL, ...)"


class AcceptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000, description=f"Optional note. {PLAIN}")
    by: str | None = Field(default=None, max_length=200,
                           description=f"Who decided (free text). {PLAIN}")

    _plain = field_validator("note", "by")(plain_text)


class DismissRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000, description=f"Why (required). {PLAIN}")
    until: str | None = Field(
        None, max_length=64, examples=["2026-01-01T00:00:00Z", "30d"],
        description="When the dismissal expires and the recommendation may come back: an "
                    "ISO 8601 datetime in the future (UTC if no offset) or a duration from "
                    "now (90d, 12h, 30m). Omitted: dismissed for good.")
    by: str | None = Field(default=None, max_length=200,
                           description=f"Who decided (free text). {PLAIN}")

    _plain = field_validator("by")(plain_text)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        plain_text(value)
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()

    def until_datetime(self, now: datetime) -> datetime | None:
        """Resolve ``until``; raises ``ValueError`` with the problem."""
        if self.until is None:
            return None
        text = self.until.strip()
        try:  # a duration written with its unit (30d, 12h): a bare number is no date
            seconds: float | None = parse_duration(text, "until", numbers=False,
                                                   allow_zero=True)
        except ConfigError:
            seconds = None
        if seconds is not None:
            if seconds <= 0:
                raise ValueError(f"until: must be positive, got {text!r}")
            if seconds > MAX_UNTIL.total_seconds():
                raise ValueError("until: at most ten years from now")
            return now + timedelta(seconds=seconds)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("until: expected an ISO 8601 datetime (2026-01-01T00:00:00Z) "
                             "or a duration (30d)") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when <= now:
            raise ValueError("until: must be in the future")
        if when - now > MAX_UNTIL:
            raise ValueError("until: at most ten years from now")
        return when


class ReopenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=2000, description=PLAIN)
    by: str | None = Field(default=None, max_length=200, description=PLAIN)

    _plain = field_validator("note", "by")(plain_text)


class RunModel(BaseModel):
    id: int
    started_at: datetime
    duration_seconds: float
    success: bool
    error: str | None = None
    generated: int = Field(description="Recommendations the engine produced")
    new: int
    stale: int = Field(description="Pending ones removed (no longer generated or displaced)")
    reopened: int = Field(description="Dismissals that expired and came back")
    pending: int
    pending_monthly_savings: Money
    queries: int | None = Field(default=None, description="PromQL queries the run made")
    servers: int | None = None
    fleet_monthly_cost: Money | None = None
    excluded_servers: int

    @classmethod
    def of(cls, run: RunRecord) -> RunModel:
        return cls(id=run.id, started_at=datetime.fromtimestamp(run.started_at, UTC),
                   duration_seconds=run.duration_seconds, success=run.success,
                   error=run.error, generated=run.generated, new=run.new, stale=run.stale,
                   reopened=run.reopened, pending=run.pending,
                   pending_monthly_savings=str(run.pending_savings), queries=run.queries,
                   servers=run.servers, fleet_monthly_cost=_money(run.fleet_monthly_cost),
                   excluded_servers=len(run.exclusions))


class StatusTotals(BaseModel):
    count: int
    monthly_savings: Money


class SummaryModel(BaseModel):
    currency: Literal["EUR"] = "EUR"
    pending_monthly_savings: Money
    pending_yearly_savings: Money
    by_status: dict[str, StatusTotals]
    by_kind: dict[str, dict[str, StatusTotals]] = Field(description="kind -> status -> totals")
    fleet_monthly_cost: Money | None = Field(default=None,
                                             description="From the last successful run")
    servers: int | None = None
    ready: bool
    last_run: RunModel | None = None
    last_success: RunModel | None = None


class UtilisationModel(BaseModel):
    cpu_avg: float | None = None
    cpu_max: float | None = None
    cpu_p95: float | None = None
    cpu_coverage: float | None = None
    cpu_daily_peak: float | None = Field(
        default=None, description="The recurring daily peak: the level the day's busiest "
                                  "hour reaches on at least half the 30 days")
    memory_avg: float | None = None
    memory_max: float | None = None
    memory_p95: float | None = None
    memory_coverage: float | None = None
    via: str | None = Field(default=None,
                            description="Where the CPU figures come from: agent or cloud")
    tier: str | None = None


class ServiceModel(BaseModel):
    kind: str
    name: str
    state: str = ""
    image: str = ""
    compose_project: str = ""


class ServerModel(BaseModel):
    source: SourceName
    server_id: str
    name: str
    server_type: str
    location: str
    datacenter: str
    project: str
    architecture: str
    cpu_type: str
    status: str
    labels: dict[str, str]
    cores: int | None = None
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    disk_used_bytes: int | None = None
    backups: bool
    monthly_cost: Money | None = Field(default=None, description="The server itself")
    total_monthly_cost: Money | None = Field(default=None, description="Server plus backups, IPs, "
                                             "volumes that belong to it")
    cost_breakdown: dict[str, Money]
    utilisation: UtilisationModel
    services: list[ServiceModel]
    pending_recommendation: str | None = Field(default=None, description="Id of the pending "
                                               "recommendation naming this server")

    @classmethod
    def of(cls, server: Server, pending: str | None) -> ServerModel:
        u = server.utilisation
        return cls(
            source=server.key.source, server_id=server.key.server_id, name=server.name,
            server_type=server.server_type, location=server.location,
            datacenter=server.datacenter, project=server.project,
            architecture=server.architecture, cpu_type=server.cpu_type, status=server.status,
            labels=dict(server.labels), cores=server.cores, memory_bytes=server.memory_bytes,
            disk_bytes=server.disk_bytes, disk_used_bytes=server.disk_used_bytes,
            backups=server.backups, monthly_cost=_money(server.monthly_cost),
            total_monthly_cost=_money(server.total_monthly_cost),
            cost_breakdown={k: str(cents(v)) for k, v in server.cost_breakdown.items()},
            utilisation=UtilisationModel(
                cpu_avg=u.cpu_avg, cpu_max=u.cpu_max, cpu_p95=u.cpu_p95,
                cpu_coverage=u.cpu_coverage, cpu_daily_peak=u.cpu_daily_peak,
                memory_avg=u.memory_avg, memory_max=u.memory_max,
                memory_p95=u.memory_p95, memory_coverage=u.memory_coverage, via=u.via,
                tier=u.tier),
            services=[ServiceModel(kind=s.kind, name=s.name, state=s.state, image=s.image,
                                   compose_project=s.compose_project)
                      for s in server.services],
            pending_recommendation=pending)


class ServerList(BaseModel):
    items: list[ServerModel]
    total: int = Field(description="Matching servers before limit/offset")
    limit: int
    offset: int
    loaded_at: datetime


class CostsModel(BaseModel):
    currency: Literal["EUR"] = "EUR"
    price_mode: str = Field(description="net or gross, as the exporter reports")
    total: Money
    by_source: dict[str, Money]
    by_location: dict[str, Money]
    by_project: dict[str, Money]
    loaded_at: datetime


class MonthTotal(BaseModel):
    month: str = Field(examples=["2025-06"])
    total: Money


class CostHistoryModel(BaseModel):
    currency: Literal["EUR"] = "EUR"
    months: list[MonthTotal]


class AnnotationModel(BaseModel):
    time: int = Field(description="Epoch milliseconds: when the recommendation was first seen")
    timeEnd: int = Field(description="Epoch milliseconds: when decided, or now")  # noqa: N815
    title: str
    text: str
    tags: list[str]
    id: str
    kind: KindName
    status: StatusName
    monthly_savings: Money


class HealthModel(BaseModel):
    status: str


class ReadyModel(BaseModel):
    status: str
    detail: str


# --- the app -----------------------------------------------------------------------------

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorModel, "description": "Unknown id"},
    503: {"model": ErrorModel, "description": "No data yet, or Prometheus failed"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorModel, "description": "Missing or wrong bearer token"},
    403: {"model": ErrorModel, "description": "No API token configured: writes disabled"},
    404: {"model": ErrorModel, "description": "Unknown id"},
    413: {"model": ErrorModel, "description": "Body over api.max_request_bytes (not read)"},
}
RecId = Annotated[str, Path(description="'rec-' and 16 hexadecimal digits",
                            examples=["rec-0123456789abcdef"])]


class Route(APIRoute):
    """An API route that also answers HEAD where it answers GET, and says ``Allow``.

    FastAPI's routes, unlike Starlette's, leave HEAD out: ``HEAD /metrics`` was a 405.
    OpenAPI still lists GET alone (HEAD is implied by HTTP). A HEAD request runs the GET
    endpoint, so status and headers (Content-Length too) are those of the GET; the body
    is dropped here, whatever server runs the app.
    """

    def allowed(self) -> list[str]:
        methods = set(self.methods or ())
        if "GET" in methods:
            methods.add("HEAD")
        return sorted(methods)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["method"] == "HEAD" \
                and "GET" in (self.methods or ()):
            return super().matches({**scope, "method": "GET"})
        return super().matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        allowed = self.allowed()
        if scope["method"] not in allowed:
            raise HTTPException(405, headers={"Allow": ", ".join(allowed)})
        if scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app(scope, receive, headers_only)


# Module level: FastAPI resolves the (string) annotations of dependencies in module globals.
BEARER = HTTPBearer(auto_error=False, description="The configured api.token_file")

DESCRIPTION = """Savings recommendations for a Hetzner fleet, computed from PromQL.

Money is a string with two decimals, euros per month unless the field says otherwise.
Write endpoints need `Authorization: Bearer <token>` (configure `api.token_file`); without a
configured token they answer 403. Errors are `{"detail": ...}`.
"""


def create_app(service: RecommenderService, *,
               max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    """The app; ``max_request_bytes`` is ``api.max_request_bytes`` (bodies over it: 413)."""
    title = "InfraScope recommender"
    app = FastAPI(title=title, version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, swagger_ui_oauth2_redirect_url=None)
    app.router.route_class = Route
    app.add_middleware(BodyLimit, limit=max_request_bytes)
    add_docs_routes(app, openapi_url=app.openapi_url or "/openapi.json", title=title)
    registry = registry_for(service)

    def require_token(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> None:
        expected = service.api_token
        if expected is None or not expected.reveal():
            raise HTTPException(403, TOKEN_HELP)
        if credentials is None or not credentials.credentials:
            raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": 'Bearer realm="recommender"'})
        if not hmac.compare_digest(credentials.credentials.encode("utf-8", "surrogatepass"),
                                   expected.reveal().encode("utf-8")):
            raise HTTPException(401, "invalid bearer token", headers={
                "WWW-Authenticate": 'Bearer realm="recommender", error="invalid_token"'})

    Auth = Depends(require_token)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("request failed", exc_info=exc,
                  extra={"event": "http_error", "path": request.url.path})
        return JSONResponse({"detail": "internal error (see the recommender's log)"}, 500)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler returns each value it refused, whole: 10 MB in, 10 MB out
        errors = exc.errors()
        return JSONResponse({"detail": [_validation_error(e) for e in errors[:MAX_ERRORS]]},
                            422)

    def check_id(rec_id: str) -> None:
        """An id that cannot be one is unknown; the 404 does not repeat it."""
        if not RECOMMENDATION_ID.fullmatch(rec_id):
            raise HTTPException(404, UNKNOWN_ID)

    def get_item(rec_id: str) -> StoredRecommendation:
        check_id(rec_id)
        try:
            return service.store.get(rec_id)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None

    def fleet_or_503() -> Fleet:
        fleet = service.fleet
        if fleet is None:
            _, reason = service.readiness()
            raise HTTPException(503, f"no fleet loaded yet: {reason}")
        return fleet

    # --- recommendations -----------------------------------------------------------------

    @app.get("/api/recommendations", response_model=RecommendationList,
             tags=["recommendations"], summary="List recommendations, largest savings first")
    def list_recommendations(
            status: Annotated[StatusName | None, Query()] = None,
            kind: Annotated[KindName | None, Query()] = None,
            source: Annotated[SourceName | None, Query()] = None,
            project: Annotated[str | None, Query(max_length=200)] = None,
            server: Annotated[str | None, Query(max_length=300,
                                                description="Server name or source/id")] = None,
            limit: Annotated[int | None, Query(ge=1, le=10000)] = None,
            offset: Annotated[int, Query(ge=0)] = 0,
    ) -> RecommendationList:
        items = service.store.list(status=status, kind=kind, source=source, project=project,
                                   server=server)
        total = sum((i.recommendation.savings for i in items), Decimal(0))
        page = items[offset:offset + limit if limit is not None else None]
        return RecommendationList(items=[RecommendationModel.of(i) for i in page],
                                  total=len(items), monthly_savings=str(cents(total)))

    @app.get("/api/recommendations/{rec_id}", response_model=RecommendationModel,
             responses=ERRORS, tags=["recommendations"])
    def get_recommendation(rec_id: RecId) -> RecommendationModel:
        return RecommendationModel.of(get_item(rec_id))

    @app.post("/api/recommendations/{rec_id}/accept", response_model=RecommendationModel,
              responses=WRITE_ERRORS, tags=["decisions"], dependencies=[Auth],
              summary="Accept: the operator will act on it")
    def accept(rec_id: RecId, body: AcceptRequest | None = None) -> RecommendationModel:
        body = body or AcceptRequest()
        check_id(rec_id)
        try:
            item = service.accept(rec_id, by=body.by, note=body.note)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return RecommendationModel.of(item)

    @app.post("/api/recommendations/{rec_id}/dismiss", response_model=RecommendationModel,
              responses=WRITE_ERRORS, tags=["decisions"], dependencies=[Auth],
              summary="Dismiss with a reason, optionally until a time")
    def dismiss(rec_id: RecId, body: DismissRequest) -> RecommendationModel:
        check_id(rec_id)
        now = datetime.now(UTC)
        try:
            until = body.until_datetime(now)
        except ValueError as exc:
            raise HTTPException(422, [{"loc": ["body", "until"], "msg": str(exc),
                                       "type": "value_error"}]) from None
        try:
            item = service.dismiss(rec_id, body.reason, until=until, by=body.by)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except ValueError as exc:  # e.g. until passed while the request was queued
            raise HTTPException(422, str(exc)) from None
        return RecommendationModel.of(item)

    @app.post("/api/recommendations/{rec_id}/reopen", response_model=RecommendationModel,
              responses={**WRITE_ERRORS, 409: {"model": ErrorModel,
                                               "description": "A server is in another "
                                                              "pending recommendation"}},
              tags=["decisions"], dependencies=[Auth],
              summary="Undo a decision: back to pending")
    def reopen(rec_id: RecId, body: ReopenRequest | None = None) -> RecommendationModel:
        body = body or ReopenRequest()
        check_id(rec_id)
        try:
            item = service.reopen(rec_id, by=body.by, note=body.note)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except Conflict as exc:
            raise HTTPException(409, str(exc)) from None
        return RecommendationModel.of(item)

    @app.get("/api/summary", response_model=SummaryModel, tags=["recommendations"],
             summary="Totals: savings and counts by status and kind, last run")
    def summary() -> SummaryModel:
        s = service.store.summary()
        good = s.last_success
        ready, _ = service.readiness()
        return SummaryModel(
            pending_monthly_savings=str(s.pending_savings),
            pending_yearly_savings=str(s.pending_savings * 12),
            by_status={k: StatusTotals(count=v.count, monthly_savings=str(v.monthly_savings))
                       for k, v in s.by_status.items()},
            by_kind={kind: {k: StatusTotals(count=v.count,
                                            monthly_savings=str(v.monthly_savings))
                            for k, v in statuses.items()}
                     for kind, statuses in s.by_kind.items()},
            fleet_monthly_cost=_money(good.fleet_monthly_cost) if good else None,
            servers=good.servers if good else None, ready=ready,
            last_run=RunModel.of(s.last_run) if s.last_run else None,
            last_success=RunModel.of(good) if good else None)

    @app.post("/api/run", response_model=RunModel, tags=["runs"], dependencies=[Auth],
              responses={401: WRITE_ERRORS[401], 403: WRITE_ERRORS[403], 413: WRITE_ERRORS[413],
                         503: {"model": ErrorModel,
                               "description": "The regeneration failed (Prometheus "
                                              "unreachable or erroring)"}},
              summary="Regenerate now")
    def run_now() -> RunModel:
        try:
            outcome = service.regenerate()
        except RunFailed as exc:
            raise HTTPException(503, f"regeneration failed: {exc}") from None
        return RunModel.of(outcome.run)

    @app.get("/api/runs", response_model=list[RunModel], tags=["runs"],
             summary="Run history, newest first")
    def runs(limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> list[RunModel]:
        return [RunModel.of(r) for r in service.store.runs(limit)]

    # --- fleet views ---------------------------------------------------------------------

    def sort_value(server: Server, key: str) -> Any:
        u = server.utilisation
        if key == "name":
            return server.name.lower()
        if key == "cost":
            cost = server.total_monthly_cost if server.total_monthly_cost is not None \
                else server.monthly_cost
            return cost
        if key == "cpu":
            return u.cpu_avg
        return u.memory_avg

    @app.get("/api/servers", response_model=ServerList, responses={503: ERRORS[503]},
             tags=["fleet"], summary="The joined per-server view of the last run")
    def servers(
            source: Annotated[SourceName | None, Query()] = None,
            location: Annotated[str | None, Query(max_length=100)] = None,
            project: Annotated[str | None, Query(max_length=200)] = None,
            tier: Annotated[TierName | None, Query()] = None,
            sort: Annotated[SortKey, Query(description="name, cost (total monthly), cpu "
                                           "(30-day average), memory (30-day average); "
                                           "prefix - for descending")] = "name",
            limit: Annotated[int, Query(ge=1, le=10000)] = 100,
            offset: Annotated[int, Query(ge=0)] = 0,
    ) -> ServerList:
        fleet = fleet_or_503()
        rows = [s for s in fleet.servers.values()
                if (source is None or s.source == source)
                and (location is None or s.location == location)
                and (project is None or s.project == project)
                and (tier is None or (s.utilisation.tier or "unknown") == tier)]
        key = sort.lstrip("-")
        descending = sort.startswith("-")
        known = [s for s in rows if sort_value(s, key) is not None]
        unknown = [s for s in rows if sort_value(s, key) is None]
        # by name first, then (stable) by the figure: ties stay in name order either way
        known.sort(key=lambda s: (s.name.lower(), str(s.key)))
        known.sort(key=lambda s: sort_value(s, key), reverse=descending)
        unknown.sort(key=lambda s: (s.name.lower(), str(s.key)))
        ordered = known + unknown  # servers without the figure last, either direction
        pending = service.store.pending_by_server()
        page = ordered[offset:offset + limit]
        return ServerList(items=[ServerModel.of(s, pending.get(s.key)) for s in page],
                          total=len(ordered), limit=limit, offset=offset,
                          loaded_at=datetime.fromtimestamp(fleet.loaded_at, UTC))

    @app.get("/api/servers/{source}/{server_id}", response_model=ServerModel,
             responses=ERRORS, tags=["fleet"])
    def server(source: SourceName,
               server_id: Annotated[str, Path(max_length=MAX_SERVER_ID)]) -> ServerModel:
        fleet = fleet_or_503()
        key = ServerKey(source, server_id)
        found = fleet.servers.get(key)
        if found is None:
            raise HTTPException(404, f"no server {key} in the last run")
        return ServerModel.of(found, service.store.pending_by_server().get(key))

    @app.get("/api/costs", response_model=CostsModel, responses={503: ERRORS[503]},
             tags=["fleet"], summary="Monthly cost: total, by source, location, project")
    def costs() -> CostsModel:
        fleet = fleet_or_503()
        c = fleet.costs
        return CostsModel(
            price_mode=fleet.price_mode, total=str(cents(c.total)),
            by_source={k: str(cents(v)) for k, v in sorted(c.by_source.items())},
            by_location={k: str(cents(v)) for k, v in sorted(c.by_location.items())},
            by_project={k: str(cents(v)) for k, v in sorted(c.by_project.items())},
            loaded_at=datetime.fromtimestamp(fleet.loaded_at, UTC))

    @app.get("/api/costs/history", response_model=CostHistoryModel,
             responses={503: ERRORS[503]}, tags=["fleet"],
             summary="Monthly totals for the last 12 months")
    def cost_history() -> CostHistoryModel:
        try:
            months = service.cost_history()
        except HistoryUnavailable as exc:
            raise HTTPException(503, f"cost history unavailable: {exc}") from None
        return CostHistoryModel(months=[MonthTotal(month=m, total=str(cents(v)))
                                        for m, v in months])

    # --- annotations, metrics, health ----------------------------------------------------

    @app.get("/api/annotations", response_model=list[AnnotationModel], tags=["grafana"],
             summary="Annotation feed for the Grafana Infinity datasource")
    def annotations(
            server: Annotated[str | None, Query(max_length=300,
                                                description="Server name or source/id")] = None,
            kind: Annotated[KindName | None, Query()] = None,
            status: Annotated[list[StatusName] | None, Query(
                description="Default: pending plus decided in the last 30 days")] = None,
            from_ms: Annotated[int | None, Query(alias="from", ge=0, le=10**15,
                                                 description="Epoch ms (${__from})")] = None,
            to_ms: Annotated[int | None, Query(alias="to", ge=0, le=10**15,
                                               description="Epoch ms (${__to})")] = None,
    ) -> list[AnnotationModel]:
        items = service.store.list(kind=kind, server=server)
        rows = feed(items, service.clock(), statuses=status,
                    start=from_ms / 1000 if from_ms is not None else None,
                    end=to_ms / 1000 if to_ms is not None else None)
        return [AnnotationModel.model_validate(r) for r in rows]

    @app.get("/metrics", response_class=Response, tags=["health"],
             responses={200: {"content": {"text/plain": {}},
                              "description": "Prometheus text exposition"}})
    def metrics() -> Response:
        return Response(render_metrics(registry), media_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz", response_model=HealthModel, tags=["health"],
             summary="200 while the process runs")
    def healthz() -> HealthModel:
        return HealthModel(status="ok")

    @app.get("/readyz", response_model=ReadyModel, tags=["health"],
             responses={503: {"model": ReadyModel, "description": "Not ready, and why"}},
             summary="200 after a successful run, else 503 with the reason")
    def readyz() -> Any:
        ready, reason = service.readiness()
        if ready:
            return ReadyModel(status="ready", detail=reason)
        return JSONResponse({"status": "not ready", "detail": reason}, 503)

    # --- the HTML report -----------------------------------------------------------------

    def report_page(status_without_data: int) -> HTMLResponse:
        try:
            view = view_from_store(service.store, dashboard_url=service.dashboard_url)
        except NoRunYet:
            _, reason = service.readiness()
            html = _no_data_page(reason)
            return HTMLResponse(html, status_without_data)
        view.links = True
        return HTMLResponse(render(view, "html"))

    @app.get("/", response_class=HTMLResponse, tags=["report"],
             summary="The HTML report (a landing page before the first run)")
    def index() -> HTMLResponse:
        return report_page(200)

    @app.get("/report", response_class=HTMLResponse, tags=["report"],
             responses={503: {"content": {"text/html": {}}, "description": "No run yet"}},
             summary="The HTML report")
    def report() -> HTMLResponse:
        return report_page(503)

    return app


def _no_data_page(reason: str) -> str:
    from html import escape

    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>InfraScope recommender</title></head><body>"
            "<h1>InfraScope recommender</h1>"
            f"<p>No recommendations yet: {escape(reason)}</p>"
            "<p><a href=\"/readyz\">Readiness</a> · <a href=\"/metrics\">Metrics</a> · "
            "<a href=\"/docs\">API documentation</a></p></body></html>")
