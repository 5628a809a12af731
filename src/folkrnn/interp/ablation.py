"""The ablation experiment runner: sample tunes with units knocked out, measure them with
`folkrnn evaluate`'s own functions, over several seeds, against random units.

A `Condition` names a hook point, the units to replace and how (`zero`, or `mean`: the
unit's mean activation over a corpus). `run` samples `tunes` tunes per condition and
seed; all conditions of a seed share one batched sampling run (row i belongs to
condition i // tunes, and a per-row hook applies that condition), so a condition
costs its tunes and nothing more. Each condition's tunes are analysed by
`evaluate.tune.analyse_tune` and summarised by `evaluate.stats.summarise` (bars right,
AABB, ends on the tonic...); the result gives each metric's mean and SD over seeds.

Controls: `random_units` (k units drawn from those not ranked top) and
`variance_matched_units` (for each top unit, one of the 3 unranked units whose
activation variance is nearest to it, drawn at random): a top unit that matters must
matter more than random units of the same count, and than random units as active.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.interp.interventions import per_row

METRICS = ("bars_right", "tunes_all_bars_right", "pattern_AABB", "final_tonic", "section_ends_tonic", "bars_mean")


@dataclass(frozen=True)
class Condition:
    """`point`: hook name (None with no units: the unablated baseline); `units`: 0-based;
    `replace`: 'zero' or 'mean'; `info`: what the report prints about it (layer, k...)."""

    point: str | None
    units: tuple[int, ...] = ()
    replace: str = "zero"
    info: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.replace not in ("zero", "mean"):
            raise FolkRNNError(f"replace must be 'zero' or 'mean', not {self.replace!r}")
        if self.units and self.point is None:
            raise FolkRNNError("a condition with units needs a hook point")


def random_units(width: int, k: int, exclude: Sequence[int], rng: np.random.Generator) -> list[int]:
    """k distinct units of `width`, none in `exclude`."""
    pool = np.setdiff1d(np.arange(width), np.asarray(exclude, dtype=np.int64))
    if k > len(pool):
        raise FolkRNNError(f"cannot draw {k} random units from {len(pool)}")
    return sorted(int(u) for u in rng.choice(pool, k, replace=False))


def variance_matched_units(variance: np.ndarray, top: Sequence[int], rng: np.random.Generator, near: int = 3) -> list[int]:
    """For each top unit, one unit outside `top` (and not drawn before) among the `near`
    whose activation variance is closest to it."""
    used = set(int(u) for u in top)
    out = []
    for u in top:
        cand = [int(i) for i in np.argsort(np.abs(variance - variance[u]), kind="stable") if int(i) not in used][:near]
        if not cand:
            raise FolkRNNError("not enough units left to match the top units' variance")
        pick = cand[int(rng.integers(len(cand)))]
        used.add(pick)
        out.append(pick)
    return sorted(out)


def _hooks(conditions: Sequence[Condition], widths: dict[str, int], means: dict[str, torch.Tensor], per: int) -> list:
    pairs = []
    C = len(conditions)
    for point in sorted({c.point for c in conditions if c.units}):
        w = widths[point]
        masks = torch.zeros(C, w, dtype=torch.bool)
        values = torch.zeros(C, w)
        for i, c in enumerate(conditions):
            if c.point != point or not c.units:
                continue
            idx = torch.tensor(c.units)
            masks[i, idx] = True
            if c.replace == "mean":
                if point not in means:
                    raise FolkRNNError(f"mean replacement on {point} needs its mean activations")
                values[i, idx] = means[point][idx].float()

        def condition_of(tune: torch.Tensor, C=C) -> torch.Tensor:
            c = tune // per
            return torch.where(c < C, c, torch.full_like(c, -1))

        pairs.append(per_row(point, masks, values, condition_of))
    return pairs


def evaluate_tokens(tunes: Sequence[Sequence[str]]) -> dict:
    """`folkrnn evaluate`'s summary (shares in [0, 1]) of token lists."""
    from folkrnn.evaluate.stats import summarise
    from folkrnn.evaluate.tune import analyse_tune

    return summarise([analyse_tune(list(t), i) for i, t in enumerate(tunes)])


def run(model, vocab, conditions: Sequence[Condition], tunes: int, seeds: Sequence[int], max_length: int = 400,
        batch_size: int = 256, means: dict[str, torch.Tensor] | None = None, temperature: float = 1.0,
        on_tune: Callable[[], None] | None = None) -> list[dict]:
    """Sample `tunes` tunes per condition and seed; one dict per condition (in order) with
    `metrics` {name: {mean, sd, values}} over seeds, `tunes` (per seed), `seeds`,
    `truncated` (share of tunes that hit `max_length`)."""
    from folkrnn.sample import SampleConfig, sample

    if tunes < 1 or not seeds:
        raise FolkRNNError("an ablation needs at least 1 tune and 1 seed per condition")
    widths = {n: model.config.hidden_size for n in model.hook_names()}
    widths.update({"input": model.config.vocab_size, "hook_logits": model.config.vocab_size,
                   "hook_probs": model.config.vocab_size})
    for c in conditions:
        if c.units and c.point not in widths:
            raise FolkRNNError(f"the model has no hook point {c.point!r}")
    hooks = _hooks(conditions, widths, means or {}, tunes)
    per_seed: list[list[dict]] = []
    trunc = np.zeros(len(conditions))
    for seed in seeds:
        cfg = SampleConfig(num_tunes=tunes * len(conditions), seed=seed, max_length=max_length,
                           batch_size=batch_size, temperature=temperature)
        groups: list[list[list[str]]] = [[] for _ in conditions]
        for t in sample(model, vocab, cfg, hooks=hooks or [("hook_logits", lambda v, c: None)]):
            groups[t.index // tunes].append(t.tokens)
            trunc[t.index // tunes] += t.truncated
            if on_tune is not None:
                on_tune()
        per_seed.append([evaluate_tokens(g) for g in groups])
    out = []
    for i, c in enumerate(conditions):
        metrics = {}
        for m in METRICS:
            vals = [s[i][m] for s in per_seed if s[i][m] is not None]
            if vals:
                mu = float(np.mean(vals))
                sd = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
                metrics[m] = {"mean": mu, "sd": sd, "values": [float(v) for v in vals]}
            else:
                metrics[m] = {"mean": math.nan, "sd": math.nan, "values": []}
        out.append({**c.info, "point": c.point, "units_ablated": list(c.units), "replace": c.replace,
                    "metrics": metrics, "tunes": tunes, "seeds": list(seeds),
                    "truncated": float(trunc[i] / (tunes * len(seeds)))})
    return out
