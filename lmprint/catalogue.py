"""The index file and its songs catalogue: one SQLite file that every engine keeps its data in.

The catalogue owns the file (opening it, its schema version, write transactions, the errors SQLite raises) and
two tables that every engine shares:

- `meta`: key/value pairs; each engine records its settings here under keys of its own.
- `songs`: one row per song (path, title, duration, content hash, time added), how many landmark hashes it has
  (`n_hashes`, 0 until the landmark engine has stored them), and where the landmark engine's embedded posting
  store placed it (`timeline_start`, `timeline_frames`; see `landmark.store`).

Engines add their own tables beside these. A table that holds per-song rows references `songs(id)` with
`ON DELETE CASCADE`, and foreign keys are enforced, so removing a song from the catalogue removes its rows in
every engine's tables. WAL mode lets `match` read while another process adds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import math
import os
import sqlite3
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from numbers import Integral
from pathlib import Path
from typing import Any, overload

from .errors import (
    REBUILD,
    AudioError,
    ChangedWhileRead,
    IndexFileError,
    IndexLocked,
    NoIndex,
    damaged,
    os_reason,
)
from .files import content_sha1, file_size, holds_content, title_from_path, unstorable_name
from .results import Song

VARIABLES_PER_STATEMENT = 900
"""Values bound to one statement at most: SQLite builds before 3.32 allow 999 (later ones 32,766), and `remove` or
`prune` may name tens of thousands of songs."""


def _is_gone(path: str) -> bool:
    """Whether the file system says there is no file at `path` (not merely that it cannot look)."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        pass
    return False


def _is_empty_folder(path: str) -> bool:
    """Whether `path` is a folder holding nothing (False when it cannot be read)."""
    try:
        with os.scandir(path) as entries:
            return next(entries, None) is None
    except OSError:
        return False


def under_folder(path: str, folders: Iterable[str]) -> str | None:
    """The longest of `folders` that `path` lies in, or None."""
    return max((folder for folder in folders if path.startswith(folder.rstrip(os.sep) + os.sep)), key=len,
               default=None)


def id_batches(ids: Iterable[int]) -> Iterator[tuple[str, list[int]]]:
    """`ids` in batches of at most `VARIABLES_PER_STATEMENT`, each with its placeholders for `IN (…)`: "?,?,?". A
    numpy array's are taken as they are (`tolist`: Python ints, in one pass)."""
    tolist = getattr(ids, "tolist", None)
    ids = tolist() if tolist is not None else [int(i) for i in ids]
    for start in range(0, len(ids), VARIABLES_PER_STATEMENT):
        batch = ids[start:start + VARIABLES_PER_STATEMENT]
        yield ",".join("?" * len(batch)), batch

SCHEMA_VERSION = 9
UPGRADABLE_FROM = 3
"""Index files of this schema version or newer are opened; older ones must be rebuilt. Schema 3 lacks the landmark
engine's `peaks` table, which that engine adds (and the version with it) when it opens the file. Schema 5 may hold
the landmark postings in rows of 4 or 1 hash (`postings_4`, `postings_1`), schema 6 in segment files beside it
(`landmark.segments`), schema 7 keeps the sealed songs' places on the timeline in one blob and compresses peaks with
zlib, schema 8 writes segments with a directory of a byte a row (`LMPSEG03`), and in schema 9 the landmark tail's
rows count their first gaps from the end of the sealed timeline (`tail_base_frame`). A file keeps its version, readable
by the lmprint that made it, until it is first written in a way that lmprint could not read (postings in a new
layout, peaks in the new codec), and becomes the current version then."""
APPLICATION_ID = 0x6C6D7072
"""`PRAGMA application_id` of an lmprint index ("lmpr"): tells it from any other SQLite file."""
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another writer before giving up with "locked"."""
IMMUTABLE = "&immutable=1"
"""The URI parameter that opens a file with no log beside it without locks, in a folder where none can be made."""
WRITER_CLOSING_S = 0.5
"""How long a reader of a read-only folder waits for a -wal file without its -shm to go: a writer closing its
last connection deletes the -shm first, and a log without one is otherwise a copy that was never checkpointed."""
MIN_HASH_PREFIX = 8
"""Hexadecimal digits of a content hash that name a song in `remove` (`find_songs`)."""
WAIT_NOTICE_S = 2.0
"""A writer that has waited this long for another writer says so, once, on the `lmprint` logger (the command line
prints it): a minute of silence before "locked" looks like a hang."""
COMPACT_BUSY_TIMEOUT_S = 1.0
"""How long `compact` waits for the file to itself before it leaves it as it is."""
RELEASE_FREE_SHARE = 0.25
"""Free pages beyond this share of the file go back to the file system after a seal (`release_free_pages`)."""
_SONG_COLUMNS = "id, path, title, duration_s, content_sha1, n_hashes, added_at"
_SONG_COLUMN_NAMES = _SONG_COLUMNS.split(", ")
_SONG_COLUMN_TYPES: tuple[type | tuple[type, ...], ...] = (int, str, str, (float, int), str, int, str)


def default_db_path() -> Path:
    """$LMPRINT_DB, else $XDG_DATA_HOME/lmprint/index.db (~/.local/share/lmprint/index.db)."""
    if os.environ.get("LMPRINT_DB"):
        return Path(os.environ["LMPRINT_DB"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lmprint" / "index.db"


def song_id_list(song_ids: int | Iterable[int]) -> list[int]:
    """Song ids as a list: one int or an iterable of ints. A str is refused rather than read character by
    character ("23" is not songs 2 and 3), and so is anything else that is not an integer."""
    if isinstance(song_ids, (str, bytes)) or not isinstance(song_ids, (Integral, Iterable)):
        raise TypeError(f"song ids are ints (or a list of them), not {song_ids!r}")
    values = [song_ids] if isinstance(song_ids, Integral) else list(song_ids)
    for value in values:
        if isinstance(value, bool) or not isinstance(value, Integral):
            raise TypeError(f"a song id is an int, not {value!r}")
    return [int(value) for value in values]


def song_list(songs: int | Song | Iterable[int | Song]) -> list[int | Song]:
    """Songs to act on as a list: by id (an int) or as read (a `Song`), one or an iterable of them; a str is
    refused as in `song_id_list`."""
    if isinstance(songs, Song):
        return [songs]
    if isinstance(songs, Iterable) and not isinstance(songs, (str, bytes)):
        items = list(songs)
        song_id_list([item for item in items if not isinstance(item, Song)])  # refuses what is not an id
        return [item if isinstance(item, Song) else int(item) for item in items]
    return list(song_id_list(songs))


def now_utc() -> str:
    """The current UTC time as ISO 8601, to the second: when a song or setting was recorded."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@dataclasses.dataclass
class Removal:
    """What a removal takes (`Catalogue.removal`)."""

    songs: dict[int, Song] = dataclasses.field(default_factory=dict)
    """The songs to remove, by id."""
    stand_ins: list[tuple[Song, str]] = dataclasses.field(default_factory=list)
    """Songs whose file goes with a folder removed, each with its copy outside it that becomes its file."""
    copies: list[str] = dataclasses.field(default_factory=list)
    """Paths of copies to forget (the song stays, by its other files)."""
    missing: list[str] = dataclasses.field(default_factory=list)
    """References that name nothing."""
    ambiguous: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    """References that name several songs without `remove_all`, each with why: then nothing is removed."""


@dataclasses.dataclass
class Pruning:
    """What `prune` takes (`Catalogue.pruning`)."""

    songs: list[Song] = dataclasses.field(default_factory=list)
    """The songs to remove: every file of theirs is gone."""
    stand_ins: list[tuple[Song, str]] = dataclasses.field(default_factory=list)
    """Songs whose file is gone, each with a copy that still holds its bytes, to become its file."""
    copies: list[str] = dataclasses.field(default_factory=list)
    """Paths of copies that are gone, to forget."""
    kept: dict[str, list[Song]] = dataclasses.field(default_factory=dict)
    """Songs whose files are gone with a library folder missing or empty now, by that folder: not removed."""
    every: bool = False
    """Whether every indexed song's own file is gone (a drive not mounted, more likely than a library deleted)."""


class Catalogue:
    """An open index file: its connection, write transactions, `meta` and the songs catalogue.

    `Catalogue(path, create=True)` makes the file if it does not exist. Raises IndexFileError for a missing,
    foreign, damaged, locked or newer file."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False, busy_timeout_s: float = BUSY_TIMEOUT_S):
        if not 0 <= busy_timeout_s < math.inf:  # a program's mistake: SQLite would take it as 0, or fail later
            raise ValueError(f"busy_timeout_s must be a number of seconds, 0 or more, not {busy_timeout_s!r}")
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self._after_commit: list[Callable[[], None]] = []
        self._after_rollback: list[Callable[[], None]] = []
        self.writing = False
        """Whether this connection's write transaction (`write`) is open: caches must not keep what it reads."""
        self.writes_begun = 0
        """How many write transactions this connection has begun: the one in progress, while `writing`, is this
        one, so that what a transaction did can be told from what an earlier one did (no callback to forget)."""
        try:
            if self.path.is_dir():  # (some file systems give a folder a size of 0)
                raise IndexFileError(f"{self.path} is a directory, not an index file")
            exists = self.path.exists() and self.path.stat().st_size > 0
        except OSError as error:  # a folder on the way that may not be read
            raise IndexFileError(f"cannot open {self.path}: {os_reason(error)}") from None
        if not exists and not create:
            empty = ": the file is empty" if self.path.is_file() else ""  # cut to nothing, or made by hand
            raise NoIndex(f"no index at {self.path}{empty}")
        self.read_only = exists and not os.access(self.path.parent, os.W_OK)
        """Whether the file is opened for reading only, because SQLite cannot make its -wal and -shm files in its
        folder (read-only media, a read-only mount): `match`, `list` and the server work; a change is refused. (A
        file that is read-only in a folder that is not: SQLite opens it read-only itself.)"""
        if self.read_only and create:  # opened to add: say so now, not at the first write
            raise IndexFileError(self.read_only_message())
        if create and not exists and self.path.parent.is_dir() and not os.access(self.path.parent, os.W_OK):
            raise IndexFileError(f"cannot create {self.path}: its folder is read-only (or not yours to write)")
        self.generation = 0
        """How many times the file was opened again (read-only, after another process changed it): caches of what
        was read key on it with `PRAGMA data_version`, which a new connection counts afresh."""
        self._read_as: tuple | None = None  # what a read-only file looked like when opened (`_file_state`)
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = self._connect()
        except (sqlite3.Error, OSError) as error:
            raise IndexFileError(f"cannot open {self.path}: {error}") from None
        try:
            self._open(exists, create)
        except sqlite3.DatabaseError as error:
            self.conn.close()
            raise self.error(error) from None
        except IndexFileError:
            self.conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        read_as, uri = None, str(self.path)
        if self.read_only:
            for _ in range(3):  # the state the choice of URI saw, so that a change while it was chosen is seen later
                read_as = self._file_state()
                uri = self._read_only_uri()
                if self._file_state() == read_as:
                    break
        conn = sqlite3.connect(uri, uri=self.read_only, timeout=self.busy_timeout_s, isolation_level=None,
                               check_same_thread=False)
        self._read_as = read_as
        self.immutable = uri.endswith(IMMUTABLE)
        """Whether the file is read as immutable (read-only, no log beside it): SQLite then takes no locks."""
        return conn

    def _file_state(self) -> tuple:
        """What tells that another process changed a file read as immutable: its size and time, and its log's (an
        empty log, which a process merely opening the file makes, counts as none)."""
        def state(path: Path) -> tuple[int, int] | None:
            try:
                found = path.stat()
            except FileNotFoundError:
                return None
            return (found.st_size, found.st_mtime_ns) if found.st_size > 0 else None
        return state(self.path), state(Path(f"{self.path}-wal"))

    def _follow_changes(self) -> None:
        """Open a read-only file again when another process has changed it since (a folder this process may not
        write, which another one may: a read-only mount of a folder the host still writes). An immutable
        connection would not see the change, and could read pages half rewritten."""
        if not self.read_only or self.conn.in_transaction or self._file_state() == self._read_as:
            return
        try:  # the new connection first: if it fails (the writer is closing its log), the old one still reads
            conn = self._connect()
        except sqlite3.Error as error:
            raise IndexFileError(f"cannot open {self.path} again: {error}") from None
        conn.execute("PRAGMA foreign_keys=ON")
        self.conn.close()
        self.conn = conn
        self.generation += 1

    def _read_only_uri(self) -> str:
        """The file's URI for reading only. With a write-ahead log beside it, SQLite reads the log too (it needs
        the -shm file there as well); without one, the file holds everything and is opened as immutable, which
        needs neither file (SQLite cannot create them in a read-only folder)."""
        wal, shm = Path(f"{self.path}-wal"), Path(f"{self.path}-shm")
        deadline = time.monotonic() + WRITER_CLOSING_S
        while file_size(wal) > 0 and not shm.exists() and time.monotonic() < deadline:
            time.sleep(0.01)  # a writer closing its last connection deletes -shm, then -wal
        if file_size(wal) == 0:
            return f"{self.path.absolute().as_uri()}?mode=ro{IMMUTABLE}"
        if not shm.exists():
            raise IndexFileError(f"{self.path} is in a read-only folder, with changes still in its -wal file: "
                                 "open it once where it can be written (any lmprint command), then copy it back")
        return f"{self.path.absolute().as_uri()}?mode=ro"

    def _open(self, exists: bool, create: bool) -> None:
        conn = self.conn
        if exists:  # one statement, so one snapshot: another process creating the file may commit between two
            application_id, n_objects = conn.execute(
                "SELECT (SELECT application_id FROM pragma_application_id), (SELECT COUNT(*) FROM sqlite_master)"
            ).fetchone()
            if application_id != APPLICATION_ID:
                if n_objects > 0:
                    raise IndexFileError(f"{self.path} is not an lmprint index (some other SQLite database)")
                if not create:  # blank: another process is creating it now, or an empty file
                    raise NoIndex(f"no index at {self.path} yet: another process may be creating it now")
                exists = False
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        if exists and version < UPGRADABLE_FROM:
            raise IndexFileError(f"{self.path} was built by an older lmprint (index schema version {version}); "
                                 f"{REBUILD}")
        if not exists:  # before any table: a file made without it keeps the pages it frees until `compact`
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        if not self.read_only:
            self._use_wal()
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if not exists:
            with self.write():
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    self._create_schema()
                    conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('created_at', ?)", (now_utc(),))

    def _create_schema(self) -> None:
        """The shared tables, through sqlite-utils (typed columns, keys, indexes); idempotent."""
        from sqlite_utils import Database

        db = Database(self.conn)
        db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"}, if_not_exists=True)
        db.table("songs").create({"id": int, "path": str, "title": str, "duration_s": float, "content_sha1": str,
                            "n_hashes": int, "added_at": str, "timeline_start": int, "timeline_frames": int},
                           pk="id", not_null={"path", "title", "duration_s", "content_sha1", "n_hashes", "added_at"},
                           if_not_exists=True)
        db.table("songs").create_index(["content_sha1"], unique=True, if_not_exists=True)
        db.table("songs").create_index(["path"], if_not_exists=True)

    def _create_copies(self) -> None:
        """The `copies` table (inside a write transaction; idempotent): every other file that holds a song's exact
        bytes. An index gains it with its first copy (a library without copies has no use for its two pages); an
        lmprint that predates it ignores it."""
        self.conn.execute("CREATE TABLE IF NOT EXISTS [copies] ([path] TEXT PRIMARY KEY, [song_id] INTEGER NOT NULL "
                          "REFERENCES [songs]([id]) ON DELETE CASCADE)")
        self.conn.execute("CREATE INDEX IF NOT EXISTS [idx_copies_song_id] ON [copies]([song_id])")

    def _use_wal(self) -> None:
        """Switch the file to WAL mode. The switch needs the file to itself and SQLite answers "locked" at once,
        without waiting, while another process is creating the same index: retry for up to the busy timeout."""
        deadline = time.monotonic() + self.busy_timeout_s
        while True:
            try:
                if self.conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self.conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # --- plumbing -------------------------------------------------------------------------------------------
    def write(self) -> WriteTransaction:
        """A short IMMEDIATE write transaction: all of it lands, or none of it."""
        return WriteTransaction(self)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see the file as of one moment (a read transaction), unless a transaction is already open."""
        if self.conn.in_transaction:
            yield
            return
        try:
            self._follow_changes()
            self.conn.execute("BEGIN")
        except sqlite3.DatabaseError as error:
            raise self.error(error) from None
        # an immutable connection takes no lock, so another process may rewrite pages under this "snapshot"
        read_as = self._read_as if self.immutable else None  # as when opened: `_follow_changes` compared that
        failed = False
        try:
            self.refuse_if_newer()
            yield
        except BaseException as error:
            failed = True
            if (isinstance(error, Exception) and read_as is not None
                    and self._file_state() != read_as):  # the likelier cause of whatever went wrong
                raise self._changed_while_read() from None
            raise
        finally:
            if self.conn.in_transaction:  # an error may have rolled it back already: that error is the one to tell
                try:
                    self.conn.execute("COMMIT")
                except sqlite3.DatabaseError as error:  # a damaged file fails its commit too
                    with contextlib.suppress(sqlite3.Error):  # never left open: the next read would not begin
                        self.conn.execute("ROLLBACK")
                    if not failed:
                        raise self.error(error) from None
        if read_as is not None and self._file_state() != read_as:
            raise self._changed_while_read()

    def _newer(self, version: int) -> IndexFileError:
        return IndexFileError(f"{self.path} has index schema version {version}, newer than this lmprint supports "
                              f"({SCHEMA_VERSION}); upgrade lmprint")

    def refuse_if_newer(self) -> None:
        """Refuse, in one line, a file that a newer lmprint has written since this process opened it (a long `add`,
        a server): read as this schema, its data would be misread, and a write would mark it back down. Call inside
        a transaction: the version is then the one its reads see."""
        try:
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as error:  # the file damaged, or locked: its one line
            raise self.error(error) from None
        if version > SCHEMA_VERSION:
            raise self._newer(version)

    def _changed_while_read(self) -> ChangedWhileRead:
        return ChangedWhileRead(f"{self.path} changed while it was read (another process wrote it); ask again")

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the write transaction in progress commits (never, if it rolls back): for caches
        that must only learn what the file really holds."""
        self._after_commit.append(callback)

    def after_rollback(self, callback: Callable[[], None]) -> None:
        """Call `callback` if the write transaction in progress rolls back (never, if it commits): to undo what
        it did outside the file, such as writing a segment that no listing will name. Undone newest first."""
        self._after_rollback.append(callback)

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Rows of a query; SQLite's errors become one-line IndexFileErrors."""
        try:
            self._follow_changes()
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise self.error(error) from None

    @property
    def schema_version(self) -> int:
        """The file's schema version: an older file keeps its own until first written in a way the lmprint that made
        it could not read (`mark_current_schema`)."""
        return int(self.read("PRAGMA user_version")[0][0])

    def mark_current_schema(self) -> None:
        """Mark the file as of this lmprint's schema version (inside a write transaction), once it holds what an
        older lmprint could not read: that lmprint then refuses it in one line. Never lowers it: the write
        transaction it is called in has refused a newer file."""
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def version(self) -> tuple[int, int, int]:
        """What a cache of what was read keys on: (`generation`, `PRAGMA data_version`, which other connections'
        commits change, `total_changes`, which this one's do). While it is the same, the file holds what it did."""
        try:
            return self.generation, self.conn.execute("PRAGMA data_version").fetchone()[0], self.conn.total_changes
        except sqlite3.DatabaseError as error:
            raise self.error(error) from None

    def has_table(self, name: str) -> bool:
        return bool(self.read("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)))

    def meta(self, key: str) -> str | None:
        rows = self.read("SELECT value FROM meta WHERE key=?", (key,))
        return rows[0][0] if rows else None

    @overload
    def meta_int(self, key: str, default: int) -> int: ...

    @overload
    def meta_int(self, key: str, default: None) -> int | None: ...

    def meta_int(self, key: str, default: int | None) -> int | None:
        """An integer kept in `meta` (`default` where there is none); a value that is not one is damage."""
        value = self.meta(key)
        try:
            return default if value is None or value == "" else int(value)
        except ValueError:
            raise damaged(self.path, f"its {key} is {value!r}, not a number") from None

    def set_meta(self, key: str, value: str) -> None:
        """Record a value (call inside a write transaction)."""
        self.conn.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def error(self, error: sqlite3.Error) -> IndexFileError:
        """The one-line error to raise for an SQLite error on this file (`IndexLocked` for a lock held too long)."""
        message = self._describe(error)
        return IndexLocked(message) if _is_lock(error) else IndexFileError(message)

    def _describe(self, error: sqlite3.Error) -> str:
        """A one-line message for an SQLite error on this file."""
        text = str(error)
        if _is_lock(error):
            return f"{self.path} is locked by another process (gave up after {self.busy_timeout_s:g} s)"
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return f"{self.path} is not an lmprint index, or it is damaged ({text})"
        if "full" in text:
            return f"{self.path}: {text}; free some space and run the command again: what was indexed is kept"
        if "readonly" in text or "read-only" in text:
            return self.read_only_message()
        return f"{self.path}: {text}"

    def read_only_message(self) -> str:
        """Why this file cannot be changed, in one line."""
        if not os.access(self.path.parent, os.W_OK):
            return (f"{self.path} is in a read-only folder (SQLite keeps its -wal and -shm files beside the index): "
                    "it can be matched against, not changed; copy it to a folder you can write")
        if os.access(self.path, os.W_OK):  # the file can be written; its -wal or -shm cannot
            for side in (f"{self.path}-wal", f"{self.path}-shm"):
                try:
                    owner = os.stat(side).st_uid
                except OSError:
                    continue
                if not os.access(side, os.W_OK):
                    if owner == os.geteuid():
                        return (f"{side} is read-only (SQLite gives it the index's mode, and the index was read-only "
                                "when a reader made it): make it writable (chmod u+w) to change the index")
                    return (f"{side} belongs to {_user_name(owner)}, whose process made it: let this user write it "
                            "(as that user or root, chmod or chown) to change the index")
        return f"{self.path} is read-only: it can be matched against, not changed"

    def compact(self) -> bool:
        """Rewrite the file without the slack that appends leave in pages. False, changing nothing, when another
        process is using the index at that moment."""
        with self.waiting_briefly():
            try:
                self.conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # a file made before it: VACUUM applies it
                self.conn.execute("VACUUM")
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                return True
            except sqlite3.OperationalError:
                return False

    def release_free_pages(self) -> None:
        """Give the pages that deleted rows left free back to the file system, in a transaction of its own (outside
        any other), when they are over `RELEASE_FREE_SHARE` of the file: sealing a small library's tail frees a
        third of its file, which the next tail takes back only slowly; a large library's tail is a small part of
        it. A file made before `auto_vacuum=INCREMENTAL` keeps them (until `compact`), and so
        does a file another writer holds for `COMPACT_BUSY_TIMEOUT_S`: the seal is committed; this is housekeeping."""
        if self.conn.in_transaction:
            return
        with self.waiting_briefly():
            try:
                free, = self.conn.execute("PRAGMA freelist_count").fetchone()
                pages, = self.conn.execute("PRAGMA page_count").fetchone()
                if free > RELEASE_FREE_SHARE * pages:
                    # executescript steps it to its end; execute() would free one page (its rows have no columns)
                    self.conn.executescript("PRAGMA incremental_vacuum")
            except sqlite3.Error:
                pass  # busy (or damaged: the next read or write says so in one line)

    @contextmanager
    def waiting_briefly(self) -> Iterator[None]:
        """Inside, wait `COMPACT_BUSY_TIMEOUT_S` for another writer, not `busy_timeout_s` (write transactions too):
        for housekeeping, which is skipped when another process is writing."""
        patient_s = self.busy_timeout_s
        self.busy_timeout_s = min(patient_s, COMPACT_BUSY_TIMEOUT_S)
        self.conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        try:
            yield
        finally:
            self.busy_timeout_s = patient_s
            self.conn.execute(f"PRAGMA busy_timeout={int(patient_s * 1000)}")

    def file_bytes(self) -> int:
        """Size of the file and its write-ahead log."""
        return file_size(self.path) + file_size(f"{self.path}-wal")

    def close(self) -> None:
        self.conn.close()

    # --- songs ----------------------------------------------------------------------------------------------
    def songs(self) -> list[Song]:
        return self._songs(self.read(f"SELECT {_SONG_COLUMNS} FROM songs ORDER BY id"))

    def _songs(self, rows: Iterable[tuple]) -> list[Song]:
        """Song rows as Songs. SQLite keeps whatever type a value was written with, so a row edited by hand can
        hold a number or bytes where text belongs; that reads as damage, in one line, not as a traceback later."""
        songs = []
        for row in rows:
            if not all(map(isinstance, row, _SONG_COLUMN_TYPES)):  # the column, once one is found wrong
                column, value = next((column, value) for column, value, kind
                                     in zip(_SONG_COLUMN_NAMES, row, _SONG_COLUMN_TYPES) if not isinstance(value, kind))
                raise damaged(self.path, f"song {row[0]!r} has a {column} of type {type(value).__name__}")
            songs.append(Song(*row))
        return songs

    def listed(self) -> list[dict]:
        """Every song as `lmprint list --json` and `GET /songs` give it: its row, and the paths of its copies."""
        copies = self.copies_of()
        return [{**song.to_dict(), "copies": copies.get(song.id, [])} for song in self.songs()]

    def songs_by_id(self, ids: Iterable[int]) -> dict[int, Song]:
        return {song.id: song for marks, batch in id_batches(ids)
                for song in self._songs(self.read(f"SELECT {_SONG_COLUMNS} FROM songs WHERE id IN ({marks})", batch))}

    def songs_at(self, path: str) -> list[Song]:
        """The songs whose file is recorded at exactly `path` (a path names one song, but a batch may be settling
        another that its content left there)."""
        return self._songs(self.read(f"SELECT {_SONG_COLUMNS} FROM songs WHERE path=?", (path,)))

    def find_songs(self, reference: str) -> list[Song]:
        """Songs whose id, path (as given, absolute, or with links resolved), title or content hash equals
        `reference`, or whose content hash starts with it (at least `MIN_HASH_PREFIX` hexadecimal digits, as `git`
        takes a commit's); failing those, whose title equals it in any case. A path or title matches in either
        Unicode form: "é" typed as one character names a song whose file name spells it as "e" and an accent, as
        macOS writes names."""
        spellings = sorted(unicode_spellings(reference))
        paths = sorted(_path_forms(reference) | set(spellings))
        prefix = reference.lower() if len(reference) >= MIN_HASH_PREFIX and all(
            c in "0123456789abcdef" for c in reference.lower()) else None
        rows = self.read(f"SELECT {_SONG_COLUMNS} FROM songs WHERE CAST(id AS TEXT)=? OR "
                         f"path IN ({', '.join('?' * len(paths))}) OR title IN ({', '.join('?' * len(spellings))}) "
                         "OR content_sha1=? OR (? IS NOT NULL AND substr(content_sha1, 1, length(?))=?)",
                         (reference, *paths, *spellings, reference, prefix, prefix, prefix))
        if not rows and os.path.isfile(reference):  # the file's real path, where `add` was given a link's
            rows = self._same_file("songs", _SONG_COLUMNS, 1, reference)
        if not rows:  # a title typed in another case ("beach" for "Beach"), where none is titled so exactly
            folded = unicodedata.normalize("NFC", reference).casefold()
            with self.snapshot():  # the titles compared are the songs' returned
                ids = [song_id for song_id, title in self.read("SELECT id, title FROM songs ORDER BY id")
                       if not isinstance(title, str) or unicodedata.normalize("NFC", title).casefold() == folded]
                found = self.songs_by_id(ids)  # a title that is no text is read as damage (`_songs`)
            return [found[song_id] for song_id in ids if song_id in found]
        return self._songs(rows)

    def copy_at(self, reference: str) -> str | None:
        """The recorded copy that this path names (as given, absolute, with links resolved, in either Unicode
        form, or the real path of a copy recorded through a link), if any."""
        if not reference or not self.has_table("copies"):
            return None
        paths = sorted(_path_forms(reference))
        rows = self.read(f"SELECT path FROM copies WHERE path IN ({', '.join('?' * len(paths))})", paths)
        if not rows and os.path.isfile(reference):
            rows = self._same_file("copies", "path", 0, reference)
        return rows[0][0] if rows else None

    def _same_file(self, table: str, columns: str, at: int, reference: str) -> list[tuple]:
        """Rows of `table` whose `path` (column `at` of `columns`) is the file at `reference` once links are
        resolved: those of its name (a link to a folder keeps its files' names), or failing those, those of its
        content (a link of another name to it), so that no row's path is resolved but these few."""
        real = os.path.realpath(reference)
        name = os.sep + os.path.basename(real)
        rows = self.read(f"SELECT {columns} FROM {table} WHERE substr(path, -?)=?", (len(name), name))
        found = [row for row in rows if os.path.realpath(row[at]) == real]
        if found:
            return found
        try:
            sha1 = content_sha1(reference)
        except AudioError:  # unreadable: no content to go by
            return []
        song = "id" if table == "songs" else "song_id"
        rows = self.read(f"SELECT {columns} FROM {table} WHERE {song} IN (SELECT id FROM songs WHERE content_sha1=?)",
                         (sha1,))
        return [row for row in rows if os.path.realpath(row[at]) == real]

    def songs_under(self, folder: str) -> list[Song]:
        """Songs whose file lies under this folder, at any depth (the folder as given, absolute, or with links
        resolved; a song added through a link to it or above it too); the folder need not exist any more."""
        songs = self.songs()
        return [songs[i] for (i, _) in _under(((i, song.path) for i, song in enumerate(songs)), folder, at=1)]

    def copies_under(self, folder: str) -> list[str]:
        """The recorded copies whose file lies under this folder, at any depth (as `songs_under`)."""
        return sorted(path for (path,) in _under([(path,) for paths in self.copies_of().values() for path in paths],
                                                  folder, at=0))

    def folder_removal(self, folder: str) -> tuple[list[Song], list[tuple[Song, str]], list[str]]:
        """What removing a folder takes from the index: the songs whose file lies under it, less those with a copy
        outside it that still holds their bytes, which that copy names instead (each with it, as `prune` lets a
        copy stand in); and the copies under it, to forget."""
        inside = self.copies_under(folder)
        songs = self.songs_under(folder)
        copies = self.copies_of(song.id for song in songs)
        removed, stand_ins = [], []
        for song in songs:
            outside = next((path for path in copies.get(song.id, []) if path not in inside
                            and holds_content(path, song.content_sha1)), None)
            if outside is None:
                removed.append(song)
            else:
                stand_ins.append((song, outside))
        return removed, stand_ins, inside

    def removal(self, references: Iterable[str], remove_all: bool = False) -> Removal:
        """What `lmprint remove` takes, each reference read in turn: a copy's path, that file alone; else the songs
        it names by id (an id is what it says, whatever titles say), path, title or content hash; else a folder's
        songs (`folder_removal`), there or gone. A reference naming several songs, or a folder of several, without
        `remove_all` is ambiguous; one naming nothing is missing."""
        plan = Removal()
        for reference in references:
            if unstorable_name(reference) is not None:  # no text the index holds spells it
                plan.missing.append(reference)
                continue
            copy = self.copy_at(reference)
            if copy is not None:  # one file of a song held twice: that file alone
                plan.copies.append(copy)
                continue
            matches = self.find_songs(reference)
            if any(str(song.id) == reference for song in matches):
                matches = [song for song in matches if str(song.id) == reference]
            if not matches and reference and (os.path.isdir(reference) or not os.path.exists(reference)):
                removed, moving, inside = self.folder_removal(reference)
                if len(removed) + len(moving) > 1 and not remove_all:
                    plan.ambiguous.append((reference, f"a folder of {len(removed) + len(moving)} songs; give --all "
                                                      "to remove them all"))
                elif removed or moving or inside:
                    plan.songs.update({song.id: song for song in removed})
                    plan.stand_ins += moving
                    plan.copies += inside
                else:
                    plan.missing.append(reference)
            elif not matches:
                plan.missing.append(reference)
            elif len(matches) > 1 and not remove_all:
                plan.ambiguous.append((reference, f"names {len(matches)} songs (ids "
                                                  f"{', '.join(str(song.id) for song in matches)}); give an id or "
                                                  "path, or --all"))
            else:
                plan.songs.update({song.id: song for song in matches})
        # a song named as well as moving to its copy outside a folder named: named, it goes; one whose copy is
        # forgotten too (named, or under another folder named) moves to another copy that holds it, or goes
        forgotten, stand_ins = set(plan.copies), []
        for song, copy in plan.stand_ins:
            if song.id in plan.songs:
                continue
            if copy in forgotten:
                copy = next((path for path in self.copies_of([song.id]).get(song.id, [])
                             if path not in forgotten and holds_content(path, song.content_sha1)), None)
            if copy is None:
                plan.songs[song.id] = song
            else:
                stand_ins.append((song, copy))
        plan.stand_ins = stand_ins
        return plan

    def song_id_of(self, content_sha1: str) -> int | None:
        """The id of the song with this content, if it is in the catalogue."""
        rows = self.read("SELECT id FROM songs WHERE content_sha1=?", (content_sha1,))
        return int(rows[0][0]) if rows else None

    def add_song(self, path: str, title: str, duration_s: float, content_sha1: str) -> int:
        """The song's id, adding its row if its content is new (call inside a write transaction)."""
        song_id = self.song_id_of(content_sha1)
        if song_id is not None:
            return song_id
        # past every id the file has given, removed ones included: a reader that voted for a song removed since
        # must not find another song under its id (SQLite gives the largest id again once its row is deleted)
        cursor = self.conn.execute(
            "INSERT INTO songs(id, path, title, duration_s, content_sha1, n_hashes, added_at) VALUES ("
            "1 + MAX(COALESCE((SELECT MAX(id) FROM songs), 0), COALESCE((SELECT CAST(value AS INTEGER) FROM meta "
            "WHERE key='last_song_id'), 0)), ?,?,?,?,0,?)",
            (path, title, duration_s, content_sha1, now_utc()))
        return int(cursor.lastrowid or 0)

    def set_hash_count(self, song_id: int, n_hashes: int) -> None:
        """Record how many landmark hashes a song's postings hold (call inside a write transaction): a song with
        none is not indexed by the landmark engine yet."""
        self.conn.execute("UPDATE songs SET n_hashes=? WHERE id=?", (n_hashes, song_id))

    def move_song(self, song_id: int, path: str, title: str) -> None:
        """Record that a song's file is now at `path`, titled `title` (its tag, else its new file name); a copy
        recorded there is the song's file now."""
        with self.write():
            self.conn.execute("UPDATE songs SET path=?, title=? WHERE id=?", (path, title, song_id))
            if self.has_table("copies"):  # a copy that is the song's file now (or the same file by a link)
                same = [copy for (copy,) in self.read("SELECT path FROM copies WHERE song_id=?", (song_id,))
                        if copy == path or os.path.realpath(copy) == os.path.realpath(path)]
                self.conn.executemany("DELETE FROM copies WHERE path=?", [(copy,) for copy in {path, *same}])

    def add_copy(self, song_id: int, path: str) -> bool:
        """Record that the file at `path` holds a song's exact bytes too (the same file in two folders, or a hard
        link): the song is indexed once, `prune` keeps it while any of its files is there, and `dedup` lists them
        all. False when the song was removed meanwhile. `add` has refused names it cannot store
        (`files.unstorable_name`)."""
        with self.write():
            return self._insert_copy(song_id, path)

    def move_copy(self, song_id: int, old_path: str, new_path: str) -> bool:
        """Record a song's copy at `old_path` (a file gone) as moved to `new_path`, in one transaction. False when
        the song was removed meanwhile (and nothing is changed)."""
        with self.write():
            inserted = self._insert_copy(song_id, new_path)
            if inserted:
                self.conn.execute("DELETE FROM copies WHERE path=? AND song_id=?", (old_path, song_id))
        return inserted

    def _insert_copy(self, song_id: int, path: str) -> bool:
        """Record the copy (inside a write transaction); False when there is no such song."""
        self._create_copies()
        cursor = self.conn.execute("INSERT OR REPLACE INTO copies(path, song_id) SELECT ?, id FROM songs WHERE id=?",
                                   (path, song_id))
        return cursor.rowcount > 0

    def copies_of(self, song_ids: Iterable[int] | None = None) -> dict[int, list[str]]:
        """The other files of these songs (of every song: None), by song, each song's paths sorted. A copy at the
        song's own path is none (an lmprint that predates copies may have moved the song there)."""
        if not self.has_table("copies"):
            return {}
        query = ("SELECT copies.song_id, copies.path FROM copies JOIN songs ON songs.id = copies.song_id "
                 "WHERE copies.path != songs.path")
        if song_ids is None:
            rows = self.read(f"{query} ORDER BY copies.song_id, copies.path")
        else:
            rows = [row for marks, batch in id_batches(song_ids) for row in self.read(
                f"{query} AND copies.song_id IN ({marks}) ORDER BY copies.song_id, copies.path", batch)]
        copies: dict[int, list[str]] = {}
        for song_id, path in rows:
            copies.setdefault(song_id, []).append(path)
        return copies

    def stand_in(self, song: Song, copy: str) -> None:
        """Make a copy the song's file, its own being gone. Its title stays, unless it was the old file's name:
        the copy holds the same bytes, title tag included."""
        self.move_song(song.id, copy, title_from_path(copy) if song.title == title_from_path(song.path)
                       else song.title)

    def files_of(self, song: Song) -> list[Song]:
        """The song as each of its files that are there (its own first, then its copies), each named by its path:
        the first is a copy when the song's own file is gone and a copy is there (before `prune` settles it); the
        song alone when none is there."""
        copies = [path for path in self.copies_of([song.id]).get(song.id, []) if os.path.exists(path)]
        if not copies:
            return [song]
        own = [song] if os.path.exists(song.path) else []  # gone: the first copy names the song
        return own + [dataclasses.replace(song, path=path) for path in copies]

    def forget_copies(self, paths: Iterable[str]) -> None:
        """Drop recorded copies at these paths (files deleted, or now holding other content)."""
        paths = list(paths)
        if paths and self.has_table("copies"):
            with self.write():
                self.conn.executemany("DELETE FROM copies WHERE path=?", [(path,) for path in paths])

    def add_library_folders(self, folders: Iterable[str]) -> None:
        """Record folders that `add` was given (a file's own folder, for a file): `prune` takes a song under one that
        is missing or empty as unavailable (a drive not mounted), not as deleted (`unavailable_folders`)."""
        # a name the index cannot store names no file it holds (`add` refuses that folder's files one by one)
        folders = sorted({os.path.abspath(folder) for folder in folders if unstorable_name(folder) is None})
        if folders:
            with self.write():
                self.conn.execute("CREATE TABLE IF NOT EXISTS [library_folders] ([path] TEXT PRIMARY KEY)")
                self.conn.executemany("INSERT OR IGNORE INTO library_folders(path) VALUES (?)",
                                      [(folder,) for folder in folders])

    def unavailable_folders(self) -> list[str]:
        """The recorded library folders (`add_library_folders`) that are missing or empty now, as a drive that is not
        mounted leaves its folders (or its empty mount point); one that cannot be looked at is not."""
        if not self.has_table("library_folders"):
            return []
        return [path for (path,) in self.read("SELECT path FROM library_folders ORDER BY path")
                if _is_gone(path) or _is_empty_folder(path)]

    def files_gone(self) -> tuple[list[Song], list[tuple[Song, str]], list[str]]:
        """What `prune` finds: the songs none of whose files exist any more; the songs whose own file is gone
        but a copy still holding its content is there, each with its first such copy (to stand in for it); and
        the copies that are gone. A file is gone when the file system says there is no such file: one it cannot
        look at (a folder without permission, a failing disk) is not."""
        copies = self.copies_of()
        gone_copies = [path for paths in copies.values() for path in paths if _is_gone(path)]
        unknown = set(gone_copies)
        songs_gone, stand_ins = [], []
        for song in self.songs():
            if not _is_gone(song.path):
                continue
            stand_in = next((path for path in copies.get(song.id, []) if path not in unknown
                             and holds_content(path, song.content_sha1)), None)
            if stand_in is not None:
                stand_ins.append((song, stand_in))
            else:
                songs_gone.append(song)
        return songs_gone, stand_ins, gone_copies

    def pruning(self, force: bool = False) -> Pruning:
        """What `lmprint prune` takes (`files_gone`), but for the songs under a library folder that is missing or
        empty now (a drive not mounted), which it keeps unless `force`; none are kept so where every song's file
        is gone (then `prune` refuses without `force`)."""
        gone, stand_ins, gone_copies = self.files_gone()
        own_gone = len(gone) + len(stand_ins)  # songs whose own file is gone, copies or not
        plan = Pruning(stand_ins=stand_ins, every=own_gone > 0 and own_gone == self.song_count())
        unavailable = [] if force or plan.every else self.unavailable_folders()
        for song in gone:
            folder = under_folder(song.path, unavailable)
            if folder is None:
                plan.songs.append(song)
            else:
                plan.kept.setdefault(folder, []).append(song)
        plan.copies = [path for path in gone_copies if under_folder(path, unavailable) is None]
        return plan

    def still_as_read(self, songs: Sequence[int | Song]) -> list[int]:
        """The ids of these songs that are in the catalogue, less each `Song` whose row no longer names the file
        and content it was read with: another process may have moved it or indexed other content at its path
        since (call inside the write transaction that acts on them)."""
        ids = [song.id if isinstance(song, Song) else int(song) for song in songs]
        now = self.songs_by_id(ids)
        return [song_id for song_id, song in zip(ids, songs) if song_id in now and (not isinstance(song, Song) or (
            now[song_id].path, now[song_id].content_sha1) == (song.path, song.content_sha1))]

    def delete_songs(self, song_ids: Sequence[int]) -> None:
        """Delete songs' rows; every engine table that references them loses their rows too (call inside a write
        transaction, after the engines that keep data outside such tables have dropped it). The largest id given
        so far is kept (`last_song_id`), so that `add_song` never gives a removed song's id again."""
        self.conn.execute("INSERT INTO meta(key, value) SELECT 'last_song_id', largest FROM (SELECT MAX(id) AS "
                          "largest FROM songs) WHERE largest IS NOT NULL ON CONFLICT(key) DO UPDATE SET "
                          "value = MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))")
        for marks, batch in id_batches(song_ids):
            self.conn.execute(f"DELETE FROM songs WHERE id IN ({marks})", batch)

    def song_count(self) -> int:
        """Songs in the catalogue, counted without reading them."""
        return int(self.read("SELECT COUNT(*) FROM songs")[0][0])

    def holds_songs(self) -> bool:
        """Whether the catalogue holds any song, read from its first row (a count reads every row's page)."""
        return bool(self.read("SELECT EXISTS (SELECT 1 FROM songs)")[0][0])

    def audio_s(self) -> float:
        """Seconds of audio of all songs in the catalogue."""
        return float(self.read("SELECT COALESCE(SUM(duration_s), 0) FROM songs")[0][0])

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WriteTransaction:
    """`with catalogue.write():` BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any error."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue

    def __enter__(self) -> WriteTransaction:
        try:
            self._begin()
            self.catalogue.refuse_if_newer()
        except sqlite3.DatabaseError as error:
            self._end_begun()
            raise self.catalogue.error(error) from None
        except IndexFileError:
            self._end_begun()
            raise
        self.catalogue.writing = True
        self.catalogue.writes_begun += 1
        return self

    def _end_begun(self) -> None:
        """Roll back a transaction begun before the write could start."""
        if self.catalogue.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.catalogue.conn.execute("ROLLBACK")

    def _begin(self) -> None:
        """BEGIN IMMEDIATE, waiting for another writer up to the busy timeout, and saying so after `WAIT_NOTICE_S`."""
        catalogue, conn = self.catalogue, self.catalogue.conn
        if catalogue.busy_timeout_s <= WAIT_NOTICE_S:
            conn.execute("BEGIN IMMEDIATE")
            return
        conn.execute(f"PRAGMA busy_timeout={int(WAIT_NOTICE_S * 1000)}")
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) and "busy" not in str(error):
                    raise
            logging.getLogger("lmprint").warning("%s: waiting for another process that is writing to it",
                                                 catalogue.path)
            conn.execute(f"PRAGMA busy_timeout={int((catalogue.busy_timeout_s - WAIT_NOTICE_S) * 1000)}")
            conn.execute("BEGIN IMMEDIATE")  # the rest of the busy timeout
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(catalogue.busy_timeout_s * 1000)}")

    def _undo(self, undo: list[Callable[[], None]]) -> None:
        """Run every undo of a write rolled back; one that fails is logged, not raised: the error that rolled the
        write back is the one to tell."""
        try:
            _run_all(undo)
        except Exception as undo_error:  # noqa: BLE001 - logged; the write's own error follows
            logging.getLogger("lmprint").warning("%s: could not undo part of a write that failed: %s",
                                                 self.catalogue.path, undo_error)

    def __exit__(self, kind, error, trace) -> None:
        self.catalogue.writing = False
        conn = self.catalogue.conn
        callbacks, self.catalogue._after_commit = self.catalogue._after_commit, []
        undo, self.catalogue._after_rollback = self.catalogue._after_rollback[::-1], []
        if kind is None:
            try:
                conn.execute("COMMIT")
            except sqlite3.DatabaseError as commit_error:
                self._roll_back(undo)  # a full disk or an I/O error may have rolled it back already
                raise self.catalogue.error(commit_error) from None
            _run_all(callbacks)
            return
        self._roll_back(undo)
        if isinstance(error, sqlite3.DatabaseError):
            raise self.catalogue.error(error) from None

    def _roll_back(self, undo: list[Callable[[], None]]) -> None:
        """ROLLBACK if the transaction is still open, and undo what it did outside the file, that too if the
        ROLLBACK fails (an I/O error; its error is then the one raised, in one line)."""
        conn = self.catalogue.conn
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.DatabaseError as rollback_error:
            self._undo(undo)
            raise self.catalogue.error(rollback_error) from None
        self._undo(undo)


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    """Call every callback, the rest too where one raises (each undoes or notes a part of its own, such as a
    segment file to delete); the first error is raised once all have run."""
    first_error: Exception | None = None
    for callback in callbacks:
        try:
            callback()
        except Exception as error:  # noqa: BLE001 - raised below, after the others
            first_error = first_error or error
    if first_error is not None:
        raise first_error


def _path_forms(reference: str) -> set[str]:
    """The paths an index may have recorded for `reference`: its absolute and its real path, in either Unicode
    form."""
    return {resolve(spelling) for spelling in unicode_spellings(reference)
            for resolve in (os.path.abspath, os.path.realpath)}


def _folder_prefixes(folder: str) -> set[str]:
    """How the paths of files under `folder` begin: its `_path_forms`, each ending in a separator."""
    return {os.path.join(path, "") for path in _path_forms(folder)}


def _under(rows: Iterable[tuple], folder: str, at: int) -> Iterator[tuple]:
    """The rows whose path (column `at`) lies under `folder`: it begins with one of `_folder_prefixes`, or, while the
    folder is there, its own folder lies under it once links are resolved (each folder resolved once: a library
    holds far fewer folders than files)."""
    prefixes = tuple(_folder_prefixes(folder))
    real = os.path.join(os.path.realpath(folder), "") if os.path.isdir(folder) else None
    resolved: dict[str, bool] = {}
    for row in rows:
        path = row[at]
        if path.startswith(prefixes):
            yield row
        elif real is not None:
            parent = os.path.dirname(path)
            if parent not in resolved:
                resolved[parent] = os.path.join(os.path.realpath(parent), "").startswith(real)
            if resolved[parent]:
                yield row


def unicode_spellings(text: str) -> set[str]:
    """`text` as typed and in both Unicode forms: "é" as one character (NFC), or as "e" and an accent (NFD, as macOS
    writes file names)."""
    return {text, *(unicodedata.normalize(form, text) for form in ("NFC", "NFD"))}


def _is_lock(error: sqlite3.Error) -> bool:
    """Whether SQLite gave up waiting for another process's lock."""
    text = str(error)
    return "locked" in text or "busy" in text


def _user_name(uid: int) -> str:
    """A user's name for a message, else "user UID"."""
    import pwd

    try:
        return f"user {pwd.getpwuid(uid).pw_name}"
    except KeyError:
        return f"user {uid}"
