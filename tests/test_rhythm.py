"""folkrnn.rhythm: the one reading of v2 rhythm, checked against evaluate's bar verdicts."""

from __future__ import annotations

import ast
import os
from fractions import Fraction as Fr
from pathlib import Path

import pytest

from folkrnn import rhythm as R
from folkrnn.datafile import read_tunes
from folkrnn.evaluate import analyse_tune
from folkrnn.tokens import kind

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "folkrnn_v2_generated_samples.txt"
CORPUS = Path(os.environ.get("FOLKRNN_CORPUS", ROOT / "runs" / "openfolk.txt"))


def toks(s: str) -> list[str]:
    return s.split()


def bar_verdicts_from_labels(tokens: list[str]) -> dict[int, tuple[Fr, bool]]:
    """Per bar (length, right), put together from the per-token labels alone."""
    out: dict[int, tuple[Fr, bool]] = {}
    for lab in R.label_tokens(tokens):
        if lab.bar >= 0 and lab.bar_verdict is not None:
            out[lab.bar] = (lab.bar_length, lab.bar_right)
    return out


def check_against_evaluate(tunes) -> int:
    bars = 0
    for n, t in enumerate(tunes):
        rep = analyse_tune(t)
        got = bar_verdicts_from_labels(t)
        assert sorted(got) == list(range(rep.bars)), n
        wrong = {e.bar: e.found for e in rep.bar_errors}
        assert {b for b, (_, ok) in got.items() if not ok} == set(wrong), n
        for b, found in wrong.items():
            assert got[b][0] == found, (n, b)
        bars += rep.bars
    return bars


def test_labels_agree_with_evaluate_on_the_64_v2_samples():
    assert check_against_evaluate(read_tunes(SAMPLES)) == 1087


@pytest.mark.skipif(not CORPUS.is_file(), reason=f"no open corpus at {CORPUS} (set FOLKRNN_CORPUS)")
def test_labels_agree_with_evaluate_on_the_open_corpus():
    tunes = read_tunes(CORPUS)
    assert check_against_evaluate(tunes[::7]) > 1000  # a seventh of it keeps the test short


def test_positions_add_up_within_every_bar():
    """Each event starts where the one before it ended; a bar token sits at its bar's length."""
    for t in read_tunes(SAMPLES)[:20]:
        labels = R.label_tokens(t)
        s = R.scan(t)
        for b, span in enumerate(s.bars):
            at = [Fr(s.ev_at[e], R.TICKS) for e in range(span.first_event, span.end_event)]
            durs = [Fr(s.ev_dur[e]) / R.TICKS for e in range(span.first_event, span.end_event)]
            assert at[0] == 0 and all(a + d == nxt for a, d, nxt in zip(at, durs, at[1:]))
            assert at[-1] + durs[-1] == R.ticks_to_eighths(span.length)
        for lab in labels:
            if kind(lab.token) == "bar" and lab.bar_length is not None:
                assert lab.position == lab.bar_length


def test_unclosed_and_empty_chords():
    s = R.scan(toks("M:4/4 K:Cmaj [ C E 2 | G 8 |"))  # a bar line closes the chord
    assert [R.ticks_to_eighths(b.length) for b in s.bars] == [1, 8]
    assert [e.pitches for e in R.events(s.tokens, s)] == [(60, 64), (67,)]
    s = R.scan(toks("M:4/4 K:Cmaj C 7 [ | G 8 ["))  # a chord with no note is nothing
    assert [R.ticks_to_eighths(b.length) for b in s.bars] == [7, 8] and s.stray == 2
    s = R.scan(toks("M:4/4 K:Cmaj (3 [ ] C D E F 6 |"))  # ... and takes no tuplet place
    assert [R.ticks_to_eighths(d) for d in s.ev_dur] == [Fr(2, 3)] * 3 + [6]


def test_chords_tuplets_broken_rhythms():
    labels = R.label_tokens(toks("M:6/8 K:Cmaj [ C E ] 2 (3 c d e c 2> d |"))
    got = [(lab.token, str(lab.position), str(lab.duration)) for lab in labels[2:]]
    assert got == [("[", "0", "2"), ("C", "0", "2"), ("E", "0", "2"), ("]", "0", "2"), ("2", "0", "2"),
                   ("(3", "2", "None"), ("c", "2", "2/3"), ("d", "8/3", "2/3"), ("e", "10/3", "2/3"),
                   ("c", "4", "3"), ("2>", "4", "3"), ("d", "7", "1/2"), ("|", "15/2", "None")]
    assert labels[-1].bar_verdict == "wrong" and labels[-2].next_is_bar


def test_pitch_from_the_tonic_follows_mode_and_bar_accidentals():
    labels = R.label_tokens(toks("M:4/4 K:Cdor E ^E E B | E c' C, =B"))
    assert [lab.pitch for lab in labels if kind(lab.token) == "pitch"] == [3, 5, 5, 10, 3, 24, -12, 11]


def test_sections_endings_and_verdicts():
    t = toks("M:4/4 K:Cmaj G 2 |: c 8 | c 6 |1 d 6 :| |2 e 6 G 2 | f 8 | f 6 :|")
    lay = R.layout(R.scan(t))
    assert [(b.verdict, b.section, b.in_section, b.ending) for b in lay.bars] == [
        ("pickup", 0, 0, 0), ("full", 0, 1, 0), ("wrong", 0, 2, 0), ("complement", 0, 3, 1),
        ("full", 0, 4, 2), ("full", 1, 0, 0), ("complement", 1, 1, 0)]  # e 6 G 2: a full second ending
    t = toks("M:4/4 K:Cmaj G 2 | c 8 | c 6 :| G 2 | d 8 | d 6 :|")
    assert [b.verdict for b in R.layout(R.scan(t)).bars] == ["pickup", "full", "complement", "pickup", "full", "complement"]
    labels = R.label_tokens(["<s>"] + t + ["</s>"])
    assert labels[0].bar == -1 and labels[-1].bar == 5 and len(labels) == len(t) + 2


def test_rhythm_imports_point_one_way():
    """vocab, tokens <- rhythm <- abc, midi, evaluate: rhythm imports neither."""
    tree = ast.parse((ROOT / "src" / "folkrnn" / "rhythm.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {f"{n.module}.{a.name}" if n.module == "folkrnn" else n.module
              for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    folkrnn = {n for n in names if n.startswith("folkrnn")}
    assert folkrnn <= {"folkrnn.tokens", "folkrnn.vocab", "folkrnn.errors"}, folkrnn
