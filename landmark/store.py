"""Where the landmark engine keeps its data: postings behind a small storage interface, and songs' peaks.

`PostingStore` is what the engine asks of a posting store: add songs' postings, look up a batch of keys, remove
songs, scan every posting in key order, count songs, compact and report sizes. It speaks storage (keys, songs,
frames), not voting, so another backend (a distributed key-value store, for libraries beyond one machine) can
implement it and be handed to `Index` (`Index(path, postings=...)`); `tests/test_store_contract.py` holds every
implementation to the same tests, one of them a store in memory that shows how little the interface asks.

`SQLitePostingStore` is the embedded implementation, in the index file (`lmprint.catalogue`) and, once the index
is no longer small, in sealed segments beside it (`landmark.segments`):

- the **tail**: `postings`, an inverted index in SQLite rows. Row key `bucket = hash >> suffix_bits`; the row's
  blob lists the bucket's postings in timeline order (`landmark.postings`), 16 hashes a row. Whenever it holds
  `TAIL_POSTINGS`, the tail is sealed into a segment; once the segments hold `ONE_HASH_TAIL_FROM`, its rows hold
  one hash each (`postings_1`), with a mask of the buckets it holds (`tail_buckets`): a lookup then asks SQLite
  for few rows, each a B-tree search. A row's first gap counts from the tail's first frame (`tail_base_frame`,
  the end of the sealed timeline), as a segment's does from its own, rather than from 0: a late row's first
  posting then takes one word rather than an escape's three.
- **segments**: immutable memory-mapped files, listed in the `segments` table, oldest first. Each holds at
  least `MERGE_RATIO` times the postings of all newer ones together; a new segment that breaks this is merged
  with the newer ones and the oldest it outgrows (dropping removed songs' postings), so a library of n postings
  has O(log n) segments, in practice 1 to 4, and a lookup reads each of them through its directory.
- each song's place on the **timeline** (`landmark.timeline`), in the catalogue's `songs` rows
  (`timeline_start`, `timeline_frames`), and the timeline's end in `meta` (`timeline_end`). The places of the
  songs sealed so far are also kept as one blob (`sealed_timeline`, rewritten when the tail is sealed or a sealed
  song removed): a reader reads it and the few rows past it, not 100,000 rows.

`PeakStore` keeps each song's peaks (`peaks` table, `landmark.peak_codec`), which verification reads.

Adding a song is one write transaction (the caller's): its catalogue row, its postings appended to the tail (or
sealed), and its peaks. A segment is written in full and flushed before the transaction that lists it commits, so
a crash mid-song rolls the whole song back, and can at worst leave an unlisted file, which the next add, removal
or `compact` deletes (a transaction that rolls back deletes it at once).
Readers see the tail and the listed segments as of one moment; a segment merged away is deleted once the merge
commits, and a reader that had not mapped it yet lists the segments again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lmprint.catalogue import Catalogue, id_batches
from lmprint.errors import REBUILD, ChangedWhileRead, IndexFileError, damaged
from lmprint.files import file_size

from . import peak_codec, segments
from . import postings as codec
from .arrays import argsort_stable, run_starts
from .hashes import HASH_BITS
from .timeline import TIMELINE_END, Timeline

ROWS_PER_SCAN = 8192
"""Tail rows read at a time when a removal scans them."""
TAIL_POSTINGS = 1 << 18
"""The tail is sealed into a segment once it holds this many postings (about 60 songs), and a bulk batch this
large goes straight into one: a segment costs about 3.3 bytes a posting with its directory, a tail row of 16
hashes 4.5–6 (SQLite's row headers and pages' slack), so only a library smaller than this stays one file."""
ONE_HASH_TAIL_FROM = 1 << 21
"""Once the segments hold this many postings (about 480 songs), the tail's rows hold one hash each
(`postings_1`), with a mask of the buckets it holds (`tail_buckets`): a lookup then asks SQLite for few rows,
each a B-tree search. Below it the tail keeps 16 hashes a row, since one a row costs about 12 bytes a posting,
which a small library would notice."""
MERGE_RATIO = 4
"""Each segment holds at least this many times the postings of all newer ones together, else they merge: at most
about log4 of (postings ÷ TAIL_POSTINGS) segments (1–2 for a bulk-built library, up to 4 for one added song by
song), each posting rewritten 6–8 times up to 100,000 songs (docs/design.md)."""
HASHES_PER_PART = 1 << 14
"""Hashes sealed, merged or scanned at a time: memory stays a fraction (1/128) of the postings."""
SEGMENT_OPEN_ATTEMPTS = 3
"""Lookups that list the segments again when one listed has been merged away before this reader mapped it."""
SEALED_TIMELINE_SCHEMA = 7
"""The schema version from which the sealed songs' places are kept in one blob: an lmprint of it or newer reads
the blob, however it was rewritten (a removal's rewrite leaves a file of it at its version)."""
ZLIB_PEAKS_SCHEMA = 7
"""The schema version from which peaks are stored in zlib (`peak_codec`): an lmprint of it or newer decodes them."""

DECODED_PEAKS_KEPT_BYTES = 32 << 20
"""How much of the songs' decoded peaks (with their stored bytes, the keys) a `PeakStore`, one per open index,
keeps, the most recently read (about 1,700 of the public corpus's songs; a 4-minute song's take 75 KB):
verification reads some 80 songs' peaks a query, and an index answering many (`serve`, `monitor`, a folder of
clips) meets the same songs again, as chance candidates do in a large library (0.7 of the reads at 10,000
songs, docs/tuning.md)."""
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

    def compact(self) -> None:
        """Give back the space of removed songs and make lookups cheap again after a large change (the engine
        calls it after a batch that changed a fifth of the library); a store that keeps itself compact does
        nothing."""

    def stats(self) -> dict:
        """Sizes, for `lmprint stats`: at least `postings_bytes` (what the postings take) and `segment_bytes` (what
        of that lies in files beside the index file, counted in its size on disk; 0 for a store kept elsewhere)."""

    def close(self) -> None:
        """Release what the store holds open (maps, connections of its own); it is not used after."""


class SQLitePostingStore:
    """`PostingStore` in the index file and the sealed segments beside it (see the module docstring)."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.folder = segments.folder_of(catalogue.path)
        self._timeline: Timeline | None = None
        self._timeline_version: tuple[int, int, int] | None = None  # (generation, data_version, total_changes)
        self._known_row_ends: dict[int, int] = {}  # bucket → its row's last timeline frame (see `_row_ends`)
        self._known_version = None
        self._open: dict[str, segments.Segment] = {}  # file name → the segment, mapped
        self._listing_changed_in = 0  # the write transaction (`Catalogue.writes_begun`) that last changed the listing
        self._check_segments_present()

    @property
    def conn(self) -> sqlite3.Connection:
        return self.catalogue.conn  # the catalogue's, which it may open again (`Catalogue.generation`)

    def _check_segments_present(self) -> None:
        """Refuse, in one line, an index whose listed segments are not beside it (the file copied or moved
        without its folder), before a command reads or writes it: a few `stat`s. A segment merged away between
        the listing and its `stat` is listed again. An index that lists none while songs with postings lie
        before its sealed end lost its listing: refused too, before a seal could take the unlisted files for a
        crash's and delete them (`_remove_unlisted`)."""
        for _ in range(SEGMENT_OPEN_ATTEMPTS):
            with self.catalogue.snapshot():
                names = [name for name, _ in self._listed()]
                sealed_end = self.catalogue.meta_int("sealed_end", 0)
                unlisted_songs = not names and sealed_end > 0 and self.catalogue.read(
                    "SELECT 1 FROM songs WHERE timeline_start < ? AND n_hashes > 0 LIMIT 1", (sealed_end,))
            if unlisted_songs:
                raise damaged(self.catalogue.path, "its sealed songs' segments are not listed")
            if all((self.folder / name).is_file() for name in names):
                return
        raise self._missing_segment()

    @staticmethod
    def create(catalogue: Catalogue) -> None:
        """The store's tables and meta entries (call inside a write transaction); idempotent."""
        _create_tail_table(catalogue.conn, codec.SIXTEEN_A_ROW.suffix_bits)
        catalogue.conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('timeline_end', '0')")
        _create_segments_table(catalogue)

    def add(self, songs: Sequence[SongPostings]) -> None:
        """Each song goes after the last on the timeline. Its postings are appended to the tail's rows (a batch
        of songs appends to each row once: a row's append rewrites it, so bulk loads should come in batches),
        which are sealed into a segment once they hold `TAIL_POSTINGS`; a batch that large is sealed at once.
        Segments then merge (`MERGE_RATIO`)."""
        if not songs:
            return
        self._before_changing()
        _create_segments_table(self.catalogue)
        tail = self._tail_postings()  # before these songs count (a file that does not count its tail sums songs)
        end = self.catalogue.meta_int("timeline_end", 0)
        all_hashes, all_frames = [], []
        for song in songs:
            span = int(song.frames.max()) + 1 if song.frames.size else 0
            if end + span >= TIMELINE_END:
                raise IndexFileError(f"{self.catalogue.path} is full ({TIMELINE_END:,} frames of audio)")
            self.conn.execute("UPDATE songs SET timeline_start=?, timeline_frames=? WHERE id=?",
                              (end, span, song.song_id))
            all_hashes.append(np.asarray(song.hashes))
            all_frames.append(end + np.asarray(song.frames, np.int64))
            end += span
        self.catalogue.set_meta("timeline_end", str(end))
        hashes, timeline_frames = np.concatenate(all_hashes), np.concatenate(all_frames)
        if hashes.size >= TAIL_POSTINGS:
            # what the tail holds goes first, so segments stay in timeline order; the seal's `sealed_end`, tail base
            # and sealed timeline are already `timeline_end`, these songs included; the tail is as it was before them
            self.catalogue.set_meta("tail_postings", str(tail))
            self._seal_tail()
            order = np.argsort(hashes, kind="stable")
            self._new_segment(_parts_of(hashes[order], timeline_frames[order]), hashes.size,
                              int(timeline_frames.min()))
            self._choose_tail_layout()  # the seal chose it before this segment counted
        else:
            self._append_to_tail(hashes, timeline_frames)
            tail += hashes.size
            self.catalogue.set_meta("tail_postings", str(tail))
            if tail >= TAIL_POSTINGS:
                self._seal_tail()
        self._merge_outgrown()

    def _append_to_tail(self, hashes: np.ndarray, timeline_frames: np.ndarray) -> None:
        layout, table = self._layout()
        buckets, rows = np.unique(layout.bucket_of(hashes), return_inverse=True)
        if self._listed():  # the tail of a sealing store: note which buckets it holds
            held = self._tail_buckets(layout)
            held = np.zeros(1 << (HASH_BITS - 3 - layout.suffix_bits), np.uint8) if held is None else held.copy()
            np.bitwise_or.at(held, buckets >> 3, (128 >> (buckets & 7)).astype(np.uint8))
            self.conn.execute("INSERT OR REPLACE INTO tail_buckets(id, bits) VALUES (0, ?)", (held.tobytes(),))
        ends = self._row_ends(buckets, layout, table, self._tail_base())
        buckets, blobs = codec.encode(hashes, timeline_frames, ends, layout)
        self.conn.executemany(
            f"INSERT INTO {table}(bucket, entries) VALUES (?, ?) "
            "ON CONFLICT(bucket) DO UPDATE SET entries = CAST(entries || excluded.entries AS BLOB)",
            zip(buckets.tolist(), blobs))
        new_ends = dict(zip(buckets.tolist(), codec.last_frames(rows.reshape(-1), timeline_frames,
                                                                 buckets.size).tolist()))
        self.catalogue.after_commit(lambda: self._known_row_ends.update(new_ends))  # the rows' ends, once committed

    def lookup(self, keys: np.ndarray, priority: np.ndarray | None = None, max_postings: int = 0) -> Postings:
        """Rows (of the tail and of each segment) are read whole: the budget chooses rows, by their asked keys'
        priority per (estimated) asked posting, a key's priority shared among its rows by their sizes."""
        wanted = np.asarray(keys, np.uint32)
        if wanted.size == 0:
            return Postings.empty()
        if (wanted[1:] <= wanted[:-1]).any():
            raise ValueError("lookup needs ascending, distinct keys")
        for attempt in range(SEGMENT_OPEN_ATTEMPTS):
            try:
                return self._lookup(wanted, priority, max_postings)
            except FileNotFoundError:  # merged away since this reader listed it: list them again
                if attempt == SEGMENT_OPEN_ATTEMPTS - 1:
                    raise self._missing_segment() from None
            except ChangedWhileRead:  # read as immutable, and written meanwhile: read it anew
                if attempt == SEGMENT_OPEN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _lookup(self, wanted: np.ndarray, priority: np.ndarray | None, max_postings: int) -> Postings:
        budget = priority is not None and max_postings > 0
        with self.catalogue.snapshot():  # the tail, its layout and the segments as of one moment
            layout, table = self._layout()
            sealed = self._segments()
            tail_asked = _AskedRows.of(wanted, layout)
            small: list[bytes | None]
            # asking SQLite for a row costs about 1 µs a key, found or not: ask only the buckets the tail may hold
            maybe = self._tail_may_hold(tail_asked.buckets, layout) if sealed else tail_asked.buckets
            if maybe.size == 0:
                found, sizes, small = np.zeros(0, np.uint32), np.zeros(0, np.int64), []
            elif budget:
                found, sizes, small = self._tail_sizes(maybe, table)
            else:
                found, blobs = self._rows(maybe, table)
                sizes, small = np.zeros(found.size, np.int64), list(blobs)
            tail_slots = np.searchsorted(tail_asked.buckets, found)
            sources = [(tail_asked, tail_slots, sizes)]
            by_layout: dict[int, _AskedRows] = {}
            for segment in sealed:
                bits = segment.layout.suffix_bits
                asked = by_layout.setdefault(bits, _AskedRows.of(wanted, segment.layout))
                sizes = segment.sizes(asked.buckets)
                present = np.flatnonzero(sizes)
                sources.append((asked, present, sizes[present]))
            if budget:
                assert priority is not None
                chosen = np.split(_within_budget_of(sources, np.asarray(priority, np.float64), wanted.size,
                                                    max_postings),
                                  np.cumsum([slots.size for _, slots, _ in sources])[:-1])
            else:
                chosen = [np.ones(slots.size, bool) for _, slots, _ in sources]
            keep = np.flatnonzero(chosen[0])
            large = [i for i in keep.tolist() if small[i] is None]
            large_buckets, large_blobs = self._rows(found[large], table)
            fetched = dict(zip(large_buckets.tolist(), large_blobs))
            read_blobs = [blob if (blob := small[i]) is not None else fetched[int(found[i])] for i in keep.tolist()]
            rows, suffixes, frames = codec.decode_rows(read_blobs, layout)
            parts = [tail_asked.key_index(tail_slots[keep], rows, suffixes, frames + self._tail_base())]
            parts += _read_segments(sealed, sources[1:], chosen[1:])
        key_index = np.concatenate([part[0] for part in parts])
        timeline_frames = np.concatenate([part[1] for part in parts])
        return self._locate(key_index, timeline_frames)

    def remove(self, song_ids: Sequence[int]) -> None:
        """Rewrite the tail's rows holding postings of these songs (a scan of the tail, in slices). Their postings
        in segments stay until a merge or `compact` rewrites those: they lie in the songs' gap on the timeline,
        and lookups drop them."""
        if not song_ids:
            return
        self._before_changing()
        rows = np.concatenate([self._timeline_rows(f"id IN ({marks})", batch) for marks, batch in id_batches(song_ids)])
        doomed = Timeline.of(rows[np.argsort(rows[:, 0], kind="stable")])  # each batch is by start, not all
        self._timeline = None
        if doomed.starts.size == 0:
            return
        sealed_end = self.catalogue.meta_int("sealed_end", 0)  # the kept timeline's end, where there is one
        if (int(doomed.starts.min()) < sealed_end and self.catalogue.has_table("sealed_timeline")
                and self.catalogue.read("SELECT 1 FROM sealed_timeline")):  # a sealed song: kept without it
            self._keep_sealed_timeline(sealed_end, removed=doomed.song_ids.tolist())
        self._known_row_ends = {}
        layout, table = self._layout()
        base = self._tail_base()
        removed = 0
        for hashes, frames in self._row_slices(layout, table):
            gone, _, _ = doomed.locate(frames)
            removed += int(gone.sum())
            touched = np.unique(layout.bucket_of(hashes[gone]))
            kept = ~gone & np.isin(layout.bucket_of(hashes), touched)
            kept_buckets, blobs = codec.encode(hashes[kept], frames[kept], base, layout)
            self.conn.executemany(f"UPDATE {table} SET entries=? WHERE bucket=?", zip(blobs, kept_buckets.tolist()))
            emptied = np.setdiff1d(touched, kept_buckets)
            self.conn.executemany(f"DELETE FROM {table} WHERE bucket=?", ((b,) for b in emptied.tolist()))
        if removed and self.catalogue.meta("tail_postings") is not None:
            self.catalogue.set_meta("tail_postings", str(max(0, self._tail_postings() - removed)))

    def compact(self) -> None:
        """Delete any segment file that a crash left unlisted (first, holding the write lock: no other writer is
        making one, and the files this compaction unlists go only once it commits); then seal the tail and merge
        every segment into one, without the postings of songs removed since. One write transaction; no sealing for
        a store too small to seal."""
        with self.catalogue.write():
            _create_segments_table(self.catalogue)
            self._remove_unlisted()
            listed = self._listed()
            if listed or self._tail_postings() >= TAIL_POSTINGS:  # a file made before segments, too
                if self._tail_postings() > 0:
                    self._seal_tail()
                else:  # a file made before the sealed songs' timeline was kept
                    self._keep_sealed_timeline(self.catalogue.meta_int("sealed_end", 0))
                listed = self._listed()
                if len(listed) > 1 or self._dead_postings(listed):
                    self._merge([name for name, _ in listed])

    def close(self) -> None:
        """Unmap the segments this store has open (the catalogue's connection is its owner's to close)."""
        for segment in self._open.values():
            segment.close()
        self._open.clear()

    def song_count(self) -> int:
        """The songs on the timeline that have frames, which are those with postings (`_current_timeline`): at
        100,000 songs counting their rows costs a query 10-15 ms."""
        timeline = self._current_timeline()
        return int(np.count_nonzero(timeline.ends > timeline.starts))

    def stats(self) -> dict:
        """The `PostingStore` sizes; a listed segment that is cut or missing is refused in one line, as a query
        would meet it: its size alone would call a damaged index sound."""
        for attempt in range(SEGMENT_OPEN_ATTEMPTS):
            with self.catalogue.snapshot():  # the songs, the layout and its table as of one moment
                hashes, = self.catalogue.read("SELECT COALESCE(SUM(n_hashes), 0) FROM songs")[0]
                layout, table = self._layout()
                tail_bytes, = self.catalogue.read(f"SELECT COALESCE(SUM(LENGTH(entries)), 0) FROM {table}")[0]
                listed = self._listed()
                if self._segments_or_none(attempt) is None:
                    continue
            break
        segment_bytes = sum(file_size(self.folder / name) for name, _ in listed)  # merged away: gone, 0
        return {"hashes": hashes, "postings_bytes": tail_bytes + segment_bytes, "segment_bytes": segment_bytes,
                "segments": len(listed), "hashes_per_row": 1 << layout.suffix_bits}

    def scan(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """A range of `HASHES_PER_PART` hashes at a time, from the tail and every segment, as of one moment."""
        for attempt in range(SEGMENT_OPEN_ATTEMPTS):
            with self.catalogue.snapshot():
                layout, table = self._layout()
                timeline = self.timeline()
                sealed = self._segments_or_none(attempt)
                if sealed is None:
                    continue
                for first in range(0, 1 << HASH_BITS, HASHES_PER_PART):
                    parts = [self._tail_range(first, first + HASHES_PER_PART, layout, table)]
                    parts += [segment.hash_range(first, first + HASHES_PER_PART) for segment in sealed]
                    hashes = np.concatenate([part[0] for part in parts])
                    inside, song_ids, frames = timeline.locate(np.concatenate([part[1] for part in parts]))
                    if song_ids.size:
                        yield hashes[inside], song_ids, frames
                return

    def timeline(self) -> Timeline:
        """Where the songs lie on the timeline, read from the file now: the sealed songs' places from one blob
        (`sealed_timeline`), the rest from their rows. Reading 100,000 songs' rows costs 0.2 s, the blob a few ms."""
        with self.catalogue.snapshot():
            end = self.catalogue.meta_int("timeline_end", 0)  # past the last song listed when it was removed
            sealed = self._sealed_timeline()
            if sealed is None:
                return Timeline.of(self._timeline_rows("1", ()), end)
            rest = self._timeline_rows("timeline_start >= ?", (sealed[0],))
        return Timeline.of(np.concatenate([sealed[1], rest]), end)

    def _sealed_timeline(self) -> tuple[int, np.ndarray] | None:
        """(end frame, rows): the kept places of the songs that start before that frame, as `_timeline_rows`
        gives them; None for a file that keeps none, or whose `songs` rows there are fewer than it lists (a song
        deleted from the catalogue by other means than `remove`, such as another engine's removal): counting
        them through their index costs 3 ms at 100,000 songs. Songs are never added before the timeline's end,
        so a deletion is the only change a count can miss, and it never misses one."""
        kept = (self.catalogue.read("SELECT end_frame, songs FROM sealed_timeline")
                if self.catalogue.has_table("sealed_timeline") else [])
        if not kept:
            return None
        end_frame, blob = int(kept[0][0]), kept[0][1]
        if not isinstance(blob, bytes) or len(blob) % 24:
            raise damaged(self.catalogue.path, "the sealed songs' places do not decode")
        rows = np.frombuffer(blob, "<i8").reshape(-1, 3)
        starts, ends, song_ids = rows.T
        apart = bool((starts[1:] >= ends[:-1]).all())
        if not apart and (starts[1:] >= starts[:-1]).all():
            # by start, but a song without postings after the song of equal start, as a seal before 2026-12-06 could
            # keep them: put in order (anything else out of order is damage)
            rows = rows[np.lexsort((ends, starts))]
            starts, ends, song_ids = rows.T
            apart = bool((starts[1:] >= ends[:-1]).all())
        if rows.size and not (0 <= starts[0] and (ends >= starts).all() and apart
                              and ends[-1] <= end_frame and (song_ids > 0).all()):  # by start, apart, under its end
            raise damaged(self.catalogue.path, "the sealed songs' places do not decode")
        listed, = self.catalogue.read("SELECT COUNT(*) FROM songs WHERE timeline_start < ?", (end_frame,))[0]
        return (end_frame, rows) if listed == rows.shape[0] else None

    def _keep_sealed_timeline(self, end_frame: int, removed: Sequence[int] = ()) -> None:
        """Write the places of the songs that start before `end_frame` (none of `removed`) as the blob
        `timeline` reads: the blob's songs and, past its end, the rows of the songs sealed since."""
        sealed = self._sealed_timeline()
        if sealed is not None:
            rows = np.concatenate([sealed[1], self._timeline_rows("timeline_start >= ? AND timeline_start < ?",
                                                                  (sealed[0], end_frame))])
        else:
            rows = self._timeline_rows("timeline_start < ?", (end_frame,))
        if removed:
            rows = rows[~np.isin(rows[:, 2], np.asarray(removed, np.int64))]
        self.conn.execute("INSERT OR REPLACE INTO sealed_timeline(id, end_frame, songs) VALUES (0, ?, ?)",
                          (end_frame, rows.astype("<i8").tobytes()))
        if self.catalogue.schema_version < SEALED_TIMELINE_SCHEMA:
            self.catalogue.mark_current_schema()  # an lmprint that knows no blob refuses it

    # --- internals: the tail ----------------------------------------------------------------------------------
    def _layout(self) -> tuple[codec.RowLayout, str]:
        """The tail rows' layout and the table that holds them, as the file records them now."""
        bits = self.catalogue.meta_int("row_suffix_bits", codec.SIXTEEN_A_ROW.suffix_bits)
        return codec.RowLayout(bits), _table_of(bits)

    def _tail_base(self) -> int:
        """The timeline frame the tail rows' first gaps count from (0 in a file made before it did)."""
        return self.catalogue.meta_int("tail_base_frame", 0)

    def _tail_postings(self) -> int:
        """Postings in the tail's rows, as `meta` counts them (counted once for a file made before it did)."""
        counted = self.catalogue.meta_int("tail_postings", None)
        if counted is not None:
            return counted
        # the songs placed on the timeline: a batch being added has recorded its songs' hashes, not placed them
        total, = self.catalogue.read("SELECT COALESCE(SUM(n_hashes), 0) FROM songs WHERE timeline_start IS NOT NULL")[0]
        return max(0, int(total) - self._sealed_postings())

    def _tail_range(self, first_hash: int, end_hash: int, layout: codec.RowLayout, table: str
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, timeline frames) of the tail's postings of hashes in [first_hash, end_hash), whole rows."""
        return _decoded(self.catalogue.read(f"SELECT bucket, entries FROM {table} WHERE bucket >= ? AND bucket < ? "
                                            "ORDER BY bucket", (first_hash >> layout.suffix_bits,
                                                                end_hash >> layout.suffix_bits)), layout,
                        self._tail_base())

    def _row_slices(self, layout: codec.RowLayout, table: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(hashes, timeline frames) of every tail posting, `ROWS_PER_SCAN` rows at a time in bucket order. Each
        slice is read when asked for, so a caller may rewrite the rows of the slices it has seen."""
        after = -1
        while True:
            rows = self.catalogue.read(f"SELECT bucket, entries FROM {table} WHERE bucket > ? ORDER BY bucket "
                                       "LIMIT ?", (after, ROWS_PER_SCAN))
            if not rows:
                return
            after = rows[-1][0]
            yield _decoded(rows, layout, self._tail_base())

    def _rows(self, buckets: np.ndarray, table: str) -> tuple[np.ndarray, list[bytes]]:
        """(buckets, blobs) of the tail rows of these buckets that exist, in no particular order."""
        rows: list[tuple] = []
        for marks, part in id_batches(buckets):
            rows += self.catalogue.read(f"SELECT bucket, entries FROM {table} WHERE bucket IN ({marks})", part)
        return np.asarray([row[0] for row in rows], np.uint32), [row[1] for row in rows]

    def _tail_sizes(self, buckets: np.ndarray, table: str) -> tuple[np.ndarray, np.ndarray, list[bytes | None]]:
        """(buckets found, ascending; their rows' sizes in words; the blob of each row up to `SMALL_ROW_BYTES`,
        else None): one pass reads the small rows and the sizes of the others."""
        rows: list[tuple] = []
        for marks, part in id_batches(buckets):
            rows += self.catalogue.read(
                f"SELECT bucket, LENGTH(entries), CASE WHEN LENGTH(entries) <= {SMALL_ROW_BYTES} THEN entries END "
                f"FROM {table} WHERE bucket IN ({marks}) ORDER BY bucket", part)
        if not rows:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64), []
        found, sizes, blobs = zip(*rows)
        return (np.asarray(found, np.uint32), np.asarray(sizes, np.int64) // codec.WORD_BYTES, list(blobs))

    def _row_ends(self, buckets: np.ndarray, layout: codec.RowLayout, table: str, base_frame: int) -> np.ndarray:
        """The timeline frame of the last posting in each of these (ascending) buckets' tail rows; the tail's base
        frame for no row.

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
            known.update(dict.fromkeys(unknown.tolist(), base_frame))
            known.update(zip(found_buckets.tolist(),
                             (codec.last_frames(rows, frames, len(blobs)) + base_frame).tolist()))
        return np.array([known[b] for b in buckets.tolist()], np.int64)

    def _tail_buckets(self, layout: codec.RowLayout) -> np.ndarray | None:
        """Which buckets the tail may hold rows of, a bit each (bucket b: bit 7 − b % 8 of byte b // 8; a superset:
        removal leaves its bits), as `tail_buckets` notes it since the last seal; None where it does not (a file
        made before, or a tail never sealed)."""
        rows = self.catalogue.read("SELECT bits FROM tail_buckets WHERE id=0") if self.catalogue.has_table(
            "tail_buckets") else []
        if not rows or len(rows[0][0]) * 8 != 1 << (HASH_BITS - layout.suffix_bits):
            return None
        return np.frombuffer(rows[0][0], np.uint8)

    def _tail_may_hold(self, buckets: np.ndarray, layout: codec.RowLayout) -> np.ndarray:
        """Those of these buckets whose rows the tail may hold."""
        if self._tail_postings() == 0:
            return buckets[:0]
        held = self._tail_buckets(layout)
        return buckets if held is None else buckets[(held[buckets >> 3] & (128 >> (buckets & 7))) != 0]

    # --- internals: segments ----------------------------------------------------------------------------------
    def _listed(self) -> list[tuple[str, int]]:
        """(file name, postings) of each segment the index lists, oldest first."""
        if not self.catalogue.has_table("segments"):
            return []
        return [tuple(row) for row in self.catalogue.read("SELECT file, postings FROM segments ORDER BY id")]

    def _missing_segment(self) -> IndexFileError:
        if self.folder.exists() and not self.folder.is_dir():
            return IndexFileError(f"{self.folder} is not a folder: an index is its file and the folder of postings "
                                  f"beside it (put the folder back); else {REBUILD}")
        if not self.folder.is_dir():
            return IndexFileError(f"{self.folder} is missing: an index is its file and this folder beside it, copied "
                                  f"or moved together (put the folder back); else {REBUILD}")
        return IndexFileError(f"{self.folder} is missing a segment the index lists; {REBUILD}")

    def _live_postings(self, first_frame: int, end_frame: int) -> int:
        """Postings of the songs still indexed that lie in [first_frame, end_frame) of the timeline: fewer than
        the segments there hold when songs were removed since. A song lies wholly in one segment, but a segment's
        first frame is its first posting's, which may come after its song's start: songs that overlap the range."""
        return int(self.catalogue.read("SELECT COALESCE(SUM(n_hashes), 0) FROM songs WHERE timeline_start "
                                       "+ timeline_frames > ? AND timeline_start < ?", (first_frame, end_frame))[0][0])

    def _sealed_postings(self) -> int:
        return sum(postings for _, postings in self._listed())

    def _before_changing(self) -> None:
        """What an add or a removal does first, holding the write lock: refuse, in one line and before anything
        changes, an index whose listed segments are cut or missing (not at a later seal or merge, after the change
        committed); then delete what a crash left in the folder (`_remove_unlisted`), so that a killed seal or
        merge leaves no file past the next change."""
        try:
            self._segments()
        except FileNotFoundError:  # a writer holds the lock: no merge of another took it
            raise self._missing_segment() from None
        self._remove_unlisted()

    def _segments_or_none(self, attempt: int) -> list[segments.Segment] | None:
        """`_segments` at a read's `attempt` of `SEGMENT_OPEN_ATTEMPTS`, or None where one was merged away since
        the listing (the next read transaction lists the new one); at the last attempt, a missing segment."""
        try:
            return self._segments()
        except FileNotFoundError:
            if attempt == SEGMENT_OPEN_ATTEMPTS - 1:
                raise self._missing_segment() from None
            return None

    def _segments(self) -> list[segments.Segment]:
        """The listed segments, mapped (kept open across lookups; those no longer listed are let go)."""
        names = [name for name, _ in self._listed()]
        for name in set(self._open) - set(names):
            self._open.pop(name).close()
        for name in names:
            if name not in self._open:
                self._open[name] = segments.Segment(self.folder / name)
        return [self._open[name] for name in names]

    def _new_segment(self, parts: Iterable[tuple[np.ndarray, np.ndarray]], postings: int, base_frame: int
                     ) -> None:
        """Write a segment and list it (inside the caller's write transaction: a rollback deletes it)."""
        self._listing_changes()
        name, written = segments.write(self.folder, parts, postings, base_frame)
        self.catalogue.after_rollback(lambda: self._remove_files([name]))  # no listing will name it
        self.conn.execute("INSERT INTO segments(file, postings) VALUES (?, ?)", (name, written))
        self.catalogue.mark_current_schema()  # an lmprint that knows no segments refuses it

    def _seal_tail(self) -> None:
        """Move the tail's postings into a segment (dropping those of removed songs) and empty the tail; first,
        delete what a crash left in the folder (`_remove_unlisted`), so that it never outlasts the next seal."""
        self._remove_unlisted()
        layout, table = self._layout()
        timeline = self.timeline()
        def parts() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for first in range(0, 1 << HASH_BITS, HASHES_PER_PART):
                hashes, frames = self._tail_range(first, first + HASHES_PER_PART, layout, table)
                inside = timeline.locate(frames)[0]
                yield hashes[inside], frames[inside]

        tail_postings = self._tail_postings()
        if tail_postings > 0:
            self._new_segment(parts(), tail_postings, self.catalogue.meta_int("sealed_end", 0))
        self.conn.execute(f"DELETE FROM {table}")
        self.conn.execute("DELETE FROM tail_buckets")
        self.catalogue.set_meta("tail_postings", "0")
        self._choose_tail_layout()
        sealed_end = self.catalogue.meta_int("timeline_end", 0)
        self.catalogue.set_meta("sealed_end", str(sealed_end))
        self.catalogue.set_meta("tail_base_frame", str(sealed_end))
        self.catalogue.mark_current_schema()  # an lmprint that reads the tail's gaps from 0 refuses it
        self._keep_sealed_timeline(sealed_end)
        self._known_row_ends = {}
        self.catalogue.after_commit(lambda: self._known_row_ends.clear())
        self.catalogue.after_commit(self.catalogue.release_free_pages)  # the tail's rows: a third of a small file

    def _choose_tail_layout(self) -> None:
        """Lay out the empty tail's rows by the postings sealed (`ONE_HASH_TAIL_FROM`)."""
        layout, table = self._layout()
        bits = 0 if self._sealed_postings() >= ONE_HASH_TAIL_FROM else codec.SIXTEEN_A_ROW.suffix_bits
        if bits != layout.suffix_bits:
            self.conn.execute(f"DROP TABLE [{table}]")
            _create_tail_table(self.conn, bits)
            self.catalogue.set_meta("row_suffix_bits", str(bits))

    def _merge_outgrown(self) -> None:
        """Restore `MERGE_RATIO`: while some segment holds fewer than MERGE_RATIO times the postings of all newer
        ones, merge the oldest such and every newer one. Segments then lie in timeline order, each covering a
        stretch of it no other covers."""
        while True:
            listed = self._listed()
            newer = np.cumsum([postings for _, postings in listed][::-1])[::-1]  # postings from each on
            outgrown = [i for i in range(len(listed) - 1) if listed[i][1] < MERGE_RATIO * newer[i + 1]]
            if not outgrown:
                return
            self._merge([name for name, _ in listed[outgrown[0]:]])

    def _merge(self, names: list[str]) -> None:
        """Replace these segments by one holding their postings of songs still indexed (by none, where no such song
        is left). The old files go once the transaction commits (readers that mapped them keep their view)."""
        inputs: list[segments.Segment] = []
        try:  # the inputs are unmapped whatever happens (a full disk while writing the merged one)
            try:
                inputs.extend(segments.Segment(self.folder / name) for name in names)
            except FileNotFoundError:  # a writer holds the lock: no merge of another took it
                raise self._missing_segment() from None
            postings = sum(segment.postings for segment in inputs)
            base = min(segment.first_frame for segment in inputs)
            end = max(segment.end_frame for segment in inputs)
            live = self._live_postings(base, end)
            if live > 0:  # else every song they held was removed: no segment replaces them
                timeline = self.timeline()
                keep = (lambda frames: timeline.locate(frames)[0]) if live < postings else None
                self._new_segment(segments.merged(inputs, keep, HASHES_PER_PART), postings, base)
        finally:
            for segment in inputs:
                segment.close()
        self._listing_changes()
        self.conn.executemany("DELETE FROM segments WHERE file=?", ((name,) for name in names))

        def durable_then_gone() -> None:
            self._sync_log()
            self._fold_log()
            self._remove_files(names)
        self.catalogue.after_commit(durable_then_gone)

    def _dead_postings(self, listed: list[tuple[str, int]]) -> bool:
        """Whether songs were removed since these segments were written: their songs hold fewer postings."""
        sealed_end = self.catalogue.meta_int("sealed_end", 0)
        return self._live_postings(0, sealed_end) < sum(postings for _, postings in listed)

    def _sync_log(self) -> None:
        """Flush the write-ahead log to disk: at `synchronous=NORMAL` a commit survives a crash of the process but
        not of the machine until then, and a merge's inputs must not be deleted before the merge is durable."""
        try:
            with open(f"{self.catalogue.path}-wal", "rb") as log:
                os.fsync(log.fileno())
        except OSError:
            pass  # no log (not in WAL mode): the commit wrote the file itself

    def _fold_log(self) -> None:
        """Copy the write-ahead log's commits into the file itself, as far as no reader's snapshot holds them back
        (SQLite's passive checkpoint, which waits for nobody): a merge's inputs are deleted next, and the file
        copied with its folder but not its `-wal` (a backup of an index in use) listed segments that were gone.
        A reader inside a read at that moment, or a crash before it, still leaves the commit in the log: copy the
        `-wal` file too while the index is in use (docs/design.md, "The index file")."""
        with contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _remove_files(self, names: Iterable[str]) -> None:
        for name in names:
            segment = self._open.pop(name, None)
            if segment is not None:
                segment.close()
            try:
                (self.folder / name).unlink()
            except OSError:  # gone already, or not ours to delete: unlisted, it is only space, which compact frees
                pass

    def _listing_changes(self) -> None:
        """Note that the write transaction in progress lists or unlists a segment: the files it unlists are still
        listed as committed, so `_remove_unlisted` leaves the folder alone for the rest of it."""
        self._listing_changed_in = self.catalogue.writes_begun

    def _remove_unlisted(self) -> None:
        """Delete the segment files that no listing names: left by a crash between writing one and committing it,
        or between a merge's commit and deleting its inputs. Call holding the write lock, before this transaction
        lists or unlists any: no other writer is making one, and every file unlisted is unlisted for good. The
        log is flushed first where there are any, since a merge's inputs are unlisted by a commit that a killed
        process may not have flushed. Not once this transaction has changed the listing (`_listing_changes`)."""
        if (not self.catalogue.writing or self._listing_changed_in == self.catalogue.writes_begun
                or not self.folder.is_dir()):  # without the lock another writer may be making one
            return
        listed = {name for name, _ in self._listed()}
        unlisted = [path.name for path in self.folder.iterdir()
                    if path.name not in listed and path.name.endswith((segments.SUFFIX, ".tmp"))]
        if unlisted:
            self._sync_log()
            self._remove_files(unlisted)

    # --- internals: from timeline frames to songs --------------------------------------------------------------
    def _timeline_rows(self, condition: str, params: Sequence) -> np.ndarray:
        """(start, end, song id) of the songs matching an SQL condition, by start (a song without postings before
        the one that starts where it does): what `Timeline.of` takes."""
        rows = self.catalogue.read("SELECT timeline_start, timeline_start + timeline_frames, id FROM songs "
                                   f"WHERE timeline_start IS NOT NULL AND {condition} "
                                   "ORDER BY timeline_start, timeline_frames",  # a song without postings first
                                   params)
        return np.asarray(rows, np.int64).reshape(-1, 3)

    def _current_timeline(self, last_frame: int = -1) -> Timeline:
        """The timeline as last read, read again when the file has changed since (`PRAGMA data_version` for other
        connections' commits, `total_changes` for this one's) or `last_frame` lies past its end; not kept when read
        inside this connection's write transaction."""
        version = self.catalogue.version()
        if self._timeline is None or version != self._timeline_version or last_frame >= self._timeline.end:
            if self.catalogue.writing:  # a rollback changes neither number: keep only what is committed
                return self.timeline()
            self._timeline, self._timeline_version = self.timeline(), version
        return self._timeline

    def _locate(self, key_index: np.ndarray, timeline_frames: np.ndarray) -> Postings:
        """The postings at these timeline frames that lie in a song. The song list is cached and read again when
        the file has changed (songs added or removed; a removed song's postings stay in segments until a merge)
        or a posting lies past its end; postings of songs removed fall in gaps and are dropped."""
        timeline = self._current_timeline(int(timeline_frames.max()) if timeline_frames.size else -1)
        inside, song_ids, frames = timeline.locate(timeline_frames)
        if song_ids.size < key_index.size:  # some lie in the gap of a removed song
            key_index = key_index[inside]
        return Postings(key_index, song_ids, frames)


@dataclass(frozen=True)
class _AskedRows:
    """Ascending, distinct asked keys grouped into the rows of one layout: row i is `buckets[i]`, its asked keys
    are `wanted[firsts[i]:firsts[i + 1]]`, `suffix_bits[i]` has a bit set for each of their suffixes."""

    layout: codec.RowLayout
    buckets: np.ndarray
    firsts: np.ndarray
    suffix_bits: np.ndarray
    n_keys: int

    @classmethod
    def of(cls, wanted: np.ndarray, layout: codec.RowLayout) -> _AskedRows:
        firsts = run_starts(wanted >> layout.suffix_bits)
        return cls(layout, (wanted[firsts] >> layout.suffix_bits).astype(np.int64), firsts,
                   np.bitwise_or.reduceat(np.left_shift(np.uint32(1), wanted & layout.suffix_mask), firsts),
                   wanted.size)

    @property
    def counts(self) -> np.ndarray:
        """Asked keys per row."""
        return np.diff(np.r_[self.firsts, self.n_keys])

    def key_index(self, slots: np.ndarray, rows: np.ndarray, suffixes: np.ndarray, frames: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
        """(index among the asked keys, timeline frame) of each posting read that an asked key holds: posting i
        was read from row `rows[i]` of those read, which are the asked rows `slots`."""
        bits = self.layout.suffix_bits
        asked = ((self.suffix_bits[slots, None] >> np.arange(1 << bits, dtype=np.uint32)) & 1).astype(np.int64)
        index = (np.cumsum(asked, axis=1) - asked + self.firsts[slots, None]).ravel()
        cell = (rows << bits) | suffixes
        keep = asked.ravel()[cell].astype(bool)
        return index[cell[keep]], frames[keep]


def _within_budget_of(sources: list[tuple[_AskedRows, np.ndarray, np.ndarray]], priority: np.ndarray,
                      n_keys: int, max_postings: int) -> np.ndarray:
    """Which rows of all sources a budget reads (`within_budget`), in source order. Each source is (its asked
    rows, the slots of those present, their sizes). A row counts for its size × the share of its hashes asked; a
    key's priority is shared among the sources' rows that hold it, by their sizes (a source's row spread evenly
    over its hashes), so that splitting postings among segments leaves the order of reading as it was."""
    estimates = []
    total = np.zeros(n_keys)
    for asked, slots, sizes in sources:
        per_row = np.zeros(asked.buckets.size)
        per_row[slots] = sizes / (1 << asked.layout.suffix_bits)
        per_key = np.repeat(per_row, asked.counts)
        estimates.append(per_key)
        total += per_key
    shares = priority / np.maximum(total, 1e-9)
    row_priority, row_cost = [], []
    for (asked, slots, sizes), per_key in zip(sources, estimates):
        row_priority.append(np.add.reduceat(shares * per_key, asked.firsts)[slots] if slots.size else np.zeros(0))
        row_cost.append(sizes * asked.counts[slots] / (1 << asked.layout.suffix_bits))
    return within_budget(np.concatenate(row_priority), np.concatenate(row_cost), max_postings)


def _read_segments(sealed: list[segments.Segment], sources: list[tuple[_AskedRows, np.ndarray, np.ndarray]],
                   chosen: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(key index, timeline frame) of the postings in the chosen rows of these segments: the rows of all segments
    of one layout are decoded together (a decode's cost is mostly per call at a few thousand postings)."""
    groups: dict[int, list] = {}
    for segment, (asked, slots, _), mask in zip(sealed, sources, chosen):
        data, lengths = segment.gather(asked.buckets[slots[mask]])
        group = groups.setdefault(segment.layout.suffix_bits, [asked, [], [], [], []])
        group[1].append(data)
        group[2].append(lengths)
        group[3].append(np.full(lengths.size, segment.base_frame, np.int64))
        group[4].append(slots[mask])
    parts = []
    for asked, data, lengths, bases, slots in groups.values():
        rows, suffixes, frames = codec.decode_words(b"".join(data), np.concatenate(lengths), asked.layout)
        parts.append(asked.key_index(np.concatenate(slots), rows, suffixes, frames + np.concatenate(bases)[rows]))
    return parts


def _decoded(rows: list[tuple], layout: codec.RowLayout, base_frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, timeline frames) of the postings in tail rows read as (bucket, entries)."""
    hashes, frames = codec.decode(np.array([row[0] for row in rows], np.uint32), [row[1] for row in rows], layout)
    return hashes, frames + base_frame


def _parts_of(hashes: np.ndarray, timeline_frames: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Postings sorted by hash, in ranges of `HASHES_PER_PART` hashes (whole rows of any layout)."""
    bounds = np.searchsorted(hashes, np.arange(0, (1 << HASH_BITS) + 1, HASHES_PER_PART))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if b > a:
            yield hashes[a:b], timeline_frames[a:b]


def _create_segments_table(catalogue: Catalogue) -> None:
    """The segments' listing; the tail's bucket mask (one row: a bit per bucket, set when a song's postings go to
    that bucket's tail row, cleared when the tail is sealed); the sealed songs' timeline (one row); and an index
    of songs by timeline start, to read the places of the songs past that."""
    catalogue.conn.execute("CREATE TABLE IF NOT EXISTS [segments] ([id] INTEGER PRIMARY KEY, [file] TEXT NOT NULL "
                           "UNIQUE, [postings] INTEGER NOT NULL)")
    catalogue.conn.execute("CREATE TABLE IF NOT EXISTS [tail_buckets] ([id] INTEGER PRIMARY KEY, [bits] BLOB NOT NULL)")
    catalogue.conn.execute("CREATE TABLE IF NOT EXISTS [sealed_timeline] ([id] INTEGER PRIMARY KEY, "
                           "[end_frame] INTEGER NOT NULL, [songs] BLOB NOT NULL)")
    catalogue.conn.execute("CREATE INDEX IF NOT EXISTS [idx_songs_timeline_start] ON [songs] ([timeline_start])")


def _create_tail_table(conn: sqlite3.Connection, suffix_bits: int) -> None:
    """The tail's table for a layout, if it is not there."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS [{_table_of(suffix_bits)}] ([bucket] INTEGER PRIMARY KEY, "
                 "[entries] BLOB NOT NULL)")


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
    order = argsort_stable(-(np.asarray(priority, np.float64) / np.maximum(postings, 1)))
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


def all_postings(store: PostingStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hashes, song ids, frames) of every posting in any store, through its `scan` (a full read)."""
    parts = list(store.scan())
    if not parts:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64), np.zeros(0, np.int64)
    hashes, songs, frames = (np.concatenate(column) for column in zip(*parts))
    return hashes, songs, frames


def _implements_the_interface(store: SQLitePostingStore) -> PostingStore:
    """The type checker confirms here that the SQLite store has every method of `PostingStore`."""
    return store


class PeakStore:
    """Each song's peaks, compressed, one row per song: what verification reads."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self._has_table = False
        self._decoded: OrderedDict[bytes, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        """Decoded peaks by their stored bytes, the most recently read last (`DECODED_PEAKS_KEPT_BYTES`): keyed by
        the bytes, not the song, a song removed and its id given again can never be read from it."""
        self._decoded_bytes = 0

    @staticmethod
    def create(catalogue: Catalogue) -> None:
        """The `peaks` table (call inside a write transaction); idempotent. Its rows go with their song."""
        catalogue.conn.execute("CREATE TABLE IF NOT EXISTS [peaks] ([song_id] INTEGER PRIMARY KEY "
                               "REFERENCES [songs]([id]) ON DELETE CASCADE, [data] BLOB NOT NULL)")

    def put(self, song_id: int, frames: np.ndarray, bins: np.ndarray) -> None:
        """Store a song's peaks, in the current codec: a file older than that codec (`ZLIB_PEAKS_SCHEMA`) is of the
        current schema version once it holds them (the lmprint that made it could not decode them)."""
        self.catalogue.conn.execute("INSERT OR REPLACE INTO peaks(song_id, data) VALUES (?, ?)",
                                    (song_id, peak_codec.encode(frames, bins)))
        if self.catalogue.schema_version < ZLIB_PEAKS_SCHEMA:
            self.catalogue.mark_current_schema()

    def get(self, song_ids: Sequence[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Stored peaks (frames, bins) of these songs, for those that have them (read-only arrays): none in a file of
        schema 3 read where it cannot be upgraded."""
        if not self._held():
            return {}
        return {song_id: self._decode(data) for marks, batch in id_batches(song_ids)
                for song_id, data in self.catalogue.read(f"SELECT song_id, data FROM peaks WHERE song_id IN ({marks})",
                                                         batch)}

    def _decode(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        peaks = self._decoded.get(data)
        if peaks is not None:
            self._decoded.move_to_end(data)
            return peaks
        peaks = peak_codec.decode(data)
        for column in peaks:
            column.flags.writeable = False  # shared by every later read of the song
        self._decoded[data] = peaks
        self._decoded_bytes += _kept_bytes(data, peaks)
        while self._decoded_bytes > DECODED_PEAKS_KEPT_BYTES:
            self._decoded_bytes -= _kept_bytes(*self._decoded.popitem(last=False))
        return peaks

    def _held(self) -> bool:
        """Whether the file has its `peaks` table (not one of schema 3 read where it cannot be upgraded), asked
        until it has: a table is never dropped, and verification reads peaks several times a query."""
        self._has_table = self._has_table or self.catalogue.has_table("peaks")
        return self._has_table

    def remove(self, song_ids: Sequence[int]) -> None:
        """Drop these songs' peaks (tables made before peaks referenced songs do not cascade)."""
        for marks, batch in id_batches(song_ids):
            self.catalogue.conn.execute(f"DELETE FROM peaks WHERE song_id IN ({marks})", batch)

    def stats(self) -> dict:
        if not self._held():
            return {"peaks_bytes": 0}
        return {"peaks_bytes": self.catalogue.read("SELECT COALESCE(SUM(LENGTH(data)), 0) FROM peaks")[0][0]}


def _kept_bytes(data: bytes, peaks: tuple[np.ndarray, np.ndarray]) -> int:
    return len(data) + sum(column.nbytes for column in peaks)
