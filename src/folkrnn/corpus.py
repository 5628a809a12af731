"""Training corpora: sources of tunes -> one data_v2 token file plus a report.

A *source* is one of

- a music21 folk collection by name (``oneills1850``, ``ryansMammoth``, ``airdsAirs``,
  ``miscFolk``; ``music21:NAME`` forces this reading): its ``.abc`` files, located with
  music21's corpus API but read with our own ABC codec (music21's parser is far too slow);
- an ``.abc`` file, or a folder (all ``.abc`` files below it, recursively, sorted);
- a thesession.org data dump, ``tunes.json`` (a list of objects) or ``tunes.csv``, with the
  fields ``setting_id, name, meter, mode, abc`` (``tune_id`` and ``type`` are optional);
- a data_v2 token file (``.tokens``, or any file whose content looks like one), whose
  transcriptions are validated one by one against the v2 vocabulary.

Every tune read is either kept, dropped as an exact duplicate of a tune kept earlier
(identical token sequence, across all sources), or rejected with a reason. Output order
is deterministic (sources in the order given, tunes in file order) so that a training
set can be rebuilt bit for bit; the report records the sha256 of every input file.

>>> DEFAULT_SOURCES
('oneills1850', 'ryansMammoth', 'airdsAirs', 'miscFolk')
"""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from folkrnn import __version__
from folkrnn.datafile import tunes_to_text
from folkrnn.errors import FolkRNNError
from folkrnn.files import progress, sha256_bytes, sha256_file, write_bytes_atomic
from folkrnn.vocab import BOS, EOS, Vocabulary

if TYPE_CHECKING:
    from folkrnn.repair import RepairConfig

log = logging.getLogger(__name__)

DEFAULT_SOURCES: tuple[str, ...] = ("oneills1850", "ryansMammoth", "airdsAirs", "miscFolk")
REPORT_FORMAT = "folkrnn-corpus-report"
REPORT_VERSION = 1

#: Source kinds, as named in the report.
KINDS = ("music21", "abc", "folder", "thesession-json", "thesession-csv", "data_v2")

# Fields a thesession.org dump row must have (tune_id and type are informative only).
_SESSION_FIELDS = ("setting_id", "name", "meter", "mode", "abc")
_MUSIC21_PREFIX = "music21:"
_NONE = "(none)"  # histogram key of a meter/mode that was not written


@dataclass(frozen=True)
class Source:
    """A resolved source: what the user wrote, its kind, and the files it stands for.

    `names` are the file names shown in the report (relative to music21's corpus folder
    for a collection, as given or below the given folder otherwise), parallel to `files`.
    """

    spec: str
    kind: str
    files: tuple[Path, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class TuneRecord:
    """One tune read from a source, kept (`tokens`) or not (`reason`, `detail`).

    `tokens` are the data_v2 tokens ``M:.. K:.. body...`` without ``<s>``/``</s>``.
    """

    file: str
    line: int
    x: str | None
    title: str | None
    tokens: tuple[str, ...] | None
    reason: str | None
    detail: str | None
    meter: str | None  # as written in the source
    mode: str | None  # as written in the source
    bars_restored: int = 0  # bar lines put back at line breaks (`--repair`)
    rekeyed: tuple[str, str, int] | None = None  # (written key token, new, final's pitch class)


@dataclass(frozen=True)
class CorpusResult:
    """The kept transcriptions (token tuples, in output order) and the report (JSON-able)."""

    tunes: list[tuple[str, ...]]
    report: dict = field(repr=False)

    def text(self) -> str:
        """The corpus in data_v2 format."""
        return tunes_to_text(self.tunes)

    def write(self, path: str | Path) -> str:
        """Write the corpus atomically in data_v2 format; returns the sha256 of the file."""
        data = self.text().encode("utf-8")
        write_atomic(path, data)
        return sha256_bytes(data)

    def write_report(self, path: str | Path, **extra) -> None:
        """Write the report (plus `extra` top-level entries) atomically as JSON."""
        report = {**self.report, **extra}
        write_atomic(path, (json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))


# -- writing ----------------------------------------------------------------------------


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically (see folkrnn.files.atomic_write)."""
    path = Path(path)
    if path.is_dir():
        raise FolkRNNError(f"{path}: is a folder, expected a file name")
    if not path.parent.is_dir():
        raise FolkRNNError(f"{path}: folder {path.parent} does not exist")
    write_bytes_atomic(path, data)


# -- resolving sources --------------------------------------------------------------------


def _music21_files(name: str) -> tuple[list[Path], Path] | None:
    """The .abc files of a music21 corpus collection and the corpus folder, or None."""
    try:
        from music21 import common
        from music21 import corpus as m21corpus
    except ImportError:  # pragma: no cover - music21 is a dependency
        return None
    root = Path(common.getCorpusFilePath())
    files = sorted(Path(p) for p in m21corpus.getComposer(name, fileExtensions=("abc",)))
    # getComposer matches path components case-insensitively; keep only files of a
    # collection folder named exactly (up to case) like the request.
    files = [p for p in files if any(part.lower() == name.lower() for part in p.relative_to(root).parts[:-1])]
    return (files, root) if files else None


def _sniff(path: Path) -> str | None:
    """Tell an ABC file from a data_v2 token file by its first 64 KiB, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16).decode("utf-8", errors="replace")
    except OSError as e:
        raise FolkRNNError(f"{path}: cannot read: {e.strerror or e}") from None
    if re.search(r"^X:", head, re.MULTILINE):
        return "abc"
    words = head.split(None, 2)
    if len(words) >= 2 and words[0].startswith("M:") and words[1].startswith("K:"):
        return "data_v2"
    return None


def resolve_source(spec: str) -> Source:
    """What a SOURCE argument stands for; a FolkRNNError names a source that is neither
    a readable file, a folder with .abc files, nor a music21 collection with ABC files.

    >>> resolve_source("no/such/thing.abc")
    Traceback (most recent call last):
    ...
    folkrnn.errors.FolkRNNError: no/such/thing.abc: no such file, folder or music21 collection
    """
    if not spec.strip():
        raise FolkRNNError("an empty SOURCE was given")
    path = Path(spec)
    if not spec.startswith(_MUSIC21_PREFIX) and path.exists():
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() == ".abc" and p.is_file())
            if not files:
                raise FolkRNNError(f"{spec}: folder has no .abc files")
            return Source(spec, "folder", tuple(files), tuple(str(p) for p in files))
        if not path.is_file():
            raise FolkRNNError(f"{spec}: not a regular file or folder")
        if not os.access(path, os.R_OK):
            raise FolkRNNError(f"{spec}: cannot read: permission denied")
        suffix = path.suffix.lower()
        kind = {".abc": "abc", ".json": "thesession-json", ".csv": "thesession-csv", ".tokens": "data_v2"}.get(suffix)
        if kind is None:
            kind = _sniff(path)
        if kind is None and suffix == ".txt":
            kind = "data_v2"  # every transcription will then be rejected with its reason
        if kind is None:
            raise FolkRNNError(
                f"{spec}: cannot tell what kind of source this is "
                "(expected .abc, thesession .json/.csv, or a data_v2 .txt/.tokens file)"
            )
        return Source(spec, kind, (path,), (spec,))
    name = spec[len(_MUSIC21_PREFIX) :] if spec.startswith(_MUSIC21_PREFIX) else spec
    found = _music21_files(name) if name and "/" not in name and "\\" not in name else None
    if found is None:
        if spec.startswith(_MUSIC21_PREFIX):
            raise FolkRNNError(f"{spec}: no music21 collection {name!r} with ABC files")
        raise FolkRNNError(f"{spec}: no such file, folder or music21 collection")
    files, root = found
    return Source(spec, "music21", tuple(files), tuple(p.relative_to(root).as_posix() for p in files))


# -- reading sources ---------------------------------------------------------------------


def _codec():
    # Imported late: the codec is the heavy part, and `folkrnn corpus --help` needs none of it.
    from folkrnn.abc import read_abc, read_abc_file

    return read_abc, read_abc_file


def _record(r, file: str, line: int | None = None, bars_restored: int = 0, rekeyed=None) -> TuneRecord:
    """A codec TuneResult as a TuneRecord named after `file`."""
    return TuneRecord(
        file=file,
        line=r.line if line is None else line,
        x=r.x,
        title=r.title,
        tokens=tuple(r.tokens) if r.tokens is not None else None,
        reason=r.reason,
        detail=r.detail,
        meter=r.meter,
        mode=r.mode,
        bars_restored=bars_restored,
        rekeyed=rekeyed,
    )


def _read_text(path: Path) -> str:
    """An ABC file's text, UTF-8 or else Latin-1 (as `folkrnn.abc.read_abc_file` reads it)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise FolkRNNError(f"{path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _read_abc_files(source: Source, bar, repair=None) -> Iterator[TuneRecord]:
    _, read_abc_file = _codec()
    per_tune = len(source.files) == 1  # one big file: count tunes, not files
    for path, name in zip(source.files, source.names):
        if repair is not None:
            from folkrnn.repair import repair_abc_text

            results = [(t.result, t.bars_restored, t.rekeyed) for t in repair_abc_text(_read_text(path), str(path), repair)]
        else:
            results = [(r, 0, None) for r in read_abc_file(path)]
        for r, restored, rekeyed in results:
            yield _record(r, name, bars_restored=restored, rekeyed=rekeyed)
            if per_tune:
                bar.update(1)
        if not per_tune:
            bar.update(1)


def _session_text(value: object) -> str:
    # JSON dumps carry ids as strings or numbers, and a missing value as null
    return "" if value is None else str(value)


def _session_abc(abc: str) -> str:
    r"""The abc field of a thesession dump with its line breaks made real.

    Blank lines go too: in ABC a blank line ends the tune, and the field is one tune's
    body, so a part after a blank line would otherwise be lost.

    >>> _session_abc("|:GAB c2:|\r\n|:d2 e:|\\r\\nf|\r\n\r\n|:g")
    '|:GAB c2:|\n|:d2 e:|\nf|\n|:g'
    """
    abc = abc.replace("\\r\\n", "\n").replace("\\n", "\n").replace("\\r", "\n")
    abc = abc.replace("\r\n", "\n").replace("\r", "\n")
    return _BLANK_LINES.sub("\n", abc)


_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")


def _session_rows(path: Path, kind: str) -> list[dict]:
    try:
        if kind == "thesession-json":
            try:
                data = json.loads(path.read_text("utf-8-sig"))
            except ValueError as e:
                raise FolkRNNError(f"{path}: not valid JSON: {e}") from None
            if isinstance(data, dict) and isinstance(data.get("tunes"), list):
                data = data["tunes"]
            if not isinstance(data, list):
                raise FolkRNNError(f"{path}: a thesession JSON dump is a list of tune settings")
            rows = data
        else:
            with open(path, encoding="utf-8-sig", newline="") as f:
                # abc fields can be long; the default limit (128 KiB) would stop the read
                csv.field_size_limit(max(csv.field_size_limit(), 1 << 24))
                reader = csv.DictReader(f)
                missing = [k for k in _SESSION_FIELDS if k not in (reader.fieldnames or ())]
                if missing:
                    raise FolkRNNError(f"{path}: not a thesession CSV dump: no column(s) {', '.join(missing)}")
                rows = list(reader)
    except UnicodeDecodeError:
        raise FolkRNNError(f"{path}: not UTF-8 text") from None
    except csv.Error as e:
        raise FolkRNNError(f"{path}: bad CSV: {e}") from None
    except OSError as e:
        raise FolkRNNError(f"{path}: cannot read: {e.strerror or e}") from None
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise FolkRNNError(f"{path}: row {n} is not an object with fields {', '.join(_SESSION_FIELDS)}")
        missing = [k for k in _SESSION_FIELDS if k not in row]
        if missing:
            raise FolkRNNError(f"{path}: row {n} has no field(s) {', '.join(missing)}")
    return rows


def _read_session(source: Source, rows: list[dict], bar) -> Iterator[TuneRecord]:
    read_abc, _ = _codec()
    name = source.names[0]
    for n, row in enumerate(rows, start=1):
        setting = _session_text(row["setting_id"]).strip()
        title = " ".join(_session_text(row["name"]).split())
        meter = _session_text(row["meter"]).strip()
        mode = _session_text(row["mode"]).strip()
        text = f"X:{setting}\nT:{title}\nM:{meter}\nL:1/8\nK:{mode}\n{_session_abc(_session_text(row['abc']))}\n"
        results = list(read_abc(text, source=f"{name}: row {n}"))
        if not results:
            yield TuneRecord(name, n, setting or None, title or None, None, "malformed", "no tune in the abc field", meter or None, mode or None)
        for r in results:
            yield _record(r, name, line=n)
        bar.update(1)


_BLANK = re.compile(r"\n[ \t]*\n")  # the data_v2 separator between transcriptions


def _read_data_v2(source: Source, bar) -> Iterator[TuneRecord]:
    path, name = source.files[0], source.names[0]
    try:
        text = path.read_text("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError:
        raise FolkRNNError(f"{name}: not UTF-8 text") from None
    except OSError as e:
        raise FolkRNNError(f"{name}: cannot read: {e.strerror or e}") from None
    line, pos, n = 1, 0, 0
    for block in _BLANK.split(text):
        tokens = tuple(block.split())
        if tokens:
            n += 1
            # the line of the block's first token, counted incrementally (files are large)
            first = line + block[: len(block) - len(block.lstrip())].count("\n")
            meter = tokens[0] if tokens[0].startswith("M:") else None
            mode = tokens[1] if len(tokens) > 1 and tokens[1].startswith("K:") else None
            # Validation (the checks of folkrnn.datafile) happens for every source in
            # `_validate`; data_v2 has no X: or title, so a tune is named by its number.
            yield TuneRecord(name, first, str(n), None, tokens, None, None, meter, mode)
            bar.update(1)
        pos += len(block)
        sep = _BLANK.match(text, pos)
        line += block.count("\n") + (sep.group().count("\n") if sep else 0)
        pos = sep.end() if sep else pos


def _validate(tokens: Sequence[str], vocab: Vocabulary) -> tuple[str, str] | None:
    """Why `tokens` cannot go into a v2 training file, or None if they can.

    >>> v = Vocabulary.v2()
    >>> _validate(("M:6/8", "K:Cdor", "G", "|"), v) is None
    True
    >>> _validate(("K:Cdor", "G"), v)
    ('header', "a transcription starts with an M: token and then a K: token, got 'K:Cdor G'")
    >>> _validate(("M:6/8", "K:Cdor", "H", "|", "H"), v)
    ('unknown token', 'token(s) not in the v2 vocabulary: H')
    """
    if len(tokens) < 2 or not tokens[0].startswith("M:") or not tokens[1].startswith("K:"):
        return "header", f"a transcription starts with an M: token and then a K: token, got {' '.join(tokens[:2])!r}"
    if BOS in tokens or EOS in tokens:
        return "special token", "<s> and </s> do not belong in a data_v2 transcription"
    missing = vocab.unknown(tokens)
    if missing:
        return "unknown token", f"token(s) not in the v2 vocabulary: {' '.join(missing[:10])}"
    if len(tokens) == 2:
        return "empty", "no body after the M: and K: tokens"
    return None


# -- statistics ----------------------------------------------------------------------------


def _example(t: TuneRecord) -> dict:
    return {"file": t.file, "line": t.line, "x": t.x, "title": t.title}


class _Stats:
    """Counts of one source (mutable, internal)."""

    def __init__(self, source: Source, max_examples: int):
        self.source = source
        self.max_examples = max_examples
        self.read = self.kept = self.tokens = 0
        self.duplicates: list[dict] = []
        self.n_duplicates = 0
        self.rejected: dict[str, Counter] = {}
        self.reject_count: Counter = Counter()
        self.reject_examples: dict[str, list[dict]] = {}
        self.meter_kept: Counter = Counter()
        self.mode_kept: Counter = Counter()
        self.meter_written: Counter = Counter()
        self.mode_written: Counter = Counter()
        self.file_tunes: Counter = Counter()
        self.bars_restored = self.tunes_bars_restored = 0
        self.rekeyed: Counter = Counter()

    def seen(self, t: TuneRecord) -> None:
        self.read += 1
        self.file_tunes[t.file] += 1
        self.meter_written[t.meter or _NONE] += 1
        self.mode_written[t.mode or _NONE] += 1

    def keep(self, tokens: tuple[str, ...], t: TuneRecord | None = None) -> None:
        if t is not None:
            self.bars_restored += t.bars_restored
            self.tunes_bars_restored += t.bars_restored > 0
            if t.rekeyed is not None:
                self.rekeyed[rekey_label(t.rekeyed)] += 1
        self.kept += 1
        self.tokens += len(tokens)
        self.meter_kept[tokens[0]] += 1
        self.mode_kept[tokens[1]] += 1

    def reject(self, t: TuneRecord, reason: str, detail: str) -> None:
        self.reject_count[reason] += 1
        examples = self.reject_examples.setdefault(reason, [])
        if len(examples) < self.max_examples:
            examples.append({**_example(t), "detail": detail})

    def duplicate(self, t: TuneRecord, first: dict) -> None:
        self.n_duplicates += 1
        if len(self.duplicates) < self.max_examples:
            self.duplicates.append({**_example(t), "first": first})

    def to_dict(self, hashes: dict[Path, str], repair: bool = False) -> dict:
        s = self.source
        out = {
            "source": s.spec,
            "kind": s.kind,
            "read": self.read,
            "kept": self.kept,
            "kept_pct": _pct(self.kept, self.read),
            "duplicates": {"count": self.n_duplicates, "examples": self.duplicates},
            "rejected": {
                reason: {"count": n, "examples": self.reject_examples[reason]}
                for reason, n in _sorted_counts(self.reject_count)
            },
            "rejected_total": sum(self.reject_count.values()),
            "tokens": self.tokens,
            "meter_kept": dict(_sorted_counts(self.meter_kept)),
            "mode_kept": dict(_sorted_counts(self.mode_kept)),
            "meter_written": dict(_sorted_counts(self.meter_written)),
            "mode_written": dict(_sorted_counts(self.mode_written)),
            "files": [
                {"path": name, "sha256": hashes[path], "tunes": self.file_tunes.get(name, 0)}
                for path, name in zip(s.files, s.names)
            ],
            "licence": source_licence(s),
        }
        if repair:
            out["repair"] = {
                "tunes_with_bars_restored": self.tunes_bars_restored,
                "bars_restored": self.bars_restored,
                "rekeyed": sum(self.rekeyed.values()),
                "rekeyed_by_key": dict(_sorted_counts(self.rekeyed)),
            }
        return out


def rekey_label(rekeyed: tuple[str, str, int]) -> str:
    """How the report names a re-keying: the key tokens and the final note (in C).

    >>> rekey_label(("K:Cmaj", "K:Cmin", 9))
    'K:Cmaj -> K:Cmin, final A'
    """
    names = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]
    return f"{rekeyed[0]} -> {rekeyed[1]}, final {names[rekeyed[2] % 12]}"


def _pct(part: int, whole: int) -> float:
    return round(100.0 * part / whole, 2) if whole else 0.0


def _sorted_counts(c: Counter) -> list[tuple[str, int]]:
    """Most common first, ties by name, so that the report is deterministic."""
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))


def _provenance() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    try:
        m21 = version("music21")
    except PackageNotFoundError:  # pragma: no cover - music21 is a dependency
        m21 = None
    return {"folkrnn": __version__, "music21": m21, "python": platform.python_version()}


# -- licences ------------------------------------------------------------------------------

_LICENCE_NAMES = ("license.txt", "licence.txt", "LICENSE", "LICENCE", "COPYING", "README")


def _licence_file(folder: Path) -> Path | None:
    for name in _LICENCE_NAMES:
        p = folder / name
        if p.is_file():
            return p
    return None


def source_licence(source: Source) -> dict:
    """What is known of a source's licence, from the files that come with it.

    For a music21 collection: the licence file of the collection's folder, if music21
    ships one, and music21's corpus-wide ``corpus/license.txt``, both quoted in full with
    their paths (relative to music21's corpus folder) and sha256. For other sources
    folkrnn knows nothing: it says so, and quotes a licence file found next to the
    source (a ``license.txt``, ``LICENSE``, ``COPYING`` or ``README``), if any.
    """
    if source.kind == "music21":
        from music21 import common

        root = Path(common.getCorpusFilePath())
        folders = sorted({(root / n).parent for n in source.names})
        files = []
        for folder in folders:
            f = _licence_file(folder)
            if f is not None:
                files.append(f)
        own = bool(files)
        corpus_wide = _licence_file(root)
        if corpus_wide is not None:
            files.append(corpus_wide)
        note = ("music21 ships a licence file with this collection; the corpus-wide terms apply too"
                if own else "music21 ships no licence file with this collection; only the corpus-wide terms apply")
        return {"note": note, "files": [_quote(f, root) for f in files], "credits": _credits(source.files)}
    here = source.files[0].parent if source.kind != "folder" else Path(source.spec)
    f = _licence_file(here)
    out: dict = {"note": "folkrnn does not know this source's licence; check it before using or sharing the data",
                 "files": [_quote(f, None)] if f is not None else []}
    if source.kind in ("abc", "folder"):
        out["credits"] = _credits(source.files)
    if source.kind == "data_v2":
        # A corpus built by `folkrnn corpus` has its report next to it (NAME.report.json):
        # the licences of the sources it came from are there.
        rep = source.files[0].with_suffix(".report.json")
        if rep.is_file():
            try:
                data = json.loads(rep.read_text("utf-8"))
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict) and data.get("format") == REPORT_FORMAT:
                out["note"] = f"a corpus built by folkrnn corpus from {', '.join(map(str, data.get('sources', [])))}; see its report"
                out["built_from"] = {
                    "report": str(rep),
                    "sha256": sha256_file(rep),
                    "sources": data.get("sources"),
                    "licences": report_licences(data),
                }
    return out


def report_licences(report: dict, when: str = "when this report was made") -> dict:
    """The licences of the sources a corpus report names: as recorded there, else (for
    an older report, which has none or null) read now from music21 for the sources that
    are music21 collections, marked as read `when`."""
    out = {}
    for s in report.get("per_source", []):
        name = s.get("source")
        if s.get("licence"):
            out[name] = s["licence"]
        elif s.get("kind") == "music21" and isinstance(name, str):
            try:
                src = resolve_source(name if name.startswith(_MUSIC21_PREFIX) else _MUSIC21_PREFIX + name)
            except FolkRNNError:
                continue
            out[name] = {**source_licence(src), "recorded": f"read from the installed music21 {when}"}
    return out


_CREDIT = re.compile(r"^[ \t]*Z:[ \t]*(.*?)[ \t]*$", re.MULTILINE)


def _credits(files: Sequence[Path], top: int = 10) -> dict[str, int]:
    """The transcriber credits (`Z:` fields) of ABC files, most common first."""
    c: Counter = Counter()
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError as e:
            raise FolkRNNError(f"{path}: cannot read: {e.strerror or e}") from None
        c.update(v.strip('"') for v in _CREDIT.findall(text) if v.strip('"'))
    return dict(_sorted_counts(c)[:top])


def _quote(path: Path, root: Path | None) -> dict:
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as e:
        raise FolkRNNError(f"{path}: cannot read: {e.strerror or e}") from None
    name = path.relative_to(root).as_posix() if root is not None else str(path)
    return {"path": name, "sha256": sha256_file(path), "text": text}


def _repair_config_dict(config: RepairConfig) -> dict:
    from dataclasses import asdict

    return asdict(config)


# -- building ------------------------------------------------------------------------------


def _progress(total: int | None, desc: str, unit: str, enabled: bool | None):
    return progress(total=total, desc=desc, unit=unit, enabled=enabled, delay=0, mininterval=0.1)


def _iter_source(source: Source, progress: bool | None, repair=None) -> Iterator[TuneRecord]:
    if source.kind in ("music21", "abc", "folder"):
        one = len(source.files) == 1
        with _progress(None if one else len(source.files), source.spec, "tune" if one else "file", progress) as bar:
            yield from _read_abc_files(source, bar, repair)
    elif source.kind in ("thesession-json", "thesession-csv"):
        rows = _session_rows(source.files[0], source.kind)
        with _progress(len(rows), source.spec, "tune", progress) as bar:
            yield from _read_session(source, rows, bar)
    else:
        with _progress(None, source.spec, "tune", progress) as bar:
            yield from _read_data_v2(source, bar)


def build_corpus(
    sources: Sequence[str] | None = None,
    *,
    vocab: Vocabulary | None = None,
    max_examples: int = 5,
    progress: bool | None = None,
    repair: RepairConfig | None = None,
    recorded: Mapping[tuple[str, int], tuple[str, ...]] | None = None,
) -> CorpusResult:
    """Read `sources` (default `DEFAULT_SOURCES`) into one deduplicated v2 corpus.

    `repair`: read ABC sources (files, folders, music21 collections) with the repairs
    of `folkrnn.repair` (bar lines restored at line breaks, the mode read from the
    notes, and rejection of what stays wrong); None reads them as written.
    `recorded`: tokens to use instead of the reader's for the tunes it names by
    (file as in the report, line where the tune starts), whatever the reader made of
    them (see `build_as_trained`); the report counts them under `recorded_tunes`.

    Every source is resolved before any is read, so a typo fails fast. Kept tunes are
    validated against `vocab` (default: the v2 vocabulary) whatever their source.
    `progress`: tqdm bars on stderr (None: only when stderr is a terminal).
    Returns the kept tunes, as token tuples ``(M:.., K:.., body...)``, and the report.
    """
    specs = list(DEFAULT_SOURCES if sources is None else sources)
    if not specs:
        raise FolkRNNError("no sources given")
    if max_examples < 0:
        raise FolkRNNError(f"max_examples must be >= 0, got {max_examples}")
    vocab = Vocabulary.v2() if vocab is None else vocab
    resolved = [resolve_source(s) for s in specs]
    hashes = {p: sha256_file(p) for s in resolved for p in s.files}

    tunes: list[tuple[str, ...]] = []
    first_seen: dict[tuple[str, ...], dict] = {}
    all_stats: list[_Stats] = []
    used: set[tuple[str, int]] = set()
    for source in resolved:
        stats = _Stats(source, max_examples)
        all_stats.append(stats)
        for t in _iter_source(source, progress, repair):
            if recorded is not None and (t.file, t.line) in recorded:
                used.add((t.file, t.line))
                t = replace(t, tokens=tuple(recorded[t.file, t.line]), reason=None, detail=None)
            stats.seen(t)
            if t.tokens is None:
                reason = t.reason or "unexplained"
                detail = t.detail or "the ABC reader gave no detail"
                if not t.reason:
                    log.warning("%s:%s: tune rejected without a reason", t.file, t.line)
                stats.reject(t, reason, detail)
                continue
            problem = _validate(t.tokens, vocab)
            if problem is not None:
                stats.reject(t, *problem)
                continue
            if t.tokens in first_seen:
                stats.duplicate(t, first_seen[t.tokens])
                continue
            first_seen[t.tokens] = {"source": source.spec, **_example(t)}
            tunes.append(t.tokens)
            stats.keep(t.tokens, t)
        log.info("%s: read %d, kept %d", source.spec, stats.read, stats.kept)

    per_source = [s.to_dict(hashes, repair is not None) for s in all_stats]
    rejected: Counter = Counter()
    for s in all_stats:
        rejected.update(s.reject_count)
    read = sum(s.read for s in all_stats)
    report = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "sources": specs,
        "provenance": _provenance(),
        "vocabulary_size": len(vocab),
        "totals": {
            "read": read,
            "kept": len(tunes),
            "kept_pct": _pct(len(tunes), read),
            "duplicates": sum(s.n_duplicates for s in all_stats),
            "rejected": dict(_sorted_counts(rejected)),
            "rejected_total": sum(rejected.values()),
            "tokens": sum(s.tokens for s in all_stats),
        },
        "per_source": per_source,
    }
    if recorded is not None:
        report["recorded_tunes"] = {"given": len(recorded), "used": len(used),
                                    "not_found": [f"{f}:{line}" for f, line in sorted(set(recorded) - used)]}
    if repair is not None:
        rekeyed: Counter = Counter()
        for s in all_stats:
            rekeyed.update(s.rekeyed)
        report["repair"] = {
            "config": _repair_config_dict(repair),
            "tunes_with_bars_restored": sum(s.tunes_bars_restored for s in all_stats),
            "bars_restored": sum(s.bars_restored for s in all_stats),
            "rekeyed": sum(rekeyed.values()),
            "rekeyed_by_key": dict(_sorted_counts(rekeyed)),
        }
    return CorpusResult(tunes, report)


# -- the file a model learned from -------------------------------------------------------

AS_TRAINED_FORMAT = "folkrnn-as-trained"


@dataclass(frozen=True)
class AsTrained:
    """How to rebuild a recorded training file: its sources, and the recorded tokens of the
    tunes that today's reader reads differently from the reader that wrote the file."""

    name: str  # the JSON file in folkrnn/data it comes from
    sha256: str
    tunes: int
    tokens: int
    sources: tuple[str, ...]
    recorded_with: dict
    recorded: dict[tuple[str, int], tuple[str, ...]]


def recorded_training_files() -> list[AsTrained]:
    """The recipes shipped in `folkrnn/data/as_trained_*.json`."""
    from importlib import resources

    out = []
    for ref in sorted(resources.files("folkrnn.data").iterdir(), key=lambda r: r.name):
        if not (ref.name.startswith("as_trained_") and ref.name.endswith(".json")):
            continue
        doc = json.loads(ref.read_text("utf-8"))
        if doc.get("format") != AS_TRAINED_FORMAT or doc.get("version") != 1:
            raise FolkRNNError(f"folkrnn/data/{ref.name}: not a version 1 {AS_TRAINED_FORMAT} file")
        recorded = {(t["file"], int(t["line"])): tuple(t["tokens"].split()) for t in doc["tunes_patched"]}
        out.append(AsTrained(ref.name, doc["sha256"], doc["tunes"], doc["tokens"], tuple(doc["sources"]),
                             doc.get("recorded_with", {}), recorded))
    return out


def build_as_trained(sha256: str, *, max_examples: int = 5, progress: bool | None = None) -> CorpusResult:
    """Rebuild, bit for bit, the training file whose sha256 a model records.

    Reads the recorded sources with today's reader, uses the recorded tokens of the tunes
    it reads differently, and checks the file's sha256: a FolkRNNError (one line) if
    nothing is recorded for `sha256` or the result differs (another music21 version, or
    a reader changed since the recipe was recorded). The report gains `as_trained`.
    """
    recipes = {r.sha256: r for r in recorded_training_files()}
    recipe = recipes.get(sha256)
    if recipe is None:
        known = ", ".join(f"{k[:16]}..." for k in recipes) or "none"
        raise FolkRNNError(f"no recorded recipe rebuilds the training file with sha256 {sha256[:16]}... "
                           f"(recorded: {known})")
    result = build_corpus(list(recipe.sources), max_examples=max_examples, progress=progress, recorded=recipe.recorded)
    digest = sha256_bytes(result.text().encode("utf-8"))
    if digest != sha256:
        then = recipe.recorded_with.get("music21", "?")
        missing = result.report["recorded_tunes"]["not_found"]
        why = f"{len(missing)} recorded tune(s) not found, e.g. {missing[0]}; " if missing else ""
        raise FolkRNNError(
            f"the rebuilt training file has sha256 {digest[:16]}..., not the recorded {sha256[:16]}... "
            f"({len(result.tunes)} tunes, {result.report['totals']['tokens']} tokens; recorded {recipe.tunes}, "
            f"{recipe.tokens}); {why}music21 {result.report['provenance']['music21']} here, {then} when recorded; nothing written")
    result.report["as_trained"] = {"recipe": recipe.name, "sha256": sha256, "recorded_tunes": len(recipe.recorded),
                                   "recorded_with": recipe.recorded_with}
    return result


def format_summary(report: dict, top: int = 3) -> str:
    """A small table of a corpus report: per source read, kept, kept %, top rejections.

    >>> rep = {"per_source": [{"source": "a.abc", "read": 4, "kept": 3, "kept_pct": 75.0,
    ...   "duplicates": {"count": 0}, "rejected": {"meter": {"count": 1}}}],
    ...   "totals": {"read": 4, "kept": 3, "kept_pct": 75.0, "duplicates": 0, "tokens": 99,
    ...   "rejected": {"meter": 1}}}
    >>> print(format_summary(rep))
    source  read  kept  kept %  dup  top rejections
    a.abc      4     3    75.0    0  meter 1
    total      4     3    75.0    0  meter 1
    tokens kept: 99
    """
    rows = [("source", "read", "kept", "kept %", "dup", "top rejections")]

    def reasons(items: Iterable[tuple[str, int]]) -> str:
        items = list(items)
        return ", ".join(f"{k} {n}" for k, n in items[:top]) + (", ..." if len(items) > top else "")

    for s in report["per_source"]:
        rej = [(k, v["count"]) for k, v in s["rejected"].items()]
        rows.append((s["source"], str(s["read"]), str(s["kept"]), f"{s['kept_pct']:.1f}", str(s["duplicates"]["count"]), reasons(rej)))
    t = report["totals"]
    rows.append(("total", str(t["read"]), str(t["kept"]), f"{t['kept_pct']:.1f}", str(t["duplicates"]), reasons(t["rejected"].items())))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in range(1, 5)] + [r[5]]
        lines.append("  ".join(cells).rstrip())
    lines.append(f"tokens kept: {t['tokens']}")
    return "\n".join(lines)
