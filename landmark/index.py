"""The index: one SQLite file holding songs and their landmark postings, and the user-facing `Index` API.

Layout (justified in the README, "The index file"):

- `songs`: one row per song (path, title, duration, content hash, number of hashes, time added) and its place
  on the index's **timeline**: the songs' frames laid end to end, song after song, as they were added
  (`timeline_start`, `timeline_frames`). A posting then names song and time with one number, its timeline frame.
- `postings`: an inverted index. Row key `bucket = hash >> SUFFIX_BITS`; the row's blob lists the bucket's
  postings in timeline order as 3-byte little-endian words, one per posting:

      bits 0..19: gap, the posting's timeline frame minus the previous one's in the row (minus 0 for the first)
      bits 20..23: hash & 0xF

  A gap of 2^20 − 1 or more (a row's first posting in a large index, a rare hash) takes two more words: the
  gap field of the first is all ones (an escape) and the next two are digits of the gap. A digit's gap field is
  never all ones, so escapes are found in one vectorised pass, without walking the row.
  Grouping 16 hashes per row amortises SQLite's per-row overhead (~10 B), which would otherwise cost more than
  the posting itself; storing gaps instead of timeline frames (36 bits) saves 40 %: the postings of one bucket
  are a few hundred thousand frames apart on average, whatever the size of the index. Timeline frames are never
  reused: a removed song leaves a gap, so a reader holding an older list of songs cannot misattribute a posting.
- `peaks`: one row per song, the peaks its hashes pair (frame, bin), for verifying a candidate peak by peak
  (`landmark.verify`). Two byte streams, frame gaps then bins, compressed with LZMA: 1.26 bytes a peak.
- `meta`: the fingerprint settings the index was built with and the end of the timeline.

Adding a song is one short write transaction: its row in `songs` plus an append to each bucket it touches. A crash
mid-song rolls the whole song back; WAL mode lets `match` read while another process adds.
"""

from __future__ import annotations

import datetime as _dt
import lzma
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrays import run_starts
from .config import Config
from .errors import IndexFileError

SCHEMA_VERSION = 4
UPGRADABLE_FROM = 3
"""Indexes of this schema version or newer are upgraded in place when opened; older ones must be rebuilt."""
APPLICATION_ID = 0x6C6D7072  # "lmpr": tells an lmprint index from any other SQLite file
SUFFIX_BITS = 4
SUFFIX_MASK = (1 << SUFFIX_BITS) - 1
WORD_BYTES = 3
GAP_BITS = 8 * WORD_BYTES - SUFFIX_BITS
ESCAPE = (1 << GAP_BITS) - 1
"""A gap field holding this marks an escape: the posting's gap is in the next two (digit) words."""
DIGIT_BASE = (1 << SUFFIX_BITS) * ESCAPE
"""Digits of an escaped gap are in [0, DIGIT_BASE): `(d // ESCAPE) << GAP_BITS | d % ESCAPE` keeps the gap field
of a digit word below ESCAPE."""
TIMELINE_BITS = 36
TIMELINE_END = 1 << TIMELINE_BITS
"""Timeline capacity: 2^36 frames, 300,000 hours at 16 ms frames (an escaped gap holds up to DIGIT_BASE²)."""
ROWS_PER_SCAN = 8192
"""Rows read at a time when a removal scans the postings."""
PEAK_GAP_LIMIT = 255
"""Frame gaps between stored peaks are bytes: a longer gap (a pause over 4 s) is bridged by filler entries of
gap 255 and bin 0, a bin below every band, which decoding drops."""
PEAK_CODER = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 16,
               "lc": 0, "lp": 0, "pb": 0}]
"""Peaks are compressed with raw LZMA2 (no container header), modelling bytes without context from their
neighbours' bits (lc = lp = pb = 0): 1.26 bytes a peak on the corpus, against 1.40 with zlib, for 0.15 ms to
decode a song. A 64 KiB dictionary covers a song and keeps the decoder's memory small."""
BUSY_TIMEOUT_S = 60.0
"""How long a writer waits for another writer before giving up with "locked"."""

def _create_schema(conn: sqlite3.Connection) -> None:
    """The tables, through sqlite-utils (typed columns, keys, indexes); idempotent."""
    from sqlite_utils import Database

    db = Database(conn)
    db["meta"].create({"key": str, "value": str}, pk="key", not_null={"value"}, if_not_exists=True)
    db["songs"].create({"id": int, "path": str, "title": str, "duration_s": float, "content_sha1": str,
                        "n_hashes": int, "added_at": str, "timeline_start": int, "timeline_frames": int}, pk="id",
                       not_null={"path", "title", "duration_s", "content_sha1", "n_hashes", "added_at"},
                       if_not_exists=True)
    db["songs"].create_index(["content_sha1"], unique=True, if_not_exists=True)
    db["songs"].create_index(["path"], if_not_exists=True)
    db["postings"].create({"bucket": int, "entries": bytes}, pk="bucket", not_null={"entries"},
                          if_not_exists=True)
    db["peaks"].create({"song_id": int, "data": bytes}, pk="song_id", not_null={"data"}, if_not_exists=True)


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


def encode_postings(hashes: np.ndarray, timeline_frames: np.ndarray, row_ends: np.ndarray | None = None
                    ) -> tuple[np.ndarray, list[bytes]]:
    """Group postings by bucket: (buckets, blobs), one blob per bucket, ascending buckets.

    `row_ends`, one per bucket of these hashes (ascending), is the timeline frame of the last posting already in
    that bucket's row: the blob continues the row's gaps, to be appended to it. None: new rows. Postings must not
    lie before their row's end (songs are added at the end of the timeline).
    """
    hashes = np.asarray(hashes, np.int64)
    frames = np.asarray(timeline_frames, np.int64)
    buckets = hashes >> SUFFIX_BITS
    order = np.lexsort((frames, buckets))
    buckets, suffixes, frames = buckets[order], hashes[order] & SUFFIX_MASK, frames[order]
    row_buckets, starts = np.unique(buckets, return_index=True)
    previous = np.r_[np.int64(0), frames[:-1]]
    previous[starts] = 0 if row_ends is None else np.asarray(row_ends, np.int64)
    gaps = frames - previous
    if gaps.size and gaps.min() < 0:
        raise ValueError("postings must follow the end of their row")
    escaped = gaps >= ESCAPE
    sizes = np.where(escaped, 3, 1)
    word_at = np.cumsum(sizes) - sizes
    words = np.zeros(int(sizes.sum()), np.int64)
    words[word_at] = (suffixes << GAP_BITS) | np.minimum(gaps, ESCAPE)
    high, low = np.divmod(gaps[escaped], DIGIT_BASE)
    for offset, digit in ((1, high), (2, low)):
        words[word_at[escaped] + offset] = ((digit // ESCAPE) << GAP_BITS) | (digit % ESCAPE)
    data = words.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :WORD_BYTES]
    bounds = np.r_[word_at[starts], words.size]
    return row_buckets.astype(np.uint32), [data[a:b].tobytes() for a, b in zip(bounds[:-1], bounds[1:])]


def decode_postings(buckets: np.ndarray, blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, timeline frames) of all postings in the given bucket rows."""
    rows, suffixes, frames = _decode_rows(blobs)
    return (np.asarray(buckets, np.uint32)[rows] << SUFFIX_BITS) | suffixes.astype(np.uint32), frames


def encode_peaks(frames: np.ndarray, bins: np.ndarray) -> bytes:
    """A song's peaks, sorted by frame, as [bin width byte, frame gaps, bins], compressed (see PEAK_GAP_LIMIT,
    PEAK_CODER)."""
    frames, bins = np.asarray(frames, np.int64), np.asarray(bins, np.int64)
    gaps = np.diff(frames, prepend=0)
    if (gaps < 0).any() or (bins <= 0).any():
        raise ValueError("peaks must be sorted by frame and have bins above 0")
    fillers = gaps // PEAK_GAP_LIMIT
    at = np.cumsum(fillers + 1) - 1  # each peak's entry, after its fillers
    entry_gaps = np.full(int(at[-1]) + 1 if at.size else 0, PEAK_GAP_LIMIT, np.uint8)
    entry_bins = np.zeros(entry_gaps.size, np.uint16 if bins.size and bins.max() > 255 else np.uint8)
    entry_gaps[at] = gaps % PEAK_GAP_LIMIT
    entry_bins[at] = bins
    width = bytes([entry_bins.itemsize])
    raw = width + entry_gaps.tobytes() + entry_bins.astype(f"<u{entry_bins.itemsize}").tobytes()
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=PEAK_CODER)


def decode_peaks(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bins) from `encode_peaks`."""
    raw = lzma.decompress(data, format=lzma.FORMAT_RAW, filters=PEAK_CODER)
    width = raw[0]
    n = (len(raw) - 1) // (1 + width)
    frames = np.cumsum(np.frombuffer(raw, np.uint8, n, 1), dtype=np.int64)
    bins = np.frombuffer(raw, f"<u{width}", n, 1 + n).astype(np.int64)
    real = bins > 0
    return frames[real], bins[real]


def _decode_rows(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row index, hash suffix, timeline frame) of every posting in the blobs, in row and timeline order."""
    if not blobs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    data = b"".join(blobs) + bytes(4 - WORD_BYTES)
    n_words = (len(data) - (4 - WORD_BYTES)) // WORD_BYTES
    # each word read as 4 bytes starting at its own (overlapping the next word, masked off): no copy to pad it
    unaligned = np.ndarray((n_words,), "<u4", data, strides=(WORD_BYTES,))
    words = unaligned.astype(np.int64) & ((1 << (8 * WORD_BYTES)) - 1)
    gaps = words & ESCAPE
    escapes = np.flatnonzero(gaps == ESCAPE)
    words_per_row = np.fromiter(map(len, blobs), np.int64, len(blobs)) // WORD_BYTES
    rows = np.repeat(np.arange(len(blobs)), words_per_row)
    per_row = words_per_row
    if escapes.size:
        digits = (words >> GAP_BITS) * ESCAPE + gaps
        gaps[escapes] = digits[escapes + 1] * DIGIT_BASE + digits[escapes + 2]
        per_row = words_per_row - 2 * np.bincount(rows[escapes], minlength=len(blobs))
        is_posting = np.ones(words.size, bool)
        is_posting[escapes + 1] = is_posting[escapes + 2] = False
        rows, gaps, words = rows[is_posting], gaps[is_posting], words[is_posting]
    if rows.size == 0:
        return rows, words, gaps
    totals = np.cumsum(gaps)
    before = (totals - gaps)[np.minimum(np.cumsum(per_row) - per_row, totals.size - 1)]  # empty rows: unused
    return rows, words >> GAP_BITS, totals - before[rows]


def _last_frames(rows: np.ndarray, frames: np.ndarray, n_rows: int) -> np.ndarray:
    """The latest timeline frame of each of `n_rows` rows (0 for a row without postings)."""
    last = np.zeros(n_rows, np.int64)
    np.maximum.at(last, rows, frames)
    return last


@dataclass(frozen=True)
class Timeline:
    """Where each song's frames lie on the index's timeline (sorted by start), to turn a posting's timeline frame
    back into (song, frame)."""

    starts: np.ndarray  # int64
    ends: np.ndarray  # int64, exclusive
    song_ids: np.ndarray  # int64
    end: int  # the end of the last song listed; postings past it belong to songs added since

    def locate(self, timeline_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask of the entries that fall in a song, their song ids, their frames within the song)."""
        if self.starts.size == 0:
            return np.zeros(timeline_frames.size, bool), np.zeros(0, np.int64), np.zeros(0, np.int64)
        slot = np.maximum(np.searchsorted(self.starts, timeline_frames, side="right") - 1, 0)
        frames = timeline_frames - self.starts[slot]
        inside = (frames >= 0) & (timeline_frames < self.ends[slot])
        if inside.all():  # the rule: only postings of songs removed since lie outside
            return inside, self.song_ids[slot], frames
        return inside, self.song_ids[slot[inside]], frames[inside]


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
        if exists and version < UPGRADABLE_FROM:
            raise IndexFileError(f"{self.path} was built by an older lmprint (index schema version {version}); "
                                 "index the music again into a new file")
        _use_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")
        if exists and version < SCHEMA_VERSION:
            with self.write():  # schema 3 lacks only the peaks table: its songs are matched by vote alone
                if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                    _create_schema(conn)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
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
                    conn.execute("INSERT INTO meta(key, value) VALUES ('timeline_end', '0')")
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
        self._timeline: Timeline | None = None
        self._known_row_ends: dict[int, int] = {}  # bucket → its row's last timeline frame (see `_row_ends`)
        self._known_version = None

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
                    frames: np.ndarray, peaks: tuple[np.ndarray, np.ndarray] | None = None) -> int | None:
        """Store one song, its postings and its peaks (frames, bins; for verification) in one transaction. None if
        its content already has postings.

        A song that another method (MERT codes) already added keeps its row and gains the postings."""
        with self.write():
            row = self.conn.execute("SELECT id, n_hashes FROM songs WHERE content_sha1=?", (content_sha1,)).fetchone()
            if row is not None and row[1] > 0:
                return None
            start = int(self.conn.execute("SELECT value FROM meta WHERE key='timeline_end'").fetchone()[0])
            span = int(frames.max()) + 1 if frames.size else 0
            if start + span >= TIMELINE_END:
                raise IndexFileError(f"{self.path} is full ({TIMELINE_END:,} frames of audio)")
            if row is None:
                cursor = self.conn.execute(
                    "INSERT INTO songs(path, title, duration_s, content_sha1, n_hashes, added_at, timeline_start, "
                    "timeline_frames) VALUES (?,?,?,?,?,?,?,?)",
                    (path, title, duration_s, content_sha1, int(hashes.size), _now(), start, span))
                song_id = int(cursor.lastrowid)
            else:
                song_id = int(row[0])
                self.conn.execute("UPDATE songs SET n_hashes=?, timeline_start=?, timeline_frames=? WHERE id=?",
                                  (int(hashes.size), start, span, song_id))
            self.conn.execute("UPDATE meta SET value=? WHERE key='timeline_end'", (str(start + span),))
            if peaks is not None:
                self.conn.execute("INSERT OR REPLACE INTO peaks(song_id, data) VALUES (?, ?)",
                                  (song_id, encode_peaks(*peaks)))
            timeline_frames = start + frames.astype(np.int64)
            buckets, rows = np.unique(np.asarray(hashes, np.int64) >> SUFFIX_BITS, return_inverse=True)
            buckets, blobs = encode_postings(hashes, timeline_frames, self._row_ends(buckets))
            self.conn.executemany(
                "INSERT INTO postings(bucket, entries) VALUES (?, ?) "
                "ON CONFLICT(bucket) DO UPDATE SET entries = CAST(entries || excluded.entries AS BLOB)",
                zip(buckets.tolist(), blobs))
        new_ends = _last_frames(rows, timeline_frames, buckets.size)
        self._known_row_ends.update(zip(buckets.tolist(), new_ends.tolist()))  # committed: now the rows' ends
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
        with self.write():
            marks = ",".join("?" * len(song_ids))
            doomed = self._timeline_of(f"id IN ({marks})", song_ids)
            self.conn.execute(f"DELETE FROM songs WHERE id IN ({marks})", song_ids)
            self.conn.execute(f"DELETE FROM peaks WHERE song_id IN ({marks})", song_ids)
            for (table,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name LIKE "
                                              "'%\\_codes' ESCAPE '\\'").fetchall():
                self.conn.execute(f"DELETE FROM {table} WHERE song_id IN ({marks})", song_ids)
            if doomed.starts.size:
                self._known_row_ends = {}
                self._drop_postings(doomed)
        self._timeline = None

    def song_peaks(self, song_ids: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Stored peaks (frames, bins) of these songs, for those that have them."""
        ids = [int(i) for i in song_ids]
        if not ids:
            return {}
        rows = self._read(f"SELECT song_id, data FROM peaks WHERE song_id IN ({','.join('?' * len(ids))})", ids)
        return {song_id: decode_peaks(data) for song_id, data in rows}

    # --- postings ---------------------------------------------------------------------------------------------
    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every posting of the given hashes, which must be ascending and distinct (`vote.QueryHashes.distinct`):
        (index of its hash in `hashes`, song id, frame in the song)."""
        wanted = np.asarray(hashes, np.uint32)
        if wanted.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        if (wanted[1:] <= wanted[:-1]).any():
            raise ValueError("lookup needs ascending, distinct hashes")
        # A row holds the postings of 16 hashes (one per suffix). Per row found and suffix: was it asked for, and
        # if so its index in `wanted`, the row's first asked index plus the asked suffixes below it.
        firsts = run_starts(wanted >> SUFFIX_BITS)
        buckets = wanted[firsts] >> SUFFIX_BITS
        asked_suffixes = np.bitwise_or.reduceat(np.left_shift(np.uint32(1), wanted & SUFFIX_MASK), firsts)
        found_buckets, blobs = self._rows(buckets)
        rows, suffixes, timeline_frames = _decode_rows(blobs)
        slot = np.searchsorted(buckets, found_buckets)
        asked = ((asked_suffixes[slot, None] >> np.arange(1 << SUFFIX_BITS, dtype=np.uint32)) & 1).astype(np.int64)
        index = (np.cumsum(asked, axis=1) - asked + firsts[slot, None]).ravel()
        cell = (rows << SUFFIX_BITS) | suffixes
        keep = asked.ravel()[cell].astype(bool)
        return self._locate(index[cell[keep]], timeline_frames[keep])

    def _rows(self, buckets: np.ndarray) -> tuple[np.ndarray, list[bytes]]:
        """(buckets, blobs) of the rows of these buckets that exist, in no particular order."""
        found_buckets, blobs = [], []
        chunk = 900
        for start in range(0, buckets.size, chunk):
            part = buckets[start:start + chunk].tolist()
            for bucket, blob in self._read(
                    f"SELECT bucket, entries FROM postings WHERE bucket IN ({','.join('?' * len(part))})", part):
                found_buckets.append(bucket)
                blobs.append(blob)
        return np.asarray(found_buckets, np.uint32), blobs

    def _row_ends(self, buckets: np.ndarray) -> np.ndarray:
        """The timeline frame of the last posting in each of these (ascending) buckets' rows; 0 for no row.

        Call inside a write transaction. Rows are read once and their ends then kept across this connection's own
        inserts (a batch touches every row many times); `PRAGMA data_version` changes when another connection
        has written, and then they are read again."""
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._known_version:
            self._known_row_ends, self._known_version = {}, version
        known = self._known_row_ends
        unknown = np.array([b for b in buckets.tolist() if b not in known], np.uint32)
        if unknown.size:
            found_buckets, blobs = self._rows(unknown)
            rows, _, frames = _decode_rows(blobs)
            known.update(dict.fromkeys(unknown.tolist(), 0))
            known.update(zip(found_buckets.tolist(), _last_frames(rows, frames, len(blobs)).tolist()))
        return np.array([known[b] for b in buckets.tolist()], np.int64)

    def _drop_postings(self, doomed: "Timeline") -> None:
        """Rewrite the rows holding postings on the doomed part of the timeline (a full scan, in slices)."""
        after = -1
        while True:
            batch = self._read("SELECT bucket, entries FROM postings WHERE bucket > ? ORDER BY bucket LIMIT ?",
                               (after, ROWS_PER_SCAN))
            if not batch:
                return
            after = batch[-1][0]
            buckets = np.array([row[0] for row in batch], np.uint32)
            hashes, frames = decode_postings(buckets, [row[1] for row in batch])
            gone, _, _ = doomed.locate(frames)
            touched = np.unique(hashes[gone] >> SUFFIX_BITS)
            kept = ~gone & np.isin(hashes >> SUFFIX_BITS, touched)
            kept_buckets, blobs = encode_postings(hashes[kept], frames[kept])
            self.conn.executemany("UPDATE postings SET entries=? WHERE bucket=?",
                                  zip(blobs, kept_buckets.tolist()))
            emptied = np.setdiff1d(touched, kept_buckets)
            self.conn.executemany("DELETE FROM postings WHERE bucket=?", ((b,) for b in emptied.tolist()))

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hashes, song_ids, frames) of every posting in the index (a full scan)."""
        rows = self._read("SELECT bucket, entries FROM postings")
        return self._locate(*decode_postings(np.array([r[0] for r in rows], np.uint32), [r[1] for r in rows]))

    def timeline(self) -> Timeline:
        """Where the songs lie on the timeline, read from the file now."""
        return self._timeline_of("1", ())

    def _timeline_of(self, condition: str, params) -> Timeline:
        """The timeline of the songs matching an SQL condition."""
        rows = self._read("SELECT timeline_start, timeline_start + timeline_frames, id FROM songs "
                          f"WHERE timeline_start IS NOT NULL AND {condition} ORDER BY timeline_start", params)
        starts, ends, ids = np.asarray(rows, np.int64).reshape(-1, 3).T
        # The end of the songs read, not meta's timeline_end: a song added between two reads must lie past it.
        return Timeline(starts, ends, ids, int(ends.max()) if ends.size else 0)

    def _locate(self, hash_index: np.ndarray, timeline_frames: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hash_index, song_ids, frames) of the postings at these timeline frames that lie in a song. The song list is
        cached and read again only when a posting lies past its end (another process added songs since); postings
        of songs removed since fall in gaps and are dropped."""
        if self._timeline is None or (timeline_frames.size and int(timeline_frames.max()) >= self._timeline.end):
            self._timeline = self.timeline()
        inside, song_ids, frames = self._timeline.locate(timeline_frames)
        if song_ids.size < hash_index.size:  # some lie in the gap of a removed song
            hash_index = hash_index[inside]
        return hash_index, song_ids, frames

    # --- statistics -------------------------------------------------------------------------------------------
    def stats(self) -> dict:
        n_songs, total_s, n_hashes = self._read(
            "SELECT COUNT(*), COALESCE(SUM(duration_s), 0), COALESCE(SUM(n_hashes), 0) FROM songs")[0]
        postings_bytes = self._read("SELECT COALESCE(SUM(LENGTH(entries)), 0) FROM postings")[0][0]
        peaks_bytes = self._read("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM peaks")[0][0]
        file_bytes = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())
        return {
            "path": str(self.path),
            "songs": n_songs,
            "duration_s": round(total_s, 1),
            "hashes": n_hashes,
            "postings_bytes": postings_bytes,
            "peaks_bytes": peaks_bytes,
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


def _use_wal(conn: sqlite3.Connection) -> None:
    """Switch the file to WAL mode. The switch needs the file to itself and SQLite answers "locked" at once,
    without waiting, while another process is creating the same index: retry for up to BUSY_TIMEOUT_S."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


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
