"""One tune for people: the formats musicians use, and the notebook's `Tune`.

- `FORMATS`, `format_of(path)`: the output formats and the file suffixes that name
  them (what `folkrnn generate -o FILE` goes by); `ONE_TUNE`: formats whose file
  holds a single tune.
- `musicxml(tokens, key)`: MusicXML for MuseScore, Finale, Dorico or Sibelius, built
  with music21 from folkrnn's own reading of the tokens (`folkrnn.rhythm`, the one MIDI
  and `evaluate` use: key signature, accidentals held to the bar line, lengths,
  broken rhythms, tuplets, chords), not through music21's ABC parser, which reads
  some ABC differently (tests/test_abc_music21.py lists where). One measure per bar
  as written (a pickup or a wrong bar stays as long as it is), repeat barlines and
  first/second endings, the meter, the key signature, in `key` as the ABC writer
  moves the tune; `tempo` and `program` become a metronome mark and an instrument.
- `svg(abc)`, `pdf(abc)`: printed scores by the abcm2ps program (`abcm2ps -g`: one
  SVG per tune; PDF: abcm2ps's PostScript through Ghostscript's `ps2pdf`).
  `check_tools(format)` says, in one line, what is missing before any work is done.
- `midi(tokens, ...)`, `wav(tokens, ...)`: `folkrnn.midi`'s MIDI, rendered by fluidsynth.
- `Tune`: one tune (tokens, annotated ABC, its number and title) that shows itself in
  Jupyter: `_repr_html_` draws the staff with abcjs (from the studio's copy or npm's
  node_modules, sent into the page once per kernel; a `<pre>` of the ABC where there
  is none) and adds a player (`<audio>` with an embedded WAV where fluidsynth is
  installed, else a `data:` link to the MIDI file); `str(tune)` and
  `_repr_markdown_` give the ABC. `tune.save("t.musicxml")` writes any format by suffix.
- `generate_tunes(n, ...)`: sample tunes with a model, as `folkrnn generate` does
  (same seed and options, same tunes), as a list of `Tune`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from folkrnn.errors import FolkRNNError

log = logging.getLogger(__name__)

# name -> file suffixes that name it (the first is the one written)
FORMATS: dict[str, tuple[str, ...]] = {
    "abc": (".abc",),
    "tokens": (".txt",),
    "json": (".json", ".jsonl"),
    "midi": (".mid", ".midi"),
    "wav": (".wav",),
    "musicxml": (".musicxml", ".xml"),
    "svg": (".svg",),
    "pdf": (".pdf",),
}
SUFFIXES: dict[str, str] = {s: name for name, suffixes in FORMATS.items() for s in suffixes}
ONE_TUNE = frozenset({"midi", "wav", "musicxml", "svg"})  # a file holds one tune
NOT_TEXT = ONE_TUNE | {"pdf"}  # not written to stdout

TIMEOUT_S = 300  # one abcm2ps / ps2pdf run
ABCJS_FILE = "abcjs-basic-min.js"


def format_of(path: str | Path) -> str | None:
    """The format a file name's suffix names (None for another suffix or none).

    >>> format_of("jig.MID"), format_of("tunes.txt"), format_of("a.xml"), format_of("notes.doc")
    ('midi', 'tokens', 'musicxml', None)
    """
    return SUFFIXES.get(Path(path).suffix.lower())


def suffix_list() -> str:
    return " ".join(s for suffixes in FORMATS.values() for s in suffixes)


# -- programs ------------------------------------------------------------------------------
def _program(name: str) -> str | None:
    return shutil.which(name)


def check_tools(fmt: str, soundfont: str | Path | None = None) -> None:
    """FolkRNNError (one line naming what to install) when `fmt` cannot be written here."""
    if fmt == "wav":
        from folkrnn.midi import find_soundfont

        if _program("fluidsynth") is None:
            raise FolkRNNError("WAV output needs the fluidsynth program, which is not installed "
                               "(apt-get install fluidsynth fluid-soundfont-gm)")
        if find_soundfont(soundfont) is None:
            raise FolkRNNError("WAV output needs a General MIDI soundfont, and none is installed "
                               "(apt-get install fluid-soundfont-gm, or --soundfont FILE)")
    elif fmt == "svg":
        if _program("abcm2ps") is None:
            raise FolkRNNError("SVG output needs the abcm2ps program, which is not installed (apt-get install abcm2ps)")
    elif fmt == "pdf":
        gone = [p for p in ("abcm2ps", "ps2pdf") if _program(p) is None]
        if gone == ["ps2pdf"]:
            raise FolkRNNError("PDF output needs ps2pdf (Ghostscript) to turn abcm2ps's PostScript into PDF, "
                               "and it is not installed (apt-get install ghostscript)")
        if gone:
            raise FolkRNNError(f"PDF output needs {' and '.join(gone)}, not installed "
                               f"(apt-get install abcm2ps{' ghostscript' if 'ps2pdf' in gone else ''})")


def _run(cmd: list[str], data: bytes, what: str) -> bytes:
    """Run a program on `data` (stdin) and return its stdout; FolkRNNError if it fails."""
    log.debug("running %s", " ".join(cmd))
    try:
        res = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise FolkRNNError(f"{cmd[0]} took more than {TIMEOUT_S} s on {what}") from None
    except OSError as e:
        raise FolkRNNError(f"cannot run {cmd[0]}: {e.strerror or e}") from None
    if res.returncode != 0 or not res.stdout:
        msg = " ".join(res.stderr.decode("utf-8", "replace").split())[:200]
        raise FolkRNNError(f"{cmd[0]} failed on {what}: {msg or f'exit status {res.returncode}, no output'}")
    return res.stdout


def svg(abc: str) -> str:
    """The printed score of one ABC tune, as an SVG document (`abcm2ps -g`)."""
    check_tools("svg")
    out = _run([_program("abcm2ps"), "-q", "-g", "-O", "-", "-"], abc.encode("utf-8"), "the ABC").decode("utf-8")
    if out.count("<svg") != 1:
        raise FolkRNNError(f"abcm2ps made {out.count('<svg')} SVG pages of the ABC, not one: give one tune")
    return out


def pdf(abc: str) -> bytes:
    """The printed score of ABC tunes (one or several) as PDF: abcm2ps, then ps2pdf."""
    check_tools("pdf")
    ps = _run([_program("abcm2ps"), "-q", "-O", "-", "-"], abc.encode("utf-8"), "the ABC")
    out = _run([_program("ps2pdf"), "-", "-"], ps, "abcm2ps's PostScript")
    if not out.startswith(b"%PDF"):
        raise FolkRNNError("ps2pdf wrote something that is not a PDF")
    return out


def midi(tokens: Sequence[str], key: str = "C", tempo: float | None = None, program: int | None = None,
         title: str | None = None) -> bytes:
    """A type-0 MIDI file of the tune (repeats played out), in `key` (see folkrnn.midi)."""
    from folkrnn.midi import DEFAULT_PROGRAM, DEFAULT_TEMPO, key_shift, tune_to_midi

    mid = tune_to_midi(tokens, tempo=DEFAULT_TEMPO if tempo is None else tempo,
                       program=DEFAULT_PROGRAM if program is None else program, transpose=key_shift(key), title=title)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def wav(tokens: Sequence[str], key: str = "C", tempo: float | None = None, program: int | None = None,
        soundfont: str | Path | None = None, sample_rate: int = 44100, mono: bool = False) -> bytes:
    """The tune rendered by fluidsynth (in a private temporary folder, removed after)."""
    from folkrnn.midi import render_wav

    check_tools("wav", soundfont)
    data = midi(tokens, key, tempo, program)
    with tempfile.TemporaryDirectory(prefix="folkrnn-") as d:
        mp, wp = Path(d) / "tune.mid", Path(d) / "tune.wav"
        mp.write_bytes(data)
        render_wav(mp, wp, soundfont, sample_rate=sample_rate)
        out = wp.read_bytes()
    return _to_mono(out) if mono else out


def _to_mono(data: bytes) -> bytes:
    """A 16-bit stereo WAV as mono (half the size); anything else as it is."""
    import wave

    import numpy as np

    with wave.open(io.BytesIO(data)) as w:
        if w.getnchannels() != 2 or w.getsampwidth() != 2:
            return data
        rate = w.getframerate()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.mean(axis=1).round().astype("<i2").tobytes())
    return buf.getvalue()


# -- MusicXML --------------------------------------------------------------------------------
_MODES = {"K:Cmaj": "major", "K:Cmin": "minor", "K:Cdor": "dorian", "K:Cmix": "mixolydian"}


def _transposition(key: str):
    """The music21 interval from C to the tonic `key`, the way the ABC writer moves notes."""
    from music21 import interval, pitch

    from folkrnn.abc.keys import parse_key
    from folkrnn.midi import key_shift

    tonic = parse_key(key)
    shift = key_shift(key)
    name = tonic.letter + {-1: "-", 0: "", 1: "#"}[tonic.alter]
    end = next(p for p in (pitch.Pitch(f"{name}{o}") for o in (4, 3, 5)) if p.midi - 60 == shift)
    return interval.Interval(pitch.Pitch("C4"), end)


def _endings(seps: list[list[str]], nbars: int) -> list[tuple[int, int, int]]:
    """(number, first bar, last bar) of each first and second ending: a first ending
    runs to its `:|`, a second one as many bars as the first (one if there is none),
    both stopping before a new repeat or ending mark."""
    out = []
    last_len = 1
    for b in range(nbars):
        for number, mark in ((1, "|1"), (2, "|2")):
            if mark not in seps[b]:
                continue
            end = b
            while True:
                after = seps[end + 1] if end + 1 < len(seps) else []
                if (number == 1 and ":|" in after) or end + 1 >= nbars:
                    break
                if number == 2 and end - b + 1 >= last_len:
                    break
                if any(t in after for t in ("|:", "|1", "|2", ":|")):
                    break
                end += 1
            if number == 1:
                last_len = end - b + 1
            out.append((number, b, end))
    return out


def musicxml_score(tokens: Sequence[str], key: str = "C", title: str | None = None, tempo: float | None = None,
                   program: int | None = None, composer: str | None = None):
    """The tune as a music21 Score, notation made (see the module docstring)."""
    from music21 import bar, chord, instrument, metadata, meter, note, pitch, spanner, stream
    from music21 import key as m21key
    from music21 import tempo as m21tempo
    from music21.stream import makeNotation

    from folkrnn.abc.writer import make_writable
    from folkrnn.midi import beat_eighths
    from folkrnn.rhythm import scan, ticks_to_eighths
    from folkrnn.tokens import iter_sounding, kind, parse_pitch

    kept, _ = make_writable(tokens)  # the tokens the ABC says
    s = scan(kept)
    if s.key not in _MODES or not s.meter:
        raise FolkRNNError("cannot write MusicXML: the tune does not open with a v2 meter and key")
    sounding = dict(iter_sounding(s.tokens))
    notes: list[list] = [[] for _ in s.ev_dur]
    for i, tok in enumerate(s.tokens):
        e = s.tok_ev[i]
        if i in sounding and 0 <= e < len(notes) and kind(tok) == "pitch":
            p = parse_pitch(tok)
            if all(q.midi != sounding[i] for q in notes[e]):  # a chord's note written twice sounds once
                # no natural sign object where nothing is altered: music21 would print it
                alter = sounding[i] - p.midi("")
                notes[e].append(pitch.Pitch(step=p.letter, octave=p.octave, accidental=alter or None))
    spans = [(b.first_event, b.end_event) for b in s.bars] or [(0, len(s.ev_dur))]
    part = stream.Part()
    if program is not None:
        part.insert(0, instrument.instrumentFromMidiProgram(program))
    measures = []
    # a short first bar before others is a pickup: measure 0, not counted (implicit="yes")
    pickup = len(s.bars) > 1 and s.bars[0].length < s.bars[0].expected
    for b, (lo, hi) in enumerate(spans):
        m = stream.Measure(number=b + (0 if pickup else 1))
        if pickup and b == 0:
            m.showNumber = stream.enums.ShowNumber.NEVER
        if b == 0:
            m.append(meter.TimeSignature(s.meter[2:]))
            m.append(m21key.Key("C", _MODES[s.key]))
            if tempo is not None:
                beat = Fraction(beat_eighths(s.meter), 2)
                m.append(m21tempo.MetronomeMark(number=tempo, referent=float(beat)))
        for e in range(lo, hi):
            ql = ticks_to_eighths(s.ev_dur[e]) / 2
            ps = notes[e]
            if not ps:
                n = note.Rest(quarterLength=ql)
            elif len(ps) == 1:
                n = note.Note(ps[0], quarterLength=ql)
            else:
                n = chord.Chord(sorted(ps, key=lambda q: q.midi), quarterLength=ql)
            m.append(n)
        if "|:" in s.seps[b]:
            m.leftBarline = bar.Repeat(direction="start")
        if b + 1 < len(s.seps) and ":|" in s.seps[b + 1]:
            m.rightBarline = bar.Repeat(direction="end")
        measures.append(m)
        part.append(m)
    if measures and measures[-1].rightBarline is None:
        measures[-1].rightBarline = bar.Barline("final")
    if s.bars:
        for number, first, last in _endings(s.seps, len(s.bars)):
            part.insert(0, spanner.RepeatBracket(measures[first:last + 1], number=number))
    shift = _transposition(key)
    if shift.semitones:
        part.transpose(shift, inPlace=True)
    # music21's makeNotation without makeTies, which would move a wrong bar's overflow
    # into the next bar: each bar keeps the notes the tune puts in it.
    part.splitAtDurations(recurse=True)
    # as ABC does: an accidental holds to the bar line, so it is not printed again in the bar
    makeNotation.makeAccidentalsInMeasureStream(part, useKeySignature=True, cautionaryNotImmediateRepeat=False)
    for m in part.getElementsByClass(stream.Measure):
        makeNotation.splitElementsToCompleteTuplets(m, recurse=True, addTies=True)
        makeNotation.consolidateCompletedTuplets(m, recurse=True, onlyIfTied=True)
    try:
        makeNotation.makeBeams(part, inPlace=True)
    except Exception as e:  # a bar of the wrong length can defeat beaming; the notes stand
        log.debug("no beams: %s", e)
    for m in part.getElementsByClass(stream.Measure):
        makeNotation.makeTupletBrackets(m, inPlace=True)
    score = stream.Score()
    score.metadata = metadata.Metadata(title=title or "", composer=composer or "")
    score.insert(0, part)
    return score


def musicxml(tokens: Sequence[str], key: str = "C", title: str | None = None, tempo: float | None = None,
             program: int | None = None, composer: str | None = None) -> bytes:
    """The tune as a MusicXML document (UTF-8 bytes); FolkRNNError if it is not a transcription."""
    import warnings

    from music21.musicxml.m21ToXml import GeneralObjectExporter

    score = musicxml_score(tokens, key, title, tempo, program, composer)
    exporter = GeneralObjectExporter(score)
    exporter.makeNotation = False  # made above
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # music21's notes on bars of the wrong length
        try:
            return exporter.parse()
        except Exception as e:  # music21 refuses a duration it cannot notate
            raise FolkRNNError(f"cannot write MusicXML: music21: {' '.join(str(e).split())[:200]}") from None


# -- the notebook's tune ---------------------------------------------------------------------
_abcjs_sent = False  # the library goes into the page with the first tune shown


def find_abcjs() -> Path | None:
    """npm's abcjs for the staff (the studio's page and Jupyter): the copy a built wheel
    carries (folkrnn/web/static/vendor, put there by setup.py from node_modules), else
    npm's node_modules of a source checkout (looked for upwards from here, then from
    the working directory)."""
    here = Path(__file__).resolve().parent
    static = here / "web" / "static" / "vendor" / ABCJS_FILE
    if static.is_file():
        return static
    for base in (*here.parents, Path.cwd(), *Path.cwd().parents):
        p = base / "node_modules" / "abcjs" / "dist" / ABCJS_FILE
        if p.is_file():
            return p
    return None


def _abcjs_library() -> str:
    """A <script> defining window.ABCJS the first time (hidden from a page's AMD loader,
    as in the classic notebook); '' afterwards or when there is no abcjs."""
    global _abcjs_sent
    if _abcjs_sent:
        return ""
    path = find_abcjs()
    if path is None:
        return ""
    code = path.read_text("utf-8").replace("</", "<\\/")
    _abcjs_sent = True
    return f"<script>(function(){{var define, exports, module;\n{code}\n}}).call(window);</script>"


_RENDER = """<script>(function(){var el=document.getElementById(%s), abc=%s, tries=0;
(function draw(){if(!el)return; if(window.ABCJS){var d=el.querySelector('.folkrnn-staff');
window.ABCJS.renderAbc(d, abc, {responsive:'resize'}); el.querySelector('.folkrnn-abc').style.display='none';}
else if(tries++<200){setTimeout(draw, 50);}})();})();</script>"""


@dataclass
class Tune:
    """One tune: v2 tokens (in C, as the model writes them), its ABC (in `key`, with the
    `%` comments `folkrnn generate` writes), X: number and title. `tempo` and `program`
    (None: folkrnn.midi's defaults) are for MIDI, WAV and MusicXML."""

    tokens: list[str]
    abc: str
    x: int = 1
    title: str = ""
    key: str = "C"
    tempo: float | None = None
    program: int | None = None
    logprob: float | None = None
    truncated: bool = False

    def __str__(self) -> str:
        return self.abc

    def _repr_markdown_(self) -> str:
        return f"```abc\n{self.abc.rstrip()}\n```\n"

    def midi(self) -> bytes:
        return midi(self.tokens, self.key, self.tempo, self.program, title=self.title or None)

    def wav(self, soundfont: str | Path | None = None, sample_rate: int = 44100, mono: bool = False) -> bytes:
        return wav(self.tokens, self.key, self.tempo, self.program, soundfont, sample_rate, mono)

    def musicxml(self) -> bytes:
        return musicxml(self.tokens, self.key, self.title or None, self.tempo, self.program, composer="folk-rnn")

    def svg(self) -> str:
        return svg(self.abc)

    def pdf(self) -> bytes:
        return pdf(self.abc)

    def data_v2(self) -> str:
        from folkrnn.datafile import format_tune

        if len(self.tokens) < 2 or not self.tokens[0].startswith("M:") or not self.tokens[1].startswith("K:"):
            raise FolkRNNError("the tune does not start with a meter and a key token: no data_v2 line")
        return format_tune(self.tokens)

    def to_json(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the tune in the format its suffix names (`.abc .txt .json .mid .wav
        .musicxml .svg .pdf`, see FORMATS), atomically."""
        from folkrnn.files import atomic_write

        path = Path(path)
        fmt = format_of(path)
        if fmt is None:
            raise FolkRNNError(f"{path}: unknown suffix {path.suffix or '(none)'!r}: give one of {suffix_list()}")
        data = {
            "abc": lambda: self.abc, "tokens": self.data_v2, "json": lambda: json.dumps(self.to_json()) + "\n",
            "midi": self.midi, "wav": self.wav, "musicxml": self.musicxml, "svg": self.svg, "pdf": self.pdf,
        }[fmt]()
        raw = data.encode("utf-8") if isinstance(data, str) else data
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(raw))
        return path

    def _player_html(self) -> str:
        name = html.escape(f"folk-rnn-tune-{self.x}")
        mid = base64.b64encode(self.midi()).decode("ascii")
        link = f'<a download="{name}.mid" href="data:audio/midi;base64,{mid}">MIDI file</a>'
        try:
            check_tools("wav")
        except FolkRNNError as e:
            log.info("no audio player: %s", e)
            return f'<div class="folkrnn-player">{link} <small>(no audio player: {html.escape(str(e))})</small></div>'
        try:
            audio = base64.b64encode(self.wav(sample_rate=22050, mono=True)).decode("ascii")
        except FolkRNNError as e:
            log.warning("no audio player: %s", e)
            return f'<div class="folkrnn-player">{link}</div>'
        return (f'<div class="folkrnn-player"><audio controls preload="none" src="data:audio/wav;base64,{audio}">'
                f"</audio> {link}</div>")

    def _repr_html_(self) -> str:
        uid = f"folkrnn-{uuid.uuid4().hex[:12]}"
        parts = [f'<div class="folkrnn-tune" id="{uid}"><div class="folkrnn-staff"></div>',
                 f'<pre class="folkrnn-abc">{html.escape(self.abc)}</pre>']
        if find_abcjs() is not None:
            parts.append(_abcjs_library())
            # no "<" in the script at all: a title such as "<!--" or "</script>" cannot end it or
            # change how the page reads it
            parts.append(_RENDER % (json.dumps(uid), json.dumps(self.abc).replace("<", "\\u003c")))
        try:
            parts.append(self._player_html())
        except FolkRNNError as e:  # not even MIDI: a sequence that is no transcription
            parts.append(f"<small>no MIDI: {html.escape(str(e))}</small>")
        parts.append("</div>")
        return "\n".join(parts)


def generate_tunes(n: int = 1, *, model="default", seed: int | None = None, temperature: float = 1.0,
                   top_k: int | None = None, top_p: float | None = None, prime: str | Sequence[str] | None = None,
                   meter: str | None = None, mode: str | None = None, key: str = "C", max_length: int | None = None,
                   bars: str = "free", tempo: float | None = None, program: int | None = None,
                   first_x: int = 1) -> list[Tune]:
    """Sample `n` tunes, as `folkrnn generate` does with the same options (the same seed
    gives the same tunes). `model`: `default`, a checkpoint or `.pkl` file name, or a
    checkpoint already loaded with `folkrnn.load.load_model` (loads once for many calls);
    `prime`: tokens (a string or a list), `*` for a position the model fills; `meter`
    ("6/8") and `mode` ("dorian") are the CLI's shortcuts; `key` the tonic written."""
    import secrets

    from folkrnn.abc.keys import parse_key
    from folkrnn.sample.output import Settings, abc_or_error, tune_abc, with_meter_and_key
    from folkrnn.load import load_model
    from folkrnn.sample import MAX_LENGTH, SampleConfig, compile_prime, make_prime, sample

    parse_key(key)
    if tempo is not None and not tempo > 0:
        raise FolkRNNError(f"tempo must be > 0, got {tempo}")
    if program is not None and not 0 <= program <= 127:
        raise FolkRNNError(f"program must be 0-127, got {program}")
    if isinstance(model, (str, Path)):
        ckpt, name = load_model(model), "default" if str(model) == "default" else Path(model).name
    else:
        ckpt, name = model, Path(str(model.metadata.get("file", "(loaded model)"))).name
    prime_tokens = prime.split() if isinstance(prime, str) else list(prime or ())
    cfg_prime = with_meter_and_key(make_prime(prime_tokens, meter, mode), ckpt.vocab)
    seed = secrets.randbelow(2**32) if seed is None else seed
    cfg = SampleConfig(num_tunes=n, temperature=temperature, seed=seed, top_k=top_k, top_p=top_p, prime=cfg_prime,
                       max_length=max_length or MAX_LENGTH, bars=bars)
    compile_prime(ckpt.vocab, cfg.prime)
    settings = Settings(model=name, seed=seed, temperature=temperature, top_k=top_k, top_p=top_p,
                        prime=" ".join(cfg.prime), max_length=cfg.max_length, key=key, bars=cfg.bars,
                        tempo=tempo, program=program, first_x=first_x)
    out = []
    for t in sample(ckpt.model, ckpt.vocab, cfg, progress=False):
        x = first_x + t.index
        abc, _ = abc_or_error(t, settings)
        out.append(Tune(list(t.tokens), abc if abc is not None else tune_abc(t, settings), x,
                        settings.title.format(x=x), key, tempo, program, t.logprob, t.truncated))
    log.info("sampled %d tune(s) with model %s, seed %d", len(out), name, seed)
    return out
