"""Tune types a session musician asks for (`--type reel`): meter, form and rhythmic feel.

Each type comes from `folkrnn/data/tune_types.json`, built by `scripts/tune_types.py`
from the open corpus's own tunes of that type (their ABC `R:` fields):

- `meter`: the v2 meter token the tunes start with (a reel `M:4/4`, a slide `M:12/8`);
- `form`, `bars`: the form sampling follows (`folkrnn.sample.form.Form`), AABB of 8 bars
  for the dances, AB for an air;
- `bias`: the feel, a number per rhythm token (durations, broken rhythm, tuplets): the log
  of how much more often the type's tunes use it than all tunes of its meter. Sampling adds
  `feel * bias` to the logits (after the temperature), so a hornpipe gets the dotted pairs
  that set it apart from a reel in the same 4/4. A type with too few tagged tunes in the
  corpus has no bias (its feel is its meter's).

>>> t = tune_type("hornpipe")
>>> t.meter, t.form, t.bias[">"] > 0.5
('M:4/4', 'AABB', True)
>>> tune_type("reel").bias.get(">", 0.0) < 0
True
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from folkrnn.errors import FolkRNNError
from folkrnn.vocab import Vocabulary

TYPE_NAMES = ("reel", "jig", "slip-jig", "hornpipe", "polka", "slide", "waltz", "march", "air")
MAX_FEEL = 4.0


@dataclass(frozen=True)
class TuneType:
    name: str
    meter: str
    form: str
    bars: int
    basis: str  # "R: fields" (the feel is the tagged tunes') or "meter" (no bias)
    tagged: int  # corpus tunes tagged with this type (any meter)
    bias: dict = field(default_factory=dict)
    hallmarks: dict | None = None  # rhythm per bar of the type's tagged tunes in `meter`
    meter_hallmarks: dict | None = None  # the same for all the corpus's tunes of `meter`

    def bias_vector(self, vocab: Vocabulary, feel: float = 1.0) -> tuple[float, ...] | None:
        """The logit bias over `vocab` (V,) for sampling; None where there is none."""
        if not self.bias or feel == 0:
            return None
        v = np.zeros(len(vocab))
        for tok, b in self.bias.items():
            if tok in vocab:
                v[vocab[tok]] = feel * b
        return tuple(float(x) for x in v)


@functools.lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("folkrnn").joinpath("data/tune_types.json").read_text("utf-8")
    return json.loads(text)


def tune_type(name: str) -> TuneType:
    """The type called `name` (one of TYPE_NAMES; case and `_`/space for `-` forgiven)."""
    key = name.strip().lower().replace("_", "-").replace(" ", "-")
    types = _table()["types"]
    if key not in types:
        raise FolkRNNError(f"--type {name!r}: not a tune type; choose one of {', '.join(TYPE_NAMES)}")
    t = types[key]
    return TuneType(key, t["meter"], t["form"], t["bars"], t["basis"], t["tagged"], dict(t["bias"]), t["hallmarks"],
                    t["meter_hallmarks"])


def check_feel(feel: float) -> float:
    if not (isinstance(feel, (int, float)) and np.isfinite(feel) and 0 <= feel <= MAX_FEEL):
        raise FolkRNNError(f"--feel must be 0 .. {MAX_FEEL:g}, got {feel}")
    return float(feel)
