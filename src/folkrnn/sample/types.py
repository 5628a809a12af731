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


# -- a type and a form, as a request gives them (`folkrnn generate`, the studio) --------------------
@dataclass(frozen=True)
class Shape:
    """What a tune type, a form and their knobs make of a request (see `shape_of`).

    `meter`: the meter to prime with (e.g. "6/8"; None: the request's own choice, none);
    `form`: the plan (`folkrnn.sample.form.Form`) or None; `flags`: the `folkrnn generate`
    options that say the same (`--type jig --form AABB`, "" for none)."""

    type: TuneType | None
    feel: float
    meter: str | None
    form: object | None
    flags: str

    def logit_bias(self, vocab: Vocabulary) -> tuple[float, ...] | None:
        """`SampleConfig.logit_bias`: the type's feel over `vocab`, or None."""
        return self.type.bias_vector(vocab, self.feel) if self.type is not None else None


FORM_KNOBS = (("form_bars", "--form-bars", 8), ("endings", "--endings", 0), ("form_candidates", "--form-candidates", 8),
              ("form_lookahead", "--form-lookahead", 2), ("close_temperature", "--close-temperature", 0.5))


def shape_of(type_name: str | None = None, form: str | None = None, form_bars: int = 8, endings: int = 0,
             meter: str | None = None, feel: float = 1.0, form_candidates: int = 8, form_lookahead: int = 2,
             beam: bool = False, close_temperature: float = 0.5) -> Shape:
    """The rules of `--type`, `--feel`, `--form` and its knobs, for every front end.

    A type sets the meter (a different `meter` is refused), the form unless one is given
    (`form="none"`: no plan) and its bars when they are left at 8, and the feel; knobs
    without a form, a feel without a type and a form with beam search are refused
    (FolkRNNError, one line).

    >>> s = shape_of("jig")
    >>> s.meter, s.form.spec, s.flags
    ('6/8', 'AABB', '--type jig --form AABB')
    >>> shape_of(form="aabb", form_bars=4, endings=1).flags
    '--form AABB --form-bars 4 --endings 1'
    >>> shape_of("reel", form="none").form, shape_of().flags
    (None, '')
    """
    from folkrnn.sample.form import Form
    from folkrnn.sample.prime import parse_meter

    check_feel(feel)
    knobs = {"form_bars": form_bars, "endings": endings, "form_candidates": form_candidates, "form_lookahead": form_lookahead,
             "close_temperature": close_temperature}
    t = None
    flags = []
    if type_name is None:
        if feel != 1.0:
            raise FolkRNNError("conflicting options: --feel needs --type")
    else:
        t = tune_type(type_name)
        if meter is not None and parse_meter(meter) != t.meter:
            raise FolkRNNError(f"conflicting options: --type {t.name} is in {t.meter.removeprefix('M:')}, not --meter {meter}")
        meter = t.meter.removeprefix("M:")
        if form is None:
            form = t.form
            if form_bars == 8:
                knobs["form_bars"] = t.bars
        flags.append(f"--type {type_name.lower()}" + (f" --feel {feel:g}" if feel != 1.0 else ""))
    if form is not None and form.strip().lower() == "none":
        form = None
    if form is None:
        given = [flag for k, flag, d in FORM_KNOBS if knobs[k] != d]
        if given:
            raise FolkRNNError(f"conflicting options: {', '.join(given)} need{'' if len(given) > 1 else 's'} --form")
        return Shape(t, feel, meter, None, " ".join(flags + (["--form none"] if flags else [])))
    if beam:
        raise FolkRNNError("conflicting options: --form samples; beam search cannot follow a form")
    bars = knobs["form_bars"]
    lookahead = knobs["form_lookahead"] if knobs["form_lookahead"] != 2 else max(1, min(2, bars - 1))
    plan = Form.parse(form, bars=bars, endings=knobs["endings"], candidates=knobs["form_candidates"], lookahead=lookahead,
                      close_temperature=close_temperature)
    flags.append(f"--form {form.upper()}")
    flags += [f"{flag} {knobs[k]:g}" for k, flag, d in FORM_KNOBS if knobs[k] != d]
    return Shape(t, feel, meter, plan, " ".join(flags))
