"""The README's pictures of the studio: `folkrnn serve` with the shipped model, driven by
Debian's headless chromium through Playwright.

    .venv/bin/python scripts/studio_screenshots.py [--out docs/img] [-m default]

Writes studio-compose.png (a tune playing, cursor on the staff), studio-archive.png,
studio-inspect.png (token probabilities, a heatmap of layer 3's units that best tell a
bar line is next, their ranking) and studio-intervene.png (those units ablated, the tune
made again beside the original). The archive is a fresh temporary one; seeds are fixed, so the
pictures change only when the model does.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def compose(page, meter: str, mode: str, key: str, seed: int, n: int = 1, prime: str = "") -> None:
    page.click("nav [data-view=compose]")
    page.select_option("#f-meter", meter)
    page.select_option("#f-mode", mode)
    page.select_option("#f-key", key)
    page.fill("#f-prime", prime)
    page.fill("#f-seed", str(seed))
    page.check("#f-lock")
    page.fill("#f-num_tunes", str(n))
    page.click("#compose-go")
    page.wait_for_selector(f"#compose-tunes .tune:nth-child({n}) .staff svg", timeout=60000)
    page.wait_for_selector("#compose-go:not([disabled])")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="docs/img")
    ap.add_argument("-m", "--model", default="default")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="folkrnn-shots-") as d:
        server = subprocess.Popen([sys.executable, "-m", "folkrnn", "serve", "-m", args.model, "--db",
                                   str(Path(d) / "studio.sqlite"), "--port", "0"], stderr=subprocess.PIPE, text=True)
        try:
            url = None
            while url is None:
                line = server.stderr.readline()
                if not line:
                    raise SystemExit("the studio did not start")
                m = re.search(r"folkrnn studio: (http://\S+/)", line)
                url = m.group(1) if m else None
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
                page.goto(url)
                page.wait_for_selector("body[data-ready=true]")
                # a few tunes for the archive
                compose(page, "4/4", "major", "G", 11, 2)
                compose(page, "3/4", "minor", "A", 5, 1)
                page.locator("#compose-tunes .tune .star").first.click()
                # the tune in the picture: a jig in D, primed with its opening bar
                compose(page, "6/8", "major", "D", 2026, 1, prime="|: A")
                card = page.locator("#compose-tunes .tune").first
                card.locator(".title").fill("The Studio Jig")
                card.locator(".title").press("Tab")
                card.locator(".star").click()
                card.locator(".play").click()
                page.wait_for_function("document.querySelector('#compose-tunes audio').currentTime > 2.2", timeout=60000)
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(out / "studio-compose.png"))
                card.locator(".play").click()
                page.click("nav [data-view=archive]")
                page.wait_for_selector("#archive-table tbody tr:nth-child(4)")
                page.locator("#archive-table tbody tr").first.click()
                page.wait_for_selector("#archive-tune .staff svg")
                page.locator("#archive-table .pick").nth(1).check()
                page.locator("#archive-table .pick").nth(0).check()
                page.evaluate("window.scrollTo(0, 0)")
                page.screenshot(path=str(out / "studio-archive.png"))
                page.locator("#archive-tune .inspect-btn").click()
                page.wait_for_selector("#inspect-out .probs .tok")
                page.locator("#inspect-out .probs .tok").nth(17).click()
                page.select_option("#u-layer", "3")
                page.select_option("#u-quantity", "h")
                page.select_option("#u-label", "bar_next")
                page.fill("#u-top", "10")
                page.fill("#u-archive", "3")
                page.click("#u-go")
                page.wait_for_selector("#inspect-lane canvas.heatmap")
                page.wait_for_selector("#units-out .ranking tr")
                page.screenshot(path=str(out / "studio-inspect.png"))
                for row in page.query_selector_all("#units-out .ranking tr")[:4]:
                    row.click()
                page.click("#v-go")
                page.wait_for_selector("#intervene-out .side.intervened .staff svg", timeout=120000)
                page.locator("#intervene-form").scroll_into_view_if_needed()
                page.evaluate("document.querySelector('#intervene-form').scrollIntoView()")
                page.screenshot(path=str(out / "studio-intervene.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(20)
    for name in ("studio-compose.png", "studio-archive.png", "studio-inspect.png", "studio-intervene.png"):
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
