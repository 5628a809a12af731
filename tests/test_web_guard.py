"""The studio opened to the network: allowed hosts, the Origin of changes, the token.

The app is made as `folkrnn serve --host 0.0.0.0` makes it on a machine named
`studio-box` (`guard.access`) and called in this process, so any Host and Origin header
can be sent.
"""

from __future__ import annotations

import pytest
from studio_util import AsgiClient, make_studio, sse_events

from folkrnn.errors import FolkRNNError
from folkrnn.web.app import create_app
from folkrnn.web.guard import (
    LOOPBACK_NAMES,
    access,
    browse_host,
    check_host_name,
    check_token,
    same_origin,
    split_host,
)

TOKEN = "test-token-0123456789"
HOST = "studio-box:8000"
GOOD = {"host": HOST, "origin": "http://studio-box:8000", "x-folkrnn-token": TOKEN}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """The studio as opened to the network, with one tune in its archive."""
    hosts, token = access("0.0.0.0", None, TOKEN, hostname="studio-box")
    with AsgiClient(create_app(make_studio(tmp_path_factory.mktemp("db") / "s.sqlite"), hosts, token)) as c:
        yield c


def _new_tune(c) -> int:
    status, raw, _ = c.request("POST", "/api/generate", {"seed": 5, "max_tokens": 40}, headers=GOOD)
    assert status == 200, raw
    return next(d["id"] for e, d in sse_events(raw) if e == "tune")


def test_off_loopback_a_token_and_the_machines_names_by_default():
    hosts, token = access("0.0.0.0", None, None, hostname="studio-box.lan")
    assert hosts == ["0.0.0.0", "127.0.0.1", "localhost", "::1", "studio-box.lan", "studio-box"]
    assert token and len(token) >= 30 and access("0.0.0.0")[1] != token  # new at every start
    assert access("0.0.0.0", ["studio.example.org", "*.lan"], "my-own-token")[0:2] == (
        ["studio.example.org", "*.lan"], "my-own-token")
    # loopback keeps today's behaviour: loopback names, no token unless one is given
    assert access("127.0.0.1") == (["127.0.0.1", "localhost", "::1"], None)
    assert access("::1", None, "on-loopback-too")[1] == "on-loopback-too"
    assert browse_host("0.0.0.0", ["0.0.0.0", "localhost", "studio.example.org"]) in ("studio.example.org", "localhost")
    assert browse_host("127.0.0.1", list(LOOPBACK_NAMES)) == "127.0.0.1"


@pytest.mark.parametrize("name, message", [
    ("*", "would let any site's page reach the studio"),
    ("http://studio.example.org/", "not a URL"),
    ("studio.example.org:8000", "without a port"),
    ("bad name", "not a host name"),
])
def test_bad_allowed_hosts_are_refused(name, message):
    with pytest.raises(FolkRNNError, match=message):
        check_host_name(name)


def test_tokens_and_headers_parsed_strictly():
    assert check_token("abcDEF12-_.~") == "abcDEF12-_.~"
    for bad in ("short", "has space in it", "x" * 201, "ümlaut-token"):
        with pytest.raises(FolkRNNError, match="--token must be 8 to 200 characters"):
            check_token(bad)
    assert split_host("Studio-Box:8000") == ("studio-box", 8000) and split_host("[::1]:80") == ("::1", 80)
    assert split_host("[0:0::1]") == ("::1", None)
    for bad in ("", "a:b", "a:99999", "[::1", "[evil]:80", "a:80:80"):
        assert split_host(bad) is None, bad
    assert same_origin("http://studio-box:8000", ("studio-box", 8000))
    assert same_origin("https://studio.example.org", ("studio.example.org", None))  # behind a TLS proxy
    for bad in ("http://evil.example:8000", "http://studio-box:8001", "null", "file://", "http://studio-box:8000/x",
                "ftp://studio-box:8000", "http://studio-box:notaport"):
        assert not same_origin(bad, ("studio-box", 8000)), bad


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "studio-box.evil.example", "10.0.0.1:8000"])
def test_a_host_not_allowed_is_refused(net, host):
    """DNS rebinding: a page at evil.example whose name now points to the studio."""
    tid = _new_tune(net)
    status, data, _ = net.request("GET", "/api/info", headers={"host": host})
    assert status == 400 and "does not answer to the host" in data["error"] and "--allowed-host" in data["error"]
    status, data, _ = net.request("POST", "/api/delete", {"ids": [tid]}, headers={**GOOD, "host": host,
                                                                                "origin": f"http://{host}"})
    assert status == 400 and set(data) == {"error"}
    assert net.request("GET", f"/api/tunes/{tid}", headers=GOOD)[0] == 200  # nothing was deleted
    assert net.request("GET", "/api/info", headers={"host": None})[0] == 400  # no Host at all


@pytest.mark.parametrize("host", [HOST, "STUDIO-BOX:8000", "studio-box", "localhost:8000", "127.0.0.1:8000",
                                  "[::1]:8000", "0.0.0.0:8000"])
def test_the_page_and_reads_work_on_an_allowed_host(net, host):
    status, page, _ = net.request("GET", "/", headers={"host": host})
    assert status == 200 and b"folkrnn studio" in page
    status, info, _ = net.request("GET", "/api/info", headers={"host": host})
    assert status == 200 and info["token_required"] is True
    assert net.request("GET", "/api/tunes", headers={"host": host})[0] == 200


def test_changes_need_the_token(net):
    tid = _new_tune(net)
    for headers, message in (({"host": HOST, "origin": GOOD["origin"]}, "needs its token"),
                             ({**GOOD, "x-folkrnn-token": "wrong-token-0000000"}, "wrong token"),
                             ({**GOOD, "x-folkrnn-token": TOKEN[:-1]}, "wrong token")):
        for method, path, body in (("POST", "/api/delete", {"ids": [tid]}), ("DELETE", f"/api/tunes/{tid}", None),
                                   ("PATCH", f"/api/tunes/{tid}", {"title": "x"}),
                                   ("POST", "/api/generate", {"seed": 1}), ("PUT", "/api/info", {})):
            status, data, _ = net.request(method, path, body, headers=headers)
            assert status == 403 and message in data["error"], (method, path, data)
    status, data, _ = net.request("GET", f"/api/tunes/{tid}", headers=GOOD)
    assert status == 200 and data["title"] == ""  # nothing changed
    # with the token and the studio's own Origin it works; a script sending no Origin too
    status, data, _ = net.request("PATCH", f"/api/tunes/{tid}", {"title": "Kept"}, headers=GOOD)
    assert status == 200 and data["title"] == "Kept"
    no_origin = {"host": HOST, "x-folkrnn-token": TOKEN}
    assert net.request("POST", "/api/delete", {"ids": [tid]}, headers=no_origin)[1] == {"deleted": 1}


@pytest.mark.parametrize("origin", ["http://evil.example", "http://evil.example:8000", "http://studio-box:9999",
                                    "http://localhost:8000", "https://studio-box.evil.example:8000", "null"])
def test_a_foreign_origin_is_refused_even_with_the_token(net, origin):
    tid = _new_tune(net)
    status, data, _ = net.request("POST", "/api/delete", {"ids": [tid]}, headers={**GOOD, "origin": origin})
    assert status == 403 and "is not this studio's" in data["error"]
    assert net.request("GET", f"/api/tunes/{tid}", headers=GOOD)[0] == 200


def test_on_loopback_no_token_but_hosts_and_origins_checked(tmp_path):
    hosts, token = access("127.0.0.1")
    with AsgiClient(create_app(make_studio(tmp_path / "s.sqlite"), hosts, token)) as c:
        status, info, _ = c.request("GET", "/api/info")
        assert status == 200 and info["token_required"] is False
        status, raw, _ = c.request("POST", "/api/generate", {"seed": 1, "max_tokens": 40},
                                   headers={"origin": "http://127.0.0.1:8000"})
        assert status == 200 and b"event: done" in raw
        tid = next(d["id"] for e, d in sse_events(raw) if e == "tune")
        assert c.request("GET", "/api/info", headers={"host": "evil.example:8000"})[0] == 400
        status, data, _ = c.request("POST", "/api/delete", {"ids": [tid]}, headers={"origin": "http://evil.example"})
        assert status == 403 and "is not this studio's" in data["error"]
        assert c.request("POST", "/api/delete", {"ids": [tid]})[1] == {"deleted": 1}
