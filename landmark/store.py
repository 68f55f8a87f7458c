"""Where the landmark engine keeps its data: postings behind a small storage interface, and songs' peaks.

`PostingStore` is what the engine asks of a posting store: add a song's postings, look up a batch of keys, remove
songs, count songs and report sizes. It speaks storage (keys, songs, frames), not voting, so another backend (a
distributed key-value store, for libraries beyond one machine) can implement it.

`SQLitePostingStore` is the embedded implementation, in the index file (`lmprint.catalogue`):

- `postings`: an inverted index. Row key `bucket = hash >> suffix_bits`; the row's blob lists the bucket's
  postings in timeline order (`landmark.postings`). A row holds 16 hashes while keys hold few postings, then 4,
  then 1 as the library grows (`LAYOUT_STEPS`): the index is then rewritten once into a table of the new layout
  (`postings_4`, `postings_1`), named in `meta` (`row_suffix_bits`).
- each song's place on the **timeline** (`landmark.timeline`), in the catalogue's `songs` rows
  (`timeline_start`, `timeline_frames`), and the timeline's end in `meta` (`timeline_end`).

`PeakStore` keeps each song's peaks (`peaks` table, `landmark.peak_codec`), which verification reads.

Adding a song is one short write transaction (the caller's): its catalogue row, its postings appended to each
bucket it touches, and its peaks. A crash mid-song rolls the whole song back.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lmprint.catalogue import SCHEMA_VERSION, Catalogue
from lmprint.errors import IndexFileError

from . import peak_codec
from . import postings as codec
from .arrays import run_starts
from .hashes import HASH_BITS
from .timeline import TIMELINE_END, Timeline

ROWS_PER_SCAN = 8192
"""Rows read at a time when a removal scans the postings."""
KEYS_PER_STATEMENT = 900
"""Buckets asked for per SELECT (SQLite allows 999 parameters)."""
LAYOUT_STEPS = ((4.0, 2), (64.0, 0))
"""(postings per possible hash, suffix bits): once the index holds this many postings per 21-bit hash on
average, rows hold 2^suffix_bits hashes. Grouping hashes saves SQLite's ~10 B a row while keys hold a few
postings, but a lookup reads a whole row, and an append rewrites one: with 16 hashes a row, a query reads 16×
the postings it asks for. 4 a row from about 1,500 songs, 1 a row from about 25,000 (docs/design.md)."""
GREEDY_ROUNDS = 4
"""Rounds of `within_budget`'s greedy choice: after the first, little of the budget is left to fill."""
SMALL_ROW_BYTES = 192
"""A budgeted lookup reads rows up to this size (64 postings) with the sizes of the others, in one pass: reading
them costs about what asking their size does. Only the larger rows wait for the budget's choice."""


@dataclass(frozen=True)
class SongPostings:
    """One song's postings, to store: hash `hashes[i]` at frame `frames[i]` of song `song_id`."""

    song_id: int
    hashes: np.ndarray  # uint32
    frames: np.ndarray  # uint32


@dataclass(frozen=True)
class Postings:
    """The postings found for a batch of keys: posting i is `keys[key_index[i]]` at `frames[i]` of song
    `song_ids[i]`."""

    key_index: np.ndarray  # int64
    song_ids: np.ndarray  # int64
    frames: np.ndarray  # int64, frames within the song

    @classmethod
    def empty(cls) -> Postings:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


class PostingStore(Protocol):
    """The storage a landmark index needs. `add` and `remove` run inside the caller's write transaction."""

    def add(self, songs: Sequence[SongPostings]) -> None:
        """Store songs' postings: for each, hash `hashes[i]` at frame `frames[i]` of the song."""

    def lookup(self, keys: np.ndarray, priority: np.ndarray | None = None, max_postings: int = 0) -> Postings:
        """Every posting of the given keys, which must be ascending and distinct. With a `priority` per key and a
        `max_postings` budget, the keys whose postings do not all fit are read by falling priority per posting,
        until the budget is spent (`within_budget`); the rest are left out."""

    def remove(self, song_ids: Sequence[int]) -> None:
        """Drop every posting of these songs."""

    def scan(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every posting as (hashes, song ids, frames), in batches in key order; no key is split between two."""

    def song_count(self) -> int:
        """Songs that have postings."""

    def stats(self) -> dict:
        """Sizes, for `lmprint stats`: at least `postings_bytes`."""


class SQLitePostingStore:
    """`PostingStore` in the index file: bucket rows of 16 hashes, postings located by timeline frame."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.conn = catalogue.conn
        self._timeline: Timeline | None = None
        self._known_row_ends: dict[int, int] = {}  # bucket → its row's last timeline frame (see `_row_ends`)
        self._known_version = None
        self._song_count: tuple[tuple[int, int], int] | None = None  # ((data_version, total_changes), count)

    @staticmethod
    def create(catalogue: Catalogue) -> None:
        """The store's table and its meta entry (call inside a write transaction); idempotent."""
        catalogue.conn.execute("CREATE TABLE IF NOT EXISTS [postings] ([bucket] INTEGER PRIMARY KEY, "
                               "[entries] BLOB NOT NULL)")
        catalogue.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('timeline_end', '0')")

    def add(self, songs: Sequence[SongPostings]) -> None:
        """Each song goes after the last on the timeline; its postings are appended to their rows. A batch of
        songs appends to each row once: a row's append rewrites it, so bulk loads should come in batches."""
        if not songs:
            return
        layout, table = self._layout()
        end = int(self.catalogue.meta("timeline_end") or 0)
        all_hashes, all_frames = [], []
        for song in songs:
            span = int(song.frames.max()) + 1 if song.frames.size else 0
            if end + span >= TIMELINE_END:
                raise IndexFileError(f"{self.catalogue.path} is full ({TIMELINE_END:,} frames of audio)")
            self.conn.execute("UPDATE songs SET n_hashes=?, timeline_start=?, timeline_frames=? WHERE id=?",
                              (int(song.hashes.size), end, span, song.song_id))
            all_hashes.append(np.asarray(song.hashes))
            all_frames.append(end + np.asarray(song.frames, np.int64))
            end += span
        self.catalogue.set_meta("timeline_end", str(end))
        hashes, timeline_frames = np.concatenate(all_hashes), np.concatenate(all_frames)
        buckets, rows = np.unique(layout.bucket_of(hashes), return_inverse=True)
        buckets, blobs = codec.encode(hashes, timeline_frames, self._row_ends(buckets, layout, table), layout)
        self.conn.executemany(
            f"INSERT INTO {table}(bucket, entries) VALUES (?, ?) "
            "ON CONFLICT(bucket) DO UPDATE SET entries = CAST(entries || excluded.entries AS BLOB)",
            zip(buckets.tolist(), blobs))
        new_ends = dict(zip(buckets.tolist(), codec.last_frames(rows.reshape(-1), timeline_frames,
                                                                 buckets.size).tolist()))
        self.catalogue.after_commit(lambda: self._known_row_ends.update(new_ends))  # the rows' ends, once they are
        self._relayout_if_grown(layout, table)

    def lookup(self, keys: np.ndarray, priority: np.ndarray | None = None, max_postings: int = 0) -> Postings:
        """A row is read whole: the budget chooses rows, by their asked keys' summed priority per (estimated) asked
        posting."""
        wanted = np.asarray(keys, np.uint32)
        if wanted.size == 0:
            return Postings.empty()
        if (wanted[1:] <= wanted[:-1]).any():
            raise ValueError("lookup needs ascending, distinct keys")
        with self.catalogue.snapshot():  # the layout and the rows as of one moment
            layout, table = self._layout()
            # A row holds the postings of 2^suffix_bits hashes. Per row found and suffix: was it asked for, and if
            # so its index in `wanted`, the row's first asked index plus the asked suffixes below it.
            firsts = run_starts(wanted >> layout.suffix_bits)
            buckets = wanted[firsts] >> layout.suffix_bits
            asked_suffixes = np.bitwise_or.reduceat(np.left_shift(np.uint32(1), wanted & layout.suffix_mask), firsts)
            if priority is None or max_postings <= 0:
                found_buckets, blobs = self._rows(buckets, table)
            else:
                asked_per_row = np.diff(np.r_[firsts, wanted.size]) / (1 << layout.suffix_bits)
                found_buckets, blobs = self._rows_within(
                    buckets, np.add.reduceat(np.asarray(priority, np.float64), firsts), asked_per_row, max_postings,
                    table)
        rows, suffixes, timeline_frames = codec.decode_rows(blobs, layout)
        slot = np.searchsorted(buckets, found_buckets)
        asked = ((asked_suffixes[slot, None] >> np.arange(1 << layout.suffix_bits, dtype=np.uint32)) & 1
                 ).astype(np.int64)
        index = (np.cumsum(asked, axis=1) - asked + firsts[slot, None]).ravel()
        cell = (rows << layout.suffix_bits) | suffixes
        keep = asked.ravel()[cell].astype(bool)
        return self._locate(index[cell[keep]], timeline_frames[keep])

    def remove(self, song_ids: Sequence[int]) -> None:
        """Rewrite the rows holding postings of these songs (a full scan of the postings, in slices)."""
        if not song_ids:
            return
        doomed = self._timeline_of(f"id IN ({','.join('?' * len(song_ids))})", list(song_ids))
        self._timeline = None
        if doomed.starts.size == 0:
            return
        self._known_row_ends = {}
        layout, table = self._layout()
        for hashes, frames in self._row_slices(layout, table):
            gone, _, _ = doomed.locate(frames)
            touched = np.unique(layout.bucket_of(hashes[gone]))
            kept = ~gone & np.isin(layout.bucket_of(hashes), touched)
            kept_buckets, blobs = codec.encode(hashes[kept], frames[kept], layout=layout)
            self.conn.executemany(f"UPDATE {table} SET entries=? WHERE bucket=?", zip(blobs, kept_buckets.tolist()))
            emptied = np.setdiff1d(touched, kept_buckets)
            self.conn.executemany(f"DELETE FROM {table} WHERE bucket=?", ((b,) for b in emptied.tolist()))

    def song_count(self) -> int:
        """Counted again only when the file has changed since (`PRAGMA data_version` for other connections'
        commits, `total_changes` for this one's): at 100,000 songs a count costs a query several milliseconds."""
        version = (self.conn.execute("PRAGMA data_version").fetchone()[0], self.conn.total_changes)
        if self._song_count is not None and self._song_count[0] == version:
            return self._song_count[1]
        count = int(self.catalogue.read("SELECT COUNT(*) FROM songs WHERE n_hashes > 0")[0][0])
        # not inside a write transaction of this connection's own: a rollback changes neither number
        self._song_count = None if self.conn.in_transaction else (version, count)
        return count

    def stats(self) -> dict:
        hashes, = self.catalogue.read("SELECT COALESCE(SUM(n_hashes), 0) FROM songs")[0]
        with self.catalogue.snapshot():  # the layout and its table as of one moment
            layout, table = self._layout()
            postings_bytes, = self.catalogue.read(f"SELECT COALESCE(SUM(LENGTH(entries)), 0) FROM {table}")[0]
        return {"hashes": hashes, "postings_bytes": postings_bytes, "hashes_per_row": 1 << layout.suffix_bits}

    def scan(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Rows are read `ROWS_PER_SCAN` at a time, in bucket order; a row holds whole keys."""
        timeline = self.timeline()
        for hashes, timeline_frames in self._row_slices(*self._layout()):
            inside, song_ids, frames = timeline.locate(timeline_frames)
            yield hashes[inside], song_ids, frames

    def _row_slices(self, layout: codec.RowLayout, table: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(hashes, timeline frames) of every posting, `ROWS_PER_SCAN` rows at a time in bucket order. Each slice
        is read when asked for, so a caller may rewrite the rows of the slices it has seen."""
        after = -1
        while True:
            rows = self.catalogue.read(f"SELECT bucket, entries FROM {table} WHERE bucket > ? ORDER BY bucket "
                                       "LIMIT ?", (after, ROWS_PER_SCAN))
            if not rows:
                return
            after = rows[-1][0]
            yield codec.decode(np.array([row[0] for row in rows], np.uint32), [row[1] for row in rows], layout)

    def all_postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(hashes, song ids, frames) of every posting in the store (a full scan)."""
        parts = list(self.scan())
        if not parts:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64)
        return tuple(np.concatenate(column) for column in zip(*parts))  # type: ignore[return-value]

    def timeline(self) -> Timeline:
        """Where the songs lie on the timeline, read from the file now."""
        return self._timeline_of("1", ())

    # --- internals ------------------------------------------------------------------------------------------
    def _layout(self) -> tuple[codec.RowLayout, str]:
        """The rows' layout and the table that holds them, as the file records them now."""
        bits = int(self.catalogue.meta("row_suffix_bits") or codec.SIXTEEN_A_ROW.suffix_bits)
        return codec.RowLayout(bits), _table_of(bits)

    def _relayout_if_grown(self, layout: codec.RowLayout, table: str) -> None:
        """Rewrite the postings into a table of fewer hashes a row once the index has grown past a step of
        `LAYOUT_STEPS` (inside the caller's write transaction: readers see the old table until it commits)."""
        if layout.suffix_bits <= min(bits for _, bits in LAYOUT_STEPS):
            return  # rows are as fine as they get: no need to count the postings on every add
        postings, = self.catalogue.read("SELECT COALESCE(SUM(n_hashes), 0) FROM songs")[0]
        wanted = layout.suffix_bits
        for per_hash, bits in LAYOUT_STEPS:
            if postings >= per_hash * (1 << HASH_BITS):
                wanted = min(wanted, bits)
        if wanted == layout.suffix_bits:
            return
        new_layout, new_table = codec.RowLayout(wanted), _table_of(wanted)
        self.conn.execute(f"CREATE TABLE [{new_table}] ([bucket] INTEGER PRIMARY KEY, [entries] BLOB NOT NULL)")
        for hashes, frames in self._row_slices(layout, table):  # a slice holds whole rows, so whole new rows
            buckets, blobs = codec.encode(hashes, frames, layout=new_layout)
            self.conn.executemany(f"INSERT INTO {new_table}(bucket, entries) VALUES (?, ?)",
                                  zip(buckets.tolist(), blobs))
        self.conn.execute(f"DROP TABLE [{table}]")
        self.catalogue.set_meta("row_suffix_bits", str(wanted))
        self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")  # an lmprint that knows one table refuses it
        self._known_row_ends = {}
        self.catalogue.after_commit(lambda: self._known_row_ends.clear())  # after the old rows' ends are noted

    def _rows(self, buckets: np.ndarray, table: str) -> tuple[np.ndarray, list[bytes]]:
        """(buckets, blobs) of the rows of these buckets that exist, in no particular order."""
        rows: list[tuple] = []
        for start in range(0, buckets.size, KEYS_PER_STATEMENT):
            part = buckets[start:start + KEYS_PER_STATEMENT].tolist()
            rows += self.catalogue.read(
                f"SELECT bucket, entries FROM {table} WHERE bucket IN ({','.join('?' * len(part))})", part)
        return np.asarray([row[0] for row in rows], np.uint32), [row[1] for row in rows]

    def _rows_within(self, buckets: np.ndarray, priority: np.ndarray, asked_share: np.ndarray, max_postings: int,
                     table: str) -> tuple[np.ndarray, list[bytes]]:
        """(buckets, blobs) of the rows of these buckets that a budget of `max_postings` reads (see `lookup`). A
        row counts for the postings of its asked keys, estimated as its postings × `asked_share` (the share of
        its keys asked for): decoding a row is cheap, voting on a posting is not. One pass reads the small rows
        and the sizes of the others; a second reads the large rows chosen."""
        rows: list[tuple] = []
        for start in range(0, buckets.size, KEYS_PER_STATEMENT):
            part = buckets[start:start + KEYS_PER_STATEMENT].tolist()
            rows += self.catalogue.read(
                f"SELECT bucket, LENGTH(entries), CASE WHEN LENGTH(entries) <= {SMALL_ROW_BYTES} THEN entries END "
                f"FROM {table} WHERE bucket IN ({','.join('?' * len(part))})", part)
        if not rows:
            return np.zeros(0, np.uint32), []
        found, sizes, blobs = zip(*rows)
        found_buckets = np.asarray(found, np.int64)
        slot = np.searchsorted(buckets, found_buckets)
        chosen = within_budget(priority[slot], np.asarray(sizes, np.int64) // codec.WORD_BYTES * asked_share[slot],
                               max_postings)
        kept = np.flatnonzero(chosen).tolist()
        large = [i for i in kept if blobs[i] is None]
        large_buckets, large_blobs = self._rows(found_buckets[large].astype(np.uint32), table)
        fetched = dict(zip(large_buckets.tolist(), large_blobs))
        return (found_buckets[kept].astype(np.uint32),
                [blobs[i] if blobs[i] is not None else fetched[found[i]] for i in kept])

    def _row_ends(self, buckets: np.ndarray, layout: codec.RowLayout, table: str) -> np.ndarray:
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
            found_buckets, blobs = self._rows(unknown, table)
            rows, _, frames = codec.decode_rows(blobs, layout)
            known.update(dict.fromkeys(unknown.tolist(), 0))
            known.update(zip(found_buckets.tolist(), codec.last_frames(rows, frames, len(blobs)).tolist()))
        return np.array([known[b] for b in buckets.tolist()], np.int64)

    def _timeline_of(self, condition: str, params: Sequence) -> Timeline:
        """The timeline of the songs matching an SQL condition."""
        rows = self.catalogue.read("SELECT timeline_start, timeline_start + timeline_frames, id FROM songs "
                                   f"WHERE timeline_start IS NOT NULL AND {condition} ORDER BY timeline_start",
                                   params)
        # The end of the songs read, not meta's timeline_end: a song added between two reads must lie past it.
        return Timeline.of(rows)

    def _locate(self, key_index: np.ndarray, timeline_frames: np.ndarray) -> Postings:
        """The postings at these timeline frames that lie in a song. The song list is cached and read again only
        when a posting lies past its end (another process added songs since); postings of songs removed since
        fall in gaps and are dropped."""
        if self._timeline is None or (timeline_frames.size and int(timeline_frames.max()) >= self._timeline.end):
            self._timeline = self.timeline()
        inside, song_ids, frames = self._timeline.locate(timeline_frames)
        if song_ids.size < key_index.size:  # some lie in the gap of a removed song
            key_index = key_index[inside]
        return Postings(key_index, song_ids, frames)


def _table_of(suffix_bits: int) -> str:
    """The postings table of a layout: `postings` for 16 hashes a row (every index made before layouts changed)."""
    return "postings" if suffix_bits == codec.SIXTEEN_A_ROW.suffix_bits else f"postings_{1 << suffix_bits}"


def within_budget(priority: np.ndarray, postings: np.ndarray, max_postings: int) -> np.ndarray:
    """Which units of a read (keys, rows) to take, a boolean mask: all when their postings fit in `max_postings`,
    else greedily by falling `priority / postings`, passing over a unit too large for what is left (in a few
    vectorised rounds, each taking the longest run of the remaining units that fits)."""
    postings = np.asarray(postings, np.float64)
    if postings.sum() <= max_postings:
        return np.ones(postings.size, bool)
    order = np.argsort(-(np.asarray(priority, np.float64) / np.maximum(postings, 1)), kind="stable")
    chosen = np.zeros(postings.size, bool)
    left = max_postings
    for _ in range(GREEDY_ROUNDS):
        order = order[postings[order] <= left]
        taken = order[np.cumsum(postings[order]) <= left]
        if taken.size == 0:
            break
        chosen[taken] = True
        left -= postings[taken].sum()
        order = order[taken.size:]
    return chosen


def _implements_the_interface(store: SQLitePostingStore) -> PostingStore:
    """The type checker confirms here that the SQLite store has every method of `PostingStore`."""
    return store


class PeakStore:
    """Each song's peaks, compressed, one row per song: what verification reads."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue

    @staticmethod
    def create(catalogue: Catalogue) -> None:
        """The `peaks` table (call inside a write transaction); idempotent. Its rows go with their song."""
        catalogue.conn.execute("CREATE TABLE IF NOT EXISTS [peaks] ([song_id] INTEGER PRIMARY KEY "
                               "REFERENCES [songs]([id]) ON DELETE CASCADE, [data] BLOB NOT NULL)")

    def put(self, song_id: int, frames: np.ndarray, bins: np.ndarray) -> None:
        self.catalogue.conn.execute("INSERT OR REPLACE INTO peaks(song_id, data) VALUES (?, ?)",
                                    (song_id, peak_codec.encode(frames, bins)))

    def get(self, song_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Stored peaks (frames, bins) of these songs, for those that have them."""
        ids = [int(i) for i in song_ids]
        if not ids:
            return {}
        rows = self.catalogue.read(f"SELECT song_id, data FROM peaks WHERE song_id IN ({','.join('?' * len(ids))})",
                                   ids)
        return {song_id: peak_codec.decode(data) for song_id, data in rows}

    def remove(self, song_ids: Sequence[int]) -> None:
        """Drop these songs' peaks (tables made before peaks referenced songs do not cascade)."""
        if song_ids:
            self.catalogue.conn.execute(f"DELETE FROM peaks WHERE song_id IN ({','.join('?' * len(song_ids))})",
                                        list(song_ids))

    def stats(self) -> dict:
        return {"peaks_bytes": self.catalogue.read("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM peaks")[0][0]}
