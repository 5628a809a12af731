"""`folkrnn demo`: the flagship run (what `make demo` does).

Generate a handful of tunes with the shipped model, print them as ABC, write ABC,
tokens and MIDI files, and judge the tunes as music (bars, form, cadences).
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="generate tunes with the shipped model, write ABC/MIDI, and evaluate them",
        description="Generate tunes with a model (the shipped one by default), print them as ABC, "
        "write tunes.abc, tunes.txt and one MIDI file per tune to OUT, and print an evaluation of the tunes.",
    )
    p.add_argument("-m", "--model", default="default", help="model: `default`, a .safetensors checkpoint or a folk-rnn .pkl")
    p.add_argument("-n", "--num-tunes", type=int, default=6)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--meter", help="start every tune with this meter (e.g. 6/8); default: the model chooses")
    p.add_argument("--mode", help="start every tune in this mode (major, minor, dorian, mixolydian); default: the model chooses")
    p.add_argument("--key", default="C", help="tonic to write the tunes in (e.g. D, G, A)")
    p.add_argument("-o", "--out", default="folkrnn-demo", help="output folder (default: folkrnn-demo)")
    p.set_defaults(func=run)


def run(args) -> int:
    from folkrnn.abc import parse_key
    from folkrnn.cli.common import threads
    from folkrnn.load import load_model
    from folkrnn.datafile import write_tunes
    from folkrnn.errors import FolkRNNError
    from folkrnn.evaluate import evaluate_tunes, format_table
    from folkrnn.sample.output import Settings, abc_or_error, with_meter_and_key
    from folkrnn.midi import write_midi
    from folkrnn.abc.writer import make_writable
    from folkrnn.sample import SampleConfig, make_prime, sample

    parse_key(args.key)
    prime = make_prime(meter=args.meter, mode=args.mode)
    threads(0, args.num_tunes)
    ckpt = load_model(args.model)
    cfg = SampleConfig(num_tunes=args.num_tunes, seed=args.seed, temperature=args.temperature,
                       prime=with_meter_and_key(prime, ckpt.vocab))
    name = ckpt.metadata.get("name") or Path(ckpt.metadata.get("file", args.model)).name
    settings = Settings(model=name, seed=args.seed, temperature=args.temperature, prime=" ".join(cfg.prime),
                        max_length=cfg.max_length, key=args.key, title="folkrnn demo tune {x}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    print(f"% {args.num_tunes} tunes from {name}, seed {args.seed}, temperature {args.temperature}", file=sys.stderr)
    tunes = []
    abcs = []
    midis = 0
    for t in sample(ckpt.model, ckpt.vocab, cfg, progress=True):
        tunes.append(t.tokens)
        abc, err = abc_or_error(t, settings)
        if abc is None:  # the model wrote something that is not a tune: show it, go on
            abc = f"% tune {t.index + 1} is not a well-formed transcription ({err}):\n% {' '.join(t.tokens)}\n"
        else:
            try:
                write_midi(out / f"tune{t.index + 1:02d}.mid", make_writable(t.tokens)[0])
                midis += 1
            except FolkRNNError as e:
                abc += f"% no MIDI: {e}\n"
        abcs.append(abc)
        print(abc)
    (out / "tunes.abc").write_text("\n".join(abcs), "utf-8")
    write_tunes(out / "tunes.txt", tunes)

    ev = evaluate_tunes(tunes, source="demo tunes")
    print("How the tunes hold up as music (folkrnn evaluate):")
    print(format_table(ev))
    print(f"\nWrote {out}/tunes.abc, {out}/tunes.txt and {midis} MIDI file(s) (tuneNN.mid).")
    print("Next: `folkrnn generate --help` for more controls, `folkrnn evaluate` on many more tunes.")
    print("Compose, play and keep tunes in your browser: `folkrnn serve` (then open http://127.0.0.1:8000/).")
    return 0
