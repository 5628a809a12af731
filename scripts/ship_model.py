"""Ship a trained run's best weights as the package's default model (fp16 safetensors).

    .venv/bin/python scripts/ship_model.py RUN_DIR [--corpus-report REPORT.json ...] \
        [--curve docs/img/default_model_loss.png --log docs/img/default_model_log.csv] [-o OUT]

Reads RUN_DIR/best.safetensors, adds the corpus provenance (one report per corpus the
model learned from) and its lineage: when the run was fine-tuned (`--init`), the training
record of every earlier stage, followed back through each stage's `init` (a run's
checkpoint, or `default`: the model shipped before this one, read before it is replaced).
Writes src/folkrnn/data/folkrnn_v2_default.safetensors (what `-m default` loads) unless
`-o` says otherwise; `--curve`/`--log` draw and list the validation curve over all stages.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch

from folkrnn.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from folkrnn.corpus import report_licences
from folkrnn.files import sha256_file
from folkrnn.load import resolve_model_path

DEST = Path(__file__).resolve().parents[1] / "src" / "folkrnn" / "data" / "folkrnn_v2_default.safetensors"
STAGE_KEYS = ("train_config", "epoch", "iteration", "tokens_seen", "elapsed", "best_valid", "history", "torch", "world_size")


def _stage(training: dict, model: str, sha: str | None) -> dict:
    """One stage's training record; `model`: the name its weights went by when the next stage started from them."""
    data = {k: v for k, v in (training.get("data") or {}).items()}
    return {"model": model, "tensors_sha256": sha, "data": data, **{k: training.get(k) for k in STAGE_KEYS}}


def lineage(meta: dict, root: Path, resolve: dict[str, Path] | None = None) -> list[dict]:
    """The training stages before this run, oldest first (each a compact training record).

    A stage's `init` is followed only to a file with the SHA-256 it recorded (`resolve` maps
    a name such as `default` to where those weights are now); otherwise the chain stops
    with a stage marked missing."""
    stages: list[dict] = []
    seen: set[str] = set()
    tr = meta.get("training") or {}
    while isinstance(tr.get("init"), dict):
        init = tr["init"]
        spec = init.get("file") or init.get("model")
        path = (resolve or {}).get(str(init.get("model"))) or (resolve or {}).get(str(spec))
        if path is None:
            path = Path(spec) if Path(spec).is_file() else (root / spec if (root / spec).is_file() else None)
        if path is not None and init.get("sha256") and sha256_file(path) != init["sha256"]:
            stages.insert(0, {"model": init.get("model"), "sha256": init.get("sha256"), "missing": True})
            break
        if path is None:
            try:
                path = resolve_model_path(spec)
            except Exception:  # a model that is gone: record what the run knew of it and stop
                stages.insert(0, {"model": init.get("model"), "sha256": init.get("sha256"), "missing": True})
                break
        if str(path.resolve()) in seen:
            break
        seen.add(str(path.resolve()))
        m = read_metadata(path)
        prev = m.get("training") or {}
        earlier = prev.get("lineage") or []
        stages.insert(0, _stage(prev, str(init.get("model")), m.get("tensors_sha256")))
        if earlier:  # the earlier model carries its own lineage already
            stages[:0] = earlier
            break
        tr = prev
    return stages


def curve_rows(stages: list[dict], last: dict) -> list[dict]:
    rows, base_epoch, base_tokens = [], 0.0, 0
    for k, st in enumerate([*stages, {**last, "model": "this run"}], start=1):
        data = (st.get("data") or {}).get("path", "?")
        for r in st.get("history") or []:
            rows.append({"stage": k, "data": data, "epoch_in_stage": r.get("epoch"), "epoch": round(base_epoch + float(r.get("epoch") or 0), 3),
                         "tokens": base_tokens + int(r.get("tokens") or 0), "train_nll": r.get("train_nll"),
                         "valid_nll": r.get("valid_nll"), "lr": r.get("lr")})
        base_epoch += float(st.get("epoch") or 0)
        base_tokens += int(st.get("tokens_seen") or 0)
    return rows


def draw(rows: list[dict], png: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = sorted({r["stage"] for r in rows})
    wide = len(stages) > 1
    fig, axes = plt.subplots(1, 2 if wide else 1, figsize=(11 if wide else 8, 3.8), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]} if wide else None)
    for i, ax in enumerate(axes[0]):
        zoom = i == 1
        for k in stages:
            rs = [r for r in rows if r["stage"] == k]
            if zoom and k == stages[0]:
                rs = rs[-5:]  # the end of the first stage, for reference
            label = f"stage {k}: {Path(rs[0]['data']).name}"
            ax.plot([r["epoch"] for r in rs], [r["valid_nll"] for r in rs], marker="." if zoom or len(rs) < 20 else None,
                    label=label + " (validation)")
            tr = [r for r in rs if r["train_nll"] is not None]
            ax.plot([r["epoch"] for r in tr], [r["train_nll"] for r in tr], linestyle=":", color=ax.lines[-1].get_color(), alpha=0.7)
            ax.axvline(rs[0]["epoch"] - float(rs[0]["epoch_in_stage"] or 0) if not (zoom and k == stages[0]) else rs[0]["epoch"],
                       color="grey", linewidth=0.5)
        ax.set_xlabel("epoch (all stages, each on its own data)")
        if zoom:
            ax.set_title("the later stages", fontsize=9)
        else:
            ax.set_ylabel("NLL (nats/token); dotted: training, dropout on")
            ax.set_ylim(top=min(3.2, max(r["valid_nll"] for r in rows) + 0.1))
            ax.legend(fontsize=8)
            ax.set_title("validation NLL on each stage's held-out tunes", fontsize=9)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--corpus-report", type=Path, action="append", default=[],
                    help="the `folkrnn corpus --report` JSON of each corpus the model learned from")
    ap.add_argument("-o", "--out", type=Path, default=DEST)
    ap.add_argument("--resolve", action="append", default=[], metavar="NAME=FILE",
                    help="where an earlier stage's model is now (e.g. default=old_default.safetensors, once a new default shipped)")
    ap.add_argument("--curve", type=Path, help="write the validation curve over all stages (PNG)")
    ap.add_argument("--log", type=Path, help="write that curve's numbers (CSV)")
    args = ap.parse_args()
    ck = load_checkpoint(args.run_dir / "best.safetensors")
    meta = dict(ck.metadata)
    meta["name"] = "folkrnn v2 (open corpus)"
    corpora = []
    for rep in args.corpus_report:
        report = json.loads(rep.read_text())
        corpora.append({"report": rep.name, **{k: report[k] for k in ("sources", "totals", "provenance") if k in report},
                        "licences": report_licences(report, "when this model was shipped")})
    if corpora:
        meta["corpus"] = corpora[0] if len(corpora) == 1 else {"sources": [s for c in corpora for s in c.get("sources", [])],
                                                                "totals": {"kept": sum(c.get("totals", {}).get("kept", 0) for c in corpora),
                                                                           "read": sum(c.get("totals", {}).get("read", 0) for c in corpora)},
                                                                "reports": corpora}
    training = dict(meta.get("training") or {})
    resolve = {}
    for r in args.resolve:
        name, _, file = r.partition("=")
        if not file or not Path(file).is_file():
            ap.error(f"--resolve {r}: give NAME=FILE with an existing file")
        resolve[name] = Path(file)
    stages = lineage(meta, Path.cwd(), resolve)
    if stages:
        training["lineage"] = stages
        meta["training"] = training
    for k in ("format", "format_version", "config", "vocabulary", "tensors_sha256", "file"):
        meta.pop(k, None)
    rows = curve_rows(stages, training)
    if args.log:
        with open(args.log, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    if args.curve:
        draw(rows, args.curve)
    save_checkpoint(args.out, ck.model, ck.vocab, meta, dtype=torch.float16)
    t = meta.get("training", {})
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB): epoch {t.get('epoch')}, best validation NLL "
          f"{t.get('best_valid')}, {len(stages)} earlier stage(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
