"""`folkrnn train`: the config5 recipe (see folkrnn.train)."""

from __future__ import annotations

import logging
import os
import sys

from folkrnn.errors import FolkRNNError


def register(sub) -> None:
    from folkrnn.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train the v2 network (config5 recipe); resumable; torchrun for several processes",
        description="Train the folk-rnn v2 network on a data_v2 token file with the config5 recipe. "
        "Writes state.safetensors (resume), last/best.safetensors (models), log.csv and loss.png to RUN_DIR. "
        "Distributed: torchrun --nproc_per_node=N -m folkrnn train DATA -o RUN_DIR",
    )
    p.add_argument("data", help="data_v2 token file (see `folkrnn corpus`)")
    p.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate, help="learning rate (RMSprop)")
    p.add_argument("--rho", type=float, default=d.rho)
    p.add_argument("--eps", type=float, default=d.eps)
    p.add_argument("--constant-lr", action="store_true",
                   help="keep the rate constant, as the released folk-rnn script actually did (default: the documented x0.97 per epoch after epoch 20)")
    p.add_argument("--lr-decay", type=float, default=d.lr_decay)
    p.add_argument("--decay-after", type=int, default=d.decay_after, help="epochs before the decay starts")
    p.add_argument("--clip", type=float, default=d.clip, help="gradient clipping bound (0 = off)")
    p.add_argument("--clip-mode", choices=("value", "norm", "lasagne"), default=d.clip_mode,
                   help="value: clip each gradient element to [-clip, clip] (default, fused kernel); norm: clip the total gradient norm; "
                   "lasagne: clip each gate pre-activation gradient inside the recurrence like the original (explicit cell, much slower)")
    p.add_argument("--hidden", type=int, default=d.hidden_size, help="LSTM units per layer")
    p.add_argument("--layers", type=int, default=d.num_layers)
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument("--valid-fraction", type=float, default=d.valid_fraction)
    p.add_argument("--split-seed", type=int, default=d.split_seed)
    p.add_argument("--seed", type=int, default=d.seed, help="seed for initialisation, data order and dropout")
    p.add_argument("--eval-every", type=int, default=d.eval_every, help="iterations between validations (0 = each epoch)")
    p.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="also checkpoint every N iterations")
    p.add_argument("--patience", type=int, default=d.patience, help="stop after N validations without improvement (0 = never)")
    p.add_argument("--max-iterations", type=int, default=d.max_iterations, help="stop after N iterations in all (0 = no limit)")
    p.add_argument("--vocabulary", choices=("auto", "v2", "data"), default=d.vocabulary)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0 = PyTorch's default)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from folkrnn.train import TrainConfig, train

    if args.threads < 0:
        raise FolkRNNError("--threads must be >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, rho=args.rho, eps=args.eps,
        lr_schedule="constant" if args.constant_lr else "decay", lr_decay=args.lr_decay, decay_after=args.decay_after,
        clip=args.clip, clip_mode=args.clip_mode, hidden_size=args.hidden, num_layers=args.layers, dropout=args.dropout,
        valid_fraction=args.valid_fraction, split_seed=args.split_seed, seed=args.seed, eval_every=args.eval_every,
        checkpoint_minutes=args.checkpoint_minutes, checkpoint_every=args.checkpoint_every, patience=args.patience,
        max_iterations=args.max_iterations, vocabulary=args.vocabulary, device=args.device,
    )
    last = train(args.data, args.out, cfg, resume=args.resume, progress=not args.no_progress)
    if last and os.environ.get("RANK", "0") == "0":
        print(f"validation NLL {last['valid_nll']:.4f} nats/token at epoch {last['epoch']} (iteration {last['iteration']}); run in {args.out}",
              file=sys.stderr)
    return 0
