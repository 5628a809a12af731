"""Inspect's units on a real loopback server with a tiny model: heatmaps, label rankings, interventions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from studio_util import Server, call, make_studio, sse_events

from folkrnn.hooks import any_hooks, hook_name
from folkrnn.web.limits import Limits
from folkrnn.web.units import token_labels


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = Server(make_studio(tmp_path_factory.mktemp("db") / "studio.sqlite", Limits(max_tunes=5, max_tokens=400, max_units=8),
                           wired=True))
    yield s
    s.stop()


def _generate(srv, **body) -> dict:
    status, raw, _ = call(srv.url + "/api/generate", "POST", {"model": "tiny", **body})
    assert status == 200
    return next(d for e, d in sse_events(raw) if e == "tune")


def _model(srv):
    return srv.studio.models["tiny"].ckpt


def _eta_squared(x: np.ndarray, groups: list) -> np.ndarray:
    """Reference: each column's between-group sum of squares over its total, group by group."""
    mean = x.mean(0)
    between = sum(((x[[g == k for g in groups]].mean(0) - mean) ** 2) * groups.count(k) for k in set(groups))
    return between / ((x - mean) ** 2).sum(0)


def test_heatmap_values_are_run_with_caches(srv):
    tune = _generate(srv, meter="6/8", seed=3)
    status, out, _ = call(srv.url + "/api/inspect/units", "POST", {"id": tune["id"], "layer": 1, "quantity": "f", "units": "3, 0-1"})
    assert status == 200, out
    ck = _model(srv)
    ids = [ck.vocab.bos, *ck.vocab.encode(tune["tokens"])]
    cache = ck.model.run_with_cache([ids], names=[hook_name("f", layer=1)], dtype=torch.float32)
    want = cache.get("f", layer=1)[1:, [3, 0, 1]].T  # column t: after reading token t
    assert out["units"] == [3, 0, 1] and out["chosen_by"] == "list"
    assert len(out["values"][0]) == len(tune["tokens"]) == len(out["tokens"])
    assert torch.allclose(torch.tensor(out["values"]), want, atol=1e-5)
    assert len(out["scores"]) == 3 and all(0 <= x <= 1 for x in out["scores"])  # one score per unit shown
    assert not any_hooks(ck.model)


def test_top_units_by_label_are_ranked_by_variance_explained(srv):
    tune = _generate(srv, meter="4/4", seed=4)
    status, out, _ = call(srv.url + "/api/inspect/units", "POST",
                          {"tokens": " ".join(tune["tokens"]), "layer": 1, "quantity": "h", "top": 4, "label": "bar_next",
                           "archive_tunes": 2})
    assert status == 200, out
    assert out["chosen_by"] == "label" and len(out["units"]) == 4 and out["ranking"]["tunes"] == 3
    scores = out["ranking"]["scores"]
    assert scores == sorted(scores, reverse=True) and out["units"] == out["ranking"]["units"][:4]
    # the score of the best unit, computed here from the cache and the labels
    ck = _model(srv)
    ids = [ck.vocab.bos, *ck.vocab.encode(tune["tokens"])]
    h = ck.model.run_with_cache([ids], names=[hook_name("h", layer=1)], dtype=torch.float32).get("h", layer=1)[1:]
    labels = token_labels(tune["tokens"], "bar_next")
    keep = [t for t, lab in enumerate(labels) if lab is not None]
    alone = _eta_squared(h[keep].double().numpy(), [labels[t] for t in keep])
    assert 0 < float(alone.max()) <= 1
    status, one, _ = call(srv.url + "/api/inspect/units", "POST",
                          {"tokens": " ".join(tune["tokens"]), "layer": 1, "quantity": "h", "top": 1, "label": "bar_next"})
    assert one["units"] == [int(alone.argmax())] and one["scores"][0] == pytest.approx(float(alone.max()), abs=1e-4)


@pytest.mark.parametrize("body, message", [
    ({"tokens": "M:4/4 K:Cmaj | C D", "layer": 2}, "layers 1 to 1"),
    ({"tokens": "M:4/4 K:Cmaj | C D", "units": "99"}, "units 0 to 15"),
    ({"tokens": "M:4/4 K:Cmaj | C D", "units": "0-15"}, "at most 8 units"),
    ({"tokens": "M:4/4 K:Cmaj | C D", "top": 9}, "at most 8 units"),
    ({"tokens": "M:4/4 K:Cmaj | C D", "archive_tunes": 50}, "at most 20"),
    ({"tokens": "M:4/4 K:Cmaj | C H"}, "vocabulary: H"),
    ({"tokens": "M:4/4 K:Cmaj C D", "label": "section"}, "fewer than two values"),
])
def test_units_requests_are_checked(srv, body, message):
    status, out, _ = call(srv.url + "/api/inspect/units", "POST", body)
    assert status == 400 and message in out["error"], out


def test_quantity_and_label_are_from_a_fixed_list(srv):
    status, out, _ = call(srv.url + "/api/inspect/units", "POST", {"tokens": "M:4/4 K:Cmaj | C", "quantity": "tanh_c"})
    assert status == 422 and "quantity" in out["error"]


def test_intervention_regenerates_with_and_without(srv):
    tune = _generate(srv, meter="6/8", mode="dorian", seed=11)
    status, out, _ = call(srv.url + "/api/intervene", "POST",
                          {"id": tune["id"], "units": "1:" + ",".join(str(u) for u in range(8)), "ablation": "zero"})
    assert status == 200, out
    assert out["same_as_original"] is True and out["baseline"]["id"] == tune["id"]
    assert out["baseline"]["tokens"] == tune["tokens"]
    assert out["changed"] and out["intervened"]["tokens"] != tune["tokens"] and out["first_difference"] is not None
    assert out["intervened"]["tokens"][:2] == ["M:6/8", "K:Cdor"]  # the same settings (prime) hold
    assert out["intervened"]["settings"]["intervention"] == "h zero " + ",".join(f"1:{u}" for u in range(8))
    assert "then the intervention" in out["intervened"]["command"]
    for side in ("baseline", "intervened"):
        v = out[side]["verdict"]
        assert 0 <= v["bars_right"] <= v["bars"] and out[side]["abc"].startswith("X:")
    # the intervened tune is kept, and plays like any other
    assert call(srv.url + f"/api/tunes/{out['intervened']['id']}/midi")[0] == 200
    assert not any_hooks(_model(srv).model)


def test_clamp_and_mean_ablation_from_settings(srv):
    settings = {"model": "tiny", "meter": "4/4", "seed": 5, "num_tunes": 2}
    first = _generate(srv, **settings)
    status, out, _ = call(srv.url + "/api/intervene", "POST",
                          {"settings": settings, "index": 0, "units": "1:0=0.9,1,2=-0.9", "ablation": "mean", "quantity": "c"})
    assert status == 200, out
    assert out["same_as_original"] is None and out["baseline"]["tokens"] == first["tokens"]
    assert out["intervention"] == "c mean 1:0=0.9,1:1,1:2=-0.9"
    status, bad, _ = call(srv.url + "/api/intervene", "POST", {"settings": settings, "index": 2, "units": "1:0"})
    assert status == 400 and "index" in bad["error"]


@pytest.mark.parametrize("body, message", [
    ({"units": "2:3"}, "layers 1 to 1"),
    ({"units": "1:16"}, "units 0 to 15"),
    ({"units": "1:3=11"}, "within ±10"),
    ({"units": "1:3=nan"}, "cannot read"),
    ({"units": "3"}, "has no layer"),
    ({"units": "1:0-8"}, "cannot read"),
    ({"units": "1:0,1,2,3,4,5,6,7,8"}, "at most 8 units"),
    ({"units": "1:3,1:3"}, "given twice"),
    ({"units": ""}, "at least one"),
])
def test_intervention_requests_are_checked(srv, body, message):
    status, out, _ = call(srv.url + "/api/intervene", "POST", {"settings": {"model": "tiny", "seed": 1}, **body})
    assert status == 400 and message in out["error"], out
    assert not any_hooks(_model(srv).model)


def test_intervention_needs_one_tune(srv):
    status, out, _ = call(srv.url + "/api/intervene", "POST", {"units": "1:0"})
    assert status == 400 and "either id" in out["error"]
    assert call(srv.url + "/api/intervene", "POST", {"id": 99999, "units": "1:0"})[0] == 404


def test_hooks_are_removed_after_an_error(tmp_path):
    """A request that runs out of time mid-generation, hooks attached: answered 503, no hook left."""
    with Server(make_studio(tmp_path / "s.sqlite", Limits(request_timeout_s=0.0), wired=True)) as s:
        status, out, _ = call(s.url + "/api/intervene", "POST", {"settings": {"model": "tiny", "seed": 1}, "units": "1:0,1"})
        assert status == 503 and "ran past" in out["error"]
        model = s.studio.models["tiny"].ckpt.model
        assert not any_hooks(model)
        assert not s.studio.hook_locks["tiny"].locked()
