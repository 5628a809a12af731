"""The studio's view of the library: settings -> a token stream, a tune -> its files.

`Compose` is what the Compose form sends, checked (`compose_config`, with the CLI's
rules for a type and a form: `folkrnn.sample.types.shape_of`); `TuneStream` generates
one tune at batch 1 and yields its tokens as they are drawn, deciding each token with
the library's `folkrnn.sample.RowDraw` (tune `index` of a request is tune `index` of
`folkrnn generate` with the same settings), so a seed written in the archive makes the
tune again anywhere. A tune in a form comes whole, from the library's form sampler
(`form_tunes`). `token_probabilities` is the Inspect
view's teacher forcing: the model's probability of each token of a given tune, with
the alternatives.

Nothing here knows about HTTP; the server (its rooms and `folkrnn.web.studio`) calls these
functions in worker threads.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from folkrnn.abc.writer import make_writable
from folkrnn.errors import FolkRNNError
from folkrnn.model import FolkRNN
from folkrnn.sample import (
    KEY_WILDCARD,
    METER_WILDCARD,
    WILDCARD,
    RowDraw,
    SampleConfig,
    Stepper,
    Menus,
    Tune,
    abc_prime,
    compile_prime,
    make_prime,
)
from folkrnn.sample.types import Shape, shape_of
from folkrnn.vocab import BOS, EOS, Vocabulary

log = logging.getLogger(__name__)

PRIME_FORMATS = ("tokens", "abc")


class Cancelled(Exception):
    """The client went away or the request ran out of time; the tune is dropped."""


@dataclass(frozen=True)
class Compose:
    """The Compose form. `meter`/`mode` None = the model chooses; `key` is the tonic the
    ABC is written in; `prime` is ABC or space-separated v2 tokens (wildcards `*`,
    `M:*`, `K:*` allowed); `seed` None = a fresh one chosen by the server.

    `bars`: "free" or "strict" (`--bars strict`); `tune_type`: "" or a type of
    `folkrnn.sample.types` (`--type`: its meter, its form unless `form` says otherwise,
    its feel); `form`: the plan (`--form AABB`), None = the type's (none without a type),
    "" or "none" = no plan; `form_bars`, `endings`: `--form-bars`, `--endings`."""

    model: str = "default"
    meter: str | None = None
    mode: str | None = None
    key: str = "C"
    prime: str = ""
    prime_format: str = "tokens"
    temperature: float = 0.9  # the README's advice: 0.8-0.9
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    num_tunes: int = 1
    max_tokens: int = 1000
    bars: str = "free"
    tune_type: str = ""
    form: str | None = None
    form_bars: int = 8
    endings: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def prime_tokens(text: str, fmt: str, meter: str | None = None, mode: str | None = None,
                 key: str = "C") -> tuple[str, ...]:
    """The sampler's prime from the form's prime text (never a file name: the server
    reads no files on a client's behalf). It always opens with a meter and a key token,
    wildcards where the model chooses, so that every tune can be written as ABC.

    ABC is read by the library's prime reader (`folkrnn.sample.abc_prime`, as `folkrnn
    generate --prime-abc` reads a tune), its header completed from the Compose form's menus:
    without `K:` it is read in the Key menu's tonic (`key`) and the Mode menu's mode, and so
    moved to C like any tune; without `M:` it is read in the Meter menu's meter, with
    `L:1/8` unless it says otherwise. Where a menu says "the model chooses", the reading
    takes 4/4 or major and the token stays a wildcard. Errors name the lines as the user
    typed them.

    >>> prime_tokens("", "tokens")
    ('M:*', 'K:*')
    >>> prime_tokens("|: G A B", "tokens", meter="6/8")
    ('M:6/8', 'K:*', '|:', 'G', 'A', 'B')
    >>> prime_tokens("|: GAB c2", "abc", mode="dorian")
    ('M:*', 'K:Cdor', '|:', 'G', 'A', 'B', 'c', '2')
    >>> prime_tokens("|: GAB c2", "abc", key="G")
    ('M:*', 'K:*', '|:', 'c', 'd', 'e', 'f', '2')
    >>> prime_tokens("K:G\\nGAB", "abc", meter="6/8")
    ('M:6/8', 'K:Cmaj', 'c', 'd', 'e')
    >>> prime_tokens("X:1\\nM:6/8\\nK:G\\nGAB", "abc")
    ('M:6/8', 'K:Cmaj', 'c', 'd', 'e')
    """
    if fmt not in PRIME_FORMATS:
        raise FolkRNNError(f"prime format must be one of {', '.join(PRIME_FORMATS)}, got {fmt!r}")
    text = text.strip()
    if fmt == "tokens" or not text:
        toks = text.split()
    else:
        toks = list(abc_prime(text, menus=Menus(meter, mode, key)).tokens)
    toks = list(make_prime(toks, meter, mode))
    m = toks.pop(0) if toks and toks[0].startswith("M:") else METER_WILDCARD
    k = toks.pop(0) if toks and toks[0].startswith("K:") else KEY_WILDCARD
    return (m, k, *toks)


def compose_shape(form: Compose) -> Shape:
    """The form's type, plan and their flags, by `folkrnn generate`'s rules (`shape_of`)."""
    plan = "none" if form.form is not None and not form.form.strip() else form.form
    return shape_of(form.tune_type or None, plan, form.form_bars, form.endings, form.meter)


def compose_config(form: Compose, vocab: Vocabulary, seed: int) -> SampleConfig:
    """A checked SampleConfig for the form (FolkRNNError with a one-line reason)."""
    from folkrnn.abc import parse_key

    parse_key(form.key)
    shape = compose_shape(form)
    prime = prime_tokens(form.prime, form.prime_format, shape.meter, form.mode, form.key)
    cfg = SampleConfig(num_tunes=form.num_tunes, temperature=form.temperature, seed=seed, top_k=form.top_k,
                       top_p=form.top_p, prime=prime, max_length=form.max_tokens, batch_size=1, bars=form.bars,
                       form=shape.form, logit_bias=shape.logit_bias(vocab))
    compile_prime(vocab, cfg.prime)  # names every unknown token
    return cfg


def command_line(cfg: SampleConfig, key: str, model_label: str, flags: str = "") -> str:
    """The `folkrnn generate` command that makes the same tunes as `cfg`; `flags`: its
    `--type`/`--form` options (`compose_shape(form).flags`), which set its form and feel.

    >>> command_line(SampleConfig(num_tunes=2, seed=7, prime=("M:6/8", "K:*", "|:", "G")), "D", "default")
    "folkrnn generate -m default --seed 7 -n 2 --prime 'M:6/8 K:* |: G' --key D"
    >>> command_line(SampleConfig(seed=7, bars="strict", prime=("M:6/8", "K:*")), "C", "default", "--type jig --form none")
    "folkrnn generate -m default --seed 7 -n 1 --prime 'M:6/8 K:*' --bars strict --type jig --form none --key C"
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
    if cfg.bars != "free" and cfg.form is None:  # a form implies --bars strict
        parts += ["--bars", cfg.bars]
    parts += flags.split()
    parts += ["--key", key]
    return " ".join(shlex.quote(p) for p in parts)


# -- generation, one token at a time --------------------------------------------------------
class TuneStream:
    """Iterate to get tune `index`'s tokens as they are drawn; then `.tune` holds it.

    Same draws as `sample(model, vocab, cfg)`'s tune `index` (see the module docstring);
    `cancel` (checked every step) or `deadline` (time.monotonic()) raise Cancelled.
    ~0.7 ms per token for the v2 model on one CPU thread. The server runs `Batcher`,
    which steps all the tunes being made together; this is its one-tune reference.
    With a form (`cfg.form`) the tune comes whole once made (`form_tune`), on `model`
    (default: the hooked step's)."""

    def __init__(self, step: Stepper, vocab: Vocabulary, cfg: SampleConfig, index: int,
                 cancel: threading.Event | None = None, deadline: float | None = None, model: FolkRNN | None = None):
        self.step, self.vocab, self.cfg, self.index = step, vocab, cfg, index
        self.cancel, self.deadline, self.model = cancel, deadline, model
        self.tune: Tune | None = None

    @torch.inference_mode()
    def __iter__(self) -> Iterator[str]:
        if self.cfg.form is not None:  # a form's closings are chosen by particles: the tune comes whole
            model = self.model if self.model is not None else getattr(self.step, "model", None)
            if model is None:
                raise FolkRNNError("a tune in a form needs the model (TuneStream(..., model=...))")
            self.tune = form_tune(model, self.step, self.vocab, self.cfg, self.index, self.cancel, self.deadline)
            yield from self.tune.tokens
            return
        d = RowDraw(self.vocab, self.cfg, self.index)
        state = self.step.initial_state(1)
        inp = self.vocab.bos
        while not d.done:
            if _stopped(self.cancel, self.deadline):
                raise Cancelled(f"tune {self.index + 1} stopped after {d.pos} tokens")
            logits, state = self.step(torch.tensor([inp]), state)
            tok = d(logits.numpy().astype(np.float64))
            if tok is None:
                break
            yield self.vocab.tokens[tok]
            inp = tok
        self.tune = d.tune()


def _stopped(cancel: threading.Event | None, deadline: float | None) -> bool:
    return (cancel is not None and cancel.is_set()) or (deadline is not None and time.monotonic() > deadline)


class _Checked:
    """A step that raises Cancelled when the request is cancelled or past its deadline."""

    def __init__(self, step: Stepper, cancel: threading.Event | None, deadline: float | None):
        self.step, self.cancel, self.deadline = step, cancel, deadline

    def initial_state(self, batch: int):
        return self.step.initial_state(batch)

    def __call__(self, *a, **k):
        if _stopped(self.cancel, self.deadline):
            raise Cancelled("stopped while planning the form")
        return self.step(*a, **k)


@torch.inference_mode()
def form_tunes(model: FolkRNN, step: Stepper, vocab: Vocabulary, cfg: SampleConfig,
               cancel: threading.Event | None = None, deadline: float | None = None) -> Iterator[Tune]:
    """The tunes of a config with a form (`cfg.form`), in order, made by the library's form
    sampler (`folkrnn.sample.form.sample_form`) on `step`: tune i is `folkrnn generate`'s
    tune i (it depends on (seed, i) only). A tune comes whole: its tokens are known only
    once the closing of each part has been chosen among the particles. The server runs it
    in the request's worker thread, on the model's fast step, which never reads Inspect's
    hooks; `cancel` and `deadline` are checked at every step."""
    from folkrnn.sample.form import sample_form

    assert cfg.form is not None
    yield from sample_form(model, vocab, cfg, _Checked(step, cancel, deadline))


def form_tune(model: FolkRNN, step: Stepper, vocab: Vocabulary, cfg: SampleConfig, index: int,
              cancel: threading.Event | None = None, deadline: float | None = None) -> Tune:
    """Tune `index` of a config with a form: the form sampler makes tunes 0..index (it has no
    way to start at a later tune) and the last is kept."""
    from dataclasses import replace

    tunes = form_tunes(model, step, vocab, replace(cfg, num_tunes=index + 1, batch_size=max(cfg.batch_size, index + 1)),
                       cancel, deadline)
    tune = None
    for tune in tunes:
        pass
    assert tune is not None and tune.index == index
    return tune


@dataclass(eq=False)
class Job:
    """A tune for the `Batcher`: `on_token(token)` for each token as drawn (from the
    batcher's thread); when it ends, `result` (a Tune) or `error` is set and `done` is."""

    cfg: SampleConfig
    index: int
    on_token: Callable[[str], None]
    cancel: threading.Event | None = None
    deadline: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Tune | None = None
    error: BaseException | None = None


class Batcher:
    """Continuous batching for the server: one thread steps every tune being made, by
    whichever client, as one batch (a new tune joins at the next step, a finished or
    cancelled one leaves), so 20 clients cost about one batched step per token rather
    than 20 steps fighting for the cores and the GIL. Each tune's draws are its own
    (`folkrnn.sample.RowDraw`), the same as `TuneStream`'s and the sampler's. A tune in a
    form is not stepped here (`form_tunes`): its job fails."""

    def __init__(self, step: Stepper, vocab: Vocabulary, name: str = "folkrnn-batch"):
        self.step, self.vocab = step, vocab
        self._cv = threading.Condition()
        self._new: list[Job] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self.steps = 0  # batched steps taken (for tests and benchmarks)
        self.max_rows = 0

    def submit(self, job: Job) -> Job:
        with self._cv:
            if self._stop:
                raise RuntimeError("the batcher is stopped")
            self._new.append(job)
            self._cv.notify()
        return job

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(5)

    @torch.inference_mode()
    def _run(self) -> None:
        torch.set_num_threads(1)
        rows: list[tuple[Job, RowDraw]] = []
        h = c = None
        inp = np.zeros(0, dtype=np.int64)
        while True:
            with self._cv:
                while not rows and not self._new and not self._stop:
                    self._cv.wait()
                if self._stop:
                    for job, _ in rows:
                        self._finish(job, error=Cancelled("the server is stopping"))
                    for job in self._new:
                        self._finish(job, error=Cancelled("the server is stopping"))
                    return
                new, self._new = self._new, []
            for job in new:
                try:
                    d = RowDraw(self.vocab, job.cfg, job.index)
                except BaseException as e:  # a bad prime: the job fails, the batch goes on
                    self._finish(job, error=e)
                    continue
                h0, c0 = self.step.initial_state(1)
                h = h0 if h is None else torch.cat([h, h0], 1)
                c = c0 if c is None else torch.cat([c, c0], 1)
                inp = np.append(inp, self.vocab.bos)
                rows.append((job, d))
            if not rows:
                continue
            self.max_rows = max(self.max_rows, len(rows))
            try:
                logits, (h, c) = self.step(torch.from_numpy(inp), (h, c))
                z = logits.numpy().astype(np.float64)
                self.steps += 1
                keep = []
                for r, (job, d) in enumerate(rows):
                    if _stopped(job.cancel, job.deadline):
                        self._finish(job, error=Cancelled(f"tune {job.index + 1} stopped after {d.pos} tokens"))
                        continue
                    tok = d(z[r : r + 1])
                    if tok is not None:
                        job.on_token(self.vocab.tokens[tok])
                    if d.done:
                        self._finish(job, result=d.tune())
                        continue
                    inp[r] = tok
                    keep.append(r)
            except BaseException as e:  # a bug: fail every tune in the batch, keep the thread
                log.exception("batched step failed")
                for job, _ in rows:
                    if not job.done.is_set():
                        self._finish(job, error=e)
                keep = []
            if len(keep) < len(rows):
                rows = [rows[r] for r in keep]
                if rows:
                    kt = torch.tensor(keep)
                    h, c, inp = h[:, kt].contiguous(), c[:, kt].contiguous(), inp[keep]
                else:
                    h = c = None
                    inp = np.zeros(0, dtype=np.int64)

    @staticmethod
    def _finish(job: Job, result: Tune | None = None, error: BaseException | None = None) -> None:
        job.result, job.error = result, error
        job.done.set()


# -- a tune's files ---------------------------------------------------------------------------
def tune_abc(tokens: Sequence[str], key: str = "C", x: int = 1, title: str | None = None,
             comments: Sequence[str] = ()) -> tuple[str, list[str]]:
    """(ABC text, tokens left out because ABC cannot place them); FolkRNNError if the
    tokens are not a transcription at all (no meter/key). See folkrnn.sample.output."""
    from folkrnn.sample.output import annotated_abc

    return annotated_abc(tokens, key=key, x=x, title=title, comments=comments)


def tune_midi(tokens: Sequence[str], key: str = "C", tempo: float = 100, title: str | None = None) -> bytes:
    """A type-0 MIDI file of the tune in `key`, `tempo` beats per minute (the meter's beat)."""
    from folkrnn.midi import key_shift, tune_to_midi

    kept, _ = make_writable(tokens)
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


def tokens_in_key(tokens: Sequence[str], key: str = "C") -> list[str] | None:
    """Each token as the score writes it in `key` (the tokens are in C, as the model reads
    them): pitches moved as `tokens_to_abc` moves them, `K:Cdor` -> `K:Ddor`, the rest as
    they are; None when a pitch cannot be written there.

    >>> tokens_in_key(["M:6/8", "K:Cdor", "|:", "A", "B", "=B", "2", "|"], "D")
    ['M:6/8', 'K:Ddor', '|:', 'B', 'c', '^c', '2', '|']
    """
    from folkrnn.abc.keys import V2_KEY_MODES, Note, Tonic, mode_signature, moves, parse_key, spell
    from folkrnn.tokens import iter_sounding, parse_pitch

    tonic = parse_key(key)
    toks = list(tokens)
    if tonic.name == "C":
        return toks
    head = next((t for t in toks if t in V2_KEY_MODES), "K:Cmaj")
    items: list = list(toks)
    try:
        for i, midi in iter_sounding(toks):
            items[i] = Note(parse_pitch(toks[i]).step, midi, toks[i][0] in "^_=")
        move = min(moves(Tonic("C"), tonic), key=lambda m: (abs(m.semitones), -m.semitones))  # as tokens_to_abc
        out = list(spell(items, move, mode_signature(tonic, V2_KEY_MODES[head])))
    except ValueError:
        return None
    return [f"K:{tonic.name}{t[3:]}" if t in V2_KEY_MODES else t for t in out]


def alternatives_in_key(tokens: Sequence[str], t: int, alternatives: Sequence[str], key: str) -> list[str] | None:
    """The tokens that could stand at position `t` of `tokens`, each as written in `key` there
    (a pitch's spelling depends on the key and on the accidentals earlier in its bar)."""
    from folkrnn.tokens import BARS

    start = t
    while start > 0 and tokens[start - 1] not in BARS and not tokens[start - 1].startswith("K:"):
        start -= 1
    head = [next((x for x in tokens[:t] if x.startswith("K:")), "K:Cmaj")]
    out = []
    for alt in alternatives:
        spelled = tokens_in_key([*head, *tokens[start:t], alt], key)
        if spelled is None:
            return None
        out.append(spelled[-1])
    return out


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
    "Batcher", "Cancelled", "Job", "Compose", "PRIME_FORMATS", "StepProbs", "TuneStream", "WILDCARD", "audio_missing", "command_line",
    "alternatives_in_key", "compose_config", "compose_shape", "form_tune", "form_tunes", "prime_tokens", "token_probabilities", "tokens_in_key", "tune_abc", "tune_midi", "tune_wav",
]
