"""`pip install folkrnn` from a built wheel gives the whole studio: npm's abcjs travels inside.

The wheel is built from a copy of the project (sources, pyproject, setup.py and npm's
installed abcjs), installed into a fresh virtual environment with no checkout anywhere
above it; its dependencies come from the test's own environment through a path file (so
no download, and the checkout's editable install is not activated). Then `folkrnn serve`
from that environment must serve abcjs, and a browser must draw a score with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import pytest

from conftest import requires
from studio_util import chromium, serving

ROOT = Path(__file__).resolve().parent.parent
ABCJS = ROOT / "node_modules" / "abcjs" / "dist" / "abcjs-basic-min.js"
VENDORED = "folkrnn/web/static/vendor/abcjs-basic-min.js"
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "project"
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    (src / "node_modules" / "abcjs").mkdir(parents=True)
    shutil.copytree(ABCJS.parent, src / "node_modules" / "abcjs" / "dist")
    out = tmp / "dist"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                        str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    (wheel,) = out.glob("folkrnn-*.whl")
    return wheel


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=120)
    py = env_dir / "bin" / "python"
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # Dependencies (torch, fastapi...) from this environment; a path line does not run its .pth
    # files, so the checkout's editable folkrnn stays out and the wheel's is the one imported.
    Path(site, "deps-from-test-env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return py


@pytest.mark.slow
@requires("abcjs")
def test_the_wheel_carries_abcjs_and_the_installed_studio_serves_it(tmp_path):
    wheel = _build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        assert z.read(VENDORED) == ABCJS.read_bytes()
    py = _fresh_venv(tmp_path, wheel)
    away = tmp_path / "elsewhere"
    away.mkdir()
    r = subprocess.run([str(py), "-c", "import folkrnn, folkrnn.tune as t; print(folkrnn.__file__); print(t.find_abcjs())"],
                       cwd=away, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    pkg, found = r.stdout.split()
    assert pkg.startswith(str(tmp_path / "venv")) and found.startswith(str(tmp_path / "venv")), r.stdout

    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    with serving([str(py), "-m", "folkrnn", "serve", "--port", "0"], cwd=away, env=env, timeout=180) as (_, url):
        with OPENER.open(url + "vendor/abcjs.js", timeout=60) as resp:
            assert resp.status == 200 and resp.read() == ABCJS.read_bytes()
        with OPENER.open(url + "api/info", timeout=60) as resp:
            assert json.load(resp)["missing"]["abcjs"] is None
        _score_drawn(url)

def _score_drawn(url: str) -> None:
    """The installed studio's page loads abcjs and draws a staff with it (skips without chromium)."""
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        if os.environ.get("FOLKRNN_REQUIRE_TOOLS") == "1":
            pytest.fail("FOLKRNN_REQUIRE_TOOLS=1 but chromium is not installed")
        return
    with chromium() as b:
        page = b.new_page()
        page.goto(url)
        page.wait_for_function("() => window.ABCJS !== undefined", timeout=30000)
        n = page.evaluate("""() => { const d = document.createElement('div'); document.body.appendChild(d);
            ABCJS.renderAbc(d, 'X:1\\nM:6/8\\nL:1/8\\nK:D\\n|:A|dfa afd|gbg faf:|');
            return d.querySelectorAll('svg path').length; }""")
        assert n > 20
