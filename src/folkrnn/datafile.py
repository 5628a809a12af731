"""Read and write the folk-rnn `data_v2` token file format.

UTF-8 text; transcriptions separated by a blank line; tokens separated by
whitespace; each transcription starts with its meter token (`M:..`) on the first
line, its key token (`K:..`) on the second, then the body. `<s>`/`</s>` are not
written in the file: they are added when a tune is fed to a model.

>>> import io
>>> f = io.StringIO("M:6/8\\nK:Cdor\\n|: G c c :|\\n\\nM:2/4\\nK:Cmaj\\nC D |\\n")
>>> [t[:3] for t in iter_tunes(f)]
[['M:6/8', 'K:Cdor', '|:'], ['M:2/4', 'K:Cmaj', 'C']]
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from folkrnn.errors import FolkRNNError
from folkrnn.vocab import BOS, EOS, Vocabulary

_BLANK = re.compile(r"\n[ \t\r]*\n")


def _check(tune: list[str], where: str, vocab: Vocabulary | None) -> None:
    if len(tune) < 2 or not tune[0].startswith("M:") or not tune[1].startswith("K:"):
        raise FolkRNNError(f"{where}: a transcription must start with an M: token and then a K: token, got {' '.join(tune[:2])!r}")
    if BOS in tune or EOS in tune:
        raise FolkRNNError(f"{where}: <s> and </s> do not belong in a data_v2 file")
    if vocab is not None:
        vocab.encode(tune, where=where)


def iter_tunes(source: str | Path | TextIO, vocab: Vocabulary | None = None) -> Iterator[list[str]]:
    """Yield the transcriptions of a data_v2 file as token lists, validated.

    With `vocab`, every token must be in it (errors name the file and tune number).
    """
    name = getattr(source, "name", str(source))
    if isinstance(source, (str, Path)):
        try:
            text = Path(source).read_text("utf-8")
        except UnicodeDecodeError:
            raise FolkRNNError(f"{source}: not UTF-8 text") from None
        except OSError as e:
            raise FolkRNNError(f"{source}: {e.strerror or e}") from None
    else:
        text = source.read()
    text = text.replace("\r\n", "\n")
    for n, block in enumerate((b for b in _BLANK.split(text) if b.strip()), start=1):
        tune = block.split()
        _check(tune, f"{name}: transcription {n}", vocab)
        yield tune


def read_tunes(source: str | Path | TextIO, vocab: Vocabulary | None = None) -> list[list[str]]:
    """All transcriptions of a data_v2 file (see `iter_tunes`)."""
    tunes = list(iter_tunes(source, vocab))
    if not tunes:
        raise FolkRNNError(f"{getattr(source, 'name', source)}: no transcriptions found")
    return tunes


def format_tune(tune: Sequence[str]) -> str:
    """One transcription in data_v2 layout (meter line, key line, body line)."""
    tune = [t for t in tune if t not in (BOS, EOS)]
    return f"{tune[0]}\n{tune[1]}\n{' '.join(tune[2:])}\n"


def write_tunes(dest: str | Path | TextIO, tunes: Iterable[Sequence[str]]) -> int:
    """Write transcriptions in data_v2 format; returns how many were written."""
    if isinstance(dest, (str, Path)):
        with open(dest, "w", encoding="utf-8") as f:
            return write_tunes(f, tunes)
    n = 0
    for tune in tunes:
        if n:
            dest.write("\n")
        dest.write(format_tune(tune))
        n += 1
    return n


def tunes_to_text(tunes: Iterable[Sequence[str]]) -> str:
    buf = io.StringIO()
    write_tunes(buf, tunes)
    return buf.getvalue()
