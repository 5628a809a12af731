"""The studio's HTTP API on a real loopback server with a tiny model: streams, archive, limits, load."""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from studio_util import Server, call, make_studio, sse_events

from folkrnn.sample import SampleConfig, sample
from folkrnn.web.limits import Limits
from folkrnn.web.engine import Compose, compose_config


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(make_studio(tmp_path_factory.mktemp("db") / "studio.sqlite", Limits(max_tunes=5, max_tokens=400)))
    yield s
    s.stop()


def generate(srv, timeout: float = 60, **body):
    status, raw, headers = call(srv.url + "/api/generate", "POST", body, timeout=timeout)
    return status, (sse_events(raw) if status == 200 else raw), headers


def test_info_and_page(srv):
    status, info, _ = call(srv.url + "/api/info")
    assert status == 200 and info["models"][0]["id"] == "tiny" and "6/8" in info["meters"]
    assert info["missing"]["abcjs"]  # this studio was made without abcjs: the page is told so
    status, page, _ = call(srv.url + "/")
    assert status == 200 and b"folkrnn studio" in page and b"/vendor/abcjs.js" in page
    assert call(srv.url + "/static/studio.js")[0] == 200
    assert call(srv.url + "/vendor/abcjs.js")[0] == 404


@pytest.mark.parametrize("path", ["/static/../app.py", "/static/%2e%2e%2fapp.py", "/static/..%2f..%2fcli%2fserve.py",
                                  "/static//etc/passwd", "/static/%2fetc%2fpasswd", "/vendor/..%2fapp.py"])
def test_no_file_outside_the_assets(srv, path):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    assert r.status == 404 and b"import" not in body and b"root:" not in body


def test_generate_streams_tokens_and_keeps_the_tunes(srv):
    status, events, _ = generate(srv, model="tiny", meter="6/8", mode="dorian", key="D", seed=7, num_tunes=2)
    assert status == 200
    kinds = [e for e, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("tune") == 2 and "error" not in kinds
    assert events[0][1]["seed"] == 7
    tunes = [d for e, d in events if e == "tune"]
    for t in tunes:
        streamed = [d["token"] for e, d in events if e == "token" and d["index"] == t["index"]]
        assert streamed == t["tokens"] and streamed[:2] == ["M:6/8", "K:Cdor"]
        assert "K:Ddor" in t["abc"] and t["settings"]["seed"] == 7 and "--seed 7" in t["command"]
    # the library's sampler makes the same tunes from the settings kept
    ck = srv.studio.models["tiny"].ckpt
    cfg = compose_config(Compose(meter="6/8", mode="dorian", num_tunes=2), ck.vocab, 7)
    assert [t.tokens for t in sample(ck.model, ck.vocab, cfg)] == [t["tokens"] for t in tunes]
    # kept in the archive, findable
    status, found, _ = call(srv.url + "/api/tunes?meter=6/8&mode=dorian&model=tiny")
    assert {t["id"] for t in tunes} <= {t["id"] for t in found["tunes"]}
    # same settings, same seed: same tunes
    _, again, _ = generate(srv, model="tiny", meter="6/8", mode="dorian", seed=7, num_tunes=1)
    assert [d["tokens"] for e, d in again if e == "tune"] == [tunes[0]["tokens"]]


def test_random_seed_is_reported(srv):
    _, a, _ = generate(srv, model="tiny", num_tunes=1)
    _, b, _ = generate(srv, model="tiny", num_tunes=1)
    sa, sb = a[0][1]["seed"], b[0][1]["seed"]
    assert sa != sb and [d for e, d in a if e == "tune"][0]["seed"] == sa


@pytest.mark.parametrize("body, status, message", [
    ({"temperature": 0}, 422, "temperature: Input should be greater than 0"),
    ({"bogus": 1}, 422, "bogus: Extra inputs are not permitted"),
    ({"num_tunes": 6}, 400, "at most 5 tunes per request"),
    ({"max_tokens": 401}, 400, "at most 400 tokens per tune"),
    ({"prime": "|: G H9"}, 400, "unknown token(s) in the prime: H9"),
    ({"prime": "|: G & A", "prime_format": "abc"}, 400, "prime: "),
    ({"meter": "5/4"}, 400, "unknown meter '5/4'"),
    ({"model": "nope"}, 400, "unknown model 'nope': this server has tiny"),
    ({"key": "H"}, 400, "H"),
    ({"seed": -1}, 422, "seed: Input should be greater than or equal to 0"),
    ({"top_p": 1.5}, 422, "top_p"),
])
def test_bad_settings_are_refused_with_a_reason(srv, body, status, message):
    got, data, _ = call(srv.url + "/api/generate", "POST", {"model": "tiny", **body})
    assert got == status and message in data["error"], data


def test_prime_check(srv):
    status, data, _ = call(srv.url + "/api/prime", "POST", {"model": "tiny", "prime": "|: GAB", "prime_format": "abc", "meter": "6/8"})
    assert status == 200 and data["tokens"] == ["M:6/8", "K:*", "|:", "G", "A", "B"]
    status, data, _ = call(srv.url + "/api/prime", "POST", {"model": "tiny", "prime": "|: Q2 G xx"})
    assert status == 400 and "Q2 xx" in data["error"]


def test_body_size_limit(srv):
    status, data, _ = call(srv.url + "/api/generate", "POST", {"model": "tiny", "prime": "G " * 40_000})
    assert status == 413 and "over the limit" in data["error"]
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.putrequest("POST", "/api/prime")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    conn.send(b"2\r\n{}\r\n0\r\n\r\n")
    assert conn.getresponse().status == 411


def test_archive_edit_export_files_delete(srv):
    _, events, _ = generate(srv, model="tiny", meter="4/4", mode="major", key="G", seed=3, num_tunes=2)
    t1, t2 = [d for e, d in events if e == "tune"]
    url = f"{srv.url}/api/tunes/{t1['id']}"
    status, rec, _ = call(url, "PATCH", {"title": "The Test Reel", "starred": True, "note": "keep"})
    assert status == 200 and rec["starred"] and "T:The Test Reel" in rec["abc"]
    assert call(url, "PATCH", {"rating": 5})[0] == 422
    assert call(url, "PATCH", {"title": "x" * 300})[0] == 400
    _, found, _ = call(srv.url + "/api/tunes?starred=true&q=test%20reel")
    assert [t["id"] for t in found["tunes"]] == [t1["id"]]
    status, abc, headers = call(url + "/abc")
    assert status == 200 and b"K:Gmaj" in abc and b"--seed 3" in abc and "The-Test-Reel.abc" in headers["content-disposition"]
    assert b"K:Dmaj" in call(url + "/abc?key=D")[1]
    status, mid, headers = call(url + "/midi?tempo=140")
    assert status == 200 and mid.startswith(b"MThd") and headers["content-type"] == "audio/midi"
    assert call(url + "/midi?tempo=4000")[0] == 400
    assert call(url + "/abc?key=Q")[0] == 400
    status, text, _ = call(srv.url + "/api/export", "POST", {"ids": [t1["id"], t2["id"], 99999]})
    assert status == 200 and text.count(b"X:") == 2
    assert call(srv.url + "/api/export", "POST", {"ids": []})[0] == 422
    status, data, _ = call(srv.url + "/api/delete", "POST", {"ids": [t1["id"], t2["id"]]})
    assert data == {"deleted": 2}
    assert call(url)[0] == 404 and call(url + "/midi")[0] == 404
    assert call(url, "DELETE")[0] == 404
    assert call(srv.url + "/api/tunes?limit=0")[0] == 400


def test_inspect(srv):
    _, events, _ = generate(srv, model="tiny", meter="4/4", mode="major", seed=9)
    t = [d for e, d in events if e == "tune"][0]
    status, data, _ = call(srv.url + "/api/inspect", "POST", {"model": "tiny", "id": t["id"], "k": 3})
    assert status == 200 and len(data["steps"]) == len(t["tokens"]) + 1 and data["steps"][-1]["token"] == "</s>"
    # the tiny model's output ignores its input: the bar line is its favourite after the header
    assert data["steps"][5]["alternatives"][0][0] == "|"
    status, data2, _ = call(srv.url + "/api/inspect", "POST", {"model": "tiny", "tokens": " ".join(t["tokens"])})
    assert [s["p"] for s in data2["steps"]] == [s["p"] for s in data["steps"]]
    status, data3, _ = call(srv.url + "/api/inspect", "POST", {"abc": "X:1\nM:4/4\nK:C\nCDEF|G4|]"})
    assert status == 200 and data3["tokens"][:3] == ["M:4/4", "K:Cmaj", "C"]
    assert "exactly one" in call(srv.url + "/api/inspect", "POST", {"id": 1, "tokens": "C"})[1]["error"]
    assert "H9" in call(srv.url + "/api/inspect", "POST", {"tokens": "M:4/4 H9"})[1]["error"]


def _wait(pred, timeout=10.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_a_client_that_goes_away_stops_its_work(tmp_path):
    """A never-ending model, 5 tunes of 5,000 tokens asked for: the client reads a few
    events and hangs up; the worker must stop, nothing half-made is kept."""
    lim = Limits(max_tunes=5, max_tokens=5000)
    with Server(make_studio(tmp_path / "s.sqlite", lim, end_bias=float("-inf"))) as s:
        conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
        conn.request("POST", "/api/generate", json.dumps({"model": "tiny", "num_tunes": 5, "max_tokens": 5000}),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200
        got = b""
        while b"event: token" not in got:
            got += r.read1(65536)
        assert s.studio.active == 1
        conn.sock.close()
        conn.close()
        assert _wait(lambda: s.studio.active == 0), "the worker kept running after the client left"
        assert s.studio.cancelled == 1
        made = s.studio.tokens_generated
        assert made < 5 * 5000 and s.studio.archive.count() == made // 5000


def test_busy_server_refuses_with_429_and_503(tmp_path):
    lim = Limits(max_concurrent=1, max_waiting=1, queue_timeout_s=0.6, max_tokens=5000, request_timeout_s=5)
    # 5,000 steps of at least 5 ms: the held request outlasts its 5 s limit on any machine.
    with Server(make_studio(tmp_path / "s.sqlite", lim, end_bias=float("-inf"), step_delay=0.005)) as s:
        hold = threading.Thread(target=generate, args=(s,), kwargs=dict(model="tiny", max_tokens=5000, num_tunes=10))
        hold.start()
        assert _wait(lambda: s.studio.active == 1)
        with ThreadPoolExecutor(2) as ex:
            waiting = ex.submit(call, s.url + "/api/generate", "POST", {"model": "tiny", "max_tokens": 10})
            assert _wait(lambda: s.studio.slots.waiting == 1)
            status, data, headers = call(s.url + "/api/generate", "POST", {"model": "tiny", "max_tokens": 10})
            assert status == 429 and "too many requests" in data["error"] and headers["retry-after"]
            status, data, _ = waiting.result()
            assert status == 503 and "busy" in data["error"]
        hold.join(30)
        # the held request ran into its 5 s limit and said so
        assert s.studio.active == 0 and s.studio.cancelled == 1


@pytest.mark.slow
def test_load_many_clients(tmp_path):
    """48 clients at once, 4 requests each, against 2 generation slots and 6 waiting places:
    every request is answered (200 with its tunes) or refused (429/503); none is lost or
    half-kept, the server stays up. Bounded: 192 requests, 90 s."""
    lim = Limits(max_concurrent=2, max_waiting=6, queue_timeout_s=1.0, max_tunes=2)
    with Server(make_studio(tmp_path / "load.sqlite", lim)) as s:
        deadline = time.monotonic() + 90

        def client(c: int) -> list[tuple[int, int]]:
            out = []
            for r in range(4):
                if time.monotonic() > deadline:
                    break
                status, events, _ = generate(s, timeout=60, model="tiny", max_tokens=60, num_tunes=1 + (c + r) % 2,
                                             seed=c * 10 + r)
                tunes = [d for e, d in events if e == "tune"] if status == 200 else []
                if status == 200:
                    assert [e for e, _ in events][-1] == "done", events[-1]
                    assert len(tunes) == 1 + (c + r) % 2
                out.append((status, len(tunes)))
            return out

        t0 = time.monotonic()
        with ThreadPoolExecutor(48) as ex:
            results = [x for f in [ex.submit(client, c) for c in range(48)] for x in f.result()]
        elapsed = time.monotonic() - t0
        statuses = {st for st, _ in results}
        assert statuses <= {200, 429, 503}, statuses
        served = sum(n for st, n in results if st == 200)
        assert 200 in statuses and len(results) == 192
        assert s.studio.archive.count() == served  # nothing lost, nothing extra
        assert call(s.url + "/api/info")[0] == 200 and s.studio.active == 0
        print(f"load: {len(results)} requests in {elapsed:.1f} s: "
              f"{sum(st == 200 for st, _ in results)} served ({served} tunes), "
              f"{sum(st == 429 for st, _ in results)} x 429, {sum(st == 503 for st, _ in results)} x 503")


def test_a_jig_in_aabb_is_the_librarys_and_comes_whole(srv):
    """A type and a form: made by the library's form sampler, tune i the CLI's tune i; its
    tokens are sent once its closings are chosen (tune_start says it is planning)."""
    body = dict(model="tiny", tune_type="jig", form="AABB", endings=1, seed=42, num_tunes=2, max_tokens=400)
    status, events, _ = generate(srv, timeout=120, **body)
    assert status == 200 and "error" not in [e for e, _ in events], events[-1]
    starts = [d for e, d in events if e == "tune_start"]
    assert [d["index"] for d in starts] == [0, 1] and all(d["planning"] for d in starts)
    tunes = [d for e, d in events if e == "tune"]
    ck = srv.studio.models["tiny"].ckpt
    cfg = compose_config(Compose(**{k: v for k, v in body.items() if k != "model"}), ck.vocab, 42)
    ref = list(sample(ck.model, ck.vocab, cfg))
    assert [t["tokens"] for t in tunes] == [t.tokens for t in ref]
    for t in tunes:
        streamed = [d["token"] for e, d in events if e == "token" and d["index"] == t["index"]]
        assert streamed == t["tokens"] and t["tokens"][0] == "M:6/8"
        assert t["tokens"].count(":|") == 2 and t["tokens"].count("|1") == 2  # AABB, each part with two endings
        assert "--seed 42" in t["command"] and "--type jig --form AABB --endings 1" in t["command"]
        assert t["settings"]["tune_type"] == "jig" and t["settings"]["form"] == "AABB"
    status, err, _ = generate(srv, model="tiny", tune_type="reel", meter="6/8")
    assert status == 400 and "--type reel is in 4/4" in err["error"]
    status, err, _ = generate(srv, model="tiny", endings=3)
    assert status == 422


def test_default_temperature_is_the_readmes(srv):
    _, events, _ = generate(srv, model="tiny", num_tunes=1)
    assert events[0][1]["settings"]["temperature"] == 0.9
