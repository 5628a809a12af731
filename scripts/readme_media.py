"""Make the README's score image and tune file from the shipped model.

    .venv/bin/python scripts/readme_media.py

Writes docs/img/example_tune.png (the score: abcm2ps to SVG, then headless chromium
to PNG), docs/example_tune.abc and docs/example_tune.mid (`folkrnn generate -f midi`).
Needs abcm2ps and chromium. The tune is tune 2 of seed 2026 at temperature 0.8 with
the meter 6/8, written in D.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = ["-m", "default", "-s", "2026", "-t", "0.8", "--meter", "6/8", "-k", "D", "--no-progress"]
TUNE = 2


def folkrnn(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "folkrnn", *args], capture_output=True, text=True, check=True)
    return r.stdout


def main() -> int:
    for prog in ("abcm2ps", "chromium"):
        if shutil.which(prog) is None:
            sys.exit(f"{prog} is needed")
    abc = folkrnn("generate", "-n", str(TUNE), *OPTIONS)
    tune = abc[abc.index(f"X:{TUNE}\n"):]
    (ROOT / "docs" / "example_tune.abc").write_text(tune, "utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "tune.abc").write_text(tune, "utf-8")
        subprocess.run(["abcm2ps", "-q", "-g", "-O", str(t / "tune"), str(t / "tune.abc")], check=True)
        svg = next(t.glob("tune*.svg")).read_text("utf-8")
        # the window as tall as the engraving (abcm2ps writes the page height on the <svg>)
        m = re.search(r'<svg[^>]*?height="([0-9.]+)(px)?"', svg)
        height = int(float(m.group(1))) + 12 if m else 390
        (t / "page.html").write_text(f"<html><body style='margin:0;background:white'>{svg}</body></html>", "utf-8")
        png = ROOT / "docs" / "img" / "example_tune.png"
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--screenshot={png}", f"--window-size=816,{height}", f"file://{t / 'page.html'}"],
                       check=True, capture_output=True)
        folkrnn("generate", "-n", str(TUNE), *OPTIONS, "-f", "midi", "-o", str(t / "mid"))
        shutil.copy(t / "mid" / f"tune_{TUNE:05d}.mid", ROOT / "docs" / "example_tune.mid")
    print(f"wrote docs/img/example_tune.png, docs/example_tune.abc, docs/example_tune.mid", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
