"""Sampling in a named form (`--form AABB`): planned section ends, closings the model chooses.

`Form` names the tune's plan: its parts (`AABB`: part A played twice, then B twice; `AB`,
`AABBCC`, `ABAC`, `AAB`...), the bars a part has (8; 16 for long airs), and whether a
repeated part closes with `:|` or with first and second endings (`|1 ... :| |2 ... |`).
Bars are counted as `folkrnn evaluate` counts them: a section's short first bar (a pickup)
is not a bar of its own, and the closing bar that completes it is the part's last.

`FormPlan` follows one tune and narrows `--bars strict`'s allowed tokens (it always runs on
top of `folkrnn.sample.strict.BarGuard`) so that bar lines fall where the plan wants them: no
section end before the part's last bar, the part's own section end at it, `</s>` only after
the last part. It touches bar lines and `</s>` only; every note is the model's.

Forcing the closing token alone makes a part stop on any note. Instead the sampler
(`sample_form`) lets the model choose *how* a part closes, by sequential Monte Carlo: at
`lookahead` bars before a part's end the tune is copied into `candidates` particles, each
samples the closing bars on its own random stream, and each carries the weight the plan
costs it: the product over its steps of the model's probability of what the plan allows
(after the strict mask, temperature and top-k/p), which at the closing bar is the
model's own probability of ending the section there (and, in the last part, of ending the
tune). One particle is kept in proportion to its weight; the others are dropped. A part
whose particles all put zero weight on closing keeps one uniformly.

Tune i depends only on (seed, i): particle j of tune i's b-th branching draws from the
stream (seed, i + (b * candidates + j + 1) * 2**40, position), and the choice among them
from (seed, i, 2**32 + b).

>>> f = Form.parse("AABB")
>>> [p.repeated for p in f.parts], f.bars, f.endings
([True, True], 8, 0)
>>> Form.parse("ABAC", bars=16).describe()
'ABAC, 16 bars a part, closed with |'
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.sample.config import SampleConfig, Tune, progress_bar
from folkrnn.sample.prime import base_allowed, compile_prime
from folkrnn.sample.randomness import draw, filter_logits, log_softmax_at, softmax, uniforms
from folkrnn.sample.strict import BarGuard
from folkrnn.vocab import Vocabulary

log = logging.getLogger(__name__)

_STREAM = 1 << 40  # particle streams sit above every tune index
_CHOICE_POS = 1 << 32  # the resampling draws sit above every token position
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class Part:
    letter: str
    repeated: bool


@dataclass(frozen=True)
class Form:
    """A tune's plan. `parts`: in order; `bars`: per part (>= 2); `endings`: 0, or the bars of
    each of a repeated part's first and second endings; `candidates`: particles per part end
    (1 = the closing is forced with no choice); `lookahead`: bars before a part's end at which
    the particles start (1 .. bars - 1); `close_temperature`: the temperature of those closing
    bars (the colder of it and the tune's; None = the tune's): cadences in this music are
    formulaic, and at 0.5 the tunes end on the tonic as often as the corpus's (docs/generate.md);
    `sharpness`: the particle kept is drawn in proportion to weight ** sharpness."""

    parts: tuple[Part, ...]
    bars: int = 8
    endings: int = 0
    candidates: int = 8
    lookahead: int = 2
    close_temperature: float | None = 0.5
    sharpness: float = 1.0
    spec: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.parts:
            raise FolkRNNError("--form needs at least one part")
        if not isinstance(self.bars, int) or isinstance(self.bars, bool) or not 2 <= self.bars <= 64:
            raise FolkRNNError(f"--form-bars must be 2 .. 64, got {self.bars}")
        if not isinstance(self.endings, int) or not 0 <= self.endings < self.bars:
            raise FolkRNNError(f"--endings must be 0 .. {self.bars - 1} bars, got {self.endings}")
        if self.endings and not any(p.repeated for p in self.parts):
            raise FolkRNNError(f"--endings: form {self.spec or ''} has no repeated part to end twice".replace("  ", " "))
        if not isinstance(self.candidates, int) or not 1 <= self.candidates <= MAX_CANDIDATES:
            raise FolkRNNError(f"--form-candidates must be 1 .. {MAX_CANDIDATES}, got {self.candidates}")
        if not isinstance(self.lookahead, int) or not 1 <= self.lookahead < self.bars:
            raise FolkRNNError(f"--form-lookahead must be 1 .. {self.bars - 1} bars, got {self.lookahead}")
        if self.close_temperature is not None and not (0 < self.close_temperature <= 10):
            raise FolkRNNError(f"--close-temperature must be in (0, 10], got {self.close_temperature}")
        if not (isinstance(self.sharpness, (int, float)) and 0 <= self.sharpness <= 10):
            raise FolkRNNError(f"--form-sharpness must be 0 .. 10, got {self.sharpness}")

    @classmethod
    def parse(cls, spec: str, bars: int = 8, endings: int = 0, candidates: int = 8, lookahead: int = 2,
              close_temperature: float | None = 0.5, sharpness: float = 1.0) -> Form:
        """`AABB` -> parts A (repeated), B (repeated). A doubled letter is a repeated part; a
        single letter a part played once; a letter may come back later (`ABAC`).

        >>> [(p.letter, p.repeated) for p in Form.parse("AAB").parts]
        [('A', True), ('B', False)]
        """
        s = spec.strip().upper()
        if not re.fullmatch(r"[A-Z]{1,26}", s):
            raise FolkRNNError(f"--form {spec!r}: write the parts as letters, e.g. AABB, AB, AABBCC, ABAC")
        parts = []
        for m in re.finditer(r"([A-Z])\1*", s):
            run = m.group(0)
            if len(run) > 2:
                raise FolkRNNError(f"--form {spec!r}: {run} - a part is played once or twice (write AA, not {run})")
            parts.append(Part(run[0], len(run) == 2))
        if parts[0].letter != "A":
            raise FolkRNNError(f"--form {spec!r}: the first part is A")
        return cls(tuple(parts), bars, endings, candidates, lookahead, close_temperature, sharpness, spec=s)

    def describe(self) -> str:
        close = f"{self.endings}-bar first and second endings" if self.endings else (
            ":|" if any(p.repeated for p in self.parts) else "|")
        return f"{self.spec}, {self.bars} bars a part, closed with {close}"

    def to_dict(self) -> dict:
        return {"form": self.spec, "bars": self.bars, "endings": self.endings, "candidates": self.candidates,
                "lookahead": self.lookahead, "close_temperature": self.close_temperature, "sharpness": self.sharpness}


class FormPlan:
    """One tune's progress through its `Form`, beside its `BarGuard`.

    `restrict(guard, ok)` -> the guard's allowed mask `ok` narrowed to the plan; call
    `advance(tok, guard)` with each token taken, *before* the guard advances. It returns
    "branch" when the particles of a part's closing should start, "closed" when a part has
    just been closed (its last section token taken), "done" at `</s>`, else None."""

    def __init__(self, form: Form, vocab: Vocabulary):
        self.form = form
        self.tokens = vocab.tokens
        self.eos = vocab.eos
        self.bar_ids = frozenset(BarGuard(vocab).bar_ids)
        self.k = 0  # the current part
        self.spans = 0  # bars closed in it, its pickup included
        self.pickup = False
        self.stage = "body"  # body | e1 | after_e1 | e2
        self.e1 = 0  # bars of the first ending
        self.e1_lengths: list = []  # their lengths (a second ending's bars match them, or are full)
        self.e2 = 0
        self.just_closed = False  # the last token closed a part (a `|:` may follow a `:|`)
        self.branches = 0  # how many times this tune has branched
        self.closed = False  # every part is closed: only </s> may come

    def copy(self) -> FormPlan:
        new = FormPlan.__new__(FormPlan)
        new.__dict__.update(self.__dict__)
        new.e1_lengths = list(self.e1_lengths)
        return new

    # -- what the plan allows
    def _part(self, k: int) -> Part | None:
        return self.form.parts[k] if k < len(self.form.parts) else None

    def _counted_after(self, short: bool) -> tuple[int, bool]:
        """(bars of the part counted once the bar being closed is, whether that bar is the pickup)."""
        if self.spans == 0 and short:
            return 0, True
        return self.spans + 1 - (1 if self.pickup else 0), False

    def _bar_ok(self, x: str, g: BarGuard) -> bool:
        part = self._part(self.k)
        if part is None:
            return False
        nxt = self._part(self.k + 1)
        if not g.closing():
            if not g.sep:  # before the first note: a leading |: opens a repeated first part
                return x == "|:" and self.k == 0 and part.repeated
            if g.sep == [":|"]:
                if self.stage == "after_e1":
                    return x == "|2"
                return x == "|:" and self.just_closed and part.repeated
            return False
        length = g.bar_length()
        short = length < g.E
        ok, ends = self._wanted(x, part, nxt, short, length)
        if not ok or not short:
            return ok
        # A short closing bar is right only as a complement (rhythm.layout's rules, which the guard
        # knows): where the tune ends, one that needs nothing after it; elsewhere, one that lets it go on.
        how = g.close_options(x)
        return bool(how & ({"free", "end"} if ends else {"free", "next"}))

    def _wanted(self, x: str, part: Part, nxt: Part | None, short: bool, length) -> tuple[bool, bool]:
        """(is bar token x, closing the current bar now, what the plan wants; does it end the tune)."""
        n, e = self.form.bars, self.form.endings if part.repeated else 0
        last = nxt is None
        if self.stage == "e2":
            if short and length != self.e1_lengths[self.e2]:
                return False, False  # a second ending's bar is as long as the first ending's, or full
            if self.e2 + 1 < self.e1:
                return x == "|", False
            return x == "|" or (x == "|:" and not last and nxt.repeated), last
        counted, is_pickup = self._counted_after(short)
        if is_pickup:  # a pickup closes with | (or |: when it leads into a repeated part)
            return x == "|" or (x == "|:" and part.repeated and self.stage == "body"), False
        if short and counted < n:
            return False, False  # a short bar inside a part is no bar of the plan
        if self.stage == "e1":
            return x == (":|" if counted == n else "|"), False
        if e and counted == n - e:
            return x == "|1", False
        if counted < n:
            return x == "|", False
        if part.repeated:
            return x == ":|", last
        return x == ("|:" if not last and nxt.repeated else "|"), last

    def restrict(self, g: BarGuard, ok: np.ndarray) -> np.ndarray:
        out = ok.copy()
        if self.closed:
            out[:] = False
            if self.eos >= 0:
                out[self.eos] = ok[self.eos]
            return out
        if self.eos >= 0:
            out[self.eos] = False
        for i in g.bar_ids:
            if ok[i]:
                out[i] = self._bar_ok(self.tokens[i], g)
        return out

    # -- taking a token
    def advance(self, tok: int, g: BarGuard) -> str | None:
        if tok == self.eos:
            self.closed = True
            return "done"
        x = self.tokens[tok]
        if tok not in self.bar_ids:
            self.just_closed = False
            return None
        part = self._part(self.k)
        if part is None:
            return None
        if not g.closing():  # a leading |:, or the second token of `:| |:` / `:| |2`
            if x == "|2":
                self.stage = "e2"
                self.e2 = 0
            self.just_closed = False
            return None
        n = self.form.bars
        short = g.bar_length() < g.E
        if self.stage == "e2":
            self.e2 += 1
            self.spans += 1
            return self._close() if self.e2 >= self.e1 else None
        counted, is_pickup = self._counted_after(short)
        self.spans += 1
        if is_pickup:
            self.pickup = True
            return "branch" if self._branch_due(0) else None
        if self.stage == "e1":
            self.e1 += 1
            self.e1_lengths.append(g.bar_length())
            if x == ":|":
                self.stage = "after_e1"
                return None
            return "branch" if self._branch_due(counted) else None
        if x == "|1":
            self.stage = "e1"
            self.e1, self.e1_lengths = 0, []
            return "branch" if self._branch_due(counted) else None
        if counted >= n:
            return self._close()
        return "branch" if self._branch_due(counted) else None

    def _branch_due(self, counted: int) -> bool:
        return self.form.candidates > 1 and counted == max(0, self.form.bars - self.form.lookahead)

    def _close(self) -> str:
        self.k += 1
        self.spans, self.pickup, self.stage, self.e1, self.e2, self.e1_lengths = 0, False, "body", 0, 0, []
        self.just_closed = True
        if self.k >= len(self.form.parts):
            self.closed = True
        elif self._branch_due(0):
            return "closed+branch"
        return "closed"


# -- the sampler -------------------------------------------------------------------------------
class _Row:
    """One particle: a tune's tokens so far, its guard, plan, log-probability and weight."""

    __slots__ = ("tune", "stream", "guard", "plan", "ids", "lp", "logw", "group")

    def __init__(self, tune: int, stream: int, guard: BarGuard, plan: FormPlan, ids: list[int], lp: float):
        self.tune, self.stream, self.guard, self.plan, self.ids, self.lp = tune, stream, guard, plan, ids, lp
        self.logw = 0.0
        self.group: tuple[int, int] | None = None  # (tune, branch) while the row is one of a part's particles

    def clone(self, stream: int) -> _Row:
        return _Row(self.tune, stream, self.guard.copy(), self.plan.copy(), list(self.ids), self.lp)


def _choose(members: list, eos: int, seed: int, key: tuple[int, int], sharpness: float = 1.0) -> int:
    """Index of the particle kept: in proportion to its weight (to the power `sharpness`), preferring
    any that did not hit the length cap."""
    w = sharpness * np.array([m[0].logw for m in members], dtype=np.float64)
    capped = np.array([m[3] and m[0].ids[-1] != eos for m in members])
    if not capped.all():
        w[capped] = -np.inf
    if np.isfinite(w).any():
        p = np.exp(w - w[np.isfinite(w)].max())
        p[~np.isfinite(w)] = 0.0
    else:  # no particle could close as planned: any of them
        p = np.where(capped & ~capped.all(), 0.0, 1.0)
    cdf = np.cumsum(p / p.sum())
    u = float(uniforms(seed, np.array([key[0]]), np.array([_CHOICE_POS + key[1]]))[0])
    return min(int((cdf <= u).sum()), len(members) - 1)


def sample_form(model, vocab: Vocabulary, cfg: SampleConfig, step, progress: bool = False) -> Iterator[Tune]:
    """Yield `cfg.num_tunes` tunes in order, each following `cfg.form` (see the module docstring).

    `step`: a `Stepper` or `HookedStepper` of `model`. Rows are particles: a tune has one
    row, and `candidates` rows while a part's closing is being chosen; new tunes join while
    fewer than `batch_size` rows are active."""
    form: Form = cfg.form
    K = form.candidates
    n, L = cfg.num_tunes, cfg.max_length
    eos = vocab.eos
    inv_t = 1.0 / cfg.temperature
    bias = cfg.bias_array(len(vocab))
    # the closings are drawn at the colder of the two temperatures
    close_t = None if form.close_temperature is None else min(form.close_temperature, cfg.temperature)
    if close_t == cfg.temperature:
        close_t = None
    prime = compile_prime(vocab, cfg.prime)
    P = len(prime.fixed)
    fixed_np = prime.fixed.numpy() if P else np.zeros(1, dtype=np.int64)
    mask_prime = prime.allowed.numpy() if P else None
    mask_base = base_allowed(vocab).numpy()
    h0, c0 = step.initial_state(1)
    layers, hidden = h0.shape[0], h0.shape[2]

    rows: list[_Row] = []
    h = h0.new_zeros(layers, 0, hidden)
    c = c0.new_zeros(layers, 0, hidden)
    parked: dict[tuple[int, int], list] = {}  # (tune, branch) -> [(row, h, c, finished)]
    pending: dict[int, Tune] = {}
    emitted = next_tune = cfg.first
    last = cfg.first + n
    B = max(1, cfg.batch_size)
    pbar = progress_bar(n, progress, "tune")

    def finish(row: _Row) -> None:
        ended = bool(row.ids) and row.ids[-1] == eos
        toks = row.ids[:-1] if ended else row.ids
        pending[row.tune] = Tune(row.tune, vocab.decode(toks), float(row.lp), not ended, None)

    try:
        while emitted < last:
            joining = []
            while next_tune < last and len(rows) + len(joining) < B:
                joining.append(_Row(next_tune, next_tune, BarGuard(vocab), FormPlan(form, vocab), [], 0.0))
                next_tune += 1
            if joining:
                rows += joining
                h = torch.cat([h, h0.expand(-1, len(joining), -1)], 1)
                c = torch.cat([c, c0.expand(-1, len(joining), -1)], 1)
            assert rows, "form sampler: every row parked"  # a group resolves when its last particle parks
            inp = torch.tensor([r.ids[-1] if r.ids else vocab.bos for r in rows])
            pos = np.array([len(r.ids) for r in rows], dtype=np.int64)
            logits, (h, c) = step(inp, (h.contiguous(), c.contiguous()), torch.tensor([r.tune for r in rows]),
                                  torch.from_numpy(pos))
            z = logits.numpy().astype(np.float64)
            zt = z * inv_t if cfg.temperature != 1.0 else z.copy()
            if close_t is not None:  # the rows drawing a part's closing
                closing = np.array([r.group is not None for r in rows])
                zt[closing] = z[closing] / close_t
            if bias is not None:
                zt += bias
            pc = np.minimum(pos, max(P - 1, 0))
            in_prime = pos < P
            allowed = np.where(in_prime[:, None], mask_prime[pc], mask_base) if P else mask_base[None, :]
            fixed = np.where(in_prime, fixed_np[pc], -1)
            g_ok = np.stack([r.guard.allowed() for r in rows]) & allowed
            f_ok = np.stack([r.plan.restrict(r.guard, g_ok[j]) for j, r in enumerate(rows)])
            for j in np.flatnonzero(fixed >= 0):
                t = int(fixed[j])
                if not f_ok[j, t]:
                    raise FolkRNNError(f"--form: the prime's token {vocab.tokens[t]!r} at position {pos[j] + 1} "
                                       f"does not fit form {form.spec} (tune {rows[j].tune + 1})")
            empty = ~f_ok.any(-1)
            if empty.any():  # the plan has no way on where the guard has one: keep the guard's tokens
                for j in np.flatnonzero(empty):
                    r = rows[j]
                    log.warning("--form: tune %d left the plan at a dead end after %s (part %d, %d bars, stage %s)", r.tune + 1,
                                " ".join(vocab.decode(r.ids[-30:])), r.plan.k, r.plan.spans, r.plan.stage)
                f_ok[empty] = g_ok[empty]
            zg = filter_logits(np.where(g_ok, zt, -np.inf), cfg.top_k, cfg.top_p)
            kept = (softmax(zg) * f_ok).sum(-1)
            zf = np.where(f_ok, zg, -np.inf)
            lost = ~np.isfinite(zf).any(-1)
            if lost.any():  # top-k/p removed every planned token: draw among the plan's
                zf[lost] = np.where(f_ok[lost], zt[lost], -np.inf)
            u = uniforms(cfg.seed, np.array([r.stream for r in rows], dtype=np.uint64), pos)
            tok = np.where(fixed >= 0, fixed, draw(zf, u))
            lp = log_softmax_at(z, tok)

            keep: list[int] = []
            add: list[tuple[_Row, torch.Tensor, torch.Tensor]] = []
            for j, r in enumerate(rows):
                t = int(tok[j])
                if r.group is not None:
                    r.logw += math.log(kept[j]) if kept[j] > 0 else -math.inf
                event = r.plan.advance(t, r.guard)
                r.guard.advance(t, check=False)
                r.ids.append(t)
                r.lp += float(lp[j])
                finished = t == eos or len(r.ids) >= L
                # a particle parks when its part is closed; in the last part, when the tune has ended
                closes = event is not None and event.startswith("closed") and not r.plan.closed
                if r.group is not None and (closes or finished):
                    members = parked[r.group]
                    members.append((r, h[:, j : j + 1].clone(), c[:, j : j + 1].clone(), finished))
                    if len(members) == K:
                        del parked[r.group]
                        row, hj, cj, done = members[_choose(members, eos, cfg.seed, r.group, form.sharpness)]
                        row.group, row.logw = None, 0.0
                        if done:
                            finish(row)
                        else:
                            add.append((row, hj, cj))
                    continue
                if finished:
                    finish(r)
                    continue
                if event is not None and event.endswith("branch"):
                    b = r.plan.branches
                    r.plan.branches = b + 1
                    parked[(r.tune, b)] = []
                    for m in range(K):
                        cl = r.clone((r.tune + (b * K + m + 1) * _STREAM) % (1 << 64))
                        cl.group = (r.tune, b)
                        add.append((cl, h[:, j : j + 1], c[:, j : j + 1]))
                    continue
                keep.append(j)
            idx = torch.tensor(keep, dtype=torch.long)
            rows = [rows[j] for j in keep] + [a[0] for a in add]
            h = torch.cat([h.index_select(1, idx)] + [a[1] for a in add], 1)
            c = torch.cat([c.index_select(1, idx)] + [a[2] for a in add], 1)
            while emitted in pending:
                yield pending.pop(emitted)
                emitted += 1
                pbar.update(1)
    finally:
        pbar.close()
