"""One numbering of tunes everywhere: `folkrnn score` and `folkrnn evaluate` name a tune by
its place in the input counted from 1 (rejected ABC tunes included), plus its X: and title
when the input is ABC, so that their output can be matched back to the input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from folkrnn.checkpoint import save_checkpoint
from folkrnn.cli import main
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

# Tune 1 (X:1) is rejected (5/4 is no v2 meter); tunes 2 and 3 are kept, with X: 3 and 7.
ABC = (
    "X:1\nT:Five\nM:5/4\nL:1/8\nK:G\nABCDE|\n\n"
    "X:3\nT:The Kesh\nM:6/8\nL:1/8\nK:G\n|:DGG GAB:|\n\n"
    "X:7\nT:Other\nM:2/4\nL:1/8\nK:D\n|:DF AF|d2 d2:|\n"
)
TOKENS = "M:6/8\nK:Cmaj\n|: G c c :|\n\nM:4/4\nK:Cdor\n|: A B c d :|\n"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "rand.safetensors"
    torch.manual_seed(0)
    save_checkpoint(path, FolkRNN(ModelConfig(hidden_size=8, num_layers=1)).eval(), Vocabulary.v2())
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_score_names_abc_tunes_by_input_position_x_and_title(model, tmp_path, capsys):
    f = tmp_path / "t.abc"
    f.write_text(ABC)
    rc, out, err = run(capsys, "score", "-m", str(model), str(f), "--no-progress")
    assert rc == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(d["index"], d["x"], d["title"]) for d in docs] == [(2, "3", "The Kesh"), (3, "7", "Other")]
    assert "skipped tune 1," in err and "X:1" in err


def test_score_numbers_token_files_from_1_without_x(model, tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text(TOKENS)
    rc, out, err = run(capsys, "score", "-m", str(model), str(f), "--no-progress")
    assert rc == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    assert [(d["index"], d["x"], d["title"]) for d in docs] == [(1, None, None), (2, None, None)]


def _tune_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " bars " in line and "form" in line]


def test_evaluate_tunes_lines_use_input_position_x_and_title(tmp_path, capsys):
    f = tmp_path / "t.abc"
    f.write_text(ABC)
    rc, out, err = run(capsys, "evaluate", str(f), "--tunes")
    assert rc == 0, err
    lines = _tune_lines(out)
    assert [int(line.split()[0]) for line in lines] == [2, 3]
    assert lines[0].endswith('X:3 "The Kesh"') and lines[1].endswith('X:7 "Other"')


def test_evaluate_tunes_lines_of_a_token_file(tmp_path, capsys):
    f = tmp_path / "t.txt"
    f.write_text(TOKENS)
    rc, out, err = run(capsys, "evaluate", str(f), "--tunes")
    assert rc == 0, err
    lines = _tune_lines(out)
    assert [int(line.split()[0]) for line in lines] == [1, 2]
    assert not any("X:" in line for line in lines)


def test_evaluate_json_and_score_agree_on_the_numbering(model, tmp_path, capsys):
    f = tmp_path / "t.abc"
    f.write_text(ABC)
    ev = tmp_path / "ev.json"
    rc, _, err = run(capsys, "evaluate", str(f), "--json", str(ev))
    assert rc == 0, err
    tunes = json.loads(ev.read_text())["tunes"]
    assert [(t["index"], t["x"], t["title"]) for t in tunes] == [(2, "3", "The Kesh"), (3, "7", "Other")]
    rc, out, err = run(capsys, "score", "-m", str(model), str(f), "--no-progress")
    assert rc == 0, err
    assert [json.loads(line)["index"] for line in out.splitlines()] == [t["index"] for t in tunes]


def test_evaluate_tunes_speak_the_tunes_own_key(tmp_path):
    """An ABC file in D major is listed in D (tokens are in C inside): key and final note as written."""
    import subprocess
    import sys

    f = tmp_path / "keys.abc"
    f.write_text("X:1\nT:In D\nM:6/8\nL:1/8\nK:D\n|:A|dfa afd|gbg faf|ede cBA|d3 d2:|\n\n"
                 "X:2\nT:In B flat\nM:4/4\nL:1/8\nK:Bb\nBcde f2d2|c2A2 B4|]\n\n"
                 "X:3\nT:In E dorian\nM:4/4\nL:1/8\nK:Edor\nEFGA B2e2|d2B2 E4|]\n")
    r = subprocess.run([sys.executable, "-m", "folkrnn", "evaluate", str(f), "--tunes"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if '"In ' in ln]
    assert "K:Dmaj" in lines[0] and "ends D " in lines[0]
    assert "K:Bbmaj" in lines[1] and "ends Bb " in lines[1]
    assert "K:Edor" in lines[2] and "ends E " in lines[2]
