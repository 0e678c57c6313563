"""A request body limit that answers JSON, for chunked uploads too.

FastAPI's own ``max_body_size`` answers plain text "Content Too Large" when the
Content-Length is over the limit, which breaks the API's ``{"detail": ...}`` contract.
"""
from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Answer 413 to bodies over ``max_bytes``: at once from Content-Length, else once that much streamed in.

    A streamed body that grows too large makes the app fail while reading it; whatever the
    app then answers is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if length.isdigit() and int(length) > self.max_bytes:
            return await self.too_large(scope, receive, send)
        received = 0
        exceeded = answered = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                exceeded = True
                raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal answered
            if exceeded:
                if not answered:
                    answered = True
                    await self.too_large(scope, receive, send)
                return
            answered = answered or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not answered:
                await self.too_large(scope, receive, send)

    def too_large(self, scope: Scope, receive: Receive, send: Send):
        """The 413 answer, made only for the requests that get it."""
        detail = f"request body is larger than this server's limit of {self.max_bytes} bytes"
        return JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
