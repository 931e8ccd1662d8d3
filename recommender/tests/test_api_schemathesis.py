"""Property-based fuzz of the OpenAPI schema (schemathesis): no request may cause a 5xx.

Every operation of ``/openapi.json`` is exercised with schema-conforming (positive) and
schema-violating (negative) requests, the bearer token supplied, against an app whose
state already holds a run (so ids, servers and costs exist). Bounded for speed:
``MAX_EXAMPLES`` per operation and phase, derandomised so a failure reproduces.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import service_fixtures as fx
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode

from infrascope_recommender.api import create_app
from infrascope_recommender.config import Secret
from infrascope_recommender.service import RecommenderService
from infrascope_recommender.state import Store

warnings.filterwarnings("ignore", message=".*httpx2.*")

TOKEN = "fuzz-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_EXAMPLES = 15

_TMP = tempfile.TemporaryDirectory(prefix="recommender-fuzz-")
STORE = Store(Path(_TMP.name) / "state.db")
SERVICE = RecommenderService(
    STORE, fx.Runner(fx.run_result()), lambda: [("2025-06", Decimal("96.27"))],
    api_token=Secret(TOKEN), push_in_background=False)
SERVICE.regenerate()
APP = create_app(SERVICE)

schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                                max_examples=MAX_EXAMPLES, deterministic=True)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    STORE.close()
    _TMP.cleanup()


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: Any) -> None:
    case.call_and_validate(headers=AUTH, checks=[not_a_server_error])


def test_the_fuzzed_schema_covers_every_endpoint() -> None:
    operations = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    for expected in [("GET", "/api/recommendations"), ("POST", "/api/run"),
                     ("POST", "/api/recommendations/{rec_id}/dismiss"),
                     ("GET", "/api/servers"), ("GET", "/api/annotations"),
                     ("GET", "/api/costs/history"), ("GET", "/readyz"), ("GET", "/metrics")]:
        assert expected in operations
    assert len(operations) == 18


def test_the_fuzz_sent_authenticated_writes() -> None:
    # runs after the fuzz (file order): POST /api/run went through the token check
    assert SERVICE.runs_total["success"] > 1
