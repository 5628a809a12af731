"""What the sampling controls do to every evaluate figure: free, --bars strict, --form.

    .venv/bin/python scripts/form_study.py -m default -n 1000 --corpus runs/openfolk.txt \
        --original ../shared/data/folkrnn_v2_generated_samples.txt [--json study.json]

For each condition, samples `-n` tunes at temperature `-t` with the same seed (tune i is a
function of the seed and i), times the sampling, scores every tune under the model
(log-probability per token of the tokens chosen, the cost of a control), evaluates them
as `folkrnn evaluate --against CORPUS` does, and prints one markdown table: the corpus's
own tunes and the original v2's samples beside the conditions. A condition is
`NAME=OPTIONS` with generate's own option names (`--condition "AABB ends=--form AABB
--endings 1"`); the defaults cover free, strict, AABB, AABB with endings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from folkrnn.datafile import read_tunes
from folkrnn.evaluate import EvaluateConfig, evaluate_tunes
from folkrnn.load import load_model
from folkrnn.sample import SampleConfig, sample
from folkrnn.sample.types import shape_of
from folkrnn.tokens import kind
from folkrnn.vocab import Vocabulary

VOCAB = Vocabulary.v2()

DEFAULT_CONDITIONS = (
    "free=",
    "--bars strict=--bars strict",
    "--form AABB=--form AABB",
    "--form AABB --endings 1=--form AABB --endings 1",
)
COLUMNS = (
    ("tunes/s", None), ("nats/token", None), ("bars right", "bars_right"), ("8-bar sections", "sections_8_bars"),
    ("all sections 8 bars", "tunes_all_sections_8_bars"), ("AABB", "pattern_AABB"), ("repeats ok", "repeats_ok"),
    ("tonic ending", "final_tonic"), ("sections end on tonic", "section_ends_tonic"),
    ("copies >= 16", "tunes_copying"), ("broken/bar", None), ("notes/bar", None),
)


def parse_condition(text: str) -> tuple[str, dict]:
    """`NAME=OPTIONS` -> (name, SampleConfig keywords). Only the sampling options a study needs."""
    name, sep, opts = text.partition("=")
    if not sep:
        raise SystemExit(f"--condition {text!r}: write NAME=OPTIONS (the name without '=')")
    ap = argparse.ArgumentParser(prog=name, add_help=False, exit_on_error=False)
    ap.add_argument("--bars", default="free")
    ap.add_argument("--form", default=None)
    ap.add_argument("--endings", type=int, default=0)
    ap.add_argument("--form-bars", type=int, default=8)
    ap.add_argument("--form-candidates", type=int, default=8)
    ap.add_argument("--form-lookahead", type=int, default=2)
    ap.add_argument("--close-temperature", type=float, default=0.5)
    ap.add_argument("--form-sharpness", type=float, default=1.0)
    ap.add_argument("--meter", default=None)
    ap.add_argument("--type", default=None)
    ap.add_argument("--feel", type=float, default=1.0)
    a = ap.parse_args(shlex.split(opts))
    shape = shape_of(a.type, a.form, a.form_bars, a.endings, a.meter, a.feel, a.form_candidates, a.form_lookahead,
                     close_temperature=a.close_temperature)  # the rules generate and the studio follow
    kw: dict = {"bars": a.bars, "logit_bias": shape.logit_bias(VOCAB)}
    if shape.form is not None:
        kw["form"] = dataclasses.replace(shape.form, sharpness=a.form_sharpness)
    if shape.meter:
        kw["prime"] = (f"M:{shape.meter}",)
    return name.strip(), kw


def figures(tunes, reference, nats: float | None = None, rate: float | None = None) -> dict:
    s = evaluate_tunes(tunes, EvaluateConfig(), reference=reference).summary
    broken = sum(kind(x) == "broken" for t in tunes for x in t) / max(1, s["bars"])
    notes = sum(kind(x) == "pitch" for t in tunes for x in t) / max(1, s["bars"])
    return {"tunes/s": rate, "nats/token": nats, "broken/bar": broken, "notes/bar": notes,
            **{label: s.get(key) for label, key in COLUMNS if key}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("-n", "--num-tunes", type=int, default=1000)
    ap.add_argument("-t", "--temperature", type=float, default=1.0)
    ap.add_argument("-s", "--seed", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--corpus", type=Path, help="the training corpus (data_v2): its own row, and --against for copies")
    ap.add_argument("--original", type=Path, help="the original v2's samples (data_v2): their own row")
    ap.add_argument("--subset", action="append", default=[], metavar="NAME=FILE",
                    help="another reference row, e.g. the corpus's tagged hornpipes (repeatable)")
    ap.add_argument("--condition", action="append", help="NAME=OPTIONS (repeatable; default: free, strict, AABB, AABB endings)")
    ap.add_argument("--json", type=Path, help="write the table as JSON")
    ap.add_argument("--save", type=Path, help="folder: write each condition's tunes as NAME.txt")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ck = load_model(args.model)
    model, vocab = ck.model, ck.vocab
    reference = read_tunes(args.corpus) if args.corpus else None
    rows: dict[str, dict] = {}
    if reference is not None:
        rows["corpus (its own tunes)"] = figures(reference, None)
    if args.original:
        rows["original v2 samples"] = figures(read_tunes(args.original), None)
    for spec in args.subset:
        name, _, path = spec.partition("=")
        rows[name] = figures(read_tunes(Path(path)), None)
    for text in args.condition or DEFAULT_CONDITIONS:
        name, kw = parse_condition(text)
        cfg = SampleConfig(num_tunes=args.num_tunes, temperature=args.temperature, seed=args.seed,
                           batch_size=args.batch_size, **kw)
        t0 = time.perf_counter()
        tunes = list(sample(model, vocab, cfg))
        dt = time.perf_counter() - t0
        toks = [t.tokens for t in tunes]
        nats = -sum(t.logprob for t in tunes) / sum(t.length for t in tunes)  # length counts </s> where it ended
        rows[name] = figures(toks, reference, nats, len(tunes) / dt)
        print(f"{name}: {len(tunes)} tunes in {dt:.1f} s: {json.dumps(rows[name])}", file=sys.stderr, flush=True)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            (args.save / f"{name.replace(' ', '_').replace('-', '')}.txt").write_text(
                "".join(" ".join(t) + "\n\n" for t in toks), "utf-8")
    head = ["", *[c for c, _ in COLUMNS]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in rows.items():
        cells = []
        for label, key in COLUMNS:
            v = r.get(label)
            cells.append("" if v is None else f"{v:.1f}" if label == "tunes/s" else f"{v:.3f}" if label in (
                "nats/token", "broken/bar", "notes/bar") else f"{100 * v:.1f}%")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "temperature": args.temperature, "seed": args.seed,
                                         "tunes": args.num_tunes, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
