"""`folkrnn tokenize` and `folkrnn abc` from the command line."""

from __future__ import annotations

import io
import sys

import pytest

from folkrnn.cli import main
from folkrnn.datafile import read_tunes

GOOD = "X:1\nT:Jig One\nM:6/8\nL:1/8\nK:D\n|:DFA dAF|GBd gdB:|\n\nX:2\nT:Odd One\nM:5/4\nK:D\nABCDE|\n"
BAD = "X:5\nT:Bad\nM:7/8\nK:G\nABCDEFG|\n"


def run(argv, capsys, stdin: str | None = None):
    if stdin is not None:
        sys.stdin = io.StringIO(stdin)
    try:
        code = main(argv)
    finally:
        sys.stdin = sys.__stdin__
    out, err = capsys.readouterr()
    return code, out, err


def test_tokenize_prints_data_v2_and_reports_rejections(tmp_path, capsys):
    f = tmp_path / "tunes.abc"
    f.write_text(GOOD)
    code, out, err = run(["tokenize", str(f)], capsys)
    assert code == 0
    assert out == "M:6/8\nK:Cmaj\n|: C E G c G E | F A c f c A :|\n"
    assert f'{f}: X:2 "Odd One": rejected (meter): meter 5/4 is not a v2 meter' in err
    assert "kept 1 of 2 tunes (50.0%); rejected: meter 1" in err


def test_tokenize_to_file_several_inputs(tmp_path, capsys):
    a, b, o = tmp_path / "a.abc", tmp_path / "b.abc", tmp_path / "out.txt"
    a.write_text(GOOD)
    b.write_text(GOOD.replace("K:D", "K:Ador"))
    code, out, err = run(["tokenize", str(a), str(b), "-o", str(o), "-q"], capsys)
    assert code == 0 and out == "" and err == ""
    tunes = read_tunes(o)
    assert [t[1] for t in tunes] == ["K:Cmaj", "K:Cdor"]


def test_tokenize_exit_2_when_nothing_usable(tmp_path, capsys):
    f = tmp_path / "bad.abc"
    f.write_text(BAD)
    code, out, err = run(["tokenize", str(f)], capsys)
    assert code == 2 and out == ""
    assert 'X:5 "Bad": rejected (meter)' in err
    assert err.strip().splitlines()[-1].startswith("folkrnn tokenize: error: no usable tune")


def test_tokenize_missing_file(tmp_path, capsys):
    code, _, err = run(["tokenize", str(tmp_path / "nope.abc")], capsys)
    assert code == 2 and "nope.abc" in err and "Traceback" not in err


def test_tokenize_stdin(capsys):
    code, out, _ = run(["tokenize", "-", "-q"], capsys, stdin=GOOD)
    assert code == 0 and out.startswith("M:6/8\nK:Cmaj\n")


def test_abc_command_round_trip_with_key(tmp_path, capsys):
    data = tmp_path / "t.txt"
    data.write_text("M:6/8\nK:Cdor\n|: G c c B c d :|\n\nM:4/4\nK:Cmaj\nC D E F | G 4 z 4 |\n")
    code, out, _ = run(["abc", str(data), "--key", "D"], capsys)
    assert code == 0
    assert out.count("X:") == 2 and "K:Ddor" in out and "K:Dmaj" in out and "T:folkrnn tune 2" in out
    abc = tmp_path / "t.abc"
    abc.write_text(out)
    code, back, _ = run(["tokenize", str(abc), "-q"], capsys)
    assert code == 0 and back == "M:6/8\nK:Cdor\n|: G c c B c d :|\n\nM:4/4\nK:Cmaj\nC D E F | G 4 z 4 |\n"


def test_abc_command_stdin_and_output_file(tmp_path, capsys):
    o = tmp_path / "o.abc"
    code, out, _ = run(["abc", "-", "-o", str(o)], capsys, stdin="M:2/4\nK:Cmix\nC _B, |\n")
    assert code == 0 and out == "" and "K:Cmix" in o.read_text()


@pytest.mark.parametrize("argv, text, message", [
    (["abc", "{f}", "--key", "Q"], "M:2/4\nK:Cmaj\nC|\n", "bad key 'Q'"),
    (["abc", "{f}"], "M:2/4\nK:Cmaj\nC |\n\nM:2/4\nK:Cmaj\n2 C|\n", "transcription 2"),
    (["abc", "{f}"], "M:2/4\nK:Cmaj\nC X|\n", "unknown token"),
])
def test_abc_command_bad_input(tmp_path, capsys, argv, text, message):
    f = tmp_path / "t.txt"
    f.write_text(text)
    code, _, err = run([a.replace("{f}", str(f)) for a in argv], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


CHANGED = ('X:3\nT:The Kesh\nM:6/8\nL:1/8\nK:G\n|:"G"G3 {A}GAB|"D"A-A2 ABc:|\n\n'
           "X:4\nT:Plain\nM:6/8\nL:1/8\nK:G\n|:G3 GAB|A3 ABc:|\n")


def test_tokenize_says_what_each_kept_tune_lost(tmp_path, capsys):
    f = tmp_path / "kesh.abc"
    f.write_text(CHANGED)
    code, out, err = run(["tokenize", str(f)], capsys)
    assert code == 0 and out.count("K:Cmaj") == 2
    lines = err.strip().splitlines()
    assert lines == [f'{f}: X:3 "The Kesh": changed: 1 tie made a repeated note, 1 grace note dropped, '
                     "2 chord symbols dropped",
                     "kept 2 of 2 tunes (100.0%), 1 of them changed"]
    code, _, err = run(["tokenize", str(f), "-q"], capsys)
    assert code == 0 and err == ""


def test_tokenize_strict_rejects_changed_tunes_one_line_each(tmp_path, capsys):
    f = tmp_path / "kesh.abc"
    f.write_text(CHANGED)
    code, out, err = run(["tokenize", "--strict", str(f)], capsys)
    assert code == 0 and out == "M:6/8\nK:Cmaj\n|: c 3 c d e | d 3 d e f :|\n"
    assert err.strip().splitlines() == [
        f'{f}: X:3 "The Kesh": rejected (changed): 1 tie made a repeated note, 1 grace note dropped, '
        "2 chord symbols dropped",
        "kept 1 of 2 tunes (50.0%); rejected: changed 1"]
    f.write_text(CHANGED.split("\n\n")[0] + "\n")
    code, out, err = run(["tokenize", "--strict", str(f)], capsys)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("folkrnn tokenize: error: no usable tune")


def test_tokenize_rejects_a_huge_line_at_once(tmp_path, capsys):
    import time

    f = tmp_path / "huge.abc"
    f.write_text("X:1\nT:Huge\nM:4/4\nL:1/8\nK:D\n" + "abcd efga|" * 500_000 + "\n")
    start = time.perf_counter()
    code, out, err = run(["tokenize", str(f)], capsys)
    assert time.perf_counter() - start < 3.0
    assert code == 2 and out == ""
    assert f'{f}: X:1 "Huge": rejected (too long): line 6 has 5,000,000 characters' in err
