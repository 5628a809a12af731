"""The studio's speed on loopback: first token, finished tune, tunes/s, with 1 and 20 clients.

    .venv/bin/python bench/serve.py [-m MODEL] [--requests 10] [--clients 20] [--per-client 3]

Starts `folkrnn serve` as its own process (a fresh archive in a temporary folder, port
chosen by the system), then asks for one tune at the studio's default settings (model
chooses meter and mode, temperature 1, fresh seed) over HTTP, reading the server-sent
events as they arrive:
  first token  from sending the request to receiving the first `token` event;
  tune         from sending the request to receiving the `tune` event (tune kept in the archive).
Run 1: one client, --requests requests one after another. Run 2: --clients clients at
once, --per-client requests each. Prints median / 90th percentile / max, tunes/s and
the refusals (429/503) and errors; exits 1 if any request failed. The browser adds its
own rendering on top (abcjs draws a tune in a few ms).
Targets: first token < 300 ms, one tune < 1.5 s, 20 clients served without errors.

--browser N also composes N tunes in Debian's headless chromium (Playwright) and reads
what the page measured: from the Compose click to the first token on screen, and to
the tune's staff drawn.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# bench/ holds scripts named like standard modules (tokenize.py): keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def one_request(port: int, body: dict) -> dict:
    """Time one generation request; {'status', 'first', 'tune', 'tokens'} (seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    t0 = time.perf_counter()
    conn.request("POST", "/api/generate", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    out = {"status": r.status, "first": None, "tune": None, "tokens": 0, "error": None}
    if r.status != 200:
        out["error"] = r.read().decode()[:200]
        return out
    buf = b""
    while True:
        chunk = r.read1(65536)
        if not chunk:
            break
        buf += chunk
        now = time.perf_counter() - t0
        if out["first"] is None and b"event: token" in buf:
            out["first"] = now
        while b"\n\n" in buf:
            block, buf = buf.split(b"\n\n", 1)
            if block.startswith(b"event: tune\n"):
                out["tune"] = now
                out["tokens"] = len(json.loads(block.split(b"data: ", 1)[1])["tokens"])
            elif block.startswith(b"event: error\n"):
                out["error"] = block.decode()[:200]
    conn.close()
    return out


def summary(name: str, xs: list[float]) -> str:
    if not xs:
        return f"{name}: none"
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(0.9 * len(xs)))]
    return f"{name}: median {1000 * statistics.median(xs):.0f} ms, p90 {1000 * p90:.0f} ms, max {1000 * xs[-1]:.0f} ms"


def report(label: str, results: list[dict], wall: float) -> bool:
    ok = [r for r in results if r["status"] == 200 and r["tune"] is not None and not r["error"]]
    refused = [r for r in results if r["status"] in (429, 503)]
    failed = [r for r in results if r not in ok and r not in refused]
    print(f"\n{label}: {len(results)} requests in {wall:.2f} s: {len(ok)} tunes, {len(refused)} refused (429/503), "
          f"{len(failed)} failed; {len(ok) / wall:.2f} tunes/s")
    print("  " + summary("first token", [r["first"] for r in ok]))
    print("  " + summary("finished tune", [r["tune"] for r in ok]))
    if ok:
        print(f"  tokens per tune: mean {statistics.mean(r['tokens'] for r in ok):.0f}")
    for r in failed[:3]:
        print(f"  failure: {r['status']} {r['error']}")
    return not failed


def browser_run(port: int, n: int) -> None:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    first, staff = [], []
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = b.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-ready=true]")
        for _ in range(n):
            page.evaluate("document.querySelector('#compose-tunes').replaceChildren()")
            page.evaluate("window.__t0 = performance.now()")
            page.click("#compose-go")
            page.wait_for_selector("#compose-tunes .tune .staff svg", timeout=60000)
            staff.append(page.evaluate("performance.now() - window.__t0") / 1000)
            first.append(int(page.get_attribute("#stream", "data-first-token-ms")) / 1000)
            page.wait_for_selector("#compose-go:not([disabled])")
        b.close()
    print(f"\nbrowser (chromium), {n} tunes one after another:")
    print("  " + summary("first token on screen", first))
    print("  " + summary("staff drawn", staff))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--requests", type=int, default=10, help="requests in the one-client run (default 10)")
    ap.add_argument("--clients", type=int, default=20, help="clients at once in the second run (default 20)")
    ap.add_argument("--per-client", type=int, default=3, help="requests per client in the second run (default 3)")
    ap.add_argument("--browser", type=int, default=0, metavar="N", help="also time N tunes composed in chromium")
    ap.add_argument("--max-concurrent", type=int, default=16, help="the server's generation slots (default 16)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="folkrnn-bench-serve-") as d:
        cmd = [sys.executable, "-m", "folkrnn", "serve", "-m", args.model, "--db", str(Path(d) / "bench.sqlite"),
               "--port", "0", "--max-concurrent", str(args.max_concurrent)]
        server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        try:
            port = None
            while port is None:
                line = server.stderr.readline()
                if not line:
                    print("the server did not start", file=sys.stderr)
                    return 1
                m = re.search(r"folkrnn studio: http://127\.0\.0\.1:(\d+)/", line)
                port = int(m.group(1)) if m else None
            body = {"model": "default"} if args.model == "default" else {}
            one_request(port, body)  # warm-up (first request builds nothing, but pages in the weights)
            t0 = time.perf_counter()
            single = [one_request(port, body) for _ in range(args.requests)]
            ok1 = report("1 client", single, time.perf_counter() - t0)
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as ex:
                futures = [ex.submit(lambda: [one_request(port, body) for _ in range(args.per_client)])
                           for _ in range(args.clients)]
                many = [r for f in futures for r in f.result()]
            ok2 = report(f"{args.clients} clients at once", many, time.perf_counter() - t0)
            if args.browser:
                browser_run(port, args.browser)
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
