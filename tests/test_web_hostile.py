"""Hostile input to every route of the studio: never a 5xx, always `{"error": "..."}`.

The app is called in this process (`AsgiClient`), so values no HTTP server would pass
(50,000-character paths and queries) reach it, and an exception it lets out fails the test.
"""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from pydantic import BaseModel
from studio_util import AsgiClient, make_studio, sse_events

from folkrnn.web.app import create_app
from folkrnn.web.limits import MAX_ID, Limits

LONG = "x" * 50_000
HOSTILE = [2**63, 2**64, -1, "abc", float("nan"), True, LONG]
IN_URL = {True: "true"}  # how a hostile value is written in a path or query


def _url_text(v) -> str:
    return IN_URL.get(v, str(v)) if isinstance(v, bool) else str(v)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    studio = make_studio(tmp_path_factory.mktemp("db") / "studio.sqlite", Limits(max_tunes=2, max_tokens=200))
    with AsgiClient(create_app(studio)) as c:
        status, raw, _ = c.request("POST", "/api/generate", {"seed": 1, "max_tokens": 60})
        assert status == 200
        c.tid = next(d["id"] for e, d in sse_events(raw) if e == "tune")
        yield c


def _answer_problem(status: int, data, what: str) -> str | None:
    """What is wrong with an answer to hostile input, or None."""
    if status == 501 and "audio is unavailable" in str(data):
        return None  # this machine has no fluidsynth: the server says so
    if status >= 500:
        return f"{what}: {status} {str(data)[:200]}"
    if status >= 400:
        if not (isinstance(data, dict) and set(data) == {"error"} and isinstance(data["error"], str) and data["error"]):
            return f"{what}: {status} not an error of the app's shape: {str(data)[:200]}"
        if len(data["error"]) > 1000:  # says what is wrong; does not echo 50,000 characters
            return f"{what}: an error of {len(data['error'])} characters: {data['error'][:100]}"
    elif isinstance(data, bytes) and data.startswith(b"event: ") and b"internal error" in data:
        return f"{what}: the stream reports an internal error"
    return None


def _fill(path: str, values: dict) -> str:
    for k, v in values.items():
        path = path.replace("{" + k + "}", v)
    return path


def _body_cases(model: type[BaseModel], tid: int):
    """(description, JSON body) for every field (and every field of a nested form) set to
    each hostile value, alone and with a list of them where the field is a list."""
    required = {"ids": [tid], "units": "1:1"}
    base = {k: v for k, v in required.items() if k in model.model_fields and model.model_fields[k].is_required()}
    bases = [base] + ([{**base, "id": tid}] if "id" in model.model_fields else [])
    for name, f in model.model_fields.items():
        nested = next((a for a in getattr(f.annotation, "__args__", (f.annotation,))
                       if isinstance(a, type) and issubclass(a, BaseModel)), None)
        for v in HOSTILE:
            for b in bases:
                yield f"{name}={str(v)[:20]}", {**b, name: v}
            if "list" in str(f.annotation):
                yield f"{name}=[{str(v)[:20]}]", {**base, name: [v]}
            if nested is not None:
                for sub in nested.model_fields:
                    yield f"{name}.{sub}={str(v)[:20]}", {**base, name: {sub: v}}


def test_every_route_survives_hostile_values(client):
    app = client.app
    routes = list(app.routes)
    assert routes and all(isinstance(r, APIRoute) for r in routes)  # a new kind of route: walk it too
    seen, problems = 0, []

    def answered_well(status, data, what):
        nonlocal seen
        seen += 1
        problem = _answer_problem(status, data, what)
        if problem:
            problems.append(problem)
    for route in routes:
        valid = {p.name: ("studio.js" if p.name == "name" else str(client.tid)) for p in route.dependant.path_params}
        for method in route.methods:
            # each path parameter hostile
            for p in route.dependant.path_params:
                for v in HOSTILE:
                    path = _fill(route.path, {**valid, p.name: _url_text(v)})
                    body = {} if route.body_field is not None else None
                    status, data, _ = client.request(method, path, body)
                    answered_well(status, data, f"{method} {path[:80]}")
            # each query parameter hostile
            for q in route.dependant.query_params:
                for v in HOSTILE:
                    path = _fill(route.path, valid)
                    status, data, _ = client.request(method, path, query=f"{q.name}={_url_text(v)}")
                    answered_well(status, data, f"{method} {path}?{q.name}={_url_text(v)[:20]}")
            # each body field hostile; and bodies that are no JSON object
            if route.body_field is not None:
                model = route.body_field.field_info.annotation
                path = _fill(route.path, valid)
                cases = [*_body_cases(model, client.tid), ("not JSON", b"{"), ("a list", []), ("NaN", b"NaN"),
                         ("a 5,000-digit number", b'{"id": 1' + b"0" * 5000 + b"}")]
                for what, body in cases:
                    status, data, _ = client.request(method, path, body)
                    answered_well(status, data, f"{method} {path} {what}")
    assert not problems, "\n".join(problems)
    assert seen > 500
    assert client.request("GET", f"/api/tunes/{client.tid}")[0] == 200  # the tune made at the start is still there


def test_unknown_routes_and_methods_answer_in_the_apps_shape(client):
    status, data, _ = client.request("GET", "/nope")
    assert status == 404 and data == {"error": "no such page or API route: GET /nope"}
    status, data, headers = client.request("PUT", "/api/info")
    assert status == 405 and data == {"error": "method not allowed: PUT /api/info (it answers GET)"}
    assert headers["allow"] == "GET"
    for path in {r.path for r in client.app.routes}:
        allowed = set().union(*(r.methods for r in client.app.routes if r.path == path))
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - allowed:
            status, data, _ = client.request(method, _fill(path, {"tune_id": "1", "name": "studio.js"}), {})
            assert status == 405 and set(data) == {"error"} and "method not allowed" in data["error"], (method, path)


@pytest.mark.parametrize("tune_id", [2**63, 2**64, 0, -1])
def test_tune_ids_out_of_range_are_refused(client, tune_id):
    msg = f"must be a whole number from 1 to {MAX_ID}, got {tune_id}"
    for method, path, body in [("GET", f"/api/tunes/{tune_id}", None), ("GET", f"/api/tunes/{tune_id}/abc", None),
                               ("GET", f"/api/tunes/{tune_id}/midi", None), ("DELETE", f"/api/tunes/{tune_id}", None),
                               ("PATCH", f"/api/tunes/{tune_id}", {"title": "x"}),
                               ("POST", "/api/delete", {"ids": [tune_id]}), ("POST", "/api/export", {"ids": [tune_id]}),
                               ("POST", "/api/inspect", {"id": tune_id}), ("POST", "/api/inspect/units", {"id": tune_id}),
                               ("POST", "/api/intervene", {"id": tune_id, "units": "1:1"})]:
        status, data, _ = client.request(method, path, body)
        assert status == 400 and msg in data["error"], (method, path, status, data)


def test_search_offset_and_text_are_capped(client):
    status, data, _ = client.request("GET", "/api/tunes", query="offset=99999999999999999999")
    assert status == 400 and data["error"] == "offset must be in 0..1000000000, got 99999999999999999999"
    status, data, _ = client.request("GET", "/api/tunes", query="q=" + LONG)
    assert status == 400 and data["error"] == "q: the search text has at most 500 characters, got 50000"
    status, data, _ = client.request("GET", "/api/tunes", query="meter=" + LONG)
    assert status == 400 and data["error"] == "meter: at most 100 characters, got 50000"
    assert client.request("GET", "/api/tunes", query="q=" + "x" * 500 + "&offset=1000000000")[0] == 200


def test_floats_must_be_finite_and_booleans_are_no_numbers(client):
    for field in ("temperature", "top_p"):
        for raw in (b"NaN", b"Infinity", b"-Infinity"):
            body = b'{"%s": %s}' % (field.encode(), raw)
            status, data, _ = client.request("POST", "/api/generate", body)
            assert status == 422 and data["error"] == f"{field}: must be a finite number (not NaN or infinity)", data
    status, data, _ = client.request("GET", f"/api/tunes/{client.tid}/midi", query="tempo=nan")
    assert status == 400 and data["error"] == "tempo must be a finite number, got nan"
    for field in ("num_tunes", "max_tokens", "seed", "top_k"):
        status, data, _ = client.request("POST", "/api/generate", {field: True})
        assert status == 422 and data["error"] == f"{field}: Input should be a valid integer, got true", data
    status, data, _ = client.request("POST", "/api/delete", {"ids": [True]})
    assert status == 422 and "ids.0: Input should be a valid integer" in data["error"]
    status, data, _ = client.request("POST", "/api/inspect", {"id": client.tid, "k": True})
    assert status == 422 and "k: Input should be a valid integer" in data["error"]


def test_a_bad_key_for_a_tune_is_refused(client):
    status, data, _ = client.request("GET", f"/api/tunes/{client.tid}", query="key=H")
    assert status == 400 and "H" in data["error"]
    assert client.request("GET", f"/api/tunes/{client.tid}", query="key=D")[1]["key"] == "D"
