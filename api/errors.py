"""The API's one error policy: every error is JSON `{"error": "<one sentence>"}` with its status.

415 unsupported type, 413 too large, 422 a blank, unreadable or all-ink sketch (any bad input),
404 unknown id or route, 405 a method the route does not take, 401 missing or bad key, 403 wrong
scope, 409 an index refresh while one (or an `s2m index build`) runs, 429 rate limited (with
Retry-After), 503 database, index or models unavailable, 500 anything unforeseen (its traceback
goes to the server's log only), 400 a browser's preflight the CORS settings refuse. A client that
goes away mid-request (the pad drops a preview a newer one replaces) gets nothing and logs nothing:
the metrics count it as 499, nginx's "client closed request". Never a
traceback, never a row value. Errors pass through the CORS middleware like any answer, so a
browser on an allowed origin reads the 401, 403 or 404 itself rather than a CORS failure.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from api.service import RefreshRunningError, ServiceUnavailableError
from formats.errors import InputError, ProjectError
from indexing.db import DatabaseUnavailableError
from indexing.fused_index import IndexBuildError
from indexing.locks import IndexBuildRunningError
from retrieval.engine import EngineError, ExampleNotFoundError

UNAVAILABLE = (ServiceUnavailableError, DatabaseUnavailableError, EngineError, IndexBuildError)
UNFORESEEN = "the service failed on this request; the error is in its log"


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


def _validation_message(error: RequestValidationError) -> str:
    first = error.errors()[0] if error.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "form"))
    message = str(first.get("msg", "invalid request"))
    return f"{where}: {message}" if where else message


def install(app: FastAPI) -> None:
    """Register the handlers that turn every foreseen error into the policy above."""

    @app.exception_handler(HTTPException)  # starlette's: the routes' own and the router's 404 and 405 alike
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = "no such route: see /docs for the service's routes"
        elif error.status_code == 405:
            message = "this route does not take that method: see /docs for the service's routes"
        return error_response(error.status_code, message, getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(error))

    @app.exception_handler(ProjectError)
    async def project_error(request: Request, error: ProjectError) -> JSONResponse:
        if isinstance(error, UNAVAILABLE):
            return error_response(503, str(error), {"Retry-After": "5"})
        if isinstance(error, (RefreshRunningError, IndexBuildRunningError)):
            return error_response(409, str(error))
        if isinstance(error, ExampleNotFoundError):
            return error_response(404, str(error))
        if isinstance(error, InputError):
            return error_response(422, str(error))
        return error_response(500, str(error))

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, error: SQLAlchemyError) -> JSONResponse:
        # the driver's text can carry SQL and values: say only what happened
        return error_response(503, "the archive database is unavailable; try again shortly", {"Retry-After": "5"})


class UnforeseenErrorMiddleware:
    """Pure ASGI, inside the CORS middleware: an exception no handler foresaw answers the JSON 500
    (with CORS headers, which Starlette's outermost error middleware cannot add), then propagates
    so that the server logs its traceback."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except ClientDisconnect:
            return  # no one is left to answer, and nothing failed on the service's side
        except Exception:
            if not started:  # the server closes the connection after a fault: say so, so no client reuses it
                await error_response(500, UNFORESEEN, {"Connection": "close"})(scope, receive, send)
            raise


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS middleware, whose refused preflight answers the service's JSON error, not plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        kept = {name: value for name, value in response.headers.items() if name not in ("content-length", "content-type")}
        return error_response(response.status_code, f"the CORS settings do not allow this request's {refused}", kept)
