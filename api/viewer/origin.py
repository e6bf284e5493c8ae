"""The viewer's own origin: OHIF's build at its root, and same-origin paths that forward its DICOMweb
requests with the caller's API key, so the browser never needs CORS.

- `/app-config.js`: generated (`api/viewer/config.py`), never OHIF's shipped file.
- `/s2m/results/{query_id}/...` -> the service's `/dicomweb/results/{query_id}/...` (the per-query
  QIDO facade), with `Authorization: Bearer <key>`: the service checks the key and owns the answer.
- `/s2m/pacs/...` -> the PACS's DICOMweb root, once the key is checked here (`store.verify_api_key`,
  the service's own check; a checked key is trusted for `key_check_seconds`).
- `/s2m/key`: a one-field page that keeps the key in an HttpOnly, SameSite=Strict cookie of this
  origin (the browser then sends it with every request OHIF makes); a client may send the
  `Authorization` header instead.
Without a valid key the data paths answer 401 and no data, and a page of the viewer leads to the
key page first. Every error is the service's JSON sentence (`api.errors.error_response`).
"""

from __future__ import annotations

import hashlib
import html
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi import FastAPI, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, StreamingResponse
from starlette.background import BackgroundTask

from api.errors import error_response
from api.viewer.config import KEY_PAGE, PACS_PATH, RESULTS_PATH, ViewerSettings, app_config_script

COOKIE = "s2m_viewer_key"
FORWARDED_REQUEST_HEADERS = ("accept", "accept-encoding", "range")
FORWARDED_RESPONSE_HEADERS = ("content-type", "content-encoding", "content-range", "accept-ranges", "etag", "last-modified")
NO_KEY = "an API key is required: enter it on /s2m/key or send it as `Authorization: Bearer <key>`"
BAD_KEY = "the API key is not valid (unknown, revoked or malformed)"


class KeyCheck:
    """Is a token a valid search key of the archive? Answers are kept `ttl` seconds (by the token's hash)."""

    def __init__(self, settings: ViewerSettings) -> None:
        self.settings = settings
        self.valid_until: dict[str, float] = {}
        self.archive = None

    def _verify(self, token: str) -> bool:
        from indexing import store
        from indexing.archive import Archive

        if self.archive is None:
            self.archive = Archive.open(self.settings.archive)
        with self.archive.sessions() as session:
            return store.verify_api_key(session, token, "search") is not None

    async def __call__(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).hexdigest()
        if self.valid_until.get(digest, 0.0) > time.monotonic():
            return True
        if not await run_in_threadpool(self._verify, token):
            self.valid_until.pop(digest, None)
            return False
        self.valid_until[digest] = time.monotonic() + self.settings.key_check_seconds
        return True

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


def request_token(request: Request) -> str | None:
    """The caller's key: the Authorization header's bearer token, else this origin's cookie."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(COOKIE) or None


def _key_page(next_path: str, message: str = "") -> str:
    note = f'<p role="alert" style="color:#f88">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<link rel="icon" href="/assets/favicon.ico"><title>Sketch2MedI viewer: API key</title>
<style>body{{font-family:sans-serif;background:#000;color:#ddd;max-width:32rem;margin:4rem auto}}
input{{width:100%;padding:.4rem;margin:.5rem 0}}</style></head><body>
<h1>Sketch2MedI viewer</h1><p>Enter the API key you search with (kept for this browser session only).</p>{note}
<form method="post" action="{KEY_PAGE}"><input type="hidden" name="next" value="{html.escape(next_path)}">
<label>API key <input id="key" name="key" type="password" autocomplete="off" required autofocus></label>
<button id="key-save" type="submit">Open the viewer</button></form></body></html>"""


def _local(next_path: str) -> str:
    """Only a path of this origin may be the page the key form returns to."""
    return next_path if next_path.startswith("/") and not next_path.startswith("//") else "/"


def create_viewer_app(settings: ViewerSettings) -> FastAPI:
    """The viewer origin's app (docs/viewer.md)."""
    check = KeyCheck(settings)
    state: dict[str, httpx.AsyncClient] = {}
    build = settings.build.resolve()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state["client"] = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0))
        try:
            yield
        finally:
            await state["client"].aclose()
            check.close()

    app = FastAPI(title="Sketch2MedI viewer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def forward(request: Request, url: str, token: str | None) -> Response:
        """GET `url` with the request's query string; `token` goes to the service only, never to the PACS."""
        headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
        headers.setdefault("accept-encoding", "identity")  # the body passes through as it comes: only what the caller takes
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        outgoing = state["client"].build_request("GET", url, params=request.query_params, headers=headers)
        try:
            answer = await state["client"].send(outgoing, stream=True)
        except httpx.HTTPError:
            return error_response(502, "the viewer could not reach the service or the PACS behind it; try again shortly")
        kept = {name: answer.headers[name] for name in FORWARDED_RESPONSE_HEADERS if name in answer.headers}
        return StreamingResponse(answer.aiter_raw(), status_code=answer.status_code, headers=kept,
                                 background=BackgroundTask(answer.aclose))

    @app.get("/app-config.js")
    async def app_config() -> Response:
        return Response(app_config_script(), media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get(KEY_PAGE)
    async def key_page(next: str = "/") -> HTMLResponse:
        return HTMLResponse(_key_page(_local(next)))

    @app.post(KEY_PAGE)
    async def keep_key(request: Request, key: str = Form(""), next: str = Form("/")) -> Response:
        if not key.strip() or not await check(key.strip()):
            return HTMLResponse(_key_page(_local(next), BAD_KEY), status_code=401)
        done = RedirectResponse(_local(next), status_code=303)
        done.set_cookie(COOKIE, key.strip(), httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return done

    @app.get(RESULTS_PATH + "/{query_id}/{rest:path}")
    async def results(query_id: str, rest: str, request: Request) -> Response:
        token = request_token(request)
        if token is None:
            return error_response(401, NO_KEY, {"WWW-Authenticate": "Bearer"})
        return await forward(request, f"{settings.service_url}/dicomweb/results/{quote(query_id)}/{rest}", token)

    @app.get(PACS_PATH + "/{rest:path}")
    async def pacs(rest: str, request: Request) -> Response:
        token = request_token(request)
        if token is None:
            return error_response(401, NO_KEY, {"WWW-Authenticate": "Bearer"})
        if not await check(token):
            return error_response(401, BAD_KEY, {"WWW-Authenticate": "Bearer"})
        if settings.pacs_url is None:
            return error_response(404, "this viewer has no PACS to read images from: set S2M_PACS_URL to its DICOMweb root")
        return await forward(request, f"{settings.pacs_url}/{rest}", None)

    @app.get("/s2m/{rest:path}")
    async def unknown(rest: str) -> Response:
        return error_response(404, "no such route of the viewer")

    @app.get("/{rest:path}")
    async def build_file(rest: str, request: Request) -> Response:
        """A file of the build, or index.html for OHIF's own routes (/, /viewer, ...), after the key page."""
        path = (build / rest).resolve()
        if rest and path.is_relative_to(build) and path.is_file():
            return FileResponse(path)
        if "." in Path(rest).name:
            return error_response(404, "no such file in the viewer")
        token = request_token(request)
        if token is None or not await check(token):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"{KEY_PAGE}?next={quote(target, safe='')}", status_code=303)
        return FileResponse(build / "index.html", headers={"Cache-Control": "no-store"})

    return app
