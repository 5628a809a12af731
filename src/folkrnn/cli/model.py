"""`folkrnn info`, `import`, `generate`, `score`: the model commands (parsing and printing).

The work is done by folkrnn.checkpoint (`-m MODEL`), folkrnn.legacy (Lasagne pickles),
folkrnn.sample (generation, scoring) and folkrnn.midi (MIDI, audio).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

from folkrnn.errors import FolkRNNError

SMALL_BATCH = 16
MODEL_HELP = "model: a .safetensors checkpoint, a folk-rnn Lasagne .pkl, or `default` (the one shipped with folkrnn)"


def register(sub) -> None:
    from folkrnn.midi import DEFAULT_PROGRAM, DEFAULT_TEMPO
    from folkrnn.sample import MAX_LENGTH

    p = sub.add_parser("info", help="describe a model: parameters, per-matrix table, vocabulary, provenance",
                       description="Print a model's parameter count (the 5,599,881 of v2 and, separately, the learned "
                       "initial states), a table of every matrix and gate block (shape, count, norm), its vocabulary, "
                       "config and training history or import source.")
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--no-gates", action="store_true", help="leave the per-gate rows out of the table")
    p.set_defaults(func=run_info)

    p = sub.add_parser("import", help="convert a folk-rnn Lasagne pickle (folkrnn_v2.pkl) to a checkpoint",
                       description="Read an original folk-rnn weights pickle with a restricted unpickler (numpy arrays "
                       "and plain containers only) and write a folkrnn .safetensors checkpoint.")
    p.add_argument("pickle", help="the .pkl file (e.g. folk-rnn's metadata/folkrnn_v2.pkl)")
    p.add_argument("-o", "--out", required=True, help="the .safetensors file to write")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.set_defaults(func=run_import)

    p = sub.add_parser("generate", help="generate transcriptions (ABC, tokens, JSON or MIDI)",
                       description="Sample new transcriptions from a model, streaming them out as they are done. "
                       "Same seed and options give the same tunes; tune i does not depend on -n or --batch-size.")
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("-n", "--num-tunes", type=int, default=1, help="how many tunes (default 1)")
    p.add_argument("-t", "--temperature", type=float, default=1.0, help="softmax temperature, > 0 (default 1)")
    p.add_argument("-s", "--seed", type=int, default=None, help="random seed (default: a fresh one, written in the output)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the K most probable tokens only")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: the most probable tokens holding mass P")
    p.add_argument("--prime", default=None, metavar="TOKENS",
                   help="tokens to start from, e.g. 'M:6/8 K:Cdor |: G'; '*' = a position the model fills, "
                   "'M:*' / 'K:*' = any meter / mode")
    p.add_argument("--prime-abc", default=None, metavar="ABC",
                   help="ABC to start from (text, or a file), converted to tokens (transposed to C)")
    p.add_argument("--meter", default=None, help="shortcut for the meter token: 2/4 3/4 4/4 6/8 9/8 12/8 3/2")
    p.add_argument("--mode", default=None, help="shortcut for the key token: major, minor, dorian, mixolydian")
    p.add_argument("-k", "--key", default=None,
                   help="write the ABC (and MIDI) in this tonic, e.g. D, G, Bb (default C, or the --prime-abc key)")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help=f"length cap in tokens (default {MAX_LENGTH})")
    p.add_argument("--beam", type=int, default=0, metavar="W", help="beam search of width W instead of sampling")
    p.add_argument("--bars", choices=("free", "strict"), default="free",
                   help="strict: draw only tokens that keep every bar right and the repeats well formed, "
                        "renormalising over them (default free)")
    p.add_argument("-f", "--format", choices=("abc", "tokens", "json", "midi"), default="abc", help="output format (default abc)")
    p.add_argument("-o", "--out", default=None, help="output file (default stdout); for --format midi a directory")
    p.add_argument("--alternatives", type=int, default=0, metavar="K",
                   help="JSON: also give the K most probable tokens and their probabilities at every step")
    p.add_argument("--tempo", type=float, default=DEFAULT_TEMPO, help=f"MIDI beats per minute (default {DEFAULT_TEMPO})")
    p.add_argument("--program", type=int, default=DEFAULT_PROGRAM, help=f"MIDI program 0-127 (default {DEFAULT_PROGRAM}, violin)")
    p.add_argument("--wav", action="store_true", help="MIDI: also render .wav files with fluidsynth")
    p.add_argument("--soundfont", default=None, help="soundfont for --wav (default: FluidR3_GM if installed)")
    p.add_argument("--batch-size", type=int, default=256, help="tunes generated together (default 256)")
    p.add_argument("--precision", choices=("fp32", "bf16", "int8"), default="fp32",
                   help="matmul precision: fp32 (exact, default); bf16 (~2.5x faster in big batches on CPUs with AMX); "
                   "int8 (dynamic, ~2x faster, also at batch 1); both drift slightly from fp32 (docs/generate.md)")
    p.add_argument("--threads", type=int, default=0,
                   help="CPU threads (0 = auto: 1 for up to 16 tunes at a time or on a busy machine, else PyTorch's default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_generate)

    p = sub.add_parser("score", help="log-probability of every token of some transcriptions under a model",
                       description="Print one JSON line per tune: tokens (ending with </s>), the log-probability of "
                       "each given the ones before it (after <s>), total and mean NLL (nats). A summary goes to stderr.")
    p.add_argument("file", help="a data_v2 token file or an ABC file")
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("--input-format", choices=("auto", "tokens", "abc"), default="auto",
                   help="auto: ABC if the file ends in .abc or has an X: line, else data_v2 tokens")
    p.add_argument("-o", "--out", default=None, help="output file (default stdout)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = auto: 1 on a busy machine, else PyTorch's default)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_score)


# -- helpers ---------------------------------------------------------------------------
def _threads(n: int, rows: int | None = None) -> None:
    """Apply --threads; 0 = auto (see folkrnn.sample.auto_threads)."""
    import torch

    from folkrnn.sample import auto_threads

    if n < 0:
        raise FolkRNNError("--threads must be >= 0")
    n = n or auto_threads(rows, SMALL_BATCH) or 0
    if n:
        torch.set_num_threads(n)


@contextlib.contextmanager
def _output(path: str | None):
    """stdout, or a file written under a temporary name and renamed when complete."""
    if path is None or path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    dest = Path(path)
    if dest.is_dir():
        raise FolkRNNError(f"{dest}: is a directory (give a file name)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    except OSError as e:
        raise FolkRNNError(f"{dest}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            yield f
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _model_name(spec: str, ckpt) -> str:
    return "default" if spec == "default" else Path(spec).name


def _load(spec: str):
    from folkrnn.load import load_model

    return load_model(spec)


# -- info --------------------------------------------------------------------------------
def run_info(args) -> int:
    from folkrnn.checkpoint import parameter_table

    _threads(0)
    ckpt = _load(args.model)
    model, vocab, meta = ckpt.model, ckpt.vocab, ckpt.metadata
    rows = parameter_table(model, per_gate=not args.no_gates)
    n_params = model.num_parameters()
    n_init = model.num_parameters(include_initial_states=True) - n_params
    if args.json:
        doc = {
            "model": str(args.model), "parameters": n_params, "initial_state_numbers": n_init,
            "config": model.config.to_dict(), "vocabulary_size": len(vocab), "vocabulary": list(vocab.tokens),
            "matrices": [{"name": r.name, "shape": list(r.shape), "count": r.count, "norm": r.norm, "trainable": r.trainable} for r in rows],
            "metadata": {k: v for k, v in meta.items() if k not in ("vocabulary", "config")},
        }
        print(json.dumps(doc, indent=1))
        return 0
    out = sys.stdout
    c = model.config
    print(f"model      {args.model}" + (f" ({meta['file']})" if meta.get("file") and meta["file"] != str(args.model) else ""), file=out)
    print(f"network    {c.num_layers} LSTM layers x {c.hidden_size}, one-hot input and softmax over {c.vocab_size} tokens"
          f" (dropout {c.dropout} in training)", file=out)
    print(f"parameters {n_params:,} (plus {n_init:,} learned initial-state numbers c0, h0: {n_params + n_init:,} stored)", file=out)
    print(f"vocabulary {len(vocab)} tokens: {' '.join(vocab.tokens[:12])} ...", file=out)
    _print_provenance(meta, out)
    print("", file=out)
    w = max(len(r.name) for r in rows)
    print(f"{'tensor':<{w}}  {'shape':>12}  {'count':>10}  {'norm':>10}", file=out)
    for r in rows:
        shape = "x".join(str(s) for s in r.shape)
        note = "" if r.trainable else "  (initial state)"
        name = r.name if "[" not in r.name else "  " + r.name
        print(f"{name:<{w}}  {shape:>12}  {r.count:>10,}  {r.norm:>10.4f}{note}", file=out)
    return 0


def _print_provenance(meta: dict, out) -> None:
    src = meta.get("source")
    if isinstance(src, dict):
        bits = [f"{k}={src[k]}" for k in ("configuration", "experiment_id", "epoch_since_start", "iters_since_start", "learning_rate") if k in src]
        print(f"source     {src.get('kind', '?')} {src.get('file', '')} (sha256 {str(src.get('sha256', ''))[:12]}) {' '.join(bits)}", file=out)
        for k in ("losses_train", "losses_eval_valid"):
            v = src.get(k)
            if isinstance(v, list) and v:
                print(f"           {k}: {len(v)} values, last {_short(v[-1])}", file=out)
    tr = meta.get("training")
    if isinstance(tr, dict):
        print(f"training   epoch {_short(tr.get('epoch'))}, iteration {tr.get('iteration')}, tokens seen {tr.get('tokens_seen')}, "
              f"best validation NLL {_short(tr.get('best_valid'))}", file=out)
        data = tr.get("data")
        if data:
            print(f"data       {json.dumps(data)[:300]}", file=out)
        hist = tr.get("history") or []
        for row in hist[-5:]:
            print(f"           {json.dumps(row)[:200]}", file=out)
        tc = tr.get("train_config")
        if tc:
            print(f"recipe     {json.dumps(tc)[:300]}", file=out)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, (list, tuple)) and v:
        return "[" + ", ".join(_short(x) for x in v[:4]) + (", ...]" if len(v) > 4 else "]")
    return str(v)


# -- import ------------------------------------------------------------------------------
def run_import(args) -> int:
    import torch

    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.legacy import load_lasagne_pickle

    _threads(0)
    src = Path(args.pickle)
    if not src.is_file():
        raise FolkRNNError(f"{src}: no such file")
    ckpt = load_lasagne_pickle(src)
    meta = {"source": ckpt.metadata["source"]}
    out = Path(args.out)
    if out.is_dir():
        raise FolkRNNError(f"{out}: is a directory (give a .safetensors file name)")
    save_checkpoint(out, ckpt.model, ckpt.vocab, meta, dtype=torch.float16 if args.fp16 else torch.float32)
    c = ckpt.model.config
    print(f"imported {src} -> {out}: {c.num_layers} layers x {c.hidden_size}, {len(ckpt.vocab)} tokens, "
          f"{ckpt.model.num_parameters():,} parameters", file=sys.stderr)
    return 0


# -- generate ------------------------------------------------------------------------------
def _abc_prime(text: str) -> tuple[list[str], str | None]:
    """ABC text or file -> (tokens, tonic of its K: field or None)."""
    from folkrnn.abc import tune_to_tokens

    p = Path(text)
    try:
        is_file = "\n" not in text and len(text) < 4096 and p.is_file()
    except OSError:
        is_file = False
    if is_file:
        try:
            text = p.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise FolkRNNError(f"{p}: cannot read: {e}") from None
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


def run_generate(args) -> int:
    from folkrnn.sample import SampleConfig, make_prime, sample

    _threads(args.threads, rows=min(args.batch_size, max(args.num_tunes, args.beam)))
    if args.prime is not None and args.prime_abc is not None:
        raise FolkRNNError("conflicting options: give --prime or --prime-abc, not both")
    if args.alternatives and args.format != "json":
        raise FolkRNNError("conflicting options: --alternatives needs --format json")
    if args.format == "midi" and not args.out:
        raise FolkRNNError("--format midi needs -o DIR (one .mid file per tune)")
    if args.wav and args.format != "midi":
        raise FolkRNNError("conflicting options: --wav needs --format midi")
    if args.beam and args.seed is not None:
        raise FolkRNNError("conflicting options: beam search is deterministic, it takes no --seed")
    key = args.key
    prime_tokens: list[str] = []
    if args.prime is not None:
        prime_tokens = args.prime.split()
    elif args.prime_abc is not None:
        prime_tokens, tonic = _abc_prime(args.prime_abc)
        key = key or tonic
    key = key or "C"
    from folkrnn.abc.keys import parse_key

    parse_key(key)  # a bad --key fails now, not after sampling
    seed = args.seed if args.seed is not None else secrets.randbelow(2**32)
    cfg = SampleConfig(
        num_tunes=args.num_tunes, temperature=args.temperature, seed=seed, top_k=args.top_k, top_p=args.top_p,
        prime=make_prime(prime_tokens, args.meter, args.mode), max_length=args.max_length, batch_size=args.batch_size,
        beam_width=args.beam, alternatives=args.alternatives, precision=args.precision, bars=args.bars,
    )
    if args.format == "midi":
        # Check the rendering tools before spending time on sampling.
        from folkrnn.midi import tune_to_midi

        tune_to_midi(["M:4/4", "K:Cmaj"], tempo=args.tempo, program=args.program)
        if args.wav:
            _check_wav(args.soundfont)
    ckpt = _load(args.model)
    cfg_vocab_check(ckpt.vocab, cfg)
    settings = {
        "model": _model_name(args.model, ckpt), "seed": None if args.beam else seed, "temperature": cfg.temperature,
        "top_k": cfg.top_k, "top_p": cfg.top_p, "prime": " ".join(cfg.prime), "max_length": cfg.max_length,
        "beam": cfg.beam_width or None, "key": key, "precision": cfg.precision, "bars": cfg.bars,
    }
    tunes = sample(ckpt.model, ckpt.vocab, cfg, progress=not args.no_progress)
    if args.format == "midi":
        return _write_midi(args, tunes, key)
    n_trunc = 0
    skipped: list[int] = []
    with _output(args.out) as f:
        for i, tune in enumerate(tunes):
            n_trunc += tune.truncated
            if args.format == "tokens":
                from folkrnn.datafile import format_tune

                # data_v2 has no comments: a sequence without its meter and key lines cannot go in
                if len(tune.tokens) < 2 or not tune.tokens[0].startswith("M:") or not tune.tokens[1].startswith("K:"):
                    skipped.append(tune.index + 1)
                    continue
                f.write(("\n" if i > len(skipped) else "") + format_tune(tune.tokens))
            elif args.format == "json":
                f.write(json.dumps(_tune_json(tune, key, settings), ensure_ascii=False) + "\n")
            else:
                f.write(("\n" if i else "") + _tune_abc(tune, key, settings))
            if f is sys.stdout:
                f.flush()
    if n_trunc:
        print(f"folkrnn generate: {n_trunc} tune(s) hit the length cap of {cfg.max_length} tokens", file=sys.stderr)
    if skipped:
        print(f"folkrnn generate: left out {len(skipped)} sequence(s) that do not start with a meter and a key token "
              f"(tunes {', '.join(map(str, skipped[:10]))}{' ...' if len(skipped) > 10 else ''})", file=sys.stderr)
    return 0


def cfg_vocab_check(vocab, cfg) -> None:
    from folkrnn.sample import compile_prime

    compile_prime(vocab, cfg.prime)  # unknown prime tokens fail before anything is generated


def _comments(tune, settings: dict) -> list[str]:
    s = settings
    how = f"beam {s['beam']}" if s["beam"] else f"seed {s['seed']}, temperature {s['temperature']:g}"
    if s["top_k"]:
        how += f", top-k {s['top_k']}"
    if s["top_p"]:
        how += f", top-p {s['top_p']:g}"
    if s["precision"] != "fp32":
        how += f", {s['precision']}"
    if s.get("bars", "free") != "free":
        how += f", bars {s['bars']}"
    out = [f"generated by folkrnn: model {s['model']}, {how}, tune {tune.index + 1}",
           f"prime: {s['prime'] or '(none)'}",
           f"log-probability {tune.logprob:.2f} over {tune.length} tokens"]
    if tune.truncated:
        out.append(f"TRUNCATED: hit the length cap of {s['max_length']} tokens without </s>")
    return out


def _abc_or_error(tune, key: str, settings: dict) -> tuple[str | None, str | None]:
    """The tune as ABC (tokens ABC cannot place dropped, and said so), or why not."""
    from folkrnn.abc import tokens_to_abc
    from folkrnn.sample import drop_unwritable

    kept, dropped = drop_unwritable(tune.tokens)
    comments = _comments(tune, settings)
    if dropped:
        comments.append(f"left out {len(dropped)} token(s) ABC cannot place: {' '.join(dropped[:20])}{' ...' if len(dropped) > 20 else ''}")
    try:
        return tokens_to_abc(kept, key=key, x=tune.index + 1, title=f"folk-rnn tune #{tune.index + 1}", comments=comments), None
    except FolkRNNError as e:
        return None, str(e)


def _tune_abc(tune, key: str, settings: dict) -> str:
    abc, err = _abc_or_error(tune, key, settings)
    if abc is not None:
        return abc
    # A sampled sequence the ABC writer cannot express: keep it visible, as comments.
    lines = [f"X:{tune.index + 1}", f"T:folk-rnn tune #{tune.index + 1} (not writable as ABC)"]
    lines += [f"% {c}" for c in _comments(tune, settings)]
    lines += [f"% cannot write as ABC: {err}", f"% tokens: {' '.join(tune.tokens)}"]
    return "\n".join(lines) + "\n"


def _tune_json(tune, key: str, settings: dict) -> dict:
    abc, err = _abc_or_error(tune, key, settings)
    d = {"index": tune.index, "x": tune.index + 1, "tokens": tune.tokens, "ended": not tune.truncated,
         "truncated": tune.truncated, "logprob": tune.logprob, "abc": abc, "settings": settings}
    if err:
        d["abc_error"] = err
    if tune.alternatives is not None:
        d["alternatives"] = [[[t, p] for t, p in step] for step in tune.alternatives]
    return d


def _check_wav(soundfont) -> None:
    import shutil

    from folkrnn.midi import find_soundfont

    if shutil.which("fluidsynth") is None:
        raise FolkRNNError("--wav needs the fluidsynth program (e.g. apt-get install fluidsynth fluid-soundfont-gm)")
    if find_soundfont(soundfont) is None:
        raise FolkRNNError("--wav needs a General MIDI soundfont (e.g. apt-get install fluid-soundfont-gm, or --soundfont FILE)")


def _write_midi(args, tunes, key: str) -> int:
    from folkrnn.midi import key_shift, render_wav, write_midi

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FolkRNNError(f"{out}: exists and is not a directory (--format midi writes one file per tune)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FolkRNNError(f"{out}: cannot create: {e.strerror or e}") from None
    shift = key_shift(key)
    n = 0
    for tune in tunes:
        path = out / f"tune_{tune.index + 1:05d}.mid"
        write_midi(path, tune.tokens, tempo=args.tempo, program=args.program, transpose=shift,
                   title=f"folk-rnn tune #{tune.index + 1}")
        if args.wav:
            render_wav(path, path.with_suffix(".wav"), args.soundfont)
        n += 1
    print(f"folkrnn generate: wrote {n} MIDI file(s){' and WAV' if args.wav else ''} to {out}", file=sys.stderr)
    return 0


# -- score ---------------------------------------------------------------------------------
def run_score(args) -> int:
    from folkrnn.sample import score_tunes

    _threads(args.threads)
    path = Path(args.file)
    if not path.is_file():
        raise FolkRNNError(f"{path}: no such file")
    fmt = args.input_format
    if fmt == "auto":
        fmt = "abc" if path.suffix.lower() == ".abc" or _has_x_line(path) else "tokens"
    ckpt = _load(args.model)
    if fmt == "abc":
        tunes = list(_abc_tunes(path))
    else:
        from folkrnn.datafile import read_tunes

        tunes = read_tunes(path)
    unknown = ckpt.vocab.unknown(t for tune in tunes for t in tune)
    if unknown:
        raise FolkRNNError(f"{path}: token(s) not in the model's vocabulary: {' '.join(unknown[:20])}")
    n = n_tok = 0
    nll = 0.0
    with _output(args.out) as f:
        for s in score_tunes(ckpt.model, ckpt.vocab, tunes, batch_size=args.batch_size, progress=not args.no_progress, where=str(path)):
            f.write(json.dumps({"index": s.index, "tokens": s.tokens, "logprobs": [round(x, 6) for x in s.logprobs],
                                "total_nll": s.total_nll, "mean_nll": s.mean_nll}) + "\n")
            n += 1
            n_tok += len(s.logprobs)
            nll += s.total_nll
    print(f"folkrnn score: {n} tunes, {n_tok} tokens, NLL {nll / max(n_tok, 1):.4f} nats/token "
          f"({nll / max(n, 1):.2f} per tune)", file=sys.stderr)
    return 0


def _has_x_line(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return False
    return re.search(r"^[ \t]*X:", head, re.M) is not None


def _abc_tunes(path: Path):
    from folkrnn.abc import read_abc_file

    n = 0
    for res in read_abc_file(path):
        if res.tokens is None:
            print(f"folkrnn score: skipped {res.label()} ({res.detail})", file=sys.stderr)
            continue
        n += 1
        yield list(res.tokens)
    if not n:
        raise FolkRNNError(f"{path}: no tune v2 can express")
