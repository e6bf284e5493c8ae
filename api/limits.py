"""Request bodies are limited while they stream in: a declared length over the limit is refused at
once, and an undeclared (chunked) body is cut off the moment it passes the limit, never read whole."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

Scope = dict[str, Any]


class BodyTooLargeError(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Pure ASGI middleware; the 413 is raised inside the route's body reading, where FastAPI answers it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            from api.errors import error_response

            await error_response(413, str(BodyTooLargeError(self.limit).detail), {"Connection": "close"})(scope, receive, send)
            return
        seen = 0

        async def counted() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLargeError(self.limit)
            return message

        await self.app(scope, counted, send)
