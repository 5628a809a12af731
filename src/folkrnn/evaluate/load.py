"""Read the transcriptions to evaluate: a data_v2 token file or an ABC file.

A file is ABC when its name ends in `.abc` or it has an `X:` header line;
anything else is read as data_v2 (see `folkrnn.datafile`). ABC goes through
`folkrnn.abc.read_abc_file`; tunes it rejects are kept aside with their reason,
not evaluated. Every token must be in the v2 vocabulary: an unknown token is a
`FolkRNNError` naming the file, the tune and the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from folkrnn.errors import FolkRNNError
from folkrnn.vocab import BOS, EOS, Vocabulary

_X_HEADER = re.compile(r"^X:", re.M)


@dataclass(frozen=True)
class Rejected:
    """A tune of an ABC file that could not be turned into v2 tokens."""

    where: str
    reason: str

    def to_json(self) -> dict:
        return {"where": self.where, "reason": self.reason}


@dataclass
class Loaded:
    """Tunes of one file, as token lists `[M:.., K:.., body...]`, and what was left out.

    `positions[i]` is tune i's place in the file counted from 1, rejected ABC tunes
    included (the numbering of `evaluate --tunes` and `score`); `xs[i]` its X: field
    (ABC only, else empty); `titles[i]` its first T: field (ABC only, else empty);
    `keys[i]` the tonic its K: field names and whether its signature has flats (ABC only,
    else None: token files are in C).
    """

    path: str
    format: str  # "data_v2" or "abc"
    tunes: list[list[str]]
    titles: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    xs: list[str | None] = field(default_factory=list)
    keys: list[tuple[str, bool] | None] = field(default_factory=list)  # ABC: (tonic as written, flats?)


def is_abc(path: str | Path, head: str | None = None) -> bool:
    """Whether `path` looks like an ABC file (by suffix, else by an X: line)."""
    if str(path).lower().endswith(".abc"):
        return True
    if head is None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                head = f.read(65536)
        except OSError as e:
            raise FolkRNNError(f"{path}: {e.strerror or e}") from None
    return bool(_X_HEADER.search(head))


def load_tunes(path: str | Path, vocab: Vocabulary | None = None) -> Loaded:
    """Read every transcription of `path` (data_v2 or ABC), checked against `vocab` (v2 by default)."""
    vocab = vocab or Vocabulary.v2()
    p = Path(path)
    if not p.exists():
        raise FolkRNNError(f"{path}: no such file")
    if p.is_dir():
        raise FolkRNNError(f"{path}: is a directory, not a token or ABC file")
    if is_abc(p):
        loaded = _load_abc(p, vocab)
    else:
        from folkrnn.datafile import iter_tunes

        tunes = list(iter_tunes(p, vocab))
        loaded = Loaded(str(path), "data_v2", tunes, positions=list(range(1, len(tunes) + 1)))
    if not loaded.tunes:
        extra = f" ({len(loaded.rejected)} rejected)" if loaded.rejected else ""
        raise FolkRNNError(f"{path}: no transcriptions found{extra}")
    return loaded


def _load_abc(path: Path, vocab: Vocabulary) -> Loaded:
    try:
        from folkrnn.abc import read_abc_file
    except ImportError:
        raise FolkRNNError(f"{path}: reading ABC needs folkrnn.abc, which this installation lacks") from None
    out = Loaded(str(path), "abc", [])
    for n, r in enumerate(read_abc_file(path), start=1):
        x = getattr(r, "x", None)
        title = getattr(r, "title", "") or ""
        where = f"{path}: tune {n}" + (f" (X:{x}" + (f" {title}" if title else "") + ")" if x is not None else "")
        toks = getattr(r, "tokens", None)
        if toks is None:
            reason = getattr(r, "reason", "") or "rejected"
            detail = getattr(r, "detail", "")
            out.rejected.append(Rejected(where, f"{reason}: {detail}" if detail else str(reason)))
            continue
        toks = [t for t in toks if t not in (BOS, EOS)]
        if len(toks) < 2 or not toks[0].startswith("M:") or not toks[1].startswith("K:"):
            out.rejected.append(Rejected(where, "no M: and K: tokens at the start"))
            continue
        vocab.encode(toks, where=where)
        out.tunes.append(toks)
        out.titles.append(title)
        out.positions.append(n)
        out.xs.append(x)
        tonic = getattr(r, "tonic", None)
        out.keys.append((tonic, bool(getattr(r, "flats", False))) if tonic else None)
    return out
