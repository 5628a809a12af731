"""Speed of the ABC -> v2 tokenizer against music21's ABC parser, same tunes, same run.

Tokenizes the open corpus (music21's bundled oneills1850, ryansMammoth, airdsAirs,
miscFolk: about 4,400 tunes), best of a few passes, then times music21's
`converter.parse(..., format='abc')` on a seeded sample of the same tunes (it runs
at about 10 tunes/s, so a sample is enough) and prints both rates and the ratio.
Target: >= 2,000 tunes/s for ours.

    .venv/bin/python bench/tokenize.py [--sample 50] [--repeat 3] [--seed 0]
"""

from __future__ import annotations

import os
import sys

# This file's name shadows the standard library's `tokenize` (which `linecache`
# and others import) when run as a script: drop bench/ from the import path first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import glob  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

from folkrnn.abc import read_abc  # noqa: E402

COLLECTIONS = ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")


def corpus_files() -> list[str]:
    import music21

    root = os.path.join(os.path.dirname(music21.__file__), "corpus")
    return [f for c in COLLECTIONS for f in sorted(glob.glob(os.path.join(root, c, "*.abc")))]


def read_texts(files: list[str]) -> list[tuple[str, str]]:
    out = []
    for f in files:
        data = open(f, "rb").read()
        try:
            out.append((f, data.decode("utf-8")))
        except UnicodeDecodeError:
            out.append((f, data.decode("latin-1")))
    return out


def tune_texts(name: str, text: str) -> list[str]:
    """The ABC text of each tune of a file (X: line to the next blank line)."""
    lines = text.replace("\r\n", "\n").split("\n")
    tunes = []
    for r in read_abc(text, name):
        i = r.line - 1
        j = i + 1
        while j < len(lines) and lines[j].strip():
            j += 1
        tunes.append("\n".join(lines[i:j]) + "\n")
    return tunes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sample", type=int, default=50, help="tunes given to music21 (default 50)")
    ap.add_argument("--repeat", type=int, default=3, help="passes of our tokenizer; the best is reported")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    texts = read_texts(corpus_files())
    best = float("inf")
    n = kept = 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        n = kept = 0
        for name, text in texts:
            for r in read_abc(text, name):
                n += 1
                kept += r.tokens is not None
        best = min(best, time.perf_counter() - t0)
    ours = n / best
    print(f"folkrnn.abc: {n} tunes ({kept} kept, {100 * kept / n:.1f}%) in {best:.3f} s = {ours:,.0f} tunes/s"
          f" (best of {args.repeat}; target >= 2,000)")

    import music21

    warnings.simplefilter("ignore")
    all_tunes = [t for name, text in texts for t in tune_texts(name, text)]
    sample = random.Random(args.seed).sample(all_tunes, min(args.sample, len(all_tunes)))
    t0 = time.perf_counter()
    failed = 0
    for t in sample:
        try:
            music21.converter.parse(t, format="abc")
        except Exception:  # music21 raises many kinds; a failure still counts its time
            failed += 1
    dt = time.perf_counter() - t0
    theirs = len(sample) / dt
    t0 = time.perf_counter()
    for t in sample:
        list(read_abc(t))
    ours_sample = len(sample) / (time.perf_counter() - t0)
    print(f"music21:     {len(sample)} sampled tunes ({failed} failed) in {dt:.2f} s = {theirs:,.1f} tunes/s")
    print(f"folkrnn.abc on the same sample: {ours_sample:,.0f} tunes/s")
    print(f"ratio (ours / music21): {ours / theirs:,.0f}x (corpus rate), {ours_sample / theirs:,.0f}x (same sample)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
