"""Ship a trained run's best weights as the package's default model (fp16 safetensors).

    .venv/bin/python scripts/ship_model.py runs/v2-open [--corpus-report data/openfolk.report.json]

Reads RUN_DIR/best.safetensors, adds the corpus provenance, and writes
src/folkrnn/data/folkrnn_v2_default.safetensors (what `-m default` loads).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from folkrnn.checkpoint import load_checkpoint, save_checkpoint

DEST = Path(__file__).resolve().parents[1] / "src" / "folkrnn" / "data" / "folkrnn_v2_default.safetensors"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--corpus-report", type=Path, help="the `folkrnn corpus --report` JSON of the training data")
    ap.add_argument("-o", "--out", type=Path, default=DEST)
    args = ap.parse_args()
    ck = load_checkpoint(args.run_dir / "best.safetensors")
    meta = dict(ck.metadata)
    meta["name"] = "folkrnn v2 (open corpus)"
    if args.corpus_report:
        report = json.loads(args.corpus_report.read_text())
        meta["corpus"] = {k: report[k] for k in ("sources", "totals", "provenance") if k in report}
    for k in ("format", "format_version", "config", "vocabulary"):
        meta.pop(k, None)
    save_checkpoint(args.out, ck.model, ck.vocab, meta, dtype=torch.float16)
    t = meta.get("training", {})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): epoch {t.get('epoch')}, best validation NLL {t.get('best_valid')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
