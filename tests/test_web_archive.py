"""The studio's archive: schema migrations, search, transactions, two processes on one file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import pytest

from folkrnn.errors import FolkRNNError
from folkrnn.web.archive import MIGRATIONS, SCHEMA_VERSION, Archive, NewTune, Query


def tune(i: int = 0, meter: str = "M:6/8", mode: str = "K:Cdor", seed: int = 1, model: str = "m") -> NewTune:
    return NewTune(model, seed, i, {"meter": meter[2:], "temperature": 1.0}, [meter, mode, "|:", "G", "A"],
                   meter, mode, False, -4.25)


def test_add_get_search_update_delete(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    ids = [a.add(tune(0)), a.add(tune(1, "M:4/4", "K:Cmaj")), a.add(tune(2, model="other", seed=2**64 - 1))]
    r = a.get(ids[2])
    assert r.seed == 2**64 - 1 and r.tokens == ["M:6/8", "K:Cdor", "|:", "G", "A"] and r.settings["meter"] == "6/8"
    assert [x.id for x in a.search(Query())] == ids[::-1]  # newest first
    assert [x.id for x in a.search(Query(meter="M:4/4"))] == [ids[1]]
    assert [x.id for x in a.search(Query(model="other"))] == [ids[2]]
    assert a.count(Query(mode="K:Cdor")) == 2
    a.update(ids[0], title="The  Jig\n of 100%", starred=True, note="nice second part")
    assert a.get(ids[0]).title == "The Jig of 100%"
    assert [x.id for x in a.search(Query(starred=True))] == [ids[0]]
    assert [x.id for x in a.search(Query(text="100%"))] == [ids[0]]
    assert a.search(Query(text="1_0")) == []  # LIKE wildcards are literal
    assert [x.id for x in a.search(Query(text="second"))] == [ids[0]]
    assert a.count(Query(text="|: G")) == 3  # tokens are searchable
    assert [x.id for x in a.search(Query(ids=(ids[0], ids[2])))] == [ids[2], ids[0]]
    with pytest.raises(KeyError):
        a.update(999, starred=True)
    with pytest.raises(KeyError):
        a.get(999)
    with pytest.raises(FolkRNNError, match="at most 200 characters"):
        a.update(ids[0], title="x" * 201)
    assert a.delete([ids[0], ids[1], 999]) == 2
    assert a.count() == 1 and a.models() == ["other"]


def test_wal_and_busy_timeout(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    a.add(tune())
    c = a._conn()
    assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert c.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_a_failed_write_leaves_nothing(tmp_path):
    a = Archive(tmp_path / "a.sqlite")
    a.add(tune())

    def half(conn):
        conn.execute("UPDATE tunes SET title = 'changed'")
        raise RuntimeError("crash mid-transaction")

    with pytest.raises(RuntimeError):
        a._write(half)
    assert a.get(1).title == ""


def test_migrates_an_old_file_and_refuses_a_newer_one(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for stmt in MIGRATIONS[0]:
        conn.execute(stmt)
    conn.execute("INSERT INTO tunes (created, model, seed, tune_index, settings, tokens, meter, mode, truncated, logprob, "
                 "title, starred) VALUES ('2026-01-01T00:00:00+00:00', 'm', 3, 0, '{}', 'M:4/4 K:Cmaj C', 'M:4/4', "
                 "'K:Cmaj', 0, -1.5, 'old one', 1)")
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    a = Archive(path)
    assert a.schema_version() == SCHEMA_VERSION == 2
    r = a.get(1)
    assert (r.title, r.starred, r.note, r.tokens) == ("old one", True, "", ["M:4/4", "K:Cmaj", "C"])
    a.update(1, note="kept through the migration")
    a.close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(FolkRNNError, match="newer than this folkrnn"):
        Archive(path)


def test_not_an_archive(tmp_path):
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(FolkRNNError, match="not a usable archive"):
        Archive(bad)
    with pytest.raises(FolkRNNError, match="is a directory"):
        Archive(tmp_path)


WRITER = textwrap.dedent("""
    import sys
    from folkrnn.web.archive import Archive, NewTune
    a = Archive(sys.argv[1])
    who = sys.argv[2]
    for i in range(int(sys.argv[3])):
        tid = a.add(NewTune(who, i, i, {"who": who}, ["M:4/4", "K:Cmaj", "C"], "M:4/4", "K:Cmaj", False, -1.0))
        if i % 3 == 0:
            a.update(tid, starred=True, note=f"{who} {i}")
        if i % 10 == 9:
            a.delete([tid])
""")


def test_two_processes_on_one_file(tmp_path):
    """Two writers (as two servers would be) at once, from a fresh file: every write lands, the file checks out."""
    path = tmp_path / "shared.sqlite"
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), who, str(n)], stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    a = Archive(path)
    kept = n - n // 10
    for who in ("a", "b"):
        assert a.count(Query(model=who)) == kept
        assert a.count(Query(model=who, starred=True)) == len([i for i in range(n) if i % 3 == 0 and i % 10 != 9])
    assert a._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert a.schema_version() == SCHEMA_VERSION
