"""An n-gram baseline for the v2 token language: interpolated modified Kneser-Ney.

So that a network's loss has meaning, this gives the held-out negative
log-likelihood per token of a classical model trained on the same tunes, under
the same convention as the network: each tune is `<s> M:.. K:.. body </s>`, and
every token after `<s>` is predicted (`</s>` included) from the tokens before it.
Contexts near the start are simply shorter (no padding beyond the one `<s>`).

Smoothing is interpolated modified Kneser-Ney (Chen & Goodman 1998): for an
order-k context h and next token w,

    P_k(w | h) = (max(a_k(hw) - D_k(a_k(hw)), 0) + gamma_k(h) P_{k-1}(w | h'))  /  sum_v a_k(hv)
    gamma_k(h) = D_k1 N1(h.) + D_k2 N2(h.) + D_k3+ N3+(h.)

where h' is h without its first token, a_k is the raw count at the highest order
(and for n-grams starting with `<s>`, which nothing precedes) and the number of
distinct left neighbours (continuation count) below it; the discounts D_k1, D_k2,
D_k3+ come from the count-of-counts of a_k; an unseen context hands its mass
down unchanged; order 0 is uniform over the vocabulary. Every token of the
vocabulary therefore gets a non-zero probability, and each context's
probabilities sum to one (exactly, with `exact=True`, which computes in Fractions).

>>> tunes = [["M:2/4", "K:Cmaj", "C", "D", "|", "C", "D", "|"]] * 3
>>> m = NGramModel.train(tunes, order=3)
>>> round(m.prob("D", ["C"]), 3) > 0.5 > m.prob("E", ["C"]) > 0
True
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from folkrnn.errors import FolkRNNError
from folkrnn.vocab import BOS, EOS, Vocabulary

_B = 256  # n-grams are packed into ints, base 256, most recent token lowest

# Discounts used when the count-of-counts cannot give a positive estimate (tiny corpora).
_FALLBACK = (Fraction(1, 2), Fraction(1), Fraction(3, 2))


class RawCounts:
    """Raw n-gram counts of orders 1..max_order over tunes framed by `<s>` ... `</s>`."""

    def __init__(self, tunes: Iterable[Sequence[str]], max_order: int, vocab: Vocabulary, where: str = "training data"):
        if max_order < 1:
            raise FolkRNNError(f"n-gram order must be at least 1, got {max_order}")
        if len(vocab) > _B:
            raise FolkRNNError(f"vocabulary too large for the n-gram packing ({len(vocab)} > {_B})")
        self.vocab = vocab
        self.max_order = max_order
        self.counts: list[dict[int, int]] = [{} for _ in range(max_order + 1)]  # [k] for k >= 1
        self.tunes = 0
        self.tokens = 0
        for n, tune in enumerate(tunes, start=1):
            s = _frame(tune, vocab, f"{where}: transcription {n}")
            self.tunes += 1
            self.tokens += len(s) - 1
            counts = self.counts
            for t in range(1, len(s)):
                g, mult = 0, 1
                for k in range(1, min(max_order, t + 1) + 1):
                    g += s[t - k + 1] * mult
                    mult *= _B
                    c = counts[k]
                    c[g] = c.get(g, 0) + 1
        if not self.tunes:
            raise FolkRNNError(f"{where}: no transcriptions to train on")


def _frame(tune: Sequence[str], vocab: Vocabulary, where: str) -> list[int]:
    toks = [t for t in tune if t not in (BOS, EOS)]
    return [vocab.bos, *vocab.encode(toks, where=where), vocab.eos]


def _discounts(adjusted: dict[int, int]) -> tuple[Fraction, Fraction, Fraction]:
    """Modified-KN discounts D1, D2, D3+ from the count-of-counts (Chen & Goodman)."""
    n = [0, 0, 0, 0, 0]
    for a in adjusted.values():
        if a <= 4:
            n[a] += 1
    n1, n2, n3, n4 = n[1], n[2], n[3], n[4]
    out = []
    if n1 and n2:
        y = Fraction(n1, n1 + 2 * n2)
        est = [1 - 2 * y * Fraction(n2, n1), 2 - 3 * y * Fraction(n3, n2) if n3 else None, 3 - 4 * y * Fraction(n4, n3) if n3 and n4 else None]
    else:
        est = [None, None, None]
    for j, d in enumerate(est, start=1):
        # Outside (0, j] the estimate would give zero or negative mass: use the fallback.
        out.append(d if d is not None and 0 < d <= j else _FALLBACK[j - 1])
    return out[0], out[1], out[2]


@dataclass(frozen=True)
class Score:
    """Held-out negative log-likelihood of a set of tunes."""

    tunes: int
    tokens: int  # predicted tokens (every token after <s>, </s> included)
    nll_nats: float  # total

    @property
    def nats_per_token(self) -> float:
        return self.nll_nats / self.tokens

    @property
    def bits_per_token(self) -> float:
        return self.nats_per_token / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nats_per_token)

    @property
    def nats_per_tune(self) -> float:
        return self.nll_nats / self.tunes

    def to_json(self) -> dict:
        return {
            "tunes": self.tunes,
            "tokens": self.tokens,
            "nll_nats_per_token": self.nats_per_token,
            "nll_bits_per_token": self.bits_per_token,
            "perplexity": self.perplexity,
            "nll_nats_per_tune": self.nats_per_tune,
        }


class NGramModel:
    """An order-n interpolated modified Kneser-Ney model over a `Vocabulary`."""

    def __init__(self, raw: RawCounts, order: int, exact: bool = False):
        if not 1 <= order <= raw.max_order:
            raise FolkRNNError(f"n-gram order must be in 1..{raw.max_order}, got {order}")
        self.vocab = raw.vocab
        self.order = order
        self.exact = exact
        self.train_tunes = raw.tunes
        self.train_tokens = raw.tokens
        num = Fraction if exact else float
        self._num = num
        self.uniform = num(Fraction(1, len(self.vocab)))
        bos = raw.vocab.bos
        # adjusted counts per order
        adj: list[dict[int, int]] = [{} for _ in range(order + 1)]
        adj[order] = dict(raw.counts[order])
        for k in range(1, order):
            a: dict[int, int] = {}
            high = _B ** (k - 1)
            for g, c in raw.counts[k].items():
                if g // high == bos:  # starts with <s>: nothing can precede it
                    a[g] = c
            mod = _B**k
            for g in raw.counts[k + 1]:
                s = g % mod
                if s // high != bos:
                    a[s] = a.get(s, 0) + 1
            adj[k] = a
        self.discounts: list[tuple] = [()]
        self._adj: list[dict[int, int]] = adj
        # per order: context -> (total, gamma numerator); order 1 has the single empty context
        self._ctx: list[dict[int, tuple]] = [{}]
        self._disc: list[tuple] = [()]
        for k in range(1, order + 1):
            d1, d2, d3 = _discounts(adj[k])
            self.discounts.append((d1, d2, d3))
            dk = (num(0), num(d1), num(d2), num(d3))
            self._disc.append(dk)
            stats: dict[int, list] = {}
            for g, a in adj[k].items():
                ctx = g // _B
                st = stats.get(ctx)
                if st is None:
                    st = stats[ctx] = [0, 0, 0, 0]
                st[0] += a
                st[min(a, 3)] += 1
            self._ctx.append({ctx: (num(st[0]), dk[1] * st[1] + dk[2] * st[2] + dk[3] * st[3]) for ctx, st in stats.items()})

    @classmethod
    def train(cls, tunes: Iterable[Sequence[str]], order: int = 8, vocab: Vocabulary | None = None, exact: bool = False) -> NGramModel:
        """Count `tunes` (token lists `M:.. K:.. body`) and build an order-`order` model."""
        return cls(RawCounts(tunes, order, vocab or Vocabulary.v2()), order, exact)

    def _prob_ids(self, w: int, ctx_ids: Sequence[int]):
        """P(w | context); ctx_ids are the preceding token ids, most recent last."""
        p = self.uniform
        g, mult = w, _B
        n = len(ctx_ids)
        for k in range(1, self.order + 1):
            if k > 1:
                if k - 1 > n:
                    break
                g += ctx_ids[n - k + 1] * mult
                mult *= _B
            st = self._ctx[k].get(g // _B)
            if st is None:
                continue  # unseen context: its mass goes to the lower order unchanged
            a = self._adj[k].get(g, 0)
            d = self._disc[k][a if a < 3 else 3]
            p = ((a - d if a else 0) + st[1] * p) / st[0]
        return p

    def prob(self, token: str, context: Sequence[str]):
        """P(token | context), context being the preceding tokens (`<s>` first if at the start)."""
        v = self.vocab
        return self._prob_ids(v[token], [v[t] for t in context])

    def distribution(self, context: Sequence[str]) -> list:
        """P(. | context) over the whole vocabulary, in vocabulary order (len(vocab) values)."""
        v = self.vocab
        ids = [v[t] for t in context]
        return [self._prob_ids(w, ids) for w in range(len(v))]

    def score(self, tunes: Iterable[Sequence[str]], where: str = "held-out data") -> Score:
        """Negative log-likelihood (nats) of `tunes`, every token after `<s>` predicted."""
        total = 0.0
        ntok = ntunes = 0
        keep = self.order - 1
        for n, tune in enumerate(tunes, start=1):
            s = _frame(tune, self.vocab, f"{where}: transcription {n}")
            for t in range(1, len(s)):
                p = self._prob_ids(s[t], s[max(0, t - keep) : t])
                total -= math.log(p)
            ntok += len(s) - 1
            ntunes += 1
        if not ntunes:
            raise FolkRNNError(f"{where}: no transcriptions to score")
        return Score(ntunes, ntok, total)


def parse_orders(text: str) -> list[int]:
    """`5` -> [5]; `2-6` -> [2, 3, 4, 5, 6]; `3,5` -> [3, 5].

    >>> parse_orders("2-4"), parse_orders("5"), parse_orders("3,6")
    ([2, 3, 4], [5], [3, 6])
    """
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError:
        raise FolkRNNError(f"--order: expected N, A-B or A,B,..., got {text!r}") from None
    if not out or min(out) < 1 or max(out) > 12:
        raise FolkRNNError(f"--order: orders must be in 1..12, got {text!r}")
    return sorted(set(out))


def sweep(train: Sequence[Sequence[str]], test: Sequence[Sequence[str]], orders: Sequence[int], vocab: Vocabulary | None = None, progress: bool = False) -> list[tuple[int, Score]]:
    """Train one model per order on `train` (counting once) and score `test` with each."""
    vocab = vocab or Vocabulary.v2()
    raw = RawCounts(train, max(orders), vocab)
    it = orders
    if progress and len(orders) > 1:
        from folkrnn.files import progress as bar

        it = bar(orders, desc="orders", unit="order")
    return [(k, NGramModel(raw, k).score(test)) for k in it]
