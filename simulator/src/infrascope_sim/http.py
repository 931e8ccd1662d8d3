"""Request plumbing shared by the simulated APIs: counting and fault injection."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .faults import Fault
from .state import Simulator

Handler = Callable[[Request], Awaitable[Response]]


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status_code=status,
                    headers=headers, media_type="application/json")


def malformed(response: Response) -> Response:
    """The same response with its JSON body cut in half (a dropped connection)."""
    body = bytes(response.body)
    cut = body[: max(1, len(body) // 2)]
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(cut, status_code=200, headers=headers, media_type="application/json")


WRONG_CONTENT_TYPE_BODY = (
    "<html><head><title>Gateway</title></head><body><h1>Please log in to continue"
    "</h1></body></html>"
)


async def apply_pre_faults(
    faults: list[Fault],
    error_response: Callable[[Fault], Response],
    rate_limit_response: Callable[[Fault], Response],
    still_active: Callable[[Fault], bool] = lambda f: True,
) -> Response | None:
    """Run the faults that act before the handler; return a response to short-circuit.

    A hang lasts ``seconds`` or until the fault is removed, whichever is first,
    so clearing a hang fault also releases requests already caught in it.
    """
    for fault in faults:
        if fault.kind == "latency" and fault.ms > 0:
            await asyncio.sleep(fault.ms / 1000.0)
    for fault in faults:
        if fault.kind == "hang":
            loop = asyncio.get_running_loop()
            until = loop.time() + fault.seconds
            while loop.time() < until and still_active(fault):
                await asyncio.sleep(min(0.05, max(0.0, until - loop.time())))
            return error_response(Fault(kind="error", status=504))
        if fault.kind == "error":
            return error_response(fault)
        if fault.kind == "revoked_token":
            return error_response(Fault(kind="error", status=401))
        if fault.kind == "forbidden":
            return error_response(Fault(kind="error", status=403))
        if fault.kind == "rate_limit":
            return rate_limit_response(fault)
        if fault.kind == "wrong_content_type":
            return Response(WRONG_CONTENT_TYPE_BODY, status_code=200, media_type="text/html")
    return None


def post_faults(faults: list[Fault], response: Response) -> Response:
    if response.status_code == 200 and any(f.kind == "malformed_json" for f in faults):
        return malformed(response)
    return response


def pagination_fault(request: Request) -> Fault | None:
    faults: list[Fault] = getattr(request.state, "faults", [])
    for fault in faults:
        if fault.kind == "broken_pagination":
            return fault
    return None


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


__all__ = [
    "Handler", "Simulator", "apply_pre_faults", "client_ip", "json_response", "malformed",
    "pagination_fault", "post_faults",
]
