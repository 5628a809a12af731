"""What the activation analyses share: a sample of corpus tunes teacher-forced through
the model once, with every layer's h and c, the logits, and per-token labels; and one
batched ablation run serving Q1-Q3. Both are computed on first use and kept in the
`Context` (`ctx.extra`), so each analysis pays only for what is new to it.

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

from folkrnn.errors import FolkRNNError
from folkrnn.interp.registry import Context
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


def sizes(ctx: Context) -> Sizes:
    return ctx.extra.get("sizes") or Sizes.make(ctx.config.quick)


def corpus_path(ctx: Context) -> Path | None:
    """The tune file behind the activation analyses: `--corpus`, else the counts' source file."""
    p = ctx.extra.get("corpus")
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


def corpus_data(ctx: Context, bar=None) -> CorpusData | None:
    """The shared teacher-forced sample (None when no corpus file is known)."""
    if "corpus_data" in ctx.extra:
        return ctx.extra["corpus_data"]
    path = corpus_path(ctx)
    if path is None:
        ctx.extra["corpus_data"] = None
        return None
    from folkrnn.datafile import read_tunes
    from folkrnn.hooks import hook_name

    sz = sizes(ctx)
    vocab, model = ctx.vocab, ctx.model
    known = set(vocab.tokens)
    try:
        tunes = read_tunes(path)
    except (OSError, UnicodeDecodeError) as e:
        raise FolkRNNError(f"{path}: cannot read: {e}") from None
    ok = [t for t in tunes if 4 <= len(t) <= sz.max_tune_tokens and all(x in known for x in t)]
    if len(ok) < 4:
        raise FolkRNNError(f"{path}: fewer than 4 tunes of at most {sz.max_tune_tokens} known tokens")
    rng = np.random.default_rng([ctx.config.seed, 101])
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
    data = CorpusData(tunes, cache.tune.numpy(), cache.position.numpy(), token, prev, target, offsets, labels, states,
                      logp)
    ctx.extra["corpus_data"] = data
    return data


def layer_means(data: CorpusData, num_layers: int) -> dict[str, torch.Tensor]:
    """Mean h of each layer over the corpus sample, keyed by hook name (mean replacement)."""
    from folkrnn.hooks import hook_name

    return {hook_name("h", layer=l): torch.from_numpy(data.states[f"h{l}"].astype(np.float32).mean(0)) for l in range(1, num_layers + 1)}
