"""Every `folkrnn ...` command README.md shows runs on a fresh clone as written.

The commands are found in the README itself: in code blocks, in inline backticks in prose
and in the command table. `CASES` says, for each command text, how it runs here: which
placeholders (`FILE`, `MODEL`, `T`...) stand for which files or values, which inputs a
fresh clone lacks (made first in a temporary folder: a tiny Lasagne pickle, a few ABC
tunes, a small token file, a tiny model and run), and which options shorten it (later
options win in argparse, so `-n 200` followed by `-n 3` makes 3 tunes).

Each command is then
1. parsed, exactly as the README writes it (placeholders filled, `[optional]` parts
   included), by `folkrnn.cli.build_parser()`: a renamed or removed option fails here;
2. run for real, shortened, as `python -m folkrnn ...` in a temporary folder: exit 0, and
   the file it writes or the lines it prints are there.

A command added to the README that `CASES` does not know fails
`test_every_readme_command_has_a_case`, and so does a case whose command left the README.
Kinds of case:
- "run": parsed, then run shortened (`&&` chains step by step; `mkdir -p` is done here);
- "serve": parsed, then started on a free port and asked for its page, then stopped;
- "parse": only parsed (`torchrun ...`: the `folkrnn train` arguments it passes);
- "name": a subcommand named in prose, perhaps with one of its options (`folkrnn
  corpus --report`): the subcommand exists, its `--help` exits 0, the options are its own;
- "help": `folkrnn COMMAND --help`, for every subcommand.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pytest
from studio_util import serving

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text("utf-8")
SAMPLES = Path(__file__).parent / "data" / "folkrnn_v2_generated_samples.txt"  # 64 tunes, data_v2
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy

_FOLKRNN = re.compile(r"(?:^|\s)folkrnn(?:\s|$)")


def readme_commands(text: str) -> list[str]:
    """The texts of the `folkrnn` commands in `text`, whitespace collapsed, in order (with
    repeats): each line of a fenced code block that runs folkrnn (comments cut), and each
    inline code span (in prose or a table, possibly over a line break) that does."""
    found = []
    parts = re.split(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S)
    for i, part in enumerate(parts):
        if i % 2:  # inside a code block
            pieces = [line.split(" #", 1)[0] for line in part.splitlines()]
        else:
            pieces = re.findall(r"`([^`]+)`", part)
        found += [" ".join(p.split()) for p in pieces if _FOLKRNN.search(" ".join(p.split()))]
    return found


# ---------------------------------------------------------------------------- inputs
# What a fresh clone lacks, made once per module in a stock folder, copied into each test's
# folder on demand.

ABC_TUNES = """\
X:1
T:The Test Reel
M:4/4
L:1/8
K:D
|:A2FA DAFA|B2GB dBGB|A2FA DAFA|Bcde fdd2:|
|:f2df adfa|g2eg bgeg|f2df adfa|gfed e2d2:|

X:2
T:The Test Jig
M:6/8
L:1/8
K:G
|:D|GAB d2B|c2A B2G|FGA DEF|GBA G2:|
|:d|g2d B2d|c2A F2A|G2B dcB|AGF G2:|

X:3
T:The Test Polka
M:2/4
L:1/8
K:Ador
|:AB cA|BA GE|AB cd|e2 e2|dc BA|GA Bd|cB AG|A2 A2:|
"""


def _tiny_model(hidden: int = 16, layers: int = 1, seed: int = 0):
    import torch

    from folkrnn.model import FolkRNN, ModelConfig

    m = FolkRNN(ModelConfig(hidden_size=hidden, num_layers=layers))
    m.reset_parameters(generator=torch.Generator().manual_seed(seed))
    return m.eval()


def _make_pkl(d: Path) -> None:
    """folk-rnn's original weight file, in its layout (3 layers, 16 units: tiny)."""
    import numpy as np
    from test_legacy import folkrnn_dict, lasagne_params, py2_pickle, v2_token2idx

    params = lasagne_params(np.random.default_rng(3), 137, 16, L=3)
    (d / "folkrnn_v2.pkl").write_bytes(py2_pickle(folkrnn_dict(params, v2_token2idx())))


def _make_model(d: Path) -> None:
    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.vocab import Vocabulary

    save_checkpoint(d / "tiny.safetensors", _tiny_model(), Vocabulary.v2())


def _make_run(d: Path) -> None:
    """A run folder as `folkrnn train ... --keep-epochs 2` leaves it (the models only)."""
    from folkrnn.checkpoint import save_checkpoint
    from folkrnn.vocab import Vocabulary

    run = d / "runs" / "v2"
    run.mkdir(parents=True)
    for seed, name in enumerate(("epoch-001", "epoch-002")):
        save_checkpoint(run / f"{name}.safetensors", _tiny_model(seed=seed), Vocabulary.v2())
    shutil.copy(run / "epoch-002.safetensors", run / "best.safetensors")
    shutil.copy(run / "epoch-002.safetensors", run / "last.safetensors")


def _samples(n: int | None = None) -> str:
    tunes = SAMPLES.read_text("utf-8").strip().split("\n\n")
    return "\n\n".join(tunes[:n]) + "\n"


MAKERS: dict[str, Callable[[Path], None]] = {
    "FILE.abc": lambda d: (d / "FILE.abc").write_text(ABC_TUNES, "utf-8"),
    "data.txt": lambda d: (d / "data.txt").write_text(_samples(), "utf-8"),
    # the README's training file, here a small stand-in (the real one: the slow test of
    # `mkdir -p runs && folkrnn corpus --as-trained ...` builds it)
    "runs/openfolk.txt": lambda d: (d / "runs" / "openfolk.txt").write_text(_samples(), "utf-8"),
    "gen.txt": lambda d: (d / "gen.txt").write_text(_samples(5), "utf-8"),
    "folkrnn_v2.pkl": _make_pkl,
    "tiny.safetensors": _make_model,
    "runs/v2": _make_run,
}


@pytest.fixture(scope="module")
def stock(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("stock")


def provide(stock: Path, cwd: Path, names) -> None:
    for name in names:
        src = stock / name
        if not src.exists():
            src.parent.mkdir(parents=True, exist_ok=True)
            MAKERS[name](stock)
        dst = cwd / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)


# ---------------------------------------------------------------------------- checks

def tunes_in(text: str) -> int:
    return len(re.findall(r"^X:\s*\d+", text, re.M))


def token_tunes(path: Path) -> list[str]:
    return [t for t in path.read_text("utf-8").strip().split("\n\n") if t.strip()]


def check_abc_tunes(n: int, *also: str):
    def check(cwd: Path, out: str) -> None:
        assert tunes_in(out) == n, out[-2000:]
        for s in also:
            assert re.search(s, out, re.M), f"{s!r} not in\n{out[-2000:]}"
    return check


def check_files(*names: str, then: Callable[[Path, str], None] | None = None):
    def check(cwd: Path, out: str) -> None:
        for name in names:
            p = cwd / name
            assert p.is_file() and p.stat().st_size > 0, f"{name} not written; output:\n{out[-2000:]}"
        if then:
            then(cwd, out)
    return check


def check_out(*patterns: str):
    def check(cwd: Path, out: str) -> None:
        for s in patterns:
            assert re.search(s, out, re.M), f"{s!r} not in\n{out[-3000:]}"
    return check


def check_gen_txt(cwd: Path, out: str) -> None:
    tunes = token_tunes(cwd / "gen.txt")
    assert len(tunes) == 3 and all(t.startswith("M:6/8\n") for t in tunes), tunes


def check_corpus(cwd: Path, out: str) -> None:
    assert len(token_tunes(cwd / "data.txt")) == 3
    report = json.loads((cwd / "r.json").read_text("utf-8"))
    assert "FILE.abc" in json.dumps(report)


def check_score(cwd: Path, out: str) -> None:
    lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [x["index"] for x in lines] == [1, 2, 3, 4, 5], out[-2000:]
    assert all(x["tokens"][-1] == "</s>" for x in lines)


def check_as_trained(cwd: Path, out: str) -> None:
    assert len(token_tunes(cwd / "runs" / "openfolk.txt")) == 4199
    assert "as default records" in out, out[-2000:]


# ---------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Case:
    fill: dict[str, str] = field(default_factory=dict)  # README placeholder token -> what stands for it here
    short: str = ""  # appended to each folkrnn step when run for real
    needs: tuple[str, ...] = ()  # inputs (MAKERS) a fresh clone lacks, made first
    check: Callable[[Path, str], None] | None = None  # (folder, stdout + stderr) -> asserts
    how: str = "run"  # run, serve, parse, name, help
    slow: bool = False


QUICK_GEN = "--no-progress --threads 1"

CASES: dict[str, Case] = {
    # -- "The original weights" (code block)
    "folkrnn generate -m folkrnn_v2.pkl -n 5": Case(
        short=f"-n 2 -s 1 --max-length 200 {QUICK_GEN}", needs=("folkrnn_v2.pkl",), check=check_abc_tunes(2)),
    "folkrnn import folkrnn_v2.pkl -o folkrnn_v2.safetensors && folkrnn info -m folkrnn_v2.safetensors": Case(
        needs=("folkrnn_v2.pkl",),
        check=check_files("folkrnn_v2.safetensors", then=check_out(r"3 LSTM layers x 16 units"))),
    # -- "What it makes", "Getting better tunes"
    "folkrnn generate -n 2 -s 2026 -t 0.8 --meter 6/8 -k D": Case(
        short=QUICK_GEN, check=check_abc_tunes(2, r"^M:6/8$", r"^K:D", r"seed 2026, temperature 0\.8, tune 2 ")),
    "folkrnn generate -n 200 -s 1 -t T [--meter 6/8] -f tokens -o gen.txt": Case(
        fill={"T": "0.8"}, short=f"-n 3 {QUICK_GEN}", check=check_gen_txt),
    "folkrnn evaluate gen.txt --against runs/openfolk.txt": Case(
        needs=("gen.txt", "runs/openfolk.txt"), check=check_out(r"reference\s+runs/openfolk\.txt \(64 tunes\)",
                                                                  r"tunes copying >= 16 tokens")),
    "mkdir -p runs && folkrnn corpus --as-trained -m default -o runs/openfolk.txt": Case(
        check=check_as_trained, slow=True),  # ~10 s: reads music21's collections
    "folkrnn evaluate gen.txt --tunes": Case(
        needs=("gen.txt",), check=check_out(*(rf"^\s+{i} M:\S+\s+K:\S+\s+bars" for i in range(1, 6)))),
    # -- "Use": the program, `--help`, the command table
    "folkrnn": Case(how="name"),
    "folkrnn COMMAND --help": Case(how="help"),
    "folkrnn tokenize FILE.abc...": Case(
        needs=("FILE.abc",), check=check_out(r"^M:4/4\nK:Cmaj\n", r"^M:6/8\nK:Cmaj\n", r"^M:2/4\nK:Cdor\n")),
    "folkrnn abc TOKEN_FILE [--key D]": Case(
        fill={"TOKEN_FILE": "data.txt"}, needs=("data.txt",), check=check_abc_tunes(64, r"^K:D")),
    "folkrnn corpus [SOURCE...] -o data.txt --report r.json": Case(
        fill={"SOURCE": "FILE.abc"}, short="-q", needs=("FILE.abc",), check=check_corpus),
    "folkrnn train data.txt -o runs/v2": Case(
        short="--hidden 16 --layers 1 --batch-size 30 --epochs 2 --no-progress --threads 1", needs=("data.txt",),
        check=check_files("runs/v2/best.safetensors", "runs/v2/log.csv", then=check_out(r"validation NLL"))),
    "torchrun --nproc_per_node=N -m folkrnn train ...": Case(fill={"...": "data.txt -o runs/v2"}, how="parse"),
    "folkrnn generate -m default -n 5": Case(short=f"-n 2 -s 1 {QUICK_GEN}", check=check_abc_tunes(2)),
    "folkrnn average RUN -o avg.safetensors": Case(
        fill={"RUN": "runs/v2"}, needs=("runs/v2",), check=check_files("avg.safetensors")),
    "folkrnn score -m MODEL FILE": Case(
        fill={"MODEL": "tiny.safetensors", "FILE": "gen.txt"}, short="--no-progress --threads 1",
        needs=("tiny.safetensors", "gen.txt"), check=check_score),
    "folkrnn info -m MODEL": Case(
        fill={"MODEL": "tiny.safetensors"}, needs=("tiny.safetensors",), check=check_out(r"1 LSTM layers? x 16 units")),
    "folkrnn import folkrnn_v2.pkl -o v2.safetensors": Case(
        needs=("folkrnn_v2.pkl",), check=check_files("v2.safetensors")),
    "folkrnn evaluate FILE [--against CORPUS]": Case(
        fill={"FILE": "gen.txt", "CORPUS": "data.txt"}, needs=("gen.txt", "data.txt"),
        check=check_out(r"reference\s+data\.txt \(64 tunes\)", r"tunes copying >= 16 tokens\s+100\.0%")),
    "folkrnn explain -m MODEL -o DIR [--corpus FILE]": Case(
        fill={"MODEL": "tiny.safetensors", "DIR": "report", "FILE": "data.txt"},
        short="--quick --only inventory,bars --no-progress --threads 1", needs=("tiny.safetensors", "data.txt"),
        check=check_files("report/report.html", "report/findings.json")),
    "folkrnn ngram TRAIN --split [-m MODEL]": Case(
        fill={"TRAIN": "data.txt", "MODEL": "tiny.safetensors"}, needs=("data.txt", "tiny.safetensors"),
        check=check_out(r"^order\s+nats/token", r"net\s+\d+\.\d+.*tiny\.safetensors")),
    "folkrnn demo": Case(short="-n 1 --seed 1", check=check_files("folkrnn-demo/tunes.abc", "folkrnn-demo/tune01.mid")),
    "folkrnn serve": Case(how="serve", slow=True),  # table and prose; ~10 s: loads the shipped model, starts a server
    # -- "The studio", the explain report, "Cite / provenance": prose
    "folkrnn generate": Case(how="name"),
    "folkrnn serve -m default -m runs/v2/best.safetensors": Case(how="serve", needs=("runs/v2",), slow=True),
    "folkrnn explain": Case(how="name"),
    "folkrnn explain -m default -o report/ --corpus data.txt": Case(
        short="--quick --only inventory,bias_frequency --no-progress --threads 1", needs=("data.txt",),
        check=check_files("report/report.html", "report/findings.json"), slow=True),  # ~12 s with the full-size model
    "folkrnn generate --ablate 3:476,145": Case(short=f"-n 1 -s 1 {QUICK_GEN}", check=check_abc_tunes(1)),
    "folkrnn evaluate": Case(how="name"),
    "folkrnn info -m default": Case(
        check=check_out(r"folkrnn v2 \(open corpus\)",  # and the collections it learned from, as README says
                        "oneills1850", "ryansMammoth", "airdsAirs", "miscFolk", "essenFolksong")),
    "folkrnn corpus --report": Case(how="name"),
}


# ---------------------------------------------------------------------------- parsing

@lru_cache(maxsize=1)
def parser():
    from folkrnn.cli import build_parser

    return build_parser()


def subparsers() -> dict:
    sub = next(a for a in parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices


def steps(text: str, case: Case) -> list[list[str]]:
    """The README text as a list of argvs, one per `&&` step, placeholders filled:
    `[...]` marks dropped (the optional part is included), `X...` read as X, then each
    token that `case.fill` names replaced (by nothing, one token or several)."""
    used = set()
    out = []
    for step in text.split(" && "):
        argv = []
        for tok in shlex.split(step):
            if tok != "...":
                tok = tok.strip("[]").removesuffix("...")
            if tok in case.fill:
                used.add(tok)
                argv += shlex.split(case.fill[tok])
            elif tok:
                argv.append(tok)
        out.append(argv)
    stale = sorted(set(case.fill) - used)
    assert not stale, f"{text!r}: the case fills {stale}, which it does not contain"
    return out


def folkrnn_argv(argv: list[str]) -> list[str] | None:
    """The arguments a step passes to folkrnn; None for a step that is not folkrnn."""
    if argv[0] == "folkrnn":
        return argv[1:]
    if argv[0] == "torchrun":
        i = argv.index("-m")
        assert argv[i + 1] == "folkrnn", argv
        return argv[i + 2:]
    return None


def parse(argv: list[str]):
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            return parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"`folkrnn {shlex.join(argv)}` does not parse (exit {e.code}): {err.getvalue().strip()}")


def help_of(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        parser().parse_args([*argv, "--help"])
    assert e.value.code == 0
    return out.getvalue()


# ---------------------------------------------------------------------------- running

def env(cwd: Path) -> dict:
    """The studio's default archive (~/.local/share/folkrnn) goes into the test's folder."""
    return {**os.environ, "XDG_DATA_HOME": str(cwd / "xdg-data"), "MPLBACKEND": "Agg"}


def folkrnn(args: list[str], cwd: Path, timeout: float = 300) -> str:
    p = subprocess.run([sys.executable, "-m", "folkrnn", *args], cwd=cwd, env=env(cwd), capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"`folkrnn {shlex.join(args)}` exited {p.returncode}:\n{p.stderr[-3000:]}"
    return p.stdout + p.stderr


def run_steps(text: str, case: Case, cwd: Path) -> str:
    out = ""
    for argv in steps(text, case):
        args = folkrnn_argv(argv)
        if args is not None:
            parse(args)  # as the README writes it
            out += folkrnn([*args, *shlex.split(case.short)], cwd)  # shortened
        elif argv[:2] == ["mkdir", "-p"]:
            for d in argv[2:]:
                (cwd / d).mkdir(parents=True, exist_ok=True)
        else:
            pytest.fail(f"{text!r}: no way here to run the step {shlex.join(argv)!r}")
    return out


def serve(text: str, case: Case, cwd: Path) -> None:
    (argv,) = steps(text, case)
    args = folkrnn_argv(argv)
    parsed = parse(args)
    with serving([sys.executable, "-m", "folkrnn", *args, "--port", "0"], cwd=cwd, env=env(cwd)) as (p, url):
        with OPENER.open(url, timeout=60) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
        with OPENER.open(url + "api/info", timeout=60) as r:
            info = json.load(r)
        assert len(info["models"]) == len(parsed.model or ["default"]), info["models"]
        assert (cwd / "xdg-data" / "folkrnn" / "studio.sqlite").is_file()  # the default archive, kept out of ~
    assert p.returncode in (0, 130, -signal.SIGINT)


# ---------------------------------------------------------------------------- tests

def test_every_readme_command_has_a_case():
    found = set(readme_commands(README))
    assert found == set(CASES), (
        f"README commands with no case here (add them to CASES): {sorted(found - set(CASES))}; "
        f"cases whose command is no longer in the README: {sorted(set(CASES) - found)}")


def test_the_extraction_finds_code_blocks_prose_over_line_breaks_and_tables():
    text = ("```sh\nfolkrnn a -n 1   # comment\nmake x\n```\nsee `folkrnn b\n-t T` and `~/.cache/folkrnn`\n"
            "| `folkrnn c FILE` | `--against default` |\n")
    assert readme_commands(text) == ["folkrnn a -n 1", "folkrnn b -t T", "folkrnn c FILE"]


def test_the_command_table_lists_every_subcommand():
    use = re.search(r"^## Use\n(.*?)(?=^## )", README, re.M | re.S).group(1)
    listed = re.findall(r"^\| `folkrnn ([\w-]+)", use, re.M)
    assert sorted(listed) == sorted(subparsers()), "the README's command table and `folkrnn --help` disagree"


def _params():
    for text, case in CASES.items():
        marks = [pytest.mark.slow] if case.slow else []
        yield pytest.param(text, case, id=text, marks=marks)


@pytest.mark.parametrize(("text", "case"), list(_params()))
def test_readme_command_runs(text, case, stock, tmp_path):
    provide(stock, tmp_path, case.needs)
    if case.how == "run":
        out = run_steps(text, case, tmp_path)
        if case.check:
            case.check(tmp_path, out)
    elif case.how == "serve":
        serve(text, case, tmp_path)
    elif case.how == "parse":
        for argv in steps(text, case):
            args = folkrnn_argv(argv)
            assert args is not None, argv
            parse(args)
    elif case.how == "name":
        (argv,) = steps(text, case)
        args = folkrnn_argv(argv)
        if not args:  # the program itself
            assert set(subparsers()) <= set(re.findall(r"^    (\w+)", help_of([]), re.M))
            return
        sub, options = args[0], args[1:]
        assert sub in subparsers(), f"no subcommand {sub!r}"
        assert help_of([sub]).startswith(f"usage: folkrnn {sub} ")
        own = set(subparsers()[sub]._option_string_actions)
        assert set(options) <= own, f"`folkrnn {sub}` has no option {sorted(set(options) - own)}"
    elif case.how == "help":
        (argv,) = steps(text, case)
        assert argv == ["folkrnn", "COMMAND", "--help"], argv
        for sub in subparsers():
            assert help_of([sub]).startswith(f"usage: folkrnn {sub} ")
        assert folkrnn(["generate", "--help"], tmp_path).startswith("usage: folkrnn generate ")
    else:
        pytest.fail(f"unknown kind {case.how!r}")
