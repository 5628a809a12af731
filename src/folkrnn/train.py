"""Training with the folk-rnn v2 recipe (config5, docs/training.md): resumable, optionally distributed.

The recipe: one-hot input, 3 x 512 LSTM, dropout 0.5 after each layer, RMSprop
(lr 0.003, rho 0.9, eps 1e-6), batches of 64 tunes of (near) equal length drawn by
length bucket, NLL summed over each tune and averaged over the batch, gradient
clipping, forget-gate bias 5, Glorot/orthogonal init, 5% of tunes (seed 42, a
multiple of the batch size) held out for validation.

A run directory holds:
  state.safetensors   everything needed to resume (weights, optimizer, RNG, position)
  last.safetensors    the latest weights as a model checkpoint (`-m` loads it)
  best.safetensors    the weights with the lowest validation NLL so far
  log.csv, loss.png   the loss curve, refreshed as training goes
Checkpoints are written atomically; a run killed at any moment resumes (`resume=True`)
from its last state with the same data order, optimizer state and RNG state, and so
reaches the same weights as a run never killed. Ctrl-C (SIGINT) finishes the update in
progress, saves the state and then raises KeyboardInterrupt, so a resume loses nothing;
a second Ctrl-C stops at once.

Distributed: under `torchrun`, each of N processes takes every N-th tune of each
batch; DDP averages gradients, so the update equals the single-process one.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from folkrnn.checkpoint import atomic_write, header_metadata, save_checkpoint
from folkrnn.datafile import read_tunes
from folkrnn.errors import FolkRNNError
from folkrnn.files import progress as progress_bar
from folkrnn.files import sha256_file as _sha256
from folkrnn.model import FolkRNN, ModelConfig, config_from_dict, sequence_nll
from folkrnn.precision import resolve_precision
from folkrnn.vocab import Vocabulary

log = logging.getLogger(__name__)

STATE_FILE = "state.safetensors"
STATE_FORMAT = "folkrnn-train-state"


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a run; all are recorded in its checkpoints."""

    epochs: int = 100
    batch_size: int = 64
    optimizer: str = "rmsprop"  # "rmsprop": Lasagne's formula (eps inside the sqrt), as config5 ran; "rmsprop-torch"; "adam"
    learning_rate: float = 0.003
    rho: float = 0.9
    eps: float = 1e-6
    lr_schedule: str = "decay"  # "decay": x lr_decay per epoch after decay_after; "constant": what the original ran; "cosine": to lr_min at the last epoch
    lr_decay: float = 0.97
    decay_after: int = 20
    lr_min: float = 0.0  # the floor of the cosine schedule
    warmup: int = 0  # iterations over which the rate rises linearly from ~0 (fine-tuning: a fresh RMSprop accumulator makes the first steps huge)
    precision: str = "fp32"  # "fp32"; "bf16": forward/backward under bf16 autocast with fp32 master weights; "auto": bf16 where the hardware has fast bf16
    clip: float = 5.0
    clip_mode: str = "value"  # "value": each gradient element to [-clip, clip]; "norm": total norm; "lasagne": gate pre-activation gradients inside the recurrence (explicit cell, slow)
    hidden_size: int = 512
    num_layers: int = 3
    dropout: float = 0.5
    forget_bias: float = 5.0
    valid_fraction: float = 0.05
    split_seed: int = 42
    seed: int = 1
    eval_every: int = 0  # iterations between validations; 0 = at each epoch's end only
    checkpoint_minutes: float = 5.0
    checkpoint_every: int = 0  # iterations between checkpoints (0 = by time only); for tests
    patience: int = 0  # stop after this many validations without improvement (0 = never)
    min_delta: float = 0.0  # for patience, a validation improves only when it beats the last improvement by more than this (nats/token)
    max_iterations: int = 0  # stop after this many iterations in total (0 = no limit)
    keep_epochs: int = 0  # keep the models of the last N epochs as epoch-NNN.safetensors (for `folkrnn average`); 0 = none
    vocabulary: str = "auto"  # "auto": v2 if the data fits it, else built from the data; "v2"; "data"
    device: str = "auto"
    init: str = ""  # start from this model's weights (fine-tuning; fresh optimizer); "" = fresh Glorot/orthogonal init

    def __post_init__(self) -> None:
        checks = [
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.batch_size >= 1, "batch size must be >= 1"),
            (self.learning_rate > 0, "learning rate must be > 0"),
            (0 < self.rho < 1, "rho must be in (0, 1)"),
            (self.eps > 0, "eps must be > 0"),
            (self.optimizer in ("rmsprop", "rmsprop-torch", "adam"), "optimizer must be rmsprop, rmsprop-torch or adam"),
            (self.lr_schedule in ("decay", "constant", "cosine"), "lr schedule must be 'decay', 'constant' or 'cosine'"),
            (0 <= self.lr_min <= self.learning_rate, "lr min must be in [0, learning rate]"),
            (self.warmup >= 0, "warmup must be >= 0 iterations"),
            (self.precision in ("fp32", "bf16", "auto"), "precision must be fp32, bf16 or auto"),
            (0 < self.lr_decay <= 1, "lr decay must be in (0, 1]"),
            (self.clip >= 0, "clip must be >= 0 (0 = off)"),
            (self.clip_mode in ("value", "norm", "lasagne"), "clip mode must be 'value', 'norm' or 'lasagne'"),
            (0 < self.valid_fraction < 0.5, "validation fraction must be in (0, 0.5)"),
            (self.checkpoint_minutes > 0, "checkpoint interval must be > 0 minutes"),
            (self.min_delta >= 0, "min delta must be >= 0"),
            (self.vocabulary in ("auto", "v2", "data"), "vocabulary must be auto, v2 or data"),
            (min(self.eval_every, self.checkpoint_every, self.patience, self.max_iterations, self.decay_after,
                 self.keep_epochs) >= 0,
             "interval, patience and limit options must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise FolkRNNError(msg)
        ModelConfig(hidden_size=self.hidden_size, num_layers=self.num_layers, dropout=self.dropout)

    def lr_at(self, epoch: float, iteration: int | None = None) -> float:
        """Learning rate at (fractional, 0-based) `epoch`; with `iteration` (0-based,
        counted from the run's start) the linear warm-up applies on top.

        >>> c = TrainConfig(learning_rate=0.001, lr_schedule="cosine", lr_min=0.0001, epochs=10, warmup=4)
        >>> round(c.lr_at(0), 6), round(c.lr_at(5), 6), round(c.lr_at(10), 6), round(c.lr_at(0, iteration=1), 6)
        (0.001, 0.00055, 0.0001, 0.0005)
        >>> TrainConfig().lr_at(21.5) == 0.003 * 0.97
        True
        """
        if self.lr_schedule == "constant":
            lr = self.learning_rate
        elif self.lr_schedule == "cosine":
            frac = min(1.0, max(0.0, epoch / self.epochs))
            lr = self.lr_min + 0.5 * (self.learning_rate - self.lr_min) * (1 + math.cos(math.pi * frac))
        else:
            lr = self.learning_rate * self.lr_decay ** max(0, int(epoch) - self.decay_after)
        if iteration is not None and self.warmup and iteration < self.warmup:
            lr *= (iteration + 1) / self.warmup
        return lr

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return config_from_dict(cls, d, "training options")


# -- data --------------------------------------------------------------------------
def choose_vocabulary(tunes: Sequence[Sequence[str]], mode: str) -> Vocabulary:
    v2 = Vocabulary.v2()
    if mode == "v2":
        return data_vocabulary(v2, tunes, "the v2 vocabulary")
    if mode == "auto":
        missing = v2.unknown(t for tune in tunes for t in tune)
        if not missing:
            return v2
        log.info("data has %d tokens outside v2; building the vocabulary from the data", len(missing))
    return Vocabulary.from_tunes(tunes)


def data_vocabulary(vocab: Vocabulary, tunes: Sequence[Sequence[str]], what: str) -> Vocabulary:
    """`vocab` itself when every token of the data is in it; else a one-line error naming the strangers."""
    missing = vocab.unknown(t for tune in tunes for t in tune)
    if missing:
        raise FolkRNNError(f"the data has tokens outside {what}: {' '.join(missing[:20])}")
    return vocab


def read_state_meta(run_dir: str | Path) -> dict:
    """The JSON header of a run's state file (options, position, history), without its tensors."""
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        raise FolkRNNError(f"{run_dir}: nothing to resume (no {STATE_FILE})")
    try:
        meta = json.loads(header_metadata(path)["state"])
    except Exception as e:  # noqa: BLE001 - any failure here means a damaged file
        raise FolkRNNError(f"{path}: unreadable training state ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise FolkRNNError(f"{path}: not a folkrnn training state")
    return meta


def saved_config(run_dir: str | Path) -> TrainConfig:
    """The options a run in `run_dir` was started (or last resumed) with."""
    return TrainConfig.from_dict(read_state_meta(run_dir)["train_config"])


def epoch_snapshots(run_dir: str | Path) -> list[Path]:
    """The epoch-NNN.safetensors models a run kept (`--keep-epochs`), oldest first."""
    found = [p for p in Path(run_dir).glob("epoch-*.safetensors") if p.stem.split("-")[1].isdigit()]
    return sorted(found, key=lambda p: int(p.stem.split("-")[1]))


def average_checkpoints(paths: Sequence[str | Path]):
    """The element-wise mean of several checkpoints' weights (same network, same vocabulary).

    Returns a Checkpoint whose metadata is the last one's, with `averaged_from` listing
    every input (file, epoch, tensor checksum). Averaging the last epochs of one run
    (Polyak averaging) smooths the noise of the final updates."""
    from folkrnn.checkpoint import Checkpoint
    from folkrnn.load import load_model

    if len(paths) < 2:
        raise FolkRNNError("averaging needs at least two checkpoints")
    ckpts = [load_model(p) for p in paths]
    first = ckpts[0]
    for p, c in zip(paths, ckpts):
        if c.model.config != first.model.config:
            raise FolkRNNError(f"{p}: a different network ({c.model.config.to_dict()}) from {paths[0]}")
        if list(c.vocab.tokens) != list(first.vocab.tokens):
            raise FolkRNNError(f"{p}: a different vocabulary from {paths[0]}")
    states = [c.model.state_dict() for c in ckpts]
    mean = {k: (sum(s[k].double() for s in states) / len(states)).float() for k in states[0]}
    model = ckpts[-1].model
    model.load_state_dict(mean)
    meta = {k: v for k, v in ckpts[-1].metadata.items() if k not in ("file", "tensors_sha256")}
    meta["averaged_from"] = [
        {"file": Path(p).name, "epoch": c.metadata.get("training", {}).get("epoch"), "tensors_sha256": c.metadata.get("tensors_sha256")}
        for p, c in zip(paths, ckpts)
    ]
    return Checkpoint(model=model, vocab=ckpts[-1].vocab, metadata=meta)


def init_model_size(spec: str) -> tuple[int, int]:
    """(hidden size, layers) of the model `--init` names."""
    from folkrnn.load import load_model

    c = load_model(spec).model.config
    return c.hidden_size, c.num_layers


def split_train_valid(n: int, cfg: TrainConfig) -> tuple[list[int], list[int]]:
    """Indices of training and validation tunes: a seeded 5%, rounded to whole batches."""
    n_valid = int(round(n * cfg.valid_fraction / cfg.batch_size)) * cfg.batch_size
    n_valid = max(cfg.batch_size, n_valid) if n >= 4 * cfg.batch_size else max(1, int(round(n * cfg.valid_fraction)))
    g = torch.Generator().manual_seed(cfg.split_seed)
    perm = torch.randperm(n, generator=g).tolist()
    return sorted(perm[n_valid:]), sorted(perm[:n_valid])


def epoch_batches(lengths: Sequence[int], epoch: int, cfg: TrainConfig, min_size: int = 1) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch): tunes are shuffled,
    sorted by length (so each batch holds tunes of equal or nearly equal length),
    cut into batches, and the batches shuffled."""
    g = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    perm = torch.randperm(len(lengths), generator=g).tolist()
    perm.sort(key=lambda i: lengths[i])  # stable: equal lengths stay in random order
    batches = [perm[i : i + cfg.batch_size] for i in range(0, len(perm), cfg.batch_size)]
    batches = [b for b in batches if len(b) >= min_size]
    order = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in order]


def make_batch(seqs: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tunes as id lists (with <s> and </s>) -> inputs (B, T-1), targets (B, T-1) with -100 padding."""
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(s)] = torch.tensor(s)
    return ids[:, :-1], tgt[:, 1:]


class LasagneRMSprop(torch.optim.Optimizer):
    """RMSprop as Lasagne computes it: p -= lr * g / sqrt(acc + eps).

    torch's RMSprop adds eps outside the square root (sqrt(acc) + eps); with eps=1e-6
    that lets parameters with near-zero gradients take full-size steps, which the
    original recipe never did (its floor is sqrt(1e-6) = 1e-3)."""

    def __init__(self, params, lr: float = 0.003, rho: float = 0.9, eps: float = 1e-6):
        super().__init__(params, {"lr": lr, "rho": rho, "eps": eps})

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            lr, rho, eps = group["lr"], group["rho"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if "square_avg" not in st:
                    st["square_avg"] = torch.zeros_like(p)
                acc = st["square_avg"]
                acc.mul_(rho).addcmul_(p.grad, p.grad, value=1 - rho)
                p.addcdiv_(p.grad, (acc + eps).sqrt_(), value=-lr)
        return None


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return LasagneRMSprop(params, lr=cfg.lr_at(0), rho=cfg.rho, eps=cfg.eps)
    if cfg.optimizer == "rmsprop-torch":
        return torch.optim.RMSprop(params, lr=cfg.lr_at(0), alpha=cfg.rho, eps=cfg.eps)
    return torch.optim.Adam(params, lr=cfg.lr_at(0))


# -- distributed --------------------------------------------------------------------
@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    if not device.startswith("cuda"):
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    return Dist(dist.get_rank(), dist.get_world_size(), local)


# -- the loop ------------------------------------------------------------------------
def resolve_device(name: str, d: Dist) -> str:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FolkRNNError("--device cuda asked for, but no CUDA device is available")
    return name


class Trainer:
    """Holds a run's model, optimizer and position; `run()` trains to the end."""

    def __init__(self, data: str | Path, run_dir: str | Path, cfg: TrainConfig, resume: bool = False,
                 progress: bool = True, on_eval: Callable[[dict], None] | None = None):
        self.run_dir = Path(run_dir)
        self.progress = progress
        self.on_eval = on_eval
        state = None
        if resume:
            state = self._read_state()
            saved = TrainConfig.from_dict(state["meta"]["train_config"])
            if saved != cfg:
                diff = [f.name for f in fields(cfg) if getattr(saved, f.name) != getattr(cfg, f.name)]
                # Only the stopping rules may change on resume; the recipe may not.
                # The learning rate may be changed by hand too (log.csv records it per row).
                allowed = {"epochs", "patience", "max_iterations", "checkpoint_minutes", "checkpoint_every", "eval_every", "device",
                           "learning_rate", "min_delta", "precision"}
                if saved.learning_rate != cfg.learning_rate:
                    log.info("learning rate changed on resume: %g -> %g", saved.learning_rate, cfg.learning_rate)
                bad = [k for k in diff if k not in allowed]
                if bad:
                    raise FolkRNNError(f"--resume with different training options: {', '.join(bad)} (the run was started with other values)")
        elif (self.run_dir / STATE_FILE).exists():
            raise FolkRNNError(f"{self.run_dir} already holds a run; use --resume to continue it or choose another directory")
        self.cfg = cfg
        self.dist = init_distributed(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.device = resolve_device(cfg.device, self.dist)
        self.amp_dtype = torch.bfloat16 if resolve_precision(cfg.precision, self.device) == "bf16" else None
        if cfg.clip_mode == "lasagne" and self.amp_dtype is not None:
            raise FolkRNNError("--precision bf16 applies to the fused kernel; use --precision fp32 with --clip-mode lasagne")

        tunes = read_tunes(data)
        self.data_path = str(data)
        init = None
        self.init_info: dict | None = None
        if state is not None:
            # A run keeps its vocabulary (chosen from the data, or its --init model's).
            self.init_info = state["meta"].get("init")
            self.vocab = data_vocabulary(Vocabulary(state["meta"]["vocabulary"]), tunes, "the vocabulary of the run being resumed")
        elif cfg.init:
            from folkrnn.load import load_model, resolve_model_path

            init = load_model(cfg.init)
            ic = init.model.config
            if (ic.hidden_size, ic.num_layers) != (cfg.hidden_size, cfg.num_layers):
                raise FolkRNNError(f"--init {cfg.init} is {ic.num_layers} x {ic.hidden_size} but the run asks for "
                                   f"{cfg.num_layers} x {cfg.hidden_size}; leave --hidden/--layers out to keep the model's size")
            self.vocab = data_vocabulary(init.vocab, tunes, f"--init {cfg.init}'s vocabulary")
            path = resolve_model_path(cfg.init)
            self.init_info = {"model": cfg.init, "file": str(path), "sha256": _sha256(path)}
        else:
            self.vocab = choose_vocabulary(tunes, cfg.vocabulary)
        seqs = [[self.vocab.bos, *self.vocab.encode(t, where=f"{data}: tune {i + 1}"), self.vocab.eos] for i, t in enumerate(tunes)]
        tr, va = split_train_valid(len(seqs), cfg)
        if not tr:
            raise FolkRNNError(f"{data}: too few tunes to train on ({len(seqs)})")
        self.train_seqs = [seqs[i] for i in tr]
        self.valid_seqs = [seqs[i] for i in va]
        self.data_info = {
            "path": str(data), "tunes": len(seqs), "train_tunes": len(tr), "valid_tunes": len(va),
            "train_tokens": sum(len(s) - 1 for s in self.train_seqs), "valid_tokens": sum(len(s) - 1 for s in self.valid_seqs),
            "sha256": _sha256(data),
            # How often each token occurs in the training tunes: a token never seen keeps its
            # random initial weights, which the interpretability toolkit must know.
            "token_counts": dict(sorted(Counter(self.vocab.tokens[i] for s in self.train_seqs for i in s[1:]).items())),
        }
        log.info("%s: %d tunes: %d for training (%d tokens), %d held out for validation (%d tokens; split seed %d)",
                 data, len(seqs), len(tr), self.data_info["train_tokens"], len(va), self.data_info["valid_tokens"], cfg.split_seed)
        if state is not None and state["meta"]["data"]["sha256"] != self.data_info["sha256"]:
            raise FolkRNNError(f"{data}: the data file differs from the one the run was started on")

        mc = ModelConfig(vocab_size=len(self.vocab), hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, dropout=cfg.dropout)
        if cfg.clip_mode == "lasagne" and self.dist.world > 1:
            raise FolkRNNError("--clip-mode lasagne runs the explicit cell outside DDP; use --clip-mode value or norm with torchrun")
        # Dropout draws from the global generator; its state is checkpointed.
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.model = FolkRNN(mc)
        self.model.reset_parameters(torch.Generator().manual_seed(cfg.seed), forget_bias=cfg.forget_bias)
        if init is not None:
            self.model.load_state_dict(init.model.state_dict())
            log.info("starting from the weights of %s", cfg.init)
        self.model.to(self.device)
        self.optimizer = make_optimizer(self.model.parameters(), cfg)
        self.epoch = 0
        self.batch_in_epoch = 0
        self.iteration = 0
        self.tokens_seen = 0
        self.elapsed = 0.0
        self.history: list[dict] = []
        self.best_valid = math.inf
        self.patience_ref = math.inf  # the validation NLL that last counted as an improvement for patience
        self.bad_evals = 0
        if state is not None:
            self._load_state(state)
        self.ddp = None
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(self.model, device_ids=[self.dist.local_rank] if self.device.startswith("cuda") else None)

    # -- state ---------------------------------------------------------------------
    def _read_state(self) -> dict:
        meta = read_state_meta(self.run_dir)
        path = self.run_dir / STATE_FILE
        try:
            tensors = load_file(str(path))
        except Exception as e:  # noqa: BLE001 - any failure here means a damaged file
            raise FolkRNNError(f"{path}: unreadable training state ({e})") from None
        return {"tensors": tensors, "meta": meta}

    def _load_state(self, state: dict) -> None:
        t, m = state["tensors"], state["meta"]
        self.model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
        opt_state = self.optimizer.state_dict()
        params = {}
        for k, v in t.items():
            if k.startswith("optim."):
                _, idx, name = k.split(".", 2)
                params.setdefault(int(idx), {})[name] = v
        opt_state["state"] = params
        self.optimizer.load_state_dict(opt_state)
        torch.set_rng_state(t["rng.torch"])
        self.epoch, self.batch_in_epoch, self.iteration = m["epoch"], m["batch_in_epoch"], m["iteration"]
        self.tokens_seen, self.elapsed = m["tokens_seen"], m["elapsed"]
        self.history, self.best_valid, self.bad_evals = m["history"], m["best_valid"], m["bad_evals"]
        self.patience_ref = m.get("patience_ref", self.best_valid)
        log.info("resumed at epoch %d batch %d (iteration %d)", self.epoch, self.batch_in_epoch, self.iteration)

    def _metadata(self) -> dict:
        return {
            "train_config": asdict(self.cfg), "data": self.data_info, "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch, "iteration": self.iteration, "tokens_seen": self.tokens_seen,
            "elapsed": self.elapsed, "best_valid": self.best_valid, "bad_evals": self.bad_evals, "patience_ref": self.patience_ref,
            "history": self.history, "vocabulary": list(self.vocab.tokens), "torch": torch.__version__,
            "world_size": self.dist.world, "replicas_identical": getattr(self, "replicas_identical", None),
            "init": self.init_info,
        }

    def save(self) -> None:
        """Write the resume state, then `last` (atomically, rank 0 only)."""
        if not self.dist.main:
            return
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        for idx, st in self.optimizer.state_dict()["state"].items():
            for name, v in st.items():
                tensors[f"optim.{idx}.{name}"] = torch.as_tensor(v).detach().cpu().contiguous()
        tensors["rng.torch"] = torch.get_rng_state()
        meta = {"format": STATE_FORMAT, **self._metadata()}
        atomic_write(self.run_dir / STATE_FILE, lambda tmp: save_file(tensors, tmp, metadata={"state": json.dumps(meta)}))
        save_checkpoint(self.run_dir / "last.safetensors", self.model, self.vocab, self._model_metadata())

    def _keep_epoch(self) -> None:
        """With keep_epochs N: this epoch's model as epoch-NNN.safetensors; only the last N are kept."""
        if not (self.cfg.keep_epochs and self.dist.main):
            return
        save_checkpoint(self.run_dir / f"epoch-{self.epoch:03d}.safetensors", self.model, self.vocab, self._model_metadata())
        kept = epoch_snapshots(self.run_dir)  # oldest first
        for old in kept[: -self.cfg.keep_epochs]:
            old.unlink()

    def _model_metadata(self) -> dict:
        m = self._metadata()
        return {"training": {k: m[k] for k in ("train_config", "data", "epoch", "iteration", "tokens_seen", "elapsed", "best_valid", "history", "torch", "world_size", "replicas_identical", "init")}}

    # -- steps ---------------------------------------------------------------------
    def _forward_loss(self, ids: torch.Tensor, tgt: torch.Tensor, scale: float) -> torch.Tensor:
        if self.cfg.clip_mode == "lasagne" and self.cfg.clip > 0:
            logits, _ = self.model.run_explicit(ids, grad_clip=self.cfg.clip)
            return sequence_nll(logits, tgt) * scale
        net = self.ddp or self.model
        if self.amp_dtype is None:
            _, loss = net(ids, tgt)
            return loss * scale
        # bf16 matmuls inside the network; fp32 master weights, the softmax and the loss in fp32.
        with torch.autocast(device_type=self.device.split(":")[0], dtype=self.amp_dtype):
            logits, _ = net(ids)
        return sequence_nll(logits.float(), tgt) * scale

    def train_step(self, batch: Sequence[Sequence[int]], global_size: int) -> tuple[float, int]:
        """One update on this rank's share of a batch. Returns (summed NLL, tokens) of that share."""
        self.model.train()
        ids, tgt = make_batch(batch, self.vocab.eos)
        ids, tgt = ids.to(self.device), tgt.to(self.device)
        # loss = NLL summed over tunes / batch size (config5); DDP averages over ranks, so scale by world/len.
        loss = self._forward_loss(ids, tgt, scale=len(batch) * self.dist.world / global_size)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.clip > 0 and self.cfg.clip_mode == "norm":
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
        elif self.cfg.clip > 0 and self.cfg.clip_mode == "value":
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.cfg.clip)
        self.optimizer.step()
        n_tok = int((tgt != -100).sum())
        return loss.item() * global_size / self.dist.world, n_tok

    @torch.no_grad()
    def validate(self) -> float:
        """NLL per token (nats) on the held-out tunes, summed over all ranks."""
        self.model.eval()
        mine = self.valid_seqs[self.dist.rank :: self.dist.world]
        order = sorted(range(len(mine)), key=lambda i: len(mine[i]))
        total, count = 0.0, 0
        for i in range(0, len(order), 64):
            ids, tgt = make_batch([mine[j] for j in order[i : i + 64]], self.vocab.eos)
            ids, tgt = ids.to(self.device), tgt.to(self.device)
            logits, loss = self.model(ids, tgt)
            total += float(loss) * ids.shape[0]
            count += int((tgt != -100).sum())
        if self.dist.world > 1:
            t = torch.tensor([total, float(count)], dtype=torch.float64)
            dist.all_reduce(t)
            total, count = float(t[0]), int(t[1])
        return total / max(1, count)

    def _evaluate_and_log(self, train_sum: float, train_tok: int) -> bool:
        """Validate, log, keep the best; returns True when patience is exhausted."""
        v = self.validate()
        row = {
            "iteration": self.iteration, "epoch": round(self.epoch + self.batch_in_epoch / max(1, self.n_batches), 3),
            "elapsed_s": round(self.elapsed, 1), "tokens": self.tokens_seen,
            "train_nll": round(train_sum / max(1, train_tok), 5) if train_tok else None,
            "valid_nll": round(v, 5), "lr": self.optimizer.param_groups[0]["lr"],
        }
        self.history.append(row)
        improved = v < self.best_valid - 1e-6
        if improved:
            self.best_valid = v
        if v < self.patience_ref - max(self.cfg.min_delta, 1e-6):
            self.patience_ref = v
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        if self.dist.main:
            if improved:
                save_checkpoint(self.run_dir / "best.safetensors", self.model, self.vocab, self._model_metadata())
            write_log(self.run_dir, self.history)
            if self.on_eval:
                self.on_eval(row)
        return self.cfg.patience > 0 and self.bad_evals >= self.cfg.patience

    def run(self) -> dict:
        """Train until the epochs, iteration limit or patience run out. Returns the last log row.

        Ctrl-C: the update in progress finishes, the state is saved, KeyboardInterrupt is raised."""
        with _deferred_sigint() as interrupted:
            return self._run(interrupted)

    def _stop_requested(self, interrupted: Callable[[], bool]) -> bool:
        flag = interrupted()
        if self.dist.world > 1:  # every rank must stop at the same iteration
            t = torch.tensor([float(flag)])
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = bool(t.item())
        return flag

    def _run(self, interrupted: Callable[[], bool]) -> dict:
        cfg = self.cfg
        done = self.finished()
        if done:
            log.warning("%s: nothing left to do: %s", self.run_dir, done)
            return self.history[-1] if self.history else {}
        if self.dist.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        lengths = [len(s) for s in self.train_seqs]
        self.n_batches = len(epoch_batches(lengths, 0, cfg, min_size=self.dist.world))
        total_iters = cfg.epochs * self.n_batches
        if cfg.max_iterations:
            total_iters = min(total_iters, cfg.max_iterations)
        bar = None
        if self.progress and self.dist.main:
            bar = progress_bar(total=total_iters, initial=min(self.iteration, total_iters), unit="it", desc="train",
                               leave=True, delay=0, mininterval=0.1)
        last_ckpt = time.monotonic()
        train_sum, train_tok = 0.0, 0
        stop = False
        rate_t0, rate_tok = time.monotonic(), 0
        while self.epoch < cfg.epochs and not stop:
            batches = epoch_batches(lengths, self.epoch, cfg, min_size=self.dist.world)
            while self.batch_in_epoch < len(batches):
                if self._stop_requested(interrupted):
                    if bar is not None:
                        bar.close()
                    self.save()
                    log.info("interrupted: state saved at epoch %d, iteration %d; `--resume` continues from there",
                             self.epoch, self.iteration)
                    raise KeyboardInterrupt
                if cfg.max_iterations and self.iteration >= cfg.max_iterations:
                    stop = True
                    break
                t0 = time.monotonic()
                lr = cfg.lr_at(self.epoch + self.batch_in_epoch / len(batches), iteration=self.iteration)
                for g in self.optimizer.param_groups:
                    g["lr"] = lr
                batch = batches[self.batch_in_epoch]
                mine = [self.train_seqs[i] for i in batch[self.dist.rank :: self.dist.world]]
                s, n = self.train_step(mine, len(batch))
                if not math.isfinite(s):
                    raise FolkRNNError(f"training diverged at iteration {self.iteration} (loss {s}); try a lower learning rate")
                n_all = sum(len(self.train_seqs[i]) - 1 for i in batch)
                train_sum += s * (n_all / max(1, n)) if self.dist.world > 1 else s
                train_tok += n_all
                rate_tok += n_all
                self.tokens_seen += n_all
                self.batch_in_epoch += 1
                self.iteration += 1
                self.elapsed += time.monotonic() - t0
                if bar is not None:
                    bar.update(1)
                    dt = time.monotonic() - rate_t0
                    post = {"ep": self.epoch, "tok/s": f"{rate_tok / max(dt, 1e-9):.0f}", "train": f"{train_sum / max(1, train_tok):.3f}"}
                    if self.history:
                        post["valid"] = f"{self.history[-1]['valid_nll']:.3f}"
                    bar.set_postfix(post, refresh=False)
                if cfg.eval_every and self.iteration % cfg.eval_every == 0:
                    stop = self._evaluate_and_log(train_sum, train_tok)
                    train_sum, train_tok = 0.0, 0
                due_time = time.monotonic() - last_ckpt >= cfg.checkpoint_minutes * 60
                due_iter = cfg.checkpoint_every and self.iteration % cfg.checkpoint_every == 0
                if due_time or due_iter or stop:
                    self.save()
                    last_ckpt = time.monotonic()
                if stop:
                    break
            else:
                self.epoch += 1
                self.batch_in_epoch = 0
                if not cfg.eval_every:
                    stop = self._evaluate_and_log(train_sum, train_tok)
                    train_sum, train_tok = 0.0, 0
                self.save()
                self._keep_epoch()
                last_ckpt = time.monotonic()
        if bar is not None:
            bar.close()
        if self.dist.world > 1:
            self.replicas_identical = self._check_replicas()
        self.save()
        return self.history[-1] if self.history else {}

    def finished(self) -> str:
        """Why the run has nothing left to do ('' when it has)."""
        cfg = self.cfg
        if self.epoch >= cfg.epochs:
            return f"all {cfg.epochs} epochs are done (raise --epochs to go on)"
        if cfg.max_iterations and self.iteration >= cfg.max_iterations:
            return f"the iteration limit {cfg.max_iterations} is reached (raise --max-iterations to go on)"
        if cfg.patience and self.bad_evals >= cfg.patience:
            return f"patience ran out: {self.bad_evals} validations without improvement (raise --patience to go on)"
        return ""

    def _check_replicas(self) -> bool:
        """DDP must leave every process with the same weights: compare checksums."""
        flat = torch.cat([p.detach().double().flatten().cpu() for p in self.model.parameters()])
        mine = torch.tensor([flat.sum().item(), (flat * torch.arange(flat.numel(), dtype=torch.float64)).sum().item()], dtype=torch.float64)
        gathered = [torch.zeros_like(mine) for _ in range(self.dist.world)]
        dist.all_gather(gathered, mine)
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        if not same:
            log.error("DDP replicas ended with different weights")
        return same

    def close(self) -> None:
        if self.dist.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


class _deferred_sigint:
    """Within the block, the first SIGINT or SIGTERM only sets a flag (the object, called,
    tells); a second one interrupts at once. Outside the main thread nothing changes."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.flag = False
        self.previous: dict = {}

    def _handler(self, signum, frame):
        self.flag = True
        for sig, prev in self.previous.items():  # a second signal stops at once
            signal.signal(sig, prev)

    def __enter__(self) -> Callable[[], bool]:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handler) or signal.SIG_DFL
        return lambda: self.flag

    def __exit__(self, *exc) -> None:
        for sig, prev in self.previous.items():
            signal.signal(sig, prev)


LOG_FIELDS = ("iteration", "epoch", "elapsed_s", "tokens", "train_nll", "valid_nll", "lr")


def write_log(run_dir: Path, history: list[dict]) -> None:
    """Rewrite log.csv and loss.png from the whole history (cheap: one row per validation)."""
    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            for row in history:
                w.writerow({k: row.get(k) for k in LOG_FIELDS})

    atomic_write(run_dir / "log.csv", write_csv)
    try:
        plot_losses(history, run_dir / "loss.png")
    except Exception as e:  # noqa: BLE001 - a plotting failure must never stop training
        log.warning("could not draw the loss curve: %s", e)


def plot_losses(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [r["epoch"] for r in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    tr = [(e, r["train_nll"]) for e, r in zip(ep, history) if r.get("train_nll") is not None]
    if tr:
        ax.plot(*zip(*tr), label="train (with dropout)", color="tab:blue")
    ax.plot(ep, [r["valid_nll"] for r in history], label="validation", color="tab:orange", marker="." if len(ep) < 60 else None)
    best = min(history, key=lambda r: r["valid_nll"])
    ax.axhline(best["valid_nll"], color="tab:orange", lw=0.6, ls="--")
    ax.set_xlabel("epoch")
    ax.set_ylabel("NLL per token (nats)")
    ax.set_title(f"folkrnn training: best validation {best['valid_nll']:.4f} at epoch {best['epoch']}")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def train(data: str | Path, run_dir: str | Path, cfg: TrainConfig, resume: bool = False, progress: bool = True) -> dict:
    """Train (or resume) a run; returns the last log row."""
    trainer = Trainer(data, run_dir, cfg, resume=resume, progress=progress)
    try:
        return trainer.run()
    finally:
        trainer.close()
