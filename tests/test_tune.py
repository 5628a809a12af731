"""folkrnn.tune: MusicXML that holds the notes folkrnn reads in the tokens, printed scores
(abcm2ps), output formats chosen by `-o`'s suffix, and the notebook's `Tune`."""

from __future__ import annotations

import base64
import html
import json
import re
import xml.etree.ElementTree as ET
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from conftest import requires

from folkrnn import tune as T
from folkrnn.abc.writer import make_writable
from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import main
from folkrnn.datafile import read_tunes
from folkrnn.errors import FolkRNNError
from folkrnn.midi import key_shift, note_events
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

V2 = Vocabulary.v2()

# Hand-written tunes that ABC can say as they are (no repair): pickups, repeats, first and
# second endings, tuplets, broken rhythms, chords, rests, accidentals held to the bar line.
TUNES = {
    "jig": "M:6/8 K:Cmaj G |: c 2 B A > G ^F | (3 G A B c =F 2 _B, /2 z /2 | [ C E G ] 3 c 3 |1 c 6 :| |2 d 6 |",
    "reel": "M:4/4 K:Cdor |: G 2 E > C D < F G 2 | G A B c d e f g :| |: c' 2 b g a 3/2 g /2 f 2 "
            "|1 e > d c B c 2 _B 2 :| |2 e d c B c 2 z 2 |",
    "hornpipe": "M:3/2 K:Cmix |: c 4 _B 2 A 2 G 2 F 2 | E 6 ^F 2 [ G, D G ] 4 :|",
    "slide": "M:9/8 K:Cmin c 3 B c d =e f e | e d c =B, c d c 3 | (4 c d e f g 2 f e d c |",
    "polka": "M:2/4 K:Cmaj (3 c d e f > e | d /2 c /2 B /2 A /2 G 2 | (5 c B A G F E 2 |",
}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """A tiny random model that likes bar lines, repeats and </s>: short tunes with some form."""
    torch.manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=1)).eval()
    with torch.no_grad():
        m.out.bias[V2.eos] += 2.0
        for t in ("|", ":|", "|:"):
            m.out.bias[V2[t]] += 2.0
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_checkpoint(path, m, V2)
    return path


@pytest.fixture(scope="module")
def tunes(model_file) -> list[T.Tune]:
    out = T.generate_tunes(6, model=str(model_file), seed=3, max_length=150, key="D", tempo=90)
    out += T.generate_tunes(6, model=str(model_file), seed=4, max_length=150, bars="strict", key="Bb")
    return out


def read_musicxml(data: bytes):
    import music21

    return music21.converter.parse(data, format="musicxml")


def notes_in(score) -> list[tuple[tuple[int, ...], Fraction]]:
    """(MIDI pitches, quarter notes) of every note, chord and rest, tied notes joined."""
    return [(tuple(sorted(p.midi for p in n.pitches)), Fraction(n.quarterLength))
            for n in score.stripTies().flatten().notesAndRests]


def reference(tokens, key: str) -> list[tuple[tuple[int, ...], Fraction]]:
    """folkrnn's own reading (folkrnn.midi, repeats as written) of the tokens ABC says."""
    kept, _ = make_writable(tokens)
    shift = key_shift(key)
    return [(tuple(p + shift for p in e.pitches), e.length / 2) for e in note_events(kept, expand=False)]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


# -- MusicXML --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["C", "D", "Bb"])
@pytest.mark.parametrize("name", sorted(TUNES))
def test_musicxml_holds_the_notes_of_hand_written_tunes(name, key):
    tokens = TUNES[name].split()
    assert make_writable(tokens)[0] == tokens  # the reference reads these very tokens
    got = notes_in(read_musicxml(T.musicxml(tokens, key)))
    assert got == reference(tokens, key)


def test_musicxml_holds_the_notes_of_generated_tunes(tunes):
    from music21 import duration

    compared = 0
    for t in tunes:
        want = reference(t.tokens, t.key)
        if not want:  # music21 fills an empty measure with a rest: nothing to compare
            continue
        if any(duration.Duration(q).type == "inexpressible" for _, q in want):
            # e.g. 9 sixty-fourths in the time of 2: refused in one line, not written wrong
            with pytest.raises(FolkRNNError, match="cannot write MusicXML: .*inexpressible"):
                t.musicxml()
            continue
        compared += 1
        assert notes_in(read_musicxml(t.musicxml())) == want, " ".join(t.tokens)
    assert compared >= 8


def test_musicxml_bars_repeats_and_endings():
    from music21 import bar, spanner

    score = read_musicxml(T.musicxml(TUNES["jig"].split(), "D", title="The jig", tempo=110, program=73))
    measures = list(score.parts[0].getElementsByClass("Measure"))
    assert [m.number for m in measures] == [0, 1, 2, 3, 4, 5]  # the pickup is measure 0
    assert [float(m.duration.quarterLength) for m in measures] == [0.5, 3.0, 3.0, 3.0, 3.0, 3.0]
    starts = [m.number for m in measures if isinstance(m.leftBarline, bar.Repeat)]
    ends = [m.number for m in measures if isinstance(m.rightBarline, bar.Repeat)]
    assert starts == [1] and ends == [4] and measures[-1].rightBarline.type == "final"
    brackets = sorted((int(b.number), [m.number for m in b.getSpannedElements()])
                      for b in score.recurse().getElementsByClass(spanner.RepeatBracket))
    assert brackets == [(1, [4]), (2, [5])]
    ts = score.recurse().getElementsByClass("TimeSignature").first()
    ks = score.recurse().getElementsByClass("KeySignature").first()
    assert ts.ratioString == "6/8" and ks.sharps == 2  # D major
    mm = score.recurse().getElementsByClass("MetronomeMark").first()
    assert mm.number == 110 and mm.referent.quarterLength == 1.5  # a dotted quarter in 6/8
    assert score.recurse().getElementsByClass("Instrument").first().midiProgram == 73
    assert "<movement-title>The jig</movement-title>" in T.musicxml(TUNES["jig"].split(), title="The jig").decode()


@pytest.mark.parametrize("mode, key, sharps", [("Cmaj", "D", 2), ("Cdor", "D", 0), ("Cmin", "A", 0),
                                                ("Cmix", "G", 0), ("Cmaj", "Bb", -2), ("Cmin", "F#", 3)])
def test_musicxml_key_signature_follows_the_mode_and_the_key(mode, key, sharps):
    score = read_musicxml(T.musicxml(f"M:4/4 K:{mode} | C D E F G 4 |".split(), key))
    assert score.recurse().getElementsByClass("KeySignature").first().sharps == sharps


def accidentals_by_measure(data: bytes) -> list[list[str | None]]:
    root = ET.fromstring(data)
    return [[n.findtext("accidental") for n in m.iter("note")] for m in root.iter("measure")]


@pytest.mark.parametrize("key, want", [
    ("C", [["sharp", None, None, "natural"], [None, None, "flat"], ["natural", None]]),
    ("D", [["sharp", None, None, "natural"], [None, None, "natural"], ["sharp", None]]),
])
def test_musicxml_prints_accidentals_as_the_abc_does(key, want):
    # held to the bar line (not printed again), no natural signs on unaltered notes,
    # a courtesy sign only after the bar that altered the note
    tokens = "M:4/4 K:Cmaj | ^F G ^F =F | F 4 B, 2 _B, 2 | B, 4 z 4 |".split()
    assert accidentals_by_measure(T.musicxml(tokens, key)) == want


def test_musicxml_refuses_what_is_no_transcription():
    with pytest.raises(FolkRNNError, match="meter and key"):
        T.musicxml("c d e f".split())


# -- the CLI: the format follows -o's suffix -----------------------------------------------
def test_cli_musicxml_is_the_tune_of_the_seed(model_file, capsys, tmp_path):
    out = tmp_path / "t.musicxml"
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-s", "7", "-k", "G", "-o", str(out), "--no-progress")
    assert rc == 0 and f"wrote {out.name}" in err
    rc, _, _ = run(capsys, "generate", "-m", str(model_file), "-s", "7", "-o", str(tmp_path / "t.txt"), "--no-progress")
    (tokens,) = read_tunes(tmp_path / "t.txt")
    assert notes_in(read_musicxml(out.read_bytes())) == reference(tokens, "G")


def test_cli_musicxml_folder_holds_one_file_per_tune(model_file, capsys, tmp_path):
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-s", "7", "-n", "3", "-f", "musicxml",
                     "-o", str(tmp_path / "scores"), "--no-progress")
    names = sorted(p.name for p in (tmp_path / "scores").iterdir())
    assert rc == 0 and names == ["tune_00001.musicxml", "tune_00002.musicxml", "tune_00003.musicxml"], err


@requires("abcm2ps")
def test_cli_svg_is_an_svg_document(model_file, capsys, tmp_path):
    out = tmp_path / "t.svg"
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-s", "2", "-n", "1", "-o", str(out), "--no-progress")
    assert rc == 0, err
    root = ET.parse(out).getroot()
    assert root.tag.rsplit("}", 1)[-1] == "svg"
    assert len(list(root.iter())) > 10  # a drawn staff, not an empty page


@requires("abcm2ps", "ps2pdf")
def test_cli_pdf_holds_every_tune(model_file, capsys, tmp_path):
    out = tmp_path / "tunes.pdf"
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-s", "2", "-n", "3", "-o", str(out), "--no-progress")
    assert rc == 0 and "wrote 3 tune(s)" in err, err
    data = out.read_bytes()
    assert data.startswith(b"%PDF") and b"%%EOF" in data[-1024:]


def test_cli_mid_is_a_midi_file_of_the_tune(model_file, capsys, tmp_path):
    import mido

    out = tmp_path / "tune.mid"
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-s", "7", "-o", str(out), "--no-progress")
    assert rc == 0, err
    assert out.read_bytes()[:4] == b"MThd"
    rc, _, _ = run(capsys, "generate", "-m", str(model_file), "-s", "7", "-o", str(tmp_path / "t.txt"), "--no-progress")
    (tokens,) = read_tunes(tmp_path / "t.txt")
    played = [m.note for m in mido.MidiFile(out).tracks[0] if m.type == "note_on"]
    assert played == [p for n in note_events(tokens) for p in n.pitches]


@requires("fluidsynth", "soundfont")
def test_cli_wav_is_riff_wave(model_file, capsys, tmp_path):
    out = tmp_path / "tune.wav"
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-s", "7", "-o", str(out), "--no-progress")
    data = out.read_bytes() if out.exists() else b""
    assert rc == 0 and data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 1000, err


@pytest.mark.parametrize("argv, msg", [
    (["-o", "x.doc"], "unknown suffix '.doc'"),
    (["-f", "abc", "-o", "t.mid"], "conflicting options: --format abc, but -o t.mid is a midi file name"),
    (["-o", "t.musicxml", "-n", "2"], "holds one tune"),
    (["-f", "svg"], "needs -o"),
    (["-f", "pdf"], "needs -o FILE.pdf"),
    (["-o", "t.svg", "--program", "40"], "a printed score (svg) has no instrument"),
])
def test_cli_refuses_a_wrong_output_in_one_line(model_file, capsys, tmp_path, monkeypatch, argv, msg):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "generate", "-m", str(model_file), "--no-progress", *argv)
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and out == ""
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("missing, fmt, msg", [("fluidsynth", "wav", "apt-get install fluidsynth"),
                                               ("abcm2ps", "svg", "apt-get install abcm2ps"),
                                               ("ps2pdf", "pdf", "apt-get install ghostscript")])
def test_a_missing_program_is_named_before_sampling(model_file, capsys, tmp_path, monkeypatch, missing, fmt, msg):
    real = T._program
    monkeypatch.setattr(T, "_program", lambda name: None if name == missing else real(name))
    out = tmp_path / f"t.{fmt}"
    rc, _, err = run(capsys, "generate", "-m", str(model_file), "-o", str(out), "--no-progress")
    assert rc == 2 and msg in err and len(err.strip().splitlines()) == 1 and not out.exists()


# -- Tune: Jupyter and save() ----------------------------------------------------------------
def test_generate_tunes_is_the_cli_with_the_same_seed(model_file, tunes, capsys, tmp_path):
    rc, _, _ = run(capsys, "generate", "-m", str(model_file), "-s", "3", "-n", "6", "--max-length", "150",
                   "-o", str(tmp_path / "t.txt"), "--no-progress")
    assert rc == 0 and read_tunes(tmp_path / "t.txt") == [t.tokens for t in tunes[:6]]
    rc, out, _ = run(capsys, "generate", "-m", str(model_file), "-s", "3", "-n", "6", "--max-length", "150",
                     "-k", "D", "--tempo", "90", "--no-progress")
    assert out == "\n".join(t.abc for t in tunes[:6])
    assert [t.x for t in tunes[:6]] == [1, 2, 3, 4, 5, 6] and tunes[0].title in tunes[0].abc


def test_repr_html_draws_the_staff_once_loaded_and_plays(tunes, monkeypatch):
    monkeypatch.setattr(T, "_abcjs_sent", False)
    t = tunes[0]
    page = t._repr_html_()
    assert f'<pre class="folkrnn-abc">{html.escape(t.abc)}</pre>' in page
    assert "ABCJS.renderAbc" in page and json.loads(re.search(r"abc=(\".*?\"), tries=0", page).group(1)) == t.abc
    assert "window.ABCJS" in page and page.count("<script>") == 2  # the library, then the render call
    library = page.split("<script>")[1].split("</script>")[0]
    assert library.rstrip().endswith("}).call(window);")  # its own "</" cannot end the script early
    assert t._repr_html_().count("<script>") == 1  # the library goes into the page once
    mid = re.search(r'href="data:audio/midi;base64,([^"]+)"', page)
    assert mid and base64.b64decode(mid.group(1)) == t.midi()
    if T._program("fluidsynth") and T.find_abcjs():
        wav = re.search(r'<audio controls[^>]* src="data:audio/wav;base64,([^"]+)"', page)
        assert wav and base64.b64decode(wav.group(1))[:4] == b"RIFF"


def test_repr_html_without_abcjs_or_fluidsynth_shows_the_abc_and_a_midi_link(tunes, monkeypatch):
    monkeypatch.setattr(T, "find_abcjs", lambda: None)
    monkeypatch.setattr(T, "_program", lambda name: None)
    t = tunes[1]
    page = t._repr_html_()
    assert f'<pre class="folkrnn-abc">{html.escape(t.abc)}</pre>' in page
    assert "<script" not in page and "<audio" not in page
    assert 'href="data:audio/midi;base64,' in page and "no audio player" in page and "fluidsynth" in page


def test_repr_of_a_tune_escapes_its_text():
    t = T.Tune(TUNES["polka"].split(), "X:1\nT:</pre><script>alert(1)</script>\nK:C\nc d e f|\n", title="x")
    page = t._repr_html_()
    assert "<script>alert" not in page and "</pre><" not in page and "&lt;/pre&gt;&lt;script&gt;" in page
    assert json.loads(re.search(r"abc=(\".*?\"), tries=0", page).group(1)) == t.abc
    assert t._repr_markdown_() == f"```abc\n{t.abc.rstrip()}\n```\n" and str(t) == t.abc


def test_save_writes_the_format_its_suffix_names(tunes, tmp_path):
    t = tunes[0]
    assert t.save(tmp_path / "t.abc").read_text() == t.abc
    assert read_tunes(t.save(tmp_path / "t.txt")) == [t.tokens]
    assert json.loads(t.save(tmp_path / "t.json").read_text())["tokens"] == t.tokens
    assert t.save(tmp_path / "t.MID").read_bytes() == t.midi()
    assert notes_in(read_musicxml(t.save(tmp_path / "t.xml").read_bytes())) == reference(t.tokens, t.key)
    with pytest.raises(FolkRNNError, match=r"unknown suffix '\.doc'.*\.musicxml"):
        t.save(tmp_path / "t.doc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.MID", "t.abc", "t.json", "t.txt", "t.xml"]


@requires("abcm2ps", "ps2pdf")
def test_save_prints_svg_and_pdf(tunes, tmp_path):
    t = tunes[2]
    root = ET.parse(t.save(tmp_path / "t.svg")).getroot()
    assert root.tag.rsplit("}", 1)[-1] == "svg"
    assert t.save(tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")


@requires("abcm2ps")
def test_svg_of_several_tunes_is_refused(tunes):
    with pytest.raises(FolkRNNError, match="not one"):
        T.svg(tunes[0].abc + "\n" + tunes[1].abc)


# -- the example notebook ------------------------------------------------------------------
NOTEBOOK = Path(__file__).resolve().parent.parent / "docs" / "notebook.ipynb"


def test_notebook_is_committed_without_outputs():
    nbformat = pytest.importorskip("nbformat", reason="the test extra (pip install -e '.[test]')")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the test extra (pip install -e '.[test]')")
    nbclient = pytest.importorskip("nbclient", reason="the test extra (pip install -e '.[test]')")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # a cell that raises fails the test (CellExecutionError)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    shown = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert shown and 'class="folkrnn-tune"' in shown[0] and 'data:audio/midi;base64,' in shown[0]
    assert "X:2" in "".join(o.get("text", "") for o in outputs)  # print(tunes[1])
    assert read_musicxml((tmp_path / "jig.musicxml").read_bytes()).recurse().notes
    assert (tmp_path / "jig.mid").read_bytes()[:4] == b"MThd" and "K:D" in (tmp_path / "jig.abc").read_text()
