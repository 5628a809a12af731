"""Corpora: every source kind, deduplication, the report, the CLI, the music21 target."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from folkrnn.cli import main
from folkrnn.corpus import DEFAULT_SOURCES, build_corpus, format_summary, resolve_source
from folkrnn.datafile import read_tunes
from folkrnn.errors import FolkRNNError
from folkrnn.vocab import Vocabulary

JIG = """X:1
T:The Test Jig
M:6/8
L:1/8
K:G
|:GAB c2d|edc BAG|FGA DEF|GBd g3:|
"""
REEL = """X:2
T:The Test Reel
M:4/4
L:1/8
K:Ador
|:A2 eA cAeA|G2 dG BGdG|A2 eA cAeA|gedB A4:|
"""
ODD_METER = """X:3
T:Five Four
M:5/4
L:1/8
K:D
DEFG A2 B2 c2|d10|
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def by_source(result, spec):
    (entry,) = [s for s in result.report["per_source"] if s["source"] == spec]
    return entry


def check_consistent(entry: dict) -> None:
    """Every tune read is accounted for exactly once, and the histograms add up."""
    rejected = sum(r["count"] for r in entry["rejected"].values())
    assert rejected == entry["rejected_total"]
    assert entry["read"] == entry["kept"] + entry["duplicates"]["count"] + rejected
    assert sum(entry["meter_kept"].values()) == entry["kept"] == sum(entry["mode_kept"].values())
    assert sum(entry["meter_written"].values()) == entry["read"] == sum(entry["mode_written"].values())
    assert sum(f["tunes"] for f in entry["files"]) == entry["read"]
    for reason, r in entry["rejected"].items():
        assert reason and reason != "unexplained"
        assert r["examples"] and all(e["detail"] for e in r["examples"])


# -- ABC files and folders ----------------------------------------------------------------


def test_abc_file_keeps_good_tunes_and_explains_rejections(tmp_path):
    f = write(tmp_path / "tunes.abc", JIG + "\n" + REEL + "\n" + ODD_METER)
    result = build_corpus([str(f)], progress=False)
    entry = by_source(result, str(f))
    assert entry["kind"] == "abc"
    assert (entry["read"], entry["kept"], entry["duplicates"]["count"]) == (3, 2, 0)
    assert [t[:2] for t in result.tunes] == [("M:6/8", "K:Cmaj"), ("M:4/4", "K:Cdor")]
    (reason,) = entry["rejected"]
    example = entry["rejected"][reason]["examples"][0]
    assert (example["file"], example["x"], example["title"]) == (str(f), "3", "Five Four")
    assert example["line"] > 1
    assert entry["meter_kept"] == {"M:4/4": 1, "M:6/8": 1}
    assert entry["mode_kept"] == {"K:Cdor": 1, "K:Cmaj": 1}
    assert entry["meter_written"] == {"4/4": 1, "5/4": 1, "6/8": 1}
    assert entry["tokens"] == sum(len(t) for t in result.tunes)
    check_consistent(entry)
    Vocabulary.v2().encode([tok for t in result.tunes for tok in t])


def test_folder_is_read_recursively_in_sorted_order(tmp_path):
    write(tmp_path / "b" / "reel.abc", REEL)
    write(tmp_path / "a.abc", JIG)
    write(tmp_path / "b" / "notes.txt", "not ABC")
    write(tmp_path / "c" / "deep" / "odd.ABC", ODD_METER)
    result = build_corpus([str(tmp_path)], progress=False)
    entry = by_source(result, str(tmp_path))
    assert entry["kind"] == "folder"
    names = [Path(f["path"]).relative_to(tmp_path).as_posix() for f in entry["files"]]
    assert names == ["a.abc", "b/reel.abc", "c/deep/odd.ABC"]
    for f in entry["files"]:
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
        assert f["tunes"] == 1
    assert [t[0] for t in result.tunes] == ["M:6/8", "M:4/4"]
    check_consistent(entry)


# -- thesession.org dumps ------------------------------------------------------------------

SESSION_ROWS = [
    # the abc field is the body only; real dumps use \r\n and sometimes escaped breaks
    {"tune_id": 1, "setting_id": 11, "name": "Jig One", "type": "jig", "meter": "6/8", "mode": "Gmajor",
     "abc": "|:GAB c2d|edc BAG|\r\nFGA DEF|GBd g3:|"},
    {"tune_id": "2", "setting_id": "12", "name": "Reel Two", "type": "reel", "meter": "4/4", "mode": "Edorian",
     "abc": "|:E2 BE dEBE|D2 AD FDAD|% part A\\r\\nE2 BE dEBE|fedB E4:|\\n\\n|:e2 ge fe de|\r\nB2 dB AB dB:|"},
    {"tune_id": "3", "setting_id": "13", "name": "Odd", "type": "barndance", "meter": "5/4", "mode": "Dmajor",
     "abc": "DEFG A2 B2 c2|d10|"},
]


def test_thesession_json_and_csv_give_the_same_corpus(tmp_path):
    j = write(tmp_path / "tunes.json", json.dumps(SESSION_ROWS))
    c = tmp_path / "tunes.csv"
    with open(c, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(SESSION_ROWS[0]))
        w.writeheader()
        w.writerows(SESSION_ROWS)
    rj = build_corpus([str(j)], progress=False)
    rc = build_corpus([str(c)], progress=False)
    assert rj.tunes == rc.tunes
    assert [t[:2] for t in rj.tunes] == [("M:6/8", "K:Cmaj"), ("M:4/4", "K:Cdor")]
    for result, spec, kind in ((rj, j, "thesession-json"), (rc, c, "thesession-csv")):
        entry = by_source(result, str(spec))
        assert entry["kind"] == kind
        assert (entry["read"], entry["kept"]) == (3, 2)
        (reason,) = entry["rejected"]
        example = entry["rejected"][reason]["examples"][0]
        assert (example["x"], example["title"], example["line"]) == ("13", "Odd", 3)
        assert entry["meter_written"] == {"4/4": 1, "5/4": 1, "6/8": 1}
        check_consistent(entry)
    # escaped and \r\n line breaks read as plain line breaks, a blank line does not end the tune
    # (a comment runs to the end of its line: an unread escape would swallow the music after it)
    def unescape(abc):
        return abc.replace("\\r\\n", "\n").replace("\\n\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n")

    plain = [{**row, "abc": unescape(row["abc"])} for row in SESSION_ROWS]
    assert "\\" not in plain[1]["abc"] and "\r" not in plain[0]["abc"]
    p = write(tmp_path / "plain.json", json.dumps(plain))
    assert build_corpus([str(p)], progress=False).tunes == rj.tunes
    assert rj.tunes[1].count(":|") == 2  # both parts of the reel were read


def test_thesession_dump_without_needed_fields_is_an_error(tmp_path):
    c = write(tmp_path / "tunes.csv", "tune_id,name,abc\n1,x,ABC|\n")
    with pytest.raises(FolkRNNError, match=r"tunes\.csv.*setting_id"):
        build_corpus([str(c)], progress=False)
    j = write(tmp_path / "tunes.json", json.dumps([{"setting_id": 1, "name": "x", "meter": "4/4", "mode": "Gmajor"}]))
    with pytest.raises(FolkRNNError, match=r"tunes\.json: row 1 has no field\(s\) abc"):
        build_corpus([str(j)], progress=False)
    bad = write(tmp_path / "broken.json", "[{")
    with pytest.raises(FolkRNNError, match=r"broken\.json: not valid JSON"):
        build_corpus([str(bad)], progress=False)


# -- data_v2 files ---------------------------------------------------------------------------

DATA_V2 = """M:6/8
K:Cmaj
|: G A B c 2 d :|

M:4/4
K:Cdor
H c d e :|


M:3/4
K:Cmin
C 2 E G 2 c | c 6 |

K:Cmaj
C D E |
"""


def test_data_v2_file_rejects_bad_tunes_one_by_one(tmp_path):
    f = write(tmp_path / "train.txt", DATA_V2)
    result = build_corpus([str(f)], progress=False)
    entry = by_source(result, str(f))
    assert entry["kind"] == "data_v2"
    assert (entry["read"], entry["kept"]) == (4, 2)
    assert result.tunes == [tuple("M:6/8 K:Cmaj |: G A B c 2 d :|".split()), tuple("M:3/4 K:Cmin C 2 E G 2 c | c 6 |".split())]
    unknown = entry["rejected"]["unknown token"]["examples"][0]
    assert (unknown["x"], unknown["line"]) == ("2", 5)
    assert "H" in unknown["detail"]
    header = entry["rejected"]["header"]["examples"][0]
    assert (header["x"], header["line"]) == ("4", 14)
    assert entry["meter_written"] == {"(none)": 1, "M:3/4": 1, "M:4/4": 1, "M:6/8": 1}
    check_consistent(entry)


def test_data_v2_is_detected_by_content_and_round_trips(tmp_path):
    tunes = [tuple("M:2/4 K:Cmix c B c d | e 2 c 2 :|".split()), tuple("M:9/8 K:Cmaj G A B c 3 |".split())]
    f = tmp_path / "corpus.data"
    f.write_text("M:2/4\nK:Cmix\nc B c d | e 2 c 2 :|\n\nM:9/8\nK:Cmaj\nG A B c 3 |\n", "utf-8")
    assert resolve_source(str(f)).kind == "data_v2"
    result = build_corpus([str(f)], progress=False)
    assert result.tunes == tunes
    out = tmp_path / "again.tokens"
    result.write(out)
    assert build_corpus([str(out)], progress=False).tunes == tunes


# -- deduplication, order, report ------------------------------------------------------------


def test_exact_duplicates_are_dropped_across_sources_first_kept(tmp_path):
    a = write(tmp_path / "a.abc", JIG + "\n" + REEL)
    # the same jig again under another number and title: identical tokens
    b = write(tmp_path / "b.abc", REEL.replace("X:2", "X:7").replace("The Test Reel", "Copy") + "\n" + JIG)
    result = build_corpus([str(a), str(b)], progress=False)
    assert len(result.tunes) == 2
    eb = by_source(result, str(b))
    assert (eb["read"], eb["kept"], eb["duplicates"]["count"]) == (2, 0, 2)
    dup = eb["duplicates"]["examples"][0]
    assert (dup["x"], dup["title"]) == ("7", "Copy")
    assert dup["first"]["source"] == str(a) and dup["first"]["x"] == "2"
    assert result.report["totals"]["duplicates"] == 2
    check_consistent(eb)
    # the same file twice in one list is deduplicated the same way
    twice = build_corpus([str(a), str(a)], progress=False)
    assert twice.tunes == build_corpus([str(a)], progress=False).tunes


def test_report_totals_provenance_and_determinism(tmp_path):
    import music21

    a = write(tmp_path / "a.abc", JIG + "\n" + ODD_METER)
    d = write(tmp_path / "d.tokens", DATA_V2)
    r1 = build_corpus([str(a), str(d)], progress=False)
    r2 = build_corpus([str(a), str(d)], progress=False)
    assert r1.text() == r2.text() and r1.report == r2.report
    rep = r1.report
    assert (rep["format"], rep["version"]) == ("folkrnn-corpus-report", 1)
    assert rep["sources"] == [str(a), str(d)]
    assert rep["provenance"]["music21"] == music21.__version__
    t = rep["totals"]
    assert t["read"] == 2 + 4 and t["kept"] == len(r1.tunes) == 3
    assert t["rejected_total"] == sum(t["rejected"].values()) == 3
    assert t["tokens"] == sum(len(x) for x in r1.tunes)
    json.dumps(rep)  # JSON-able
    table = format_summary(rep)
    assert str(a) in table and "total" in table


def test_unknown_sources_are_named(tmp_path):
    with pytest.raises(FolkRNNError, match="nosuch.abc: no such file"):
        build_corpus([str(tmp_path / "nosuch.abc")], progress=False)
    with pytest.raises(FolkRNNError, match="noSuchCollection"):
        build_corpus(["noSuchCollection"], progress=False)
    with pytest.raises(FolkRNNError, match="music21:bogus"):
        build_corpus(["music21:bogus"], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolkRNNError, match="folder has no .abc files"):
        build_corpus([str(tmp_path / "empty")], progress=False)
    junk = write(tmp_path / "x.bin", "nothing to see")
    with pytest.raises(FolkRNNError, match="cannot tell what kind"):
        build_corpus([str(junk)], progress=False)


def test_music21_collection_is_found_by_name():
    src = resolve_source("miscFolk")
    assert src.kind == "music21" and src.names == tuple(sorted(src.names))
    assert src.names and all(n.startswith("miscFolk/") and n.endswith(".abc") for n in src.names)
    assert resolve_source("music21:miscFolk").files == src.files


# -- the command line ------------------------------------------------------------------------


def test_cli_end_to_end(tmp_path, capsys):
    src = tmp_path / "in"
    write(src / "one.abc", JIG + "\n" + ODD_METER)
    write(src / "two.abc", REEL)
    out, rep = tmp_path / "corpus.txt", tmp_path / "report.json"
    assert main(["corpus", str(src), "-o", str(out), "--report", str(rep)]) == 0
    printed = capsys.readouterr().out
    assert "kept" in printed and "total" in printed
    tunes = read_tunes(out, vocab=Vocabulary.v2())
    assert len(tunes) == 2
    report = json.loads(rep.read_text("utf-8"))
    assert report["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert report["totals"]["kept"] == 2 and report["totals"]["read"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.txt", "in", "report.json"]  # no temp files


def test_cli_errors_are_one_line_and_keep_old_output(tmp_path, capsys):
    out = write(tmp_path / "corpus.txt", "old\n")
    assert main(["corpus", str(tmp_path / "missing"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("folkrnn corpus: error:") and "missing" in err and "\n" not in err
    odd = write(tmp_path / "odd.abc", ODD_METER)
    rep = tmp_path / "r.json"
    assert main(["corpus", str(odd), "-o", str(out), "--report", str(rep), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no tune kept" in err and "\n" not in err
    assert out.read_text() == "old\n"
    assert json.loads(rep.read_text())["totals"]["kept"] == 0
    assert main(["corpus", str(odd), "-o", str(tmp_path / "no" / "dir.txt")]) == 2


# -- the target: music21's folk collections ---------------------------------------------------


def test_default_music21_corpus_keeps_at_least_85_percent():
    result = build_corpus(progress=False)
    report = result.report
    assert report["sources"] == list(DEFAULT_SOURCES)
    for entry in report["per_source"]:
        assert entry["read"] > 0
        assert entry["kept_pct"] >= 85.0, (entry["source"], entry["kept_pct"], entry["rejected"])
        check_consistent(entry)
    assert report["totals"]["kept_pct"] >= 85.0
    Vocabulary.v2().encode([tok for t in result.tunes for tok in t])
