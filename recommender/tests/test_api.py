"""Every API endpoint through starlette's TestClient: data, filters, auth, 404s, 422s, 503s."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import service_fixtures as fx

from infrascope_recommender.api import create_app
from infrascope_recommender.config import Secret
from infrascope_recommender.model import RecommendationOption
from infrascope_recommender.promql import PrometheusError
from infrascope_recommender.service import RecommenderService
from infrascope_recommender.state import Store

with warnings.catch_warnings():  # starlette 1.x nags about httpx vs httpx2; httpx works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "api-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROM = "http://127.0.0.1:9"
MONTHS = [("2025-05", Decimal("90.1")), ("2025-06", Decimal("96.27"))]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.db") as s:
        yield s


def make_client(service: RecommenderService) -> TestClient:
    return TestClient(create_app(service), raise_server_exceptions=True)


@pytest.fixture
def service(store: Store) -> RecommenderService:
    return RecommenderService(store, fx.Runner(fx.run_result()), lambda: MONTHS,
                              api_token=Secret(TOKEN))


@pytest.fixture
def client(service: RecommenderService) -> TestClient:
    return make_client(service)


@pytest.fixture
def ran(client: TestClient) -> TestClient:
    assert client.post("/api/run", headers=AUTH).status_code == 200
    return client


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["id"] for i in response.json()["items"]]


# --- health ------------------------------------------------------------------------------

def test_health_and_readiness(client: TestClient, store: Store) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json() == {"status": "not ready",
                        "detail": "no run yet: the first regeneration has not finished"}
    client.post("/api/run", headers=AUTH)
    assert client.get("/readyz").status_code == 200
    assert client.get("/readyz").json()["status"] == "ready"


def test_readiness_names_prometheus_failure(store: Store) -> None:
    error = PrometheusError(f"Prometheus at {PROM}: connection refused", url=PROM)
    service = RecommenderService(store, fx.Runner(error), api_token=Secret(TOKEN))
    client = make_client(service)
    r = client.post("/api/run", headers=AUTH)
    assert r.status_code == 503
    assert r.json() == {"detail": f"regeneration failed: Prometheus at {PROM}: connection "
                                  "refused"}
    r = client.get("/readyz")
    assert r.status_code == 503 and PROM in r.json()["detail"]
    assert client.get("/healthz").status_code == 200


# --- auth --------------------------------------------------------------------------------

WRITES = [("/api/run", None), ("/api/recommendations/{id}/accept", {}),
          ("/api/recommendations/{id}/dismiss", {"reason": "x"}),
          ("/api/recommendations/{id}/reopen", {})]


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_writes_need_the_bearer_token(ran: TestClient, store: Store, path: str,
                                      body: dict | None) -> None:
    url = path.format(id=fx.idle().id)
    for headers, error in [({}, None), ({"Authorization": "Bearer wrong"}, "invalid_token"),
                           ({"Authorization": f"Basic {TOKEN}"}, None),
                           ({"Authorization": "Bearer"}, None),
                           ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_token")]:
        r = ran.post(url, json=body, headers=headers)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
        if error:
            assert f'error="{error}"' in r.headers["WWW-Authenticate"]
        assert "detail" in r.json() and TOKEN not in r.text
    assert store.get(fx.idle().id).status == "pending"  # nothing changed
    assert len(store.runs()) == 1


@pytest.mark.parametrize(("path", "body"), WRITES)
def test_writes_are_disabled_without_a_configured_token(store: Store, path: str,
                                                        body: dict | None) -> None:
    service = RecommenderService(store, fx.Runner(fx.run_result()))
    client = make_client(service)
    service.regenerate()
    r = client.post(path.format(id=fx.idle().id), json=body, headers=AUTH)
    assert r.status_code == 403
    assert "api.token_file" in r.json()["detail"]
    assert "RECOMMENDER_API_TOKEN" in r.json()["detail"]
    assert client.get("/api/recommendations").status_code == 200  # reads stay open


def test_auth_comes_before_validation_and_lookup(ran: TestClient) -> None:
    r = ran.post("/api/recommendations/rec-unknown/dismiss", json={"nope": 1})
    assert r.status_code == 401


# --- recommendations ---------------------------------------------------------------------

def test_list_and_filters(ran: TestClient) -> None:
    r = ran.get("/api/recommendations")
    body = r.json()
    assert body["total"] == 5 and body["monthly_savings"] == "52.39"
    assert ids(r)[0] == fx.dedicated_to_cloud().id
    first = body["items"][0]
    assert first["current_monthly_cost"] == "39.00" and first["monthly_savings"] == "22.60"
    assert first["status"] == "pending" and first["first_seen"].endswith("Z")
    assert ids(ran.get("/api/recommendations?kind=idle")) == [fx.idle().id]
    assert ids(ran.get("/api/recommendations?source=dedicated")) == [
        fx.dedicated_to_cloud().id]
    assert ids(ran.get("/api/recommendations?project=staging")) == [fx.consolidation().id]
    assert ids(ran.get("/api/recommendations?server=db-1")) == [fx.underprovisioned().id]
    assert ids(ran.get("/api/recommendations?server=cloud/102")) == [fx.idle().id]
    assert ids(ran.get("/api/recommendations?status=accepted")) == []
    page = ran.get("/api/recommendations?limit=2&offset=1").json()
    assert [i["id"] for i in page["items"]] == [fx.idle().id, fx.rightsize().id]
    assert page["total"] == 5


@pytest.mark.parametrize("query", ["status=open", "kind=magic", "source=aws", "limit=0",
                                   "offset=-1", "limit=abc"])
def test_list_rejects_bad_filters(ran: TestClient, query: str) -> None:
    r = ran.get(f"/api/recommendations?{query}")
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], list)


def test_get_one(ran: TestClient) -> None:
    rec = fx.rightsize()
    r = ran.get(f"/api/recommendations/{rec.id}")
    assert r.status_code == 200
    data = r.json()
    expected = rec.to_dict()
    for key, value in expected.items():
        assert data[key] == value, key
    r = ran.get("/api/recommendations/rec-0000000000000000")
    assert r.status_code == 404
    assert r.json() == {"detail": "no recommendation with id 'rec-0000000000000000'"}


def test_options_are_served_ranked_with_risk_and_slowdown(store: Store) -> None:
    rec = fx.rightsize()
    rec.options = [
        RecommendationOption("cx22", True, Decimal("3.79"), Decimal("12.61"), 0.4, 0.8125,
                             0.55, "low", None, "cx22 holds the daily peak"),
        RecommendationOption("cx11", True, Decimal("3.29"), Decimal("13.11"), 0.8, 1.625,
                             1.1, "high", 1.625,
                             "the daily peak of 3.2 cores would take ~1.6x longer on 2 cores")]
    service = RecommenderService(store, fx.Runner(fx.run_result([rec])), api_token=Secret(TOKEN))
    service.regenerate()
    client = make_client(service)
    data = client.get(f"/api/recommendations/{rec.id}").json()
    assert data["options"] == [o.to_dict() for o in rec.options]
    assert data["options"][1] == {
        "target_type": "cx11", "in_place": True, "projected_monthly_cost": "3.29",
        "monthly_savings": "13.11", "projected_cpu_utilisation": 0.8,
        "projected_peak_utilisation": 1.625, "projected_memory_utilisation": 1.1,
        "performance_risk": "high", "slowdown": 1.625,
        "text": "the daily peak of 3.2 cores would take ~1.6x longer on 2 cores"}
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    option = schema["RecommendationOptionModel"]["properties"]
    assert option["monthly_savings"]["pattern"] == r"^-?\d+\.\d{2}$"
    assert set(option["performance_risk"]["enum"]) == {"low", "medium", "high"}


def test_accept(ran: TestClient, store: Store) -> None:
    rec_id = fx.rightsize().id
    r = ran.post(f"/api/recommendations/{rec_id}/accept", headers=AUTH,
                 json={"by": "alice", "note": "Tuesday window"})
    assert r.status_code == 200
    assert r.json()["status"] == "accepted" and r.json()["decided_by"] == "alice"
    assert r.json()["reason"] == "Tuesday window" and r.json()["decided_at"]
    assert store.get(rec_id).status == "accepted"
    r = ran.post(f"/api/recommendations/{fx.idle().id}/accept", headers=AUTH)  # no body
    assert r.status_code == 200 and r.json()["decided_by"] is None
    assert ran.post("/api/recommendations/rec-nope/accept", headers=AUTH).status_code == 404


@pytest.mark.parametrize("body", [{"note": "x" * 2001}, {"by": 5}, {"unknown": 1}, [1, 2],
                                  "not an object"])
def test_accept_rejects_bad_bodies(ran: TestClient, body: Any) -> None:
    r = ran.post(f"/api/recommendations/{fx.idle().id}/accept", headers=AUTH, json=body)
    assert r.status_code == 422


def test_dismiss(ran: TestClient, store: Store) -> None:
    rec_id = fx.idle().id
    r = ran.post(f"/api/recommendations/{rec_id}/dismiss", headers=AUTH,
                 json={"reason": "  DR standby  ", "by": "bob"})
    assert r.status_code == 200
    data = r.json()
    assert data["status"] == "dismissed" and data["reason"] == "DR standby"
    assert data["dismissed_until"] is None
    until = (datetime.now(UTC) + timedelta(days=10)).replace(microsecond=0)
    r = ran.post(f"/api/recommendations/{fx.consolidation().id}/dismiss", headers=AUTH,
                 json={"reason": "after the migration", "until": until.isoformat()})
    assert r.status_code == 200
    assert datetime.fromisoformat(r.json()["dismissed_until"]) == until
    before = datetime.now(UTC)
    r = ran.post(f"/api/recommendations/{fx.rightsize().id}/dismiss", headers=AUTH,
                 json={"reason": "quarter end", "until": "30d"})
    got = datetime.fromisoformat(r.json()["dismissed_until"])
    assert before + timedelta(days=30) <= got <= datetime.now(UTC) + timedelta(days=30)
    naive = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None, microsecond=0)
    r = ran.post(f"/api/recommendations/{fx.underprovisioned().id}/dismiss", headers=AUTH,
                 json={"reason": "x", "until": naive.isoformat()})
    assert datetime.fromisoformat(r.json()["dismissed_until"]) == naive.replace(tzinfo=UTC)
    assert store.get(fx.consolidation().id).dismissed_until == until.timestamp()
    assert ran.post("/api/recommendations/rec-nope/dismiss", headers=AUTH,
                    json={"reason": "x"}).status_code == 404


@pytest.mark.parametrize("body", [
    {}, {"reason": ""}, {"reason": "   "}, {"reason": None}, {"reason": "x" * 2001},
    {"reason": "x", "until": "2001-01-01T00:00:00Z"}, {"reason": "x", "until": "yesterday"},
    {"reason": "x", "until": "-5d"}, {"reason": "x", "until": "0d"},
    {"reason": "x", "until": "99999999999999999999d"},
    {"reason": "x", "until": "9999-12-31T23:59:59Z"}, {"reason": "x", "until": 30},
    {"reason": "x", "extra": True},
])
def test_dismiss_rejects_bad_bodies(ran: TestClient, store: Store, body: dict) -> None:
    r = ran.post(f"/api/recommendations/{fx.idle().id}/dismiss", headers=AUTH, json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]
    assert store.get(fx.idle().id).status == "pending"


def test_dismiss_rejects_a_body_that_is_not_json(ran: TestClient) -> None:
    r = ran.post(f"/api/recommendations/{fx.idle().id}/dismiss",
                 headers={**AUTH, "Content-Type": "application/json"}, content=b"{reason")
    assert r.status_code == 422


def test_reopen(ran: TestClient, service: RecommenderService) -> None:
    rec_id = fx.idle().id
    ran.post(f"/api/recommendations/{rec_id}/dismiss", headers=AUTH, json={"reason": "x"})
    r = ran.post(f"/api/recommendations/{rec_id}/reopen", headers=AUTH, json={"by": "carol"})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    # a server now in another pending recommendation: 409
    web2 = fx.rightsize("web-2")
    ran.post(f"/api/recommendations/{rec_id}/dismiss", headers=AUTH, json={"reason": "x"})
    service.runner = fx.Runner(fx.run_result([web2]))
    service.regenerate()
    r = ran.post(f"/api/recommendations/{rec_id}/reopen", headers=AUTH)
    assert r.status_code == 409 and web2.id in r.json()["detail"]
    assert ran.post("/api/recommendations/rec-nope/reopen", headers=AUTH).status_code == 404


# --- summary and runs --------------------------------------------------------------------

def test_summary(ran: TestClient) -> None:
    ran.post(f"/api/recommendations/{fx.rightsize().id}/accept", headers=AUTH)
    s = ran.get("/api/summary").json()
    assert s["currency"] == "EUR"
    assert s["pending_monthly_savings"] == "39.78"  # 52.39 - 12.61
    assert s["pending_yearly_savings"] == "477.36"
    assert s["by_status"]["accepted"] == {"count": 1, "monthly_savings": "12.61"}
    assert s["by_status"]["pending"]["count"] == 4
    assert s["by_kind"]["rightsize"]["accepted"]["count"] == 1
    assert s["fleet_monthly_cost"] == "96.27" and s["servers"] == 7
    assert s["ready"] is True
    assert s["last_run"]["pending"] == 5 and s["last_run"]["queries"] == 14
    assert s["last_run"]["pending_monthly_savings"] == "52.39"
    assert s["last_run"]["excluded_servers"] == 1


def test_summary_before_any_run(client: TestClient) -> None:
    s = client.get("/api/summary").json()
    assert s["pending_monthly_savings"] == "0.00" and s["last_run"] is None
    assert s["ready"] is False and s["fleet_monthly_cost"] is None


def test_run_and_history(ran: TestClient) -> None:
    r = ran.post("/api/run", headers=AUTH)
    assert r.status_code == 200
    run = r.json()
    assert run["id"] == 2 and run["new"] == 0 and run["pending"] == 5 and run["success"]
    assert run["fleet_monthly_cost"] == "96.27"
    history = ran.get("/api/runs").json()
    assert [h["id"] for h in history] == [2, 1]
    assert ran.get("/api/runs?limit=1").json()[0]["id"] == 2
    assert ran.get("/api/runs?limit=0").status_code == 422


# --- fleet views -------------------------------------------------------------------------

def test_fleet_views_wait_for_the_first_run(client: TestClient) -> None:
    for path in ("/api/servers", "/api/servers/cloud/101", "/api/costs"):
        r = client.get(path)
        assert r.status_code == 503
        assert r.json()["detail"].startswith("no fleet loaded yet: no run yet")


def test_servers(ran: TestClient) -> None:
    r = ran.get("/api/servers")
    body = r.json()
    assert body["total"] == 7 and body["limit"] == 100 and body["offset"] == 0
    names = [s["name"] for s in body["items"]]
    assert names == sorted(names)
    web1 = next(s for s in body["items"] if s["name"] == "web-1")
    assert web1["source"] == "cloud" and web1["server_id"] == "101"
    assert web1["total_monthly_cost"] == "16.40" and web1["cost_breakdown"] == {
        "server": "16.40"}
    assert web1["utilisation"]["cpu_p95"] == 0.10 and web1["utilisation"]["tier"] == "low"
    assert web1["pending_recommendation"] == fx.rightsize().id
    assert web1["services"][0]["name"] == "nginx"
    assert web1["memory_bytes"] == 16 * 2**30
    ci = next(s for s in body["items"] if s["name"] == "ci-1")
    assert ci["pending_recommendation"] is None

    def names_for(query: str) -> list[str]:
        r = ran.get(f"/api/servers?{query}")
        assert r.status_code == 200, r.text
        return [s["name"] for s in r.json()["items"]]

    assert names_for("source=dedicated") == ["ax41-1"]
    assert names_for("location=nbg1") == ["ci-1"]
    assert names_for("project=staging") == ["stg-1", "stg-2"]
    assert names_for("tier=critical") == ["db-1"]
    assert names_for("sort=-cost")[:3] == ["ax41-1", "web-1", "web-2"]
    assert names_for("sort=cost")[0] in ("db-1", "stg-1", "stg-2")
    assert names_for("sort=-cpu")[0] == "db-1"
    assert names_for("sort=cpu")[0] == "web-2"
    assert names_for("sort=memory")[-1] == "ci-1"  # no memory data: last either way
    assert names_for("sort=-memory")[-1] == "ci-1"
    assert names_for("sort=name&limit=2&offset=2") == ["db-1", "stg-1"]
    assert ran.get("/api/servers?limit=2").json()["total"] == 7


@pytest.mark.parametrize("query", ["sort=price", "tier=hot", "source=aws", "limit=0",
                                   "limit=10001", "offset=-3"])
def test_servers_reject_bad_queries(ran: TestClient, query: str) -> None:
    assert ran.get(f"/api/servers?{query}").status_code == 422


def test_one_server(ran: TestClient) -> None:
    r = ran.get("/api/servers/dedicated/2001")
    assert r.status_code == 200 and r.json()["name"] == "ax41-1"
    assert r.json()["pending_recommendation"] == fx.dedicated_to_cloud().id
    r = ran.get("/api/servers/cloud/999")
    assert r.status_code == 404 and r.json() == {"detail": "no server cloud/999 in the last run"}
    assert ran.get("/api/servers/aws/1").status_code == 422


def test_costs(ran: TestClient) -> None:
    c = ran.get("/api/costs").json()
    assert c["total"] == "96.27" and c["currency"] == "EUR" and c["price_mode"] == "net"
    assert c["by_source"] == {"cloud": "57.27", "dedicated": "39.00"}
    assert c["by_project"] == {"ci": "13.10", "shop": "36.59", "staging": "7.58"}
    assert sum(Decimal(v) for v in c["by_source"].values()) == Decimal(c["total"])
    assert sum(Decimal(v) for v in c["by_location"].values()) == Decimal(c["total"])


def test_cost_history(client: TestClient, store: Store) -> None:
    h = client.get("/api/costs/history").json()
    assert h == {"currency": "EUR", "months": [{"month": "2025-05", "total": "90.10"},
                                               {"month": "2025-06", "total": "96.27"}]}

    def failing() -> list:
        raise PrometheusError(f"Prometheus at {PROM}: connection refused", url=PROM)

    broken = make_client(RecommenderService(store, fx.Runner(fx.run_result()), failing))
    r = broken.get("/api/costs/history")
    assert r.status_code == 503 and PROM in r.json()["detail"]
    none = make_client(RecommenderService(store, fx.Runner(fx.run_result())))
    assert none.get("/api/costs/history").status_code == 503


# --- annotations, metrics, report --------------------------------------------------------

def test_annotations(ran: TestClient) -> None:
    rows = ran.get("/api/annotations").json()
    assert len(rows) == 5
    row = next(r for r in rows if r["id"] == fx.rightsize().id)
    assert set(row) >= {"time", "timeEnd", "title", "text", "tags"}
    assert row["title"] == "Right-size web-1: cx42 → cx22, saves 12.61 EUR/month"
    assert row["timeEnd"] >= row["time"] > 1e12  # epoch milliseconds
    assert [r["id"] for r in ran.get("/api/annotations?server=web-1").json()] == [
        fx.rightsize().id]
    assert [r["id"] for r in ran.get("/api/annotations?server=cloud/104").json()] == [
        fx.consolidation().id]
    assert [r["id"] for r in ran.get("/api/annotations?kind=idle").json()] == [fx.idle().id]
    ran.post(f"/api/recommendations/{fx.idle().id}/dismiss", headers=AUTH,
             json={"reason": "x"})
    assert len(ran.get("/api/annotations").json()) == 5  # recently decided still shown
    assert [r["id"] for r in ran.get("/api/annotations?status=dismissed").json()] == [
        fx.idle().id]
    assert len(ran.get("/api/annotations?status=pending&status=dismissed").json()) == 5
    assert len(ran.get("/api/annotations?status=pending").json()) == 4
    assert ran.get("/api/annotations?from=0&to=1000").json() == []  # 1970: nothing
    assert ran.get("/api/annotations?kind=nope").status_code == 422
    assert ran.get("/api/annotations?status=open").status_code == 422
    assert ran.get("/api/annotations?from=-1").status_code == 422


def test_metrics_endpoint(ran: TestClient) -> None:
    r = ran.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'infrascope_recommendations_monthly_savings_euros{status="pending"} 52.39' in r.text
    assert "infrascope_recommender_ready 1.0" in r.text
    assert TOKEN not in r.text


def test_report_pages(client: TestClient, store: Store) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "No recommendations yet: no run yet" in r.text
    assert client.get("/report").status_code == 503
    client.post("/api/run", headers=AUTH)
    for path in ("/", "/report"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "52.39 EUR/month" in r.text and 'href="/metrics"' in r.text
        assert "hcloud server change-type web-1 cx22 --keep-disk" in r.text


def test_report_page_escapes(store: Store) -> None:
    rec = fx.rightsize()
    rec.servers[0].name = "<script>alert('x')</script>"
    service = RecommenderService(store, fx.Runner(fx.run_result([rec])))
    client = make_client(service)
    service.regenerate()
    html = client.get("/report").text
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_openapi_schema(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    for path in ("/api/recommendations", "/api/recommendations/{rec_id}",
                 "/api/recommendations/{rec_id}/accept", "/api/recommendations/{rec_id}/dismiss",
                 "/api/summary", "/api/run", "/api/servers", "/api/servers/{source}/{server_id}",
                 "/api/costs", "/api/costs/history", "/api/annotations", "/metrics", "/healthz",
                 "/readyz", "/", "/report"):
        assert path in paths, path
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert paths["/api/run"]["post"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in paths["/api/summary"]["get"]
    rec = schema["components"]["schemas"]["RecommendationModel"]["properties"]
    assert rec["monthly_savings"]["type"] == "string"
    assert rec["monthly_savings"]["pattern"] == r"^-?\d+\.\d{2}$"
    status = paths["/api/recommendations"]["get"]["parameters"][0]
    assert status["name"] == "status"
    assert "dismiss" in str(schema["components"]["schemas"]["DismissRequest"])


def test_unknown_route_is_json_404(client: TestClient) -> None:
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.json() == {"detail": "Not Found"}
