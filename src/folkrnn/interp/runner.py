"""Runs the analyses of `folkrnn explain`: imports the modules that register the built-in
analyses (so the registry itself imports none of them), orders them for the report and
runs the chosen ones, one progress bar each."""

from __future__ import annotations

import logging
import time

import folkrnn.interp.analyses  # noqa: F401  (registers the weight analyses)
import folkrnn.interp.behaviour  # noqa: F401  (the activation analyses, Q1-Q4)
import folkrnn.interp.sections  # noqa: F401  (where sections end)
from folkrnn.errors import FolkRNNError
from folkrnn.files import progress as progress_bar
from folkrnn.interp.registry import ANALYSES, Analysis, Context, Ran

log = logging.getLogger(__name__)


def registered() -> list[Analysis]:
    """Every registered analysis, questions first, in report order."""
    return sorted(ANALYSES.values(), key=lambda a: (a.section != "questions", a.order, a.name))


def run_analyses(ctx: Context, names: list[str] | None = None, progress: bool = False) -> list[Ran]:
    """Run the named analyses (all registered by default), one progress bar each, in report order."""
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
