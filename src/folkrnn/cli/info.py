"""`folkrnn info` (a model card) and `folkrnn import` (a Lasagne pickle -> a checkpoint).

The work is done by folkrnn.checkpoint (`-m MODEL`, the parameter table) and
folkrnn.legacy (the restricted unpickler).
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

from folkrnn.cli.common import MODEL_HELP, load, threads
from folkrnn.errors import FolkRNNError

WIDTH = 92
HISTORY_ROWS = 10


def register(sub) -> None:
    p = sub.add_parser("info", help="describe a model: what it learned from, how, how well, and its tensors",
                       description="Print a model card: the network and its parameter count (the 5,599,881 of v2 and, "
                       "separately, the learned initial states), the data it learned from, the full training recipe, "
                       "the validation history as a short table, and a table of every tensor (LSTM tensors also per "
                       "gate: shape, count, norm).")
    p.add_argument("-m", "--model", default="default", help=MODEL_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--no-gates", action="store_true", help="leave the per-gate rows out of the tensor table")
    p.set_defaults(func=run_info)

    p = sub.add_parser("import", help="convert a folk-rnn Lasagne pickle (folkrnn_v2.pkl) to a checkpoint",
                       description="Read an original folk-rnn weights pickle with a restricted unpickler (numpy arrays "
                       "and plain containers only) and write a folkrnn .safetensors checkpoint.")
    p.add_argument("pickle", help="the .pkl file (e.g. folk-rnn's metadata/folkrnn_v2.pkl)")
    p.add_argument("-o", "--out", required=True, help="the .safetensors file to write")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.set_defaults(func=run_import)


# -- info --------------------------------------------------------------------------------
def run_info(args) -> int:
    from folkrnn.checkpoint import parameter_table

    threads(0)
    ckpt = load(args.model)
    model, vocab, meta = ckpt.model, ckpt.vocab, ckpt.metadata
    rows = parameter_table(model, per_gate=not args.no_gates)
    n_params = model.num_parameters()
    n_init = model.num_parameters(include_initial_states=True) - n_params
    if args.json:
        doc = {
            "model": str(args.model), "parameters": n_params, "initial_state_numbers": n_init,
            "config": model.config.to_dict(), "vocabulary_size": len(vocab), "vocabulary": list(vocab.tokens),
            "matrices": [{"name": r.name, "shape": list(r.shape), "count": r.count, "norm": r.norm, "trainable": r.trainable} for r in rows],
            "metadata": {k: v for k, v in meta.items() if k not in ("vocabulary", "config")},
        }
        print(json.dumps(doc, indent=1))
        return 0
    print("\n".join(model_card(args.model, ckpt, rows)))
    return 0


def _field(label: str, text: str) -> list[str]:
    """`label` in a 12-column margin, `text` wrapped beside it."""
    return textwrap.wrap(text, WIDTH, initial_indent=f"{label:<12}", subsequent_indent=" " * 12,
                         break_on_hyphens=False) or [label]


def model_card(spec: str, ckpt, rows) -> list[str]:
    """The text of `folkrnn info`, line by line."""
    model, vocab, meta = ckpt.model, ckpt.vocab, ckpt.metadata
    c = model.config
    n_params = model.num_parameters()
    n_init = model.num_parameters(include_initial_states=True) - n_params
    title = meta.get("name") or Path(str(meta.get("file", spec))).name
    out = [title, "=" * len(title)]
    out += _field("file", str(meta.get("file") or spec))
    if meta.get("tensors_sha256"):
        out += _field("checksum", "the weights match the sha256 in the file's header")
    elif not isinstance(meta.get("source"), dict):  # (a pickle's own sha256 is on the `imported` line)
        out += _field("checksum", "none recorded (a file written before folkrnn recorded one)")
    out += _field("network", f"{c.num_layers} LSTM layers x {c.hidden_size} units; one-hot input, softmax over "
                  f"{c.vocab_size} tokens; dropout {c.dropout:g} after each layer in training")
    out += _field("parameters", f"{n_params:,} (plus {n_init:,} learned initial-state numbers c0, h0: "
                  f"{n_params + n_init:,} stored)")
    out += _field("vocabulary", vocabulary_summary(vocab.tokens))
    out += _source_lines(meta)
    out += _training_lines(meta)
    out += ["", "Tensors (LSTM ones also per gate: i input, f forget, g cell candidate, o output)"]
    w = max(len(r.name) for r in rows) + 2
    out.append(f"  {'name':<{w}}  {'shape':>12}  {'count':>10}  {'norm':>9}")
    for r in rows:
        shape = "x".join(str(s) for s in r.shape)
        note = "" if r.trainable else "  (initial state)"
        name = r.name if "[" not in r.name else "  " + r.name
        out.append(f"  {name:<{w}}  {shape:>12}  {r.count:>10,}  {r.norm:>9.4f}{note}")
    return out


KINDS = (("meter", "meters"), ("key", "modes"), ("pitch", "pitches"), ("rest", "rest"), ("duration", "lengths"),
         ("broken", "broken rhythms"), ("tuplet", "tuplets"), ("bar", "bar lines and repeats"),
         ("chord_start", "chord brackets"), ("chord_end", ""), ("bos", "start and end"), ("eos", ""))


def vocabulary_summary(tokens) -> str:
    """`137 tokens: 7 meters (M:2/4 ...), 4 modes (...), ...` by token class.

    >>> vocabulary_summary(["<s>", "</s>", "M:6/8", "K:Cmaj", "C", "c", "2", "|"])
    '8 tokens: 1 meters (M:6/8), 1 modes (K:Cmaj), 2 pitches (C c), 1 lengths (2), 1 bar lines and repeats (|), 2 start and end (<s> </s>)'
    """
    from folkrnn.tokens import kind

    groups: dict[str, list[str]] = {}
    for t in tokens:
        k = kind(t)
        label = next((lab for kk, lab in KINDS if kk == k), "other")
        label = label or {"chord_end": "chord brackets", "eos": "start and end"}[k]
        groups.setdefault(label, []).append(t)
    order = [lab for _, lab in KINDS if lab] + ["other"]
    parts = []
    for lab in order:
        g = groups.get(lab)
        if g:
            shown = " ".join(g[:8]) + (" ..." if len(g) > 8 else "")
            parts.append(f"{len(g)} {lab} ({shown})")
    return f"{len(tokens)} tokens: " + ", ".join(parts)


def _source_lines(meta: dict) -> list[str]:
    src = meta.get("source")
    if not isinstance(src, dict):
        return []
    bits = [f"{k} {src[k]}" for k in ("configuration", "experiment_id", "epoch_since_start", "iters_since_start",
                                       "learning_rate") if k in src]
    out = _field("imported", f"{src.get('kind', '?')} {src.get('file', '')} (sha256 {str(src.get('sha256', ''))[:16]})"
                 + (": " + ", ".join(bits) if bits else ""))
    for k, label in (("losses_train", "training loss"), ("losses_eval_valid", "validation loss")):
        v = src.get(k)
        if isinstance(v, list) and v:
            out += _field("", f"{label}: {len(v)} values recorded, last {_short(v[-1])}")
    return out


def _training_lines(meta: dict) -> list[str]:
    tr = meta.get("training")
    if not isinstance(tr, dict):
        return []
    out = [""]
    data = tr.get("data") or {}
    if data:
        text = (f"{data.get('path', '?')}: {data.get('tunes', 0):,} tunes ({data.get('train_tunes', 0):,} for training, "
                f"{data.get('valid_tunes', 0):,} held out), {data.get('train_tokens', 0) + data.get('valid_tokens', 0):,} tokens, "
                f"sha256 {str(data.get('sha256', ''))[:16]}")
        out += _field("data", text)
    corpus = meta.get("corpus")
    if isinstance(corpus, dict) and corpus.get("sources"):
        tot = corpus.get("totals", {})
        out += _field("corpus", f"{', '.join(corpus['sources'])}: {_count(tot.get('read'))} tunes read, "
                      f"{_count(tot.get('kept'))} kept")
    if tr.get("init"):
        init = tr["init"]
        out += _field("fine-tuned", f"from {init.get('model')} (sha256 {str(init.get('sha256', ''))[:16]})")
    stages = tr.get("lineage")
    if isinstance(stages, list) and stages:
        for k, st in enumerate(stages, start=1):
            if not isinstance(st, dict):
                continue
            if st.get("missing"):
                out += _field(f"stage {k}", f"{st.get('model')} (sha256 {str(st.get('sha256', ''))[:16]}: those weights were "
                              "not found when this model was shipped, so its record ends here)")
                continue
            d = st.get("data") or {}
            tc = st.get("train_config") or {}
            how = (", from a fresh initialisation" if k == 1 else ", from stage " + str(k - 1)) + (
                f"; then known as {st['model']}" if st.get("model") else "")
            out += _field(f"stage {k}", f"{d.get('path', '?')} ({d.get('train_tunes', 0):,} training tunes, "
                          f"{d.get('train_tokens', 0):,} tokens): {_short(st.get('epoch'))} epochs, {tc.get('lr_schedule', '?')} "
                          f"rate from {_value(tc.get('learning_rate'))}, best validation NLL {_short(st.get('best_valid'))}, "
                          f"{(st.get('elapsed') or 0) / 3600:.1f} h{how}")
        out += _field(f"stage {len(stages) + 1}", "this run (below)")
    best = tr.get("best_valid")
    hours = (tr.get("elapsed") or 0) / 3600
    out += _field("result", f"best validation NLL {_short(best)} nats/token; stopped at epoch {_short(tr.get('epoch'))} "
                  f"(iteration {tr.get('iteration', 0):,}) after {tr.get('tokens_seen', 0):,} tokens and {hours:.1f} h "
                  f"on {tr.get('world_size', 1)} process(es), torch {tr.get('torch', '?')}")
    tc = tr.get("train_config")
    if isinstance(tc, dict):
        out += _field("recipe", ", ".join(f"{k} {_value(v)}" for k, v in tc.items()))
    hist = tr.get("history") or []
    if hist:
        out += ["", f"Validation history ({min(len(hist), HISTORY_ROWS)} of {len(hist)} evaluations; * = best)"]
        out += history_table(hist)
    return out


def history_table(hist: list[dict], rows: int = HISTORY_ROWS) -> list[str]:
    """A few rows of the history, evenly spread, always with the first, the best and the last.

    >>> h = [{"epoch": e, "iteration": 10 * e, "train_nll": 2 - e / 10, "valid_nll": 2 - e / 20, "lr": 0.003} for e in range(1, 5)]
    >>> print("\\n".join(history_table(h, rows=3)))
        epoch  iteration  train NLL  valid NLL        lr
          1.0         10     1.9000     1.9500     0.003
          3.0         30     1.7000     1.8500     0.003
          4.0         40     1.6000     1.8000     0.003 *
    """
    best = min(range(len(hist)), key=lambda i: hist[i].get("valid_nll", float("inf")))
    if len(hist) <= rows:
        pick = list(range(len(hist)))
    else:
        step = (len(hist) - 1) / (rows - 1)
        pick = sorted({round(k * step) for k in range(rows - 1)} | {len(hist) - 1, best})
        while len(pick) > rows:  # the best landed off the grid: drop the grid point nearest to it
            pick.remove(min((i for i in pick if i not in (0, best, len(hist) - 1)), key=lambda i: abs(i - best)))
    out = [f"  {'epoch':>7}  {'iteration':>9}  {'train NLL':>9}  {'valid NLL':>9}  {'lr':>8}"]
    for i in pick:
        r = hist[i]
        tr = r.get("train_nll")
        out.append(f"  {float(r.get('epoch', 0)):>7.1f}  {r.get('iteration', 0):>9,}  "
                   f"{(f'{tr:.4f}' if tr is not None else '-'):>9}  {r.get('valid_nll', float('nan')):>9.4f}  "
                   f"{r.get('lr', 0):>8.3g}" + (" *" if i == best else ""))
    return out


def _count(v) -> str:
    return f"{v:,}" if isinstance(v, int) else "?"


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return "-" if v in ("", None) else str(v)


def _short(v) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3g}"
    if isinstance(v, (list, tuple)) and v:
        return "[" + ", ".join(_short(x) for x in v[:4]) + (", ...]" if len(v) > 4 else "]")
    return str(v)


# -- import ------------------------------------------------------------------------------
def run_import(args) -> int:
    import torch

    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.legacy import load_lasagne_pickle

    threads(0)
    src = Path(args.pickle)
    if not src.is_file():
        raise FolkRNNError(f"{src}: no such file")
    ckpt = load_lasagne_pickle(src)
    meta = {"source": ckpt.metadata["source"]}
    out = Path(args.out)
    if out.is_dir():
        raise FolkRNNError(f"{out}: is a directory (give a .safetensors file name)")
    save_checkpoint(out, ckpt.model, ckpt.vocab, meta, dtype=torch.float16 if args.fp16 else torch.float32)
    c = ckpt.model.config
    print(f"imported {src} -> {out}: {c.num_layers} layers x {c.hidden_size}, {len(ckpt.vocab)} tokens, "
          f"{ckpt.model.num_parameters():,} parameters", file=sys.stderr)
    return 0
