"""`folkrnn score`: the log-probability of every token of some transcriptions under a model.

The work is done by folkrnn.sample.score_tunes; ABC input is read by folkrnn.abc.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from folkrnn.cli.common import MODEL_HELP, load, streamed_output, threads
from folkrnn.errors import FolkRNNError


def register(sub) -> None:
    p = sub.add_parser("score", help="log-probability of every token of some transcriptions under a model",
                       description="Print one JSON line per tune: index (the tune's place in FILE counted from 1, "
                       "skipped ABC tunes included, as `folkrnn evaluate --tunes` numbers them), x and title (ABC's X: "
                       "and T: fields; null for data_v2 input), tokens (ending with </s>), the log-probability of "
                       "each given the ones before it (after <s>), total and mean NLL (nats). A summary goes to stderr.")
    p.add_argument("file", help="a data_v2 token file or an ABC file")
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("--input-format", choices=("auto", "tokens", "abc"), default="auto",
                   help="auto: ABC if the file ends in .abc or has an X: line, else data_v2 tokens")
    p.add_argument("-o", "--out", default=None, help="output file (default stdout)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = auto: 1 on a busy machine, else PyTorch's default)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run_score)


def run_score(args) -> int:
    from folkrnn.sample import score_tunes

    threads(args.threads)
    path = Path(args.file)
    if not path.is_file():
        raise FolkRNNError(f"{path}: no such file")
    fmt = args.input_format
    if fmt == "auto":
        fmt = "abc" if path.suffix.lower() == ".abc" or _has_x_line(path) else "tokens"
    ckpt = load(args.model)
    if fmt == "abc":
        ids, tunes = _abc_tunes(path)
    else:
        from folkrnn.datafile import read_tunes

        tunes = read_tunes(path)
        ids = [(n, None, None) for n in range(1, len(tunes) + 1)]
    unknown = ckpt.vocab.unknown(t for tune in tunes for t in tune)
    if unknown:
        raise FolkRNNError(f"{path}: token(s) not in the model's vocabulary: {' '.join(unknown[:20])}")
    n = n_tok = 0
    nll = 0.0
    with streamed_output(args.out, "score") as f:
        for s in score_tunes(ckpt.model, ckpt.vocab, tunes, batch_size=args.batch_size, progress=not args.no_progress, where=str(path)):
            position, x, title = ids[s.index]
            f.write(json.dumps({"index": position, "x": x, "title": title, "tokens": s.tokens,
                                "logprobs": [round(lp, 6) for lp in s.logprobs],
                                "total_nll": s.total_nll, "mean_nll": s.mean_nll}) + "\n")
            f.commit()
            n += 1
            n_tok += len(s.logprobs)
            nll += s.total_nll
    print(f"folkrnn score: {n} tunes, {n_tok} tokens, NLL {nll / max(n_tok, 1):.4f} nats/token "
          f"({nll / max(n, 1):.2f} per tune)", file=sys.stderr)
    return 0


def _has_x_line(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.read(65536)
    except OSError:
        return False
    return re.search(r"^[ \t]*X:", head, re.M) is not None


def _abc_tunes(path: Path) -> tuple[list[tuple[int, str | None, str | None]], list[list[str]]]:
    """(position from 1, X:, title) and tokens of each tune v2 can express; the others are skipped with a note."""
    from folkrnn.abc import read_abc_file

    ids, tunes = [], []
    for position, res in enumerate(read_abc_file(path), start=1):
        if res.tokens is None:
            print(f"folkrnn score: skipped tune {position}, {res.label()} ({res.detail})", file=sys.stderr)
            continue
        ids.append((position, res.x, res.title))
        tunes.append(list(res.tokens))
    if not tunes:
        raise FolkRNNError(f"{path}: no tune v2 can express")
    return ids, tunes
