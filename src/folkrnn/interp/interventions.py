"""Interventions: hooks that change the network's values, and nudges to its input.

Every function here returns `(key, fn)` pairs for `model.hooks([...])`, `sample(...,
hooks=...)` or `score_tunes(..., hooks=...)`: the hooks live only inside that scope and
are gone afterwards (`folkrnn.hooks.scoped_hooks` removes them, also on an exception).

Value interventions on a hook point (units are 0-based within a layer; a point's value
is (batch, width) at each step):

- `zero(point, units)`, `mean(point, units, means)`, `clamp(point, units, value)`;
- `patch(point, cache)`: the value of another run at the same (tune, position);
- `add_direction(point, direction, scale)`: value + scale * direction;
- `per_row(point, masks, values, condition_of)`: a different replacement per row, the
  row's condition picked from its tune index (the ablation runner's many conditions
  in one batched run).

Input nudges act on token lists (`swap`, `drop`, `insert`), or on the one-hot input
through the `input` hook (`two_hot`: a mix of two tokens at one position).

`parse_units("3:12,301")` reads the command line's `LAYER:UNITS` (layers 1-3, hidden
state h) or `HOOK_NAME:UNITS`; `parse_clamp("2:77=0.9")` adds `=VALUE`. The studio's
lists (`3:12,301 2:77=0.9`: several layers, each unit ablated or clamped) are read by
`parse_unit_specs` into an `Intervention` on one quantity, whose `hooks()` are `clamp`s;
`parse_unit_range` reads one layer's units for a view (`12, 301 5-9`).

>>> parse_units("3:12,301")
('layers.2.hook_h', [12, 301])
>>> parse_units("layers.0.hook_c:5")
('layers.0.hook_c', [5])
>>> parse_clamp("2:77=0.9")
('layers.1.hook_h', [77], 0.9)
>>> swap(["a", "b", "c"], 1, "x"), drop(["a", "b", "c"], 1), insert(["a", "b", "c"], 1, "|")
(['a', 'x', 'c'], ['a', 'c'], ['a', '|', 'b', 'c'])
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import LAYER_POINTS, HookContext, hook_name, parse_hook_name

Pair = tuple[str, Callable[[Tensor, HookContext], Tensor | None]]


def _units(units: Sequence[int] | Tensor) -> Tensor:
    return torch.as_tensor(list(units) if not isinstance(units, Tensor) else units, dtype=torch.long)


def _check_units(value: Tensor, idx: Tensor, name: str) -> None:
    if len(idx) and (int(idx.max()) >= value.shape[-1] or int(idx.min()) < 0):
        raise FolkRNNError(f"{name} has {value.shape[-1]} units; unit {int(idx.max())} does not exist")


def zero(point: str, units: Sequence[int]) -> Pair:
    """Set `units` of `point` to 0 at every step."""
    idx = _units(units)

    def fn(value: Tensor, ctx: HookContext) -> Tensor:
        _check_units(value, idx, ctx.name)
        out = value.clone()
        out[:, idx] = 0.0
        return out

    return point, fn


def clamp(point: str, units: Sequence[int], value: float | Tensor) -> Pair:
    """Hold `units` of `point` at `value` (a number, or one per unit) at every step."""
    idx = _units(units)
    v = torch.as_tensor(value, dtype=torch.float32)

    def fn(x: Tensor, ctx: HookContext) -> Tensor:
        _check_units(x, idx, ctx.name)
        out = x.clone()
        out[:, idx] = v.to(x.dtype)
        return out

    return point, fn


def mean(point: str, units: Sequence[int], means: Tensor) -> Pair:
    """Replace `units` of `point` by their mean activation `means` ((width,), e.g. over a corpus)."""
    idx = _units(units)
    return clamp(point, idx, torch.as_tensor(means, dtype=torch.float32)[idx])


def add_direction(point: str, direction: Tensor, scale: float = 1.0) -> Pair:
    """Add `scale * direction` ((width,)) to `point` at every step."""
    d = torch.as_tensor(direction, dtype=torch.float32)

    def fn(x: Tensor, ctx: HookContext) -> Tensor:
        if d.shape[-1] != x.shape[-1]:
            raise FolkRNNError(f"direction has {d.shape[-1]} entries, {ctx.name} has {x.shape[-1]}")
        return x + scale * d.to(x.dtype)

    return point, fn


def patch(point: str, cache, units: Sequence[int] | None = None) -> Pair:
    """Replace `point` (or only its `units`) by its value in another run: `cache` is an
    `ActivationCache` holding `point` (e.g. from `run_with_cache` on other tunes, or a
    `Recorder`); a row at (tune, position) takes the cached row of the same tune and
    position. Rows the cache does not hold keep their value."""
    src = cache[point].float()
    tune, pos = cache.tune, cache.position
    n_t = int(tune.max()) + 1 if len(tune) else 0
    span = int(pos.max()) + 1 if len(pos) else 0
    lookup = torch.full((max(n_t, 1), max(span, 1)), -1, dtype=torch.long)
    lookup[tune, pos] = torch.arange(len(tune))
    idx = None if units is None else _units(units)

    def fn(x: Tensor, ctx: HookContext) -> Tensor:
        t, p = ctx.tune, ctx.position
        inside = (t < n_t) & (p < span) & (t >= 0)
        row = torch.full_like(t, -1)
        row[inside] = lookup[t[inside], p[inside]]
        have = row >= 0
        if ctx.valid is not None:
            have &= ctx.valid
        if not bool(have.any()):
            return x
        out = x.clone()
        if idx is None:
            out[have] = src[row[have]].to(x.dtype)
        else:
            out[have.nonzero()[:, 0][:, None], idx[None, :]] = src[row[have]][:, idx].to(x.dtype)
        return out

    return point, fn


def per_row(point: str, masks: Tensor, values: Tensor, condition_of: Callable[[Tensor], Tensor]) -> Pair:
    """Per-row replacement: `masks` (C, width) bool and `values` (C, width) for C conditions;
    a row of tune i gets condition `condition_of(i)` (a (batch,) long tensor; -1 = untouched):
    value * (1 - mask) + mask * values."""
    m = masks.float()
    v = values.float()

    def fn(x: Tensor, ctx: HookContext) -> Tensor:
        c = condition_of(ctx.tune)
        keep = c < 0
        c = c.clamp(min=0)
        mk = m[c]
        mk[keep] = 0.0
        return x * (1 - mk) + mk * v[c]

    return point, fn


def two_hot(a: int, b: int, weight: float, tune: int | None = None, position: int | None = None) -> Pair:
    """On the `input` hook: where the input is token `a` (at `tune`/`position` when
    given), feed `(1 - weight) * onehot(a) + weight * onehot(b)` instead."""
    if not 0.0 <= weight <= 1.0:
        raise FolkRNNError(f"a two-hot weight must be in [0, 1], got {weight}")

    def fn(x: Tensor, ctx: HookContext) -> Tensor | None:
        rows = ctx.rows(tune, position) & (x[:, a] > 0.5)
        if not bool(rows.any()):
            return None
        out = x.clone()
        out[rows, a] = 1.0 - weight
        out[rows, b] = out[rows, b] + weight
        return out

    return "input", fn


# -- input nudges on token lists ------------------------------------------------------------
def swap(tokens: Sequence[str], i: int, new: str) -> list[str]:
    """`tokens` with token i replaced by `new`."""
    out = list(tokens)
    out[i] = new
    return out


def drop(tokens: Sequence[str], i: int) -> list[str]:
    """`tokens` without token i."""
    return list(tokens[:i]) + list(tokens[i + 1:])


def insert(tokens: Sequence[str], i: int, new: str) -> list[str]:
    """`tokens` with `new` inserted before token i."""
    return list(tokens[:i]) + [new] + list(tokens[i:])


# -- command-line specs ---------------------------------------------------------------------
def _point(spec: str, what: str) -> str:
    if spec.isdigit():
        layer = int(spec)
        if layer < 1:
            raise FolkRNNError(f"{what}: layers count from 1, got {layer}")
        return hook_name("h", layer=layer)
    try:
        parse_hook_name(spec)
    except (FolkRNNError, ValueError) as e:
        raise FolkRNNError(f"{what}: {spec!r} is neither a layer number nor a hook name ({e})") from None
    return spec


def parse_units(spec: str) -> tuple[str, list[int]]:
    """`LAYER:U1,U2,..` (layer 1-based, its hidden state h) or `HOOK_NAME:U1,..` -> (hook name, units)."""
    where, sep, units = spec.rpartition(":")
    if not sep or not where or not units:
        raise FolkRNNError(f"{spec!r}: expected LAYER:UNITS, e.g. 3:12,301")
    try:
        us = [int(u) for u in units.split(",") if u.strip()]
    except ValueError:
        raise FolkRNNError(f"{spec!r}: units must be integers, e.g. 3:12,301") from None
    if not us or min(us) < 0:
        raise FolkRNNError(f"{spec!r}: give at least one unit, counting from 0")
    return _point(where, spec), us


def parse_clamp(spec: str) -> tuple[str, list[int], float]:
    """`LAYER:UNITS=VALUE` -> (hook name, units, value)."""
    head, sep, value = spec.rpartition("=")
    if not sep:
        raise FolkRNNError(f"{spec!r}: expected LAYER:UNITS=VALUE, e.g. 2:77=0.9")
    try:
        v = float(value)
    except ValueError:
        raise FolkRNNError(f"{spec!r}: {value!r} is not a number") from None
    point, units = parse_units(head)
    return point, units, v


def check_point(model, point: str, units: Sequence[int]) -> None:
    """Fail with a one-line message when `point` or one of `units` is not in `model`."""
    points = model.hook_points()
    if point not in points:
        raise FolkRNNError(f"the model has no hook point {point!r} (it has {model.config.num_layers} layers)")
    width = model.config.vocab_size if point in ("input", "hook_logits", "hook_probs") else model.config.hidden_size
    bad = [u for u in units if u >= width]
    if bad:
        raise FolkRNNError(f"{point} has {width} units (0-{width - 1}); unit {bad[0]} does not exist")


# -- unit lists: several layers, ablated or clamped (the studio's Inspect) ---------------------------
CLAMP_BOUND = 10.0  # |value| of a clamp; gates live in [0, 1], h and g in [-1, 1], c mostly within a few units
ABLATIONS = ("zero", "mean")
_ITEM = re.compile(r"^(?:(?P<layer>\d+):)?(?P<unit>\d+)(?:=(?P<value>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))?$")
_SPLIT = re.compile(r"[\s,;]+")


@dataclass(frozen=True)
class UnitSpec:
    """One unit of an intervention: layer (1-based), unit (0-based), clamp value (None: ablate)."""

    layer: int
    unit: int
    value: float | None = None

    def __str__(self) -> str:
        return f"{self.layer}:{self.unit}" + ("" if self.value is None else f"={self.value:g}")


def _spec(item: str, layer: int | None, num_layers: int, hidden: int, bound: float) -> UnitSpec:
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
        if not (math.isfinite(value) and abs(value) <= bound):
            raise FolkRNNError(f"units: clamp value {m['value']} in {item!r} must be within ±{bound:g}")
    return UnitSpec(layer, unit, value)


def parse_unit_specs(text: str, num_layers: int, hidden: int, max_units: int = 64,
                     bound: float = CLAMP_BOUND) -> tuple[UnitSpec, ...]:
    """`3:12,301 2:77=0.9` -> units; an item without `L:` keeps the layer before it.

    >>> [str(u) for u in parse_unit_specs("3:12,301 2:77=0.9", 3, 512)]
    ['3:12', '3:301', '2:77=0.9']
    >>> [str(u) for u in parse_unit_specs("1:5=-0.5; 7", 3, 16)]
    ['1:5=-0.5', '1:7']
    >>> parse_unit_specs("4:1", 3, 512)
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: units: layer 4 in '4:1': this model has layers 1 to 3
    >>> parse_unit_specs("12", 3, 512)
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: units: '12' has no layer: write it as LAYER:UNIT, e.g. 3:12
    """
    items = [x for x in _SPLIT.split(text.strip()) if x]
    if not items:
        raise FolkRNNError("units: give at least one, e.g. 3:12,301 or 2:77=0.9")
    out: list[UnitSpec] = []
    for item in items:
        spec = _spec(item, out[-1].layer if out else None, num_layers, hidden, bound)
        if any(u.layer == spec.layer and u.unit == spec.unit for u in out):
            raise FolkRNNError(f"units: {spec.layer}:{spec.unit} is given twice")
        out.append(spec)
    if len(out) > max_units:
        raise FolkRNNError(f"units: at most {max_units} units at once, got {len(out)}")
    return tuple(out)


def parse_unit_range(text: str, hidden: int, max_units: int = 64) -> list[int]:
    """Units of one layer: `12, 301 5-9` (ranges inclusive; a unit given twice counts once).

    >>> parse_unit_range("12, 3 5-7", 16)
    [12, 3, 5, 6, 7]
    >>> parse_unit_range("3-1", 16)
    Traceback (most recent call last):
    folkrnn.errors.FolkRNNError: units: range '3-1' runs backwards
    """
    out: list[int] = []
    for item in (x for x in _SPLIT.split(text.strip()) if x):
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


@dataclass(frozen=True)
class Intervention:
    """Ablate (`zero`, or `mean`: each unit's mean over a reference run, see `unit_means`)
    or clamp (the units given `=value`) one quantity (a layer point: h, c, i, f, g, o) of
    the listed units, at every step.

    >>> iv = Intervention("c", "mean", parse_unit_specs("1:2,5=0.75 2:1", 2, 16))
    >>> str(iv), [name for name, _ in iv.hooks({(1, 2): 0.1, (2, 1): 0.2})]
    ('c mean 1:2,1:5=0.75,2:1', ['layers.0.hook_c', 'layers.1.hook_c'])
    """

    quantity: str
    ablation: str
    units: tuple[UnitSpec, ...]

    def __post_init__(self) -> None:
        if self.quantity not in LAYER_POINTS:
            raise FolkRNNError(f"quantity must be one of {', '.join(LAYER_POINTS)}, got {self.quantity!r}")
        if self.ablation not in ABLATIONS:
            raise FolkRNNError(f"ablation must be one of {', '.join(ABLATIONS)}, got {self.ablation!r}")

    def __str__(self) -> str:
        return f"{self.quantity} {self.ablation} " + ",".join(str(u) for u in self.units)

    def hooks(self, means: dict[tuple[int, int], float] | None = None) -> list[Pair]:
        """One `clamp` per layer; `means[(layer, unit)]` for a mean ablation."""
        if self.ablation == "mean" and means is None and any(u.value is None for u in self.units):
            raise FolkRNNError("a mean ablation needs the units' means (unit_means)")
        pairs = []
        for layer in sorted({u.layer for u in self.units}):
            mine = [u for u in self.units if u.layer == layer]
            vals = [u.value if u.value is not None else (means[(layer, u.unit)] if self.ablation == "mean" else 0.0)
                    for u in mine]
            pairs.append(clamp(hook_name(self.quantity, layer), [u.unit for u in mine], torch.tensor(vals)))
        return pairs


def unit_means(model, ids: Sequence[int], iv: Intervention) -> dict[tuple[int, int], float]:
    """Each listed unit's mean value of the quantity over one tune's steps (`ids`: the
    tune's token ids from `<s>`, which is included) -> {(layer, unit): mean}."""
    names = {u.layer: hook_name(iv.quantity, u.layer) for u in iv.units}
    cache = model.run_with_cache([list(ids)], names=list(names.values()), dtype=torch.float32)
    return {(u.layer, u.unit): float(cache[names[u.layer]][:, u.unit].mean()) for u in iv.units}
