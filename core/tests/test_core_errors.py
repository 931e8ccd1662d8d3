"""Errors are types: an API failure's class says how it failed; ``kind`` names it."""

from __future__ import annotations

import pytest

from infrascope_core.errors import (
    API_ERRORS,
    TRANSIENT,
    ApiError,
    ClientError,
    ConfigError,
    RateLimited,
)


def test_every_api_error_has_its_own_kind() -> None:
    kinds = [cls.kind for cls in API_ERRORS]
    assert len(set(kinds)) == len(kinds) and ApiError.kind not in kinds
    assert {"timeout", "unavailable", "server_error"} == {cls.kind for cls in TRANSIENT}


def test_an_api_error_carries_status_code_and_retry_time() -> None:
    with pytest.raises(ApiError) as err:
        raise ClientError("Robot: GET /server: HTTP 404 SERVER_NOT_FOUND", status=404,
                          code="SERVER_NOT_FOUND")
    assert isinstance(err.value, ClientError) and err.value.kind == "client_error"
    assert (err.value.status, err.value.code, err.value.retry_at) == (404, "SERVER_NOT_FOUND",
                                                                      None)
    assert str(err.value) == "Robot: GET /server: HTTP 404 SERVER_NOT_FOUND"
    assert RateLimited("paused", 1700000000.0).retry_at == 1700000000.0


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
