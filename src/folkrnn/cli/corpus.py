"""`folkrnn corpus`: build a data_v2 training file (and a report) from tune sources."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    from folkrnn.corpus import DEFAULT_SOURCES

    p = sub.add_parser(
        "corpus",
        help="build a data_v2 token file from music21 collections, ABC files, thesession dumps",
        description=(
            "Read SOURCEs (music21 folk collections by name, .abc files, folders of .abc files, "
            "thesession.org tunes.json/tunes.csv dumps, data_v2 token files), keep the tunes that "
            "fit the v2 vocabulary, drop exact duplicates, and write them in data_v2 format. "
            f"Default sources: {' '.join(DEFAULT_SOURCES)}."
        ),
    )
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="where to read tunes (default: the music21 folk collections)")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="the data_v2 file to write")
    p.add_argument("--report", metavar="R.json", help="write a JSON report: per source read/kept/rejected by reason, histograms, file hashes")
    p.add_argument("--examples", type=int, default=5, metavar="N", help="examples kept in the report per rejection reason (default 5)")
    p.add_argument(
        "--repair", nargs="?", const="all", metavar="WHAT",
        help="read ABC sources with repairs (docs/corpus.md): 'all' (the default when WHAT is left out) or a "
             "comma list of bars (restore a bar line at a line break when the bar is full), mode (re-key a tune "
             "whose notes plainly disagree with its signature), reject-bars (reject a tune whose bars still do not "
             "add up), reject-mode (reject a tune whose notes plainly say a mode v2 lacks)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from folkrnn.corpus import build_corpus, format_summary
    from folkrnn.errors import FolkRNNError

    if args.examples < 0:
        raise FolkRNNError(f"--examples must be 0 or more, got {args.examples}")
    repair = parse_repair(args.repair) if args.repair is not None else None
    result = build_corpus(args.sources or None, max_examples=args.examples, progress=False if args.quiet else None,
                          repair=repair)
    kept = len(result.tunes)
    if not args.quiet:
        print(format_summary(result.report))
        if "repair" in result.report:
            r = result.report["repair"]
            print(f"repairs in kept tunes: {r['bars_restored']} bar lines restored in {r['tunes_with_bars_restored']} "
                  f"tunes, {r['rekeyed']} tunes re-keyed")
        sys.stdout.flush()  # keep the table before the stderr lines when both go to a terminal
    if kept == 0:
        if args.report:
            result.write_report(args.report, output=None)
        where = f"; see {args.report}" if args.report else ""
        raise FolkRNNError(f"no tune kept from {len(result.report['sources'])} source(s), {args.output} not written{where}")
    digest = result.write(args.output)
    if args.report:
        result.write_report(args.report, output={"path": args.output, "sha256": digest, "tunes": kept})
    if not args.quiet:
        print(f"wrote {kept} transcriptions to {args.output}" + (f", report {args.report}" if args.report else ""), file=sys.stderr)
    return 0


REPAIRS = ("bars", "mode", "reject-bars", "reject-mode")


def parse_repair(text: str):
    """`--repair` value -> RepairConfig; FolkRNNError names an unknown repair.

    >>> parse_repair("bars,reject-bars")
    RepairConfig(bars=True, mode=False, reject_bars=True, reject_mode=False, mode_config=ModeConfig(consistent=0.8, min_fit=0.9, min_degree=0.04, triad_margin=1.2))
    """
    from folkrnn.errors import FolkRNNError
    from folkrnn.repair import RepairConfig

    words = [w.strip() for w in text.split(",") if w.strip()]
    if words == ["all"]:
        return RepairConfig()
    bad = [w for w in words if w not in REPAIRS]
    if bad or not words:
        raise FolkRNNError(f"--repair {text!r}: expected 'all' or a comma list of {', '.join(REPAIRS)}")
    return RepairConfig(bars="bars" in words, mode="mode" in words, reject_bars="reject-bars" in words,
                        reject_mode="reject-mode" in words)
