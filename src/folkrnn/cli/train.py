"""`folkrnn train`: the config5 recipe (see folkrnn.train).

Every option defaults to the recipe; with `--resume` an option not given on the command
line keeps the value the run was started (or last resumed) with, so `--resume` alone
continues a run exactly as it was going.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import replace

from folkrnn.errors import FolkRNNError

# (flags, TrainConfig field, type, help) of the options that take a value.
OPTIONS: list[tuple[tuple[str, ...], str, type, str]] = [
    (("--init",), "init", str, "start from this model's weights (`default`, a .safetensors checkpoint or a folk-rnn .pkl) "
     "with a fresh optimizer: fine-tuning; its vocabulary and size are kept"),
    (("--epochs",), "epochs", int, "epochs in all"),
    (("--batch-size",), "batch_size", int, "tunes per batch"),
    (("--lr",), "learning_rate", float, "learning rate (RMSprop); may be changed on --resume"),
    (("--rho",), "rho", float, "RMSprop decay"),
    (("--eps",), "eps", float, "RMSprop epsilon"),
    (("--lr-decay",), "lr_decay", float, "rate factor per epoch after --decay-after"),
    (("--decay-after",), "decay_after", int, "epochs before the decay starts"),
    (("--lr-min",), "lr_min", float, "with --lr-schedule cosine: the rate reached at the last epoch"),
    (("--warmup",), "warmup", int, "iterations over which the rate rises linearly from ~0 to its scheduled value "
     "(default with --init: 100, so that a fresh RMSprop accumulator does not throw the model off)"),
    (("--clip",), "clip", float, "gradient clipping bound (0 = off)"),
    (("--hidden",), "hidden_size", int, "LSTM units per layer"),
    (("--layers",), "num_layers", int, "LSTM layers"),
    (("--dropout",), "dropout", float, "dropout after each LSTM layer"),
    (("--valid-fraction",), "valid_fraction", float, "fraction of tunes held out for validation"),
    (("--split-seed",), "split_seed", int, "seed of the train/validation split"),
    (("--seed",), "seed", int, "seed for initialisation, data order and dropout"),
    (("--eval-every",), "eval_every", int, "iterations between validations (0 = each epoch)"),
    (("--checkpoint-minutes",), "checkpoint_minutes", float, "minutes between checkpoints"),
    (("--checkpoint-every",), "checkpoint_every", int, "also checkpoint every N iterations (0 = by time only)"),
    (("--patience",), "patience", int, "stop after N validations without improvement (0 = never)"),
    (("--min-delta",), "min_delta", float, "with --patience: a validation counts as an improvement only when it beats "
     "the last one that did by more than this many nats/token"),
    (("--max-iterations",), "max_iterations", int, "stop after N iterations in all (0 = no limit)"),
    (("--keep-epochs",), "keep_epochs", int, "keep the models of the last N epochs as epoch-NNN.safetensors, to average "
     "with `folkrnn average` (0 = none)"),
    (("--device",), "device", str, "auto, cpu, cuda"),
]


INIT_WARMUP = 100  # iterations of rate warm-up when fine-tuning (--init), unless --warmup says otherwise


def register(sub) -> None:
    from folkrnn.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train the v2 network (config5 recipe); resumable; torchrun for several processes",
        description="Train the folk-rnn v2 network on a data_v2 token file with the config5 recipe. "
        "Writes state.safetensors (resume), last/best.safetensors (models), log.csv and loss.png to RUN_DIR. "
        "With --resume, options not given keep the run's own values. "
        "Distributed: torchrun --nproc_per_node=N -m folkrnn train DATA -o RUN_DIR",
    )
    p.add_argument("data", help="data_v2 token file (see `folkrnn corpus`)")
    p.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    for flags, name, typ, text in OPTIONS:
        default = getattr(d, name)
        shown = f" (default: {default})" if default != "" else ""
        p.add_argument(*flags, dest=name, type=typ, default=argparse.SUPPRESS, help=text + shown)
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=("decay", "constant", "cosine"), default=argparse.SUPPRESS,
                   help="decay: the documented x0.97 per epoch after --decay-after (default); constant: what the released "
                   "folk-rnn script actually did; cosine: from --lr down to --lr-min over --epochs")
    p.add_argument("--constant-lr", dest="lr_schedule", action="store_const", const="constant", default=argparse.SUPPRESS,
                   help="the same as --lr-schedule constant")
    p.add_argument("--precision", choices=("fp32", "bf16", "auto"), default=argparse.SUPPRESS,
                   help="fp32 (default); bf16: bf16 autocast with fp32 master weights (about 1.5-2x faster on CPUs with AMX "
                   "and on GPUs); where PyTorch cannot run the fused LSTM in bf16 (e.g. AVX2-only CPUs, found by a "
                   "one-step trial) bf16 is refused with the reason, exit 2; auto: bf16 where it runs and is fast, else fp32")
    p.add_argument("--optimizer", choices=("rmsprop", "rmsprop-torch", "adam"), default=argparse.SUPPRESS,
                   help="rmsprop: Lasagne's formula, as config5 ran (default); rmsprop-torch; adam")
    p.add_argument("--clip-mode", dest="clip_mode", choices=("value", "norm", "lasagne"), default=argparse.SUPPRESS,
                   help="value: clip each gradient element to [-clip, clip] (default, fused kernel); norm: clip the total gradient norm; "
                   "lasagne: clip each gate pre-activation gradient inside the recurrence like the original (explicit cell, much slower)")
    p.add_argument("--vocabulary", choices=("auto", "v2", "data"), default=argparse.SUPPRESS,
                   help="auto: v2 when the data fits it, else built from the data (default)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch's default)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)

    p = sub.add_parser(
        "average",
        help="average several checkpoints' weights (e.g. a run's last epochs, kept with --keep-epochs)",
        description="Write the element-wise mean of the weights of two or more checkpoints of the same network and "
        "vocabulary (Polyak averaging of a run's last epochs: `folkrnn train ... --keep-epochs 3`, then "
        "`folkrnn average RUN/epoch-*.safetensors -o avg.safetensors`). The result keeps the last checkpoint's "
        "training record and lists its inputs; `folkrnn score` measures it.",
    )
    p.add_argument("checkpoints", nargs="+", help="the .safetensors checkpoints (or a run directory: its kept epochs)")
    p.add_argument("-o", "--out", required=True, help="the .safetensors file to write")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")
    p.set_defaults(func=run_average)


def run_average(args) -> int:
    from pathlib import Path

    import torch

    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.train import average_checkpoints, epoch_snapshots

    paths: list[Path] = []
    for c in args.checkpoints:
        c = Path(c)
        if c.is_dir():
            kept = epoch_snapshots(c)
            if not kept:
                raise FolkRNNError(f"{c}: no epoch-NNN.safetensors models in this run (train with --keep-epochs N)")
            paths.extend(kept)
        elif not c.is_file():
            raise FolkRNNError(f"{c}: no such file")
        else:
            paths.append(c)
    out = Path(args.out)
    if out.is_dir():
        raise FolkRNNError(f"{out}: is a directory (give a .safetensors file name)")
    if any(out.resolve() == p.resolve() for p in paths):
        raise FolkRNNError(f"{out}: is one of the inputs; write the average to a new file")
    ckpt = average_checkpoints(paths)
    save_checkpoint(out, ckpt.model, ckpt.vocab, ckpt.metadata, dtype=torch.float16 if args.fp16 else torch.float32)
    print(f"averaged {len(paths)} checkpoints -> {out}: " + ", ".join(p.name for p in paths), file=sys.stderr)
    return 0


def config_from_args(args):
    """The run's options: the recipe's (or, on --resume, the run's own) with the given flags over them."""
    from folkrnn.train import TrainConfig, saved_config

    names = [name for _, name, _, _ in OPTIONS] + ["lr_schedule", "optimizer", "clip_mode", "vocabulary", "precision"]
    given = {k: getattr(args, k) for k in names if hasattr(args, k)}
    if args.resume:
        base = saved_config(args.out)
    elif "init" in given:
        from folkrnn.train import init_model_size

        # Fine-tuning keeps the model's size unless the flags say otherwise (then the trainer refuses).
        hidden, layers = init_model_size(given["init"])
        base = TrainConfig(hidden_size=hidden, num_layers=layers, warmup=INIT_WARMUP)
    else:
        base = TrainConfig()
    return replace(base, **given)


def run(args) -> int:
    import torch

    from folkrnn.train import train

    if args.threads < 0:
        raise FolkRNNError("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = config_from_args(args)
    last = train(args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress)
    if last and os.environ.get("RANK", "0") == "0":
        print(f"validation NLL {last['valid_nll']:.4f} nats/token at epoch {last['epoch']} (iteration {last['iteration']}); run in {args.out}",
              file=sys.stderr)
    return 0
