"""The index: one SQLite file holding songs and their landmark postings, and the user-facing `Index` API.

Layout (justified in the README, "The index file"):

- `songs`: one row per song (path, title, duration, content hash, number of hashes, time added).
- `postings`: an inverted index. Row key `bucket = hash >> SUFFIX_BITS`; the row's blob is a packed array of
  6-byte entries, one per posting, little-endian:

      bytes 0..2: song id (20 bits) << 4 | hash & 0xF (4 bits)      bytes 3..5: anchor frame (24 bits)

  Grouping 16 hashes per row amortises SQLite's per-row overhead (~10 B), which would otherwise cost more than
  the posting itself. 20-bit song ids allow 1,048,575 songs; 24-bit frames allow 74 hours per song at 16 ms
  frames, so times never wrap.
- `meta`: schema version and the fingerprint settings the index was built with.

Adding a song is one short write transaction: its row in `songs` plus an append to each bucket it touches. A crash
mid-song rolls the whole song back; WAL mode lets `match` read while another process adds.
"""

from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import Config
from .errors import IndexFileError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x6C6D7072  # "lmpr": tells an lmprint index from any other SQLite file
SUFFIX_BITS = 4
ENTRY_BYTES = 6
MAX_SONG_ID = (1 << 20) - 1
MAX_FRAME = (1 << 24) - 1
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another writer before giving up with "locked"."""

def _create_schema(conn: sqlite3.Connection) -> None:
    """The tables, through sqlite-utils (typed columns, keys, indexes); idempotent."""
    from sqlite_utils import Database

    db = Database(conn)
    db["meta"].create({"key": str, "value": str}, pk="key", not_null={"value"}, if_not_exists=True)
    db["songs"].create({"id": int, "path": str, "title": str, "duration_s": float, "content_sha1": str,
                        "n_hashes": int, "added_at": str}, pk="id",
                       not_null={"path", "title", "duration_s", "content_sha1", "n_hashes", "added_at"},
                       if_not_exists=True)
    db["songs"].create_index(["content_sha1"], unique=True, if_not_exists=True)
    db["songs"].create_index(["path"], if_not_exists=True)
    db["postings"].create({"bucket": int, "entries": bytes}, pk="bucket", not_null={"entries"},
                          if_not_exists=True)


def default_db_path() -> Path:
    """$LMPRINT_DB, else $XDG_DATA_HOME/lmprint/index.db (~/.local/share/lmprint/index.db)."""
    if os.environ.get("LMPRINT_DB"):
        return Path(os.environ["LMPRINT_DB"])
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lmprint" / "index.db"


@dataclass(frozen=True)
class Song:
    id: int
    path: str
    title: str
    duration_s: float
    content_sha1: str
    n_hashes: int
    added_at: str


def encode_postings(hashes: np.ndarray, song_id: int, frames: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
    """Group one song's postings by bucket: (buckets, packed entry blobs), one blob per bucket."""
    if song_id > MAX_SONG_ID:
        raise IndexFileError("index is full (1,048,575 songs)")
    if frames.size and int(frames.max()) > MAX_FRAME:
        raise IndexFileError("song too long for the index (over 74 h)")
    order = np.argsort(hashes, kind="stable")
    hashes = hashes[order].astype(np.uint32)
    frames = frames[order].astype(np.uint32)
    entries = np.empty((hashes.size, ENTRY_BYTES), np.uint8)
    low = (np.uint32(song_id) << SUFFIX_BITS) | (hashes & ((1 << SUFFIX_BITS) - 1))
    entries[:, 0:3] = low.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    entries[:, 3:6] = frames.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    buckets = hashes >> SUFFIX_BITS
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]]) if buckets.size else np.zeros(0, int)
    ends = np.r_[starts[1:], buckets.size]
    return buckets[starts], [entries[s:e].tobytes() for s, e in zip(starts, ends)]


def decode_postings(buckets: np.ndarray, blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, song_ids, frames) of all entries in the given bucket rows."""
    if not blobs:
        empty = np.zeros(0, np.uint32)
        return empty, empty, empty
    raw = np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, ENTRY_BYTES)
    counts = np.fromiter((len(b) // ENTRY_BYTES for b in blobs), np.int64, len(blobs))
    prefix = np.repeat(np.asarray(buckets, np.uint32), counts)
    low = raw[:, 0].astype(np.uint32) | (raw[:, 1].astype(np.uint32) << 8) | (raw[:, 2].astype(np.uint32) << 16)
    hashes = (prefix << SUFFIX_BITS) | (low & ((1 << SUFFIX_BITS) - 1))
    songs = low >> SUFFIX_BITS
    frames = raw[:, 3].astype(np.uint32) | (raw[:, 4].astype(np.uint32) << 8) | (raw[:, 5].astype(np.uint32) << 16)
    return hashes, songs, frames


class Store:
    """The SQLite file: schema, settings check, songs and postings. No audio, no matching."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False, config: Config | None = None):
        self.path = Path(path)
        exists = self.path.exists() and self.path.stat().st_size > 0
        if not exists and not create:
            raise IndexFileError(f"no index at {self.path} (create one with `lmprint add`)")
        if self.path.is_dir():
            raise IndexFileError(f"{self.path} is a directory, not an index file")
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                        check_same_thread=False)
        except (sqlite3.Error, OSError) as error:
            raise IndexFileError(f"cannot open {self.path}: {error}") from None
        try:
            self._open(exists, config, create)
        except sqlite3.DatabaseError as error:
            self.conn.close()
            raise IndexFileError(_describe(error, self.path)) from None
        except IndexFileError:
            self.conn.close()
            raise

    def _open(self, exists: bool, config: Config | None, create: bool) -> None:
        conn = self.conn
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if exists and application_id != APPLICATION_ID:
            blank = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
            if not (create and blank):  # blank: another process is creating it right now, or an empty database
                raise IndexFileError(f"{self.path} is not an lmprint index (some other SQLite database)")
            exists = False
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise IndexFileError(f"{self.path} has index schema version {version}, newer than this lmprint "
                                 f"supports ({SCHEMA_VERSION}); upgrade lmprint")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        if not exists:
            with self.write():
                _create_schema(conn)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                stored = conn.execute("SELECT value FROM meta WHERE key='config'").fetchone()
                if stored is None:  # another process may have created it in the meantime
                    conn.execute("INSERT INTO meta(key, value) VALUES ('config', ?)",
                                 ((config or Config()).to_json(),))
                    conn.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (_now(),))
        stored = conn.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        if stored is None:
            raise IndexFileError(f"{self.path} is damaged: its settings are missing")
        try:
            stored_config = Config.from_json(stored[0])
        except (TypeError, ValueError, KeyError):
            raise IndexFileError(f"{self.path} holds fingerprint settings this lmprint does not know "
                                 "(made by a newer version?)") from None
        if config is not None and config.fingerprint_settings() != stored_config.fingerprint_settings():
            raise IndexFileError(f"{self.path} was built with other fingerprint settings; "
                                 "fingerprints made with different settings cannot be mixed")
        self.config = config or stored_config.with_matching_settings_of(Config())

    def write(self) -> "_WriteTransaction":
        """A short IMMEDIATE write transaction: all of it lands, or none of it."""
        return _WriteTransaction(self.conn, self.path)

    def close(self) -> None:
        self.conn.close()

    # --- songs ------------------------------------------------------------------------------------------------
    def content_hashes(self) -> set[str]:
        """Content hashes of songs that have landmark fingerprints."""
        return {row[0] for row in self.conn.execute("SELECT content_sha1 FROM songs WHERE n_hashes > 0")}

    def indexed_duration_s(self) -> float:
        """Seconds of audio of all songs in the index."""
        return float(self._read("SELECT COALESCE(SUM(duration_s), 0) FROM songs")[0][0])

    def fingerprinted_song_count(self) -> int:
        """Songs that have landmark fingerprints (hash weights scale with it)."""
        return self._read("SELECT COUNT(*) FROM songs WHERE n_hashes > 0")[0][0]

    def songs(self) -> list[Song]:
        rows = self._read("SELECT id, path, title, duration_s, content_sha1, n_hashes, added_at FROM songs ORDER BY id")
        return [Song(*row) for row in rows]

    def songs_by_id(self, ids) -> dict[int, Song]:
        ids = [int(i) for i in ids]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._read(f"SELECT id, path, title, duration_s, content_sha1, n_hashes, added_at FROM songs "
                          f"WHERE id IN ({marks})", ids)
        return {row[0]: Song(*row) for row in rows}

    def find_songs(self, reference: str) -> list[Song]:
        """Songs whose id, path (as given or absolute), title or content hash equals `reference`."""
        absolute = os.path.abspath(reference)
        rows = self._read("SELECT id, path, title, duration_s, content_sha1, n_hashes, added_at FROM songs "
                          "WHERE CAST(id AS TEXT)=? OR path=? OR path=? OR title=? OR content_sha1=?",
                          (reference, reference, absolute, reference, reference))
        return [Song(*row) for row in rows]

    def insert_song(self, path: str, title: str, duration_s: float, content_sha1: str, hashes: np.ndarray,
                    frames: np.ndarray) -> int | None:
        """Store one song and its postings in one transaction. None if its content already has postings.

        A song that another method (MERT codes) already added keeps its row and gains the postings."""
        with self.write():
            row = self.conn.execute("SELECT id, n_hashes FROM songs WHERE content_sha1=?", (content_sha1,)).fetchone()
            if row is not None and row[1] > 0:
                return None
            if row is None:
                cursor = self.conn.execute(
                    "INSERT INTO songs(path, title, duration_s, content_sha1, n_hashes, added_at) VALUES (?,?,?,?,?,?)",
                    (path, title, duration_s, content_sha1, int(hashes.size), _now()))
                song_id = int(cursor.lastrowid)
            else:
                song_id = int(row[0])
                self.conn.execute("UPDATE songs SET n_hashes=? WHERE id=?", (int(hashes.size), song_id))
            buckets, blobs = encode_postings(hashes, song_id, frames)
            self.conn.executemany(
                "INSERT INTO postings(bucket, entries) VALUES (?, ?) "
                "ON CONFLICT(bucket) DO UPDATE SET entries = CAST(entries || excluded.entries AS BLOB)",
                zip(buckets.tolist(), blobs))
            return song_id

    def compact(self) -> bool:
        """Rewrite the file without the slack that appends leave in pages (about 10 % of its size after a bulk
        add). False, changing nothing, when another process is using the index at that moment."""
        self.conn.execute("PRAGMA busy_timeout=1000")
        try:
            self.conn.execute("VACUUM")
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")

    def delete_songs(self, song_ids: list[int]) -> None:
        """Remove songs and every posting of theirs, in one transaction (a full scan of the postings)."""
        if not song_ids:
            return
        doomed = np.asarray(sorted(song_ids), np.uint32)
        with self.write():
            marks = ",".join("?" * len(song_ids))
            self.conn.execute(f"DELETE FROM songs WHERE id IN ({marks})", song_ids)
            for (table,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE "
                                              "'%\\_codes' ESCAPE '\\'").fetchall():
                self.conn.execute(f"DELETE FROM {table} WHERE song_id IN ({marks})", song_ids)
            updates, deletions = [], []
            for bucket, blob in self.conn.execute("SELECT bucket, entries FROM postings"):
                _, songs, _ = decode_postings(np.array([bucket]), [blob])
                gone = np.isin(songs, doomed)
                if gone.any():
                    kept = np.frombuffer(blob, np.uint8).reshape(-1, ENTRY_BYTES)[~gone]
                    (updates.append((kept.tobytes(), bucket)) if kept.size else deletions.append((bucket,)))
            self.conn.executemany("UPDATE postings SET entries=? WHERE bucket=?", updates)
            self.conn.executemany("DELETE FROM postings WHERE bucket=?", deletions)

    # --- postings ---------------------------------------------------------------------------------------------
    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hashes, song_ids, frames) of every posting whose hash is in `hashes`."""
        wanted = np.unique(np.asarray(hashes, np.uint32))
        if wanted.size == 0:
            return wanted, wanted, wanted
        buckets = np.unique(wanted >> SUFFIX_BITS).tolist()
        found_buckets, blobs = [], []
        chunk = 900
        for start in range(0, len(buckets), chunk):
            part = buckets[start:start + chunk]
            rows = self._read(f"SELECT bucket, entries FROM postings WHERE bucket IN ({','.join('?' * len(part))})",
                              part)
            for bucket, blob in rows:
                found_buckets.append(bucket)
                blobs.append(blob)
        posting_hashes, songs, frames = decode_postings(np.asarray(found_buckets, np.uint32), blobs)
        keep = wanted[np.minimum(np.searchsorted(wanted, posting_hashes), wanted.size - 1)] == posting_hashes
        return posting_hashes[keep], songs[keep], frames[keep]

    # --- statistics -------------------------------------------------------------------------------------------
    def stats(self) -> dict:
        n_songs, total_s, n_hashes = self._read(
            "SELECT COUNT(*), COALESCE(SUM(duration_s), 0), COALESCE(SUM(n_hashes), 0) FROM songs")[0]
        postings_bytes = self._read("SELECT COALESCE(SUM(LENGTH(entries)), 0) FROM postings")[0][0]
        file_bytes = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "path": str(self.path),
            "songs": n_songs,
            "duration_s": round(total_s, 1),
            "hashes": n_hashes,
            "postings_bytes": postings_bytes,
            "file_bytes": file_bytes,
            "file_bytes_per_song": round(file_bytes / n_songs, 1) if n_songs else None,
            "file_bytes_per_audio_s": round(file_bytes / total_s, 1) if total_s else None,
            "schema_version": SCHEMA_VERSION,
            "settings": self.config.fingerprint_settings(),
        }

    def _read(self, sql: str, params=()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as error:
            raise IndexFileError(_describe(error, self.path)) from None


class _WriteTransaction:
    def __init__(self, conn: sqlite3.Connection, path: Path):
        self.conn, self.path = conn, path

    def __enter__(self):
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.DatabaseError as error:
            raise IndexFileError(_describe(error, self.path)) from None
        return self

    def __exit__(self, kind, error, trace):
        if kind is None:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.DatabaseError as commit_error:
                self.conn.execute("ROLLBACK")
                raise IndexFileError(_describe(commit_error, self.path)) from None
            return False
        self.conn.execute("ROLLBACK")
        if isinstance(error, sqlite3.DatabaseError):
            raise IndexFileError(_describe(error, self.path)) from None
        return False


def _describe(error: sqlite3.Error, path: Path) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return f"{path} is locked by another process (gave up after {BUSY_TIMEOUT_S:g} s)"
    if "not a database" in text or "malformed" in text or "corrupt" in text:
        return f"{path} is not an lmprint index, or it is damaged ({text})"
    if "readonly" in text or "read-only" in text:
        return f"{path} is read-only"
    return f"{path}: {text}"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
