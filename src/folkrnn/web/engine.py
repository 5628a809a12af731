"""The studio's view of the library: settings -> a token stream, a tune -> its files.

`Compose` is what the Compose form sends, checked (`compose_config`); `TuneStream`
generates one tune at batch 1 and yields its tokens as they are drawn, with exactly
the arithmetic and randomness of `folkrnn.sample.sample` (tune `index` of a request
is tune `index` of `folkrnn generate` with the same settings), so a seed written in
the archive makes the tune again anywhere. `token_probabilities` is the Inspect
view's teacher forcing: the model's probability of each token of a given tune, with
the alternatives.

Nothing here knows about HTTP; the server (`folkrnn.web.app`) calls these functions
in worker threads.
"""

from __future__ import annotations

import io
import logging
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from folkrnn.errors import FolkRNNError
from folkrnn.model import FolkRNN
from folkrnn.sample import (
    KEY_WILDCARD,
    METER_WILDCARD,
    WILDCARD,
    SampleConfig,
    Stepper,
    Tune,
    base_allowed,
    compile_prime,
    draw,
    drop_unwritable,
    filter_logits,
    make_prime,
    parse_meter,
    parse_mode,
    uniforms,
)
from folkrnn.vocab import BOS, EOS, Vocabulary

log = logging.getLogger(__name__)

PRIME_FORMATS = ("tokens", "abc")


class Cancelled(Exception):
    """The client went away or the request ran out of time; the tune is dropped."""


@dataclass(frozen=True)
class Compose:
    """The Compose form. `meter`/`mode` None = the model chooses; `key` is the tonic the
    ABC is written in; `prime` is ABC or space-separated v2 tokens (wildcards `*`,
    `M:*`, `K:*` allowed); `seed` None = a fresh one chosen by the server."""

    model: str = "default"
    meter: str | None = None
    mode: str | None = None
    key: str = "C"
    prime: str = ""
    prime_format: str = "tokens"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_tunes: int = 1
    max_tokens: int = 1000

    def to_dict(self) -> dict:
        return asdict(self)


def prime_tokens(text: str, fmt: str, meter: str | None = None, mode: str | None = None) -> tuple[str, ...]:
    """The sampler's prime from the form's prime text (never a file name: the server
    reads no files on a client's behalf). It always opens with a meter and a key token,
    wildcards where the model chooses, so that every tune can be written as ABC.

    ABC without a `K:` line is read as a tune body in the chosen meter and mode (4/4
    and major when the model chooses them, which then stay wildcards).

    >>> prime_tokens("", "tokens")
    ('M:*', 'K:*')
    >>> prime_tokens("|: G A B", "tokens", meter="6/8")
    ('M:6/8', 'K:*', '|:', 'G', 'A', 'B')
    >>> prime_tokens("|: GAB c2", "abc", mode="dorian")
    ('M:*', 'K:Cdor', '|:', 'G', 'A', 'B', 'c', '2')
    >>> prime_tokens("X:1\\nM:6/8\\nK:G\\nGAB", "abc")
    ('M:6/8', 'K:Cmaj', 'c', 'd', 'e')
    """
    if fmt not in PRIME_FORMATS:
        raise FolkRNNError(f"prime format must be one of {', '.join(PRIME_FORMATS)}, got {fmt!r}")
    text = text.strip()
    if fmt == "tokens" or not text:
        toks = text.split()
    else:
        from folkrnn.abc import tune_to_tokens

        has_head = re.search(r"^[ \t]*K:", text, re.M) is not None
        if not has_head:
            m_tok = parse_meter(meter) if meter else "M:4/4"
            k_tok = parse_mode(mode) if mode else "K:Cmaj"
            text = f"X:1\nM:{m_tok[2:]}\nL:1/8\nK:C{k_tok[3:]}\n{text}\n"
        try:
            toks = tune_to_tokens(text, strict=False)
        except FolkRNNError as e:
            raise FolkRNNError(f"prime: {e}") from None
        if not has_head:
            toks = [m_tok if meter else METER_WILDCARD, k_tok if mode else KEY_WILDCARD, *toks[2:]]
    toks = list(make_prime(toks, meter, mode))
    m = toks.pop(0) if toks and toks[0].startswith("M:") else METER_WILDCARD
    k = toks.pop(0) if toks and toks[0].startswith("K:") else KEY_WILDCARD
    return (m, k, *toks)


def compose_config(form: Compose, vocab: Vocabulary, seed: int) -> SampleConfig:
    """A checked SampleConfig for the form (FolkRNNError with a one-line reason)."""
    from folkrnn.abc import parse_key

    parse_key(form.key)
    prime = prime_tokens(form.prime, form.prime_format, form.meter, form.mode)
    cfg = SampleConfig(num_tunes=form.num_tunes, temperature=form.temperature, seed=seed, top_k=form.top_k,
                       top_p=form.top_p, prime=prime, max_length=form.max_tokens, batch_size=1)
    compile_prime(vocab, cfg.prime)  # names every unknown token
    return cfg


def command_line(cfg: SampleConfig, key: str, model_label: str) -> str:
    """The `folkrnn generate` command that makes the same tunes as `cfg`.

    >>> command_line(SampleConfig(num_tunes=2, seed=7, prime=("M:6/8", "K:*", "|:", "G")), "D", "default")
    "folkrnn generate -m default --seed 7 -n 2 --prime 'M:6/8 K:* |: G' --key D"
    """
    import shlex

    parts = ["folkrnn", "generate", "-m", model_label, "--seed", str(cfg.seed), "-n", str(cfg.num_tunes)]
    if cfg.temperature != 1.0:
        parts += ["-t", repr(cfg.temperature)]
    if cfg.top_k is not None:
        parts += ["--top-k", str(cfg.top_k)]
    if cfg.top_p is not None:
        parts += ["--top-p", repr(cfg.top_p)]
    if cfg.prime:
        parts += ["--prime", " ".join(cfg.prime)]
    if cfg.max_length != SampleConfig.max_length:
        parts += ["--max-length", str(cfg.max_length)]
    parts += ["--key", key]
    return " ".join(shlex.quote(p) for p in parts)


# -- generation, one token at a time --------------------------------------------------------
class TuneStream:
    """Iterate to get tune `index`'s tokens as they are drawn; then `.tune` holds it.

    Same draws as `sample(model, vocab, cfg)`'s tune `index` (see the module docstring);
    `cancel` (checked every step) or `deadline` (time.monotonic()) raise Cancelled.
    ~0.7 ms per token for the v2 model on one CPU thread."""

    def __init__(self, step: Stepper, vocab: Vocabulary, cfg: SampleConfig, index: int,
                 cancel: threading.Event | None = None, deadline: float | None = None):
        self.step, self.vocab, self.cfg, self.index = step, vocab, cfg, index
        self.cancel, self.deadline = cancel, deadline
        self.tune: Tune | None = None

    @torch.inference_mode()
    def __iter__(self) -> Iterator[str]:
        cfg, vocab = self.cfg, self.vocab
        prime = compile_prime(vocab, cfg.prime)
        fixed = prime.fixed.numpy()
        P = len(fixed)
        mask_prime = np.where(prime.allowed.numpy(), 0.0, -np.inf)
        mask_base = np.where(base_allowed(vocab).numpy(), 0.0, -np.inf)
        inv_t = 1.0 / cfg.temperature
        state = self.step.initial_state(1)
        inp = vocab.bos
        eos = vocab.eos
        index = np.array([self.index])
        ids: list[int] = []
        lp = 0.0
        ended = False
        for pos in range(cfg.max_length):
            if (self.cancel is not None and self.cancel.is_set()) or (self.deadline is not None and time.monotonic() > self.deadline):
                raise Cancelled(f"tune {self.index + 1} stopped after {pos} tokens")
            logits, state = self.step(torch.tensor([inp]), state)
            z = logits.numpy().astype(np.float64)
            zt = z * inv_t if cfg.temperature != 1.0 else z.copy()
            zt += mask_prime[pos] if pos < P else mask_base
            zt = filter_logits(zt, cfg.top_k, cfg.top_p)
            tok = int(draw(zt, uniforms(cfg.seed, index, np.array([pos])))[0])
            if pos < P and fixed[pos] >= 0:
                tok = int(fixed[pos])
            m = z.max()
            lp += float(z[0, tok] - m - np.log(np.exp(z[0] - m).sum()))
            if tok == eos:
                ended = True
                break
            ids.append(tok)
            inp = tok
            yield vocab.tokens[tok]
        self.tune = Tune(self.index, vocab.decode(ids), lp, not ended)


# -- a tune's files ---------------------------------------------------------------------------
def tune_abc(tokens: Sequence[str], key: str = "C", x: int = 1, title: str | None = None,
             comments: Sequence[str] = ()) -> tuple[str, list[str]]:
    """(ABC text, tokens left out because ABC cannot place them); FolkRNNError if the
    tokens are not a transcription at all (no meter/key)."""
    from folkrnn.abc import tokens_to_abc

    kept, dropped = drop_unwritable(tokens)
    notes = list(comments)
    if dropped:
        notes.append(f"left out {len(dropped)} token(s) ABC cannot place: {' '.join(dropped[:20])}")
    return tokens_to_abc(kept, key=key, x=x, title=title, comments=notes), dropped


def tune_midi(tokens: Sequence[str], key: str = "C", tempo: float = 100, title: str | None = None) -> bytes:
    """A type-0 MIDI file of the tune in `key`, `tempo` beats per minute (the meter's beat)."""
    from folkrnn.midi import key_shift, tune_to_midi

    kept, _ = drop_unwritable(tokens)
    mid = tune_to_midi(kept, tempo=tempo, transpose=key_shift(key), title=title)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def audio_missing() -> str | None:
    """Why WAV cannot be rendered here (None when fluidsynth and a soundfont are installed)."""
    import shutil

    from folkrnn.midi import find_soundfont

    if shutil.which("fluidsynth") is None:
        return "fluidsynth is not installed (apt-get install fluidsynth fluid-soundfont-gm)"
    if find_soundfont() is None:
        return "no General MIDI soundfont is installed (apt-get install fluid-soundfont-gm)"
    return None


def tune_wav(tokens: Sequence[str], key: str = "C", tempo: float = 100, sample_rate: int = 22050) -> bytes:
    """The tune rendered by fluidsynth (in a private temporary folder, removed after)."""
    from folkrnn.midi import render_wav

    midi = tune_midi(tokens, key, tempo)
    with tempfile.TemporaryDirectory(prefix="folkrnn-studio-") as d:
        mp, wp = Path(d) / "tune.mid", Path(d) / "tune.wav"
        mp.write_bytes(midi)
        render_wav(mp, wp, sample_rate=sample_rate)
        return wp.read_bytes()


# -- Inspect: teacher forcing ----------------------------------------------------------------
@dataclass
class StepProbs:
    """Position t of a tune: the token there, the model's probability of it given the
    tokens before, its rank (1 = most probable) and the `k` most probable tokens."""

    token: str
    p: float
    rank: int
    alternatives: list[tuple[str, float]] = field(default_factory=list)


@torch.inference_mode()
def token_probabilities(model: FolkRNN, vocab: Vocabulary, tokens: Sequence[str], k: int = 5) -> list[StepProbs]:
    """Feed `<s> tokens` and read p(token_t | <s>, tokens_<t) at every position,
    `</s>` included at the end (temperature 1, no filtering).

    tokens: T strings (without `<s>`/`</s>`) -> T + 1 StepProbs."""
    toks = [t for t in tokens if t not in (BOS, EOS)]
    ids = vocab.encode(toks, where="the tune")
    x = torch.tensor([[vocab.bos, *ids]])
    logits, _ = model(x.to(model.out.weight.device))
    p = torch.softmax(logits[0].double(), -1).cpu()  # (T+1, V)
    target = torch.tensor([*ids, vocab.eos])
    chosen = p.gather(1, target[:, None])[:, 0]
    rank = (p > chosen[:, None]).sum(1) + 1
    top_p, top_i = torch.topk(p, min(k, len(vocab)), dim=-1)
    out = []
    for t in range(len(target)):
        alts = [(vocab.tokens[i], round(float(q), 6)) for i, q in zip(top_i[t].tolist(), top_p[t].tolist())]
        out.append(StepProbs(vocab.tokens[int(target[t])], round(float(chosen[t]), 6), int(rank[t]), alts))
    return out


__all__ = [
    "Cancelled", "Compose", "PRIME_FORMATS", "StepProbs", "TuneStream", "WILDCARD", "audio_missing", "command_line",
    "compose_config", "prime_tokens", "token_probabilities", "tune_abc", "tune_midi", "tune_wav",
]
