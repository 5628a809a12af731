"""Round trip of a token corpus through the ABC writer and reader: tokens -> ABC -> tokens.

Counts the tunes read back identically, those read back as their repaired tokens
(`make_writable`: what differs is what the writer must mend or normalise,
e.g. chord lengths moved inside), and failures, with the kinds of repair seen.

    PYTHONPATH=src .venv/bin/python scripts/abc_round_trip.py runs/openfolk.txt [--key D]
"""

from __future__ import annotations

import argparse
import collections
import sys

from folkrnn.abc import tokens_to_abc, tune_to_tokens
from folkrnn.abc.writer import make_writable
from folkrnn.datafile import read_tunes
from folkrnn.errors import FolkRNNError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("--key", default="C")
    args = ap.parse_args(argv)
    tunes = read_tunes(args.corpus)
    same = repaired = failed = 0
    kinds: collections.Counter[str] = collections.Counter()
    for i, tune in enumerate(tunes):
        try:
            back = tune_to_tokens(tokens_to_abc(tune, key=args.key))
        except FolkRNNError as e:
            failed += 1
            print(f"tune {i + 1}: {e}", file=sys.stderr)
            continue
        if back == list(tune):
            same += 1
            continue
        want, notes = make_writable(tune)
        if back == want:
            repaired += 1
            kinds.update(n.split(": ", 1)[1].split(" (x")[0] for n in notes)
            if not notes:
                kinds["chord lengths moved inside (no note)"] += 1
        else:
            failed += 1
            print(f"tune {i + 1}: read back other tokens", file=sys.stderr)
    print(f"{len(tunes)} tunes: {same} identical, {repaired} read back as repaired, {failed} failed")
    for k, n in kinds.most_common():
        print(f"  {n} x {k}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
