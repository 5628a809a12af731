"""Hook points: names, scoped hooks, the cache, and hooked sampling / beam search / scoring
against the fast paths."""

from __future__ import annotations

import pytest
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import LAYER_POINTS, all_hook_names, hook_name, parse_hook_name
from folkrnn.sample import HookedStepper, SampleConfig, Stepper, beam_search, sample, score_tunes
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


def _ids(batch: int, time: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 137, (batch, time), generator=g)
    ids[:, 0] = V2.bos
    return ids


def _identity_everywhere(record: list | None = None):
    def fn(value, ctx):
        if record is not None:
            record.append(ctx.name)
        return value.clone()  # a replacement equal to the value: the path must not change

    return [(lambda name: True, fn)]


def test_names_are_stable_and_layers_count_from_one_for_users(tiny_model):
    names = tiny_model.hook_names()
    assert names == all_hook_names(2)
    assert names[:3] == ("input", "layers.0.hook_i_pre", "layers.0.hook_f_pre")
    assert names[-3:] == ("layers.1.hook_h", "hook_logits", "hook_probs")
    assert len(names) == 1 + 2 * len(LAYER_POINTS) + 2
    for n in names:
        point, layer = parse_hook_name(n)
        assert hook_name(point, layer) == n
    assert hook_name("tanh_c", layer=2) == "layers.1.hook_tanh_c"
    with pytest.raises(FolkRNNError):
        hook_name("h", layer=0)
    # hook points carry no state: checkpoints are unchanged
    assert not any("hook" in k or k.startswith("input") for k in tiny_model.state_dict())


def test_identity_hooks_leave_teacher_forcing_equal_to_the_fused_path(tiny_model):
    ids = _ids(3, 25)
    seen: list[str] = []
    with torch.no_grad():
        fused, _ = tiny_model(ids)
        with tiny_model.hooks(_identity_everywhere(seen)):
            hooked, _ = tiny_model.run_explicit(ids)
    assert (fused - hooked).abs().max() <= 1e-5
    assert set(seen) == set(tiny_model.hook_names()) and len(seen) == 25 * len(tiny_model.hook_names())


def test_an_ablation_changes_exactly_the_addressed_rows_and_steps(tiny_model):
    ids = _ids(4, 20, seed=1)
    calls = []

    def ablate(value, ctx):
        calls.append(ctx.step)
        rows = ctx.rows(tune=2) & (ctx.position >= 7)
        out = value.clone()
        out[rows, 3] = 0.0
        return out

    with torch.no_grad():
        base, _ = tiny_model.run_explicit(ids)
        with tiny_model.hooks([(hook_name("h", layer=1), ablate)]):
            hit, _ = tiny_model.run_explicit(ids)
    assert calls == list(range(20))  # once per step, on the whole batch
    diff = (base - hit).abs().amax(-1)  # (batch, time)
    assert diff[[0, 1, 3]].max() == 0 and diff[2, :7].max() == 0
    assert (diff[2, 7:] > 1e-4).all()


def test_hooks_are_removed_also_after_an_exception(tiny_model):
    def boom(value, ctx):
        raise RuntimeError("inside the block")

    with pytest.raises(RuntimeError):
        with tiny_model.hooks([("hook_logits", boom), (lambda n: n.endswith("hook_c"), boom)]):
            assert tiny_model.hook_points()["layers.1.hook_c"].fns
            tiny_model.run_explicit(_ids(1, 3))
    assert not any(hp.fns for hp in tiny_model.hook_points().values())
    with pytest.raises(FolkRNNError, match="no hook point named"):
        with tiny_model.hooks([("layers.0.hook_x", boom)]):
            pass
    assert not any(hp.fns for hp in tiny_model.hook_points().values())


def test_a_hook_may_not_change_the_shape(tiny_model):
    with pytest.raises(FolkRNNError, match="returned shape"):
        with tiny_model.hooks([("layers.0.hook_g", lambda v, c: v[:, :3])]):
            tiny_model.run_explicit(_ids(2, 2))


def test_the_cache_stores_what_was_asked_aligned_to_tokens(tiny_model):
    seqs = [_ids(1, n, seed=n)[0] for n in (5, 12, 1, 9)]
    cache = tiny_model.run_with_cache(seqs, names=["layers.1.hook_h", "layers.0.hook_f", "hook_probs"], dtype=torch.float16)
    assert cache.names == ("layers.0.hook_f", "layers.1.hook_h", "hook_probs")  # the stable order
    assert all(v.dtype == torch.float16 for v in cache.values.values())
    assert len(cache) == 27 and cache["hook_probs"].shape == (27, 137)  # padded steps are not stored
    with pytest.raises(FolkRNNError, match="holds no"):
        cache["layers.0.hook_c"]
    for k, s in enumerate(seqs):
        rows = cache.tune_rows(k)
        assert cache.position[rows].tolist() == list(range(len(s)))
        assert torch.equal(cache.token[rows], s)
        with torch.no_grad():
            top, _ = tiny_model.hidden(s.unsqueeze(0))
            probs = torch.softmax(tiny_model.out(top)[0], -1)
        assert (cache.get("h", layer=2)[rows].float() - top[0]).abs().max() <= 2e-3  # fp16 rounding
        assert (cache["hook_probs"][rows].float() - probs).abs().max() <= 1e-3
    unit = cache.get("f", layer=1, unit=5)
    assert unit.shape == (27,)
    at3 = cache.select(cache.where(position=3))
    assert at3.tune.tolist() == [0, 1, 3] and at3["layers.0.hook_f"].shape == (3, 16)
    full = tiny_model.run_with_cache(seqs, names=None, dtype=torch.float32, batch_size=2)
    assert full.names == tiny_model.hook_names()
    assert (full.gates(1) - torch.stack([full[f"layers.0.hook_{g}"] for g in "ifgo"], 1)).abs().max() == 0
    # batching does not change values; fp32 is close to the fp16 cache
    one = tiny_model.run_with_cache(seqs, names="layers.0.hook_f", dtype=torch.float32, batch_size=1)
    assert (one["layers.0.hook_f"] - full["layers.0.hook_f"]).abs().max() <= 1e-6
    # padded tensor + lengths: the same rows
    padded = torch.zeros(4, 12, dtype=torch.long)
    for k, s in enumerate(seqs):
        padded[k, : len(s)] = s
    again = tiny_model.run_with_cache(padded, names="layers.0.hook_f", dtype=torch.float32, lengths=torch.tensor([5, 12, 1, 9]))
    assert torch.equal(again["layers.0.hook_f"], one["layers.0.hook_f"]) or (again["layers.0.hook_f"] - one["layers.0.hook_f"]).abs().max() <= 1e-6


def _tunes(ts):
    return [(t.tokens, t.truncated) for t in ts]


def test_hooked_sampling_with_identity_hooks_gives_the_fast_paths_tunes(tiny_model):
    cfg = SampleConfig(num_tunes=6, seed=3, max_length=50, batch_size=4, prime=("M:6/8", "K:*", "|:"))
    fast = list(sample(tiny_model, V2, cfg))
    hooked = list(sample(tiny_model, V2, cfg, hooks=_identity_everywhere()))
    assert _tunes(fast) == _tunes(hooked)
    assert [t.logprob for t in fast] == pytest.approx([t.logprob for t in hooked], abs=1e-4)
    assert not any(hp.fns for hp in tiny_model.hook_points().values())  # removed when the generator ended
    # the step functions themselves agree to 1e-5
    ids = _ids(5, 30, seed=4)
    fast_s, hook_s = Stepper(tiny_model), HookedStepper(tiny_model)
    sf, sh = fast_s.initial_state(5), hook_s.initial_state(5)
    with torch.inference_mode(), tiny_model.hooks(_identity_everywhere()):
        for t in range(30):
            lf, sf = fast_s(ids[:, t], sf)
            lh, sh = hook_s(ids[:, t], sh)
            assert (lf - lh).abs().max() <= 1e-5


def test_a_hook_on_tune_3_position_40_hits_exactly_that_across_pool_refills(tiny_model):
    bar = V2["|"]
    hits = []

    def force_bar(logits, ctx):
        rows = ctx.rows(tune=3, position=40)
        hits.extend(zip(ctx.tune[rows].tolist(), ctx.position[rows].tolist()))
        out = logits.clone()
        out[rows] = -1e4
        out[rows, bar] = 0.0
        return out

    model = tiny_model
    base_cfg = dict(num_tunes=7, seed=7, max_length=60)
    plain = list(sample(model, V2, SampleConfig(batch_size=7, **base_cfg)))
    assert len(plain[0].tokens) < 40 and len(plain[4].tokens) < 40  # their rows refill before tune 3 reaches 40
    assert len(plain[3].tokens) > 41 and plain[3].tokens[40] != "|"  # the hook has something to change
    results = []
    for bs in (1, 2, 3):  # rows are refilled with later tunes at different times
        hits.clear()
        got = list(sample(model, V2, SampleConfig(batch_size=bs, **base_cfg), hooks=[("hook_logits", force_bar)]))
        assert hits == [(3, 40)], bs
        results.append(_tunes(got))
    assert results[0] == results[1] == results[2]
    got = results[0]
    assert got[3][0][40] == "|" and got[3][0][:40] == plain[3].tokens[:40]
    assert [g for k, g in enumerate(got) if k != 3] == [g for k, g in enumerate(_tunes(plain)) if k != 3]


def test_beam_search_and_scoring_accept_hooks(tiny_model):
    cfg = SampleConfig(num_tunes=2, beam_width=3, max_length=25)
    assert _tunes(beam_search(tiny_model, V2, cfg)) == _tunes(beam_search(tiny_model, V2, cfg, hooks=_identity_everywhere()))
    ranks = []
    beam_search(tiny_model, V2, cfg, hooks=[("hook_logits", lambda v, c: ranks.append((c.tune.tolist(), int(c.position[0]))))])
    assert ranks[0] == ([0], 0) and ranks[1] == ([0, 1, 2], 1)
    tunes = [t.tokens for t in sample(tiny_model, V2, SampleConfig(num_tunes=3, seed=1, max_length=30))]
    plain = list(score_tunes(tiny_model, V2, tunes, batch_size=2))
    seen = []
    hooked = list(score_tunes(tiny_model, V2, tunes, batch_size=2,
                              hooks=[("hook_probs", lambda v, c: seen.append(c.rows().sum().item()))]))
    for a, b in zip(plain, hooked):
        assert a.tokens == b.tokens and max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) <= 1e-5
    assert sum(seen) == sum(len(t) + 1 for t in tunes)  # padding rows are marked, not counted
    # zeroing the top layer's h at tune 1, position 2 changes only tune 1's scores from token 2 on
    def ablate(v, c):
        out = v.clone()
        out[c.rows(tune=1, position=2)] = 0
        return out

    ident = list(score_tunes(tiny_model, V2, tunes, batch_size=2, hooks=[(hook_name("h", 2), lambda v, c: None)]))
    abl = list(score_tunes(tiny_model, V2, tunes, batch_size=2, hooks=[(hook_name("h", 2), ablate)]))
    assert abl[0].logprobs == ident[0].logprobs and abl[2].logprobs == ident[2].logprobs
    assert abl[1].logprobs[:2] == ident[1].logprobs[:2] and abl[1].logprobs[2] != ident[1].logprobs[2]


def test_a_recorder_keeps_sampled_activations_aligned_to_the_tunes(tiny_model):
    from folkrnn.hooks import Recorder

    rec = Recorder(dtype=torch.float32)
    tunes = list(sample(tiny_model, V2, SampleConfig(num_tunes=5, seed=2, max_length=40, batch_size=2),
                        hooks=rec.hooks([hook_name("h", 2), "hook_logits"])))
    cache = rec.cache()
    assert cache.names == ("layers.1.hook_h", "hook_logits")
    assert len(cache) == sum(t.length for t in tunes)
    for t in tunes:
        rows = cache.tune_rows(t.index)
        ids = [V2.bos] + V2.encode(t.tokens)
        assert cache.token[rows].tolist() == ids[: t.length]
        assert cache.position[rows].tolist() == list(range(t.length))
        ref = tiny_model.run_with_cache([torch.tensor(ids[: t.length])], names="layers.1.hook_h", dtype=torch.float32)
        assert (ref["layers.1.hook_h"] - cache["layers.1.hook_h"][rows]).abs().max() <= 1e-5


def test_a_compact_cache_derives_what_it_does_not_store(tiny_model):
    seqs = [_ids(1, n, seed=n)[0] for n in (30, 7, 18)]
    full = tiny_model.run_with_cache(seqs, dtype=torch.float32)
    compact = tiny_model.run_with_cache(seqs, dtype=torch.float32, compact=True)
    assert compact.names == full.names == tiny_model.hook_names()
    assert compact.nbytes < 0.45 * full.nbytes
    for n in full.names:
        assert (compact[n] - full[n]).abs().max() <= 1e-5, n
    half = tiny_model.run_with_cache(seqs, dtype=torch.float16, compact=True)
    assert (half["layers.1.hook_c"].float() - full["layers.1.hook_c"]).abs().max() <= 2e-2
    assert (half.select(half.where(tune=1))["layers.0.hook_h"].float() - full["layers.0.hook_h"][full.tune_rows(1)]).abs().max() <= 1e-2
    with pytest.raises(FolkRNNError, match="compact"):
        with tiny_model.hooks([("hook_logits", lambda v, c: None)]):
            tiny_model.run_with_cache(seqs, compact=True)


def test_the_cache_holds_what_active_hooks_pass_on(tiny_model):
    seqs = [_ids(1, 6, seed=9)[0]]

    def zero_at_2(value, ctx):
        out = value.clone()
        out[ctx.rows(position=2)] = 0.0
        return out

    with tiny_model.hooks([(hook_name("h", 1), zero_at_2)]):
        cache = tiny_model.run_with_cache(seqs, names=[hook_name("h", 1), hook_name("h", 2)], dtype=torch.float32)
    plain = tiny_model.run_with_cache(seqs, names=[hook_name("h", 1), hook_name("h", 2)], dtype=torch.float32)
    h1, h2 = cache.get("h", 1), cache.get("h", 2)
    assert h1[2].abs().max() == 0 and torch.equal(h1[:2], plain.get("h", 1)[:2])
    assert torch.equal(h2[:2], plain.get("h", 2)[:2]) and (h2[2] - plain.get("h", 2)[2]).abs().max() > 1e-4
