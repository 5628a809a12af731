"""Well-formed sampling (`--bars strict`): a per-tune guard over the next token.

`BarGuard` follows one tune token by token and says, before each draw, which tokens
may come next (`allowed() -> (V,) bool`), so that the finished tune has every bar
right by `folkrnn.rhythm`'s rules (the ones `folkrnn evaluate` reports) and
well-formed repeats. The sampler adds -inf to the logits of the others, which
renormalises the distribution over what remains. It forbids:

- a token that would make the current bar longer than the meter, or that would leave
  it a length that no sequence of notes can complete (a remainder of 1/24 eighth...);
- a bar line before the bar is full, except where a short bar is right: the first bar
  of a section (a pickup: the tune's first bar, the bar after `:|`, `|:` or a
  finished second ending), the closing bar of a section or ending when it completes
  the section's pickup or the tune's, or the next section's pickup (the next bar is
  then held to exactly that length); with `unmarked_boundaries=True` also the
  complement + pickup pair around an unmarked section boundary (`... | c 6 | G 2 | ...`
  between full bars), which evaluate accepts but a model offers far too eagerly;
- a bar line or `</s>` while a chord `[`, a tuplet `(p` or a broken rhythm `>` is
  open; a fifth note in a chord (`MAX_CHORD_NOTES`); tokens that would attach to nothing (a duration after a duration, a rest in
  a chord...); a meter or key token in the body;
- repeat marks that would not nest (`|:` inside an open `|:`, `|2` without `|1 ... :|`),
  `</s>` inside a repeat or a first ending, or without a bar line closing the tune.

Separators are kept to the forms the corpus uses: `|`, `:|`, `|:`, `:| |:`, `|1`,
`:| |2`, and a leading `|:`. The guard is conservative: every tune it lets through
is right, and at every step at least one token is allowed (bars can always be
completed), but a few right tunes it would not write (a bar filled only by a
tuplet's odd remainder, a closing bar that completes the pickup of a section two
sections on).

>>> from folkrnn.vocab import Vocabulary
>>> v = Vocabulary.v2()
>>> g = BarGuard(v)
>>> for t in "M:6/8 K:Cmaj G | c 3 B".split():
...     g.advance(v[t])
>>> ok = g.allowed()   # 4 of 6 eighths so far: B may last 1 to 3, no bar line yet
>>> [t for t in ("|", "d", "2", "3", "4", "</s>") if ok[v[t]]]
['d', '2', '3']
>>> for t in "2 |".split():
...     g.advance(v[t])
>>> ok = g.allowed()   # a short bar that completes the pickup G: it ends the tune
>>> [t for t in ("c", "|:", "</s>") if ok[v[t]]]
['</s>']
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from folkrnn import rhythm as R
from folkrnn import tokens as T
from folkrnn.errors import FolkRNNError
from folkrnn.rhythm import TICKS, scale_ticks, tuplet_ints
from folkrnn.vocab import Vocabulary

# Token classes of the guard's table.
_OTHER, _PITCH, _REST, _DUR, _BROKEN, _TUPLET, _CSTART, _CEND, _BAR, _METER, _KEY, _EOS = range(12)
# What the previous token was (as rhythm's scanner has it).
_P_NOTE, _P_CFIRST, _P_COTHER, _P_CEND, _P_DUR, _P_OTHER = range(6)

MAX_CHORD_NOTES = 4  # the open corpus's chords hold 2 to 4 notes; a model that forgets to close one is stopped
_FILL_UNIT = TICKS // 24  # plain notes fill any multiple of 1/24 eighth but these:
_UNFILLABLE = frozenset({1, 2, 4, 5, 7, 10, 13})  # (in 24ths: sums of 3 (/8) and 8 (/3) miss them)


@dataclass(frozen=True)
class _Table:
    """What the guard needs to know of each vocabulary token."""

    cls: tuple  # class per id
    value: tuple  # per id: duration ticks (_DUR), (ticks|None, this, next) (_BROKEN), p (_TUPLET), bar length (_METER)
    durations: tuple  # distinct duration-token tick values, largest first
    vocab_size: int
    eos: int
    groups: tuple  # ((class, value, ids), ...): tokens that act alike (all pitches, say) within a bar


# rhythm's reading of a token (its scanner code) -> the guard's class
_FROM_SCAN = {R.ENTRY_PITCH: _PITCH, R.ENTRY_REST: _REST, R.ENTRY_DUR: _DUR, R.ENTRY_BROKEN: _BROKEN,
              R.ENTRY_TUPLET: _TUPLET, R.ENTRY_CHORD_START: _CSTART, R.ENTRY_CHORD_END: _CEND, R.ENTRY_BAR: _BAR,
              R.ENTRY_METER: _METER, R.ENTRY_KEY: _KEY}


@lru_cache(maxsize=8)
def _table(tokens: tuple[str, ...]) -> _Table:
    """Each token's class and value, from the reading `folkrnn.rhythm` gives it (one reader
    of token semantics for evaluate, MIDI and the guard)."""
    cls, value, durs = [], [], set()
    for tok in tokens:
        entry = R.token_entry(tok)
        c = _EOS if T.kind(tok) == "eos" else _FROM_SCAN.get(entry[0], _OTHER)
        # durations, tuplet sizes and meter lengths are entry[1]; a broken mark is (ticks|None, this, next)
        v = entry[1] if c in (_DUR, _TUPLET, _METER) else (tuple(entry[1:4]) if c == _BROKEN else None)
        if c == _DUR:
            durs.add(v)
        cls.append(c)
        value.append(v)
    eos = tokens.index("</s>") if "</s>" in tokens else -1
    groups: dict = {}
    for i, (c, v) in enumerate(zip(cls, value)):
        if c in (_PITCH, _REST, _DUR, _BROKEN, _TUPLET, _CSTART, _CEND):
            groups.setdefault((c, v), []).append(i)
    return _Table(tuple(cls), tuple(value), tuple(sorted(durs, reverse=True)), len(tokens), eos,
                  tuple((c, v, tuple(ids)) for (c, v), ids in groups.items()))


# -- the bar's content: (elapsed, event, tuplet, pend, chord), a hashable tuple ---------------------
# event: None or (base, mul_n, mul_d, prev); tuplet: (left, q, p); pend: None or (n, d);
# chord: None, or ("open", mul_n, mul_d) before its first note, or ("notes", k) after k notes.
_EMPTY = (0, None, (0, 1, 1), None, None)


def _event_len(ev) -> int | Fraction:
    return scale_ticks(ev[0], ev[1], ev[2])


def _start_event(local, meter_key):
    """Close the open event and take the next tuplet place and broken-rhythm factor."""
    elapsed, ev, tup, pend, chord = local
    if ev is not None:
        elapsed = elapsed + _event_len(ev)
    left, q, p = tup
    if left:
        mn, md = q, p
        tup = (left - 1, q, p)
    else:
        mn = md = 1
    if pend is not None:
        mn, md = mn * pend[0], md * pend[1]
    return elapsed, tup, mn, md


def _step_local(local, c: int, val, meter: str):
    """The bar content after a token of class `c`, or None if the token is not allowed there
    (it would attach to nothing, or is not a within-bar token)."""
    elapsed, ev, tup, pend, chord = local
    prev = ev[3] if ev is not None else _P_OTHER
    if c == _PITCH:
        if chord is not None:
            if chord[0] == "open":
                return (elapsed, (TICKS, chord[1], chord[2], _P_CFIRST), tup, pend, ("notes", 1))
            if chord[1] >= MAX_CHORD_NOTES:
                return None
            return (elapsed, (ev[0], ev[1], ev[2], _P_COTHER), tup, pend, ("notes", chord[1] + 1))
        elapsed, tup, mn, md = _start_event(local, meter)
        return (elapsed, (TICKS, mn, md, _P_NOTE), tup, None, None)
    if c == _REST:
        if chord is not None:
            return None
        elapsed, tup, mn, md = _start_event(local, meter)
        return (elapsed, (TICKS, mn, md, _P_NOTE), tup, None, None)
    if c == _CSTART:
        if chord is not None:
            return None
        elapsed, tup, mn, md = _start_event(local, meter)
        return (elapsed, None, tup, None, ("open", mn, md))
    if c == _CEND:
        if chord is None or chord[0] != "notes":
            return None
        return (elapsed, (ev[0], ev[1], ev[2], _P_CEND), tup, pend, None)
    if c == _DUR:
        if ev is None:
            return None
        if prev in (_P_NOTE, _P_CFIRST):
            return (elapsed, (val, ev[1], ev[2], _P_DUR), tup, pend, chord)
        if prev == _P_CEND:
            b = ev[0] * val
            base = b // TICKS if not b % TICKS else Fraction(b, TICKS)
            return (elapsed, (base, ev[1], ev[2], _P_DUR), tup, pend, chord)
        if prev == _P_COTHER:  # another chord note's own length: read, and ignored
            return (elapsed, (ev[0], ev[1], ev[2], _P_DUR), tup, pend, chord)
        return None
    if c == _BROKEN:
        if ev is None or chord is not None or prev not in (_P_NOTE, _P_CEND, _P_DUR):
            return None
        d, this, nxt = val
        base = ev[0]
        if d is not None:
            if prev == _P_CEND:
                b = base * d
                base = b // TICKS if not b % TICKS else Fraction(b, TICKS)
            else:
                base = d
        return (elapsed, (base, ev[1] * this[0], ev[2] * this[1], _P_OTHER), tup, nxt, None)
    if c == _TUPLET:
        if chord is not None or tup[0] or pend is not None:
            return None
        q, p = tuplet_ints(val, meter)
        # The open event's length is final now (a duration after `(p` attaches to nothing).
        return (elapsed if ev is None else elapsed + _event_len(ev), None, (val, q, p), None, None)
    return None


def _closable(local) -> bool:
    """Nothing open: no chord, no tuplet place left, no broken rhythm owed."""
    return local[4] is None and local[2][0] == 0 and local[3] is None


def _length(local):
    elapsed, ev = local[0], local[1]
    return elapsed if ev is None else elapsed + _event_len(ev)


@lru_cache(maxsize=200_000)
def _fill(rest, left: int, q: int, p: int, pend, durs: tuple) -> bool:
    """Can new events (plain notes, each with at most one duration token) last exactly `rest`
    ticks, taking `left` tuplet places (q/p) first and owing `pend` to the first?"""
    if rest == 0:
        return left == 0 and pend is None
    if left == 0 and pend is None:
        if isinstance(rest, Fraction) or rest % _FILL_UNIT:
            return False
        return (rest // _FILL_UNIT) not in _UNFILLABLE
    mn, md = (q, p) if left else (1, 1)
    if pend is not None:
        mn, md = mn * pend[0], md * pend[1]
    for base in (TICKS,) + durs:
        d = scale_ticks(base, mn, md)
        if d <= rest and _fill(rest - d, max(left - 1, 0), q, p, None, durs):
            return True
    return False


@lru_cache(maxsize=200_000)
def _feasible(local, target, durs: tuple) -> bool:
    """Can the bar, from `local`, end exactly at `target` ticks with nothing left open?"""
    elapsed, ev, tup, pend, chord = local
    left, q, p = tup
    if chord is not None and chord[0] == "open":  # the chord's first note is still to come
        mn, md = chord[1], chord[2]
        return any(scale_ticks(b, mn, md) <= target - elapsed
                   and _fill(target - elapsed - scale_ticks(b, mn, md), left, q, p, pend, durs)
                   for b in (TICKS,) + durs)
    if ev is None:
        return target - elapsed >= 0 and _fill(target - elapsed, left, q, p, pend, durs)
    options = [ev[0]]
    if ev[3] in (_P_NOTE, _P_CFIRST):
        options += list(durs)
    for base in options:
        d = scale_ticks(base, ev[1], ev[2])
        r = target - elapsed - d
        if r >= 0 and _fill(r, left, q, p, pend, durs):
            return True
    return False


@lru_cache(maxsize=100_000)
def _local_mask(tokens: tuple[str, ...], local, target, meter: str) -> tuple[np.ndarray, tuple]:
    """Within-bar tokens allowed after `local` (a bar that must reach `target`), and each
    allowed token's next state."""
    tab = _table(tokens)
    mask = np.zeros(tab.vocab_size, dtype=bool)
    nxt = [None] * tab.vocab_size
    for c, val, ids in tab.groups:
        s = _step_local(local, c, val, meter)
        if s is not None and _feasible(s, target, tab.durations):
            for i in ids:
                mask[i] = True
                nxt[i] = s
    mask.setflags(write=False)
    return mask, tuple(nxt)


# -- the guard -------------------------------------------------------------------------------------
class BarGuard:
    """The strict-bars state of one tune, advanced token by token (ids of `vocab`).

    `allowed()` -> (V,) bool: the tokens that may come next; `advance(id)` takes the
    token drawn (an id `allowed()` did not allow raises FolkRNNError). Starts before
    the M: token (after `<s>`).
    """

    def __init__(self, vocab: Vocabulary, phrase_bars: int = 8, unmarked_boundaries: bool = False):
        # unmarked_boundaries: also let a short bar closed by `|` be the complement of a pickup
        # that follows at once (an unmarked section boundary). Off by default: the default model,
        # offered it, wrote 863 such pairs in 1,000 tunes (the corpus: 0.15 per tune), cutting its
        # sections short (AABB 25.6% instead of 33.9%) for a higher NLL (1.433 vs 1.424 per token).
        self.unmarked = unmarked_boundaries
        self.tokens = tuple(vocab.tokens)
        self.tab = _table(self.tokens)
        self.bar_ids = [i for i, c in enumerate(self.tab.cls) if c == _BAR]
        self.index = {self.tokens[i]: i for i in self.bar_ids}
        self.phrase_bars = phrase_bars
        self.pos = 0  # tokens taken (0: the meter is next)
        self.meter = "M:4/4"
        self.E = 8 * TICKS
        self.local = _EMPTY
        self.need = None  # the length the current bar must have (an obligation), or None
        self.need_next = None  # ... and the one after it
        self.bars = 0  # bars closed
        self.tune_pickup = None
        self.last_full = False
        self.last_len = None
        # the current section: its bars (lengths) in body, first and second ending
        self.body: list = []
        self.e1: list = []
        self.e2: list = []
        self.pstate = "body"  # body | e1 | after_e1 (awaiting |2) | e2
        self.e2_left = 0
        self.rep_open = False
        self.sep: list[str] = []  # bar tokens since the last bar closed
        self.after: frozenset = frozenset()  # what the last short bar needs next: {"free", "end", "split", "next"}
        self.done = False

    # -- queries
    def allowed(self, wrap_up: bool = False) -> np.ndarray:
        """(V,) bool: the tokens that may come next. `wrap_up` (the length cap is near):
        end the tune as soon as it may end, open no repeat or ending, and close an open
        one with `:|` rather than `|` (never at the cost of leaving nothing allowed)."""
        mask = self._allowed()
        if wrap_up and not self.done:
            eos = self.tab.eos
            if eos >= 0 and mask[eos]:
                out = np.zeros_like(mask)
                out[eos] = True
                return out
            out = mask.copy()
            for t in ("|:", "|1"):
                if t in self.index:
                    out[self.index[t]] = False
            if (self.rep_open or self.pstate == "e1") and ":|" in self.index and out[self.index[":|"]]:
                out[self.index["|"]] = False
            if out.any():
                return out
        return mask

    def _allowed(self) -> np.ndarray:
        V = self.tab.vocab_size
        if self.done:
            return np.zeros(V, dtype=bool)
        if self.pos == 0:
            return np.array([c == _METER for c in self.tab.cls])
        if self.pos == 1:
            return np.array([c == _KEY for c in self.tab.cls])
        target = self._target()
        if self.sep and not self._may_start_bar():
            mask = np.zeros(V, dtype=bool)
        else:
            mask = _local_mask(self.tokens, self.local, target, self.meter)[0].copy()
        for i in self.bar_ids:
            mask[i] = self._bar_ok(self.tokens[i])
        if self.tab.eos >= 0:
            mask[self.tab.eos] = self._eos_ok()
        return mask

    def advance(self, tok: int, check: bool = True) -> None:
        """Take token id `tok` (`check=False`: the caller has it from `allowed()`)."""
        t = self.tokens[tok]
        c = self.tab.cls[tok]
        if check and not self.allowed()[tok]:
            raise FolkRNNError(f"--bars strict: the token {t!r} cannot come here (token {self.pos + 1} of the tune)")
        self.pos += 1
        if c == _METER:
            self.meter, self.E = t, self.tab.value[tok]
            return
        if c == _KEY:
            return
        if c == _EOS:
            self.done = True
            return
        if c == _BAR:
            self._take_bar(t)
            return
        if self.sep:
            self._start_bar()
        target = self._target()
        self.local = _local_mask(self.tokens, self.local, target, self.meter)[1][tok]

    def closing(self) -> bool:
        """Would a bar token now close a bar (notes since the last bar line)?"""
        return not self.sep and self._bar_nonempty()

    def bar_length(self):
        """The current bar's length so far, in ticks."""
        return _length(self.local)

    def close_options(self, x: str) -> frozenset:
        """How the current bar, closed now by bar token x, can be right: {"free"} (nothing owed),
        {"end"} (only the tune's end may follow), {"next"} (the next bar must complete it)..., or empty."""
        return self._close_options(_length(self.local), x)

    def copy(self) -> BarGuard:
        """An independent guard in the same state (the sections' lists copied, the rest immutable)."""
        new = BarGuard.__new__(BarGuard)
        new.__dict__.update(self.__dict__)
        new.body, new.e1, new.e2, new.sep = list(self.body), list(self.e1), list(self.e2), list(self.sep)
        return new

    # -- bars and sections
    def _bar_nonempty(self) -> bool:
        return self.local != _EMPTY

    def _target(self):
        """The length the current bar (or the one a token after the separator starts) must reach."""
        if self.sep:
            after = self.after
            if after and "free" not in after and ("split" in after or "next" in after):
                return self.E - self.last_len
        return self.E if self.need is None else self.need

    def _own_pickup(self, closing_len, repeated: bool):
        """The section's own pickup as `rhythm.layout` will see it when the section closes now."""
        bars = self.body + self.e1 + self.e2 + [closing_len]
        first = bars[0]
        if not repeated and not self.e1 and not self.e2 and self.phrase_bars > 0:
            pb = self.phrase_bars
            lead = 1 if first < self.E else 0
            n = len(bars) - lead
            if n >= 2 * pb and n % pb == 0:
                first = bars[lead + (n // pb - 1) * pb]
        return first if 0 < first < self.E else None

    def _close_options(self, L, x: str) -> frozenset:
        """How a bar of length L closed by bar token x can be right (empty: it cannot)."""
        E = self.E
        if self.need is not None:
            return frozenset({"free"}) if L == self.need else frozenset()
        if L == E:
            return frozenset({"free"})
        if L > E:
            return frozenset()
        if not (self.body or self.e1 or self.e2):  # the first bar of a section: a pickup
            return frozenset({"free"})
        comp = E - L
        reachable = _feasible(_EMPTY, comp, self.tab.durations)  # can a bar last exactly comp?
        nxt = {"next"} if reachable else set()

        def justified(repeated: bool) -> bool:
            return comp in (self._own_pickup(L, repeated), self.tune_pickup)

        if self.pstate == "e2":
            if self.e2_left != 1:
                return frozenset()
            if x not in ("|", "|:"):
                return frozenset()
            return frozenset({"free"} if justified(True) else nxt)
        if self.pstate == "e1":
            return frozenset({"free"}) if x == ":|" and justified(True) else frozenset()
        # body
        if x == ":|":
            return frozenset({"free"} if justified(True) else nxt)
        if x == "|:":
            return frozenset({"free"} if justified(False) else nxt)
        if x == "|":
            out = set()
            if justified(False) and not self.rep_open:  # the tune may end after this bar
                out.add("end")
            if self.last_full and reachable and self.unmarked:
                out.add("split")
            return frozenset(out)
        return frozenset()

    def _bar_ok(self, x: str) -> bool:
        if self.pos < 2:
            return False
        if not self.sep:
            if not self._bar_nonempty():  # before the first note: only a leading |:
                return x == "|:" and self.bars == 0 and not self.rep_open
            if not _closable(self.local):
                return False
            if not self._rep_ok(x, closing=True):
                return False
            return bool(self._close_options(_length(self.local), x))
        # a second bar token in a row: only `:| |:` and `:| |2`
        if self.sep != [":|"]:
            return False
        if self.pstate == "after_e1":
            return x == "|2"
        return x == "|:" and not self.rep_open and self._may_start_bar(ignore_end=True)

    def _rep_ok(self, x: str, closing: bool) -> bool:
        completes_e2 = self.pstate == "e2" and self.e2_left == 1
        if x == "|":
            return True
        if x == "|:":
            return not self.rep_open and (self.pstate == "body" or completes_e2)
        if x == ":|":
            return self.pstate in ("body", "e1")
        if x == "|1":
            return self.pstate == "body"
        return False  # |2 only right after :|

    def _may_start_bar(self, ignore_end: bool = False) -> bool:
        """After a separator: may a new bar begin (rather than the tune end)?"""
        if self.pstate == "after_e1":
            return False
        if self.sep and self.sep[-1] in ("|:", "|1", "|2"):
            return True
        return bool(self.after - {"end"}) or not self.after

    def _eos_ok(self) -> bool:
        if self.pos < 2 or not self.sep or self.sep[-1] not in ("|", ":|") or self.bars == 0:
            return False
        if self.rep_open or self.pstate in ("e1", "after_e1") or self.need is not None:
            return False
        return not self.after or bool(self.after & {"free", "end"})

    def _take_bar(self, x: str) -> None:
        if not self.sep and self._bar_nonempty():
            L = _length(self.local)
            self.after = self._close_options(L, x)
            if self.need is not None:
                self.after = frozenset({"free"})
            self.need, self.need_next = self.need_next, None
            if self.bars == 0 and L < self.E:
                self.tune_pickup = L
            self.bars += 1
            self.last_full = L == self.E
            self.last_len = L
            if self.pstate == "e1":
                self.e1.append(L)
            elif self.pstate == "e2":
                self.e2.append(L)
                self.e2_left -= 1
            else:
                self.body.append(L)
            self.local = _EMPTY
            if self.pstate == "e2" and self.e2_left <= 0:
                self._new_section()
        self.sep.append(x)
        if x == ":|":
            self.rep_open = False
            if self.pstate == "e1":
                self.pstate = "after_e1"
            else:
                self._new_section()
        elif x == "|:":
            self.rep_open = True
            lone = len(self.body) == 1 and not self.e1 and not self.e2 and self.body[0] < self.E
            if not lone:
                self._new_section()
        elif x == "|1":
            self.pstate = "e1"
        elif x == "|2":
            self.pstate = "e2"
            self.e2_left = len(self.e1)

    def _new_section(self) -> None:
        self.body, self.e1, self.e2 = [], [], []
        self.pstate = "body"
        self.e2_left = 0

    def _start_bar(self) -> None:
        """The first token of a bar after a separator: settle what the last short bar needed."""
        after = self.after
        if after and "free" not in after:
            comp = self.E - self.last_len
            if "split" in after:
                self._new_section()  # the unmarked boundary: the short bar to come is a pickup
                self.need, self.need_next = comp, self.E
            elif "next" in after:
                self.need = comp
        self.after = frozenset()
        self.sep = []


class GuardBatch:
    """`BarGuard`s for the rows of a sampling batch: `mask()` -> (B, V) bool, then
    `advance(tokens)` with the (B,) ids drawn. A row's guard starts after `<s>`."""

    def __init__(self, vocab: Vocabulary, rows: int):
        self.vocab = vocab
        self.guards = [BarGuard(vocab) for _ in range(rows)]
        self._last: np.ndarray | None = None

    def mask(self, wrap_up=None) -> np.ndarray:
        """(B, V) bool; `wrap_up` (B,) bool: rows near the length cap (see `BarGuard.allowed`)."""
        if wrap_up is None:
            wrap_up = [False] * len(self.guards)
        self._last = np.stack([g.allowed(bool(w)) for g, w in zip(self.guards, wrap_up)])
        return self._last

    def restrict(self, zt: np.ndarray, fixed: np.ndarray | None, tune_idx: np.ndarray, pos: np.ndarray,
                 wrap_up: np.ndarray) -> np.ndarray:
        """Logits (B, V) with -inf on the tokens the rows' guards forbid. `fixed` (B,): a
        prime's forced id per row or -1 (a forced token must be allowed); `tune_idx`, `pos`:
        for messages; `wrap_up` (B,) bool: rows near the length cap."""
        ok = self.mask(wrap_up)
        forced = np.flatnonzero(fixed >= 0) if fixed is not None else np.zeros(0, dtype=np.int64)
        bad = forced[~ok[forced, fixed[forced]]] if len(forced) else forced
        if len(bad):
            r = int(bad[0])
            raise FolkRNNError(f"--bars strict: the prime's token {self.vocab.tokens[fixed[r]]!r} at position "
                               f"{int(pos[r]) + 1} breaks the bars of tune {int(tune_idx[r]) + 1}")
        zt = np.where(ok, zt, -np.inf)
        free = np.ones(len(zt), dtype=bool) if fixed is None else fixed < 0
        empty = np.flatnonzero(~np.isfinite(zt).any(-1) & free)
        if len(empty):
            r = int(empty[0])
            raise FolkRNNError(f"--bars strict: the prime leaves no token that keeps the bars right at position "
                               f"{int(pos[r]) + 1} of tune {int(tune_idx[r]) + 1}")
        return zt

    def advance(self, toks) -> None:
        last = self._last
        for r, (g, t) in enumerate(zip(self.guards, toks)):
            g.advance(int(t), check=last is None or not last[r, int(t)])
        self._last = None

    def reset(self, rows, prefix=()) -> None:
        """New tunes in `rows`, their guards advanced over the shared `prefix` ids (checked)."""
        for r in rows:
            g = BarGuard(self.vocab)
            for t in prefix:
                g.advance(int(t))
            self.guards[r] = g
        self._last = None

    def reset_all(self, rows: int, prefix=()) -> None:
        self.guards = [None] * rows
        self.reset(range(rows), prefix)

    def keep(self, keep) -> None:
        self.guards = [g for g, k in zip(self.guards, keep) if k]
        self._last = None
