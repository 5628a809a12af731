"""Tokens -> MIDI: pitches under key signature and bar accidentals, durations, repeats, tempo, audio."""

from __future__ import annotations

from fractions import Fraction as Fr
from pathlib import Path

import mido
import pytest

from conftest import requires
from folkrnn.errors import FolkRNNError
from folkrnn.midi import (
    TICKS_PER_EIGHTH, expand_repeats, find_soundfont, key_shift, note_events, render_wav, tune_to_midi, write_midi,
)


def body(s: str) -> list[str]:
    return [t for t in expand_repeats(s.split()) if t != "|"]


def test_repeats_and_endings():
    assert body("A |: B C :| D") == ["A", "B", "C", "B", "C", "D"]
    assert body("A B :| C") == ["A", "B", "A", "B", "C"]  # no |: : from the start
    assert body("|: A |1 B :| |2 C |") == ["A", "B", "A", "C"]
    assert body("|: A :| |: B |1 C :| |2 D |") == ["A", "A", "B", "C", "B", "D"]
    assert body("|: A :| B :|") == ["A", "A", "B", "B"]  # a later :| goes back to the last one
    assert body("A |1 B | C") == ["A", "B", "C"]  # stray ending: a plain bar
    assert body("|: A |1 B") == ["A", "B"]  # unterminated repeat
    # the real v2 tunes end in their own structure: |1 ... :| |2 ... with the second part repeated
    v2 = "|: G c :| |: e f |1 g :| |2 a |".split()
    assert [t for t in expand_repeats(v2) if t != "|"] == ["G", "c", "G", "c", "e", "f", "g", "e", "f", "a"]


def test_pitches_follow_key_and_bar_accidentals():
    ev = note_events("M:4/4 K:Cmin B =B B | B E e' C, ^f".split())
    assert [n.pitches[0] for n in ev] == [70, 71, 71, 70, 63, 87, 48, 78]
    ev = note_events("M:4/4 K:Cdor |: ^F G :| F".split())  # the accidental ends at the repeat's bar
    assert [n.pitches[0] for n in ev] == [66, 67, 66, 67, 65]


def test_durations_broken_tuplets_chords():
    ev = note_events("M:4/4 K:Cmaj A 2 B /2 c 3/2 z 2 d 2> e f < g (3 a b c' [ C E G ] 4 [ C 2 E ] /2".split())
    got = [(n.length, n.pitches) for n in ev]
    assert got == [
        (Fr(2), (69,)), (Fr(1, 2), (71,)), (Fr(3, 2), (72,)), (Fr(2), ()),
        (Fr(3), (74,)), (Fr(1, 2), (76,)),  # 2> : dotted half-note... d gets 2*3/2, e halved
        (Fr(1, 2), (77,)), (Fr(3, 2), (79,)),  # f < g
        (Fr(2, 3), (81,)), (Fr(2, 3), (83,)), (Fr(2, 3), (84,)),
        (Fr(4), (60, 64, 67)), (Fr(1), (60, 64)),  # chord: first note's length times the outer one
    ]
    starts = [n.start for n in ev]
    assert starts == sorted(starts) and starts[1] == 2
    # compound meter: (2 is 2 in the time of 3
    assert [n.length for n in note_events("M:6/8 K:Cmaj (2 A B".split())] == [Fr(3, 2), Fr(3, 2)]
    assert [n.accent for n in note_events("M:4/4 K:Cmaj A B | c d".split())] == [True, False, True, False]


def _notes(mid: mido.MidiFile) -> list[tuple[int, int]]:
    """(absolute tick, note) of every note_on."""
    t, out = 0, []
    for msg in mid.tracks[0]:
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((t, msg.note))
    return out


def test_midi_file_plays_the_tune(tmp_path):
    toks = "<s> M:6/8 K:Cmaj |: G c c :| |2 e 3 </s>".split()
    path = write_midi(tmp_path / "t.mid", toks, tempo=120, program=73)
    mid = mido.MidiFile(str(path))
    notes = _notes(mid)
    assert [n for _, n in notes] == [67, 72, 72, 67, 72, 72, 76]
    assert [t for t, _ in notes] == [i * TICKS_PER_EIGHTH for i in range(7)]
    msgs = list(mid.tracks[0])
    tempo = next(m.tempo for m in msgs if m.type == "set_tempo")
    assert tempo == mido.bpm2tempo(180)  # 120 dotted quarters a minute = 180 quarters
    assert next(m.program for m in msgs if m.type == "program_change") == 73
    ts = next(m for m in msgs if m.type == "time_signature")
    assert (ts.numerator, ts.denominator) == (6, 8)
    assert mid.length == pytest.approx(10 * 60 / 360, rel=0.01)  # 9 eighths + a closing one, 360 eighths/min
    # notes off before the next on, all balanced
    offs = sum(1 for m in msgs if m.type == "note_off")
    assert offs == len(notes)


def test_transpose_follows_the_abc_writer():
    assert key_shift("C") == 0 and key_shift("D") == 2 and key_shift("G") == -5 and key_shift("Bb") == -2
    mid = tune_to_midi("M:4/4 K:Cmaj C E G".split(), transpose=key_shift("D"))
    assert [n for _, n in _notes(mid)] == [62, 66, 69]


def test_bad_options():
    with pytest.raises(FolkRNNError, match="tempo"):
        tune_to_midi("M:4/4 K:Cmaj C".split(), tempo=0)
    with pytest.raises(FolkRNNError, match="program"):
        tune_to_midi("M:4/4 K:Cmaj C".split(), program=128)
    with pytest.raises(FolkRNNError, match="no such soundfont"):
        find_soundfont("/nonexistent.sf2")


@requires("fluidsynth", "soundfont")
def test_render_wav(tmp_path):
    mid = write_midi(tmp_path / "t.mid", "M:4/4 K:Cmaj C D E F | G 4".split(), tempo=200)
    wav = render_wav(mid, tmp_path / "t.wav")
    data = Path(wav).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 44_100  # a second or so of audio


def test_a_stray_chord_bracket_does_not_swallow_the_tune():
    """The model sometimes writes `[` with no `]`: the bar line closes it (as evaluate reads it)."""
    notes = note_events(["M:4/4", "K:Cmaj", "[", "|", "c", "d", "e", "f", "|", "g", "4", "|"])
    assert [n.pitches for n in notes] == [(72,), (74,), (76,), (77,), (79,)]
    notes = note_events(["M:4/4", "K:Cmaj", "[", "c", "e", "z", "[", "g", "|", "d", "|"])
    assert [n.pitches for n in notes] == [(72, 76, 79), (74,)]
    assert [n.accent for n in notes] == [True, True]


def test_midi_of_the_64_v2_samples_is_unchanged():
    """Golden: sha256 over the 64 samples' MIDI files, as written before midi.py read rhythm
    through folkrnn.rhythm (the same bytes for all 64; on the open corpus 4,198 of 4,199)."""
    import hashlib
    import io

    from folkrnn.datafile import read_tunes

    digests = []
    for toks in read_tunes(Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"):
        buf = io.BytesIO()
        tune_to_midi(toks).save(file=buf)
        digests.append(hashlib.sha256(buf.getvalue()).hexdigest())
    assert len(digests) == 64
    assert hashlib.sha256("\n".join(digests).encode()).hexdigest() == (
        "d9dcf0277c237bebc991ebb231566f45259977958644d6a1fabad6faf3d17116")


def test_midi_reads_rhythm_as_evaluate_does():
    """Cases where midi.py's former private reading disagreed with evaluate's."""
    lengths = lambda s: [n.length for n in note_events(s.split(), expand=False)]  # noqa: E731
    # a length after a rest inside a chord belongs to nothing (it used to double the note before the chord)
    assert lengths("M:4/4 K:Cmaj c [ C 2 z 2 ] /2") == [1, 1]
    # a broken rhythm does not reach across a bar line
    assert lengths("M:4/4 K:Cmaj a > | b") == [Fr(3, 2), 1]
    # a broken mark after a tuplet mark attaches to nothing
    assert lengths("M:4/4 K:Cmaj a (3 > b c d") == [1, Fr(2, 3), Fr(2, 3), Fr(2, 3)]
    # a chord takes its tuplet place at `[`
    assert lengths("M:4/4 K:Cmaj [ (3 F 2 a | b c d") == [2, Fr(2, 3), Fr(2, 3), Fr(2, 3)]
