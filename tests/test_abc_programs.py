"""What the ABC writer emits is accepted by abc2midi, abcm2ps, abcjs, music21 and our reader.

The tunes come from an untrained model (close to uniformly random tokens: unclosed
chords, stray lengths, broken tuplets and repeats everywhere, the hardest case) and
from hand-written sequences with each known problem. The per-program checks, which
read each program's own error messages, are those of bench/abc_acceptance.py.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import ROOT, requires

from folkrnn.abc import tokens_to_abc, tune_to_tokens
from folkrnn.abc.writer import make_writable
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.sample import SampleConfig, sample
from folkrnn.vocab import Vocabulary

_spec = importlib.util.spec_from_file_location("abc_acceptance", ROOT / "bench" / "abc_acceptance.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)  # type: ignore[union-attr]

# Each of these broke at least one program when written as sampled (issue 13).
HARD = [
    "M:4/4 K:Cmaj [ C E G | c d e f |",  # unclosed chord: abcm2ps "Chord not closed"
    "M:4/4 K:Cmaj C D ] E F | G A B c |",  # stray ]
    "M:6/8 K:Cmaj G A B c d e | f g a (3",  # trailing tuplet
    "M:4/4 K:Cmaj C D E F |2 G A B c |",  # |2 without |1: abc2midi
    "M:4/4 K:Cmaj C D E F | | G A B c | | |",  # empty bars
    "M:4/4 K:Cmaj C D E F | G A B c | C D E F | G A (3 B c | d e f g a b c' |",  # tuplet over a line end
    "M:4/4 K:Cmaj (3 C D (3 E F G A B c |",  # nested tuplet
    "M:6/8 K:Cmaj c 2> d e > f > g a |",  # unequal and chained broken rhythms: abc2midi, abcm2ps
    "M:4/4 K:Cmaj C 5 D 9 E /3 F 5/2 |",  # lengths no score can draw
    "M:4/4 K:Cmaj [ C D E F G A B c d e ] 2 f |",  # a chord of ten notes: abcm2ps
    "M:4/4 K:Cmaj [ C 2 E 2 ] 2 [ G /2 B ] 2 c |",  # lengths inside and after a chord
    "M:4/4 K:Cmaj |: C D |: E F :| |1 G A |2 B c |1 d e :|",  # tangled repeats and endings
    "M:6/8 K:Cmaj C D M:6/8 E F K:Cmin G |",  # meter and key inside the music
]


def _garbage(n: int) -> list[list[str]]:
    net = FolkRNN(ModelConfig(hidden_size=16, num_layers=1))
    net.reset_parameters(torch.Generator().manual_seed(13))
    net.eval()
    # Primed with any meter and mode (as `generate` does): the rest is near-random tokens.
    cfg = SampleConfig(num_tunes=n, seed=13, max_length=160, batch_size=n, prime=("M:*", "K:*"))
    return [t.tokens for t in sample(net, Vocabulary.v2(), cfg)]


@pytest.fixture(scope="module")
def written() -> tuple[list[str], list[list[str]]]:
    seqs = [s.split() for s in HARD] + _garbage(300)
    abcs, want = [], []
    for i, toks in enumerate(seqs):
        if not any(t[0] in "^_=ABCDEFGabcdefg" for t in toks if t[:2] not in ("M:", "K:")):
            continue  # no note: nothing to write
        if not toks or toks[0][:2] not in ("M:", "K:"):
            continue  # not a transcription (no meter, key first): refused, see test_abc_writer
        want.append(make_writable(toks)[0])
        abcs.append(tokens_to_abc(toks, x=i + 1))
    assert len(abcs) > 250
    return abcs, want


def _report(found: dict[int, list[str]], abcs: list[str]) -> str:
    i = next(iter(found), None)
    return "" if i is None else f"{len(found)} rejected, e.g. {found[i][:3]} in\n{abcs[i]}"


def test_our_reader_reads_back_the_repaired_tokens(written):
    abcs, want = written
    found = bench.check_folkrnn(abcs, want)
    assert not found, _report(found, abcs)


@requires("abc2midi")
def test_abc2midi_accepts(written):
    found = bench.check_abc2midi(written[0])
    assert not found, _report(found, written[0])


@requires("abcm2ps")
def test_abcm2ps_accepts(written):
    found = bench.check_abcm2ps(written[0])
    # Known residue (see the branch report): on near-random tunes the writer's line-width
    # estimate can still leave a line abcm2ps must shrink too much (~1 in 300). Nothing else.
    shrunk = {i for i, ms in found.items() if all(m.startswith("Line too much shrunk") for m in ms)}
    rest = {i: found[i] for i in found if i not in shrunk}
    assert not rest, _report(rest, written[0])
    assert all(i >= len(HARD) for i in shrunk) and len(shrunk) <= 0.01 * len(written[0])


@requires("abcjs")
def test_abcjs_accepts(written):
    found = bench.check_abcjs(written[0])
    assert not found, _report(found, written[0])


def test_music21_accepts(written):
    pytest.importorskip("music21")
    abcs = written[0][: len(HARD) + 40]  # music21 reads ~10 tunes/s
    found = bench.check_music21(abcs)
    assert not found, _report(found, abcs)


@requires("abc2midi", "abcm2ps", "abcjs")
def test_the_checks_catch_what_they_are_for():
    # The same problems written without repair are rejected: the checks can fail.
    raw = ["X:1\nT:t\nM:4/4\nL:1/8\nK:C\n[CEG | cdef |\n", "X:2\nT:t\nM:6/8\nL:1/8\nK:C\nc2>de>f>ga |\n",
           "X:3\nT:t\nM:4/4\nL:1/8\nK:C\nCDEF |2 GABc |\n", "X:4\nT:t\nM:4/4\nL:1/8\nK:C\n(3CD(3EFGABc |\n"]
    assert set(bench.check_abcm2ps(raw)) >= {0, 3}
    assert set(bench.check_abc2midi(raw)) >= {1, 2, 3}
    assert set(bench.check_abcjs(raw)) >= {0, 3}
    assert bench.check_folkrnn(raw, [None] * 4).keys() >= {0}
    assert tune_to_tokens(tokens_to_abc(HARD[0].split())) == make_writable(HARD[0].split())[0]
