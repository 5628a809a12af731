"""Tests of folkrnn.evaluate: one hand-made tune per rule, the 64 samples, the CLI."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import pytest

from folkrnn import tokens as T
from folkrnn.cli import main
from folkrnn.datafile import read_tunes, write_tunes
from folkrnn.errors import FolkRNNError
from folkrnn.evaluate import EvaluateConfig, NGramIndex, analyse_tune, evaluate_file, evaluate_tunes, format_table
from folkrnn.evaluate.stats import jsd
from folkrnn.evaluate.tune import _scan, similarity, ticks_to_eighths

SAMPLES = Path("/work/shared/data/folkrnn_v2_generated_samples.txt")
if not SAMPLES.exists():
    SAMPLES = Path(__file__).resolve().parents[1] / "shared" / "data" / "folkrnn_v2_generated_samples.txt"
needs_samples = pytest.mark.skipif(not SAMPLES.exists(), reason="generated samples not available")


def tune(text: str):
    return analyse_tune(text.split())


def errors(r):
    return [(e.bar, str(e.found), str(e.expected)) for e in r.bar_errors]


# ---------------------------------------------------------------- bar arithmetic


def test_full_bars_are_right():
    r = tune("M:4/4 K:Cmaj C D E F G A B c | c 2 B 2 A 4 | c 8 |")
    assert (r.bars, r.bars_right, r.pickup, errors(r)) == (3, 3, None, [])
    assert r.all_bars_right


def test_wrong_bar_is_reported_with_index_and_lengths():
    r = tune("M:4/4 K:Cmaj C D E F G A B c | c 2 B 2 A 2 | c 8 | C D E F G A B c d |")
    assert errors(r) == [(1, "6", "8"), (3, "9", "8")]
    assert r.bars_right == 2 and not r.all_bars_right


def test_pickup_and_its_complement():
    r = tune("M:6/8 K:Cmaj d | e c G c 2 d | e 3 c 2 :|")
    assert r.pickup == Fraction(1)
    assert r.bars_right == r.bars == 3
    assert r.sections[0].bars == 2  # the pickup does not count as a bar of the part


def test_short_last_bar_without_pickup_is_wrong():
    r = tune("M:6/8 K:Cmaj e c G c 2 d | e 3 c 2 :|")
    assert errors(r) == [(1, "5", "6")]


def test_complement_must_match_the_pickup():
    r = tune("M:6/8 K:Cmaj d | e c G c 2 d | e 3 c :|")
    assert errors(r) == [(2, "4", "6")]


def test_pickup_of_the_next_part_is_recognised():
    # First part ends short, the second part's pickup completes it; the second part ends short for its own pickup.
    r = tune("M:4/4 K:Cmaj |: c 8 | c 2 c 2 c 2 :| |: c 2 | c 8 | c 6 :|")
    assert r.all_bars_right, errors(r)
    assert [s.pickup for s in r.sections] == [None, Fraction(2)]


def test_pickup_before_repeat_start_is_merged_into_the_part():
    r = tune("M:4/4 K:Cmaj G |: c 2 c 2 c 2 c 2 | c 7 :| |: c 8 | c 8 :|")
    assert r.all_bars_right
    assert len(r.sections) == 2 and r.sections[0].pickup == 1
    assert r.pattern == "AABB"


def test_triplet_bar():
    r = tune("M:2/4 K:Cmaj (3 c d e c d | (3 c 2 d 2 e 2 | (3 c d e (3 c d e |")
    assert r.all_bars_right, errors(r)


def test_tuplets_in_compound_meter():
    # (2 in 6/8: two notes in the time of three; (4: four in the time of three.
    r = tune("M:6/8 K:Cmaj (2 c d c d e | (4 c d e f c d e | c 3 (2 c 3 d 3 |")
    assert errors(r) == [(2, "12", "6")]


def test_broken_rhythm_bar():
    r = tune("M:2/4 K:Cmaj c > d e < f | c 2> d 2 | c /2< d /2 c 3 | c 4 |")
    assert r.all_bars_right, errors(r)


def test_broken_rhythm_with_duration_carried_by_the_mark():
    # `2>` is "duration 2, then >": c lasts 3; d keeps its own written length (ABC), 1/2 here.
    r = tune("M:2/4 K:Cmaj c 4 | c 2> d | c 4 |")
    assert errors(r) == [(1, "7/2", "4")]


def test_chord_durations():
    r = tune("M:2/4 K:Cmaj [ C E G ] 2 c 2 | [ C 2 E 2 G 2 ] [ c e ] 2 | [ C E ] [ D F ] 3 |")
    assert r.all_bars_right, errors(r)


def test_rest_and_halves():
    r = tune("M:3/4 K:Cmaj z 2 c /2 d /2 e 2 | z 6 |")
    assert r.all_bars_right


def test_meter_change_mid_tune():
    r = tune("M:2/4 K:Cmaj c 4 | M:3/4 c 6 | c 4 |")
    assert errors(r) == [(2, "4", "6")]


def test_stray_tokens_are_counted_not_fatal():
    r = tune("M:4/4 K:Cmaj | 2 c 8 | c 8 ] | > c 8 |")
    assert r.stray == 3
    assert r.all_bars_right


# ---------------------------------------------------------------- repeats, endings, sections


def test_first_and_second_endings():
    r = tune("M:4/4 K:Cmaj |: G | c 2 c 2 c 2 c 2 |1 c 6 c :| |2 c 4 c 3 |: g | c 8 | c 7 :|")
    assert r.repeats_ok and r.all_bars_right, (r.repeat_errors, errors(r))
    a, b = r.sections
    assert a.endings == (1, 1) and a.repeated and a.bars == 2 and a.pickup == 1
    assert b.endings is None and b.repeated and b.bars == 2
    assert r.pattern == "AABB"


def test_second_ending_span_follows_the_first():
    # Two-bar endings, then a part with no repeat marks (the `||` of ABC is `|` in v2).
    r = tune("M:2/4 K:Cmaj |: c 4 | d 4 |1 e 4 | f 4 :| |2 g 4 | c 4 | e 4 | d 4 | e 4 | c 4 |")
    a, b = r.sections
    assert a.endings == (2, 2) and (a.first_bar, a.last_bar) == (0, 5)
    assert (b.first_bar, b.last_bar, b.repeated, b.bars) == (6, 9, False, 4)


def test_ending_similarity():
    r = tune("M:4/4 K:Cmaj |: c d e f g a b c' |1 g f e d c d e f :| |2 g f e d c 4 |")
    assert r.sections[0].ending_similarity == pytest.approx(similarity(list("gfedcdef"), list("gfedC")), abs=1e-4)


@pytest.mark.parametrize(
    "body, message",
    [
        ("|: c 8 | c 8 |", "never closed"),
        ("|: c 8 |: c 8 :|", "still open"),
        ("|: c 8 |2 c 8 :|", "|2 before bar 2 without a first ending"),
        ("|: c 8 |1 c 8 :| c 8 |", "no second ending"),
        ("|: c 8 |1 c 8 | c 8 |", "never closed by :|"),
    ],
)
def test_malformed_repeats(body, message):
    r = tune("M:4/4 K:Cmaj " + body)
    assert not r.repeats_ok
    assert any(message in e for e in r.repeat_errors), r.repeat_errors


@pytest.mark.parametrize("body", ["c 8 | c 8 :| c 8 | c 8 :|", "|: c 8 :| |: c 8 |1 c 8 :| |2 c 8 |", "c 8 |"])
def test_well_formed_repeats(body):
    assert tune("M:4/4 K:Cmaj " + body).repeats_ok


def test_form_labels_by_similarity():
    a = "c d e f g a b c' | c' b a g f e d c"
    b = "g 2 g 2 a 4 | f 2 f 2 e 4"
    r = tune(f"M:4/4 K:Cmaj |: {a} :| |: {b} :| |: {a} :|")
    assert r.pattern == "AABBAA"
    assert r.part_similarity == (1.0,)


def test_written_out_tune_is_split_into_8_bar_phrases():
    bar_a = ["c d e f g a b c'", "c' b a g f e d c"] * 4
    bar_b = ["g 2 g 2 a 4", "f 2 f 2 e 4", "d 2 d 2 c 4", "B 2 B 2 A 4"] * 2
    body = " | ".join(bar_a + bar_a + bar_b) + " |"
    r = tune("M:4/4 K:Cmaj " + body)
    assert [s.bars for s in r.sections] == [8, 8, 8]
    assert r.pattern == "AAB"


# ---------------------------------------------------------------- cadences and pitch


def test_cadences_and_pitch_range():
    r = tune("M:4/4 K:Cmin |: c 8 | G 8 :| |: c' 8 | B 8 :|")
    assert [s.cadence for s in r.sections] == [7, 10]  # B under K:Cmin sounds B-flat
    assert r.final_cadence == 10
    assert (r.pitch_low, r.pitch_high, r.pitch_range) == (67, 84, 17)


def test_bar_accidental_holds_until_the_bar_line():
    r = tune("M:2/4 K:Cmaj ^c 2 c 2 | c 4 |")
    assert r.final_cadence == 0
    r = tune("M:2/4 K:Cmaj c 2 ^c 2 | c 2 ^c c |")
    assert r.final_cadence == 1


def test_chord_cadence_uses_its_first_note():
    assert tune("M:2/4 K:Cmaj c 2 [ G c e ] 2 |").final_cadence == 7


# ---------------------------------------------------------------- equivalence with folkrnn.tokens


def _reference_bar_lengths(toks: list[str]) -> list[Fraction]:
    """A slow, straightforward reading of bar lengths in Fractions, for comparison."""
    meter = toks[0]
    bars, total, events = [], Fraction(0), 0
    tup_left, ratio, owed = 0, Fraction(1), Fraction(1)
    i = 2
    while i < len(toks):
        t = toks[i]
        k = T.kind(t)
        if k == "bar":
            if events:
                bars.append(total)
            total, events, owed = Fraction(0), 0, Fraction(1)
        elif k == "tuplet":
            tup_left = T.tuplet_size(t)
            ratio = T.tuplet_ratio(tup_left, meter)
        elif k in ("pitch", "rest", "chord_start"):
            length = Fraction(1)
            if k == "chord_start":  # a chord lasts its first note's written length...
                j = toks.index("]", i)
                inner = toks[i + 1 : j]
                if len(inner) > 1 and T.kind(inner[1]) == "duration":
                    length = T.duration(inner[1])
                i = j
            factor, owed = owed, Fraction(1)
            if tup_left:
                factor *= ratio
                tup_left -= 1
            nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if T.kind(nxt) == "duration":  # ...times the duration after it
                length *= T.duration(nxt)
                i += 1
                nxt = toks[i + 1] if i + 1 < len(toks) else ""
            if T.kind(nxt) == "broken":
                if nxt[:-1]:
                    length *= T.duration(nxt)
                factor *= Fraction(3, 2) if nxt[-1] == ">" else Fraction(1, 2)
                owed = Fraction(1, 2) if nxt[-1] == ">" else Fraction(3, 2)
                i += 1
            total += length * factor
            events += 1
        i += 1
    if events:
        bars.append(total)
    return bars


@needs_samples
def test_scanner_matches_a_plain_fraction_reading_on_the_samples():
    for n, toks in enumerate(read_tunes(SAMPLES)):
        if "[" in toks:  # the sample with nested chords is not plain ABC
            continue
        ref = _reference_bar_lengths(toks)
        got = [ticks_to_eighths(b[2]) for b in _scan(toks).bars]
        assert got == ref, n


@needs_samples
def test_sounding_pitches_match_tokens_module():
    for toks in read_tunes(SAMPLES):
        assert _scan(toks).pitches == T.sounding_pitches(toks)


# ---------------------------------------------------------------- the 64 samples


@needs_samples
def test_generated_samples_figures():
    ev = evaluate_file(SAMPLES)
    s = ev.summary
    assert s["tunes"] == 64
    # The original model's own tunes: about 96% of bars add up (see docs/evaluate.md).
    assert 0.93 <= s["bars_right"] <= 0.99
    assert s["pattern_AABB"] > 0.5
    assert s["final_tonic"] > 0.5
    assert s["repeats_ok"] > 0.9
    text = format_table(ev)
    assert "bars right" in text and "form AABB" in text


# ---------------------------------------------------------------- distributions, divergence


def test_jsd_properties():
    p, q = {"a": 5, "b": 1}, {"a": 1, "b": 5}
    assert jsd(p, p) == pytest.approx(0.0, abs=1e-12)
    assert jsd(p, q) == pytest.approx(jsd(q, p))
    assert 0 < jsd(p, q) < 1
    assert jsd({"a": 7}, {"b": 3}, alpha=0) == pytest.approx(1.0)
    assert jsd({"a": 7}, {"b": 3}) < 1  # smoothing keeps it below the maximum


def test_divergence_against_reference():
    same = [["M:4/4", "K:Cmaj", "c", "8", "|"]] * 50
    other = [["M:6/8", "K:Cmin", "G", "6", "|"]] * 50
    ev = evaluate_tunes(same, reference=same)
    assert all(v == pytest.approx(0, abs=1e-9) for v in ev.reference.divergence.values())
    ev2 = evaluate_tunes(same, reference=other)
    assert ev2.reference.divergence["meter"] > 0.5 and ev2.reference.divergence["mode"] > 0.5
    d = ev.distributions
    assert d.meter == {"M:4/4": 50} and d.duration == {"8": 50} and d.pitch_class == {0: 50}


# ---------------------------------------------------------------- novelty


def _lcs_run(a: list[str], b: list[str]) -> int:
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def test_novelty_finds_copied_run_and_nearest_tune():
    rng = random.Random(1)
    alphabet = "C D E F G A B c d e f g".split()
    refs = [["M:4/4", "K:Cmaj"] + [rng.choice(alphabet) for _ in range(60)] for _ in range(5)]
    copied = refs[3][2 + 10 : 2 + 30]  # 20 tokens
    query = ["M:4/4", "K:Cmaj"] + [rng.choice(alphabet) for _ in range(15)] + copied + ["z"] * 5
    m = NGramIndex(refs, n=8).query(query)
    assert m.nearest == 3 and m.run_tune == 3
    assert m.longest_run == _lcs_run(query[2:], refs[3][2:]) >= 20


def test_novelty_longest_run_is_exact_above_n():
    rng = random.Random(7)
    alphabet = "C D E".split()
    refs = [["M:4/4", "K:Cmaj"] + [rng.choice(alphabet) for _ in range(40)] for _ in range(6)]
    index = NGramIndex(refs, n=5)
    for _ in range(20):
        q = ["M:4/4", "K:Cmaj"] + [rng.choice(alphabet) for _ in range(40)]
        m = index.query(q)
        best = max(_lcs_run(q[2:], r[2:]) for r in refs)
        assert m.longest_run == (best if best >= 5 else 0)


def test_novelty_in_evaluation_and_copy_share():
    ref = [["M:4/4", "K:Cmaj"] + "C D E F G A B c | c B A G F E D C | C E G c e g c' 2 |".split()]
    copy = list(ref[0])
    new = ["M:4/4", "K:Cmaj"] + "z 8 | z 8 |".split()
    ev = evaluate_tunes([copy, new], reference=ref, config=EvaluateConfig(copy_run=16))
    assert ev.reports[0].extra["longest_run"] == len(copy) - 2
    assert ev.reports[0].extra["nearest"] == 0 and ev.reports[0].extra["nearest_similarity"] == 1.0
    assert ev.reports[1].extra["nearest"] is None and ev.reports[1].extra["longest_run"] == 0
    assert ev.summary["tunes_copying"] == 0.5


def test_copy_run_shorter_than_ngram_is_an_error():
    with pytest.raises(FolkRNNError, match="copy-run"):
        EvaluateConfig(copy_run=4, ngram=8)


# ---------------------------------------------------------------- CLI


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "tunes.txt"
    write_tunes(
        path,
        [
            "M:6/8 K:Cmaj d | e c G c 2 d | e 3 c 2 :| f | g 3 a g f | e d c c 2 :|".split(),
            "M:4/4 K:Cdor |: c 8 | c 7 :| |: g 8 |1 f 8 :| |2 c 8 |".split(),
        ],
    )
    return path


def test_cli_table_json_and_plots(small_file, tmp_path, capsys):
    out_json = tmp_path / "ev.json"
    plots = tmp_path / "plots"
    rc = main(["evaluate", str(small_file), "--against", str(small_file), "--json", str(out_json), "--plots", str(plots), "--tunes"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "bars right" in text and "JSD meters" in text and "tunes copying >= 16 tokens" in text
    data = json.loads(out_json.read_text())
    assert data["summary"]["tunes"] == 2 and len(data["tunes"]) == 2
    assert data["tunes"][0]["pattern"] == "AABB"
    assert data["tunes"][1]["bar_errors"] == [{"bar": 1, "found": "7", "expected": "8"}]
    assert "divergence_bits" in data["reference"]
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert "meters.png" in pngs and "durations.png" in pngs
    assert all((plots / p).stat().st_size > 1000 for p in pngs)


def test_cli_unknown_token_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("M:4/4\nK:Cmaj\nc 8 |\n\nM:4/4\nK:Cmaj\nc 8 Q |\n")
    assert main(["evaluate", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "bad.txt" in err and "transcription 2" in err and "Q" in err


def test_cli_missing_file(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.txt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_bad_copy_run(small_file, capsys):
    assert main(["evaluate", str(small_file), "--copy-run", "3"]) == 2
    assert "--copy-run" in capsys.readouterr().err


# ---------------------------------------------------------------- ABC input


def _abc_available() -> bool:
    try:
        from folkrnn.abc import read_abc_file  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _abc_available(), reason="folkrnn.abc not available yet")
def test_abc_input(tmp_path):
    abc = tmp_path / "t.abc"
    abc.write_text(
        "X:1\nT:Test reel\nM:4/4\nL:1/8\nK:G\n|:GABc dedB|dedB dedB|c2ec B2dB|c2A2 A2BA:|\n\n"
        "X:2\nT:Test jig\nM:6/8\nL:1/8\nK:D\nd|fed cBA|d3 d2:|\n"
    )
    ev = evaluate_file(abc)
    assert ev.format == "abc"
    assert len(ev.reports) + len(ev.rejected) == 2
    assert ev.reports and ev.reports[0].meter == "M:4/4"
    assert ev.reports[0].all_bars_right


def test_unmarked_section_boundary_complement_and_pickup():
    # `C 3 C 2 || C | ...` in ABC: v2 has no `||`, the two short bars mark the boundary.
    a = "F | G c c c B c | d e f e 2 d | c B G G F G | C 3 C 2"
    b = "C | E F G A E F | B G F G E C | E F G B G F | C 3 C 2 |"
    r = tune(f"M:6/8 K:Cmaj {a} | {b}")
    assert r.all_bars_right, errors(r)
    assert r.unmarked_boundaries == 1
    assert [s.bars for s in r.sections] == [4, 4] and r.pattern == "AB"


def test_half_length_bars_are_not_read_as_sections():
    r = tune("M:4/4 K:Cmaj c 8 | c 4 | c 4 | c 4 | c 4 | c 8 |")
    assert r.unmarked_boundaries == 0
    assert len(r.bar_errors) == 4


def test_plots_without_reference(small_file, tmp_path):
    from folkrnn.evaluate.plots import write_plots

    ev = evaluate_file(small_file)
    paths = write_plots(tmp_path / "p", ev.distributions)
    assert {p.name for p in paths} >= {"tokens.png", "durations.png", "patterns.png", "final_cadences.png"}
