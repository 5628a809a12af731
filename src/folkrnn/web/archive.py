"""The studio's archive: every generated tune, kept in one SQLite file.

A row holds the settings that make the tune again (model, seed, index in its request,
the Compose form), its tokens, when it was made, and what the user adds: a title, a
star, a note. The schema version is SQLite's `user_version`; `MIGRATIONS[i]` takes a
file from version i to i + 1 and runs in the same `BEGIN IMMEDIATE` transaction as the
version bump, so two servers opening one old file migrate it once. The file is in WAL
mode with a busy timeout: several servers (processes) may read and write it at once;
every write is one transaction.

>>> a = Archive(":memory:")
>>> t = a.add(NewTune(model="m", seed=1, index=0, settings={"meter": "6/8"}, tokens=["M:6/8", "K:Cmaj", "G"],
...               meter="M:6/8", mode="K:Cmaj", truncated=False, logprob=-3.5))
>>> a.update(t, starred=True).starred, [r.id for r in a.search(Query(starred=True))] == [t]
(True, True)
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from folkrnn.errors import FolkRNNError

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
MAX_TITLE = 200
MAX_NOTE = 5000

# Each entry takes the schema from version i to i + 1 (never edit a released one; append).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 0 -> 1: the tunes
        """CREATE TABLE tunes (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            created TEXT NOT NULL,
            model TEXT NOT NULL,
            seed INTEGER NOT NULL,
            tune_index INTEGER NOT NULL,
            settings TEXT NOT NULL,
            tokens TEXT NOT NULL,
            meter TEXT,
            mode TEXT,
            truncated INTEGER NOT NULL,
            logprob REAL NOT NULL,
            title TEXT NOT NULL DEFAULT '',
            starred INTEGER NOT NULL DEFAULT 0
        )""",
    ),
    (  # 1 -> 2: notes, and indexes for the archive's filters
        "ALTER TABLE tunes ADD COLUMN note TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX tunes_meter_mode ON tunes (meter, mode)",
        "CREATE INDEX tunes_model ON tunes (model)",
        "CREATE INDEX tunes_starred ON tunes (starred) WHERE starred = 1",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True)
class NewTune:
    """What the generator hands the archive. `seed` can be up to 2**64 - 1 (kept as the
    signed 64-bit integer SQLite stores, read back unsigned)."""

    model: str
    seed: int
    index: int
    settings: dict
    tokens: Sequence[str]
    meter: str | None
    mode: str | None
    truncated: bool
    logprob: float


@dataclass(frozen=True)
class Record:
    id: int
    created: str
    model: str
    seed: int
    index: int
    settings: dict
    tokens: list[str]
    meter: str | None
    mode: str | None
    truncated: bool
    logprob: float
    title: str
    starred: bool
    note: str

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Query:
    """Archive filters (None = any). `text` matches title, note and tokens (substring)."""

    meter: str | None = None
    mode: str | None = None
    model: str | None = None
    starred: bool | None = None
    text: str | None = None
    limit: int = 50
    offset: int = 0
    ids: tuple[int, ...] | None = field(default=None)


def _to_signed(seed: int) -> int:
    return seed - 2**64 if seed >= 2**63 else seed


def _to_unsigned(seed: int) -> int:
    return seed + 2**64 if seed < 0 else seed


def default_db_path() -> Path:
    """`$XDG_DATA_HOME/folkrnn/studio.sqlite` (default ~/.local/share/folkrnn/studio.sqlite)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "folkrnn" / "studio.sqlite"


def _journal_wal(conn: sqlite3.Connection) -> str:
    """Switch to WAL and return the journal mode. Two processes opening a fresh file at
    once: the switch can answer "database is locked" at once, without SQLite's busy
    handler, so it is retried here for up to the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    wait = 0.005
    while True:
        try:
            return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(wait)
            wait = min(wait * 2, 0.1)


class Archive:
    """The tunes database at `path` (created and migrated on open). Thread-safe: each
    thread gets its own connection."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        self._memory: sqlite3.Connection | None = None
        if self.path != ":memory:":
            p = Path(self.path)
            if p.is_dir():
                raise FolkRNNError(f"{p}: is a directory, not an archive file")
            try:
                p.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FolkRNNError(f"{p.parent}: cannot create the archive's folder: {e.strerror}") from None
        self._migrate()

    # -- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self.path == ":memory:":  # one shared connection (tests, doctests)
            if self._memory is None:
                self._memory = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
                self._memory_lock = threading.Lock()
            return self._memory
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = _journal_wal(conn)
                if mode.lower() != "wal":
                    log.warning("%s: journal mode %s (WAL unavailable)", self.path, mode)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.DatabaseError as e:
                raise FolkRNNError(f"{self.path}: not a usable archive: {e}") from None
            self._local.conn = conn
        return conn

    def _write(self, fn):
        """Run fn(conn) in one IMMEDIATE transaction (the write lock is taken at the
        start, so a busy file waits here rather than failing half-way)."""
        conn = self._conn()
        lock = getattr(self, "_memory_lock", None)
        if lock:
            lock.acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out
        finally:
            if lock:
                lock.release()

    def _read(self, sql: str, args: Sequence = ()) -> list[tuple]:
        lock = getattr(self, "_memory_lock", None)
        if lock:
            with lock:
                return self._conn().execute(sql, args).fetchall()
        return self._conn().execute(sql, args).fetchall()

    def _migrate(self) -> None:
        def run(conn: sqlite3.Connection) -> int:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise FolkRNNError(f"{self.path}: archive schema version {version} is newer than this folkrnn "
                                   f"understands ({SCHEMA_VERSION}); upgrade folkrnn")
            for v in range(version, SCHEMA_VERSION):
                for stmt in MIGRATIONS[v]:
                    conn.execute(stmt)
                log.info("%s: archive schema %d -> %d", self.path, v, v + 1)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            return version

        try:
            self._write(run)
        except sqlite3.DatabaseError as e:
            raise FolkRNNError(f"{self.path}: not a usable archive: {e}") from None

    def schema_version(self) -> int:
        return self._read("PRAGMA user_version")[0][0]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- tunes ------------------------------------------------------------------------------
    _COLUMNS = "id, created, model, seed, tune_index, settings, tokens, meter, mode, truncated, logprob, title, starred, note"

    @staticmethod
    def _record(row: tuple) -> Record:
        (id_, created, model, seed, index, settings, tokens, meter, mode, truncated, logprob, title, starred, note) = row
        return Record(id_, created, model, _to_unsigned(seed), index, json.loads(settings), tokens.split(), meter, mode,
                      bool(truncated), logprob, title, bool(starred), note)

    def add(self, tune: NewTune) -> int:
        """Store a tune; its id."""
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        row = (now, tune.model, _to_signed(tune.seed), tune.index, json.dumps(tune.settings, sort_keys=True),
               " ".join(tune.tokens), tune.meter, tune.mode, int(tune.truncated), float(tune.logprob))
        return self._write(lambda c: c.execute(
            "INSERT INTO tunes (created, model, seed, tune_index, settings, tokens, meter, mode, truncated, logprob) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row).lastrowid)

    def get(self, tune_id: int) -> Record:
        rows = self._read(f"SELECT {self._COLUMNS} FROM tunes WHERE id = ?", (tune_id,))
        if not rows:
            raise KeyError(tune_id)
        return self._record(rows[0])

    def update(self, tune_id: int, *, title: str | None = None, starred: bool | None = None,
               note: str | None = None) -> Record:
        """Change the user's fields; KeyError if there is no such tune."""
        sets, args = [], []
        if title is not None:
            if len(title) > MAX_TITLE:
                raise FolkRNNError(f"a title has at most {MAX_TITLE} characters, got {len(title)}")
            sets.append("title = ?")
            args.append(" ".join(title.split()))
        if starred is not None:
            sets.append("starred = ?")
            args.append(int(starred))
        if note is not None:
            if len(note) > MAX_NOTE:
                raise FolkRNNError(f"a note has at most {MAX_NOTE} characters, got {len(note)}")
            sets.append("note = ?")
            args.append(note)

        def run(c: sqlite3.Connection) -> None:
            if sets:
                cur = c.execute(f"UPDATE tunes SET {', '.join(sets)} WHERE id = ?", (*args, tune_id))
                if cur.rowcount == 0:
                    raise KeyError(tune_id)
            elif c.execute("SELECT 1 FROM tunes WHERE id = ?", (tune_id,)).fetchone() is None:
                raise KeyError(tune_id)

        self._write(run)
        return self.get(tune_id)

    def delete(self, ids: Sequence[int]) -> int:
        """Delete tunes; how many there were."""
        ids = list(ids)
        if not ids:
            return 0
        marks = ",".join("?" * len(ids))
        return self._write(lambda c: c.execute(f"DELETE FROM tunes WHERE id IN ({marks})", ids).rowcount)

    def _where(self, q: Query) -> tuple[str, list]:
        conds, args = [], []
        for col, val in (("meter", q.meter), ("mode", q.mode), ("model", q.model)):
            if val:
                conds.append(f"{col} = ?")
                args.append(val)
        if q.starred is not None:
            conds.append("starred = ?")
            args.append(int(q.starred))
        if q.text:
            like = "%" + q.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            conds.append("(title LIKE ? ESCAPE '\\' OR note LIKE ? ESCAPE '\\' OR ' ' || tokens || ' ' LIKE ? ESCAPE '\\')")
            args += [like, like, like]
        if q.ids is not None:
            conds.append(f"id IN ({','.join('?' * len(q.ids)) or 'NULL'})")
            args += list(q.ids)
        return (" WHERE " + " AND ".join(conds)) if conds else "", args

    def search(self, q: Query) -> list[Record]:
        """Newest first."""
        where, args = self._where(q)
        rows = self._read(f"SELECT {self._COLUMNS} FROM tunes{where} ORDER BY id DESC LIMIT ? OFFSET ?",
                          (*args, q.limit, q.offset))
        return [self._record(r) for r in rows]

    def count(self, q: Query = Query()) -> int:
        where, args = self._where(q)
        return self._read(f"SELECT COUNT(*) FROM tunes{where}", args)[0][0]

    def models(self) -> list[str]:
        return [r[0] for r in self._read("SELECT DISTINCT model FROM tunes ORDER BY model")]
