"""Inspect's look at units: which units, their values under a tune, a ranking by a
musical label, and an intervention (ablate or clamp) on generation.

Layers count 1..num_layers here as everywhere a user reads them (the hook names are
0-based, see `folkrnn.hooks`). A tune's column t is token t; the value shown there is
the one after the model has read token t (position t + 1 of `<s> t0 t1 ...`), which is
the state that predicts token t + 1: "bar line next" is read where it is predicted.

Unit lists, interventions and the ranking are the interpretability toolkit's
(`folkrnn.interp.interventions`: `parse_unit_specs`, `parse_unit_range`, `Intervention`,
`unit_means`; `folkrnn.interp.probes.rank_units`): for each unit, the share of its variance
over the labelled tokens that the label explains (eta², between-group over total sum of
squares; for a yes/no label the squared point-biserial correlation). With few tokens and
many label values (position in bar) it is biased upwards; rank with a few archive tunes
besides the one shown. This module adds what is the studio's own: the labels it offers,
values under a tune, and making a tune again on the hooked step.

Nothing here knows about HTTP; the Inspect room (`folkrnn.web.inspect_room`) calls it in
worker threads, holding the model's hook lock (hooks are attached to the shared model for
the request).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import hook_name
from folkrnn.interp import probes
from folkrnn.model import FolkRNN
from folkrnn.sample import HookedStepper, SampleConfig, Tune
from folkrnn.vocab import BOS, EOS, Vocabulary

log = logging.getLogger(__name__)

QUANTITIES = ("h", "c", "i", "f", "g", "o")
LABELS = ("bar_next", "position", "section", "bar_in_section")
LABEL_NAMES = {"bar_next": "a bar line comes next", "position": "position in the bar",
               "section": "section", "bar_in_section": "bar within the section"}


def check_quantity(quantity: str) -> str:
    if quantity not in QUANTITIES:
        raise FolkRNNError(f"quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
    return quantity


def check_layer(layer: int, num_layers: int) -> int:
    if not 1 <= layer <= num_layers:
        raise FolkRNNError(f"layer {layer}: this model has layers 1 to {num_layers}")
    return layer


# -- values under a tune -----------------------------------------------------------------------
def tune_ids(vocab: Vocabulary, tokens: Sequence[str]) -> list[int]:
    """`<s>` and the ids of the tokens (a `<s>` or `</s>` among them left out)."""
    return [vocab.bos, *vocab.encode([t for t in tokens if t not in (BOS, EOS)], where="the tune")]


def unit_values(model: FolkRNN, vocab: Vocabulary, tunes: Sequence[Sequence[str]], layer: int, quantity: str) -> list[torch.Tensor]:
    """Per tune, the chosen quantity of a layer after each token: (T_k, hidden) float32,
    row t = after reading token t (`run_with_cache`'s position t + 1)."""
    check_quantity(quantity)
    check_layer(layer, model.config.num_layers)
    name = hook_name(quantity, layer)
    cache = model.run_with_cache([tune_ids(vocab, t) for t in tunes], names=[name], dtype=torch.float32)
    vals = cache[name]
    return [vals[cache.tune_rows(k)][1:] for k in range(len(tunes))]


def token_labels(tokens: Sequence[str], label: str) -> list[object | None]:
    """The label of each token (None where it does not apply: the header, a bar line for
    `position`, tokens outside a section)."""
    from folkrnn.rhythm import label_tokens

    if label not in LABELS:
        raise FolkRNNError(f"label must be one of {', '.join(LABELS)}, got {label!r}")
    toks = [t for t in tokens if t not in (BOS, EOS)]
    out: list[object | None] = []
    for lab in label_tokens(toks):
        if lab.bar < 0:
            out.append(None)
        elif label == "bar_next":
            out.append(lab.next_is_bar)
        elif label == "position":
            out.append(None if lab.token in ("|", "|:", ":|", "||", "|1", "|2", ":|:", "::", "[1", "[2") or
                       lab.bar_length is None else str(lab.position))
        elif label == "section":
            out.append(lab.section if lab.section >= 0 else None)
        else:
            out.append(lab.bar_in_section if lab.bar_in_section >= 0 else None)
    return out


@dataclass(frozen=True)
class LabelRanking:
    """`folkrnn.interp.probes.rank_units` of one layer by a label, as the view shows it."""

    label: str
    units: list[int]  # best first, `top` of them
    scores: list[float]  # their eta², rounded
    tokens: int  # tokens the label applied to
    tunes: int
    groups: int  # distinct label values
    all_scores: list[float]  # every unit's eta², by unit number


def rank_by_label(vocab: Vocabulary, tunes: Sequence[Sequence[str]], values: Sequence[torch.Tensor], label: str,
                  top: int) -> LabelRanking:
    """Rank a layer's units by eta² of `label` over the labelled tokens of `tunes`
    (`values`: their `unit_values`), with `folkrnn.interp.probes.rank_units`."""
    rows, labs, toks = [], [], []
    for tune, v in zip(tunes, values):
        ids = tune_ids(vocab, tune)[1:]
        for t, lab in enumerate(token_labels(tune, label)):
            if lab is not None:
                rows.append(v[t])
                labs.append(lab)
                toks.append(ids[t])
    codes, names = probes.encode_labels(labs)
    if len(names) < 2:
        raise FolkRNNError(f"the label '{LABEL_NAMES[label]}' takes fewer than two values in the tune(s): nothing to rank by")
    r = probes.rank_units(torch.stack(rows).numpy(), codes, np.array(toks), np.random.default_rng(0))
    order = r.top(top, by="eta")
    return LabelRanking(label, order, [round(float(r.eta[u]), 4) for u in order], len(rows), len(tunes), len(names),
                        [round(float(x), 4) for x in r.eta])


# -- interventions -------------------------------------------------------------------------------
def regenerate(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig, index: int, hooks: Sequence[tuple] = (),
               cancel: threading.Event | None = None, deadline: float | None = None) -> Tune:
    """Tune `index` of `cfg` made again on the hooked step, with `hooks` active (removed
    on the way out, whatever happens): the same draws as `sample` and the studio's
    batcher, so without hooks it is the same tune."""
    from folkrnn.web.engine import TuneStream

    model.eval()
    stream = TuneStream(HookedStepper(model), vocab, cfg, index, cancel, deadline)
    with model.hooks(list(hooks)):
        for _ in stream:
            pass
    assert stream.tune is not None
    return stream.tune


def first_difference(a: Sequence[str], b: Sequence[str]) -> int | None:
    """The first position where two token lists differ (None if equal).

    >>> first_difference("a b c".split(), "a x c".split()), first_difference(["a"], ["a", "b"]), first_difference([], [])
    (1, 1, None)
    """
    for k, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return k
    return None if len(a) == len(b) else min(len(a), len(b))


def verdict(tokens: Sequence[str]) -> dict:
    """`folkrnn evaluate`'s verdicts on one tune: bars right, repeats, form."""
    from folkrnn.evaluate.tune import analyse_tune

    r = analyse_tune(list(tokens))
    return {"bars": r.bars, "bars_right": r.bars_right, "all_bars_right": r.all_bars_right, "repeats_ok": r.repeats_ok,
            "pattern": r.pattern, "tokens": r.tokens}


__all__ = [
    "LABELS", "LABEL_NAMES", "LabelRanking", "QUANTITIES", "check_layer", "check_quantity", "first_difference",
    "rank_by_label", "regenerate", "token_labels", "tune_ids", "unit_values", "verdict",
]
