"""Novelty: how close each tune is to a reference corpus, and what it copies from it.

`NGramIndex` indexes the bodies (tokens after `M:` and `K:`) of the reference
tunes by their token n-grams (8 by default), with positions. A query finds
- the nearest reference tune: the one with the highest Jaccard overlap of
  distinct n-grams with the query;
- the longest run of tokens the query shares with any reference tune, exactly
  whenever that run is at least n tokens long (a shorter run shares no n-gram and
  is reported as 0): every maximal common run starts at a shared n-gram, which
  is then extended token by token.

Tokens are mapped to single characters so that an n-gram is a short string
(hashed once by Python) and runs are compared as substrings.

>>> ref = [["M:4/4", "K:Cmaj"] + "C D E F G A B c | c B A G F E D C |".split()]
>>> idx = NGramIndex(ref, n=4)
>>> m = idx.query(["M:4/4", "K:Cmaj"] + "G A B c | c B A G F E D C D E |".split())
>>> m.nearest, m.longest_run, m.run_start, m.ref_start
(0, 13, 0, 4)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_STRIDE = 1 << 24  # packed hit = tune * _STRIDE + position


@dataclass(frozen=True)
class Match:
    """Where a query tune stands against the reference corpus."""

    nearest: int | None  # index of the nearest reference tune (None: no shared n-gram)
    similarity: float  # Jaccard overlap of distinct n-grams with it
    longest_run: int  # longest run of body tokens shared with any reference tune (0 if < n)
    run_tune: int | None  # the reference tune holding that run
    run_start: int | None  # where the run starts in the query body
    ref_start: int | None  # and in the reference tune's body

    def to_json(self) -> dict:
        return {
            "nearest": self.nearest,
            "nearest_similarity": round(self.similarity, 4),
            "longest_run": self.longest_run,
            "longest_run_tune": self.run_tune,
        }


class NGramIndex:
    """Token n-gram index of reference tunes (token lists `M:.. K:.. body`)."""

    def __init__(self, tunes: Iterable[Sequence[str]], n: int = 8, progress: bool = False):
        if n < 1:
            raise ValueError("n-gram size must be positive")
        self.n = n
        self._chars: dict[str, str] = {}
        self.bodies: list[str] = []
        self.sizes: list[int] = []  # distinct n-grams per reference tune
        self.hits: dict[str, list[int]] = {}
        it = tunes
        if progress:
            from folkrnn.files import progress as bar

            it = bar(tunes, desc="indexing reference", unit="tune")
        hits = self.hits
        for r, tune in enumerate(it):
            body = self.encode(tune)
            self.bodies.append(body)
            seen = set()
            base = r * _STRIDE
            for p in range(len(body) - n + 1):
                g = body[p : p + n]
                lst = hits.get(g)
                if lst is None:
                    hits[g] = [base + p]
                else:
                    lst.append(base + p)
                seen.add(g)
            self.sizes.append(len(seen))

    def __len__(self) -> int:
        return len(self.bodies)

    def encode(self, tune: Sequence[str]) -> str:
        """The body of a tune (tokens after M: and K:) as one character per token."""
        chars = self._chars
        out = []
        for t in tune[2:]:
            c = chars.get(t)
            if c is None:
                c = chars[t] = chr(0x4E00 + len(chars))
            out.append(c)
        return "".join(out)

    def query(self, tune: Sequence[str]) -> Match:
        """Nearest reference tune and longest shared run of `tune` (tokens `M:.. K:.. body`)."""
        q = self.encode(tune)
        n = self.n
        hits = self.hits
        bodies = self.bodies
        shared: Counter = Counter()
        seen: set[str] = set()
        best, best_r, best_i, best_p = 0, None, None, None
        lq = len(q)
        for i in range(lq - n + 1):
            g = q[i : i + n]
            hl = hits.get(g)
            if hl is None:
                continue
            if g not in seen:
                seen.add(g)
                shared.update({h // _STRIDE for h in hl})
            prev = q[i - 1] if i else None
            for h in hl:
                r, p = divmod(h, _STRIDE)
                ref = bodies[r]
                if prev is not None and p and ref[p - 1] == prev:
                    continue  # inside a longer run found from its start
                k = n
                lr = len(ref)
                while i + k < lq and p + k < lr and q[i + k] == ref[p + k]:
                    k += 1
                if k > best:
                    best, best_r, best_i, best_p = k, r, i, p
        nq = len({q[i : i + n] for i in range(lq - n + 1)})
        nearest, sim = None, 0.0
        for r, c in shared.items():
            j = c / (nq + self.sizes[r] - c)
            if j > sim or (j == sim and nearest is not None and r < nearest):
                nearest, sim = r, j
        return Match(nearest, sim, best, best_r, best_i, best_p)
