"""How often each token occurred in a model's training data.

Every token-level result is shown with its training count: a token the model never saw
keeps its random initial input weights, so its similarity to anything means nothing.
Counts come from the checkpoint (`training.token_counts`, written by `folkrnn train`)
or are computed from a data_v2 corpus file. A tune contributes its tokens plus one `<s>`
and one `</s>` (what the network reads and predicts around it).

>>> import io
>>> from folkrnn.vocab import Vocabulary
>>> f = io.StringIO("M:6/8\\nK:Cdor\\n|: G c c :|\\n")
>>> c = counts_from_tunes([["M:6/8", "K:Cdor", "|:", "G", "c", "c", ":|"]], Vocabulary.v2(), "test")
>>> c["c"], c["G"], c["<s>"], c["^f"], c.tunes
(2, 1, 1, 0, 1)
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from folkrnn.errors import FolkRNNError
from folkrnn.files import sha256_file
from folkrnn.vocab import BOS, EOS, Vocabulary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenCounts:
    """Training count of every vocabulary token (0 = never seen), and where it came from."""

    counts: Mapping[str, int]
    source: str  # "checkpoint" or the corpus path
    tunes: int | None = None
    sha256: str | None = None
    out_of_vocabulary: Mapping[str, int] = field(default_factory=dict)
    # Whether the corpus is the file the checkpoint says it was trained on (None: unknown).
    matches_training_data: bool | None = None

    def __getitem__(self, token: str) -> int:
        return int(self.counts.get(token, 0))

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))

    def seen(self, token: str) -> bool:
        return self[token] > 0

    def log_frequency(self, token: str) -> float:
        """Natural log of the token's relative frequency; -inf when unseen."""
        n = self[token]
        return math.log(n / self.total) if n else -math.inf

    def unseen(self, vocab: Vocabulary) -> list[str]:
        return [t for t in vocab.tokens if self[t] == 0]

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "tunes": self.tunes,
            "tokens": self.total,
            "sha256": self.sha256,
            "out_of_vocabulary": dict(self.out_of_vocabulary),
            "matches_training_data": self.matches_training_data,
            "counts": {t: int(n) for t, n in self.counts.items()},
        }


def counts_from_tunes(tunes: Iterable[Sequence[str]], vocab: Vocabulary, source: str,
                      sha256: str | None = None) -> TokenCounts:
    """Count the tokens of data_v2 tunes (token lists without <s>/</s>)."""
    c: Counter[str] = Counter()
    n = 0
    for tune in tunes:
        c.update(tune)
        n += 1
    c[BOS] += n
    c[EOS] += n
    oov = {t: k for t, k in c.items() if t not in vocab}
    return TokenCounts({t: int(c[t]) for t in vocab.tokens}, source, n, sha256, oov)


def counts_from_metadata(meta: Mapping, vocab: Vocabulary) -> TokenCounts | None:
    """The counts `folkrnn train` records in a checkpoint: `training.data.token_counts`
    (or `training.token_counts`), a token -> count map or a list in vocabulary order.

    The trainer counts the tokens the model predicts (`</s>` included, `<s>` never); the
    `<s>` every training tune starts with is added from `training.data.train_tunes`. A
    model trained in stages (`training.lineage`, written when a fine-tuned run is shipped)
    saw every stage's data: their counts are added up."""
    training = meta.get("training") if isinstance(meta.get("training"), Mapping) else {}
    data = training.get("data") if isinstance(training.get("data"), Mapping) else {}
    raw = data.get("token_counts", training.get("token_counts"))
    if raw is None:
        return None
    stages = training.get("lineage")
    if isinstance(stages, list) and stages:
        total = counts_from_metadata({"training": {k: v for k, v in training.items() if k != "lineage"}}, vocab)
        summed = dict(total.counts)
        tunes = total.tunes or 0
        for st in stages:
            if not isinstance(st, Mapping) or not isinstance(st.get("data"), Mapping) or "token_counts" not in st["data"]:
                continue
            c = counts_from_metadata({"training": {"data": st["data"]}}, vocab)
            for t, k in c.counts.items():
                summed[t] += k
            tunes += c.tunes or 0
        return TokenCounts(summed, "checkpoint", tunes or None, data.get("sha256"), total.out_of_vocabulary, True)
    if isinstance(raw, Mapping):
        items = dict(raw)
    elif isinstance(raw, (list, tuple)) and len(raw) == len(vocab):
        items = dict(zip(vocab.tokens, raw))
    else:
        raise FolkRNNError("checkpoint metadata token_counts is neither a token -> count map nor a list of one count per vocabulary token")
    bad = [t for t, k in items.items() if isinstance(k, bool) or not isinstance(k, int) or k < 0]
    if bad:
        raise FolkRNNError(f"checkpoint metadata token_counts has a non-count value for {bad[0]!r}")
    tunes = data.get("train_tunes") or data.get("tunes")
    if not items.get(BOS) and isinstance(tunes, int):
        items[BOS] = tunes
    oov = {t: k for t, k in items.items() if t not in vocab}
    return TokenCounts({t: int(items.get(t, 0)) for t in vocab.tokens}, "checkpoint",
                       tunes if isinstance(tunes, int) else None, data.get("sha256"), oov, True)


def counts_from_corpus(path: str | Path, vocab: Vocabulary, meta: Mapping | None = None) -> TokenCounts:
    """Count a data_v2 token file; compared (by SHA-256) with the data the checkpoint records."""
    from folkrnn.datafile import read_tunes

    p = Path(path)
    if p.is_dir():
        raise FolkRNNError(f"{path}: is a directory, not a data_v2 token file")
    digest = sha256_file(p)
    tunes = read_tunes(p)
    counts = counts_from_tunes(tunes, vocab, str(path), digest)
    if counts.total == 2 * (counts.tunes or 0):
        raise FolkRNNError(f"{path}: none of its tokens is in the model's vocabulary")
    if counts.out_of_vocabulary:
        some = " ".join(sorted(counts.out_of_vocabulary)[:5])
        log.warning("%s: %d token types are not in the model's vocabulary (%s): not the model's training data?",
                    path, len(counts.out_of_vocabulary), some)
    recorded = ((meta or {}).get("training") or {}).get("data", {}).get("sha256") if isinstance((meta or {}).get("training"), Mapping) else None
    if recorded:
        match = recorded == digest
        if not match:
            log.warning("%s is not the file this model was trained on (SHA-256 differs from the checkpoint's)", path)
        counts = TokenCounts(counts.counts, counts.source, counts.tunes, digest, counts.out_of_vocabulary, match)
    return counts


def token_counts(meta: Mapping, vocab: Vocabulary, corpus: str | Path | None = None) -> TokenCounts | None:
    """The counts an analysis uses: those of `corpus` when given (the user's explicit
    choice), else the checkpoint's `training.token_counts`, else those of the training
    file the checkpoint names (`training.data.path`) if it exists here with the recorded
    SHA-256, else None."""
    if corpus is not None:
        return counts_from_corpus(corpus, vocab, meta)
    counts = counts_from_metadata(meta, vocab)
    if counts is not None:
        return counts
    training = meta.get("training") if isinstance(meta.get("training"), Mapping) else {}
    data = training.get("data") if isinstance(training.get("data"), Mapping) else {}
    path, digest = data.get("path"), data.get("sha256")
    if isinstance(path, str) and digest and Path(path).is_file():
        try:
            same = sha256_file(path) == digest
        except FolkRNNError:  # unreadable: count from the checkpoint instead
            same = False
        if same:
            log.info("token counts from %s, the training file the checkpoint names", path)
            return counts_from_corpus(path, vocab, meta)
    return None
