"""`folkrnn generate`: options, checks, and streaming the tunes out.

Sampling is folkrnn.sample's; how a tune is written (annotated ABC, JSON) is
folkrnn.sample.output's; MIDI and audio are folkrnn.midi's.

Output to a file survives Ctrl-C (see folkrnn.files.StreamedFile): every finished tune
is kept, never half a tune, and an existing file is never replaced by a shorter,
interrupted run (that run's tunes go to FILE.partial instead).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
from pathlib import Path

from folkrnn.cli.common import MODEL_HELP, load, model_name, streamed_output, threads
from folkrnn.errors import FolkRNNError

TUNE_FILE = re.compile(r"tune_\d{5,}\.(mid|wav|musicxml|svg)")
STALE = {"midi": ("mid", "wav"), "wav": ("wav",), "musicxml": ("musicxml",), "svg": ("svg",)}  # what a folder run clears


def register(sub) -> None:
    from folkrnn.midi import DEFAULT_PROGRAM, DEFAULT_TEMPO
    from folkrnn.sample import MAX_LENGTH
    from folkrnn.tune import FORMATS

    p = sub.add_parser("generate", help="generate transcriptions (ABC, tokens, JSON, MIDI, WAV, MusicXML, SVG or PDF)",
                       description="Sample new transcriptions from a model, streaming them out as they are done. "
                       "Same seed and options give the same tunes; tune i does not depend on -n or --batch-size. "
                       "Every tune opens with a meter and a key: a prime without them gets `M:* K:*` in front. "
                       "Ctrl-C keeps the tunes finished so far (a file that existed is left alone; they go to FILE.partial).")
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("-n", "--num-tunes", type=int, default=1, help="how many tunes (default 1)")
    p.add_argument("-t", "--temperature", type=float, default=1.0, help="softmax temperature, > 0 (default 1)")
    p.add_argument("-s", "--seed", type=int, default=None, help="random seed (default: a fresh one, written in the output)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the K most probable tokens only")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: the most probable tokens holding mass P")
    p.add_argument("--prime", default=None, metavar="TOKENS",
                   help="tokens to start from, e.g. 'M:6/8 K:Cdor |: G'; '*' = a position the model fills, "
                   "'M:*' / 'K:*' = any meter / mode (added in front when the prime has no meter or key)")
    p.add_argument("--prime-abc", default=None, metavar="FILE[:X]",
                   help="ABC to start from, converted to tokens (transposed to C): a file, FILE:X for its tune with "
                   "X:X (a file of several tunes needs it: the error lists their X: numbers), or ABC text with a K: field")
    p.add_argument("--meter", default=None, help="shortcut for the meter token: 2/4 3/4 4/4 6/8 9/8 12/8 3/2")
    p.add_argument("--mode", default=None, help="shortcut for the key token: major, minor, dorian, mixolydian")
    p.add_argument("-k", "--key", default=None,
                   help="write the ABC, JSON and MIDI in this tonic, e.g. D, G, Bb (default C, or the --prime-abc key); "
                   "token output is always in C")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help=f"length cap in tokens (default {MAX_LENGTH})")
    p.add_argument("--beam", type=int, default=None, metavar="W",
                   help="beam search of width W >= 1 instead of sampling (deterministic: the most probable tunes)")
    p.add_argument("--bars", choices=("free", "strict"), default="free",
                   help="strict: draw only tokens that keep every bar right and the repeats well formed, "
                        "renormalising over them (default free)")
    p.add_argument("--form", default=None, metavar="PARTS",
                   help="plan the sections: AABB (A twice, then B twice), AB, AAB, AABBCC, ABAC...; every part gets "
                   "--form-bars bars, a repeated part closes with :| (or --endings); implies --bars strict. The model "
                   "chooses how each part closes: --form-candidates closings are drawn and one kept in proportion to "
                   "the model's probability of ending the section there (docs/generate.md)")
    p.add_argument("--form-bars", type=int, default=8, metavar="N", help="bars a part (default 8; 16 for long airs)")
    p.add_argument("--endings", type=int, default=0, metavar="N",
                   help="repeated parts close with first and second endings of N bars each (|1 ... :| |2 ... |; default 0: :|)")
    p.add_argument("--form-candidates", type=int, default=8, metavar="K",
                   help="closings drawn per part end (default 8; 1: the closing bar line is forced, no choice)")
    p.add_argument("--form-lookahead", type=int, default=2, metavar="BARS",
                   help="the candidate closings start this many bars before a part's end (default 2)")
    p.add_argument("--close-temperature", type=float, default=0.5, metavar="T",
                   help="temperature of a part's closing bars (the colder of it and -t; default 0.5: tunes end on the "
                   "tonic as often as the corpus's; 1 or -t's value: the tune's own)")
    p.add_argument("--type", default=None, metavar="TYPE", dest="tune_type",
                   help="a tune type: reel, jig, slip-jig, hornpipe, polka, slide, waltz, march or air; sets the meter, "
                   "the form (--form, e.g. AABB of 8 bars; --form none for no plan) and the rhythmic feel learned from "
                   "the corpus's tunes of that type (docs/generate.md)")
    p.add_argument("--feel", type=float, default=1.0, metavar="S",
                   help="with --type: strength of the type's rhythmic feel (0 = off, 1 = the corpus's; default 1)")
    p.add_argument("-f", "--format", choices=tuple(FORMATS), default=None,
                   help="output format (default: what -o's suffix names, else abc): abc, tokens (data_v2), json (lines), "
                   "midi, wav (audio, fluidsynth), musicxml (MuseScore, Finale, Dorico), svg or pdf (a printed score, abcm2ps)")
    p.add_argument("-o", "--out", default=None,
                   help="output file (default stdout); its suffix sets the format: .abc, .txt (tokens), .json/.jsonl, "
                   ".mid/.midi, .wav, .musicxml/.xml, .svg, .pdf (another suffix, or one -f disagrees with, is refused); "
                   "a .mid .wav .musicxml .svg file holds one tune: for more, give a folder (no suffix, or one that "
                   "exists) and -f midi, wav, musicxml or svg: one tune_00001.EXT... per tune")
    p.add_argument("--first-index", type=int, default=1, metavar="X",
                   help="number the tunes from X (ABC X: fields, titles, MIDI file names; default 1); "
                   "the tunes themselves depend on the seed only")
    p.add_argument("--alternatives", type=int, default=0, metavar="K",
                   help="JSON: also give the K most probable tokens and their probabilities at every step")
    p.add_argument("--tempo", type=float, default=None,
                   help=f"beats per minute (a quarter in 2/4 3/4 4/4, a dotted quarter in 6/8 9/8 12/8, a half in 3/2): "
                   f"MIDI tempo, ABC Q: field (default {DEFAULT_TEMPO:g} in MIDI, none in ABC)")
    p.add_argument("--program", type=int, default=None,
                   help=f"General MIDI program 0-127: MIDI instrument, ABC %%%%MIDI program line "
                   f"(default {DEFAULT_PROGRAM}, violin, in MIDI; none in ABC)")
    p.add_argument("--wav", action="store_true", help="MIDI: also render .wav files with fluidsynth")
    p.add_argument("--soundfont", default=None, help="soundfont for --wav (default: FluidR3_GM if installed)")
    p.add_argument("--batch-size", type=int, default=256, help="tunes generated together (default 256)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="matmul precision: fp32 (exact, default); bf16 (~2.5x faster in big batches on CPUs with AMX); "
                   "int8 (dynamic, ~2x faster, also at batch 1); both drift slightly from fp32 (docs/generate.md)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (0 = auto: 1 for up to 16 tunes at a time or on a busy machine, else PyTorch's default)")
    p.add_argument("--ablate", action="append", default=[], metavar="LAYER:UNITS",
                   help="zero these units while sampling, to hear what they do: 3:12,301 is units 12 and 301 of layer 3's "
                   "hidden state (layers 1-3, units from 0); or HOOK:UNITS with a hook name (docs/hooks.md); repeatable")
    p.add_argument("--clamp", action="append", default=[], metavar="LAYER:UNITS=VALUE",
                   help="hold these units at VALUE while sampling, e.g. 2:77=0.9; repeatable")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)


def resolve_output(args) -> str:
    """-f and -o -> the output format, set in `args.format`; `args.out_dir` is True when
    -o is a folder (one file per tune). -o's suffix names the format (folkrnn.tune.FORMATS);
    an unknown suffix, a -f that disagrees with it, or a one-tune file for several tunes
    is refused."""
    from folkrnn.tune import FORMATS, NOT_TEXT, ONE_TUNE, format_of, suffix_list

    given, out = args.format, args.out
    args.out_dir = False
    if out is None or out == "-":
        fmt = given or "abc"
        if fmt in ONE_TUNE:
            raise FolkRNNError(f"--format {fmt} needs -o DIR (one {FORMATS[fmt][0]} file per tune) "
                               f"or -o FILE{FORMATS[fmt][0]} (one tune)")
        if fmt in NOT_TEXT:
            raise FolkRNNError(f"--format {fmt} needs -o FILE{FORMATS[fmt][0]}")
    elif Path(out).is_dir() or out.endswith("/") or (not Path(out).suffix and given in ONE_TUNE):
        if given not in ONE_TUNE:
            raise FolkRNNError(f"-o {out} is a folder: a folder takes -f midi, wav, musicxml or svg (one file per tune); "
                               f"{f'--format {given}' if given else 'other formats'} need -o FILE")
        fmt = given
        args.out_dir = True
    elif Path(out).exists() and not Path(out).is_file():
        fmt = given or "abc"  # a FIFO or a device (/dev/stdout): its name says nothing of the format
    elif Path(out).suffix:
        suffix = Path(out).suffix
        fmt = format_of(out)
        if fmt is None:
            raise FolkRNNError(f"-o {out}: unknown suffix {suffix!r}; the format follows the suffix: {suffix_list()}")
        if given is not None and given != fmt:
            raise FolkRNNError(f"conflicting options: --format {given}, but -o {out} is a {fmt} file name "
                               f"(drop -f, or give -o a {FORMATS[given][0]} name)")
    else:
        fmt = given or "abc"  # a file name without a suffix: -f says what goes in it
    if fmt in ONE_TUNE and not args.out_dir and args.num_tunes > 1:
        raise FolkRNNError(f"-o {out} holds one tune: for -n {args.num_tunes} give a folder, "
                           f"-f {fmt} -o DIR (one {FORMATS[fmt][0]} file per tune)")
    args.format = fmt
    return fmt


def check_options(args) -> None:
    """Refuse combinations that would be ignored or mislead, before any work is done."""
    fmt = resolve_output(args)
    if args.prime is not None and args.prime_abc is not None:
        raise FolkRNNError("conflicting options: give --prime or --prime-abc, not both")
    if args.alternatives and fmt != "json":
        raise FolkRNNError("conflicting options: --alternatives needs --format json")
    if args.wav and fmt != "midi":
        raise FolkRNNError("conflicting options: --wav needs --format midi")
    if args.soundfont is not None and not (args.wav or fmt == "wav"):
        raise FolkRNNError("conflicting options: --soundfont is only used with --wav or --format wav")
    if args.program is not None and fmt in ("svg", "pdf"):
        raise FolkRNNError(f"conflicting options: a printed score ({fmt}) has no instrument; --program applies to "
                           "--format abc, json, midi, wav and musicxml")
    if args.beam is not None and args.beam < 1:
        raise FolkRNNError(f"--beam must be >= 1 (the beam width), got {args.beam}; leave it out to sample")
    if args.beam is not None and args.seed is not None:
        raise FolkRNNError("conflicting options: beam search is deterministic, it takes no --seed")
    if fmt == "tokens":
        if args.key is not None and not _is_c(args.key):
            raise FolkRNNError("conflicting options: token output is always in C (the v2 convention); "
                               "--key applies to the other formats")
        given = [o for o, v in (("--tempo", args.tempo), ("--program", args.program)) if v is not None]
        if given:
            raise FolkRNNError(f"conflicting options: token output has no tempo or instrument; {' and '.join(given)} "
                               "apply to the other formats")
    if args.program is not None and not 0 <= args.program <= 127:
        raise FolkRNNError(f"--program must be 0-127, got {args.program}")
    if args.tempo is not None and not args.tempo > 0:
        raise FolkRNNError(f"--tempo must be > 0, got {args.tempo}")
    if args.first_index < 0:
        raise FolkRNNError(f"--first-index must be >= 0, got {args.first_index}")


def _is_c(key: str) -> bool:
    from folkrnn.abc.keys import parse_key

    tonic = parse_key(key)
    return tonic.letter == "C" and tonic.semitone == 0


class _Ranks:
    """`torchrun --nproc_per_node=N -m folkrnn generate ...`: each rank samples one block of
    the tune indices (tune i is a function of the seed and i alone, so the tunes are those
    of a one-process run), rank 0 gathers them (gloo) and writes the one output in order."""

    def __init__(self) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="gloo")
        self.dist = dist
        self.rank, self.world = dist.get_rank(), dist.get_world_size()

    def same_seed(self, seed: int) -> int:
        """Rank 0's seed for every rank (each drew its own when --seed was left out)."""
        box = [seed]
        self.dist.broadcast_object_list(box, src=0)
        return int(box[0])

    def sample(self, ckpt, cfg, progress: bool, hooks):
        """Rank 0: every tune, in order; other ranks: None (after sending theirs)."""
        from dataclasses import replace

        from folkrnn.sample import sample

        n = cfg.num_tunes
        lo, hi = self.rank * n // self.world, (self.rank + 1) * n // self.world
        mine = []
        if hi > lo:
            part = replace(cfg, first=cfg.first + lo, num_tunes=hi - lo)
            mine = list(sample(ckpt.model, ckpt.vocab, part, progress=progress and self.rank == 0, hooks=hooks))
        gathered = [None] * self.world if self.rank == 0 else None
        self.dist.gather_object(mine, gathered, dst=0)
        self.dist.destroy_process_group()
        if self.rank != 0:
            return None
        return iter([t for block in gathered for t in block])


def _ranks(beam: int) -> _Ranks | None:
    """The ranks of a torchrun launch (WORLD_SIZE > 1), else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if beam:
        raise FolkRNNError("conflicting options: beam search is one search; run it in one process, not under torchrun")
    return _Ranks()


def _intervention_hooks(model, ablate: list[str], clamp: list[str]) -> list:
    """--ablate / --clamp specs -> hooks for sampling (checked against the model first)."""
    from folkrnn.interp import interventions as iv

    hooks = []
    for spec in ablate:
        point, units = iv.parse_units(spec)
        iv.check_point(model, point, units)
        hooks.append(iv.zero(point, units))
    for spec in clamp:
        point, units, value = iv.parse_clamp(spec)
        iv.check_point(model, point, units)
        hooks.append(iv.clamp(point, units, value))
    return hooks


def run_generate(args) -> int:
    from folkrnn.abc.keys import parse_key
    from folkrnn.sample.output import Settings, tune_abc, tune_json, with_meter_and_key
    from folkrnn.sample import SampleConfig, abc_prime, compile_prime, make_prime, sample
    from folkrnn.sample.types import shape_of

    check_options(args)
    beam = args.beam or 0
    threads(args.threads, rows=min(args.batch_size, max(args.num_tunes, beam)))
    key = args.key
    prime_tokens: list[str] = []
    if args.prime is not None:
        prime_tokens = args.prime.split()
    elif args.prime_abc is not None:
        read = abc_prime(args.prime_abc, where="--prime-abc", files=True)
        prime_tokens, tonic = list(read.tokens), read.tonic
        if args.format != "tokens":
            key = key or tonic
    key = key or "C"
    parse_key(key)  # a bad --key fails now, not after sampling
    shape = shape_of(args.tune_type, args.form, args.form_bars, args.endings, args.meter, args.feel,
                     args.form_candidates, args.form_lookahead, beam=args.beam is not None,
                     close_temperature=args.close_temperature)
    prime = make_prime(prime_tokens, shape.meter, args.mode)
    if args.format in ("midi", "wav"):
        # Check the rendering tools before spending time on sampling.
        from folkrnn.midi import tune_to_midi

        tune_to_midi(["M:4/4", "K:Cmaj"], **_midi_options(args))
        if args.wav:
            _check_wav(args.soundfont)
    if args.format in ("wav", "svg", "pdf"):
        from folkrnn.tune import check_tools

        check_tools(args.format, args.soundfont)
    ckpt = load(args.model)
    prime = with_meter_and_key(prime, ckpt.vocab)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    ranks = _ranks(beam)
    if ranks is not None:
        seed = ranks.same_seed(seed)
    cfg = SampleConfig(
        num_tunes=args.num_tunes, temperature=args.temperature, seed=seed, top_k=args.top_k, top_p=args.top_p,
        prime=prime, max_length=args.max_length, batch_size=args.batch_size,
        beam_width=beam, alternatives=args.alternatives, precision=args.precision, bars=args.bars, form=shape.form,
        logit_bias=shape.logit_bias(ckpt.vocab),
    )
    compile_prime(ckpt.vocab, cfg.prime)  # unknown prime tokens fail before anything is generated
    settings = Settings(
        model=model_name(args.model), seed=None if beam else seed, temperature=cfg.temperature, top_k=cfg.top_k,
        top_p=cfg.top_p, prime=" ".join(cfg.prime), max_length=cfg.max_length, beam=beam or None, key=key,
        precision=cfg.precision, bars=cfg.bars, form=shape.flags, tempo=args.tempo, program=args.program, first_x=args.first_index,
        interventions=" ".join([f"--ablate {a}" for a in args.ablate] + [f"--clamp {c}" for c in args.clamp]),
    )
    hooks = _intervention_hooks(ckpt.model, args.ablate, args.clamp)
    if ranks is not None:
        tunes = ranks.sample(ckpt, cfg, progress=not args.no_progress, hooks=hooks or None)
        if tunes is None:  # not rank 0: its tunes went to rank 0, which writes them all
            return 0
    else:
        tunes = sample(ckpt.model, ckpt.vocab, cfg, progress=not args.no_progress, hooks=hooks or None)
    if args.format in ("midi", "wav", "musicxml", "svg"):
        return _write_tune_files(args, tunes, settings)
    if args.format == "pdf":
        return _write_pdf(args, tunes, settings)
    n_trunc = 0
    skipped: list[int] = []
    with streamed_output(args.out, "generate") as f:
        for tune in tunes:
            n_trunc += tune.truncated
            if args.format == "tokens":
                from folkrnn.datafile import format_tune

                # data_v2 has no comments: a sequence without its meter and key lines cannot go in
                # (only a model whose vocabulary has no meter or key tokens can make one)
                if len(tune.tokens) < 2 or not tune.tokens[0].startswith("M:") or not tune.tokens[1].startswith("K:"):
                    skipped.append(settings.first_x + tune.index)
                    continue
                f.write(("\n" if f.records else "") + format_tune(tune.tokens))
            elif args.format == "json":
                f.write(json.dumps(tune_json(tune, settings), ensure_ascii=False) + "\n")
            else:
                f.write(("\n" if f.records else "") + tune_abc(tune, settings))
            f.commit()
        if skipped and not f.records:
            raise FolkRNNError(f"no tune written: all {len(skipped)} sequence(s) lack a meter and a key token")
    if n_trunc:
        print(f"folkrnn generate: {n_trunc} tune(s) hit the length cap of {cfg.max_length} tokens", file=sys.stderr)
    if skipped:
        print(f"folkrnn generate: left out {len(skipped)} sequence(s) that do not start with a meter and a key token "
              f"(tunes {', '.join(map(str, skipped[:10]))}{' ...' if len(skipped) > 10 else ''})", file=sys.stderr)
    return 0


def _midi_options(args) -> dict:
    from folkrnn.midi import DEFAULT_PROGRAM, DEFAULT_TEMPO

    return {"tempo": args.tempo if args.tempo is not None else DEFAULT_TEMPO,
            "program": args.program if args.program is not None else DEFAULT_PROGRAM}


def _check_wav(soundfont) -> None:
    import shutil

    from folkrnn.midi import find_soundfont

    if shutil.which("fluidsynth") is None:
        raise FolkRNNError("--wav needs the fluidsynth program (e.g. apt-get install fluidsynth fluid-soundfont-gm)")
    if find_soundfont(soundfont) is None:
        raise FolkRNNError("--wav needs a General MIDI soundfont (e.g. apt-get install fluid-soundfont-gm, or --soundfont FILE)")


def _remove_stale(out: Path, written: set[str], fmt: str) -> None:
    stale = [p for p in out.iterdir() if TUNE_FILE.fullmatch(p.name) and p.suffix[1:] in STALE[fmt] and p.name not in written]
    for p in stale:
        p.unlink()
    if stale:
        print(f"folkrnn generate: removed {len(stale)} tune file(s) an earlier run had left in {out}", file=sys.stderr)


def _tune_file(args, tune, settings, path: Path) -> list[Path]:
    """Write one tune to `path` in args.format (a .mid also gets its .wav with --wav);
    the files written. FolkRNNError when this tune cannot be written so."""
    from folkrnn import tune as T
    from folkrnn.files import atomic_write
    from folkrnn.sample.output import abc_or_error
    from folkrnn.midi import key_shift, render_wav, write_midi

    x = settings.first_x + tune.index
    title = settings.title.format(x=x)
    if args.format == "midi":
        write_midi(path, tune.tokens, transpose=key_shift(settings.key), title=title, **_midi_options(args))
        if not args.wav:
            return [path]
        render_wav(path, path.with_suffix(".wav"), args.soundfont)
        return [path, path.with_suffix(".wav")]
    if args.format == "wav":
        data = T.wav(tune.tokens, settings.key, args.tempo, args.program, args.soundfont)
    elif args.format == "musicxml":
        data = T.musicxml(tune.tokens, settings.key, title, args.tempo, args.program, composer="folk-rnn")
    else:
        abc, err = abc_or_error(tune, settings)
        if abc is None:
            raise FolkRNNError(f"not writable as ABC, so not printable: {err}")
        data = T.svg(abc).encode("utf-8")
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    return [path]


def _write_tune_files(args, tunes, settings) -> int:
    """-f midi, wav, musicxml, svg: the one file -o names (-n 1), or one tune_XXXXX.EXT
    per tune in the folder -o names; there, files of that name and kind this run did not
    write (left by an earlier, larger run) are removed at the end, even after Ctrl-C, and
    a tune that cannot be written so is left out with a note."""
    from folkrnn.files import make_dir
    from folkrnn.tune import FORMATS

    fmt, ext = args.format, FORMATS[args.format][0]
    out = make_dir(args.out, f"folder for the {fmt} files (one per tune)") if args.out_dir else Path(args.out)
    written: set[str] = set()
    skipped: list[str] = []
    n = n_trunc = 0
    try:
        for tune in tunes:
            n_trunc += tune.truncated
            x = settings.first_x + tune.index
            try:
                paths = _tune_file(args, tune, settings, out / f"tune_{x:05d}{ext}" if args.out_dir else out)
            except FolkRNNError as e:
                if not args.out_dir:
                    raise
                skipped.append(f"tune {x}: {e}")
                continue
            written.update(p.name for p in paths)
            n += 1
    except KeyboardInterrupt:
        if args.out_dir:
            _remove_stale(out, written, fmt)
            print(f"folkrnn generate: interrupted; kept {n} finished tune(s) in {out}", file=sys.stderr)
        raise
    if args.out_dir:
        _remove_stale(out, written, fmt)
    if n_trunc:
        print(f"folkrnn generate: {n_trunc} tune(s) hit the length cap of {settings.max_length} tokens", file=sys.stderr)
    for note in skipped[:10]:
        print(f"folkrnn generate: left out {note}", file=sys.stderr)
    if not n:
        raise FolkRNNError(f"no tune written: {skipped[0]}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""))
    if args.out_dir:
        what = f"{n} {fmt.upper() if fmt != 'musicxml' else 'MusicXML'} file(s){' and WAV' if args.wav else ''}"
        print(f"folkrnn generate: wrote {what} to {out}", file=sys.stderr)
    else:
        print(f"folkrnn generate: wrote {', '.join(sorted(written))}", file=sys.stderr)
    return 0


def _write_pdf(args, tunes, settings) -> int:
    """-f pdf: every tune in one printed score (abcm2ps, ps2pdf), written when all are done."""
    from folkrnn.files import atomic_write
    from folkrnn.sample.output import abc_or_error
    from folkrnn.tune import pdf

    abcs, skipped = [], []
    n_trunc = 0
    for tune in tunes:
        n_trunc += tune.truncated
        abc, err = abc_or_error(tune, settings)
        if abc is None:
            skipped.append(f"tune {settings.first_x + tune.index}: not writable as ABC: {err}")
        else:
            abcs.append(abc)
    if not abcs:
        raise FolkRNNError(f"no tune written: {skipped[0]}")
    data = pdf("\n".join(abcs))
    atomic_write(args.out, lambda tmp: Path(tmp).write_bytes(data))
    if n_trunc:
        print(f"folkrnn generate: {n_trunc} tune(s) hit the length cap of {settings.max_length} tokens", file=sys.stderr)
    for note in skipped[:10]:
        print(f"folkrnn generate: left out {note}", file=sys.stderr)
    print(f"folkrnn generate: wrote {len(abcs)} tune(s) to {args.out}", file=sys.stderr)
    return 0
