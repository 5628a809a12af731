"""What the README tells a reader to run or cite holds: command names agree with `--help`,
the file "Getting better tunes" uses can be made with the command given there, and the
licence words quoted under "Cite / provenance" are the ones the shipped model records."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from folkrnn.checkpoint import read_metadata
from folkrnn.cli import build_parser
from folkrnn.load import default_model_path

README = (Path(__file__).resolve().parent.parent / "README.md").read_text("utf-8")


def section(title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert m, f"README has no '## {title}' section"
    return m.group(1)


def flat(text: str) -> str:
    return " ".join(text.split())


def subcommand(name: str):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[name]


def test_the_abc_command_names_its_argument_as_help_does():
    metavar = next(a.metavar for a in subcommand("abc")._actions if a.dest == "file")
    row = next(line for line in README.splitlines() if line.startswith("| `folkrnn abc "))
    assert row.startswith(f"| `folkrnn abc {metavar} ") and "data_v2 token file" in row


def test_getting_better_tunes_says_how_to_make_the_corpus_it_uses():
    text = flat(section("Getting better tunes"))
    used = set(re.findall(r"--against (\S+?)`", text))
    assert used, "the section should say what it evaluates against"
    for path in used - {"default"}:
        m = re.search(rf"`(?:mkdir -p (\S+) && )?(folkrnn corpus [^`]*-o {re.escape(path)})`", text)
        assert m, f"{path} is used but the command that makes it is not given"
        args = build_parser().parse_args(shlex.split(m.group(2))[1:])
        assert args.as_trained and args.model == "default" and args.output == path
        # a fresh clone has no runs/ folder, and `folkrnn corpus` does not make one
        assert Path(path).parent == Path(".") or m.group(1) == str(Path(path).parent), "the folder is not made"


def test_cite_section_names_the_papers_and_the_blog_series():
    text = flat(section("Cite / provenance"))
    for needle in ("arXiv:1604.08723", "Music transcription modelling and composition using deep learning",
                   "Taking the models back to music practice", "Journal of Creative Music Systems 2(1)",
                   "Making sense of the folk-rnn v2 model", "highnoongmt.wordpress.com"):
        assert needle in text, needle


def test_cite_section_quotes_only_recorded_licence_text():
    meta = read_metadata(default_model_path())
    recorded = []
    for rep in meta["corpus"]["reports"]:
        for lic in rep["licences"].values():
            recorded.append(lic["note"])
            recorded += [f["text"] for f in lic["files"]]
    recorded = flat(" ".join(recorded))
    licences = section("Cite / provenance").split("As recorded there:", 1)[1]
    quotes = re.findall(r'"([^"]+)"', flat(licences))
    assert len(quotes) >= 4
    for q in quotes:
        assert q in recorded, f"not in the licences the checkpoint records: {q!r}"
