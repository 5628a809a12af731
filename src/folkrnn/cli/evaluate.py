"""`folkrnn evaluate` (musical and statistical metrics) and `folkrnn ngram` (the baseline).

Argument parsing and printing only; the work is in `folkrnn.evaluate` and
`folkrnn.ngram`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from folkrnn.errors import FolkRNNError


def register(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="bar arithmetic, repeats, form, cadences, distributions and novelty of transcriptions",
        description=(
            "Evaluate the transcriptions of FILE (data_v2 tokens or ABC): bars against the meter "
            "(pickups recognised), repeats and endings, form (AABB, bars per part), cadences, pitch "
            "range, distributions; with --against, their divergence from a reference corpus and "
            "each tune's nearest reference tune and longest copied run."
        ),
    )
    p.add_argument("file", metavar="FILE", help="data_v2 token file or ABC file")
    p.add_argument("--against", metavar="CORPUS",
                   help="reference corpus (data_v2 or ABC) for divergence and novelty; `default`: the shipped "
                        "model's training corpus, rebuilt once into ~/.cache/folkrnn (`./default` for a file of that name)")
    p.add_argument("--json", metavar="OUT", help="write per-tune and aggregate results as JSON ('-' = stdout)")
    p.add_argument("--plots", metavar="DIR", help="write PNG figures of the distributions into DIR")
    p.add_argument("--copy-run", type=int, default=16, metavar="N", help="a tune copies if it shares N+ tokens in a row with a reference tune (default 16)")
    p.add_argument("--ngram", type=int, default=8, metavar="N", help="n-gram size of the novelty index (default 8)")
    p.add_argument("--same-part", type=float, default=0.5, metavar="S", help="similarity from which two sections get the same letter (default 0.5)")
    p.add_argument("--tunes", action="store_true",
                   help="also print one line per tune: its place in FILE counted from 1 (rejected ABC tunes "
                        "included, as `folkrnn score` numbers them), then for ABC its X: and title at the end")
    p.set_defaults(func=_evaluate)

    q = sub.add_parser(
        "ngram",
        help="n-gram baseline (modified Kneser-Ney): held-out NLL per token",
        description=(
            "Train an interpolated modified Kneser-Ney n-gram model on TRAIN (each tune framed by <s> ... </s>) "
            "and print the negative log-likelihood per token of HELDOUT, every token after <s> predicted "
            "(the network's convention), in nats and bits, and the perplexity."
        ),
    )
    q.add_argument("train", metavar="TRAIN", help="training tunes (data_v2 or ABC)")
    held = q.add_mutually_exclusive_group(required=True)
    held.add_argument("--test", metavar="HELDOUT", help="held-out tunes to score (data_v2 or ABC)")
    held.add_argument(
        "--split",
        action="store_true",
        help="hold out of TRAIN the tunes `folkrnn train` validates on (5%%, seed 42, whole batches of 64) and score them",
    )
    q.add_argument("--order", default="8", metavar="N", help="order, or several: 2-8, 3,5 (default 8, the best of 1-8 on the open corpus split)")
    q.add_argument("--model", "-m", metavar="MODEL", help="also score the held-out tunes with this network (`default`, .safetensors or .pkl), for comparison")
    q.add_argument("--json", metavar="OUT", help="write the results as JSON ('-' = stdout)")
    q.set_defaults(func=_ngram)


def tune_id(x: str | None, title: str | None) -> str:
    """`  X:3 "Title"` for an ABC tune, "" when neither is known (data_v2 input).

    >>> tune_id("3", "The Kesh"), tune_id(None, None)
    ('  X:3 "The Kesh"', '')
    """
    out = f"  X:{x}" if x is not None else ""
    return out + (f' "{title}"' if title else "")


_SHARPS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_FLATS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_MODE_SHORT = {"Cmaj": "maj", "Cmin": "min", "Cdor": "dor", "Cmix": "mix"}


def in_key(mode_token: str, pc: int | None, key: tuple[str, bool] | None) -> tuple[str, str]:
    """(the tune's key as written, pitch class `pc` of the C-based tokens named in that key).

    v2 tokens are in C; an ABC tune read from D major is named as written.
    >>> in_key("K:Cmaj", 7, ("D", False)), in_key("K:Cdor", 0, ("G", False)), in_key("K:Cmin", 3, None)
    (('K:Dmaj', 'A'), ('K:Gdor', 'G'), ('K:Cmin', 'Eb'))
    >>> in_key("K:Cmaj", 5, ("Bb", True))[1]
    'Eb'
    """
    mode = mode_token.removeprefix("K:")
    tonic, flats = key if key else ("C", mode in ("Cmin", "Cdor"))
    shift = _FLATS.index(tonic) if tonic in _FLATS else _SHARPS.index(tonic) if tonic in _SHARPS else 0
    name = "-" if pc is None else (_FLATS if flats else _SHARPS)[(pc + shift) % 12]
    return f"K:{tonic}{_MODE_SHORT.get(mode, mode)}", name


def _write_json(dest: str, obj) -> None:
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    if dest == "-":
        print(text)
        return
    try:
        Path(dest).write_text(text + "\n", "utf-8")
    except OSError as e:
        raise FolkRNNError(f"{dest}: cannot write JSON: {e.strerror or e}") from None


def _evaluate(args: argparse.Namespace) -> int:
    from folkrnn.evaluate import EvaluateConfig, FormConfig, evaluate_file, format_table

    config = EvaluateConfig(copy_run=args.copy_run, ngram=args.ngram, form=FormConfig(same_part=args.same_part))
    if args.plots and Path(args.plots).exists() and not Path(args.plots).is_dir():
        raise FolkRNNError(f"--plots {args.plots}: exists and is not a directory")
    against = args.against
    if against == "default":
        from folkrnn.cli.corpus import cached_training_corpus

        against = str(cached_training_corpus("default", "evaluate"))
    ev = evaluate_file(args.file, against=against, config=config, progress=True)
    out = sys.stderr if args.json == "-" else sys.stdout
    if args.tunes:
        for k, r in enumerate(ev.reports):
            nov = f" run={r.extra['longest_run']}" if "longest_run" in r.extra else ""
            key, ends = in_key(r.mode, r.final_cadence, ev.keys[k] if k < len(ev.keys) else None)
            print(
                f"{r.number:5d} {r.meter:7s} {key:8s} bars {r.bars_right:3d}/{r.bars:<3d} "
                f"form {r.pattern or '-':8s} ends {ends:6s} "
                f"repeats {'ok' if r.repeats_ok else 'BAD'}{nov}{tune_id(r.x, r.title)}",
                file=out,
            )
        print(file=out)
    print(format_table(ev), file=out)
    for rej in ev.rejected[:5]:
        print(f"rejected: {rej.where}: {rej.reason}", file=sys.stderr)
    if len(ev.rejected) > 5:
        print(f"rejected: ... and {len(ev.rejected) - 5} more (see --json)", file=sys.stderr)
    if args.json:
        _write_json(args.json, ev.to_json())
    if args.plots:
        from folkrnn.evaluate.plots import write_plots

        paths = write_plots(
            args.plots,
            ev.distributions,
            ev.reference.distributions if ev.reference else None,
            label=Path(args.file).name,
            ref_label=Path(against).name if against else "reference",
            divergence=ev.reference.divergence if ev.reference else None,
        )
        print(f"wrote {len(paths)} plots to {args.plots}", file=sys.stderr)
    return 0


def _ngram(args: argparse.Namespace) -> int:
    from folkrnn.evaluate.load import load_tunes
    from folkrnn.ngram import parse_orders, sweep

    orders = parse_orders(args.order)
    data = load_tunes(args.train)
    if args.split:
        from folkrnn.train import TrainConfig, split_train_valid

        tr, va = split_train_valid(len(data.tunes), TrainConfig())
        train_tunes = [data.tunes[i] for i in tr]
        test_tunes = [data.tunes[i] for i in va]
        test_name = f"{args.train} (validation split)"
    else:
        train_tunes = data.tunes
        test_tunes = load_tunes(args.test).tunes
        test_name = args.test
    results = sweep(train_tunes, test_tunes, orders, progress=True)
    out = sys.stderr if args.json == "-" else sys.stdout
    print(f"train {args.train}: {len(train_tunes)} tunes; test {test_name}: {len(test_tunes)} tunes, {results[0][1].tokens} tokens predicted", file=out)
    print(f"{'order':>5}  {'nats/token':>10}  {'bits/token':>10}  {'perplexity':>10}", file=out)
    best = min(results, key=lambda kv: kv[1].nats_per_token)[0]
    for k, s in results:
        mark = "  <- best" if k == best and len(results) > 1 else ""
        print(f"{k:>5}  {s.nats_per_token:>10.4f}  {s.bits_per_token:>10.4f}  {s.perplexity:>10.3f}{mark}", file=out)
    network = None
    if args.model:
        from folkrnn.load import load_model
        from folkrnn.ngram import Score
        from folkrnn.sample import score_tunes

        ck = load_model(args.model)
        total, ntok = 0.0, 0
        for sc in score_tunes(ck.model, ck.vocab, test_tunes, progress=True, where=test_name):
            total += sc.total_nll
            ntok += len(sc.logprobs)
        network = Score(len(test_tunes), ntok, total)
        print(f"{'net':>5}  {network.nats_per_token:>10.4f}  {network.bits_per_token:>10.4f}  {network.perplexity:>10.3f}  ({args.model})", file=out)
    if args.json:
        _write_json(
            args.json,
            {
                "format": "folkrnn-ngram-score",
                "network": None if network is None else {"model": args.model, **network.to_json()},
                "model": "interpolated modified Kneser-Ney",
                "train": {"source": args.train, "tunes": len(train_tunes)},
                "test": {"source": test_name, "tunes": len(test_tunes)},
                "best_order": best,
                "orders": [{"order": k, **s.to_json()} for k, s in results],
            },
        )
    return 0
