"""Inspect's look at units: which units, their values under a tune, a ranking by a
musical label, and an intervention (ablate or clamp) on generation.

Layers count 1..num_layers here as everywhere a user reads them (the hook names are
0-based, see `folkrnn.hooks`). A tune's column t is token t; the value shown there is
the one after the model has read token t (position t + 1 of `<s> t0 t1 ...`), which is
the state that predicts token t + 1: "bar line next" is read where it is predicted.

The ranking is the simple one this view needs, computed here: for each unit, the share
of its variance over the tokens that the label explains (the correlation ratio eta²,
between-group sum of squares over total sum of squares; for a yes/no label it is the
squared point-biserial correlation). With few tokens and many label values (position in
bar) it is biased upwards; rank with a few archive tunes besides the one shown.

Nothing here knows about HTTP; `folkrnn.web.app` calls it in worker threads, holding
the model's hook lock (hooks are attached to the shared model for the request).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import hook_name
from folkrnn.model import FolkRNN
from folkrnn.sample import HookedStepper, SampleConfig, Tune
from folkrnn.vocab import BOS, EOS, Vocabulary

log = logging.getLogger(__name__)

QUANTITIES = ("h", "c", "i", "f", "g", "o")
LABELS = ("bar_next", "position", "section", "bar_in_section")
LABEL_NAMES = {"bar_next": "a bar line comes next", "position": "position in the bar",
               "section": "section", "bar_in_section": "bar within the section"}
ABLATIONS = ("zero", "mean")
CLAMP_BOUND = 10.0  # |value| of a clamp; gates live in [0, 1], h and g in [-1, 1], c mostly within a few units

_ITEM = re.compile(r"^(?:(?P<layer>\d+):)?(?P<unit>\d+)(?:=(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?$")


@dataclass(frozen=True)
class UnitSpec:
    """One unit of an intervention: layer (1-based), unit (0-based), clamp value (None: ablate)."""

    layer: int
    unit: int
    value: float | None = None

    def __str__(self) -> str:
        return f"{self.layer}:{self.unit}" + ("" if self.value is None else f"={self.value:g}")


def parse_units(text: str, num_layers: int, hidden: int, max_units: int = 64) -> tuple[UnitSpec, ...]:
    """`3:12,301 2:77=0.9` -> units; an item without `L:` keeps the layer before it.

    >>> [str(u) for u in parse_units("3:12,301 2:77=0.9", 3, 512)]
    ['3:12', '3:301', '2:77=0.9']
    >>> [str(u) for u in parse_units("1:5=-0.5; 7", 3, 16)]
    ['1:5=-0.5', '1:7']
    >>> parse_units("4:1", 3, 512)
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: units: layer 4 in '4:1': this model has layers 1 to 3
    >>> parse_units("12", 3, 512)
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: units: '12' has no layer: write it as LAYER:UNIT, e.g. 3:12
    """
    items = [x for x in re.split(r"[\s,;]+", text.strip()) if x]
    if not items:
        raise FolkRNNError("units: give at least one, e.g. 3:12,301 or 2:77=0.9")
    out: list[UnitSpec] = []
    layer = None
    for item in items:
        m = _ITEM.match(item)
        if m is None:
            raise FolkRNNError(f"units: cannot read {item!r}: write LAYER:UNIT or LAYER:UNIT=VALUE, e.g. 3:12 or 2:77=0.9")
        if m["layer"] is not None:
            layer = int(m["layer"])
            if not 1 <= layer <= num_layers:
                raise FolkRNNError(f"units: layer {layer} in {item!r}: this model has layers 1 to {num_layers}")
        if layer is None:
            raise FolkRNNError(f"units: {item!r} has no layer: write it as LAYER:UNIT, e.g. 3:12")
        unit = int(m["unit"])
        if not 0 <= unit < hidden:
            raise FolkRNNError(f"units: unit {unit} in {item!r}: layers have units 0 to {hidden - 1}")
        value = None
        if m["value"] is not None:
            value = float(m["value"])
            if not (math.isfinite(value) and abs(value) <= CLAMP_BOUND):
                raise FolkRNNError(f"units: clamp value {m['value']} in {item!r} must be within ±{CLAMP_BOUND:g}")
        spec = UnitSpec(layer, unit, value)
        if any(u.layer == layer and u.unit == unit for u in out):
            raise FolkRNNError(f"units: {layer}:{unit} is given twice")
        out.append(spec)
    if len(out) > max_units:
        raise FolkRNNError(f"units: at most {max_units} units at once, got {len(out)}")
    return tuple(out)


def parse_unit_list(text: str, hidden: int, max_units: int = 64) -> list[int]:
    """Units of one layer for a heatmap: `12, 301 5-9` (ranges inclusive).

    >>> parse_unit_list("12, 3 5-7", 16)
    [12, 3, 5, 6, 7]
    >>> parse_unit_list("3-1", 16)
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: units: range '3-1' runs backwards
    """
    out: list[int] = []
    for item in (x for x in re.split(r"[\s,;]+", text.strip()) if x):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if m is None:
            raise FolkRNNError(f"units: cannot read {item!r}: give unit numbers (0 to {hidden - 1}) or ranges like 5-9")
        a, b = int(m[1]), int(m[2] or m[1])
        if b < a:
            raise FolkRNNError(f"units: range {item!r} runs backwards")
        if b >= hidden:
            raise FolkRNNError(f"units: unit {b} in {item!r}: layers have units 0 to {hidden - 1}")
        if b - a + 1 + len(out) > max_units:
            raise FolkRNNError(f"units: at most {max_units} units at once")
        out += [u for u in range(a, b + 1) if u not in out]
    if not out:
        raise FolkRNNError("units: give at least one unit number")
    return out


def check_quantity(quantity: str) -> str:
    if quantity not in QUANTITIES:
        raise FolkRNNError(f"quantity must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
    return quantity


def check_layer(layer: int, num_layers: int) -> int:
    if not 1 <= layer <= num_layers:
        raise FolkRNNError(f"layer {layer}: this model has layers 1 to {num_layers}")
    return layer


# -- values under a tune -----------------------------------------------------------------------
def _ids(vocab: Vocabulary, tokens: Sequence[str]) -> list[int]:
    return [vocab.bos, *vocab.encode([t for t in tokens if t not in (BOS, EOS)], where="the tune")]


def unit_values(model: FolkRNN, vocab: Vocabulary, tunes: Sequence[Sequence[str]], layer: int, quantity: str) -> list[torch.Tensor]:
    """Per tune, the chosen quantity of a layer after each token: (T_k, hidden) float32,
    row t = after reading token t (`run_with_cache`'s position t + 1)."""
    check_quantity(quantity)
    check_layer(layer, model.config.num_layers)
    name = hook_name(quantity, layer)
    cache = model.run_with_cache([_ids(vocab, t) for t in tunes], names=[name], dtype=torch.float32)
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


def variance_explained(x: torch.Tensor, groups: Sequence[object]) -> torch.Tensor:
    """x (N, units), one group label per row -> (units,): between-group over total sum of
    squares (eta²), 0 for a unit that does not vary.

    >>> x = torch.tensor([[0., 1.], [0., -1.], [2., 1.], [2., -1.]])
    >>> variance_explained(x, ["a", "a", "b", "b"]).tolist()
    [1.0, 0.0]
    """
    keys = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    g = torch.tensor([keys[v] for v in groups], dtype=torch.long)
    x = x.double()
    mean = x.mean(0)
    total = ((x - mean) ** 2).sum(0)
    n = torch.bincount(g, minlength=len(keys)).double()
    sums = torch.zeros(len(keys), x.shape[1], dtype=torch.float64).index_add_(0, g, x)
    between = (sums**2 / n[:, None].clamp(min=1)).sum(0) - x.shape[0] * mean**2
    score = torch.where(total > 1e-12, between / total.clamp(min=1e-300), torch.zeros_like(total))
    return score.clamp(0, 1).float()


@dataclass(frozen=True)
class Ranking:
    """Units of one layer ranked by how much of their variance a label explains."""

    label: str
    units: list[int]
    scores: list[float]
    tokens: int  # tokens the label applied to
    tunes: int
    groups: int  # distinct label values
    all_scores: list[float]  # every unit's score, by unit number


def rank_units(model: FolkRNN, vocab: Vocabulary, tunes: Sequence[Sequence[str]], layer: int, quantity: str,
               label: str, top: int, values: Sequence[torch.Tensor] | None = None) -> Ranking:
    """Rank the layer's units by eta² of `label` over the labelled tokens of `tunes`
    (`values`: `unit_values` of the tunes, when the caller has them already)."""
    if values is None:
        values = unit_values(model, vocab, tunes, layer, quantity)
    rows, groups = [], []
    for toks, v in zip(tunes, values):
        for t, lab in enumerate(token_labels(toks, label)):
            if lab is not None:
                rows.append(v[t])
                groups.append(lab)
    if len(set(groups)) < 2:
        raise FolkRNNError(f"the label '{LABEL_NAMES[label]}' takes fewer than two values in the tune(s): nothing to rank by")
    score = variance_explained(torch.stack(rows), groups)
    order = torch.argsort(score, descending=True, stable=True)[:top]
    return Ranking(label, order.tolist(), [round(float(score[u]), 4) for u in order], len(rows), len(tunes),
                   len(set(groups)), [round(float(x), 4) for x in score])


# -- interventions -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Intervention:
    """Ablate (`zero`, or `mean` over the tune without the intervention) or clamp (the
    units given `=value`) one quantity of the listed units, at every step."""

    quantity: str
    ablation: str
    units: tuple[UnitSpec, ...]

    def __str__(self) -> str:
        return f"{self.quantity} {self.ablation} " + ",".join(str(u) for u in self.units)

    def hooks(self, means: dict[tuple[int, int], float] | None = None) -> list[tuple]:
        """(hook name, fn) pairs; `means[(layer, unit)]` for a mean ablation."""
        pairs = []
        for layer in sorted({u.layer for u in self.units}):
            mine = [u for u in self.units if u.layer == layer]
            idx = torch.tensor([u.unit for u in mine])
            vals = torch.tensor([u.value if u.value is not None else
                                 (means[(layer, u.unit)] if self.ablation == "mean" else 0.0) for u in mine])

            def fn(value, ctx, idx=idx, vals=vals):
                value = value.clone()
                value[:, idx] = vals.to(value.dtype)
                return value

            pairs.append((hook_name(self.quantity, layer), fn))
        return pairs


def unit_means(model: FolkRNN, vocab: Vocabulary, tokens: Sequence[str], iv: Intervention) -> dict[tuple[int, int], float]:
    """Each listed unit's mean value of the quantity over the tune's steps (`<s>` included)."""
    names = {u.layer: hook_name(iv.quantity, u.layer) for u in iv.units}
    cache = model.run_with_cache([_ids(vocab, tokens)], names=list(names.values()), dtype=torch.float32)
    return {(u.layer, u.unit): float(cache[names[u.layer]][:, u.unit].mean()) for u in iv.units}


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
    "ABLATIONS", "CLAMP_BOUND", "Intervention", "LABELS", "LABEL_NAMES", "QUANTITIES", "Ranking", "UnitSpec",
    "first_difference", "parse_unit_list", "parse_units", "rank_units", "regenerate", "token_labels", "unit_means",
    "unit_values", "variance_explained", "verdict",
]
