"""The list of analyses `folkrnn explain` runs, and what each hands back.

An analysis is a function `fn(ctx, bar) -> Result`: it reads the model (and whatever
else the `Context` carries), advances `bar` (a tqdm bar: set `bar.total`, call
`bar.update()`), and returns its findings (merged into `findings.json` under its
`key`), its figures, tables and sentences (each sentence built from the findings), and
optionally the plain-language answer to one of the four questions (`q1`..`q4`).

Analyses register themselves with `@register(...)` when their module is imported;
`folkrnn.interp.runner` imports the modules of the built-in ones and runs them, so this
module imports no analysis. The report code knows nothing of any single analysis. Keys of
analyses that did not run stay absent from the findings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from folkrnn.interp.context import Context, ExplainConfig

__all__ = ["QUESTIONS", "Analysis", "ANALYSES", "Context", "ExplainConfig", "Figure", "Ran", "Result", "Table",
           "merge_findings", "register"]

QUESTIONS = {
    "q1": "How does it put bar lines in the right places, and why does that break under small nudges?",
    "q2": "How does it repeat and vary material into long structures (AABB, 8 bars a part)?",
    "q3": "How does it place cadences at the ends of phrases and parts?",
    "q4": "Has it learned that equivalent tokens (enharmonic spellings, redundant naturals) are equivalent?",
}


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
    # per question: "yes" when the evidence for structure cleared every control, "no" when
    # it was tested and did not, "not shown" when the test could not tell (too few tunes)
    verdicts: dict[str, str] = field(default_factory=dict)
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


@dataclass
class Ran:
    analysis: Analysis
    result: Result
    seconds: float


VERDICTS = ("yes", "no", "not shown")  # in precedence order when several analyses answer one question


def merge_findings(ran: list[Ran]) -> dict[str, Any]:
    """Findings of every analysis under its key; answers gathered under `answers`, and
    verdicts under `verdicts`: a question is "yes" when any analysis answering it found
    structure beyond its controls, else "no" when any tested it, else "not shown"."""
    findings: dict[str, Any] = {}
    answers: dict[str, str] = {}
    verdicts: dict[str, str] = {}
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
        for q, v in r.result.verdicts.items():
            if v not in VERDICTS:
                raise ValueError(f"analysis {r.analysis.name!r}: verdict {v!r} for {q} is not one of {VERDICTS}")
            verdicts[q] = min(verdicts.get(q, v), v, key=VERDICTS.index)
    if answers:
        findings["answers"] = {q: answers[q] for q in sorted(answers)}
    if verdicts:
        findings["verdicts"] = {q: verdicts[q] for q in sorted(verdicts)}
    return findings
