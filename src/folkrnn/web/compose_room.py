"""The Compose room: `/api/prime` (check a prime as generation will read it) and
`/api/generate` (the form -> server-sent events, tokens as they are drawn).

A generation request takes a slot (`limits.Slots`), runs in the studio's worker pool
(never on the event loop) and hands its events to the loop through a `Mailbox`, in
batches; when the client goes away the stream's generator is closed and the worker stops
at the next token.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from folkrnn.web.engine import compose_config
from folkrnn.web.schemas import ComposeBody, PrimeBody
from folkrnn.web.studio import StudioDep

router = APIRouter()


class Mailbox:
    """Events from a worker thread to the event loop, handed over in batches.

    Tokens come ~1 ms apart; waking the loop for each would make the two threads
    trade the GIL a thousand times a second. The worker appends under a lock and
    wakes the loop at most every `interval` seconds for tokens (at once for other
    events), and only once the loop has taken the previous batch."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float = 0.02):
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple[str, dict]] = []
        self.closed = False
        self.ready = asyncio.Event()
        self.woken = False
        self.last_wake = 0.0
        self.interval = interval

    def _wake(self) -> None:  # under self.lock
        if not self.woken:
            self.woken = True
            self.last_wake = time.monotonic()
            self.loop.call_soon_threadsafe(self.ready.set)

    def put(self, event: str, data: dict, urgent: bool = False) -> None:
        """Queue an event; the loop is woken for an urgent one, or when the last
        wake-up is `interval` s old (tokens then arrive a few dozen at a time)."""
        with self.lock:
            self.items.append((event, data))
            if urgent or event != "token" or time.monotonic() - self.last_wake >= self.interval:
                self._wake()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self._wake()

    async def take(self) -> tuple[list[tuple[str, dict]], bool]:
        await self.ready.wait()
        with self.lock:
            items, self.items = self.items, []
            self.ready.clear()
            self.woken = False
            return items, self.closed


def _sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@router.post("/api/prime")
def check_prime(body: PrimeBody, studio: StudioDep):
    form, entry = studio.check_form(body)
    cfg = compose_config(form, entry.ckpt.vocab, 0)  # what /api/generate checks, length cap included
    return {"tokens": list(cfg.prime)}


@router.post("/api/generate")
async def generate(body: ComposeBody, studio: StudioDep):
    form, entry = studio.check_form(body)
    seed = form.seed if form.seed is not None else secrets.randbelow(2**32)
    await asyncio.to_thread(compose_config, form, entry.ckpt.vocab, seed)  # bad settings -> 400 before streaming
    await studio.slots.acquire()
    loop = asyncio.get_running_loop()
    mailbox = Mailbox(loop)
    cancel = threading.Event()
    deadline = time.monotonic() + studio.limits.request_timeout_s

    def work() -> None:
        try:
            studio.generate(form, entry, seed, mailbox.put, cancel, deadline)
        finally:
            mailbox.close()

    try:
        future = loop.run_in_executor(studio.pool, work)
    except BaseException:
        studio.slots.release()
        raise
    future.add_done_callback(lambda _f: studio.slots.release())

    async def events():
        try:
            yield _sse("start", {"seed": seed, "model": entry.id, "num_tunes": form.num_tunes,
                                 "settings": {**form.to_dict(), "seed": seed}})
            while True:
                batch, closed = await mailbox.take()
                if batch:
                    yield b"".join(_sse(e, d) for e, d in batch)
                if closed:
                    break
        finally:
            cancel.set()  # the client went away (or we are done): stop the worker

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
