"""Q4 from the weights: are equivalent spellings of one pitch close in the model?

Two pitch tokens are *equivalent in a mode* when, read at the start of a bar under that
mode's key signature (no accidental carried from earlier in the bar), they sound the same
MIDI pitch. Under K:Cmaj `=B` and `B` are the same note; under K:Cmin a plain `B` is
B-flat, so there `=B` is not redundant (docs/tokens.md). Enharmonic pairs (`^f`/`_g`) differ in
letter; redundant pairs share letter and octave, one token writing an accidental the key
signature already implies (`=C`/`C` always, `_B`/`B` under the flat-B modes). Note `_C` is C-flat of the
octave of `C`, i.e. B below middle C, equal to `B,` (not `B`) in the modes where B is
natural.

>>> modes = equivalent_modes("=B", "B"); modes
('K:Cmaj',)
>>> equivalent_modes("^f", "_g"), equivalent_modes("_C", "=B,"), equivalent_modes("_C", "B")
(('K:Cmaj', 'K:Cmin', 'K:Cdor', 'K:Cmix'), ('K:Cmaj', 'K:Cmin', 'K:Cdor', 'K:Cmix'), ())
>>> pair_kind("=B", "B"), pair_kind("^f", "_g")
('redundant', 'enharmonic')
"""

from __future__ import annotations

import numpy as np
import torch

from folkrnn import tokens as T
from folkrnn.interp.counts import TokenCounts
from folkrnn.model import FolkRNN
from folkrnn.vocab import Vocabulary


def sounding(token: str, mode: str) -> int:
    """MIDI pitch of a pitch token at the start of a bar under `mode`'s key signature."""
    p = T.parse_pitch(token)
    return p.midi(p.accidental or T.KEY_SIGNATURES[mode].get(p.letter, ""))


def equivalent_modes(a: str, b: str) -> tuple[str, ...]:
    """The modes (of `tokens.MODES`) in which pitch tokens `a` and `b` sound the same."""
    return tuple(m for m in T.MODES if sounding(a, m) == sounding(b, m))


def pair_kind(a: str, b: str) -> str:
    pa, pb = T.parse_pitch(a), T.parse_pitch(b)
    return "redundant" if (pa.letter, pa.octave) == (pb.letter, pb.octave) else "enharmonic"


def pitch_tokens(vocab: Vocabulary) -> list[str]:
    return [t for t in vocab.tokens if T.kind(t) == "pitch"]


def equivalent_pairs(vocab: Vocabulary) -> list[dict]:
    """Every unordered pair of distinct pitch tokens equivalent in at least one mode."""
    pts = pitch_tokens(vocab)
    out = []
    for i, a in enumerate(pts):
        for b in pts[i + 1:]:
            modes = equivalent_modes(a, b)
            if modes:
                out.append({"a": a, "b": b, "kind": pair_kind(a, b), "modes": list(modes),
                            "all_modes": len(modes) == len(T.MODES), "midi": {m: sounding(a, m) for m in modes}})
    return out


def _cos(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    u = m / np.where(n > 0, n, 1.0)
    return u @ u.T


def similarity(model: FolkRNN, vocab: Vocabulary, counts: TokenCounts | None,
               rng: np.random.Generator | None = None, permutations: int = 2000) -> dict:
    """Cosine similarity of each equivalent pair's layer-1 input columns (all gates) and
    softmax rows, with three controls:

    - rank: the partner's rank among all other pitch tokens (1 = most similar; from each side);
    - z: against all pitch-token pairs;
    - with counts, `matched_z`: against the non-equivalent pairs whose tokens have training
      counts within a factor e of the pair's (rare tokens resemble rare tokens), and, in
      the summary, a permutation p: equivalent pairs' mean z against as many random
      non-equivalent pairs of seen tokens.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    pts = pitch_tokens(vocab)
    idx = [vocab[t] for t in pts]
    with torch.no_grad():
        spaces = {
            "input": model.layers[0].weight_ih.detach().double().numpy()[:, idx].T,  # (P, 4H)
            "output": model.out.weight.detach().double().numpy()[idx],  # (P, H)
        }
    pos = {t: k for k, t in enumerate(pts)}
    P = len(pts)
    iu = np.triu_indices(P, 1)
    sims = {name: _cos(m) for name, m in spaces.items()}
    ref = {name: (float(s[iu].mean()), float(s[iu].std())) for name, s in sims.items()}
    pairs = equivalent_pairs(vocab)
    equiv = np.zeros((P, P), bool)
    for p in pairs:
        equiv[pos[p["a"]], pos[p["b"]]] = equiv[pos[p["b"]], pos[p["a"]]] = True
    if counts is not None:
        logc = np.array([np.log(counts[t]) if counts[t] > 0 else -np.inf for t in pts])
    for p in pairs:
        ia, ib = pos[p["a"]], pos[p["b"]]
        if counts is not None:
            p["count_a"], p["count_b"] = counts[p["a"]], counts[p["b"]]
            p["unseen"] = [t for t in (p["a"], p["b"]) if counts[t] == 0]
            # non-equivalent pairs (x, y) with x like a and y like b in training count
            like_a = np.abs(logc - logc[ia]) <= 1 if counts[p["a"]] else np.zeros(P, bool)
            like_b = np.abs(logc - logc[ib]) <= 1 if counts[p["b"]] else np.zeros(P, bool)
            m = np.outer(like_a, like_b) & ~equiv & ~np.eye(P, dtype=bool)
        for name, s in sims.items():
            mean, sd = ref[name]
            c = float(s[ia, ib])
            rank_a = int((np.delete(s[ia], ia) > c).sum()) + 1
            rank_b = int((np.delete(s[ib], ib) > c).sum()) + 1
            p[name] = {"cosine": c, "rank_from_a": rank_a, "rank_from_b": rank_b,
                       "z": (c - mean) / sd if sd > 0 else 0.0}
            if counts is not None and m.sum() >= 5:
                ctrl = s[m]
                p[name]["matched_z"] = float((c - ctrl.mean()) / ctrl.std()) if ctrl.std() > 0 else 0.0
                p[name]["matched_pairs"] = int(m.sum())
    out = {
        "rule": "equivalent = same MIDI pitch at the start of a bar under the mode's key signature",
        "pitch_tokens": P,
        "control": {name: {"kind": "all pitch-token pairs", "pairs": int(len(iu[0])), "mean": m, "sd": s}
                    for name, (m, s) in ref.items()},
        "pairs": pairs,
        # for figures; not part of the findings (the analysis drops it)
        "all_pair_cosines": {name: s[iu].tolist() for name, s in sims.items()},
    }
    if counts is not None:
        seen = [k for k, t in enumerate(pts) if counts[t] > 0]
        unseen = [k for k, t in enumerate(pts) if counts[t] == 0]
        out["summary"] = summarise(pairs, P)
        # permutation control: as many random non-equivalent pairs of seen tokens
        cand = [(i, j) for i in seen for j in seen if i < j and not equiv[i, j]]
        n_eq = sum(1 for p in pairs if not p.get("unseen"))
        if n_eq and len(cand) > n_eq:
            for name, s in sims.items():
                mean, sd = ref[name]
                zs = (s[tuple(np.array(cand).T)] - mean) / sd
                obs = float(np.mean([p[name]["z"] for p in pairs if not p.get("unseen")]))
                null = np.array([zs[rng.choice(len(zs), n_eq, replace=False)].mean() for _ in range(permutations)])
                out["summary"]["seen.all"][name]["permutation"] = {
                    "kind": f"{n_eq} random non-equivalent pairs of seen pitch tokens", "mean_z": obs,
                    "null_mean_z": float(null.mean()), "null_95": float(np.quantile(null, 0.95)),
                    "p": float((np.sum(null >= obs) + 1) / (permutations + 1)), "draws": permutations}
        # same letter and octave but a different sound in every mode (`^f`/`f`): what
        # sharing a letter alone gives, the control for the redundant pairs
        same = [(i, j) for i in seen for j in seen if i < j and not equiv[i, j]
                and (T.parse_pitch(pts[i]).letter, T.parse_pitch(pts[i]).octave)
                == (T.parse_pitch(pts[j]).letter, T.parse_pitch(pts[j]).octave)]
        if same:
            out["same_letter_control"] = {
                "kind": "seen pairs with the same letter and octave that never sound the same", "pairs": len(same),
                "examples": [f"{pts[i]}/{pts[j]}" for i, j in same[:6]],
                **{space: {"median_cosine": float(np.median([sims[space][i, j] for i, j in same]))} for space in sims}}
        out["output_cosine_within"] = {
            label: (float(sims["output"][np.ix_(sel, sel)][np.triu_indices(len(sel), 1)].mean()) if len(sel) > 1 else None)
            for label, sel in (("seen", seen), ("unseen", unseen))}
        out["unseen_pitch_tokens"] = [pts[k] for k in unseen]
    return out


def summarise(pairs: list[dict], n_pitch: int) -> dict:
    """Medians over pairs whose tokens were both seen in training (the only ones that can
    have learned anything), apart for enharmonic and redundant pairs, plus the same over
    pairs with an unseen token (which should look like chance)."""
    out = {}
    for label, sel in (("seen", [p for p in pairs if not p.get("unseen")]),
                       ("with_unseen", [p for p in pairs if p.get("unseen")])):
        for kind in ("enharmonic", "redundant", "all"):
            ps = [p for p in sel if kind == "all" or p["kind"] == kind]
            if not ps:
                continue
            d = {"pairs": len(ps)}
            for space in ("input", "output"):
                ranks = [min(p[space]["rank_from_a"], p[space]["rank_from_b"]) for p in ps]
                mz = [p[space]["matched_z"] for p in ps if "matched_z" in p[space]]
                d[space] = {"median_cosine": float(np.median([p[space]["cosine"] for p in ps])),
                            "median_z": float(np.median([p[space]["z"] for p in ps])),
                            "median_matched_z": float(np.median(mz)) if mz else None,
                            "matched_pairs": len(mz),
                            "median_best_rank": float(np.median(ranks)),
                            "top3": int(sum(r <= 3 for r in ranks)),
                            "chance_top3": 1 - (1 - 3 / (n_pitch - 1)) ** 2}
            out[f"{label}.{kind}"] = d
    return out
