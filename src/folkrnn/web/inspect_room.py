"""The Inspect room: the model's probability of each token of a tune (`/api/inspect`), a
layer's units under it and their ranking by a musical label (`/api/inspect/units`), and
an intervention on units, the tune made again without and with it (`/api/intervene`).

Units, interventions and rankings are `folkrnn.interp`'s; hooks live on the shared model,
one hooked request per model at a time (`Studio.hooked`).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import replace

from fastapi import APIRouter

from folkrnn.errors import FolkRNNError
from folkrnn.interp.interventions import Intervention, parse_unit_range, parse_unit_specs, unit_means
from folkrnn.vocab import EOS
from folkrnn.web.archive import NewTune, Query
from folkrnn.web.engine import Cancelled, Compose, alternatives_in_key, compose_config, token_probabilities, tokens_in_key
from folkrnn.web.limits import Busy
from folkrnn.web.schemas import InspectBody, InterveneBody, UnitsBody
from folkrnn.web.studio import StudioDep, tune_or_404
from folkrnn.web.units import (
    LABEL_NAMES,
    check_layer,
    first_difference,
    rank_by_label,
    regenerate,
    tune_ids,
    unit_values,
    verdict,
)

router = APIRouter()


def _inspect_tokens(studio, body, entry) -> list[str]:
    """The tune a request names: an archive id, tokens or ABC (exactly one)."""
    given = [x for x in (body.id, body.tokens, body.abc) if x is not None]
    if len(given) != 1:
        raise FolkRNNError("inspect one tune: give exactly one of id, tokens or abc")
    if body.id is not None:
        toks = tune_or_404(studio, body.id, "id").tokens
    elif body.tokens is not None:
        toks = body.tokens.split()
    else:
        from folkrnn.abc import tune_to_tokens

        toks = tune_to_tokens(body.abc, strict=False)
    if not toks:
        raise FolkRNNError("the tune has no tokens")
    if len(toks) > studio.limits.max_tokens:
        raise FolkRNNError(f"the tune has {len(toks)} tokens, over the limit of {studio.limits.max_tokens}")
    entry.ckpt.vocab.encode(toks, where="the tune")  # names an unknown token
    return toks


def _inspect_key(studio, body) -> str:
    """The tonic the tune is shown in: the request's, else the archive tune's key, the
    pasted ABC's K:, C for tokens (which are in C)."""
    from folkrnn.abc import parse_key, read_abc

    if body.key is not None:
        return parse_key(body.key).name
    if body.id is not None:
        return tune_or_404(studio, body.id, "id").settings.get("key") or "C"
    if body.abc is not None:
        return next((r.tonic for r in read_abc(body.abc, strict=False)), None) or "C"
    return "C"


@router.post("/api/inspect")
def inspect_tune(body: InspectBody, studio: StudioDep):
    entry = studio.model(body.model)
    toks = _inspect_tokens(studio, body, entry)
    key = _inspect_key(studio, body)
    steps = token_probabilities(entry.ckpt.model, entry.ckpt.vocab, toks, body.k)
    nll = -sum(math.log(max(s.p, 1e-300)) for s in steps)
    # the tokens as the score writes them in the tune's key (the model reads them in C)
    shown = tokens_in_key([*toks, EOS], key)
    if shown is None:
        key, shown = "C", [*toks, EOS]
    out = []
    for t, s in enumerate(steps):
        alts = [a for a, _ in s.alternatives]
        out.append({"token": s.token, "p": s.p, "rank": s.rank, "alternatives": s.alternatives,
                    "shown": shown[t], "alternatives_shown": alternatives_in_key(toks, t, alts, key) or alts})
    return {"model": entry.id, "tokens": toks, "key": key, "shown": shown[:-1], "mean_nll": nll / len(steps),
            "steps": out}


@router.post("/api/inspect/units")
def inspect_units(body: UnitsBody, studio: StudioDep):
    entry = studio.model(body.model)
    model, vocab = entry.ckpt.model, entry.ckpt.vocab
    cfg, limits = model.config, studio.limits
    check_layer(body.layer, cfg.num_layers)
    top = body.top if body.top is not None else min(16, limits.max_units)
    if body.units is None and top > limits.max_units:
        raise FolkRNNError(f"top: at most {limits.max_units} units, got {top}")
    if body.archive_tunes > limits.max_rank_tunes:
        raise FolkRNNError(f"archive_tunes: at most {limits.max_rank_tunes}, got {body.archive_tunes}")
    toks = _inspect_tokens(studio, body, entry)
    chosen = parse_unit_range(body.units, cfg.hidden_size, limits.max_units) if body.units is not None else None
    tunes = [toks]
    if body.archive_tunes:
        others = studio.archive.search(Query(model=entry.id, limit=body.archive_tunes + 1))
        tunes += [r.tokens for r in others if r.id != body.id][: body.archive_tunes]
    with studio.hooked(entry):
        per_tune = unit_values(model, vocab, tunes, body.layer, body.quantity)
        values = per_tune[0]  # (T, hidden)
        try:
            ranking = rank_by_label(vocab, tunes, per_tune, body.label, max(top, 20))
            rank_error = None
        except FolkRNNError as e:
            if chosen is None:
                raise
            ranking, rank_error = None, str(e)
    units = chosen if chosen is not None else ranking.units[:top]
    v = values[:, units].T  # (units, T)
    return {
        "model": entry.id, "tokens": toks, "layer": body.layer, "quantity": body.quantity,
        "label": body.label, "label_name": LABEL_NAMES[body.label], "chosen_by": "list" if chosen is not None else "label",
        "units": units, "values": [[round(float(x), 5) for x in row] for row in v],
        "low": round(float(v.min()), 5), "high": round(float(v.max()), 5),
        "scores": None if ranking is None else [ranking.all_scores[u] for u in units],
        "ranking": None if ranking is None else {"units": ranking.units, "scores": ranking.scores,
                                                 "tokens": ranking.tokens, "tunes": ranking.tunes,
                                                 "groups": ranking.groups},
        "ranking_error": rank_error,
    }


@router.post("/api/intervene")
def intervene(body: InterveneBody, studio: StudioDep):
    """Tune `index` of the settings (an archive tune's, or a Compose form's) made again on
    the hooked step without and with the intervention; both are kept in the archive."""
    limits = studio.limits
    if (body.id is None) == (body.settings is None):
        raise FolkRNNError("intervene on one tune: give either id (an archive tune) or settings (a Compose form)")
    rec = None
    if body.id is not None:
        rec = tune_or_404(studio, body.id, "id")
        if rec.model not in studio.models:
            raise FolkRNNError(f"tune {rec.id} was made by model {rec.model!r}, which this server was not started with")
        entry = studio.models[rec.model]
        form = Compose(**{k: v for k, v in rec.settings.items() if k in Compose.__dataclass_fields__ and k != "model"},
                       model=entry.id)
        seed, index = rec.seed, rec.index
    else:
        form, entry = studio.check_form(body.settings)
        seed = form.seed if form.seed is not None else secrets.randbelow(2**32)
        index = body.index
        if index >= form.num_tunes:
            raise FolkRNNError(f"index: the settings make {form.num_tunes} tune(s), so index must be below that, got {index}")
    model, vocab = entry.ckpt.model, entry.ckpt.vocab
    cfg = compose_config(form, vocab, seed)
    if cfg.max_length > limits.max_tokens:
        cfg = replace(cfg, max_length=limits.max_tokens)
    iv = Intervention(body.quantity, body.ablation,
                      parse_unit_specs(body.units, model.config.num_layers, model.config.hidden_size, limits.max_units))
    deadline = time.monotonic() + limits.request_timeout_s
    try:
        with studio.hooked(entry):
            base = regenerate(model, vocab, cfg, index, deadline=deadline)
            means = unit_means(model, tune_ids(vocab, base.tokens), iv) if iv.ablation == "mean" else None
            changed = regenerate(model, vocab, cfg, index, iv.hooks(means), deadline=deadline)
    except Cancelled:
        raise Busy(503, f"the intervention ran past {limits.request_timeout_s:g} s; try a shorter tune") from None
    settings = {**form.to_dict(), "seed": seed}

    def keep(tune, extra: dict, title: str | None):
        tid = studio.archive.add(NewTune(entry.id, seed, index, {**settings, **extra}, tune.tokens,
                                         next((t for t in tune.tokens[:1] if t.startswith("M:")), None),
                                         next((t for t in tune.tokens[1:2] if t.startswith("K:")), None),
                                         tune.truncated, tune.logprob))
        if title:
            studio.archive.update(tid, title=title)
        return studio.archive.get(tid)

    same = None if rec is None else list(base.tokens) == list(rec.tokens)
    base_rec = rec if same else keep(base, {}, None)
    name = f"tune {rec.id}" if rec is not None else f"seed {seed}, tune {index + 1}"
    iv_rec = keep(changed, {"intervention": str(iv)}, f"{name} with {iv}")
    return {
        "intervention": str(iv), "seed": seed, "index": index, "same_as_original": same,
        "changed": list(base.tokens) != list(changed.tokens),
        "first_difference": first_difference(base.tokens, changed.tokens),
        "baseline": {**studio.tune_view(base_rec), "verdict": verdict(base.tokens)},
        "intervened": {**studio.tune_view(iv_rec), "verdict": verdict(changed.tokens)},
    }
