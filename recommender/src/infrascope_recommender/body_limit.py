"""ASGI middleware: a request body over the limit is answered 413 before anything reads it.

FastAPI parses a request body before it runs the dependencies (the bearer token check
among them), and reads all of it first: without a limit, a 100 MB body sent without a
token grew the process by 350 MB before it was told 401. This middleware sits in front of
the routing, authentication and parsing:

* a ``Content-Length`` over the limit is answered at once; the body is never read;
* any other body (``Transfer-Encoding: chunked``, or a server that gives no length) is
  counted as it arrives and answered as soon as it passes the limit;
* a body within the limit is read here, whole, and handed on: so no endpoint (and no
  dependency of one) ever starts on a body that might still turn out too large, and the
  memory a request can take is bounded by the limit whatever the endpoint does. (A
  request without a body costs one ``receive`` that returns at once.)

The 413 is JSON like every other error and says ``Connection: close``: the rest of the
body stays unread, so the connection cannot carry another request.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimit:
    """Answer 413 to any HTTP request whose body is over ``limit`` bytes."""

    def __init__(self, app: ASGIApp, limit: int, setting: str = "api.max_request_bytes") -> None:
        self.app = app
        self.limit = limit
        self.setting = setting

    def too_large(self) -> JSONResponse:
        return JSONResponse(
            {"detail": f"request body too large: at most {self.limit} bytes "
                       f"({self.setting})"},
            413, headers={"Connection": "close"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            # (the server has already refused a malformed or repeated Content-Length; the
            # length test first: int() refuses more than 4300 digits)
            if name == b"content-length" and value.isdigit() \
                    and (len(value) > 18 or int(value) > self.limit):
                await self.too_large()(scope, receive, send)
                return

        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":  # http.disconnect: nobody to answer
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await self.too_large()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        whole: Message | None = {"type": "http.request", "body": bytes(body),
                                 "more_body": False}
        del body

        async def replay() -> Message:
            nonlocal whole
            if whole is not None:
                message, whole = whole, None
                return message
            return await receive()  # after the body: wait for http.disconnect as usual

        await self.app(scope, replay, send)
