"""`folkrnn tokenize` (ABC -> data_v2 tokens) and `folkrnn abc` (data_v2 -> ABC)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter


def register(sub) -> None:
    p = sub.add_parser(
        "tokenize",
        help="ABC files -> folk-rnn v2 tokens (data_v2 format)",
        description=(
            "Read ABC files (several tunes each), transpose every tune to C and write the ones "
            "v2 can express in data_v2 format. Each rejected tune gets one line on stderr with "
            "the reason, and each kept tune whose reading dropped or changed something (ties made "
            "repeated notes, grace notes, chord symbols, decorations, slurs, lyrics...) one line "
            "saying what. Exit 0 if any tune was kept, 2 if none."
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="ABC files ('-' for stdin)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the tokens here instead of stdout")
    p.add_argument("--strict", action="store_true",
                   help="reject a tune whose reading would drop or change anything, instead of keeping it")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per rejected or changed tune, no summary")
    p.set_defaults(func=run_tokenize)

    p = sub.add_parser(
        "abc",
        help="folk-rnn v2 tokens (data_v2 file) -> ABC",
        description="Write each transcription of a data_v2 file as a standard ABC tune (X, T, M, L:1/8, K).",
    )
    p.add_argument("file", metavar="TOKEN_FILE",
                   help="a data_v2 token file, as `folkrnn tokenize` or `generate -f tokens` writes it ('-' for stdin)")
    p.add_argument("--key", default="C", help="tonic to write the tunes in, e.g. D, F#, Bb (default C)")
    p.add_argument("--title", default="folkrnn tune", help="title prefix (default 'folkrnn tune'; the tune number is added)")
    p.add_argument("-o", "--output", metavar="OUT", help="write the ABC here instead of stdout")
    p.set_defaults(func=run_abc)


def _progress(items, total: int, desc: str):
    from folkrnn.files import progress

    # Only worth a bar for many files, and only on a terminal.
    return progress(items, total=total, desc=desc, unit="file", enabled=None if total > 20 else False, leave=True, delay=0)


def run_tokenize(args: argparse.Namespace) -> int:
    from folkrnn.abc import read_abc, read_abc_file
    from folkrnn.datafile import format_tune
    from folkrnn.errors import FolkRNNError

    kept: list[tuple[str, ...]] = []
    reasons: Counter[str] = Counter()
    total = changed = 0
    lossless = args.strict  # --strict: a tune the reading would change is rejected
    for name in _progress(args.files, len(args.files), "tokenize"):
        if name == "-":
            results = read_abc(sys.stdin.read(), "<stdin>", lossless=lossless)
        else:
            results = read_abc_file(name, lossless=lossless)
        for r in results:
            total += 1
            if r.tokens is not None:
                kept.append(r.tokens)
                if r.changes:
                    changed += 1
                    if not args.quiet:
                        print(f"{r.label()}: changed: {r.change_summary()}", file=sys.stderr)
            else:
                reasons[r.reason or "malformed"] += 1
                if not args.quiet:
                    print(f"{r.label()}: rejected ({r.reason}): {r.detail}", file=sys.stderr)
    if not kept:
        raise FolkRNNError(f"no usable tune in {', '.join(args.files)} ({total} tune(s) read, all rejected)"
                           if total else f"no ABC tune (X: or K: field) found in {', '.join(args.files)}")
    text = "\n".join(format_tune(t) for t in kept)
    _emit(text, args.output)
    if not args.quiet:
        why = ", ".join(f"{k} {n}" for k, n in reasons.most_common())
        print(f"kept {len(kept)} of {total} tunes ({100 * len(kept) / total:.1f}%)"
              + (f", {changed} of them changed" if changed else "") + (f"; rejected: {why}" if why else ""),
              file=sys.stderr)
    return 0


def run_abc(args: argparse.Namespace) -> int:
    from folkrnn.abc import parse_key, tokens_to_abc
    from folkrnn.datafile import read_tunes
    from folkrnn.errors import FolkRNNError
    from folkrnn.vocab import Vocabulary

    parse_key(args.key)  # a bad key is reported before any work
    source = sys.stdin if args.file == "-" else args.file
    tunes = read_tunes(source, vocab=Vocabulary.v2())
    name = "<stdin>" if args.file == "-" else args.file
    parts = []
    for n, tune in enumerate(tunes, start=1):
        try:
            parts.append(tokens_to_abc(tune, key=args.key, x=n, title=f"{args.title} {n}"))
        except FolkRNNError as e:
            raise FolkRNNError(f"{name}: transcription {n}: {e}") from None
    text = "\n".join(parts)
    _emit(text, args.output)
    return 0


def _emit(text: str, output: str | None) -> None:
    """Write to the -o file, or to stdout."""
    from folkrnn.errors import FolkRNNError

    if not output:
        sys.stdout.write(text)
        return
    try:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        raise FolkRNNError(f"{output}: {e.strerror or e}") from None
