"""Batched step-wise sampling with continuous batching (docs/generate.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import any_hooks
from folkrnn.model import FolkRNN
from folkrnn.sample.beam import beam_search
from folkrnn.sample.config import SampleConfig, Tune, progress_bar
from folkrnn.sample.prime import compile_prime
from folkrnn.sample.randomness import draw, filter_logits, log_softmax_at, softmax, uniforms
from folkrnn.sample.row import prime_masks, tempered, wrap_up_from
from folkrnn.sample.step import HookedStepper, Stepper
from folkrnn.vocab import Vocabulary

log = logging.getLogger(__name__)


def sample(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig, progress: bool = False,
           hooks: Sequence[tuple] | None = None) -> Iterator[Tune]:
    """Yield `cfg.num_tunes` tunes in order (index 0, 1, ...), streaming.

    With `cfg.beam_width`, the best sequences of a beam search instead.

    `hooks`: `(name or predicate, fn)` pairs as for `model.hooks()`, active while the
    generator runs (removed when it ends or is closed). With hooks (these, or ones
    added around the call with `model.hooks()`) every step runs the hooked step
    (`HookedStepper`) and each tune starts from `<s>` in its own row, so a hook's
    `ctx.tune` / `ctx.position` are the tune's index and position (`Tune.tokens[p]` is
    chosen at position p) whatever the batch size and pool refills. Without hooks the
    fast `Stepper` runs; with hooks that change nothing both give the same tunes.

    The network step runs in torch; the per-row bookkeeping and the draw run in numpy,
    whose small-array operations cost a fraction of torch's per-call overhead (it is
    most of the time per token at batch 1).

    The token decision is `folkrnn.sample.row.RowDraw`'s (the studio's, one row at a time),
    written here over the whole batch at once for speed from the same helpers; a test
    (tests/test_row.py) holds the two together token for token."""
    if len(vocab) != model.config.vocab_size:
        raise FolkRNNError(f"vocabulary has {len(vocab)} tokens but the model expects {model.config.vocab_size}")
    if hooks is not None:
        with model.hooks(hooks):
            yield from _sample(model, vocab, cfg, progress, hooked=True)
        return
    yield from _sample(model, vocab, cfg, progress, hooked=any_hooks(model))


@torch.inference_mode()
def _sample(model: FolkRNN, vocab: Vocabulary, cfg: SampleConfig, progress: bool, hooked: bool) -> Iterator[Tune]:
    if cfg.beam_width:
        yield from beam_search(model, vocab, cfg, hooked=hooked)
        return
    model.eval()
    prime = compile_prime(vocab, cfg.prime)
    step = HookedStepper(model, cfg.precision) if hooked else Stepper(model, cfg.precision)
    if cfg.form is not None:
        from folkrnn.sample.form import sample_form

        yield from sample_form(model, vocab, cfg, step, progress)
        return
    n, L, V = cfg.num_tunes, cfg.max_length, len(vocab)
    P = len(prime.fixed)
    eos = vocab.eos
    K = min(cfg.alternatives, V)
    inv_t = 1.0 / cfg.temperature
    # 0 where a token may be drawn, -inf where not: per prime position, and after the prime.
    fixed_np, mask_prime, mask_base = prime_masks(vocab, prime)
    bias = cfg.bias_array(V)

    # The forced opening of the prime is the same for every tune: run it once (not with
    # hooks, which must see each tune's own rows).
    lead = 0 if hooked else prime.lead
    start_state = step.initial_state(1)
    start_inp = vocab.bos
    start_lp = 0.0
    start_alts: list[list[tuple[str, float]]] = []
    for p in range(lead - 1 if lead else 0):
        logits, start_state = step(torch.tensor([start_inp]), start_state)
        z = logits.numpy().astype(np.float64)
        tok = int(fixed_np[p])
        start_lp += float(log_softmax_at(z, np.array([tok]))[0])
        if K:
            start_alts.append(_top_alternatives(vocab, z * inv_t, K)[0])
        start_inp = tok
    start_pos = max(lead - 1, 0)  # position of the token chosen after feeding start_inp
    prefix = fixed_np[:start_pos]

    B = min(cfg.batch_size, n)
    log.debug("sampling %d tunes, %d at a time, %s, prime of %d tokens", n, B, cfg.precision, P)
    h, c = (t.expand(-1, B, -1).contiguous() for t in start_state)
    inp = np.full(B, start_inp, dtype=np.int64)
    pos = np.full(B, start_pos, dtype=np.int64)
    buf = np.zeros((B, L), dtype=np.int64)
    buf[:, :start_pos] = prefix
    lp = np.full(B, start_lp)
    first = cfg.first
    tune_idx = first + np.arange(B, dtype=np.int64)
    alts: list[list] | None = [list(start_alts) for _ in range(B)] if K else None
    next_tune = first + B
    guards = None
    if cfg.bars == "strict":
        from folkrnn.sample.strict import GuardBatch

        guards = GuardBatch(vocab, 0)
        guards.reset_all(B, prefix)
    pending: dict[int, Tune] = {}
    emitted = first
    pbar = progress_bar(n, progress, "tune")
    try:
        while len(inp):
            logits, (h, c) = step(torch.from_numpy(inp), (h, c), torch.from_numpy(tune_idx), torch.from_numpy(pos))
            z = logits.numpy().astype(np.float64)
            zt = tempered(z, cfg.temperature, bias)
            fixed = None
            if P and pos.min() < P:
                in_prime = pos < P
                pc = np.minimum(pos, P - 1)
                fixed = np.where(in_prime, fixed_np[pc], -1)
                zt += np.where(in_prime[:, None], mask_prime[pc], mask_base)
            else:
                zt += mask_base
            if guards is not None:
                zt = guards.restrict(zt, fixed, tune_idx, pos, pos >= wrap_up_from(L))
            if alts is not None:
                for r, row_alts in enumerate(_top_alternatives(vocab, zt, K)):
                    alts[r].append(row_alts)
            zt = filter_logits(zt, cfg.top_k, cfg.top_p)
            tok = draw(zt, uniforms(cfg.seed, tune_idx, pos))
            if fixed is not None:
                tok = np.where(fixed >= 0, fixed, tok)
            rows = np.arange(len(tok))
            if guards is not None:
                guards.advance(tok)
            lp += log_softmax_at(z, tok)
            buf[rows, pos] = tok
            pos += 1
            inp = tok
            done = (tok == eos) | (pos >= L)
            if not done.any():
                continue
            done_rows = np.flatnonzero(done).tolist()
            for r in done_rows:
                ids = buf[r, : pos[r]].tolist()
                ended = ids[-1] == eos
                pending[int(tune_idx[r])] = Tune(
                    int(tune_idx[r]), vocab.decode(ids[:-1] if ended else ids), float(lp[r]), not ended,
                    alts[r] if alts is not None else None,
                )
            while emitted in pending:
                yield pending.pop(emitted)
                emitted += 1
                pbar.update(1)
            refill = done_rows[: max(0, first + n - next_tune)]
            if refill:
                R = torch.tensor(refill)
                h[:, R] = start_state[0]
                c[:, R] = start_state[1]
                inp[refill] = start_inp
                pos[refill] = start_pos
                buf[refill, :start_pos] = prefix
                lp[refill] = start_lp
                tune_idx[refill] = np.arange(next_tune, next_tune + len(refill))
                next_tune += len(refill)
                if guards is not None:
                    guards.reset(refill, prefix)
                if alts is not None:
                    for r in refill:
                        alts[r] = list(start_alts)
            drop = done_rows[len(refill):]
            if drop:
                keep = np.ones(len(inp), dtype=bool)
                keep[drop] = False
                kt = torch.from_numpy(keep)
                h, c = h[:, kt].contiguous(), c[:, kt].contiguous()
                inp, pos, buf, lp, tune_idx = inp[keep], pos[keep], buf[keep], lp[keep], tune_idx[keep]
                if guards is not None:
                    guards.keep(keep)
                if alts is not None:
                    alts = [a for a, k in zip(alts, keep.tolist()) if k]
        assert not pending and emitted == first + n, (emitted, first + n, sorted(pending)[:5])
    finally:
        pbar.close()


def _top_alternatives(vocab: Vocabulary, z: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """The k most probable tokens of softmax(z) per row, with their probabilities."""
    p = softmax(z)
    idx = np.argsort(-p, axis=-1, kind="stable")[:, :k]
    vals = np.take_along_axis(p, idx, -1)
    return [[(vocab.tokens[i], round(q, 6)) for i, q in zip(ri, rv)] for ri, rv in zip(idx.tolist(), vals.tolist())]

