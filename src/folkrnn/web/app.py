"""The studio's HTTP server: a FastAPI app made of one router per room.

Routes (JSON unless said):
  GET  /                          the page (static/index.html)
  GET  /static/NAME               the page's own files; /vendor/abcjs.js (npm's abcjs)
  GET  /api/info                  models, meters, modes, limits, what is missing (abcjs, audio)
  POST /api/prime                 check a prime as typed -> its tokens, or the unknown ones named
  POST /api/generate              Compose -> server-sent events: `start`, `token`, `tune`, `error`, `done`
  GET  /api/tunes                 archive search (meter, mode, model, starred, q, limit, offset)
  GET|PATCH|DELETE /api/tunes/ID  one tune; PATCH title / starred / note
  GET  /api/tunes/ID/abc|midi|wav the tune as a file (?key= ?tempo=), `settings` in the ABC
  POST /api/export                {ids} -> one ABC file
  POST /api/delete                {ids} -> how many were deleted
  POST /api/inspect               {tokens | abc | id} -> p(token) and alternatives at every step
  POST /api/inspect/units         {tune, layer, quantity, units | top + label} -> a heatmap and a ranking by the label
  POST /api/intervene             {id | settings, units, quantity, ablation} -> the tune made again without and with it

Rooms: `page` (the page, its files, /api/info), `compose_room` (prime, generate),
`archive_room` (tunes, their files, export, delete), `inspect_room` (inspect, units,
intervene). Every route gets the shared `studio.Studio` through the `studio.StudioDep`
dependency (`app.state.studio`); bodies are `schemas`, limits `limits`.

Limits (`limits.Limits`): tunes per request, tokens per tune, generations at once (a request
waits up to `queue_timeout_s` for a slot, then 503; more than `max_waiting` waiting
-> 429), time per request, body size (413), concurrent audio renders (503). Generation
runs in a thread pool, never on the event loop; when the client goes away the stream's
generator is closed and its worker stops at the next token. The server reads only its
static folder, abcjs's file and the archive.

Who may use it (`guard.Guard`): on loopback, loopback Host names only; opened to the
network, its allowed hosts only and a token for every state-changing request; on both,
no state-changing request from a page of another origin. Every error is `{"error": ...}`.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from folkrnn.errors import FolkRNNError
from folkrnn.web import archive_room, compose_room, inspect_room, page
from folkrnn.web.guard import Guard
from folkrnn.web.limits import BodyLimit, Busy, Slots, brief
from folkrnn.web.studio import Studio


def create_app(studio: Studio, allowed_hosts: list[str] | None = None, token: str | None = None) -> FastAPI:
    """The FastAPI application serving `studio`. `allowed_hosts`: the Host header
    values accepted (None: any); a studio on loopback accepts only loopback names
    (`guard.LOOPBACK_NAMES`), so a web page elsewhere cannot reach it through DNS rebinding.
    `token`: the value every state-changing request must carry in `X-Folkrnn-Token`
    (None: none needed; `folkrnn serve` sets one off loopback). A state-changing
    request from a page of another origin is always refused (`guard.Guard`)."""

    @asynccontextmanager
    async def lifespan(app):
        studio.slots = Slots(studio.limits)
        yield
        for b in studio.batchers.values():
            b.close()
        studio.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="folkrnn studio", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.studio = studio
    app.state.token = token
    _error_handlers(app)
    app.add_middleware(BodyLimit, limit=studio.limits.max_body_bytes)
    app.add_middleware(Guard, allowed_hosts=allowed_hosts, token=token)  # outermost: before the body is read
    for room in (page, compose_room, archive_room, inspect_room):
        _add_routes(app, room.router)
    return app


def _add_routes(app: FastAPI, router: APIRouter) -> None:
    """A room's routes, added to the app itself rather than by `include_router` (which,
    in FastAPI 0.16x, keeps the router as one lazy entry): the app's routes stay a flat list
    of `APIRoute`s that the hostile-input tests walk, each answering 404/405 as before."""
    for r in router.routes:
        assert isinstance(r, APIRoute), r  # a room holds plain API routes only
        app.add_api_route(r.path, r.endpoint, methods=sorted(r.methods), name=r.name,
                          include_in_schema=r.include_in_schema, response_class=r.response_class,
                          status_code=r.status_code, dependencies=r.dependencies)


def _error_handlers(app: FastAPI) -> None:
    """Every error as `{"error": "one line"}`: a user's mistake 400, busy 429/503, a body
    of the wrong shape 422, the router's own 404/405 naming the route, a bug 500."""

    @app.exception_handler(FolkRNNError)
    async def _user_error(request, exc):
        return JSONResponse({"error": brief(str(exc))}, status_code=400)

    @app.exception_handler(Busy)
    async def _busy(request, exc):
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers={"Retry-After": "2"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request, exc):
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path"))
            msg = err.get("msg", "invalid")
            if err.get("type") == "finite_number":
                msg = "must be a finite number (not NaN or infinity)"
            elif err.get("type", "").endswith("_type") and isinstance(err.get("input"), (bool, int, float, str)):
                msg += f", got {json.dumps(err['input'])[:40]}"  # `true` for a number: say so
            parts.append(f"{loc}: {msg}" if loc else msg)
        return JSONResponse({"error": brief("; ".join(parts) or "invalid request")}, status_code=422)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's and the router's (404, 405)
    async def _http(request, exc):
        detail = exc.detail
        where = f"{request.method} {request.url.path[:200]}"
        if exc.status_code in (404, 405) and detail == HTTPStatus(exc.status_code).phrase:  # the router's
            if exc.status_code == 404:
                detail = f"no such page or API route: {where}"
            elif exc.status_code == 405:
                allow = (exc.headers or {}).get("Allow", "")
                detail = f"method not allowed: {where}" + (f" (it answers {allow})" if allow else "")
        return JSONResponse({"error": brief(str(detail))}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request, exc):  # logged by the server; the client gets the app's shape
        return JSONResponse({"error": "internal error (see the server's log)"}, status_code=500)
