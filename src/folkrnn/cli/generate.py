"""`folkrnn generate`: options, checks, and streaming the tunes out.

Sampling is folkrnn.sample's; how a tune is written (annotated ABC, JSON) is
folkrnn.generated's; MIDI and audio are folkrnn.midi's.

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

MIDI_NAME = re.compile(r"tune_\d{5,}\.(mid|wav)")


def register(sub) -> None:
    from folkrnn.midi import DEFAULT_PROGRAM, DEFAULT_TEMPO
    from folkrnn.sample import MAX_LENGTH

    p = sub.add_parser("generate", help="generate transcriptions (ABC, tokens, JSON or MIDI)",
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
    p.add_argument("--prime-abc", default=None, metavar="ABC",
                   help="ABC to start from (text with an X: or K: field, or a file name), converted to tokens (transposed to C)")
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
    p.add_argument("-f", "--format", choices=("abc", "tokens", "json", "midi"), default="abc", help="output format (default abc)")
    p.add_argument("-o", "--out", default=None, help="output file (default stdout); for --format midi a directory")
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


def check_options(args) -> None:
    """Refuse combinations that would be ignored or mislead, before any work is done."""
    fmt = args.format
    if args.prime is not None and args.prime_abc is not None:
        raise FolkRNNError("conflicting options: give --prime or --prime-abc, not both")
    if args.alternatives and fmt != "json":
        raise FolkRNNError("conflicting options: --alternatives needs --format json")
    if fmt == "midi" and not args.out:
        raise FolkRNNError("--format midi needs -o DIR (one .mid file per tune)")
    if args.wav and fmt != "midi":
        raise FolkRNNError("conflicting options: --wav needs --format midi")
    if args.soundfont is not None and not args.wav:
        raise FolkRNNError("conflicting options: --soundfont is only used with --wav")
    if args.beam is not None and args.beam < 1:
        raise FolkRNNError(f"--beam must be >= 1 (the beam width), got {args.beam}; leave it out to sample")
    if args.beam is not None and args.seed is not None:
        raise FolkRNNError("conflicting options: beam search is deterministic, it takes no --seed")
    if fmt == "tokens":
        if args.key is not None and not _is_c(args.key):
            raise FolkRNNError("conflicting options: token output is always in C (the v2 convention); "
                               "--key applies to --format abc, json and midi")
        given = [o for o, v in (("--tempo", args.tempo), ("--program", args.program)) if v is not None]
        if given:
            raise FolkRNNError(f"conflicting options: token output has no tempo or instrument; {' and '.join(given)} "
                               "apply to --format abc, json and midi")
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


def abc_prime(text: str) -> tuple[list[str], str | None]:
    """--prime-abc: ABC text or a file name -> (tokens, tonic of its K: field or None)."""
    from folkrnn.abc import tune_to_tokens

    one_line = "\n" not in text and "\\n" not in text
    looks_like_abc = re.search(r"(^|\\n|\n)[ \t]*[XK]:", text) is not None
    if one_line and not looks_like_abc:
        # a file name (ABC text needs at least a K: field)
        p = Path(text)
        try:
            text = p.read_text("utf-8")
        except FileNotFoundError:
            raise FolkRNNError(f"--prime-abc {p}: no such file (give a file, or ABC text with a K: field)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise FolkRNNError(f"--prime-abc {p}: cannot read: {e}") from None
    else:
        text = text.replace("\\n", "\n")  # allow one-line ABC in a shell argument
    try:
        toks = tune_to_tokens(text, strict=False)
    except FolkRNNError as e:
        raise FolkRNNError(f"--prime-abc: {e}") from None
    tonic = None
    m = re.search(r"^[ \t]*K:[ \t]*([A-Ga-g][#b]?)", text, re.M)
    if m:
        tonic = m.group(1).upper()[0] + m.group(1)[1:]
    return toks, tonic


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
    from folkrnn.generated import Settings, tune_abc, tune_json, with_meter_and_key
    from folkrnn.sample import SampleConfig, compile_prime, make_prime, sample

    check_options(args)
    beam = args.beam or 0
    threads(args.threads, rows=min(args.batch_size, max(args.num_tunes, beam)))
    key = args.key
    prime_tokens: list[str] = []
    if args.prime is not None:
        prime_tokens = args.prime.split()
    elif args.prime_abc is not None:
        prime_tokens, tonic = abc_prime(args.prime_abc)
        if args.format != "tokens":
            key = key or tonic
    key = key or "C"
    parse_key(key)  # a bad --key fails now, not after sampling
    prime = make_prime(prime_tokens, args.meter, args.mode)
    if args.format == "midi":
        # Check the rendering tools before spending time on sampling.
        from folkrnn.midi import tune_to_midi

        tune_to_midi(["M:4/4", "K:Cmaj"], **_midi_options(args))
        if args.wav:
            _check_wav(args.soundfont)
    ckpt = load(args.model)
    prime = with_meter_and_key(prime, ckpt.vocab)
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    cfg = SampleConfig(
        num_tunes=args.num_tunes, temperature=args.temperature, seed=seed, top_k=args.top_k, top_p=args.top_p,
        prime=prime, max_length=args.max_length, batch_size=args.batch_size,
        beam_width=beam, alternatives=args.alternatives, precision=args.precision, bars=args.bars,
    )
    compile_prime(ckpt.vocab, cfg.prime)  # unknown prime tokens fail before anything is generated
    settings = Settings(
        model=model_name(args.model), seed=None if beam else seed, temperature=cfg.temperature, top_k=cfg.top_k,
        top_p=cfg.top_p, prime=" ".join(cfg.prime), max_length=cfg.max_length, beam=beam or None, key=key,
        precision=cfg.precision, bars=cfg.bars, tempo=args.tempo, program=args.program, first_x=args.first_index,
        interventions=" ".join([f"--ablate {a}" for a in args.ablate] + [f"--clamp {c}" for c in args.clamp]),
    )
    hooks = _intervention_hooks(ckpt.model, args.ablate, args.clamp)
    tunes = sample(ckpt.model, ckpt.vocab, cfg, progress=not args.no_progress, hooks=hooks or None)
    if args.format == "midi":
        return _write_midi(args, tunes, key)
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


def _remove_stale(out: Path, written: set[str]) -> None:
    stale = [p for p in out.iterdir() if MIDI_NAME.fullmatch(p.name) and p.name not in written]
    for p in stale:
        p.unlink()
    if stale:
        print(f"folkrnn generate: removed {len(stale)} tune file(s) an earlier run had left in {out}", file=sys.stderr)


def _write_midi(args, tunes, key: str) -> int:
    """One tune_XXXXX.mid (and .wav) per tune in DIR; files of that name this run did not
    write (left by an earlier, larger run) are removed at the end, even after Ctrl-C."""
    from folkrnn.midi import key_shift, render_wav, write_midi

    from folkrnn.files import make_dir

    out = make_dir(args.out, "folder for the MIDI files (--format midi writes one file per tune)")
    shift = key_shift(key)
    opts = _midi_options(args)
    written: set[str] = set()
    n = 0
    try:
        for tune in tunes:
            x = args.first_index + tune.index
            path = out / f"tune_{x:05d}.mid"
            write_midi(path, tune.tokens, transpose=shift, title=f"folk-rnn tune #{x}", **opts)
            written.add(path.name)
            if args.wav:
                render_wav(path, path.with_suffix(".wav"), args.soundfont)
                written.add(path.with_suffix(".wav").name)
            n += 1
    except KeyboardInterrupt:
        _remove_stale(out, written)
        print(f"folkrnn generate: interrupted; kept {n} finished tune(s) in {out}", file=sys.stderr)
        raise
    _remove_stale(out, written)
    print(f"folkrnn generate: wrote {n} MIDI file(s){' and WAV' if args.wav else ''} to {out}", file=sys.stderr)
    return 0
