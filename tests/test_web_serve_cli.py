"""`folkrnn serve`: starts the studio on loopback by default; bad options exit 2 with one line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from studio_util import OPENER, tiny_checkpoint

from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import build_parser


def test_defaults_bind_loopback():
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.model is None and args.db is None
    assert args.allowed_host is None and args.token is None
    args = build_parser().parse_args(["serve", "--allowed-host", "a.lan", "--allowed-host", "b.lan", "--token", "t" * 8])
    assert args.allowed_host == ["a.lan", "b.lan"] and args.token == "tttttttt"


def test_serve_starts_answers_and_stops(tmp_path):
    ck = tiny_checkpoint()
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, ck.model, ck.vocab)
    db = tmp_path / "data" / "studio.sqlite"
    p = subprocess.Popen([sys.executable, "-m", "folkrnn", "serve", "-m", str(model), "--db", str(db), "--port", "0"],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = None
        t0 = time.monotonic()
        while url is None and time.monotonic() - t0 < 120:
            line = p.stderr.readline()
            if not line:
                break
            m = re.search(r"folkrnn studio: (http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, p.stderr.read() if p.poll() is not None else "no URL printed"
        with OPENER.open(url + "api/info", timeout=30) as r:
            info = json.load(r)
        assert info["models"][0]["id"] == "tiny" and info["archive"]["path"] == str(db)
        body = json.dumps({"model": "tiny", "meter": "4/4", "seed": 1, "max_tokens": 50}).encode()
        req = urllib.request.Request(url + "api/generate", body, {"Content-Type": "application/json"})
        with OPENER.open(req, timeout=60) as r:
            assert b"event: done" in r.read()
        assert db.is_file()
        # on loopback, a request naming another host (DNS rebinding) is refused
        req = urllib.request.Request(url + "api/info", headers={"Host": "evil.example:8000"})
        try:
            OPENER.open(req, timeout=30)
            raise AssertionError("a foreign Host header was served")
        except urllib.error.HTTPError as e:
            assert e.code == 400
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    assert p.returncode in (0, 130)


def test_a_token_given_on_loopback_is_printed_and_required(tmp_path):
    """`--token`: the address printed carries it (the page takes it from there); a change
    without it is refused, with it done. Off loopback the same holds with a new token at
    every start (tests/test_web_guard.py makes that app)."""
    ck = tiny_checkpoint()
    model = tmp_path / "tiny.safetensors"
    save_checkpoint(model, ck.model, ck.vocab)
    p = subprocess.Popen([sys.executable, "-m", "folkrnn", "serve", "-m", str(model), "--db", str(tmp_path / "s.sqlite"),
                          "--port", "0", "--token", "test-token-123456"],
                         stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        url = None
        t0 = time.monotonic()
        while url is None and time.monotonic() - t0 < 120:
            line = p.stderr.readline()
            if not line:
                break
            m = re.search(r"folkrnn studio: (http://127\.0\.0\.1:\d+/)\?token=test-token-123456 ", line)
            url = m.group(1) if m else None
        assert url, p.stderr.read() if p.poll() is not None else "no URL with the token printed"
        with OPENER.open(url + "?token=test-token-123456", timeout=30) as r:
            assert r.status == 200 and b"folkrnn studio" in r.read()
        body = json.dumps({"ids": [1]}).encode()
        req = urllib.request.Request(url + "api/delete", body, {"Content-Type": "application/json"})
        try:
            OPENER.open(req, timeout=30)
            raise AssertionError("a change without the token was done")
        except urllib.error.HTTPError as e:
            assert e.code == 403 and "needs its token" in json.load(e)["error"]
        req.add_header("X-Folkrnn-Token", "test-token-123456")
        with OPENER.open(req, timeout=30) as r:
            assert json.load(r) == {"deleted": 0}
    finally:
        p.send_signal(signal.SIGINT)
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            raise
    assert p.returncode in (0, 130)


def test_bad_options(tmp_path, capsys):
    from folkrnn.cli import main

    for argv, msg in ((["--port", "70000"], "--port must be in 0..65535"),
                      (["-m", str(tmp_path / "none.safetensors")], "no such model file"),
                      (["--max-tunes", "0"], "--max-tunes must be >= 1"),
                      (["--allowed-host", "*"], "--allowed-host '*' would let any site's page reach the studio"),
                      (["--allowed-host", "studio.lan:8000"], "give a host name without a port"),
                      (["--token", "short"], "--token must be 8 to 200 characters"),
                      (["-m", str(tmp_path / "none.safetensors"), "--db", str(tmp_path)], "no such model file")):
        assert main(["serve", "--port", "0", *argv]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
