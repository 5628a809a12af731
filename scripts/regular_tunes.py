"""The regular dance tunes of a corpus: its training tunes whose every section is 8 bars.

    .venv/bin/python scripts/regular_tunes.py runs/openfolk.txt -o runs/regular.txt \
        --valid-out runs/bi_valid.txt

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
    args = ap.parse_args()
    tunes = read_tunes(args.corpus)
    train, valid = split_train_valid(len(tunes), TrainConfig(split_seed=args.split_seed))
    kept = [tunes[i] for i in train if is_regular(tunes[i], args.bars)]
    write_tunes(args.out, kept)
    print(f"{args.out}: {len(kept)} of {len(train)} training tunes have only {args.bars}-bar sections, "
          f"sha256 {sha256_file(args.out)[:16]}", file=sys.stderr)
    if args.valid_out:
        write_tunes(args.valid_out, [tunes[i] for i in valid])
        print(f"{args.valid_out}: {len(valid)} held-out tunes, sha256 {sha256_file(args.valid_out)[:16]}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
