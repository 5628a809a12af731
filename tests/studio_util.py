"""Helpers for the studio's tests: tiny models and a real server on a loopback port."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import torch

from folkrnn.checkpoint import Checkpoint
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import Stepper
from folkrnn.vocab import Vocabulary
from folkrnn.web.app import Limits, ModelEntry, Studio, create_app
from folkrnn.web.archive import Archive

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
