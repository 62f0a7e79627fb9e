"""The index of every sample PNG in a workspace: a small SQLite database, rescanned by mtime.

::

    workspace/.diffstudio/gallery.sqlite     one row per PNG: path, mtime_ns, size, what its
                                             ``diffstudio`` text chunk says (run, network hash,
                                             sampler and parameters, steps, network
                                             evaluations, seed, class, guidance, backend) and
                                             whether the user starred it

A scan walks the workspace (hidden folders, ``checkpoints/`` and ``previews/`` skipped) and
reads only the PNGs whose (mtime, size) changed since the last scan; a file moved with its
mtime keeps its star. Grids (``grid.png``, previews) are not samples and are left out. A PNG
without diffstudio metadata is indexed with ``has_metadata`` false ("unknown parameters"),
never refused. Reading a PNG reads its header and text chunks only (no pixels are decoded).

:class:`SampleFilter` is the one filter over records, used by the Gallery page, the index and
``diffstudio export --filter KEY=VALUE``. Torch-free and Qt-free; each call opens its own
connection, so a scan in a worker thread and queries on the window's thread may overlap (WAL).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from PIL import Image

from diffstudio.engine.image_files import file_problem, short_error
from diffstudio.engine.pngmeta import METADATA_KEY
from diffstudio.errors import ConfigError

__all__ = [
    "DATE_PERIODS",
    "GROUP_KEYS",
    "INDEX_NAME",
    "SORT_KEYS",
    "STATE_DIR",
    "SampleFilter",
    "SampleIndex",
    "SampleRecord",
    "ScanReport",
    "group_records",
    "iter_sample_pngs",
    "period_bounds",
    "read_record",
    "record_from_metadata",
    "sort_records",
]

STATE_DIR = ".diffstudio"  # under the workspace: the index and the thumbnail cache
INDEX_NAME = "gallery.sqlite"
_SCHEMA_VERSION = "1"
_SKIPPED_DIRS = {"checkpoints", "previews", "evaluations", "__pycache__"}
_NOT_SAMPLES = {"grid", "preview"}  # the "kind" of grids written beside samples


@dataclass
class SampleRecord:
    """One sample PNG as the index knows it. ``params`` the sampler's parameters; ``run`` the
    run folder's name (or the pretrained model's id), ``run_path`` where it is; ``date`` the
    file's mtime (seconds since the epoch); ``meta`` the whole ``diffstudio`` JSON ({} when the
    PNG has none: "unknown parameters")."""

    path: str
    mtime_ns: int
    size: int
    folder: str = ""
    run: str = ""
    run_path: str = ""
    checkpoint: str = ""
    network_sha256: str = ""
    sampler: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    steps: int | None = None
    network_evaluations: int | None = None
    seed: int | None = None
    class_label: int | None = None
    guidance: float | None = None
    backend: str = ""
    width: int = 0
    height: int = 0
    has_metadata: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
    starred: bool = False

    @property
    def date(self) -> float:
        return self.mtime_ns / 1e9

    @property
    def name(self) -> str:
        return Path(self.path).name

    def caption(self) -> str:
        """"ddim · 50 steps · seed 7", or "unknown parameters"."""
        if not self.has_metadata:
            return "unknown parameters"
        parts = [self.sampler or "?"]
        if self.steps is not None:
            parts.append(f"{self.steps} steps")
        if self.seed is not None:
            parts.append(f"seed {self.seed}")
        if self.class_label is not None:
            parts.append(f"class {self.class_label}")
        if self.guidance is not None:
            parts.append(f"guidance {self.guidance:g}")
        return " · ".join(parts)


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def read_record(path: str | os.PathLike[str], stat: os.stat_result | None = None
                ) -> SampleRecord | None:
    """The record of one PNG from its header and text chunks; None for a grid or preview, or
    a file that is not a readable PNG. Metadata that is missing or malformed gives a record
    with ``has_metadata`` False, not an error."""
    location = Path(path)
    stat = stat or location.stat()
    try:
        with Image.open(location) as picture:
            if picture.format != "PNG":
                return None
            width, height = picture.size
            raw = picture.info.get(METADATA_KEY)  # text chunks before IDAT: no decoding
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    meta: dict[str, Any] = {}
    if isinstance(raw, str) and raw:
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            parsed = None
        meta = parsed if isinstance(parsed, dict) else {}
    if str(meta.get("kind", "")) in _NOT_SAMPLES:
        return None
    return record_from_metadata(location, meta, mtime_ns=stat.st_mtime_ns, size=stat.st_size,
                                width=width, height=height)


def record_from_metadata(path: str | os.PathLike[str], meta: dict[str, Any], *,
                         mtime_ns: int = 0, size: int = 0, width: int = 0, height: int = 0,
                         folder: str | None = None) -> SampleRecord:
    """The record a PNG at ``path`` carrying ``meta`` (its ``diffstudio`` JSON) has, without
    reading the file: what :func:`read_record` builds, also for samples not yet written (the
    Sample page's result, planned for an export). ``folder`` defaults to the parent's name."""
    location = Path(path)
    run_path = str(meta.get("run") or meta.get("pretrained") or "")
    params = meta.get("sampler_params")
    params = dict(params) if isinstance(params, dict) else {}
    steps = _int(meta.get("steps"))
    if steps is None:
        steps = _int(params.get("steps"))
    return SampleRecord(
        path=str(location), mtime_ns=mtime_ns, size=size,
        folder=location.parent.name if folder is None else folder,
        run=Path(run_path).name if meta.get("run") else run_path,
        run_path=run_path, checkpoint=str(meta.get("checkpoint") or ""),
        network_sha256=str(meta.get("network_sha256") or ""),
        sampler=str(meta.get("sampler") or ""), params=params, steps=steps,
        network_evaluations=_int(meta.get("network_evaluations")), seed=_int(meta.get("seed")),
        class_label=_int(meta.get("class_label")), guidance=_float(meta.get("guidance")),
        backend=str(meta.get("backend") or ""), width=width, height=height,
        has_metadata=bool(meta) and bool(meta.get("sampler")), meta=dict(meta),
    )


def iter_sample_pngs(root: str | os.PathLike[str]) -> Iterator[tuple[Path, os.stat_result]]:
    """Every regular ``*.png`` under ``root`` with its stat, skipping hidden folders,
    checkpoints, previews and evaluations (and symlinked folders: no loops)."""
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name not in _SKIPPED_DIRS:
                        stack.append(Path(entry.path))
                elif entry.name.lower().endswith(".png") and entry.name != "grid.png":
                    if file_problem(entry.path):  # a FIFO, a device, an empty file
                        continue
                    yield Path(entry.path), entry.stat()
            except OSError:
                continue


@dataclass
class ScanReport:
    """What a scan changed: paths added, re-read (changed), removed; moved files (a removal
    and an addition with the same size, mtime and metadata: the star goes along)."""

    added: int = 0
    updated: int = 0
    removed: int = 0
    moved: int = 0
    unchanged: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.added + self.updated + self.unchanged


_COLUMNS = [f.name for f in fields(SampleRecord)]
_JSON_COLUMNS = {"params", "meta"}
_BOOL_COLUMNS = {"has_metadata", "starred"}


def _row(record: SampleRecord) -> tuple[Any, ...]:
    values = []
    for name in _COLUMNS:
        value = getattr(record, name)
        if name in _JSON_COLUMNS:
            value = json.dumps(value, sort_keys=True, default=str)
        elif name in _BOOL_COLUMNS:
            value = int(bool(value))
        values.append(value)
    return tuple(values)


def _record(row: Sequence[Any]) -> SampleRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON_COLUMNS:
        try:
            values[name] = json.loads(values[name] or "{}")
        except json.JSONDecodeError:
            values[name] = {}
    for name in _BOOL_COLUMNS:
        values[name] = bool(values[name])
    return SampleRecord(**values)


class SampleIndex:
    """The workspace's sample index (``<workspace>/.diffstudio/gallery.sqlite`` unless
    ``database`` names another file)."""

    def __init__(self, workspace: str | os.PathLike[str],
                 database: str | os.PathLike[str] | None = None) -> None:
        self.workspace = Path(workspace).expanduser().resolve()
        self.database = Path(database) if database else self.workspace / STATE_DIR / INDEX_NAME

    def _connect(self) -> sqlite3.Connection:
        try:
            return self._open()
        except sqlite3.DatabaseError:
            # Not a database (damaged, or another program's file): the index is a cache of
            # what the PNGs say, so it is set aside and rebuilt; only the stars are lost.
            aside = self.database.with_name(f"{self.database.name}.damaged-{time.time_ns()}")
            os.replace(self.database, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.database}{suffix}")
            return self._open()

    def _open(self) -> sqlite3.Connection:
        self.database.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.database, timeout=30)
        try:
            return self._prepare(connection)
        except BaseException:
            connection.close()
            raise

    def _prepare(self, connection: sqlite3.Connection) -> sqlite3.Connection:
        connection.execute("PRAGMA journal_mode=WAL")
        columns = ", ".join(
            f"{name} {'TEXT PRIMARY KEY' if name == 'path' else ''}".strip() for name in _COLUMNS)
        connection.execute(f"CREATE TABLE IF NOT EXISTS samples ({columns})")
        connection.execute("CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT)")
        version = connection.execute("SELECT value FROM info WHERE key='schema'").fetchone()
        if version is None or version[0] != _SCHEMA_VERSION:
            if version is not None:  # an older layout: rebuild (stars are kept by path)
                stars = connection.execute("SELECT path FROM samples WHERE starred").fetchall()
                connection.execute("DROP TABLE samples")
                connection.execute(f"CREATE TABLE samples ({columns})")
                connection.executemany(
                    "INSERT INTO samples (path, mtime_ns, size, starred) VALUES (?, -1, -1, 1)",
                    stars)
            connection.execute("INSERT OR REPLACE INTO info VALUES ('schema', ?)",
                               (_SCHEMA_VERSION,))
            connection.commit()
        connection.execute("CREATE INDEX IF NOT EXISTS samples_date ON samples (mtime_ns)")
        return connection

    def scan(self, roots: Iterable[str | os.PathLike[str]] | None = None, *,
             progress: Callable[[int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> ScanReport:
        """Bring the index up to date with the PNGs under ``roots`` (default: the workspace).

        Only files whose (mtime, size) changed are read; rows of files gone from under the
        roots are removed. ``progress(files_seen)`` is called every 200 files.
        """
        started = time.perf_counter()
        whole = not roots  # the workspace: what is not under it is another copy's row
        roots = [Path(r).expanduser().resolve() for r in (roots or [self.workspace])]
        report = ScanReport()
        connection = self._connect()
        try:
            known = {path: (mtime, size, starred, meta) for path, mtime, size, starred, meta in
                     connection.execute("SELECT path, mtime_ns, size, starred, meta FROM samples")}
            seen: set[str] = set()
            fresh: list[SampleRecord] = []
            for number, (path, stat) in enumerate(
                    (item for root in roots for item in iter_sample_pngs(root)), 1):
                if should_stop is not None and number % 200 == 0 and should_stop():
                    break
                if progress is not None and number % 200 == 0:
                    progress(number)
                key = str(path)
                seen.add(key)
                previous = known.get(key)
                if previous and previous[0] == stat.st_mtime_ns and previous[1] == stat.st_size:
                    report.unchanged += 1
                    continue
                record = read_record(path, stat)
                if record is None:
                    if previous:
                        seen.discard(key)  # became a non-sample: drop its row below
                    continue
                if previous:
                    record.starred = bool(previous[2])
                    report.updated += 1
                else:
                    report.added += 1
                fresh.append(record)
            else:
                # A workspace copied or moved with its index keeps the old place's rows: a
                # whole scan drops them (the Gallery showed every sample twice).
                gone = [path for path in known
                        if path not in seen and (whole or any(_under(path, root)
                                                              for root in roots))]
                # A moved file: same size, mtime and metadata as one that vanished.
                vanished = {(known[p][0], known[p][1], known[p][3]): p for p in gone
                            if known[p][2]}
                for record in fresh:
                    if record.path in known:
                        continue
                    twin = vanished.pop((record.mtime_ns, record.size,
                                         json.dumps(record.meta, sort_keys=True, default=str)),
                                        None)
                    if twin is not None:
                        record.starred = True
                        report.moved += 1
                connection.executemany("DELETE FROM samples WHERE path = ?",
                                       [(p,) for p in gone])
                report.removed = len(gone)
            placeholders = ", ".join("?" for _ in _COLUMNS)
            connection.executemany(
                f"INSERT OR REPLACE INTO samples ({', '.join(_COLUMNS)}) VALUES ({placeholders})",
                [_row(record) for record in fresh])
            connection.commit()
        finally:
            connection.close()
        report.seconds = time.perf_counter() - started
        return report

    def records(self, where: SampleFilter | None = None, *, sort: str = "date",
                descending: bool = True) -> list[SampleRecord]:
        """Every indexed sample that ``where`` keeps, sorted by ``sort`` (see SORT_KEYS).

        The date bounds and the exact fields of ``where`` are the query's WHERE clause (the
        date through an index on it), so a date range reads only its own rows."""
        clause, values = _sql_where(where)
        connection = self._connect()
        try:
            rows = connection.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM samples WHERE {clause}", values).fetchall()
        finally:
            connection.close()
        records = [_record(row) for row in rows]
        if where is not None:
            records = [record for record in records if where.matches(record)]
        return sort_records(records, sort, descending=descending)

    def file_states(self) -> list[tuple[str, int, int]]:
        """(path, mtime_ns, size) of every indexed sample: what its thumbnail is keyed by."""
        connection = self._connect()
        try:
            return [(str(path), int(mtime), int(size)) for path, mtime, size in
                    connection.execute("SELECT path, mtime_ns, size FROM samples "
                                       "WHERE mtime_ns >= 0")]
        finally:
            connection.close()

    def count(self) -> int:
        """How many samples the index holds."""
        connection = self._connect()
        try:
            return int(connection.execute(
                "SELECT COUNT(*) FROM samples WHERE mtime_ns >= 0").fetchone()[0])
        finally:
            connection.close()

    def get(self, path: str | os.PathLike[str]) -> SampleRecord | None:
        connection = self._connect()
        try:
            row = connection.execute(f"SELECT {', '.join(_COLUMNS)} FROM samples WHERE path=?",
                                     (str(path),)).fetchone()
        finally:
            connection.close()
        return _record(row) if row else None

    def set_starred(self, paths: Iterable[str | os.PathLike[str]], starred: bool) -> None:
        self._execute_many("UPDATE samples SET starred = ? WHERE path = ?",
                           [(int(starred), str(p)) for p in paths])

    def forget(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        """Drop rows (after their files went to the trash)."""
        self._execute_many("DELETE FROM samples WHERE path = ?", [(str(p),) for p in paths])

    def _execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        connection = self._connect()
        try:
            connection.executemany(sql, rows)
            connection.commit()
        finally:
            connection.close()

    def starred_paths(self) -> set[str]:
        connection = self._connect()
        try:
            return {row[0] for row in connection.execute(
                "SELECT path FROM samples WHERE starred")}
        finally:
            connection.close()

    @classmethod
    def find(cls, path: str | os.PathLike[str]) -> SampleIndex | None:
        """The index of the workspace holding ``path`` (the nearest folder above it with a
        ``.diffstudio/gallery.sqlite``), or None; nothing is created."""
        for folder in Path(path).expanduser().resolve().parents:
            if (folder / STATE_DIR / INDEX_NAME).is_file():
                return cls(folder)
        return None

    def distinct(self, column: str) -> list[Any]:
        """The distinct non-empty values of a column (for the filter choices), sorted."""
        if column not in _COLUMNS or column in _JSON_COLUMNS:
            raise ConfigError(f"no index column {column!r}; choose one of {_COLUMNS}")
        connection = self._connect()
        try:
            values = [row[0] for row in connection.execute(
                f"SELECT DISTINCT {column} FROM samples WHERE {column} IS NOT NULL "
                f"AND {column} != '' AND mtime_ns >= 0")]
        finally:
            connection.close()
        return sorted(values, key=lambda v: (isinstance(v, str), v))


def _sql_where(where: SampleFilter | None) -> tuple[str, list[Any]]:
    """The SQL condition (and its values) for the parts of ``where`` SQLite can decide:
    the date bounds, the exact fields and the star; the text stays with
    :meth:`SampleFilter.matches`, which is applied after the query too."""
    terms, values = ["mtime_ns >= 0"], []  # -1: a star kept for a file not rescanned yet
    if where is None:
        return terms[0], values
    if where.since is not None:
        terms.append("mtime_ns >= ?")
        values.append(math.ceil(where.since * 1e9))
    if where.until is not None:
        terms.append("mtime_ns < ?")
        values.append(math.ceil(where.until * 1e9))
    if where.run is not None:
        terms.append("(run = ? OR run_path = ?)")
        values += [where.run, where.run]
    for name in ("sampler", "folder", "checkpoint", "backend", "steps", "seed", "class_label",
                 "guidance"):
        wanted = getattr(where, name)
        if wanted is not None:
            terms.append(f"{name} = ?")
            values.append(wanted)
    if where.starred is not None:
        terms.append("starred = ?")
        values.append(int(where.starred))
    return " AND ".join(terms), values


def _under(path: str, root: Path) -> bool:
    return path == str(root) or path.startswith(str(root) + os.sep)


SORT_KEYS = ("date", "run", "sampler", "steps", "seed", "class_label", "guidance", "path")


def sort_records(records: list[SampleRecord], key: str = "date", *,
                 descending: bool = False) -> list[SampleRecord]:
    """Sorted by ``key`` (one of SORT_KEYS), then by path; missing values go last."""
    if key not in SORT_KEYS:
        raise ConfigError(f"cannot sort by {key!r}; choose one of {', '.join(SORT_KEYS)}")
    attribute = "mtime_ns" if key == "date" else key
    present = [r for r in records if getattr(r, attribute) not in (None, "")]
    missing = [r for r in records if getattr(r, attribute) in (None, "")]
    present.sort(key=lambda r: (getattr(r, attribute), r.path), reverse=descending)
    missing.sort(key=lambda r: r.path)
    return present + missing


# -- dates and groups ----------------------------------------------------------------------------
DATE_PERIODS = ("all", "today", "7d", "30d")  # any date, since midnight, the last 7 / 30 days


def period_bounds(period: str, now: float | None = None) -> tuple[float | None, float | None]:
    """(since, until) in seconds since the epoch for a period of DATE_PERIODS: "today" from
    local midnight, "7d" and "30d" the last 7 or 30 days up to now, "all" unbounded."""
    now = time.time() if now is None else now
    if period == "all":
        return None, None
    if period == "today":
        midnight = time.localtime(now)
        return time.mktime((midnight.tm_year, midnight.tm_mon, midnight.tm_mday, 0, 0, 0, 0, 0,
                            -1)), None
    if period in ("7d", "30d"):
        return now - int(period[:-1]) * 86400.0, None
    raise ConfigError(f"unknown date period {period!r}; choose one of {', '.join(DATE_PERIODS)}")


GROUP_KEYS = ("run", "sampler")
_GROUP_MISSING = {"run": "(no run)", "sampler": "(unknown parameters)"}


def group_records(records: Sequence[SampleRecord], by: str
                  ) -> list[tuple[str, list[SampleRecord]]]:
    """``records`` in groups by run or by sampler (GROUP_KEYS), groups in name order (the one
    without a value last), each keeping the records' order."""
    if by not in GROUP_KEYS:
        raise ConfigError(f"cannot group by {by!r}; choose one of {', '.join(GROUP_KEYS)}")
    groups: dict[str, list[SampleRecord]] = {}
    for record in records:
        groups.setdefault(getattr(record, by) or "", []).append(record)
    order = sorted(groups, key=lambda name: (name == "", name.lower(), name))
    return [(name or _GROUP_MISSING[by], groups[name]) for name in order]


# -- filtering -----------------------------------------------------------------------------------
_FILTER_TYPES: dict[str, Callable[[str], Any]] = {
    "run": str, "sampler": str, "folder": str, "checkpoint": str, "backend": str,
    "steps": int, "seed": int, "class_label": int, "guidance": float,
}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off"):
        return False
    raise ValueError(text)


def _parse_date(text: str) -> float:
    """YYYY-MM-DD (local midnight) or seconds since the epoch."""
    try:
        return float(text)
    except ValueError:
        return time.mktime(time.strptime(text.strip(), "%Y-%m-%d"))


@dataclass
class SampleFilter:
    """Which samples to keep: each given field must match exactly (``run`` matches the run's
    name or its path); ``since``/``until`` bound the date (seconds since the epoch, ``until``
    exclusive; ``date=today|7d|30d`` in :meth:`from_pairs` sets them); ``starred`` True keeps
    starred ones only; ``text`` a substring of the path or the caption. Empty: keep
    everything."""

    run: str | None = None
    sampler: str | None = None
    folder: str | None = None
    checkpoint: str | None = None
    backend: str | None = None
    steps: int | None = None
    seed: int | None = None
    class_label: int | None = None
    guidance: float | None = None
    starred: bool | None = None
    since: float | None = None
    until: float | None = None
    text: str | None = None

    @classmethod
    def keys(cls) -> list[str]:
        return [*_FILTER_TYPES, "class", "starred", "since", "until", "date", "text"]

    @classmethod
    def from_pairs(cls, pairs: Iterable[str]) -> SampleFilter:
        """From ``KEY=VALUE`` strings (``diffstudio export --filter sampler=ddim``); a bad key
        or value is a ConfigError naming it and the keys there are."""
        where = cls()
        for pair in pairs:
            key, sep, value = pair.partition("=")
            key = key.strip().replace("-", "_")
            key = "class_label" if key == "class" else key
            if not sep or not key:
                raise ConfigError(f"--filter {pair!r} is not KEY=VALUE (for example "
                                  "sampler=ddim); keys: " + ", ".join(cls.keys()))
            try:
                if key in _FILTER_TYPES:
                    setattr(where, key, _FILTER_TYPES[key](value.strip()))
                elif key == "starred":
                    where.starred = _parse_bool(value)
                elif key in ("since", "until"):
                    setattr(where, key, _parse_date(value))
                elif key == "date":  # a period: today, 7d, 30d, all
                    where.since, where.until = period_bounds(value.strip().lower())
                elif key == "text":
                    where.text = value
                else:
                    raise ConfigError(f"--filter {pair!r}: unknown key {key!r}; keys: "
                                      + ", ".join(cls.keys()))
            except ValueError as exc:
                raise ConfigError(f"--filter {pair!r}: {value!r} is not a valid {key} "
                                  f"({short_error(exc)})") from exc
        return where

    def matches(self, record: SampleRecord) -> bool:
        if self.run is not None and self.run not in (record.run, record.run_path):
            return False
        for name in ("sampler", "folder", "checkpoint", "backend", "steps", "seed",
                     "class_label", "guidance"):
            wanted = getattr(self, name)
            if wanted is not None and getattr(record, name) != wanted:
                return False
        if self.starred is not None and record.starred != self.starred:
            return False
        if self.since is not None and record.date < self.since:
            return False
        if self.until is not None and record.date >= self.until:
            return False
        if self.text:
            needle = self.text.lower()
            if needle not in record.path.lower() and needle not in record.caption().lower():
                return False
        return True

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))
