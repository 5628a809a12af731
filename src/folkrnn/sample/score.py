"""Scoring: every token's log-probability given the previous ones."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from folkrnn.errors import FolkRNNError
from folkrnn.hooks import any_hooks
from folkrnn.model import FolkRNN
from folkrnn.sample.config import progress_bar
from folkrnn.vocab import BOS, EOS, Vocabulary


@dataclass
class Scored:
    """Per-token log-probabilities of one tune: `tokens` end with `</s>`;
    `logprobs[t]` = log p(tokens[t] | <s>, tokens[:t])."""

    index: int
    tokens: list[str]
    logprobs: list[float]

    @property
    def total_nll(self) -> float:
        return -sum(self.logprobs)

    @property
    def mean_nll(self) -> float:
        return self.total_nll / len(self.logprobs)


def score_tunes(model: FolkRNN, vocab: Vocabulary, tunes: Iterable[Sequence[str]], batch_size: int = 32,
                chunk: int = 2048, progress: bool = False, where: str = "",
                hooks: Sequence[tuple] | None = None) -> Iterator[Scored]:
    """Score each tune (tokens without `<s>`/`</s>`), in input order.

    Tunes are read `chunk` at a time, sorted by length within the chunk and run in
    batches of similar length through the fused path, or, with `hooks` (as for
    `model.hooks()`, active while the generator runs) or hooks already on the model,
    through the hooked step: there `ctx.tune` is the tune's index in `tunes` and
    position p reads `<s>` (p = 0) or token p-1 and scores token p; padding rows
    have `ctx.valid` False."""
    if batch_size < 1:
        raise FolkRNNError(f"batch size must be >= 1, got {batch_size}")
    if hooks is not None:
        with model.hooks(hooks):
            yield from _score(model, vocab, tunes, batch_size, chunk, progress, where, True)
        return
    yield from _score(model, vocab, tunes, batch_size, chunk, progress, where, any_hooks(model))


@torch.inference_mode()
def _score(model: FolkRNN, vocab: Vocabulary, tunes: Iterable[Sequence[str]], batch_size: int, chunk: int,
           progress: bool, where: str, hooked: bool) -> Iterator[Scored]:
    model.eval()
    prefix = f"{where}: " if where else ""
    pbar = progress_bar(0, progress, "tune")
    it = iter(enumerate(tunes))
    try:
        while True:
            group: list[tuple[int, list[int]]] = []
            for i, tune in it:
                toks = [t for t in tune if t not in (BOS, EOS)]
                group.append((i, vocab.encode(toks, where=f"{prefix}tune {i + 1}")))
                if len(group) >= chunk:
                    break
            if not group:
                return
            out: dict[int, Scored] = {}
            order = sorted(range(len(group)), key=lambda j: len(group[j][1]))
            for s in range(0, len(order), batch_size):
                members = [group[j] for j in order[s : s + batch_size]]
                T = max(len(ids) for _, ids in members) + 1
                x = torch.full((len(members), T), vocab.bos, dtype=torch.long)
                y = torch.full((len(members), T), vocab.eos, dtype=torch.long)  # padding beyond </s> is cut below
                for r, (_, ids) in enumerate(members):
                    x[r, 1 : len(ids) + 1] = torch.tensor(ids)
                    y[r, : len(ids)] = torch.tensor(ids)
                dev = model.out.weight.device
                if hooked:
                    logits, _ = model.run_explicit(x.to(dev), tunes=torch.tensor([i for i, _ in members], device=dev),
                                                   lengths=torch.tensor([len(ids) + 1 for _, ids in members], device=dev))
                else:
                    logits, _ = model(x.to(dev))
                lp = torch.log_softmax(logits.float(), -1).gather(-1, y.to(logits.device).unsqueeze(-1)).squeeze(-1).cpu()
                for r, (i, ids) in enumerate(members):
                    n_tok = len(ids) + 1
                    out[i] = Scored(i, vocab.decode(ids) + [EOS], lp[r, :n_tok].double().tolist())
                pbar.update(len(members))
            for i, _ in group:
                yield out.pop(i)
    finally:
        pbar.close()

