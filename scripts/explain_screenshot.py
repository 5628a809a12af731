"""The README's picture of a `folkrnn explain` report: its first screen, by headless chromium.

    .venv/bin/folkrnn explain -m default -o runs/explain --corpus runs/openfolk.txt
    .venv/bin/python scripts/explain_screenshot.py runs/explain/report.html [-o docs/img/explain_report.png]

Needs Debian's chromium and PyPI playwright (no browser download). The PNG is reduced to
256 colours (the report is text and flat plots) to keep the repository small.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "img" / "explain_report.png")
    ap.add_argument("--size", default="1200x1350", help="viewport WIDTHxHEIGHT")
    args = ap.parse_args()
    if not args.report.is_file():
        sys.exit(f"{args.report}: no such file")
    from playwright.sync_api import sync_playwright

    w, h = (int(x) for x in args.size.split("x"))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": w, "height": h})
        page.goto(args.report.resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(args.out))
        browser.close()
    Image.open(args.out).convert("RGB").quantize(colors=256).save(args.out, optimize=True)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
