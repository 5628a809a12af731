"""The pretraining corpus of the shipped model: Essen songs + the British Isles training tunes.

    .venv/bin/python scripts/pretrain_corpus.py runs/essen.txt runs/openfolk.txt \
        -o runs/pretrain.txt --valid-out runs/bi_valid.txt --extra-valid-out runs/essen_valid.txt

Writes every tune of the first file, then the tunes of the second that `folkrnn train`
trains on with the default split (seed 42, 5%): its held-out tunes never enter pretraining,
so a model fine-tuned on the second file is validated on tunes it has never seen. The
held-out tunes go to --valid-out (to measure any model on them: `folkrnn score FILE -m M`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from folkrnn.datafile import read_tunes, write_tunes
from folkrnn.files import sha256_file
from folkrnn.train import TrainConfig, split_train_valid


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("extra", type=Path, help="data_v2 file used whole (e.g. the repaired Essen songs)")
    ap.add_argument("target", type=Path, help="data_v2 file of the fine-tuning corpus (its training split is used)")
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--valid-out", type=Path, help="write the target's held-out tunes here")
    ap.add_argument("--extra-valid-out", type=Path,
                    help="write the first file's tunes that a pretraining run on OUT holds out (same default split)")
    ap.add_argument("--split-seed", type=int, default=TrainConfig().split_seed)
    args = ap.parse_args()
    extra, target = read_tunes(args.extra), read_tunes(args.target)
    train, valid = split_train_valid(len(target), TrainConfig(split_seed=args.split_seed))
    combined = extra + [target[i] for i in train]
    write_tunes(args.out, combined)
    print(f"{args.out}: {len(extra)} + {len(train)} tunes, sha256 {sha256_file(args.out)[:16]}", file=sys.stderr)
    if args.valid_out:
        write_tunes(args.valid_out, [target[i] for i in valid])
        print(f"{args.valid_out}: {len(valid)} held-out tunes, sha256 {sha256_file(args.valid_out)[:16]}", file=sys.stderr)
    if args.extra_valid_out:
        _, held = split_train_valid(len(combined), TrainConfig(split_seed=args.split_seed))
        mine = [combined[i] for i in held if i < len(extra)]
        write_tunes(args.extra_valid_out, mine)
        print(f"{args.extra_valid_out}: {len(mine)} tunes of {args.extra} held out by pretraining, sha256 "
              f"{sha256_file(args.extra_valid_out)[:16]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
