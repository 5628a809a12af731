"""v2 tokens -> MIDI file (repeats expanded) and, with fluidsynth, audio.

The tokens are read by `folkrnn.rhythm` (docs/tokens.md; the reading `folkrnn evaluate`
uses): a length token sets the note before it, a broken rhythm (`>`, `2>`, `/2<`...)
makes the note before it dotted (or halved) and the next one halved (or dotted), `(p`
puts the next p notes in the time of q (ABC 2.1 defaults), a chord `[ ... ]` sounds
its notes together for the first note's length times the length written after `]`
(a bar line closes a chord left open), pitches sound under the key signature with
accidentals held to the bar line.

Repeats are played as written: `|: ... :|` twice, `|1` endings on the first pass
only, `|2` on the second (`expand_repeats`). The tempo counts the meter's beat: a
quarter note in 2/4 3/4 4/4, a dotted quarter in 6/8 9/8 12/8, a half note in 3/2.

>>> [t for t in expand_repeats("|: A B |1 C :| |2 D | E :|".split()) if t != "|"]
['A', 'B', 'C', 'A', 'B', 'D', 'E', 'D', 'E']
>>> [(str(n.start), str(n.length), n.pitches) for n in note_events("M:6/8 K:Cmaj A > B (3 c d e [ C E ] 2".split())]
[('0', '3/2', (69,)), ('3/2', '1/2', (71,)), ('2', '2/3', (72,)), ('8/3', '2/3', (74,)), ('10/3', '2/3', (76,)), ('4', '2', (60, 64))]
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from folkrnn.errors import FolkRNNError
from folkrnn.rhythm import events
from folkrnn.tokens import kind
from folkrnn.vocab import BOS, EOS

log = logging.getLogger(__name__)

TICKS_PER_QUARTER = 480
TICKS_PER_EIGHTH = TICKS_PER_QUARTER // 2
DEFAULT_TEMPO = 100  # beats per minute (the meter's beat)
DEFAULT_PROGRAM = 40  # General MIDI violin (0-based)
SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "/usr/share/sounds/sf2/default-GM.sf2",
              "/usr/share/soundfonts/FluidR3_GM.sf2", "/usr/share/soundfonts/default.sf2")
MAX_EXPANDED = 20_000  # tokens after repeat expansion: far beyond any tune, bounds a bad one


def _body(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    toks = [t for t in tokens if t not in (BOS, EOS)]
    head = []
    while toks and kind(toks[0]) in ("meter", "key"):
        head.append(toks.pop(0))
    return head, toks


def expand_repeats(body: Sequence[str]) -> list[str]:
    """Body tokens with repeats and endings played out; every bar token becomes `|`.

    A `:|` sends the player back to the last `|:` (or the start, or the last repeat
    end) once; on that second pass a `|1` ending is skipped to the `|2` after the
    `:|`. Malformed structures (a `|1` with no `:|`...) are played as plain bars."""
    toks = list(body)
    out: list[str] = []
    i = 0
    start = 0
    taken: set[int] = set()
    replay_end = -1  # index of the :| that sent us back, while replaying
    while i < len(toks):
        if len(out) > MAX_EXPANDED:
            raise FolkRNNError(f"the tune's repeats expand to more than {MAX_EXPANDED} tokens")
        t = toks[i]
        if kind(t) != "bar":
            out.append(t)
            i += 1
            continue
        out.append("|")
        if t == "|:":
            if replay_end < 0:
                start = i + 1
        elif t == ":|":
            if i not in taken and replay_end < 0:
                taken.add(i)
                replay_end = i
                i = start
                continue
            replay_end = -1
            start = i + 1
        elif t == "|1" and replay_end >= 0:
            j = next((k for k in range(replay_end + 1, len(toks)) if toks[k] == "|2"), None)
            after = replay_end + 1
            replay_end = -1
            start = after
            if j is not None:
                out.append("|")
                i = j + 1
            else:
                i = after
            continue
        i += 1
    return out


@dataclass(frozen=True)
class Note:
    """A sounding event: onset and length in eighth notes; pitches () = rest;
    `accent` marks the first event after a bar line."""

    start: Fraction
    length: Fraction
    pitches: tuple[int, ...]
    accent: bool = False


def note_events(tokens: Sequence[str], expand: bool = True) -> list[Note]:
    """The notes of a tune (tokens with or without `<s>`/`</s>`), in playing order.

    Lengths, pitches and bars are `folkrnn.rhythm`'s reading (the one `evaluate` uses)."""
    head, body = _body(tokens)
    if expand:
        body = expand_repeats(body)
    return [Note(e.start, e.length, e.pitches, e.first_in_bar) for e in events(head + body)]


def beat_eighths(meter: str | None) -> int:
    """The meter's beat in eighth notes (see the module docstring)."""
    if meter in ("M:6/8", "M:9/8", "M:12/8"):
        return 3
    if meter == "M:3/2":
        return 4
    return 2


def key_shift(key: str) -> int:
    """Semitones from C to the tonic `key`, the way the ABC writer moves notes (nearer octave)."""
    from folkrnn.abc.keys import Tonic, moves, parse_key

    tonic = parse_key(key)
    best = min(moves(Tonic("C", 0), tonic), key=lambda m: (abs(m.semitones), -m.semitones))
    return best.semitones


def tune_to_midi(tokens: Sequence[str], tempo: float = DEFAULT_TEMPO, program: int = DEFAULT_PROGRAM,
                 transpose: int = 0, title: str | None = None):
    """A type-0 `mido.MidiFile` playing the tune (repeats expanded)."""
    import mido

    if not 0 < tempo <= 1000:
        raise FolkRNNError(f"tempo must be in (0, 1000] beats per minute, got {tempo}")
    if not 0 <= program <= 127:
        raise FolkRNNError(f"MIDI program must be in 0..127, got {program}")
    head, _ = _body(tokens)
    meter = next((t for t in head if kind(t) == "meter"), None)
    notes = note_events(tokens)
    mid = mido.MidiFile(type=0, ticks_per_beat=TICKS_PER_QUARTER)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    if title:
        track.append(mido.MetaMessage("track_name", name=title[:120], time=0))
    if meter:
        num, den = meter[2:].split("/")
        track.append(mido.MetaMessage("time_signature", numerator=int(num), denominator=int(den), time=0))
    quarters_per_minute = tempo * beat_eighths(meter) / 2
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(quarters_per_minute), time=0))
    track.append(mido.Message("program_change", program=program, channel=0, time=0))
    events: list[tuple[int, int, int, int]] = []  # (tick, 0 off / 1 on, note, velocity)
    for n in notes:
        on = round(n.start * TICKS_PER_EIGHTH)
        off = round((n.start + n.length) * TICKS_PER_EIGHTH)
        # A short gap keeps repeated notes distinct.
        off = max(on + 1, off - min(24, (off - on) // 8))
        for p in n.pitches:
            p = p + transpose
            if 0 <= p <= 127:
                events.append((on, 1, p, 96 if n.accent else 80))
                events.append((off, 0, p, 0))
    events.sort()
    now = 0
    for tick, is_on, p, vel in events:
        kind_ = "note_on" if is_on else "note_off"
        track.append(mido.Message(kind_, note=p, velocity=vel, channel=0, time=tick - now))
        now = tick
    end = round((notes[-1].start + notes[-1].length) * TICKS_PER_EIGHTH) if notes else 0
    track.append(mido.MetaMessage("end_of_track", time=end + TICKS_PER_EIGHTH - now))  # an eighth of silence
    return mid


def write_midi(path: str | Path, tokens: Sequence[str], **kw) -> Path:
    """Write `tune_to_midi(tokens, **kw)` to `path` (atomically: never half a file)."""
    from folkrnn.files import atomic_write

    path = Path(path)
    mid = tune_to_midi(tokens, **kw)
    atomic_write(path, lambda tmp: mid.save(tmp))
    return path


def find_soundfont(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise FolkRNNError(f"{p}: no such soundfont")
        return p
    return next((Path(p) for p in SOUNDFONTS if Path(p).is_file()), None)


def render_wav(midi_path: str | Path, wav_path: str | Path, soundfont: str | Path | None = None,
               sample_rate: int = 44100) -> Path:
    """Render a MIDI file to WAV with the `fluidsynth` program and a General MIDI soundfont."""
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise FolkRNNError("--wav needs the fluidsynth program (e.g. apt-get install fluidsynth fluid-soundfont-gm)")
    sf = find_soundfont(soundfont)
    if sf is None:
        raise FolkRNNError("--wav needs a General MIDI soundfont (e.g. apt-get install fluid-soundfont-gm, or --soundfont FILE)")
    wav_path = Path(wav_path)
    log.debug("rendering %s with %s", midi_path, sf)
    cmd = [exe, "-ni", "-q", "-g", "0.8", "-r", str(sample_rate), "-F", str(wav_path), str(sf), str(midi_path)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise FolkRNNError(f"fluidsynth took too long rendering {midi_path}") from None
    if res.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
        msg = " ".join((res.stderr or res.stdout or "").split())[:200]
        raise FolkRNNError(f"fluidsynth failed on {midi_path}: {msg or 'no output'}")
    return wav_path
