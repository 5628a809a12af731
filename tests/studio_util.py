"""Helpers for the studio's tests: tiny models and a real server on a loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import torch

from folkrnn.checkpoint import Checkpoint
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import Stepper
from folkrnn.vocab import Vocabulary
from folkrnn.web.app import create_app
from folkrnn.web.archive import Archive
from folkrnn.web.limits import Limits
from folkrnn.web.studio import ModelEntry, Studio

PITCHES = "C D E F G A B c d e".split()


def tiny_checkpoint(end_bias: float = 1.8, seed: int = 0, wired: bool = False) -> Checkpoint:
    """A 1x16 model whose output ignores its input: pitches, bar lines and `</s>`
    (bias `end_bias`; -inf never ends), so every tune is well-formed ABC of ~40 tokens.
    `wired`: its hidden units also drive the pitch and bar-line logits (an ablation
    then changes the tunes)."""
    v = Vocabulary.v2()
    torch.manual_seed(seed)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1)).eval()
    with torch.no_grad():
        m.out.weight.zero_()
        m.out.bias.fill_(-30)
        for p in PITCHES:
            m.out.bias[v[p]] = 3.0
        m.out.bias[v["|"]] = 3.5
        m.out.bias[v["</s>"]] = end_bias
        for tok in ("M:6/8", "M:4/4", "K:Cmaj", "K:Cdor"):
            m.out.bias[v[tok]] = 0.0
        if wired:
            g = torch.Generator().manual_seed(seed + 1)
            for tok in (*PITCHES, "|"):
                m.out.weight[v[tok]] = 1.0 * torch.randn(16, generator=g)
    return Checkpoint(m, v, {"name": "tiny"})


class SlowStepper(Stepper):
    """A Stepper that takes at least `delay` seconds a step: tests that need a request to
    outlast a limit get it on any machine, fast or loaded."""

    def __init__(self, model, delay: float):
        super().__init__(model)
        self.delay = delay

    def __call__(self, *a, **k):
        time.sleep(self.delay)
        return super().__call__(*a, **k)


def make_studio(db, limits: Limits = Limits(), end_bias: float = 1.8, abcjs=None, wired: bool = False,
                step_delay: float = 0.0) -> Studio:
    ck = tiny_checkpoint(end_bias, wired=wired)
    step = SlowStepper(ck.model, step_delay) if step_delay else Stepper(ck.model)
    return Studio([ModelEntry("tiny", "tiny.safetensors", ck, step)], Archive(db), limits, abcjs)


class Server:
    """uvicorn serving `studio` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, studio: Studio):
        import uvicorn

        self.studio = studio
        config = uvicorn.Config(create_app(studio), host="127.0.0.1", port=0, log_level="warning",
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        t0 = time.monotonic()
        while not self.server.started:
            if time.monotonic() - t0 > 30 or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class AsgiClient:
    """An app called in this process, on its own event loop (a thread) with its lifespan
    run: any method, path, Host, Origin, headers and body reach the app as sent, with no
    HTTP server (and none of its limits) in between. An exception the app lets out is
    raised here."""

    def __init__(self, app):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self._run(self._lifespan_start(), 30)

    def _run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _lifespan_start(self) -> None:
        self._life_in: asyncio.Queue = asyncio.Queue()
        self._life_out: asyncio.Queue = asyncio.Queue()
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._life = asyncio.ensure_future(self.app(scope, self._life_in.get, self._life_out.put))
        await self._life_in.put({"type": "lifespan.startup"})
        msg = await self._life_out.get()
        assert msg["type"] == "lifespan.startup.complete", msg

    async def _lifespan_stop(self) -> None:
        await self._life_in.put({"type": "lifespan.shutdown"})
        await self._life_out.get()
        await self._life

    async def _request(self, method: str, path: str, query: bytes, headers: list, body: bytes):
        from urllib.parse import unquote

        done = asyncio.Event()
        sent = False
        out: dict = {"status": None, "headers": [], "body": b""}

        async def receive():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await done.wait()  # the client stays until the response is complete
            return {"type": "http.disconnect"}

        async def send(msg):
            if msg["type"] == "http.response.start":
                out["status"], out["headers"] = msg["status"], msg.get("headers", [])
            elif msg["type"] == "http.response.body":
                out["body"] += msg.get("body", b"")
                if not msg.get("more_body", False):
                    done.set()

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": unquote(path), "raw_path": path.encode(), "query_string": query,
                 "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000),
                 "server": ("127.0.0.1", 8000), "state": {}}
        await self.app(scope, receive, send)
        return out

    def request(self, method: str, path: str, body=None, headers: dict | None = None, query: str = "",
                timeout: float = 60) -> tuple[int, dict | bytes, dict]:
        """(status, JSON or raw bytes, headers). `body`: JSON-encoded unless bytes; `headers`
        replace the defaults (Host 127.0.0.1:8000; a value None leaves the header out)."""
        if "?" in path:
            path, query = path.split("?", 1)
        data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs = {"host": "127.0.0.1:8000"}
        if body is not None:
            hdrs |= {"content-type": "application/json", "content-length": str(len(data))}
        for k, v in (headers or {}).items():
            hdrs[k.lower()] = v
        raw = [(k.encode(), v.encode("latin-1")) for k, v in hdrs.items() if v is not None]
        out = self._run(self._request(method, path, query.encode(), raw, data), timeout)
        resp_headers = {k.decode().lower(): v.decode("latin-1") for k, v in out["headers"]}
        raw_body = out["body"]
        if resp_headers.get("content-type", "").startswith("application/json"):
            return out["status"], json.loads(raw_body), resp_headers
        return out["status"], raw_body, resp_headers

    def close(self) -> None:
        try:
            self._run(self._lifespan_stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy


def call(url: str, method: str = "GET", body=None, timeout: float = 30) -> tuple[int, dict | bytes, dict]:
    """(status, JSON or raw bytes, headers) without raising on HTTP errors."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=timeout) as r:
            status, raw, headers = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, raw, headers = e.code, e.read(), dict(e.headers)
    ctype = headers.get("content-type", headers.get("Content-Type", ""))
    return status, (json.loads(raw) if ctype.startswith("application/json") else raw), headers


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """Parse a server-sent event stream."""
    out = []
    for block in raw.decode().split("\n\n"):
        if not block.strip():
            continue
        event, data = "message", ""
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
        out.append((event, json.loads(data) if data else None))
    return out


_ADDRESS = re.compile(r"folkrnn studio: (http://127\.0\.0\.1:\d+/)")


@contextlib.contextmanager
def serving(cmd: list[str], cwd=None, env=None, timeout: float = 120):
    """Run a `folkrnn serve` command line (`cmd`, the program first) until the block ends:
    yields (process, the address it printed); then Ctrl-C, and a kill if it will not stop.
    The block can read `process.returncode` after it."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url, seen, t0 = None, [], time.monotonic()
        while url is None and time.monotonic() - t0 < timeout:
            line = p.stderr.readline()
            if not line:
                break
            seen.append(line)
            m = _ADDRESS.search(line)
            url = m.group(1) if m else None
        assert url, f"no address printed; exit {p.poll()}:\n{''.join(seen)[-3000:]}"
        yield p, url
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@contextlib.contextmanager
def chromium():
    """Debian's headless chromium through Playwright (no browser download); skips without playwright."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
