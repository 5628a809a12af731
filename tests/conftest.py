"""Shared test helpers.

`requires(*programs)` marks a test that needs system programs (Debian `abcmidi`,
`abcm2ps`, `fluidsynth`, `chromium`, or `npm`'s `node_modules/abcjs`). On a user's
machine without them the test skips with the reason; CI sets FOLKRNN_REQUIRE_TOOLS=1
(see .ci/run, which installs them), and then a missing program fails the test instead.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ABCJS = ROOT / "node_modules" / "abcjs" / "dist" / "abcjs-basic.js"


def missing(*programs: str) -> list[str]:
    """The programs (or `abcjs`) not available here."""
    out = []
    for p in programs:
        if p == "abcjs":
            if not ABCJS.exists() or shutil.which("node") is None:
                out.append("abcjs (run `npm ci`) with node")
        elif p == "soundfont":
            from folkrnn.midi import find_soundfont

            if find_soundfont() is None:
                out.append("a General MIDI soundfont (Debian fluid-soundfont-gm)")
        elif shutil.which(p) is None:
            out.append(p)
    return out


def requires(*programs: str):
    """Decorator: skip (or, under FOLKRNN_REQUIRE_TOOLS=1, fail) when a program is missing."""
    gone = missing(*programs)
    reason = f"not installed: {', '.join(gone)}"
    if gone and os.environ.get("FOLKRNN_REQUIRE_TOOLS") == "1":
        def decorate(fn):
            @functools.wraps(fn)
            def wrapper(*_a, **_k):
                pytest.fail(f"FOLKRNN_REQUIRE_TOOLS=1 but {reason}")
            return wrapper
        return decorate
    return pytest.mark.skipif(bool(gone), reason=reason)
