"""The folk-rnn v2 token vocabulary: token <-> index.

The index order of the 137-token v2 vocabulary is part of the specification: it is
the dimension order of the one-hot input and of the softmax output of the original
weights, so it is shipped verbatim (``data/folkrnn_v2_vocabulary.json``).

>>> v = Vocabulary.v2()
>>> len(v), v["M:4/4"], v["</s>"], v["<s>"]
(137, 104, 59, 80)
>>> v.decode(v.encode(["M:6/8", "K:Cdor", "|:", "G"]))
['M:6/8', 'K:Cdor', '|:', 'G']
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path

from folkrnn.errors import FolkRNNError

BOS = "<s>"
EOS = "</s>"


class Vocabulary:
    """An ordered, immutable list of tokens with a reverse index."""

    __slots__ = ("tokens", "_index")

    def __init__(self, tokens: Sequence[str]):
        tokens = tuple(tokens)
        if len(set(tokens)) != len(tokens):
            dup = sorted({t for t in tokens if tokens.count(t) > 1})
            raise FolkRNNError(f"vocabulary has duplicate tokens: {' '.join(dup)}")
        for special in (BOS, EOS):
            if special not in tokens:
                raise FolkRNNError(f"vocabulary lacks the special token {special}")
        bad = [t for t in tokens if not isinstance(t, str) or not t or any(c.isspace() for c in t)]
        if bad:
            raise FolkRNNError(f"vocabulary has invalid tokens: {bad[:5]!r}")
        self.tokens: tuple[str, ...] = tokens
        self._index = {t: i for i, t in enumerate(tokens)}

    # -- construction -------------------------------------------------------------
    @classmethod
    def v2(cls) -> Vocabulary:
        """The 137-token folk-rnn v2 vocabulary in its original index order."""
        text = resources.files("folkrnn.data").joinpath("folkrnn_v2_vocabulary.json").read_text("utf-8")
        return cls(json.loads(text))

    @classmethod
    def from_tunes(cls, tunes: Iterable[Sequence[str]]) -> Vocabulary:
        """A vocabulary of every token in `tunes` plus <s> and </s>, sorted.

        The original trainer built its vocabulary from the training data in Python 2
        set order; sorting makes ours reproducible.
        """
        seen = {BOS, EOS}
        for tune in tunes:
            seen.update(tune)
        return cls(sorted(seen))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        """Read a vocabulary saved as a JSON list of tokens."""
        try:
            data = json.loads(Path(path).read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise FolkRNNError(f"{path}: cannot read vocabulary: {e}") from None
        if not isinstance(data, list):
            raise FolkRNNError(f"{path}: a vocabulary file is a JSON list of tokens")
        return cls(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json() + "\n", "utf-8")

    def to_json(self) -> str:
        return json.dumps(list(self.tokens), indent=0, ensure_ascii=False)

    # -- lookup ---------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def __getitem__(self, token: str) -> int:
        try:
            return self._index[token]
        except KeyError:
            raise FolkRNNError(f"unknown token {token!r}") from None

    def __iter__(self):
        return iter(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __hash__(self) -> int:
        return hash(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} tokens)"

    @property
    def bos(self) -> int:
        return self._index[BOS]

    @property
    def eos(self) -> int:
        return self._index[EOS]

    def unknown(self, tokens: Iterable[str]) -> list[str]:
        """The distinct tokens of `tokens` not in this vocabulary, in first-seen order."""
        out: dict[str, None] = {}
        for t in tokens:
            if t not in self._index:
                out[t] = None
        return list(out)

    def encode(self, tokens: Iterable[str], where: str = "") -> list[int]:
        """Token strings -> indices; unknown tokens are all named in one error."""
        tokens = list(tokens)
        missing = self.unknown(tokens)
        if missing:
            prefix = f"{where}: " if where else ""
            raise FolkRNNError(f"{prefix}unknown token(s) not in the vocabulary: {' '.join(missing)}")
        return [self._index[t] for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]
