"""The list of analyses `folkrnn explain` runs, and what each hands back.

An analysis is a function `fn(ctx, bar) -> Result`: it reads the model (and whatever
else the `Context` carries), advances `bar` (a tqdm bar: set `bar.total`, call
`bar.update()`), and returns its findings (merged into `findings.json` under its
`key`), its figures, tables and sentences (each sentence built from the findings), and
optionally the plain-language answer to one of the four questions (`q1`..`q4`).

New analyses register themselves with `@register(...)`; the report code knows nothing
of any single analysis. Keys of analyses that did not run stay absent from the findings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from folkrnn.checkpoint import Checkpoint
from folkrnn.errors import FolkRNNError
from folkrnn.interp.counts import TokenCounts

log = logging.getLogger(__name__)

QUESTIONS = {
    "q1": "How does it put bar lines in the right places, and why does that break under small nudges?",
    "q2": "How does it repeat and vary material into long structures (AABB, 8 bars a part)?",
    "q3": "How does it place cadences at the ends of phrases and parts?",
    "q4": "Has it learned that equivalent tokens (enharmonic spellings, redundant naturals) are equivalent?",
}


@dataclass(frozen=True)
class ExplainConfig:
    """How thorough the analyses are. `quick` is for tests and tiny models."""

    quick: bool = False
    seed: int = 0
    controls: int = 3  # random-control draws per statistic
    permutations: int = 2000  # shuffles behind a permutation p-value

    def __post_init__(self) -> None:
        if self.controls < 1 or self.permutations < 10:
            raise FolkRNNError("explain needs at least 1 control draw and 10 permutations")

    @classmethod
    def make(cls, quick: bool = False, seed: int = 0) -> ExplainConfig:
        return cls(quick=quick, seed=seed, controls=2 if quick else 3, permutations=200 if quick else 2000)


@dataclass
class Context:
    """What every analysis may read. `extra` is for later analyses' inputs (cache, tunes...)."""

    checkpoint: Checkpoint
    counts: TokenCounts | None
    config: ExplainConfig = field(default_factory=ExplainConfig)
    model_name: str = "model"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self):
        return self.checkpoint.model

    @property
    def vocab(self):
        return self.checkpoint.vocab


@dataclass(frozen=True)
class Figure:
    """A PNG figure with its caption (the caption states what the control is)."""

    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    caption: str = ""


@dataclass
class Result:
    findings: dict[str, Any] = field(default_factory=dict)
    sentences: list[str] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    answers: dict[str, str] = field(default_factory=dict)
    skipped: str | None = None  # why the analysis could not run (then findings stay empty)


@dataclass(frozen=True)
class Analysis:
    name: str  # unique, e.g. "softmax"
    title: str  # section heading in the report
    key: str  # top-level findings key its findings merge into, e.g. "parameters"
    fn: Callable[[Context, Any], Result]
    section: str = "atlas"  # "questions" (shown first) or "atlas"
    order: int = 100  # position within the section


ANALYSES: dict[str, Analysis] = {}


def register(name: str, title: str, key: str, section: str = "atlas", order: int = 100):
    """Decorator adding `fn(ctx, bar) -> Result` to the registry under `name`."""
    if section not in ("questions", "atlas"):
        raise ValueError(f"section must be 'questions' or 'atlas', not {section!r}")

    def deco(fn):
        if name in ANALYSES:
            raise ValueError(f"analysis {name!r} is registered twice")
        ANALYSES[name] = Analysis(name, title, key, fn, section, order)
        return fn

    return deco


def registered() -> list[Analysis]:
    """Every registered analysis, questions first, in report order."""
    import folkrnn.interp.analyses  # noqa: F401  (registers the built-in analyses)
    import folkrnn.interp.behaviour  # noqa: F401  (and the activation analyses)
    import folkrnn.interp.sections  # noqa: F401  (and where sections end)

    return sorted(ANALYSES.values(), key=lambda a: (a.section != "questions", a.order, a.name))


@dataclass
class Ran:
    analysis: Analysis
    result: Result
    seconds: float


def run_analyses(ctx: Context, names: list[str] | None = None, progress: bool = False) -> list[Ran]:
    """Run the named analyses (all registered by default), one progress bar each."""
    from folkrnn.files import progress as progress_bar

    todo = registered()
    if names is not None:
        known = {a.name for a in todo}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise FolkRNNError(f"unknown analysis {unknown[0]!r} (known: {', '.join(sorted(known))})")
        todo = [a for a in todo if a.name in names]
    out: list[Ran] = []
    for a in todo:
        t0 = time.perf_counter()
        with progress_bar(total=1, desc=a.name, enabled=progress, leave=True, unit="step", delay=0) as bar:
            result = a.fn(ctx, bar)
            bar.n = bar.total or bar.n
            bar.refresh()
        secs = time.perf_counter() - t0
        if result.skipped:
            log.info("%s skipped: %s", a.name, result.skipped)
        out.append(Ran(a, result, secs))
    return out


def merge_findings(ran: list[Ran]) -> dict[str, Any]:
    """Findings of every analysis under its key; answers gathered under `answers`."""
    findings: dict[str, Any] = {}
    answers: dict[str, str] = {}
    for r in ran:
        if r.result.skipped:
            continue
        f = r.result.findings
        if isinstance(f, Mapping):
            slot = findings.setdefault(r.analysis.key, {})
            if not isinstance(slot, dict):
                raise ValueError(f"findings key {r.analysis.key!r} holds a {type(slot).__name__}")
            clash = set(slot) & set(f)
            if clash:
                raise ValueError(f"analyses write the same findings {r.analysis.key}.{sorted(clash)[0]}")
            slot.update(f)
        else:  # a list (e.g. enharmonics per pair)
            if r.analysis.key in findings:
                raise ValueError(f"findings key {r.analysis.key!r} written twice")
            findings[r.analysis.key] = f
        for q, text in r.result.answers.items():  # several analyses may answer one question: in report order
            answers[q] = f"{answers[q]} {text}" if q in answers else text
    if answers:
        findings["answers"] = {q: answers[q] for q in sorted(answers)}
    return findings
