"""What the activation analyses share, as plain functions of their inputs: a sample of
corpus tunes teacher-forced through the model once, with every layer's h and c, the
logits, and per-token labels (`teacher_force`); the same tunes through a freshly
initialised network (`random_network_states`, the probes' control); the layer units that
carry position in bar (`rank_bar_units`) and the one batched ablation of those units that
serves Q1 and Q2 (`run_bar_ablation`). `folkrnn.interp.context.Shared` calls each once,
on first request, so an analysis pays only for what is new to it and finds the same
whatever ran before it.

Rows follow `folkrnn.hooks`: tune k's rows are `offsets[k]:offsets[k+1]`, row p reads
token p of `<s> t0 t1 ...` and predicts `t_p` (the last row predicts `</s>`).
`labels[row]` is the `rhythm.TokenLabel` of the token the row reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from folkrnn import tokens as T
from folkrnn.errors import FolkRNNError
from folkrnn.hooks import hook_name
from folkrnn.interp import ablation, probes
from folkrnn.rhythm import TokenLabel, label_tokens
from folkrnn.vocab import BOS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sizes:
    """How much data the activation analyses use (the 15-minute budget of a v2 model)."""

    probe_tunes: int = 300
    probe_train_tokens: int = 20000  # training tokens a probe is fitted on, at most
    max_tune_tokens: int = 400
    ablation_tunes: int = 20  # per condition and seed
    ablation_seeds: tuple[int, ...] = (1, 2)
    ablation_ks: tuple[int, ...] = (5, 20, 50)
    ablation_max_length: int = 300
    recovery_prefixes: int = 40
    recovery_samples: int = 2
    recovery_tokens: int = 60
    kl_tunes: int = 60
    kl_steps: int = 8

    @classmethod
    def make(cls, quick: bool) -> Sizes:
        if quick:
            return cls(probe_tunes=24, max_tune_tokens=160, ablation_tunes=4, ablation_seeds=(1, 2), ablation_ks=(2, 4),
                       ablation_max_length=60, recovery_prefixes=6, recovery_samples=1, recovery_tokens=20, kl_tunes=8,
                       kl_steps=4)
        return cls()


NO_CORPUS = "no corpus of tunes (pass --corpus FILE, a data_v2 token file)"


def sizes(ctx) -> Sizes:
    """The sizes of an interp `Context` (kept as a function: analyses call it)."""
    return ctx.sizes


def corpus_path(ctx) -> Path | None:
    """The tune file behind the activation analyses: `--corpus`, else the counts' source file."""
    p = ctx.corpus
    if p is None and ctx.counts is not None and ctx.counts.source != "checkpoint":
        p = ctx.counts.source
    return Path(p) if p is not None and Path(p).is_file() else None


@dataclass
class CorpusData:
    tunes: list[list[str]]  # token lists (M: K: body), no <s>/</s>
    tune: np.ndarray  # (N,) tune index of each row
    position: np.ndarray  # (N,)
    token: np.ndarray  # (N,) id read
    prev: np.ndarray  # (N,) id read at the previous row (<s> for the first)
    target: np.ndarray  # (N,) id predicted (</s> at the last row)
    offsets: np.ndarray  # (tunes + 1,)
    labels: list[TokenLabel]  # (N,)
    states: dict[str, np.ndarray]  # "h1".."h3", "c1".."c3": (N, H) float16
    logp: np.ndarray  # (N, V) float32 log-probabilities of the next token

    def n_bars(self) -> list[int]:
        out = []
        for k in range(len(self.tunes)):
            ls = self.labels[self.offsets[k]:self.offsets[k + 1]]
            out.append(max((lb.bar for lb in ls), default=-1) + 1)
        return out


def corpus_data(ctx, bar=None) -> CorpusData | None:
    """The shared teacher-forced sample of an interp `Context` (None when no corpus file is known)."""
    return ctx.shared.corpus_data(bar)


def teacher_force(model, vocab, path: Path, sz: Sizes, seed: int, bar=None) -> CorpusData:
    """Up to `sz.probe_tunes` tunes of `path` (chosen by `seed`) through `model`, every state kept."""
    from folkrnn.datafile import read_tunes

    known = set(vocab.tokens)
    try:
        tunes = read_tunes(path)
    except (OSError, UnicodeDecodeError) as e:
        raise FolkRNNError(f"{path}: cannot read: {e}") from None
    ok = [t for t in tunes if 4 <= len(t) <= sz.max_tune_tokens and all(x in known for x in t)]
    if len(ok) < 4:
        raise FolkRNNError(f"{path}: fewer than 4 tunes of at most {sz.max_tune_tokens} known tokens")
    rng = np.random.default_rng([seed, 101])
    pick = sorted(rng.choice(len(ok), min(sz.probe_tunes, len(ok)), replace=False))
    tunes = [ok[i] for i in pick]
    seqs = [[vocab.bos] + vocab.encode(t) for t in tunes]
    L = model.config.num_layers
    names = [hook_name(p, layer=l) for l in range(1, L + 1) for p in ("h", "c")] + ["hook_logits"]
    if bar is not None:
        bar.set_postfix_str(f"teacher-forcing {len(tunes)} tunes")
    with torch.no_grad():
        cache = model.run_with_cache(seqs, names=names, dtype=torch.float16, batch_size=64)
    states = {f"{p}{l}": cache.get(p, layer=l).numpy() for l in range(1, L + 1) for p in ("h", "c")}
    logp = torch.log_softmax(cache["hook_logits"].float(), -1).numpy()
    labels: list[TokenLabel] = []
    for t in tunes:
        labels.extend(label_tokens([BOS] + t))
    offsets = cache.offsets.numpy()
    token = cache.token.numpy()
    prev = token.copy()
    prev[1:] = token[:-1]
    prev[offsets[:-1]] = vocab.bos
    target = np.empty_like(token)
    target[:-1] = token[1:]
    target[offsets[1:] - 1] = vocab.eos
    if len(labels) != len(token):
        raise FolkRNNError("labels and cached rows disagree in number")  # an internal bug, not user input
    return CorpusData(tunes, cache.tune.numpy(), cache.position.numpy(), token, prev, target, offsets, labels, states,
                      logp)


def random_network_states(model, vocab, tunes: list[list[str]], seed: int) -> dict[str, np.ndarray]:
    """h and c ("h1", "c1", ...) of the random-network control on the same tunes: `model`'s
    weights permuted within each block (`permuted_model`), so the inputs, the state's norm
    and its memory of recent tokens keep the trained model's scale. (A fresh initialisation
    has far smaller states; probes on them can score below chance, which makes beating
    them mean nothing.)"""
    m = permuted_model(model, torch.Generator().manual_seed(int(seed) + 7))
    layers = range(1, model.config.num_layers + 1)
    seqs = [[vocab.bos] + vocab.encode(t) for t in tunes]
    names = [hook_name(p, layer=l) for l in layers for p in ("h", "c")]
    with torch.no_grad():
        cache = m.run_with_cache(seqs, names=names, dtype=torch.float16, batch_size=64)
    return {f"{p}{l}": cache.get(p, layer=l).numpy() for l in layers for p in ("h", "c")}


def bar_labels(data: CorpusData) -> dict[str, np.ndarray]:
    """Per-row labels of the bar probes: position in bar (tokens of right bars) and next-is-bar-line."""
    pos_vals = [str(lb.position) if lb.bar >= 0 and lb.bar_verdict not in (None, "wrong") and T.kind(lb.token) != "bar"
                else None for lb in data.labels]
    pos, _ = probes.encode_labels(pos_vals, top=12, min_count=10)
    nib = np.array([int(lb.next_is_bar) if lb.bar >= 0 else -1 for lb in data.labels], np.int64)
    return {"position in bar": pos, "next is bar line": nib}


def rank_bar_units(data: CorpusData, num_layers: int, seed: int) -> dict[int, probes.Ranking]:
    """Per layer, h units ranked by how much of position in bar they carry beyond the token."""
    y = bar_labels(data)["position in bar"]
    bars = data.n_bars()
    return {l: probes.rank_units(data.states[f"h{l}"], y, data.token, np.random.default_rng([seed, 200 + l]),
                                 data.offsets, bars)
            for l in range(1, num_layers + 1)}


def ablation_conditions(hidden_size: int, data: CorpusData, rankings: dict[int, probes.Ranking], ks,
                        rng: np.random.Generator, means: bool = True) -> list[ablation.Condition]:
    """The unablated baseline, then per layer and k: the top units, random and variance-matched controls."""
    conds = [ablation.Condition(None, info={"layer": None, "k": 0, "units": "none"})]
    for l in sorted(rankings):
        var = data.states[f"h{l}"].astype(np.float32).var(0)
        point = hook_name("h", layer=l)
        for k in ks:
            if k >= hidden_size:
                continue
            top = rankings[l].top(k)
            rnd = ablation.random_units(hidden_size, k, top, rng)
            vm = ablation.variance_matched_units(var, top, rng)
            for kind, units in (("top", top), ("random", rnd), ("variance_matched", vm)):
                for rep in (("zero", "mean") if means else ("zero",)):
                    if rep == "mean" and kind == "random":
                        continue  # random units' mean replacement: covered by the variance-matched ones
                    conds.append(ablation.Condition(point, tuple(units), rep, {"layer": l, "k": k, "units": kind}))
    return conds


def count_conditions(hidden_size: int, num_layers: int, ks, means: bool = True) -> int:
    """How many conditions `ablation_conditions` makes (progress bars size themselves on it)."""
    n = sum(1 for k in ks if k < hidden_size)
    return 1 + num_layers * n * (5 if means else 3)


def run_bar_ablation(model, vocab, data: CorpusData, rankings: dict[int, probes.Ranking], sz: Sizes, seed: int,
                     bar=None) -> list[dict]:
    """The bar-unit ablation: baseline, then per layer and k top/random/variance-matched, while sampling."""
    conds = ablation_conditions(model.config.hidden_size, data, rankings, sz.ablation_ks, np.random.default_rng([seed, 300]))
    return ablation.run(model, vocab, conds, sz.ablation_tunes, sz.ablation_seeds, sz.ablation_max_length,
                        means=layer_means(data, model.config.num_layers),
                        on_tune=(lambda: bar.update(1)) if bar is not None else None)


def layer_means(data: CorpusData, num_layers: int) -> dict[str, torch.Tensor]:
    """Mean h of each layer over the corpus sample, keyed by hook name (mean replacement)."""
    return {hook_name("h", layer=l): torch.from_numpy(data.states[f"h{l}"].astype(np.float32).mean(0)) for l in range(1, num_layers + 1)}


def permuted_model(model, generator: torch.Generator):
    """A copy of `model` whose weights are the trained ones permuted at random within each
    block: each gate's slice of every input matrix, recurrent matrix and bias, each
    initial state, the softmax matrix and its bias. Every block keeps its values (its
    scale, the forget gates' large biases, so the state's norm and its memory of recent
    tokens) but loses their arrangement: the random-network control of the probes."""
    import copy

    from folkrnn.model import GATES

    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        for layer in m.layers:
            h = layer.weight_hh.shape[1]
            for t in (layer.weight_ih, layer.weight_hh, layer.bias):
                for k in range(len(GATES)):
                    block = t[k * h:(k + 1) * h]
                    flat = block.reshape(-1)
                    block.copy_(flat[torch.randperm(flat.numel(), generator=generator)].reshape(block.shape))
            for t in (layer.c0, layer.h0):
                t.copy_(t[torch.randperm(t.numel(), generator=generator)])
        for t in (m.out.weight, m.out.bias):
            flat = t.reshape(-1)
            t.copy_(flat[torch.randperm(flat.numel(), generator=generator)].reshape(t.shape))
    return m
