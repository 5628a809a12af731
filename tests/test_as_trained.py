"""`folkrnn corpus --as-trained -m MODEL` rebuilds, bit for bit, the training file MODEL
records (today's reader plus the recorded tokens of the tunes it reads differently), and
`folkrnn evaluate --against default` compares with that file without a path."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from folkrnn import corpus
from folkrnn.checkpoint import read_metadata, save_checkpoint
from folkrnn.cli import main
from folkrnn.datafile import tunes_to_text
from folkrnn.load import default_model_path
from folkrnn.model import FolkRNN, ModelConfig
from folkrnn.vocab import Vocabulary

# What MODEL.md and the shipped checkpoint record of the British Isles training file.
RECORDED_SHA256 = "7a14382ab3c9f29775bdcf71931ab71f8ee08cf7f054094e65b665292f9ae65a"

ABC = "X:1\nT:one\nM:6/8\nL:1/8\nK:G\n|:DGG GAB:|\n\nX:2\nT:two\nM:2/4\nL:1/8\nK:D\n|:DF AF|d2 d2:|\n"
# The tokens "an older reader" gave tune X:2 (line 8 of the file): one note changed.
OLD_TWO = ("M:2/4", "K:Cmaj", "|:", "C", "E", "G", "E", "|", "c", "2", "d", "2", ":|")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_shipped_recipe_is_for_the_file_the_default_model_records():
    data = read_metadata(default_model_path())["training"]["data"]
    recipes = {r.sha256: r for r in corpus.recorded_training_files()}
    assert data["sha256"] == RECORDED_SHA256 and RECORDED_SHA256 in recipes
    r = recipes[RECORDED_SHA256]
    assert (r.tunes, r.tokens, r.sources) == (4199, 693926, corpus.DEFAULT_SOURCES)
    assert r.tunes == data["tunes"] and 0 < len(r.recorded) < 100  # a patch, not a copy of the corpus


def test_corpus_as_trained_rebuilds_the_default_models_training_file(tmp_path, capsys):
    out = tmp_path / "openfolk.txt"
    rep = tmp_path / "r.json"
    rc, _, err = run(capsys, "corpus", "--as-trained", "-m", "default", "-o", str(out), "--report", str(rep), "-q")
    assert rc == 0, err
    assert sha256(out) == RECORDED_SHA256 == read_metadata(default_model_path())["training"]["data"]["sha256"]
    report = json.loads(rep.read_text())
    assert report["totals"]["kept"] == 4199 and report["totals"]["tokens"] == 693926
    assert report["recorded_tunes"]["not_found"] == [] and report["output"]["sha256"] == RECORDED_SHA256


@pytest.mark.slow
def test_evaluate_against_default_builds_the_training_corpus_once(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tunes = tmp_path / "t.txt"
    tunes.write_text("M:6/8\nK:Cmaj\n|: G c c G c c :|\n")
    ev = tmp_path / "ev.json"
    rc, _, err = run(capsys, "evaluate", str(tunes), "--against", "default", "--json", str(ev))
    assert rc == 0, err
    cached = tmp_path / "cache" / "folkrnn" / f"training-{RECORDED_SHA256[:16]}.txt"
    assert "building default's training corpus" in err and str(cached) in err
    assert sha256(cached) == RECORDED_SHA256
    assert json.loads(ev.read_text())["reference"]["tunes"] == 4199
    rc, _, err = run(capsys, "evaluate", str(tunes), "--against", "default")
    assert rc == 0 and "(cached)" in err and "building" not in err


# -- the mechanism, on a small recipe -------------------------------------------------------


@pytest.fixture
def small_recipe(tmp_path, monkeypatch):
    """An ABC source, a recipe recording older tokens for its tune X:2, and a checkpoint
    that records the sha256 of the file that older reader wrote."""
    src = tmp_path / "two.abc"
    src.write_text(ABC)
    now = corpus.build_corpus([str(src)], progress=False)
    assert now.tunes[1] != OLD_TWO
    then = tunes_to_text([now.tunes[0], OLD_TWO]).encode()
    recipe = corpus.AsTrained("as_trained_test.json", hashlib.sha256(then).hexdigest(), 2, len(now.tunes[0]) + len(OLD_TWO),
                              (str(src),), {"music21": "0"}, {(str(src), 8): OLD_TWO})
    monkeypatch.setattr(corpus, "recorded_training_files", lambda: [recipe])
    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(ckpt, FolkRNN(ModelConfig(hidden_size=4, num_layers=1)), Vocabulary.v2(),
                    {"training": {"data": {"sha256": recipe.sha256}}})
    return src, recipe, ckpt, then


def test_recorded_tokens_replace_the_readers(small_recipe, tmp_path, capsys):
    src, recipe, ckpt, then = small_recipe
    out = tmp_path / "o.txt"
    rc, _, err = run(capsys, "corpus", "--as-trained", "-m", str(ckpt), "-o", str(out), "-q")
    assert rc == 0, err
    assert out.read_bytes() == then


def test_a_file_that_does_not_match_is_one_line_exit_2(small_recipe, tmp_path, capsys):
    src, recipe, ckpt, then = small_recipe
    src.write_text(ABC.replace("d2 d2", "d2 e2"))  # the recorded tune reads differently again: its record wins
    out = tmp_path / "o.txt"
    rc, _, err = run(capsys, "corpus", "--as-trained", "-m", str(ckpt), "-o", str(out), "-q")
    assert rc == 0 and out.read_bytes() == then, err
    src.write_text(ABC.replace("GAB", "GAc"))  # a tune with no recorded tokens reads differently
    rc, _, err = run(capsys, "corpus", "--as-trained", "-m", str(ckpt), "-o", str(tmp_path / "p.txt"), "-q")
    assert rc == 2 and err.count("\n") == 1 and "not the recorded" in err and "music21" in err
    assert not (tmp_path / "p.txt").exists()


def test_models_without_a_record_and_misuse_are_one_line_errors(tmp_path, capsys):
    bare = tmp_path / "bare.safetensors"
    save_checkpoint(bare, FolkRNN(ModelConfig(hidden_size=4, num_layers=1)), Vocabulary.v2())
    for argv, msg in [
        (["-m", str(bare)], "records no sha256 of its training file"),
        (["-m", "default", "miscFolk"], "takes no SOURCE"),
    ]:
        rc, _, err = run(capsys, "corpus", "--as-trained", *argv, "-o", str(tmp_path / "o.txt"), "-q")
        assert rc == 2 and msg in err and err.count("\n") == 1, err
    rc, _, err = run(capsys, "corpus", "-m", "default", "-o", str(tmp_path / "o.txt"), "-q")
    assert rc == 2 and "--as-trained" in err
