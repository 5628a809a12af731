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


@pytest.fixture(scope="module")
def tiny_model():
    """A 2-layer, 16-unit model on the v2 vocabulary with random initial states and peaky
    outputs (a sharper test of equivalences); tunes run to the length cap or stop
    at random, `</s>` is not favoured. Built fresh per test module (tests may not change it)."""
    import torch

    from folkrnn.model import FolkRNN, ModelConfig

    g = torch.Generator().manual_seed(0)
    m = FolkRNN(ModelConfig(hidden_size=16, num_layers=2))
    m.reset_parameters(generator=g)
    with torch.no_grad():
        m.out.weight.mul_(3.0)
        for layer in m.layers:
            layer.c0.normal_(0, 0.5, generator=g)
            layer.h0.uniform_(-0.5, 0.5, generator=g)
    return m.eval()
