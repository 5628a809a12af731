"""Corpus repairs (folkrnn.repair, `folkrnn corpus --repair`): each repair and each
rejection on a small hand-written tune, checked against the plain reading it changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from folkrnn.abc import read_abc, tune_to_tokens
from folkrnn.cli import main
from folkrnn.corpus import build_corpus, resolve_source, source_licence
from folkrnn.datafile import read_tunes
from folkrnn.evaluate.tune import analyse_tune
from folkrnn.repair import (
    ModeConfig,
    RepairConfig,
    read_mode,
    rekey,
    repair_abc_text,
    restore_line_bars_text,
)
from folkrnn.tokens import sounding_pitches
from folkrnn.vocab import Vocabulary

# Essen style: one phrase a line, the bar line at the end of each line left out.
# Lines 1 and 2 end on a full bar (2/4: four eighths); line 3 ends on the tune's end.
LOST_BARS = """X:1
T:Lost bars
M:2/4
L:1/16
K:C
c4e4 | d4B4 | c4G4
c4e4 | d4B4 | c8
e4g4 | f4d4 | c8
"""

# The phrase runs over the line break (the first line ends three eighths into a bar,
# the next line's pickup completes it): no bar line may go there.
HALF_BAR_AT_BREAK = """X:2
T:Part of a bar at the break
M:2/4
L:1/8
K:C
c2 e2 | d2 B2 | c3
G | c2 e2 | d2 B2 | c4 |
"""

# An A minor tune written K:C (the signature's major key), as Essen writes it.
A_MINOR_AS_C = """X:3
T:Minor as major
M:4/4
L:1/8
K:C
A2 Bc d2 cB | A2 E2 A4 | c2 BA G2 E2 | A2 B2 A4 |
e2 dc B2 A2 | G2 E2 E4 | A2 Bc B2 GB | A2 E2 A4 |
"""

# A G minor tune written K:G with the minor notes as accidentals.
G_MINOR_AS_G = """X:4
T:Minor with accidentals
M:3/4
L:1/8
K:G
G2 _B2 d2 | c2 _B2 A2 | G2 =F2 D2 | G4 z2 |
d2 _e2 d2 | c2 _B2 A2 | _B2 A2 F2 | G4 z2 |
"""

# A C major tune that ends on its fifth: the final alone must not re-key it.
MAJOR_ENDING_ON_FIFTH = """X:5
T:Ends on the fifth
M:4/4
L:1/8
K:C
C2 E2 G2 c2 | c2 G2 E2 C2 | D2 F2 A2 G2 | E2 C2 E2 G2 |
C2 E2 G2 c2 | A2 F2 D2 B,2 | C2 E2 C2 E2 | D2 B,2 G,4 |
"""

# A bar too long with no line break to explain it: cannot be repaired.
BAD_BAR = """X:6
T:A bar too long
M:4/4
L:1/8
K:D
D2 F2 A2 d2 | d2 c2 B2 A2 B2 | A2 F2 D4 |
"""

# E phrygian written K:C: v2 has no phrygian token.
PHRYGIAN = """X:7
T:Phrygian
M:3/4
L:1/8
K:C
E2 F2 E2 | B2 A2 B2 | B2 A2 G2 | E4 z2 |
B2 d2 B2 | A2 B2 F2 | E2 F2 E2 | E6 |
"""


def tokens_of(abc: str, config: RepairConfig | None = RepairConfig()) -> tuple | None:
    if config is None:
        (r,) = list(read_abc(abc))
        return r.tokens
    (t,) = repair_abc_text(abc, "<test>", config)
    return t.result.tokens


def rejection(abc: str, config: RepairConfig = RepairConfig()) -> tuple[str | None, str | None]:
    (t,) = repair_abc_text(abc, "<test>", config)
    return t.result.reason, t.result.detail


# -- (a) bar lines at line breaks --------------------------------------------------------------


def test_lost_bar_lines_are_restored_where_the_bar_is_full():
    plain = tokens_of(LOST_BARS, None)
    report = analyse_tune(plain)
    assert not report.all_bars_right  # the merged bars are 8 eighths in 2/4
    fixed_text, counts = restore_line_bars_text(LOST_BARS)
    assert counts == {1: 2}
    assert fixed_text.splitlines()[5] == "c4e4 | d4B4 | c4G4 |"
    assert fixed_text.splitlines()[6] == "c4e4 | d4B4 | c8 |"
    fixed = tokens_of(LOST_BARS, RepairConfig(mode=False, reject_bars=False, reject_mode=False))
    assert fixed.count("|") == plain.count("|") + 2
    assert [t for t in fixed if t != "|"] == [t for t in plain if t != "|"]
    after = analyse_tune(fixed)
    assert after.all_bars_right and after.bars == 9


def test_no_bar_line_where_the_bar_is_not_full():
    # a bar at the break would make two short bars
    fixed_text, counts = restore_line_bars_text(HALF_BAR_AT_BREAK)
    assert counts == {} and fixed_text == HALF_BAR_AT_BREAK
    assert tokens_of(HALF_BAR_AT_BREAK) == tokens_of(HALF_BAR_AT_BREAK, None)
    # an over-full bar at the break is not "full" either (see BAD_BAR below)
    text = "X:1\nM:2/4\nL:1/8\nK:C\nc e d B c\nc e | d B |\n"
    assert restore_line_bars_text(text)[1] == {}


def test_bar_lines_already_there_are_left_alone():
    text = "X:1\nM:2/4\nL:1/8\nK:C\nc e | d B |\nc e | d B\n| c4 |\n"
    assert restore_line_bars_text(text) == (text, {})


def test_tunes_are_matched_by_their_first_line():
    # a tune with no music before the one with lost bars (the codec rejects it) must
    # not put the counts or the bars out of step; nor must a file without X: lines
    text = "X:1\nT:Header only\nK:C\n\n" + LOST_BARS
    fixed, counts = restore_line_bars_text(text)
    assert counts == {5: 2}
    results = repair_abc_text(text, "<test>", RepairConfig(mode=False))
    assert [t.bars_restored for t in results] == [0, 2] and results[1].result.tokens is not None
    no_x = "\n".join(line for line in LOST_BARS.splitlines() if not line.startswith(("X:", "T:")))
    assert restore_line_bars_text(no_x)[1] == {1: 2}


def test_a_line_ending_in_a_chord_is_not_taken_for_a_bar_line():
    text = "X:1\nM:2/4\nL:1/8\nK:C\nc e d [ce]\nd B c2 | G4 |]\n"
    fixed, counts = restore_line_bars_text(text)
    assert counts == {1: 1} and fixed.splitlines()[4] == "c e d [ce] |"
    # the end of a tune (`|]`) and a repeat sign at a line end are bar lines already
    text = "X:1\nM:2/4\nL:1/8\nK:C\nc e d B :|\n|: c4 |]\n"
    assert restore_line_bars_text(text) == (text, {})


def test_restored_bar_resets_accidentals_like_any_bar():
    # ^F before the break, F after it: with the bar restored the second F is natural
    text = "X:1\nM:2/4\nL:1/8\nK:C\nc ^F G A\nF G A2 | G4 |\n"
    plain = tokens_of(text, None)
    fixed = tokens_of(text, RepairConfig(mode=False, reject_bars=False, reject_mode=False))
    assert sounding_pitches(plain)[4] == 66 and sounding_pitches(fixed)[4] == 65


# -- (b) the mode from the notes ---------------------------------------------------------------


def test_a_minor_written_as_c_major_is_rekeyed():
    plain = tokens_of(A_MINOR_AS_C, None)
    assert plain[1] == "K:Cmaj"
    reading = read_mode(plain)
    assert (reading.tonic, reading.mode, reading.plain) == (9, "minor", True)
    fixed = tokens_of(A_MINOR_AS_C)
    assert fixed[1] == "K:Cmin"
    # the same tune as if it had been written K:Am
    assert fixed == tuple(tune_to_tokens(A_MINOR_AS_C.replace("K:C", "K:Am")))
    (t,) = repair_abc_text(A_MINOR_AS_C)
    assert t.rekeyed == ("K:Cmaj", "K:Cmin", 9)


def test_minor_written_with_a_major_signature_and_accidentals_is_rekeyed():
    plain = tokens_of(G_MINOR_AS_G, None)
    assert plain[1] == "K:Cmaj" and "_e" in plain  # the B flats, moved to C
    fixed = tokens_of(G_MINOR_AS_G)
    assert fixed[1] == "K:Cmin"
    # the same tune written K:Gm: no accidentals but the raised seventh
    as_gm = G_MINOR_AS_G.replace("K:G", "K:Gm").replace("_B", "B").replace("_e", "e").replace("=F", "F")
    assert fixed == tuple(tune_to_tokens(as_gm.replace("A2 F2", "A2 ^F2")))
    # sounding pitches are unchanged (the tonic was already C after the codec's move)
    assert sounding_pitches(fixed) == sounding_pitches(plain)


def test_a_major_tune_ending_on_its_fifth_keeps_its_key():
    plain = tokens_of(MAJOR_ENDING_ON_FIFTH, None)
    reading = read_mode(plain)
    assert reading.tonic == 7 and not reading.plain
    assert tokens_of(MAJOR_ENDING_ON_FIFTH) == plain


def test_mode_thresholds_are_configurable():
    plain = tokens_of(A_MINOR_AS_C, None)
    assert read_mode(plain, ModeConfig(min_fit=0.9)).plain
    # a scale that must hold more than all the notes can never overrule the signature
    assert not read_mode(plain, ModeConfig(min_fit=1.01)).plain


def test_rekey_moves_and_respells():
    toks = "M:4/4 K:Cmaj A 2 B c ^G A | _B A 2 |".split()
    assert rekey(toks, 9, "minor") == ["M:4/4", "K:Cmin", "c", "2", "d", "e", "=B", "c", "|", "_d", "c", "2", "|"]


# -- (c) rejections ----------------------------------------------------------------------------


def test_a_bar_that_stays_wrong_rejects_the_tune():
    assert tokens_of(BAD_BAR, None) is not None  # the plain reading keeps it
    reason, detail = rejection(BAD_BAR)
    assert reason == "bars" and "bar 2" in detail and "10 eighths, expected 8" in detail
    assert tokens_of(BAD_BAR, RepairConfig(reject_bars=False)) is not None


def test_a_mode_v2_lacks_rejects_the_tune():
    assert tokens_of(PHRYGIAN, None) is not None  # the plain reading keeps it, as C major
    reason, detail = rejection(PHRYGIAN)
    assert reason == "mode" and "phrygian" in detail
    assert tokens_of(PHRYGIAN, RepairConfig(reject_mode=False)) == tokens_of(PHRYGIAN, None)


def test_codec_rejections_are_kept():
    reason, _ = rejection("X:1\nM:5/4\nL:1/8\nK:C\nCDEFG A2B2c2|\n")
    assert reason == "meter"


# -- the corpus and the command line -----------------------------------------------------------


def corpus_file(tmp_path: Path) -> Path:
    f = tmp_path / "essenlike.abc"
    f.write_text("\n".join([LOST_BARS, A_MINOR_AS_C, MAJOR_ENDING_ON_FIFTH, BAD_BAR, PHRYGIAN]), "utf-8")
    return f


def test_corpus_report_counts_repairs_and_rejections(tmp_path):
    f = corpus_file(tmp_path)
    plain = build_corpus([str(f)], progress=False)
    assert plain.report["totals"]["kept"] == 5 and "repair" not in plain.report
    result = build_corpus([str(f)], progress=False, repair=RepairConfig())
    rep = result.report
    assert rep["totals"]["kept"] == 3
    assert rep["totals"]["rejected"] == {"bars": 1, "mode": 1}
    assert rep["repair"]["bars_restored"] == 2 and rep["repair"]["tunes_with_bars_restored"] == 1
    assert rep["repair"]["rekeyed_by_key"] == {"K:Cmaj -> K:Cmin, final A": 1}
    assert rep["repair"]["config"]["mode_config"] == {"consistent": 0.8, "min_fit": 0.9, "min_degree": 0.04, "triad_margin": 1.2}
    assert rep["per_source"][0]["repair"]["rekeyed"] == 1
    assert all(analyse_tune(t).all_bars_right for t in result.tunes)


def test_cli_repair(tmp_path, capsys):
    f = corpus_file(tmp_path)
    out, rep = tmp_path / "c.txt", tmp_path / "c.json"
    assert main(["corpus", str(f), "--repair", "-o", str(out), "--report", str(rep)]) == 0
    assert "2 bar lines restored in 1 tunes, 1 tunes re-keyed" in capsys.readouterr().out
    assert len(read_tunes(out, Vocabulary.v2())) == 3
    assert json.loads(rep.read_text())["repair"]["rekeyed"] == 1
    assert main(["corpus", str(f), "--repair", "bars,reject-bars", "-o", str(out), "-q"]) == 0
    assert len(read_tunes(out, Vocabulary.v2())) == 4  # the phrygian tune is kept as written
    assert main(["corpus", str(f), "--repair", "bars,nonsense", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nonsense" in err and "\n" not in err


# -- (d) licences ---------------------------------------------------------------------------------


def test_music21_licences_are_quoted_from_the_files_music21_ships():
    from music21 import common

    root = Path(common.getCorpusFilePath())
    essen = source_licence(resolve_source("essenFolksong"))
    paths = [f["path"] for f in essen["files"]]
    assert paths == ["essenFolksong/license.txt", "license.txt"]
    assert essen["files"][0]["text"] == (root / "essenFolksong" / "license.txt").read_text("utf-8")
    british = source_licence(resolve_source("miscFolk"))
    assert [f["path"] for f in british["files"]] == ["license.txt"] and "no licence file" in british["note"]
    assert any("Campin" in who for who in british["credits"])


def test_a_data_v2_corpus_points_to_the_licences_of_its_sources(tmp_path):
    f = corpus_file(tmp_path)
    out, rep = tmp_path / "c.txt", tmp_path / "c.report.json"
    assert main(["corpus", str(f), "-o", str(out), "--report", str(rep), "-q"]) == 0
    lic = build_corpus([str(out)], progress=False).report["per_source"][0]["licence"]
    assert lic["built_from"]["sources"] == [str(f)]
    assert str(f) in lic["built_from"]["licences"]


@pytest.mark.parametrize("name", ["LOST_BARS", "A_MINOR_AS_C", "G_MINOR_AS_G", "BAD_BAR", "PHRYGIAN"])
def test_without_repair_each_example_reads_as_written(name):
    # the examples are what the repairs are for: the plain codec keeps every one unchanged
    abc = globals()[name]
    assert tokens_of(abc, None) is not None
    assert tokens_of(abc, RepairConfig(bars=False, mode=False, reject_bars=False, reject_mode=False)) == tokens_of(abc, None)


def test_once_the_third_overrules_the_signature_a_single_sixth_decides_the_mode():
    # G minor under K:G, with one E flat in 96 eighths (2%): the signature's E natural
    # is no evidence (it is the major signature of the tonic), so the tune is minor,
    # not dorian; a minor signature with one raised sixth stays minor too.
    head = "X:1\nM:3/4\nL:1/8\nK:G\n"
    phrase = "G2 _B2 d2 | c2 _B2 A2 | G2 =F2 D2 | G4 z2 |\n"
    long_tune = head + phrase + "d2 _e2 d2 | c2 _B2 A2 | _B2 A2 =F2 | G4 z2 |\n" + phrase * 2
    plain = tokens_of(long_tune, None)
    assert plain.count("_A") == 0 and plain.count("_a") == 1  # the E flat, moved to C
    assert read_mode(plain).mode == "minor"
    assert tokens_of(long_tune)[1] == "K:Cmin"
    am = "X:1\nM:3/4\nL:1/8\nK:Am\n" + "A2 c2 e2 | d2 c2 B2 | A2 G2 E2 | A4 z2 |\n" * 3 + "A2 c2 e2 | ^f2 e2 d2 | c2 B2 G2 | A4 z2 |\n"
    assert not read_mode(tokens_of(am, None)).plain
