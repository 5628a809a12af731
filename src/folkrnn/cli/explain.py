"""`folkrnn explain`: the interpretability report (parsing and printing only).

The work is in `folkrnn.interp`: the registered analyses, then `report.write_report`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from folkrnn.errors import FolkRNNError


def register(sub) -> None:
    from folkrnn.cli.common import MODEL_HELP

    p = sub.add_parser(
        "explain",
        help="what a model's parameters mean: a self-contained HTML report and findings.json",
        description="Run the interpretability analyses on a model (parameter inventory, gate spectra, the softmax layer "
        "read as tokens, output bias against training frequency, token columns, equivalent spellings...) and write "
        "DIR/report.html (figures embedded, no network) and DIR/findings.json. Every statement in the report is "
        "computed from the model and shown with its control.",
    )
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("-o", "--out", default=None, metavar="DIR", help="directory to write report.html and findings.json into")
    p.add_argument("--corpus", default=None, metavar="FILE",
                   help="data_v2 token file the model was trained on: token training counts (default: the counts "
                   "recorded in the checkpoint, if any) and the tunes the activation analyses (Q1-Q4 probes, "
                   "nudges, respellings) read; without it those are skipped")
    p.add_argument("--quick", action="store_true", help="fewer control draws and permutations (tests, tiny models)")
    p.add_argument("--only", default=None, metavar="NAMES", help="comma-separated analyses to run (default: all)")
    p.add_argument("--list", action="store_true", help="list the analyses and exit")
    p.add_argument("--seed", type=int, default=0, help="seed of the random controls (default 0)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_explain)


def run_explain(args) -> int:
    from folkrnn.interp.runner import registered

    if args.list:
        for a in registered():
            print(f"{a.name:18} {a.section:9} -> {a.key:12} {a.title}")
        return 0
    from folkrnn.cli.common import threads as _threads
    from folkrnn.load import load_model
    from folkrnn.interp.counts import token_counts
    from folkrnn.interp.registry import ExplainConfig
    from folkrnn.interp.report import explain

    if args.out is None:
        raise FolkRNNError("give the report directory with -o DIR")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FolkRNNError(f"-o {out}: exists and is not a directory")
    if args.corpus is not None and not Path(args.corpus).exists():
        raise FolkRNNError(f"--corpus {args.corpus}: no such file")
    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    _threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="folkrnn explain: %(message)s", stream=sys.stderr)
    t0 = time.perf_counter()
    ckpt = load_model(args.model)
    counts = token_counts(ckpt.metadata, ckpt.vocab, args.corpus)
    name = "default" if args.model == "default" else Path(args.model).name
    html_path, json_path, findings = explain(ckpt, out, counts, ExplainConfig.make(args.quick, args.seed), name, names,
                                             progress=not args.no_progress, corpus=args.corpus)
    skipped = [a for a in findings["analyses"] if "skipped" in a]
    print(f"wrote {html_path} and {json_path} ({len(findings['analyses']) - len(skipped)} analyses, "
          f"{time.perf_counter() - t0:.0f} s)")
    for a in skipped:
        print(f"  skipped {a['name']}: {a['skipped']}")
    return 0
