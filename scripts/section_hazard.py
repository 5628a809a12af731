"""Does the model count bars to the end of a section? The `:|` hazard by bar number.

    .venv/bin/python scripts/section_hazard.py -m MODEL --real runs/bi_valid.txt \
        --generated gen_T1.txt [--generated2 LABEL=FILE ...] [--png out.png] [--json out.json]

At every bar line of a tune, k = the bars of its section so far (a pickup bar not counted;
sections as `folkrnn evaluate` reads them). For each k it prints:
- corpus: the share of real tunes' bar lines after bar k that are `:|` (the true hazard);
- model (teacher-forced): the model's mean probability of `:|` at those same bar lines,
  reading the real tune up to there, given that a bar line comes (P(:|) / P(any bar token));
- generated: the share of the model's own tunes' bar lines after bar k that are `:|`.

If the model counts, its teacher-forced hazard peaks at k = 8 like the corpus's; a model
that only knows "sections end after a while" spreads it over k = 5-12. Then the edits of
`count_or_cadence` tell counting from listening for the cadence.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

import torch

from folkrnn import tokens as T
from folkrnn.datafile import read_tunes
from folkrnn.load import load_model
from folkrnn.rhythm import label_tokens

KMAX = 16


def bar_numbers(toks: list[str]) -> list[tuple[int, int, str]]:
    """(index in toks, k, token) for every bar token; k = full bars of its section so far."""
    labels = label_tokens(toks)
    out, count, section = [], 0, None
    for i, lab in enumerate(labels):
        if T.kind(lab.token) != "bar" or lab.bar < 0:
            continue
        if lab.section != section:
            section, count = lab.section, 0
        if lab.bar_verdict != "pickup":
            count += 1
        out.append((i, count, lab.token))
    return out


def empirical(tunes) -> dict[int, list[int]]:
    h = defaultdict(lambda: [0, 0])
    for toks in tunes:
        for _, k, t in bar_numbers(toks):
            h[min(k, KMAX)][0] += t == ":|"
            h[min(k, KMAX)][1] += 1
    return h


@torch.inference_mode()
def teacher_forced(model, vocab, tunes) -> dict[int, list[float]]:
    bar_ids = [vocab[t] for t in vocab.tokens if T.kind(t) == "bar"]
    end_id = vocab[":|"]
    h = defaultdict(lambda: [0.0, 0])
    for toks in tunes:
        ids = torch.tensor([[vocab.bos] + vocab.encode(toks)])
        logits, _ = model(ids)
        p = torch.softmax(logits[0].float(), -1)
        for i, k, _ in bar_numbers(toks):
            q = p[i]  # position i reads <s> + toks[:i] and predicts toks[i]
            h[min(k, KMAX)][0] += float(q[end_id] / q[bar_ids].sum())
            h[min(k, KMAX)][1] += 1
    return h


def _p_end(model, vocab, toks: list[str], at: int) -> float:
    """P(:|) / P(any bar token) for the token at index `at` of `toks`, reading toks[:at]."""
    bar_ids = [vocab[t] for t in vocab.tokens if T.kind(t) == "bar"]
    ids = torch.tensor([[vocab.bos] + vocab.encode(toks[:at])])
    logits, _ = model(ids)
    q = torch.softmax(logits[0, -1].float(), -1)
    return float(q[vocab[":|"]] / q[bar_ids].sum())


@torch.inference_mode()
def count_or_cadence(model, vocab, tunes, drop_at: int = 4) -> dict:
    """Counting or listening for the cadence? In each real tune whose first section has 8 full
    bars closed by `:|`, move the cadence bar: drop bar `drop_at` (the cadence comes 7th) or
    play it twice (the cadence comes 9th). P(:|) at each bar line says which the model follows:
    a counter ends the section after 8 bars whatever they hold; a listener after the cadence.
    Swapping the cadence bar with bar 5 keeps the count and moves only the content."""
    res = {"tunes": 0, "original": {"bar 7": [], "bar 8 (cadence)": []},
           "drop": {"bar 7 (cadence)": []}, "duplicate": {"bar 8": [], "bar 9 (cadence)": []},
           "swap 5 and 8": {"bar 5 (cadence)": [], "bar 8 (old bar 5)": []},
           "swap 2 and 6 (control)": {"bar 8 (cadence)": []}}
    for toks in tunes:
        bars = bar_numbers(toks)
        first = [(i, k, t) for i, k, t in bars if k >= 1]
        ends = [j for j, (i, k, t) in enumerate(first) if t == ":|"]
        if not ends or first[ends[0]][1] != 8:
            continue
        sec = first[: ends[0] + 1]
        if [k for _, k, _ in sec] != list(range(1, 9)) or any(t != "|" for _, _, t in sec[:-1]):
            continue
        line = {k: i for i, k, _ in sec}  # index of the bar line that closes bar k
        a, b = line[drop_at - 1] + 1, line[drop_at] + 1  # tokens of bar drop_at with its closing bar line
        res["tunes"] += 1
        res["original"]["bar 7"].append(_p_end(model, vocab, toks, line[7]))
        res["original"]["bar 8 (cadence)"].append(_p_end(model, vocab, toks, line[8]))
        dropped = toks[:a] + toks[b:]
        res["drop"]["bar 7 (cadence)"].append(_p_end(model, vocab, dropped, line[8] - (b - a)))
        dup = toks[:b] + toks[a:b] + toks[b:]
        res["duplicate"]["bar 8"].append(_p_end(model, vocab, dup, line[7] + (b - a)))
        res["duplicate"]["bar 9 (cadence)"].append(_p_end(model, vocab, dup, line[8] + (b - a)))
        # the cadence bar (without its :|) and bar 5 change places: bar lines stay where they were in count
        b5 = toks[line[4] + 1 : line[5]]
        b8 = toks[line[7] + 1 : line[8]]
        swapped = toks[: line[4] + 1] + b8 + toks[line[5] : line[7] + 1] + b5 + toks[line[8]:]
        at5 = line[4] + 1 + len(b8)
        at8 = at5 + (line[7] + 1 - line[5]) + len(b5)
        assert swapped[at5] == "|" and swapped[at8] == ":|"
        res["swap 5 and 8"]["bar 5 (cadence)"].append(_p_end(model, vocab, swapped, at5))
        res["swap 5 and 8"]["bar 8 (old bar 5)"].append(_p_end(model, vocab, swapped, at8))
        # control: an edit of the same kind that leaves the cadence where it was
        b2, b6 = toks[line[1] + 1 : line[2]], toks[line[5] + 1 : line[6]]
        ctrl = toks[: line[1] + 1] + b6 + toks[line[2] : line[5] + 1] + b2 + toks[line[6]:]
        shift = len(ctrl) - len(toks)
        assert ctrl[line[8] + shift] == ":|" and shift == 0
        res["swap 2 and 6 (control)"]["bar 8 (cadence)"].append(_p_end(model, vocab, ctrl, line[8]))
    return {"tunes": res["tunes"], **{cond: {where: sum(v) / len(v) if v else None for where, v in d.items()}
                                      for cond, d in res.items() if cond != "tunes"}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", default="default")
    ap.add_argument("--real", required=True, help="real tunes (data_v2), e.g. the held-out ones")
    ap.add_argument("--generated", action="append", default=[], help="LABEL=FILE of the model's own tunes")
    ap.add_argument("--png")
    ap.add_argument("--json")
    args = ap.parse_args()
    ck = load_model(args.model)
    real = [t for t in read_tunes(args.real)]
    rows = {"corpus": empirical(real), "teacher-forced": teacher_forced(ck.model, ck.vocab, real)}
    for g in args.generated:
        label, path = g.split("=", 1)
        rows[label] = empirical(read_tunes(path))
    ks = list(range(1, KMAX + 1))
    table = {name: {k: (h[k][0] / h[k][1] if h[k][1] else None) for k in ks} for name, h in rows.items()}
    print("k (bars of the section so far; 16 = 16+)  " + " ".join(f"{k:>5}" for k in ks))
    for name, vals in table.items():
        print(f"{name:<40} " + " ".join(f"{v:5.2f}" if v is not None else "    -" for v in vals.values()))
    print(f"{'bar lines (corpus)':<40} " + " ".join(f"{rows['corpus'][k][1]:5d}" for k in ks))
    cc = count_or_cadence(ck.model, ck.vocab, real)
    print(f"counting or cadence ({cc['tunes']} real tunes whose first section is 8 full bars closed by :|), mean P(:| | a bar line):")
    for cond in ("original", "drop", "duplicate", "swap 5 and 8", "swap 2 and 6 (control)"):
        print(f"  {cond:<22} " + "  ".join(f"{w}: {v:.3f}" for w, v in cc[cond].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "real": args.real, "hazard": table, "count_or_cadence": cc,
                       "counts": {n: {k: h[k][1] for k in ks} for n, h in rows.items()}}, f, indent=1)
    if args.png:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for name, vals in table.items():
            xs = [k for k in ks if vals[k] is not None]
            ax.plot(xs, [vals[k] for k in xs], marker="o", label=name)
        ax.set_xlabel("bars of the section so far (pickup not counted)")
        ax.set_ylabel("share of bar lines that are :|")
        ax.set_xticks(ks)
        ax.set_title("Where sections end: real tunes, the model reading them, its own tunes")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
