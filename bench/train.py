"""Training speed: our trainer's step against a minimal plain `nn.LSTM` loop, same batches.

    .venv/bin/python bench/train.py [--data FILE] [--iters 20] [--batch 64] [--threads 2]

Both sides run the v2 size (3 x 512, 137 tokens), RMSprop, dropout 0.5, clipping, on
the same length-bucketed batches, alternating, and print tokens/s and the ratio
(target: ours >= 0.9x the plain loop).
"""

from __future__ import annotations

import os
import sys

# Run as `python bench/train.py`, bench/ is sys.path[0], where bench/tokenize.py would
# shadow the standard library's tokenize module: drop it from the path first.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from folkrnn.datafile import read_tunes  # noqa: E402
from folkrnn.train import Trainer, TrainConfig, epoch_batches, make_batch  # noqa: E402
from folkrnn.vocab import Vocabulary  # noqa: E402


class PlainLSTM(nn.Module):
    """The textbook way: stock nn.LSTM (two biases per gate), embedding-free one-hot input."""

    def __init__(self, v: int = 137, h: int = 512, layers: int = 3, dropout: float = 0.5):
        super().__init__()
        self.v = v
        self.lstm = nn.LSTM(v, h, layers, batch_first=True, dropout=dropout)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(h, v)

    def forward(self, ids, tgt):
        y, _ = self.lstm(nn.functional.one_hot(ids, self.v).float())
        logits = self.out(self.drop(y))
        loss = nn.functional.cross_entropy(logits.reshape(-1, self.v), tgt.reshape(-1), ignore_index=-100, reduction="sum")
        return loss / ids.shape[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "folkrnn_v2_generated_samples.txt"))
    ap.add_argument("--iters", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab = Vocabulary.v2()
    tunes = read_tunes(args.data, vocab)
    seqs = [[vocab.bos, *vocab.encode(t), vocab.eos] for t in tunes]
    while len(seqs) < args.batch * 4:
        seqs = seqs + seqs
    cfg = TrainConfig(batch_size=args.batch)
    batches = [[seqs[i] for i in b] for b in epoch_batches([len(s) for s in seqs], 0, cfg)]
    batches = [b for b in batches if len(b) == args.batch][: max(1, args.iters // 2)]

    import tempfile

    run_dir = tempfile.mkdtemp(prefix="folkrnn-bench-")
    trainer = Trainer(args.data, run_dir, cfg, progress=False)  # the real trainer, v2 size
    torch.manual_seed(0)
    plain = PlainLSTM()
    opt_plain = torch.optim.RMSprop(plain.parameters(), lr=0.003, alpha=0.9, eps=1e-6)

    def step_ours(batch):
        trainer.train_step(batch, len(batch))

    def step_plain(batch):
        ids, tgt = make_batch(batch, vocab.eos)
        loss = plain(ids, tgt)
        opt_plain.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), 5.0)
        opt_plain.step()

    plain.train()
    step_ours(batches[0])  # warm-up both
    step_plain(batches[0])
    t = {"ours": 0.0, "plain": 0.0}
    tokens = 0
    for rep in range(2):
        for batch in batches:
            for name, fn in (("ours", step_ours), ("plain", step_plain)) if rep == 0 else (("plain", step_plain), ("ours", step_ours)):
                t0 = time.perf_counter()
                fn(batch)
                t[name] += time.perf_counter() - t0
            tokens += sum(len(x) - 1 for x in batch)
    ours_tps, plain_tps = tokens / t["ours"], tokens / t["plain"]
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, {2 * len(batches)} steps each, {tokens} tokens each, torch {torch.__version__}")
    print(f"{'trainer':<32}{'tokens/s':>10}{'ratio':>8}")
    print(f"{'plain nn.LSTM loop (baseline)':<32}{plain_tps:>10.0f}{1.0:>8.2f}")
    print(f"{'folkrnn trainer step':<32}{ours_tps:>10.0f}{ours_tps / plain_tps:>8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
