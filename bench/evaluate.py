"""Speed of `folkrnn evaluate`: 30,000 tunes without --against in under a minute.

Builds a 30,000-tune data_v2 file by repeating the 64 generated samples, then
times reading + evaluating it the way the CLI does (no JSON, no plots), and
optionally with --against (the samples as reference) and the n-gram baseline.
Prints figures; asserts nothing.

    .venv/bin/python bench/evaluate.py [--tunes 30000] [--against] [--ngram]
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/evaluate.py`, this folder is sys.path[0]; a sibling script named
# like a stdlib module (bench/tokenize.py) would then shadow it. Keep only the stdlib's.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from folkrnn.datafile import read_tunes, write_tunes  # noqa: E402
from folkrnn.evaluate import EvaluateConfig, evaluate_file  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "folkrnn_v2_generated_samples.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tunes", type=int, default=30000)
    ap.add_argument("--samples", default=str(SAMPLES))
    ap.add_argument("--against", action="store_true", help="also time evaluation against the 64 samples")
    ap.add_argument("--ngram", action="store_true", help="also time the n-gram baseline (order 8) on the big file")
    args = ap.parse_args()
    base = read_tunes(args.samples)
    tunes = [base[i % len(base)] for i in range(args.tunes)]
    ntok = sum(len(t) for t in tunes)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.txt"
        write_tunes(path, tunes)
        t0 = time.perf_counter()
        ev = evaluate_file(path, config=EvaluateConfig(), progress=sys.stderr.isatty())
        dt = time.perf_counter() - t0
        print(f"evaluate {len(ev.reports)} tunes ({ntok} tokens), no --against: {dt:.2f} s "
              f"({len(ev.reports) / dt:.0f} tunes/s, {ntok / dt / 1e6:.2f} M tokens/s); target < 60 s: "
              f"{'met' if dt < 60 else 'MISSED'}")
        print(f"  bars right {100 * ev.summary['bars_right']:.2f}%  AABB {100 * ev.summary['pattern_AABB']:.1f}%")
        if args.against:
            t0 = time.perf_counter()
            ev = evaluate_file(path, against=args.samples, progress=sys.stderr.isatty())
            dt = time.perf_counter() - t0
            print(f"evaluate {len(ev.reports)} tunes --against {len(base)} tunes: {dt:.2f} s")
        if args.ngram:
            from folkrnn.ngram import NGramModel

            t0 = time.perf_counter()
            m = NGramModel.train(tunes, order=8)
            t1 = time.perf_counter()
            s = m.score(base)
            t2 = time.perf_counter()
            print(f"ngram order 8: train on {ntok} tokens {t1 - t0:.2f} s, score {s.tokens} tokens {t2 - t1:.3f} s")


if __name__ == "__main__":
    main()
