"""Memory and time of `run_with_cache`: every hook point of the first N tunes of a data_v2 file.

    .venv/bin/python bench/cache.py CORPUS [-m MODEL] [--tunes 1000] [--dtype float16] [--compact] [--threads 1]

Each tune is fed as the model reads it (`<s>` and its tokens, one cached row per token).
Prints the tokens, the cache's own bytes, the process's peak resident memory before
and after (Linux ru_maxrss) and the seconds. Target: all hook points of 1,000 corpus
tunes in float16 within 2 GB. Run dense and --compact in separate processes (the peak
is per process).
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/cache.py`, this folder is sys.path[0]; a sibling script named like a
# stdlib module (bench/tokenize.py) would then shadow it. Keep only the stdlib's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from folkrnn.datafile import read_tunes  # noqa: E402
from folkrnn.load import load_model  # noqa: E402


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus")
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--tunes", type=int, default=1000)
    ap.add_argument("--dtype", default="float16", choices=("float16", "bfloat16", "float32"))
    ap.add_argument("--compact", action="store_true")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    ck = load_model(args.model)
    model, vocab = ck.model, ck.vocab
    tunes = read_tunes(args.corpus, vocab)[: args.tunes]
    seqs = [torch.tensor([vocab.bos] + vocab.encode(t)) for t in tunes]
    before = peak_mib()
    t = time.perf_counter()
    cache = model.run_with_cache(seqs, names=None, dtype=getattr(torch, args.dtype), batch_size=args.batch, compact=args.compact)
    sec = time.perf_counter() - t
    after = peak_mib()
    print(f"{len(tunes)} tunes, {len(cache)} tokens, {len(cache.names)} hook points, {args.dtype}{', compact' if args.compact else ''}")
    print(f"cache {cache.nbytes / 2**30:.3f} GiB ({cache.nbytes / len(cache) / 1024:.1f} KiB a token); "
          f"peak RSS {before / 1024:.2f} GiB before, {after / 1024:.2f} GiB after; {sec:.1f} s")
    if args.compact:
        t = time.perf_counter()
        h = cache["layers.2.hook_h"]
        print(f"reading a derived point (layers.2.hook_h, {tuple(h.shape)}): {time.perf_counter() - t:.1f} s, peak RSS {peak_mib() / 1024:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
