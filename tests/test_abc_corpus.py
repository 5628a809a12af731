"""The codec on the open corpus (music21's bundled folk collections, ~4,400 tunes).

The corpus helpers here are shared with test_abc_music21.py."""

from __future__ import annotations

import glob
import os
from collections import Counter
from functools import lru_cache

import pytest

from folkrnn.abc import read_abc, tokens_to_abc, tune_to_tokens
from folkrnn.abc.writer import make_writable
from folkrnn.vocab import Vocabulary

pytest.importorskip("music21")

# Also used by test_abc_music21.py.
COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")


def corpus_files() -> list[str]:
    import music21

    root = os.path.join(os.path.dirname(music21.__file__), "corpus")
    return [f for c in COLLECTIONS for f in sorted(glob.glob(os.path.join(root, c, "*.abc")))]


@lru_cache(maxsize=1)
def corpus_texts() -> tuple[tuple[str, str], ...]:
    out = []
    for f in corpus_files():
        data = open(f, "rb").read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
        out.append((os.path.relpath(f, os.path.dirname(os.path.dirname(f))), text))
    return tuple(out)


def tune_text(text: str, line: int) -> str:
    """The ABC of the tune starting at 1-based `line` (to the next blank line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    i = j = line - 1
    while j + 1 < len(lines) and lines[j + 1].strip():
        j += 1
    return "\n".join(lines[i : j + 1]) + "\n"


@pytest.fixture(scope="module")
def results():
    return [r for name, text in corpus_texts() for r in read_abc(text, name)]


def test_at_least_85_percent_kept_and_every_rejection_explained(results):
    assert len(results) > 4000
    kept = [r for r in results if r.accepted]
    assert len(kept) / len(results) >= 0.85
    reasons = Counter(r.reason for r in results if not r.accepted)
    for r in results:
        if not r.accepted:
            assert r.reason and r.detail and "\n" not in r.detail, r
    # The categories are the short, stable ones used for histograms.
    assert set(reasons) <= {"meter", "mode", "key", "key change", "meter change", "voices", "pitch range",
                            "duration", "accidental", "tuplet", "ending", "no notes", "malformed"}


def test_accepted_tunes_are_valid_v2(results):
    v2 = Vocabulary.v2()
    for r in results:
        if r.accepted:
            assert r.tokens[0].startswith("M:") and r.tokens[1].startswith("K:")
            assert v2.unknown(r.tokens) == [], r.label()
            assert r.meter and r.mode in ("major", "minor", "dorian", "mixolydian")


@pytest.mark.slow
def test_round_trip_identity_on_the_corpus(results):
    # Tokens -> ABC -> tokens gives the tokens back, or (21 of 4,282 tunes: a broken
    # rhythm abc2midi refuses, a stray bracket...) the repaired tokens the writer wrote.
    n = same = 0
    for i, r in enumerate(results):
        if r.accepted:
            toks = list(r.tokens)
            want = make_writable(toks)[0]
            back = tune_to_tokens(tokens_to_abc(toks))
            assert back == want, r.label()
            same += back == toks
            key = ("D", "G", "A", "Bb", "F#", "E")[i % 6]
            assert tune_to_tokens(tokens_to_abc(toks, key=key)) == want, (r.label(), key)
            n += 1
    assert n > 3500
    assert same >= 0.99 * n


def test_changes_are_reported_and_lossless_keeps_exactly_the_unchanged_tunes(results):
    from folkrnn.abc.reader import CHANGES

    kept = [r for r in results if r.accepted]
    changed = [r for r in kept if r.changes]
    # Most corpus tunes carry slurs, ornaments, grace notes or chord symbols v2 drops.
    assert 0.5 * len(kept) < len(changed) < len(kept)
    for r in changed:
        assert all(k in CHANGES or k.endswith(": field") for k in r.changes), r.label()
        assert all(n > 0 for n in r.changes.values()) and r.change_summary()
    lossless = {(r.source, r.line): r for name, text in corpus_texts() for r in read_abc(text, name, lossless=True)}
    assert len(lossless) == len(results)
    assert sum(r.accepted for r in lossless.values()) == len(kept) - len(changed)
    for r in results:
        other = lossless[r.source, r.line]
        if r.accepted and not r.changes:
            assert other.tokens == r.tokens, r.label()
        elif r.accepted:
            assert (other.reason, other.detail) == ("changed", r.change_summary()), r.label()
