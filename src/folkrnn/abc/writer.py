"""folk-rnn v2 tokens -> standard ABC (X, T, M, L:1/8, K), in C or any other tonic.

v2 tokens are already ABC under L:1/8 with the ABC accidental convention, so in C
they are written as they are; for another tonic every note is moved diatonically
(the nearer octave; up on a tie) and respelled for the new key signature with the
same rule the reader uses, so reading the result back gives the tokens again.

The token sequence must be one the reader can give back: a length after a note,
rest or chord, chords of notes only, and so on; otherwise FolkRNNError names the
offending token (sampled sequences can be ill-formed).

>>> print(tokens_to_abc("<s> M:6/8 K:Cdor |: G c c B c d :| |2 e 3/2 z /2 </s>".split(), key="D", title="Jig"))
X:1
T:Jig
M:6/8
L:1/8
K:Ddor
|: Addcde :| |2 f3/2z/2
<BLANKLINE>
"""

from __future__ import annotations

from collections.abc import Sequence

from folkrnn.abc.keys import V2_KEY_MODES, Note, Tonic, mode_signature, moves, parse_key, spell
from folkrnn.errors import FolkRNNError
from folkrnn.tokens import BARS, METERS, iter_sounding, kind, parse_pitch
from folkrnn.vocab import BOS, EOS

__all__ = ["tokens_to_abc"]

_MODE_SUFFIX = {"K:Cmaj": "maj", "K:Cmin": "min", "K:Cdor": "dor", "K:Cmix": "mix"}
BARS_PER_LINE = 4


def _check_body(body: Sequence[str]) -> None:
    """Raise FolkRNNError unless the reader can give `body` back from its ABC.

    Chord brackets are written as they come, balanced or not: sampled sequences
    have stray ones, and the non-strict reader keeps them (see `read_abc`).
    """
    prev = "start"  # kind of the previous token
    for i, tok in enumerate(body, start=2):
        k = kind(tok)
        where = f"token {i} {tok!r}"
        if k in ("unknown", "meter", "key", "bos", "eos"):
            raise FolkRNNError(f"{where}: not a body token")
        # A length or broken rhythm after anything else would be read back joined
        # to the previous length (`2 >` -> `2>`) or not at all.
        if k in ("duration", "broken") and prev not in ("pitch", "rest", "chord_end"):
            raise FolkRNNError(f"{where}: a length or broken rhythm must follow a note, rest or chord")
        prev = k


def _strip_specials(tokens: Sequence[str]) -> list[str]:
    toks = list(tokens)
    if toks and toks[0] == BOS:
        toks = toks[1:]
    if toks and toks[-1] == EOS:
        toks = toks[:-1]
    if BOS in toks or EOS in toks:
        raise FolkRNNError("<s> may only open and </s> only close a transcription")
    return toks


def tokens_to_abc(
    tokens: Sequence[str],
    key: str = "C",
    x: int = 1,
    title: str | None = None,
    comments: Sequence[str] = (),
) -> str:
    """One tune of standard ABC from v2 tokens (`<s>`/`</s>` allowed).

    `key` is the tonic to write in ("C", "D", "F#", "Bb"...): `K:Cdor` with key="D"
    becomes `K:Ddor` with every note moved up a tone. `comments` become `%` lines.
    The text ends with a newline.
    """
    toks = _strip_specials(tokens)
    if len(toks) < 2 or toks[0] not in METERS or toks[1] not in _MODE_SUFFIX:
        raise FolkRNNError(f"a transcription starts with a v2 meter and key token, got {' '.join(toks[:2])!r}")
    body = toks[2:]
    _check_body(body)
    tonic = parse_key(key)
    mode = V2_KEY_MODES[toks[1]]
    if tonic.semitone == 0 and tonic.letter == "C":
        spelled = body
    else:
        items: list[str | Note] = list(body)
        for i, midi in iter_sounding(body, toks[1]):
            items[i] = Note(parse_pitch(body[i]).step, midi, body[i][0] in "^_=")
        # The nearer octave; on a tie (a tritone) up, so that the reader's
        # down-first tie rule brings it back.
        cands = moves(_tonic_c(), tonic)
        best = min(cands, key=lambda m: (abs(m.semitones), -m.semitones))
        try:
            spelled = list(spell(items, best, mode_signature(tonic, mode)))
        except ValueError as e:
            raise FolkRNNError(f"cannot write this tune in {tonic}: {e}") from None
    lines = [f"X:{x}", f"T:{title if title is not None else 'folkrnn tune'}"]
    lines += [f"% {c}" if c else "%" for c in comments]
    lines += [toks[0], "L:1/8", f"K:{tonic.name}{_MODE_SUFFIX[toks[1]]}"]
    lines += _layout(spelled)
    return "\n".join(lines) + "\n"


def _tonic_c() -> Tonic:
    return Tonic("C", 0)


def _layout(body: Sequence[str]) -> list[str]:
    """Body tokens -> ABC lines: notes run together, spaces around bars, a line
    break every few bars. Lengths and broken rhythms stick to their note."""
    lines: list[str] = []
    out: list[str] = []
    bars = 0
    for tok in body:
        if tok in BARS:
            if out and out[-1] != " ":
                out.append(" ")
            out.append(tok)
            out.append(" ")
            bars += 1
            if bars % BARS_PER_LINE == 0 and tok != "|1" and tok != "|2":
                lines.append("".join(out).strip())
                out = []
        else:
            out.append(tok)
    if out:
        rest = "".join(out).strip()
        if rest:
            lines.append(rest)
    return lines

