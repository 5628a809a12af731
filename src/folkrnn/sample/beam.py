"""Beam search: the most probable sequences under the model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from folkrnn.hooks import any_hooks
from folkrnn.model import FolkRNN
from folkrnn.sample.config import SampleConfig, Tune
from folkrnn.sample.prime import base_allowed, compile_prime
from folkrnn.sample.step import HookedStepper, Stepper
from folkrnn.vocab import Vocabulary


@torch.inference_mode()
def beam_search(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig, hooks: Sequence[tuple] | None = None,
                hooked: bool = False) -> list[Tune]:
    """The `cfg.num_tunes` most probable sequences found by a beam of `cfg.beam_width`.

    Each step extends every live sequence by every allowed token and keeps the `width`
    best by total log-probability; a sequence that draws `</s>` is set aside as
    finished. The search stops when the n-th best finished sequence beats every live
    one (log-probabilities only fall), or at the length cap (live sequences are then
    returned as truncated, if needed to make up n).

    `hooks` (as for `model.hooks()`, active during the search) or hooks already on the
    model run the hooked step; there a row is a live hypothesis: `ctx.tune` is its rank
    in the beam at that step (0 = best so far), `ctx.position` the position it reads."""
    if hooks is not None:
        with model.hooks(hooks):
            return _beam_search(model, vocab, cfg, True)
    return _beam_search(model, vocab, cfg, hooked or any_hooks(model))


def _beam_search(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig, hooked: bool) -> list[Tune]:
    model.eval()
    W, n, L = cfg.beam_width, cfg.num_tunes, cfg.max_length
    prime = compile_prime(vocab, cfg.prime)
    P = len(prime.fixed)
    base = base_allowed(vocab)
    step = HookedStepper(model, cfg.precision) if hooked else Stepper(model, cfg.precision)
    eos = vocab.eos
    state = step.initial_state(1)
    inp = torch.tensor([vocab.bos])
    seqs = torch.zeros(1, 0, dtype=torch.long)
    scores = torch.zeros(1, dtype=torch.float64)
    finished: list[tuple[float, list[int], bool]] = []
    for p in range(L):
        logits, state = step(inp, state, torch.arange(len(inp)), torch.full((len(inp),), p))
        logp = torch.log_softmax(logits.double(), -1)
        if p < P and prime.fixed[p] >= 0:
            mask = torch.zeros(len(vocab), dtype=torch.bool)
            mask[prime.fixed[p]] = True
        else:
            mask = prime.allowed[p] if p < P else base
        total = (scores.unsqueeze(1) + logp).masked_fill(~mask, -math.inf)
        k = min(2 * W, total.numel())
        vals, flat = torch.topk(total.flatten(), k)
        parents, toks, new_scores = [], [], []
        for v, f in zip(vals.tolist(), flat.tolist()):
            if v == -math.inf:
                break
            parent, tok = divmod(f, len(vocab))
            if tok == eos:
                finished.append((v, seqs[parent].tolist(), False))
            elif len(parents) < W:
                parents.append(parent)
                toks.append(tok)
                new_scores.append(v)
        if not parents:
            break
        pi = torch.tensor(parents)
        seqs = torch.cat([seqs[pi], torch.tensor(toks).unsqueeze(1)], 1)
        scores = torch.tensor(new_scores, dtype=torch.float64)
        state = (state[0][:, pi], state[1][:, pi])
        inp = torch.tensor(toks)
        if len(finished) >= n:
            nth = sorted((f[0] for f in finished), reverse=True)[n - 1]
            if float(scores.max()) <= nth:
                break
    else:
        finished += [(float(s), q.tolist(), True) for s, q in zip(scores, seqs)]
    best = sorted(finished, key=lambda f: (f[2], -f[0]))[:n]  # ended sequences before truncated ones
    return [Tune(i, vocab.decode(ids), score, trunc) for i, (score, ids, trunc) in enumerate(best)]

