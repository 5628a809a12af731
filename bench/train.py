"""Training speed: our trainer's step against a minimal plain `nn.LSTM` loop, same batches.

    .venv/bin/python bench/train.py [--data FILE] [--iters 20] [--batch 64] [--threads 2]

All sides run the v2 size (3 x 512, 137 tokens), RMSprop, dropout 0.5, clipping, on
the same length-bucketed batches, interleaved, and print tokens/s and the ratio to the
plain fp32 loop: the plain loop and our trainer step, each in fp32 and under bf16
autocast (`--precision bf16`). Targets: ours fp32 >= 0.9x plain fp32; ours bf16 >= 2x
ours fp32 on a CPU with AMX.
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
from dataclasses import replace  # noqa: E402
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

    def ours(precision: str):
        run_dir = tempfile.mkdtemp(prefix="folkrnn-bench-")
        trainer = Trainer(args.data, run_dir, replace(cfg, precision=precision), progress=False)  # the real trainer, v2 size
        return lambda batch: trainer.train_step(batch, len(batch))

    def plain(bf16: bool):
        torch.manual_seed(0)
        net = PlainLSTM()
        net.train()
        opt = torch.optim.RMSprop(net.parameters(), lr=0.003, alpha=0.9, eps=1e-6)

        def step(batch):
            ids, tgt = make_batch(batch, vocab.eos)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = net(ids, tgt)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            opt.step()
        return step

    makers = {
        "plain nn.LSTM loop fp32 (baseline)": lambda: plain(False),
        "plain nn.LSTM loop bf16 autocast": lambda: plain(True),
        "folkrnn trainer step fp32": lambda: ours("fp32"),
        "folkrnn trainer step bf16": lambda: ours("bf16"),
    }
    sides, missing = {}, {}
    for name, make in makers.items():
        try:  # a variant this machine cannot run (bf16 on an AVX2-only CPU) prints n/a and why
            fn = make()
            fn(batches[0])  # warm-up
            sides[name] = fn
        except Exception as e:  # noqa: BLE001 - reported in the table, the rest still runs
            missing[name] = (str(e).splitlines() or [type(e).__name__])[0][:110]
    t = dict.fromkeys(sides, 0.0)
    tokens = 0
    names = list(sides)
    if not names:
        print("no variant could run here:", missing)
        return 1
    for rep in range(2):
        for batch in batches:
            for name in names if rep == 0 else names[::-1]:
                t0 = time.perf_counter()
                sides[name](batch)
                t[name] += time.perf_counter() - t0
            tokens += sum(len(x) - 1 for x in batch)
    tps = {k: tokens / v for k, v in t.items()}
    base = tps.get("plain nn.LSTM loop fp32 (baseline)")
    print(f"threads {torch.get_num_threads()}, batch {args.batch}, {2 * len(batches)} steps each, {tokens} tokens each, torch {torch.__version__}")
    print(f"{'trainer':<38}{'tokens/s':>10}{'vs plain fp32':>15}")
    for k in makers:
        if k in missing:
            print(f"{k:<38}{'n/a':>10}  ({missing[k]})")
        else:
            print(f"{k:<38}{tps[k]:>10.0f}{(f'{tps[k] / base:.2f}' if base else 'n/a'):>15}")
    b16, f32 = tps.get("folkrnn trainer step bf16"), tps.get("folkrnn trainer step fp32")
    if b16 and f32:
        print(f"our bf16 step / our fp32 step: {b16 / f32:.2f} (target >= 2 on a CPU with AMX)")
    else:
        print("our bf16 step / our fp32 step: n/a (a side could not run here)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
