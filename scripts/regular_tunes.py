"""Training subsets of a corpus: its regular dance tunes, or a seeded fraction (learning curves).

    .venv/bin/python scripts/regular_tunes.py runs/openfolk.txt -o runs/regular.txt \
        --valid-out runs/bi_valid.txt
    .venv/bin/python scripts/regular_tunes.py runs/openfolk.txt --all --fraction 0.25 -o runs/quarter.txt

With `--all`, every training tune is a candidate; `--fraction F` keeps a seeded share of
the candidates (the 25% subset is inside the 50% one for the same `--subset-seed`).

Keeps the tunes that `folkrnn train` trains on with the default split (seed 42, 5%) and
whose sections, as `folkrnn evaluate` counts them (a pickup is no bar of its own), are all
8 bars long, with every bar right and no repeat error. The held-out tunes never enter the
output, so a model fine-tuned on it (`folkrnn train runs/regular.txt --init default`) is
measured on tunes it has never seen (`folkrnn score runs/bi_valid.txt -m RUN/best.safetensors`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from folkrnn.datafile import read_tunes, write_tunes
from folkrnn.evaluate.tune import analyse_tune
from folkrnn.files import sha256_file
from folkrnn.train import TrainConfig, split_train_valid


def is_regular(tokens, bars: int = 8) -> bool:
    r = analyse_tune(tokens)
    return (bool(r.sections) and all(s.bars == bars for s in r.sections) and r.bars_right == r.bars
            and not r.repeat_errors)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", type=Path, help="data_v2 file (folkrnn corpus)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--valid-out", type=Path, help="write the corpus's held-out tunes here")
    ap.add_argument("--bars", type=int, default=8, help="bars a section (default 8)")
    ap.add_argument("--split-seed", type=int, default=TrainConfig().split_seed)
    ap.add_argument("--all", action="store_true", help="keep every training tune, regular or not")
    ap.add_argument("--fraction", type=float, default=1.0, help="keep this seeded share of the tunes (default 1)")
    ap.add_argument("--subset-seed", type=int, default=0)
    args = ap.parse_args()
    if not 0 < args.fraction <= 1:
        ap.error("--fraction must be in (0, 1]")
    tunes = read_tunes(args.corpus)
    train, valid = split_train_valid(len(tunes), TrainConfig(split_seed=args.split_seed))
    kept = [i for i in train if args.all or is_regular(tunes[i], args.bars)]
    if args.fraction < 1:
        import torch

        order = torch.randperm(len(kept), generator=torch.Generator().manual_seed(args.subset_seed)).tolist()
        kept = sorted(kept[j] for j in order[: round(args.fraction * len(kept))])
    write_tunes(args.out, [tunes[i] for i in kept])
    what = "training tunes" if args.all else f"training tunes with only {args.bars}-bar sections"
    print(f"{args.out}: {len(kept)} {what} of {len(train)}, sha256 {sha256_file(args.out)[:16]}", file=sys.stderr)
    if args.valid_out:
        write_tunes(args.valid_out, [tunes[i] for i in valid])
        print(f"{args.valid_out}: {len(valid)} held-out tunes, sha256 {sha256_file(args.valid_out)[:16]}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
