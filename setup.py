"""Build hook: npm's abcjs (installed by `npm ci` from package-lock.json) goes into the wheel.

`pip install .` or `python -m build` copies node_modules/abcjs/dist/abcjs-basic-min.js and its
licence into folkrnn/web/static/vendor/ of the build, so an installed folkrnn draws scores in
the studio and in Jupyter without a checkout. Without node_modules the build goes on and says
so: the studio then shows ABC text without staff notation. Everything else is in pyproject.toml.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ABCJS = ROOT / "node_modules" / "abcjs" / "dist"
FILES = ("abcjs-basic-min.js", "abcjs-basic-min.js.LICENSE")


class BuildWithAbcjs(build_py):
    def run(self):
        super().run()
        if self.editable_mode:  # an editable install finds node_modules from the checkout
            return
        dest = Path(self.build_lib) / "folkrnn" / "web" / "static" / "vendor"
        if not (ABCJS / FILES[0]).is_file():
            self.announce("node_modules/abcjs not found (run `npm ci`): the wheel has no staff notation", level=3)
            return
        dest.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            if (ABCJS / name).is_file():
                shutil.copyfile(ABCJS / name, dest / name)


setup(cmdclass={"build_py": BuildWithAbcjs})
