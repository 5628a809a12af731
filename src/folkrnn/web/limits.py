"""The studio's limits: what one request may ask for, and the checks that hold it there.

`Limits` are the server's settings (`folkrnn serve --max-tunes ...`); `check_*` refuse a
value a request gave with a one-line FolkRNNError (400); `Slots` holds generation
requests to `max_concurrent` at once (429 when too many wait, 503 when none comes free);
`BodyLimit` refuses a body over `max_body_bytes` (413) before it is read.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

from folkrnn.errors import FolkRNNError


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how much the server does at once."""

    max_tunes: int = 10  # per request
    max_tokens: int = 1000  # per tune (the original sampler's cap)
    max_prime_chars: int = 4000
    max_concurrent: int = 16  # generation requests running at once (their tunes are stepped as one batch)
    max_waiting: int = 64  # requests waiting for a slot; one more -> 429
    queue_timeout_s: float = 15.0  # waited longer for a slot -> 503
    request_timeout_s: float = 120.0  # a generation request runs at most this long
    max_body_bytes: int = 64 * 1024
    max_renders: int = 2  # fluidsynth renders at once; one more -> 503
    max_export: int = 1000
    max_units: int = 64  # units in a heatmap or an intervention
    max_rank_tunes: int = 20  # archive tunes a ranking may read besides the one shown
    max_offset: int = 10**9  # archive search: rows skipped
    max_search_chars: int = 500  # archive search: the text looked for


MAX_ID = 2**63 - 1  # SQLite's largest integer: tune ids are 1..MAX_ID
MAX_NAME_CHARS = 100  # a model, meter, mode or key named in a request


def check_id(value: int, where: str = "tune id") -> int:
    """A tune id from a request: an integer in 1..MAX_ID (FolkRNNError, 400, otherwise)."""
    if not 1 <= value <= MAX_ID:
        raise FolkRNNError(f"{where} must be a whole number from 1 to {MAX_ID}, got {value}")
    return value


def brief(message: str, limit: int = 500) -> str:
    """An error message for a client: whole, or cut short when it quotes a long input."""
    return message if len(message) <= limit else f"{message[:limit - 40]}... ({len(message)} characters in all)"


def check_finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise FolkRNNError(f"{where} must be a finite number, got {value}")
    return value


def check_short(name: str, value: str | None) -> str | None:
    """A model, meter, mode or key named in a query: at most MAX_NAME_CHARS characters."""
    if value is not None and len(value) > MAX_NAME_CHARS:
        raise FolkRNNError(f"{name}: at most {MAX_NAME_CHARS} characters, got {len(value)}")
    return value


class Busy(Exception):
    """A request the studio cannot take now (429: too many waiting, 503: no slot in time);
    answered with Retry-After."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Slots:
    """Generation slots (asyncio; used on the event loop only)."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.sem = asyncio.Semaphore(limits.max_concurrent)
        self.waiting = 0

    async def acquire(self) -> None:
        if self.sem.locked() and self.waiting >= self.limits.max_waiting:
            raise Busy(429, f"too many requests: {self.waiting} are already waiting for a generation slot; try again shortly")
        self.waiting += 1
        try:
            await asyncio.wait_for(self.sem.acquire(), self.limits.queue_timeout_s)
        except asyncio.TimeoutError:
            raise Busy(503, f"the studio is busy: no generation slot came free in {self.limits.queue_timeout_s:g} s") from None
        finally:
            self.waiting -= 1

    def release(self) -> None:
        self.sem.release()


class BodyLimit:
    """ASGI middleware: a request body must declare its length (411 otherwise) and
    keep under `limit` bytes (413). A plain ASGI layer, so that streamed responses
    pass through untouched."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] in ("POST", "PATCH", "PUT"):
            from fastapi.responses import JSONResponse

            headers = dict(scope["headers"])
            n = headers.get(b"content-length")
            refusal = None
            if n is None:
                if b"transfer-encoding" in headers:
                    refusal = JSONResponse({"error": "send a Content-Length (chunked bodies are not accepted)"}, 411)
            elif not n.isdigit() or int(n) > self.limit:
                refusal = JSONResponse({"error": f"request body of {n.decode(errors='replace')[:40]} bytes is over the "
                                                 f"limit of {self.limit}"}, 413)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

