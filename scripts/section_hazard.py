"""Does the model count bars to the end of a section? The `:|` hazard by bar number.

    .venv/bin/python scripts/section_hazard.py -m MODEL --real runs/bi_valid.txt \
        --generated "generated T1=gen_T1.txt" [--generated LABEL=FILE ...] [--png out.png] [--json out.json]

A thin command line over `folkrnn.interp.sections` (where the measurements are defined).
At every bar line of a tune, k = the full bars of its section so far (a pickup bar not
counted). For each k it prints:
- corpus: the share of real tunes' bar lines after bar k that are `:|` (the true hazard);
- teacher-forced: the model's mean probability of `:|` at those same bar lines,
  reading the real tune up to there, given that a bar line comes (P(:|) / P(any bar token));
- each --generated file: the share of the model's own tunes' bar lines after bar k that are `:|`;
then the 95% bootstrap intervals (resampling tunes) of each row.

If the model counts, its teacher-forced hazard peaks at k = 8 like the corpus's; a model
that only knows "sections end after a while" spreads it over k = 5-12. Then the edits of
`count_or_cadence` tell counting from listening for the cadence (means over tunes with
95% bootstrap intervals, and paired sign-flip tests).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from folkrnn.datafile import read_tunes
from folkrnn.interp import sections as S
from folkrnn.load import load_model


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--real", required=True, help="real tunes (data_v2), e.g. the held-out ones")
    ap.add_argument("--generated", action="append", default=[], help="LABEL=FILE of the model's own tunes")
    ap.add_argument("--seed", type=int, default=0, help="seed of the bootstrap and the sign flips")
    ap.add_argument("--png")
    ap.add_argument("--json")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    ck = load_model(args.model)
    real = list(read_tunes(args.real))
    tables = {"corpus": S.hazard(S.empirical_values(real), rng),
              "teacher-forced": S.hazard(S.teacher_forced_values(ck.model, ck.vocab, real), rng)}
    for g in args.generated:
        label, path = g.split("=", 1)
        tables[label] = S.hazard(S.empirical_values(read_tunes(path)), rng)
    ks = list(range(1, S.KMAX + 1))

    def row(vals):
        return " ".join(f"{v:5.2f}" if v is not None else "    -" for v in vals)

    print(f"k (bars of the section so far; {S.KMAX} = {S.KMAX}+)  " + " ".join(f"{k:>5}" for k in ks))
    for name, h in tables.items():
        print(f"{name:<40} " + row(h["rate"]))
    print(f"{'bar lines (corpus)':<40} " + " ".join(f"{c:5d}" for c in tables["corpus"]["bar_lines"]))
    print("95% intervals (bootstrap over tunes), low / high:")
    for name, h in tables.items():
        print(f"  {name + ' low':<38} " + row(h["lo"]))
        print(f"  {name + ' high':<38} " + row(h["hi"]))
    cc = S.count_or_cadence(ck.model, ck.vocab, real, rng)
    print(f"counting or cadence ({cc['tunes']} real tunes whose first section is 8 full bars closed by :|), "
          "mean P(:| | a bar line) [95% interval]:")
    for cond, reads in cc["conditions"].items():
        print(f"  {cond:<22} " + "  ".join(f"{w}: {m['mean']:.3f} [{m['lo']:.3f}, {m['hi']:.3f}]" for w, m in reads.items()))
    print("paired tests (difference of per-tune probabilities, sign-flip p):")
    for name, t in cc["tests"].items():
        print(f"  {name:<36} {t['difference']:+.3f} [{t['lo']:+.3f}, {t['hi']:+.3f}]  p = {t['p']:.2g}")
    print("control swaps that change nothing (the two bars are the same): "
          + ", ".join(f"{c}: {n} tunes" for c, n in cc["unchanged"].items()))
    print(f"verdict: {S.verdict(cc)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "real": args.real, "hazard": tables,
                       "count_or_cadence": {k: cc[k] for k in ("tunes", "candidates", "conditions", "tests", "unchanged")},
                       "verdict": S.verdict(cc)}, f, indent=1)
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6))
        for name, h in tables.items():
            xs = [k for k in ks if h["rate"][k - 1] is not None]
            ax.plot(xs, [h["rate"][k - 1] for k in xs], marker="o", label=name)
            ax.fill_between(xs, [h["lo"][k - 1] for k in xs], [h["hi"][k - 1] for k in xs], alpha=0.15, lw=0)
        ax.set_xlabel("bars of the section so far (pickup not counted)")
        ax.set_ylabel("share of bar lines that are :|")
        ax.set_xticks(ks)
        ax.set_title("Where sections end: real tunes, the model reading them, its own tunes")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    return 0


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    raise SystemExit(main())
