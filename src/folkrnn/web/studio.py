"""The studio's shared state: the models it was started with, the archive, the limits, the
worker pool and batchers, and the generation worker; `StudioDep`, the FastAPI dependency
through which every route gets it (`app.state.studio`); `load_studio` for `folkrnn serve`.

Nothing here is a route; the rooms (`compose_room`, `archive_room`, `inspect_room`,
`page`) are.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

import torch
from fastapi import Depends, HTTPException, Request

from folkrnn.checkpoint import Checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.sample import Stepper, Tune
from folkrnn.vocab import Vocabulary
from folkrnn.web.archive import Archive, NewTune
from folkrnn.web.engine import (
    Batcher,
    Cancelled,
    Compose,
    Job,
    audio_missing,
    command_line,
    compose_config,
    compose_shape,
    form_tunes,
    tune_abc,
)
from folkrnn.web.limits import Busy, Limits, Slots, brief, check_id

log = logging.getLogger(__name__)



def find_abcjs() -> Path | None:
    """npm's abcjs for the page (see `folkrnn.tune.find_abcjs`: a wheel's copy, else a
    checkout's node_modules)."""
    from folkrnn.tune import find_abcjs as find

    return find()


@dataclass
class ModelEntry:
    """A model the server was started with: its id in requests, label for the
    command line, checkpoint, and the fast step built once."""

    id: str
    label: str
    ckpt: Checkpoint
    step: Stepper = field(repr=False)


def display_title(rec) -> str:
    """The tune's title wherever it is shown (card, archive, score, files): its own, or
    `folkrnn tune ID`."""
    return rec.title or f"folkrnn tune {rec.id}"


def _mode_name(tok: str | None) -> str | None:
    return {"K:Cmaj": "major", "K:Cmin": "minor", "K:Cdor": "dorian", "K:Cmix": "mixolydian"}.get(tok or "")


class Studio:
    """Everything the routes share: models, archive, limits, worker pool, counters."""

    def __init__(self, models: list[ModelEntry], archive: Archive, limits: Limits = Limits(),
                 abcjs: Path | None = None):
        if not models:
            raise FolkRNNError("the studio needs at least one model")
        self.models = {m.id: m for m in models}
        self.default_model = models[0].id
        self.archive = archive
        self.limits = limits
        self.abcjs = abcjs
        self.audio_missing = audio_missing()
        # The workers hand tunes to the model's Batcher and wait; they also check the
        # settings and write the archive. OpenMP's thread count is per thread: one each.
        self.pool = ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="folkrnn-gen",
                                       initializer=torch.set_num_threads, initargs=(1,))
        self.renders = threading.BoundedSemaphore(limits.max_renders)
        self.batchers = {m.id: Batcher(m.step, m.ckpt.vocab, f"folkrnn-batch-{m.id}") for m in models}
        self.hook_locks = {m.id: threading.Lock() for m in models}
        self.slots: Slots | None = None  # made on the event loop (lifespan)
        self._lock = threading.Lock()
        self.active = 0  # generation workers running now
        self.tokens_generated = 0
        self.cancelled = 0

    def model(self, model_id: str) -> ModelEntry:
        mid = self.default_model if model_id == "default" and "default" not in self.models else model_id
        try:
            return self.models[mid]
        except KeyError:
            raise FolkRNNError(f"unknown model {model_id!r}: this server has {', '.join(self.models)}") from None

    @contextmanager
    def hooked(self, entry: ModelEntry):
        """Inspect's hooks live on the shared model (the batcher's fast step never reads
        them): one hooked request at a time per model, waiting up to `queue_timeout_s`."""
        lock = self.hook_locks[entry.id]
        if not lock.acquire(timeout=self.limits.queue_timeout_s):
            raise Busy(503, "the studio is busy with another Inspect request on this model; try again shortly")
        try:
            yield entry.ckpt.model
        finally:
            lock.release()

    def check_form(self, body) -> tuple[Compose, ModelEntry]:
        lim = self.limits
        if body.max_tokens is None:
            body = body.model_copy(update={"max_tokens": lim.max_tokens})
        if body.num_tunes > lim.max_tunes:
            raise FolkRNNError(f"num_tunes: at most {lim.max_tunes} tunes per request, got {body.num_tunes}")
        if body.max_tokens > lim.max_tokens:
            raise FolkRNNError(f"max_tokens: at most {lim.max_tokens} tokens per tune, got {body.max_tokens}")
        if len(body.prime) > lim.max_prime_chars:
            raise FolkRNNError(f"prime: at most {lim.max_prime_chars} characters, got {len(body.prime)}")
        entry = self.model(body.model)
        form = Compose(**{**body.model_dump(), "model": entry.id})
        return form, entry

    # -- the generation worker (runs in the pool) ------------------------------------------
    def generate(self, form: Compose, entry: ModelEntry, seed: int, emit, cancel: threading.Event, deadline: float) -> None:
        """Generate form.num_tunes tunes, calling emit(event, data) for every token and
        tune; each finished tune is stored before its `tune` event."""
        with self._lock:
            self.active += 1
        try:
            cfg = compose_config(form, entry.ckpt.vocab, seed)
            settings = {**form.to_dict(), "seed": seed}
            for i, tune in enumerate(self._tunes(cfg, entry, emit, cancel, deadline)):
                with self._lock:
                    self.tokens_generated += len(tune.tokens)
                tid = self.archive.add(NewTune(entry.id, seed, i, settings, tune.tokens,
                                               next((t for t in tune.tokens[:1] if t.startswith("M:")), None),
                                               next((t for t in tune.tokens[1:2] if t.startswith("K:")), None),
                                               tune.truncated, tune.logprob))
                emit("tune", self.tune_view(self.archive.get(tid)))
            emit("done", {"seed": seed, "num_tunes": form.num_tunes})
        except Cancelled as e:
            cancel.set()  # the request's other tunes stop too
            with self._lock:
                self.cancelled += 1
            emit("error", {"error": f"stopped: {e}" if cancel.is_set() else
                           f"the request ran past {self.limits.request_timeout_s:g} s: {e}"})
        except FolkRNNError as e:
            cancel.set()
            emit("error", {"error": brief(str(e))})
        except Exception:  # a bug: log it, tell the client, keep serving
            cancel.set()
            log.exception("generation failed")
            emit("error", {"error": "internal error while generating (see the server's log)"})
        finally:
            with self._lock:
                self.active -= 1

    def _tunes(self, cfg, entry: ModelEntry, emit, cancel: threading.Event, deadline: float) -> Iterator[Tune]:
        """The request's tunes in order, their tokens emitted as they come. Without a form all
        of them join the model's Batcher at once; a form's tunes are made here, in this worker
        thread (`form_tunes`: a part's closing is chosen among particles, so a tune's tokens
        are sent when it is done; the page says "planning the form...")."""
        if cfg.form is not None:
            for i in range(cfg.num_tunes):
                emit("tune_start", {"index": i, "planning": True})
            for tune in form_tunes(entry.ckpt.model, entry.step, entry.ckpt.vocab,
                                   replace(cfg, batch_size=cfg.num_tunes), cancel, deadline):
                for p, tok in enumerate(tune.tokens):
                    emit("token", {"index": tune.index, "pos": p, "token": tok})
                yield tune
            return
        batcher = self.batchers[entry.id]
        jobs = []
        for i in range(cfg.num_tunes):  # all the request's tunes join the batch at once
            emit("tune_start", {"index": i})
            pos = iter(range(cfg.max_length))

            def on_token(tok: str, i: int = i, pos=pos) -> None:
                emit("token", {"index": i, "pos": next(pos), "token": tok})

            jobs.append(batcher.submit(Job(cfg, i, on_token, cancel, deadline)))
        for job in jobs:
            job.done.wait()
            if job.error is not None:
                raise job.error
            yield job.result

    def tune_view(self, rec, key: str | None = None) -> dict:
        """A tune as the page shows it: the record plus ABC text and the command line."""
        d = rec.to_dict()
        key = key or rec.settings.get("key") or "C"
        form = Compose(**{k: v for k, v in rec.settings.items() if k in Compose.__dataclass_fields__})
        entry = self.models.get(rec.model)
        label, vocab = (entry.label, entry.ckpt.vocab) if entry else (rec.model, Vocabulary.v2())
        try:
            cmd = command_line(compose_config(form, vocab, rec.seed), key, label, compose_shape(form).flags)
        except FolkRNNError as e:  # settings this server no longer accepts
            cmd = f"(cannot be made again here: {e})"
        d["command"] = f"{cmd}   # tune {rec.index + 1} of {form.num_tunes}"
        if rec.settings.get("intervention"):
            d["command"] += f", then the intervention {rec.settings['intervention']} (Inspect; folkrnn generate has none)"
        title = display_title(rec)
        comments = [f"folkrnn studio: model {rec.model}, seed {rec.seed}, tune {rec.index + 1}, "
                    f"temperature {form.temperature}" + (f", top-k {form.top_k}" if form.top_k else "")
                    + (f", top-p {form.top_p}" if form.top_p else ""),
                    f"made again by: {d['command']}"]
        if rec.truncated:
            comments.append("stopped at the length cap")
        try:
            d["abc"], d["repairs"] = tune_abc(rec.tokens, key=key, x=rec.id, title=title, comments=comments)
            d["abc_error"] = None
        except FolkRNNError as e:
            d["abc"], d["repairs"], d["abc_error"] = None, [], str(e)
        d["mode_name"] = _mode_name(rec.mode)
        d["key"] = key
        d["display_title"] = title  # the score's T:, the card's and the archive's title
        return d


async def get_studio(request: Request) -> Studio:
    """The dependency: the studio the app was made for."""
    return request.app.state.studio


StudioDep = Annotated[Studio, Depends(get_studio)]


def tune_or_404(studio: Studio, tune_id: int, where: str = "tune id"):
    """The archive's tune `tune_id` (400 for an id out of range, 404 for none)."""
    check_id(tune_id, where)
    try:
        return studio.archive.get(tune_id)
    except KeyError:
        raise HTTPException(404, f"no tune {tune_id} in the archive") from None


def load_studio(model_specs: list[str], db: str | Path, limits: Limits = Limits()) -> Studio:
    """Load the models (`default`, checkpoints, pickles) and open the archive."""
    from folkrnn.load import load_model

    entries: list[ModelEntry] = []
    for spec in model_specs:
        ckpt = load_model(spec)
        ident = spec if spec == "default" else Path(spec).stem
        base, n = ident, 2
        while ident in {e.id for e in entries}:
            ident, n = f"{base}-{n}", n + 1
        entries.append(ModelEntry(ident, spec, ckpt, Stepper(ckpt.model)))
    return Studio(entries, Archive(db), limits, find_abcjs())
