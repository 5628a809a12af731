"""Key fields, tonics, modes and the diatonic transposition."""

from __future__ import annotations

import pytest

from folkrnn.abc import parse_key, parse_key_field
from folkrnn.abc.keys import KeyError_, Move, Note, detect_mode, mode_signature, moves, spell
from folkrnn.errors import FolkRNNError
from folkrnn.tokens import KEY_SIGNATURES, LETTERS, ACCIDENTAL_SHIFT


@pytest.mark.parametrize("name, letter, alter", [
    ("C", "C", 0), ("D", "D", 0), ("F#", "F", 1), ("Bb", "B", -1), ("eb", "E", -1), (" G ", "G", 0), ("B♭", "B", -1),
])
def test_parse_key(name, letter, alter):
    t = parse_key(name)
    assert (t.letter, t.alter) == (letter, alter)


@pytest.mark.parametrize("name", ["H", "", "C##", "Dm", "Bbb", "1"])
def test_parse_key_rejects(name):
    with pytest.raises(FolkRNNError):
        parse_key(name)


def test_v2_mode_signatures_match_tokens_module():
    for token, sig in KEY_SIGNATURES.items():
        mode = {"K:Cmaj": "major", "K:Cmin": "minor", "K:Cdor": "dorian", "K:Cmix": "mixolydian"}[token]
        expected = tuple(ACCIDENTAL_SHIFT[sig[L]] if L in sig else 0 for L in LETTERS)
        assert mode_signature(parse_key("C"), mode) == expected


@pytest.mark.parametrize("text, mode, sig", [
    ("G", "major", "^f"), ("Gm", "minor", "_b _e"), ("Ador", "dorian", "^f"), ("A Dorian", "dorian", "^f"),
    ("Edorian", "dorian", "^f ^c"), ("Dmixolydian", "mixolydian", "^f"), ("F#m", "minor", "^f ^c ^g"),
    ("Bb", "major", "_b _e"), ("C#", "major", "^f ^c ^g ^d ^a ^e ^b"), ("Amin clef=treble", "minor", ""),
    ("D exp ^f ^c", "major", "^f ^c"), ("D exp _b ^f", None, None), ("Dmix=c", "mixolydian", "^f"),
    ("E Minor % comment", "minor", "^f"), ("AMix", "mixolydian", "^f ^c"), ("Gion", "major", "^f"),
    ("Eaeo", "minor", "^f"), ("Glyd", "lydian", "^f ^c"), ("Bphr", "phrygian", "^f"), ("G ^c", "lydian", "^f ^c"),
])
def test_parse_key_field(text, mode, sig):
    if mode is None:
        with pytest.raises(KeyError_) as e:
            parse_key_field(text)
        assert e.value.reason == "mode"
        return
    k = parse_key_field(text)
    assert (k.mode, k.signature_text()) == (mode, sig)


def test_detect_mode():
    assert detect_mode(parse_key("D"), mode_signature(parse_key("D"), "dorian")) == "dorian"
    assert detect_mode(parse_key("A"), (0, 0, 0, 0, 1, 0, 0)) is None  # harmonic minor


def test_moves_smallest_first_ties_down():
    assert [m.semitones for m in moves(parse_key("G"), parse_key("C"))] == [5, -7, 17]
    assert [m.semitones for m in moves(parse_key("F#"), parse_key("C"))] == [-6, 6, -18]
    m = moves(parse_key("Bb"), parse_key("C"))[0]
    assert (m.steps, m.semitones) == (1, 2)


def test_spell_keeps_written_accidentals_and_follows_bar_state():
    # D major notes: d, =c (explicit), c (held natural in the bar), | c (back to C#).
    sig_d = mode_signature(parse_key("D"), "major")
    notes = [Note(36, 74, False), Note(35, 72, True), Note(35, 72, False), "|", Note(35, 73, False)]
    assert list(spell(notes, Move(0, 0), sig_d)) == ["d", "=c", "c", "|", "c"]
    # Moved down a tone to C major.
    assert list(spell(notes, Move(-1, -2), mode_signature(parse_key("C"), "major"))) == ["c", "_B", "B", "|", "B"]


def test_spell_adds_accidental_when_bar_state_requires():
    # Source: ^c tied into the next bar (implicit C#), then a plain c (C natural).
    out = list(spell([Note(35, 73, True), "|", Note(35, 73, False), Note(35, 72, False)], Move(0, 0),
                     (0,) * 7))
    assert out == ["^c", "|", "^c", "=c"]


def test_spell_rejects_triple_accidentals():
    with pytest.raises(ValueError):
        list(spell([Note(28, 63, False)], Move(0, 0), (0,) * 7))


# Every K: spelling ABC 2.1 allows (section 3.1.14): the tonic in either case, mode names
# case-insensitive with only their first three letters counting (`m` alone is minor),
# spaces optional, clef/middle/transpose/octave/stafflines clauses ignored.
@pytest.mark.parametrize("text, letter, alter, mode", [
    ("e minor", "E", 0, "minor"), ("Emin", "E", 0, "minor"), ("E minor", "E", 0, "minor"),
    ("EMinor", "E", 0, "minor"), ("Em", "E", 0, "minor"), ("E m", "E", 0, "minor"), ("EMIN", "E", 0, "minor"),
    ("E aeolian", "E", 0, "minor"), ("Eaeo", "E", 0, "minor"), ("E Dor", "E", 0, "dorian"),
    ("e dorian", "E", 0, "dorian"), ("EDORIAN", "E", 0, "dorian"), ("F# mix", "F", 1, "mixolydian"),
    ("F#Mixolydian", "F", 1, "mixolydian"), ("f# mixo", "F", 1, "mixolydian"), ("Bb Lydian", "B", -1, "lydian"),
    ("bb", "B", -1, "major"), ("c#m", "C", 1, "minor"), ("G Ionian", "G", 0, "major"), ("G maj", "G", 0, "major"),
    ("Gmajor", "G", 0, "major"), ("A phr", "A", 0, "phrygian"), ("B Locrian", "B", 0, "locrian"),
    (" D", "D", 0, "major"), ("D clef=treble", "D", 0, "major"), ("D treble", "D", 0, "major"),
    ("D bass", "D", 0, "major"), ("D alto4", "D", 0, "major"), ("D bass^8", "D", 0, "major"),
    ("D treble-8", "D", 0, "major"), ("Am clef=bass middle=d", "A", 0, "minor"), ("Am transpose=-2", "A", 0, "minor"),
    ("G stafflines=5", "G", 0, "major"), ("G octave=1", "G", 0, "major"), ("D exp ^f", "D", 0, "mixolydian"),
    ("D exp ^f ^c", "D", 0, "major"), ("Dexp ^f ^c", "D", 0, "major"), ("D Exp _b", "D", 0, "minor"),
    ("E mixagainstthegrain", "E", 0, "mixolydian"),  # ABC 2.1: only the first three letters are parsed
])
def test_every_abc_key_spelling(text, letter, alter, mode):
    k = parse_key_field(text)
    assert (k.tonic.letter, k.tonic.alter, k.mode) == (letter, alter, mode)


@pytest.mark.parametrize("text, reason, words", [
    ("HP", "key", "highland bagpipe"), ("Hp", "key", "highland bagpipe"), ("none", "key", "no tonic"),
    ("", "key", "no tonic"), ("exp ^f ^c", "key", "no tonic"), ("bass", "key", "only the clef"),
    ("clef=alto", "key", "only the clef"), ("D exp _b ^f", "mode", "none of v2's keys"),
    ("Am exp ^g", "mode", "not a church mode"), ("Emi", "key", "cannot read"),
])
def test_keys_without_a_v2_key_are_rejected_with_a_reason(text, reason, words):
    with pytest.raises(KeyError_) as e:
        parse_key_field(text)
    assert e.value.reason == reason and words in e.value.detail and f"K:{text}" in e.value.detail
