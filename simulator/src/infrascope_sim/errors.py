"""The Cloud API's documented error body, ``{"error": {"code", "message", "details"}}``,
as an exception the handlers raise and the wrapper turns into the response."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from .http import json_response


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or {}

    def response(self, headers: dict[str, str] | None = None) -> Response:
        return error_response(self.status, self.code, self.message, self.details, headers)


def error_response(status: int, code: str, message: str, details: dict[str, Any] | None = None,
                   headers: dict[str, str] | None = None) -> Response:
    return json_response({"error": {"code": code, "message": message, "details": details or {}}},
                         status, headers)


def invalid_field(name: str, message: str) -> ApiError:
    return ApiError(400, "invalid_input", f"invalid input in field '{name}'",
                    {"fields": [{"name": name, "messages": [message]}]})


__all__ = ["ApiError", "error_response", "invalid_field"]
