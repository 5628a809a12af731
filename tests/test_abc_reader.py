"""ABC -> v2 tokens: one test per ABC feature the reader handles or rejects."""

from __future__ import annotations

import re
import time

import pytest

from folkrnn.abc import AbcRejected, read_abc, read_abc_file, tune_to_tokens
from folkrnn.errors import FolkRNNError
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()


def body(music: str, key: str = "C", meter: str = "4/4", unit: str = "1/8", extra: str = "") -> list[str]:
    """Tokens of the body of a one-tune ABC text (meter and key tokens dropped)."""
    toks = tune_to_tokens(f"X:1\nT:t\nM:{meter}\nL:{unit}\n{extra}K:{key}\n{music}\n")
    return toks[2:]


def rejected(text: str) -> tuple[str, str]:
    r = next(read_abc(text))
    assert r.tokens is None, r.tokens
    assert r.reason and r.detail
    return r.reason, r.detail


def tune(music: str, head: str = "M:4/4\nL:1/8\nK:C") -> str:
    return f"X:3\nT:Some Tune\n{head}\n{music}\n"


# -- notes, lengths, rests ------------------------------------------------------------

def test_notes_octaves_and_lengths():
    assert body("C, C c c' D3/2 E/ F// G3// A/4 B2") == [
        "C,", "C", "c", "c'", "D", "3/2", "E", "/2", "F", "/4", "G", "3/4", "A", "/4", "B", "2"]


def test_unit_length_rescaled_to_eighths():
    assert body("A2 B4 c d/2", unit="1/16") == ["A", "B", "2", "c", "/2", "d", "/4"]
    assert body("A B/2 c3/2", unit="1/4") == ["A", "2", "B", "c", "3"]


def test_default_unit_length_depends_on_meter():
    # ABC 2.1: no L: and a meter below 3/4 -> 1/16.
    assert tune_to_tokens("X:1\nM:2/4\nK:C\nA2 B4|\n")[2:] == ["A", "B", "2", "|"]
    assert tune_to_tokens("X:1\nM:6/8\nK:C\nA2 B|\n")[2:] == ["A", "2", "B", "|"]


def test_mid_tune_unit_change():
    assert body("A2 [L:1/16] A2 |\nL:1/8\nA2|") == ["A", "2", "A", "|", "A", "2", "|"]


def test_rests_x_becomes_z():
    assert body("z2 x z/ A") == ["z", "2", "z", "z", "/2", "A"]


def test_multi_measure_rest():
    assert body("Z2|A8|", meter="2/4") == ["z", "4", "|", "z", "4", "|", "A", "8", "|"]


# -- what v2 drops --------------------------------------------------------------------

def test_decorations_grace_chord_symbols_slurs_ties_dropped():
    assert body('~A .B uc vd HE TF !trill!G +fermata+A "Am"B "^text"c {ga}d {/g}e (AB) A-A') == [
        "A", "B", "c", "d", "E", "F", "G", "A", "B", "c", "d", "e", "A", "B", "A", "A"]


def test_comments_and_continuations_and_fields_in_body():
    text = "A B % a comment\n%%MIDI program 1\nw: some lyrics\nP:B\nc d|\\\n e f|\nW:words\n"
    assert body(text) == ["A", "B", "c", "d", "|", "e", "f", "|"]


def test_header_fields_are_read_and_ignored():
    text = ("X:12\nT:First\nT:Second\nC:trad\nO:Ireland\nR:reel\nZ:someone\nN:note\nB:book\nS:source\n"
            "Q:1/4=120\nI:abc-charset utf-8\n%%directive\nM:C|\nL:1/8\nP:AB\nK:G\nGABc|\n")
    r = next(read_abc(text, "f.abc"))
    assert (r.x, r.title, r.meter, r.mode, r.line, r.source) == ("12", "First", "C|", "major", 1, "f.abc")
    assert r.tokens == ("M:4/4", "K:Cmaj", "c", "d", "e", "f", "|")


# -- rhythm -----------------------------------------------------------------------------

def test_broken_rhythm_joins_a_length_stands_alone_after_bare_note():
    assert body("A>B A2<B A/>B [AC]>B") == ["A", ">", "B", "A", "2<", "B", "A", "/2>", "B", "[", "A", "C", "]", ">", "B"]


def test_double_broken_rhythm_rejected():
    assert rejected(tune("A>>B|"))[0] == "duration"


def test_tuplets():
    assert body("(3ABc (3:2:3ABc (2AB", meter="6/8") == ["(3", "A", "B", "c", "(3", "A", "B", "c", "(2", "A", "B"]
    assert rejected(tune("(3:4:3ABc|"))[0] == "tuplet"  # 3 in the time of 4: not a v2 (3
    assert rejected(tune("(3:2:2ABc|"))[0] == "tuplet"


def test_chords():
    assert body("[CEG]2 [C2E2] [ce]/") == ["[", "C", "E", "G", "]", "2", "[", "C", "2", "E", "2", "]", "[", "c", "e", "]", "/2"]


def test_lengths_outside_vocabulary_rejected():
    reason, detail = rejected(tune("A11|"))
    assert reason == "duration" and "11" in detail


# -- bars and repeats -------------------------------------------------------------------

@pytest.mark.parametrize("written, tokens", [
    ("|", ["|"]), ("||", ["|"]), ("|]", ["|"]), ("[|", ["|"]), ("|:", ["|:"]), (":|", [":|"]),
    ("::", [":|", "|:"]), (":|:", [":|", "|:"]), (":||:", [":|", "|:"]), ("||:", ["|:"]), (":|]", [":|"]),
    ("|1", ["|1"]), ("|[1", ["|1"]), ("| 1", ["|1"]), ("| [1", ["|1"]), (":|2", [":|", "|2"]),
    (":|[2", [":|", "|2"]), (":| [2", [":|", "|2"]), ("[2", ["|2"]), ("| [2", ["|2"]), (".|", ["|"]),
])
def test_bar_spellings(written, tokens):
    assert body(f"A {written} B") == ["A", *tokens, "B"]


def test_ending_on_next_line_merges_with_bar():
    assert body("A B :|\n[2 c d|]") == ["A", "B", ":|", "|2", "c", "d", "|"]
    assert body("A B |\n[2 c d|]") == ["A", "B", "|2", "c", "d", "|"]


def test_colon_at_start_of_next_line_makes_a_repeat():
    assert body("A B |\n: c d :|") == ["A", "B", "|:", "c", "d", ":|"]


def test_endings_other_than_1_2_rejected():
    assert rejected(tune("A |1,2 B :|3 c|"))[0] == "ending"


# -- meters -------------------------------------------------------------------------------

@pytest.mark.parametrize("meter, token", [
    ("C", "M:4/4"), ("C|", "M:4/4"), ("2/2", "M:4/4"), ("4/4", "M:4/4"), (" 6/8", "M:6/8"), ("9/8", "M:9/8"),
    ("12/8", "M:12/8"), ("3/2", "M:3/2"), ("2/4", "M:2/4"), ("3/4", "M:3/4"),
])
def test_meters(meter, token):
    assert tune_to_tokens(f"X:1\nM:{meter}\nL:1/8\nK:C\nA|\n")[0] == token


@pytest.mark.parametrize("meter", ["3/8", "5/4", "6/4", "none", "(2+3)/8"])
def test_other_meters_rejected(meter):
    reason, detail = rejected(f"X:1\nM:{meter}\nL:1/8\nK:C\nA|\n")
    assert reason == "meter" and meter in detail


def test_missing_meter_rejected():
    assert rejected("X:1\nL:1/8\nK:C\nA|\n")[0] == "meter"


def test_meter_change_rejected_same_meter_accepted():
    assert rejected(tune("A|\nM:3/4\nB|"))[0] == "meter change"
    assert rejected(tune("A| [M:6/8] B|"))[0] == "meter change"
    assert body("A|\nM:C\nB|") == ["A", "|", "B", "|"]


# -- keys, modes, transposition -----------------------------------------------------------

@pytest.mark.parametrize("key, token, first", [
    ("C", "K:Cmaj", "C"), ("G", "K:Cmaj", "c"), ("D", "K:Cmaj", "C"), ("Am", "K:Cmin", "c"),
    ("Ador", "K:Cdor", "c"), ("A dorian", "K:Cdor", "c"), ("Edorian", "K:Cdor", "C"), ("F#m", "K:Cmin", "C"),
    ("Bb", "K:Cmaj", "c"), ("Gmix", "K:Cmix", "c"), ("G mixolydian", "K:Cmix", "c"), ("Amin clef=treble", "K:Cmin", "c"),
    ("D exp ^f ^c", "K:Cmaj", "C"), ("A Minor", "K:Cmin", "c"), ("Gmajor", "K:Cmaj", "c"), ("Eaeolian", "K:Cmin", "C"),
    ("D =c", "K:Cmix", "C"), ("Bbmaj", "K:Cmaj", "c"), ("Ebm", "K:Cmin", "C"),
])
def test_keys_transposed_to_c(key, token, first):
    toks = tune_to_tokens(f"X:1\nM:4/4\nL:1/8\nK:{key}\n{key[0]}|\n")
    assert toks[1] == token
    assert toks[2] == first


@pytest.mark.parametrize("key, reason", [
    ("Glyd", "mode"), ("E phrygian", "mode"), ("Bloc", "mode"), ("Am ^g", "mode"), ("Hp", "key"),
    ("none", "key"), ("Xyz", "key"), ("G foo", "key"),
])
def test_unsupported_keys_rejected(key, reason):
    assert rejected(f"X:1\nM:4/4\nL:1/8\nK:{key}\nA|\n")[0] == reason


def test_key_change_rejected_same_key_and_clef_only_accepted():
    assert rejected(tune("A|\nK:D\nB|"))[0] == "key change"
    assert rejected(tune("A| [K:Am] B|"))[0] == "key change"
    assert body("A|\nK:C\nB| [K:bass] c|") == ["A", "|", "B", "|", "c", "|"]


def test_transposition_keeps_diatonic_spelling_and_respells_accidentals():
    # D major: ^c is already in the key, =c is C natural -> B-flat in C major.
    assert body("d c =c c | c", key="D") == ["c", "B", "_B", "B", "|", "B"]
    # G dorian (Bb, F natural?): K:Gdor = one flat; ^F -> B natural in C dorian.
    assert body("G ^F F|", key="Gdor") == ["c", "=B", "B", "|"]


def test_accidental_holds_to_end_of_bar_same_octave_only():
    # In C: ^F then F is still F#, f (other octave) is not; after the bar it is F again.
    toks = tune_to_tokens(tune("^F F f | F"))
    from folkrnn.tokens import sounding_pitches

    assert sounding_pitches(toks) == [66, 66, 77, 65]


def test_accidental_carried_by_tie_over_bar_is_spelled_out():
    # ^c tied over the bar: the tied note sounds C#, the next c in that bar C.
    toks = tune_to_tokens(tune("A ^c- | c c"))
    from folkrnn.tokens import sounding_pitches

    assert sounding_pitches(toks) == [69, 73, 73, 72]


def test_octave_choice_keeps_notes_in_vocabulary():
    # K:G moved down to C would put D, below the vocabulary; up a fourth fits.
    toks = tune_to_tokens("X:1\nM:4/4\nL:1/8\nK:G\nD, G, B, D|\n")
    assert toks[2:6] == ["G,", "C", "E", "G"]
    # Low A major: up 3 semitones (A->c) is preferred, and fits.
    assert tune_to_tokens("X:1\nM:4/4\nL:1/8\nK:A\nA, A a|\n")[2:5] == ["C", "c", "c'"]


def test_pitch_range_rejected():
    reason, detail = rejected(tune("C,, c'''|"))
    assert reason == "pitch range" and "range" in detail


def test_accidental_outside_vocabulary_rejected():
    assert rejected(tune("^e|"))[0] == "accidental"  # E# in C: v2 has no ^e


def test_all_output_tokens_in_vocabulary():
    toks = tune_to_tokens(tune("|:(3ABc d>e [ce]2 z/ _B,2 ^F :|2 =f'4 |]"))
    assert V2.unknown(toks) == []


# -- tunes, files, bad input ------------------------------------------------------------------

def test_several_tunes_and_free_text():
    text = ("Free text before the tunes\n\nX:1\nT:One\nM:6/8\nK:D\nDFA|\n\nsome notes between\n\n"
            "X:2\nT:Two\nM:5/4\nK:D\nA|\n\nX:3\nT:Three\nM:2/4\nK:Em\nEF|\n")
    results = list(read_abc(text, "set.abc"))
    assert [(r.x, r.title, r.accepted, r.reason) for r in results] == [
        ("1", "One", True, None), ("2", "Two", False, "meter"), ("3", "Three", True, None)]
    assert [r.line for r in results] == [3, 11, 17]
    assert results[1].label() == 'set.abc: X:2 "Two"'


def test_file_without_x_field():
    results = list(read_abc("T:No number\nM:4/4\nL:1/8\nK:G\nGABc|\n\nM:3/4\nK:D\nDEF|\n"))
    assert [r.tokens[:3] for r in results] == [("M:4/4", "K:Cmaj", "c"), ("M:3/4", "K:Cmaj", "C")]
    assert results[0].x is None


def test_latin1_file(tmp_path):
    p = tmp_path / "latin.abc"
    p.write_bytes("X:1\nT:Caf\xe9 \xe0 la mode\nM:4/4\nK:G\nGABc|\n".encode("latin-1"))
    (r,) = read_abc_file(p)
    assert r.title == "Café à la mode" and r.accepted


def test_unreadable_file_raises_folkrnn_error(tmp_path):
    with pytest.raises(FolkRNNError, match="missing.abc"):
        list(read_abc_file(tmp_path / "missing.abc"))


@pytest.mark.parametrize("music, reason", [
    ("A ]B|", "malformed"), ("[AB|", "malformed"), ("A | [CE | G]", "malformed"), ("A # B", "malformed"),
    ("A0 B", "malformed"), ("", "no notes"), ("A & B", "voices"), ("> A", "malformed"),
])
def test_malformed_music_rejected(music, reason):
    assert rejected(tune(music))[0] == reason


def test_voices_rejected_single_voice_accepted():
    assert rejected(tune("V:1\nA|\nV:2\nB|"))[0] == "voices"
    assert rejected(tune("[V:1] A| [V:2] B|"))[0] == "voices"
    assert body("A|", extra="V:1\n") == ["A", "|"]


def test_no_key_field_rejected():
    assert rejected("X:1\nT:t\nM:4/4\nABc|\n")[0] == "malformed"


def test_tune_to_tokens_raises_abc_rejected_with_reason():
    with pytest.raises(AbcRejected) as e:
        tune_to_tokens("X:1\nM:7/8\nK:C\nA|\n")
    assert e.value.reason == "meter" and isinstance(e.value, FolkRNNError)
    with pytest.raises(AbcRejected):
        tune_to_tokens("just text")


def test_non_strict_keeps_unbalanced_chord_brackets():
    text = tune("[C2 E :| [[ G ] ] c [")
    assert rejected(text)[0] == "malformed"
    assert tune_to_tokens(text, strict=False)[2:] == ["[", "C", "2", "E", ":|", "[", "[", "G", "]", "]", "c", "["]


def test_music_after_a_blank_line_rejects_the_tune():
    text = "X:1\nT:Cut\nM:4/4\nK:G\nGABc|\n\ndefg|]\n\nX:2\nT:Fine\nM:4/4\nK:G\nGABc|\n\nSome words.\n"
    results = list(read_abc(text))
    assert [(r.x, r.reason) for r in results] == [("1", "malformed"), ("2", None)]
    assert "line 7" in results[0].detail


def test_meter_and_unit_after_the_key_line_still_count():
    assert tune_to_tokens("X:1\nT:t\nK:G\nM:6/8\nL:1/16\nG2AB|\n") == ["M:6/8", "K:Cmaj", "c", "d", "/2", "e", "/2", "|"]


@pytest.mark.parametrize("abc, meter", [
    # The last meter before the first note counts (issue 13): not a meter change.
    ("X:1\nT:t\nM:4/4\nK:G\nM:6/8\nGAB cde|", "M:6/8"),
    ("X:1\nT:t\nM:4/4\nL:1/8\nK:G\n[M:6/8] GAB cde|", "M:6/8"),
    ("X:1\nT:t\nM:5/4\nK:G\nM:6/8\n|GAB cde|", "M:6/8"),
    ("X:1\nT:t\nM:6/8\nK:G\nM:4/4\nM:6/8\nGAB cde|", "M:6/8"),
])
def test_last_meter_before_the_music_counts(abc, meter):
    toks = tune_to_tokens(abc)
    assert toks[:2] == [meter, "K:Cmaj"] and "c" in toks[2:4]


def test_a_meter_change_after_the_first_note_is_still_rejected():
    r = next(read_abc("X:1\nT:t\nM:4/4\nK:G\nGABc|\nM:6/8\nGAB cde|"))
    assert r.reason == "meter change"


def test_plus_decoration_does_not_cross_chord_brackets():
    # `+B][c+` once read as one `+...+` decoration, losing both chords.
    toks = tune_to_tokens("X:1\nT:t\nM:4/4\nL:1/8\nK:C\n[G+B][c+e] +trill+d4 |")
    assert toks[2:] == ["[", "G", "B", "]", "[", "c", "e", "]", "d", "4", "|"]


# -- what the reading drops or changes (TuneResult.changes, lossless) ----------------------

KESH = ('X:3\nT:The Kesh\nM:6/8\nL:1/8\nK:G\n|:"G"~G3 {A}GAB|"D"A-A2 (AB)c|"G"B-B2 {ag}G2B|"C"c2e "D"d2c|\n'
        '"G"B-B2 !trill!G2B|"Em"e-e2 "Am"A2c|"G"B-B2 d.e.d|"D"c2A A3:|\n')


def test_changes_say_what_the_reading_dropped():
    r = next(read_abc(KESH, "kesh.abc"))
    assert r.accepted
    assert r.changes == {"tie": 5, "grace note": 3, "chord symbol": 10, "decoration": 4, "slur": 1}
    assert r.change_summary() == ("5 ties made repeated notes, 3 grace notes dropped, 10 chord symbols dropped, "
                                  "4 decorations dropped, 1 slur dropped")
    # The tokens are those of the plain tune: reporting changes nothing.
    plain = KESH.replace("~", "").replace("!trill!", "").replace(".", "")
    plain = re.sub(r'"[^"]*"|\{[^}]*\}|[()-]', "", plain)
    plain_r = next(read_abc(plain))
    assert plain_r.tokens == r.tokens and not plain_r.changes and plain_r.change_summary() == ""


@pytest.mark.parametrize("music, extra, changes", [
    ('"^fine"A "_x"B "Am"c "<l"d "@1,2"e "Gm7"f|', "", {"annotation": 4, "chord symbol": 2}),
    ("A2>-A B-B | -c d|", "", {"tie": 2, "stray tie": 1}),  # a tie after a broken rhythm ties its note
    ("x2 A X|", "", {"invisible rest": 2}),
    ("A B !fermata!c +trill+d .e ~f Tg uA|", "", {"decoration": 6}),
    ("A ! B [G+B] c|", "", {}),  # a lone `!` (old line break) and `+` decorate nothing
    ("{g}A {/gab}B {}c|", "", {"grace note": 4}),
    ("(A B) (c d|", "", {"slur": 2}),
    ("A B c d|\nw: la la la la\nW: verse two", "", {"lyrics": 2}),
    ("A B|\nP:B\nc d| [P:C] e f| [r:remark] [I:linebreak $] g|\nN:note\nT:second part", "",
     {"P: field": 2, "N: field": 1, "T: field": 1}),
    ("A B c d|", "P:AABB\n", {"part order": 1}),
    ("A B c d|", "P:A\n", {}),
])
def test_each_kind_of_change_is_counted(music, extra, changes):
    r = next(read_abc(f"X:1\nT:t\nM:4/4\nL:1/8\n{extra}K:C\n{music}\n"))
    assert r.accepted, r.detail
    assert dict(r.changes) == changes


@pytest.mark.parametrize("meter, cut", [("C|", True), ("2/2", True), ("C", False), ("4/4", False)])
def test_cut_time_written_as_4_4_is_a_change(meter, cut):
    r = next(read_abc(f"X:1\nT:t\nM:{meter}\nL:1/8\nK:C\nABcd efga|\n"))
    assert r.tokens[0] == "M:4/4" and ("cut time" in r.changes) == cut
    if cut:
        assert r.change_summary() == "cut time written as M:4/4"


def test_lossless_rejects_a_changed_tune_naming_the_changes():
    r = next(read_abc(KESH, "kesh.abc", lossless=True))
    assert (r.tokens, r.reason) == (None, "changed")
    assert r.detail == r.change_summary() and r.detail.startswith("5 ties made repeated notes, 3 grace notes dropped")
    assert r.changes["tie"] == 5 and r.label() == 'kesh.abc: X:3 "The Kesh"'
    assert tune_to_tokens(tune("ABcd efga|"), lossless=True)[2:4] == ["A", "B"]
    with pytest.raises(AbcRejected) as e:
        tune_to_tokens(tune("A-A B2|"), lossless=True)
    assert e.value.reason == "changed" and "1 tie made a repeated note" in e.value.detail
    # A tune rejected for another reason keeps that reason.
    assert next(read_abc(tune("A-A >> B|"), lossless=True)).reason == "duration"


# -- tuplets are well formed ------------------------------------------------------------------

@pytest.mark.parametrize("music, where", [
    ("(3(3(3abc|", "when another tuplet '(3' starts"),  # nested: ABC 2.1 has no nested tuplets
    ("(3a|(5ab|", "when another tuplet '(5' starts"),
    ("(3a2b|", "when the tune ends"),  # ABC 2.1 counts notes, not lengths: (3 needs 3 notes
    ("(3ab:|c|", "before the bar ':|'"),
    ("(3ab|1c:|2d|", "before the bar '|1'"),
    ("(3ab|\n:cd|", "before the repeat ':'"),
    ("(4abZ|", "before the rest 'Z'"),
])
def test_malformed_tuplets_rejected_naming_tuplet_and_bar(music, where):
    reason, detail = rejected(tune("ABcd|" + music))
    assert reason == "malformed" and "tuplet '(" in detail and "bar 2" in detail and where in detail


@pytest.mark.parametrize("music, tokens", [
    ("(3abc|", ["(3", "a", "b", "c", "|"]),
    ("(3:2:3abc|", ["(3", "a", "b", "c", "|"]),
    ("(3a2bc|", ["(3", "a", "2", "b", "c", "|"]),
    ("(3a[ce]z|", ["(3", "a", "[", "c", "e", "]", "z", "|"]),  # a chord and a rest count as notes
    ("(3a{g}b c|", ["(3", "a", "b", "c", "|"]),  # a grace note does not
    ("(3a\nbc|", ["(3", "a", "b", "c", "|"]),  # across a line end
    ("(3ab|c2|", ["(3", "a", "b", "|", "c", "2", "|"]),  # across a plain bar, as the writer writes
    ("(3abc(3def|", ["(3", "a", "b", "c", "(3", "d", "e", "f", "|"]),
])
def test_well_formed_tuplets_accepted(music, tokens):
    assert body(music) == tokens


def test_tuplet_check_is_off_when_not_strict():
    text = tune("(3(3ab|")
    assert rejected(text)[0] == "malformed"
    assert tune_to_tokens(text, strict=False)[2:] == ["(3", "(3", "a", "b", "|"]


def test_tuplet_with_r_other_than_p_is_still_a_vocabulary_rejection():
    assert rejected(tune("(3:2:2a2b|"))[0] == "tuplet"


# -- size limits ----------------------------------------------------------------------------

def test_a_5_mb_line_is_rejected_at_once():
    from folkrnn.abc.reader import MAX_LINE

    text = "X:9\nT:Huge\nM:4/4\nL:1/8\nK:D\n" + "abcd efga|" * 500_000 + "\n\nX:10\nT:Fine\nM:4/4\nK:D\nABcd|\n"
    start = time.perf_counter()
    results = list(read_abc(text, "huge.abc"))
    assert time.perf_counter() - start < 2.0
    assert [(r.x, r.reason) for r in results] == [("9", "too long"), ("10", None)]
    assert results[0].detail == f"line 6 has 5,000,000 characters, over the limit of {MAX_LINE:,} per line"
    assert results[0].label() == 'huge.abc: X:9 "Huge"'


def test_continued_lines_are_joined_in_linear_time_within_the_limit():
    text = "X:1\nT:t\nM:4/4\nL:1/8\nK:D\n" + "ab\\\n" * 1_000_000 + "c|\n"
    start = time.perf_counter()
    reason, detail = rejected(text)
    assert time.perf_counter() - start < 5.0
    assert reason == "too long" and "joined by '\\'" in detail and "line 6" in detail


def test_a_tune_over_the_token_limit_is_rejected():
    from folkrnn.abc.reader import MAX_TOKENS

    line = "abcd efga|" * 8  # 72 tokens
    reason, detail = rejected(tune("\n".join([line] * (MAX_TOKENS // 72 + 1))))
    assert reason == "too long" and f"{MAX_TOKENS:,} tokens" in detail
    assert body("\n".join([line] * 270)).count("|") == 270 * 8  # 19,440 tokens: kept
    reason, _ = rejected(tune("Z64" * 120))  # checked inside the line too
    assert reason == "too long"


def test_lower_case_and_spelled_out_keys_read():
    assert tune_to_tokens("X:1\nM:4/4\nL:1/8\nK:e minor\nE|\n")[1:3] == ["K:Cmin", "C"]
    assert tune_to_tokens("X:1\nM:4/4\nL:1/8\nK: D exp ^f\nD|\n")[1:3] == ["K:Cmix", "C"]
    reason, detail = rejected("X:1\nM:4/4\nL:1/8\nK:HP\nA|\n")
    assert reason == "key" and "highland bagpipe" in detail
