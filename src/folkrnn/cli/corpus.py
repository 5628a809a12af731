"""`folkrnn corpus`: build a data_v2 training file (and a report) from tune sources, or
rebuild the one a model learned from (`--as-trained`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(sub) -> None:
    from folkrnn.corpus import DEFAULT_SOURCES

    p = sub.add_parser(
        "corpus",
        help="build a data_v2 token file from music21 collections, ABC files, thesession dumps",
        description=(
            "Read SOURCEs (music21 folk collections by name, .abc files, folders of .abc files, "
            "thesession.org tunes.json/tunes.csv dumps, data_v2 token files), keep the tunes that "
            "fit the v2 vocabulary, drop exact duplicates, and write them in data_v2 format. "
            f"Default sources: {' '.join(DEFAULT_SOURCES)}. With --as-trained -m MODEL, rebuild instead the very "
            "file MODEL learned from (its sha256 is checked against the one MODEL records)."
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
    p.add_argument(
        "--as-trained", action="store_true",
        help="rebuild the training file MODEL (-m) learned from, bit for bit: today's reader plus the recorded tokens "
             "of the tunes it reads differently (folkrnn/data/as_trained_*.json); exit 2 if the sha256 differs from "
             "MODEL's record (e.g. another music21 version). Takes no SOURCE and no --repair",
    )
    p.add_argument("-m", "--model", default=None, metavar="MODEL",
                   help="with --as-trained: `default` (the shipped model) or a .safetensors checkpoint (default: default)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from folkrnn.corpus import build_corpus, format_summary
    from folkrnn.errors import FolkRNNError

    if args.examples < 0:
        raise FolkRNNError(f"--examples must be 0 or more, got {args.examples}")
    if args.as_trained:
        if args.sources or args.repair is not None:
            raise FolkRNNError("--as-trained takes no SOURCE and no --repair: the model's record says what to read")
        from folkrnn.corpus import build_as_trained

        result = build_as_trained(training_sha256(args.model or "default"), max_examples=args.examples,
                                  progress=False if args.quiet else None)
    elif args.model is not None:
        raise FolkRNNError("-m/--model goes with --as-trained")
    else:
        repair = parse_repair(args.repair) if args.repair is not None else None
        result = build_corpus(args.sources or None, max_examples=args.examples,
                              progress=False if args.quiet else None, repair=repair)
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
        print(f"wrote {kept} transcriptions to {args.output}" + (f", report {args.report}" if args.report else "")
              + (f"; sha256 {digest} as {args.model or 'default'} records" if args.as_trained else ""),
              file=sys.stderr)
    return 0


def training_sha256(model: str) -> str:
    """The sha256 of the training file `model` (`default` or a checkpoint) records; FolkRNNError if none."""
    from folkrnn.checkpoint import read_metadata
    from folkrnn.errors import FolkRNNError
    from folkrnn.load import is_pickle, resolve_model_path

    path = resolve_model_path(model)
    if is_pickle(path):
        raise FolkRNNError(f"{model}: a Lasagne pickle records no training file")
    data = (read_metadata(path).get("training") or {}).get("data") or {}
    sha = data.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64:
        raise FolkRNNError(f"{model}: the checkpoint records no sha256 of its training file")
    return sha


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/folkrnn` (default ~/.cache/folkrnn)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "folkrnn"


def cached_training_corpus(model: str, command: str) -> Path:
    """The training file `model` learned from, rebuilt once (`--as-trained`) into the cache
    folder and reused while its sha256 still matches; one line on stderr says which."""
    from folkrnn.corpus import build_as_trained
    from folkrnn.errors import FolkRNNError
    from folkrnn.files import sha256_file

    sha = training_sha256(model)
    path = cache_dir() / f"training-{sha[:16]}.txt"
    if path.is_file() and sha256_file(path) == sha:
        print(f"folkrnn {command}: {model}'s training corpus is {path} (cached)", file=sys.stderr)
        return path
    print(f"folkrnn {command}: building {model}'s training corpus (`folkrnn corpus --as-trained -m {model}`) "
          f"into {path}, once", file=sys.stderr)
    result = build_as_trained(sha, progress=False)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise FolkRNNError(f"{path.parent}: cannot make the cache folder: {e.strerror or e}") from None
    result.write(path)
    return path


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
