"""Sealed postings: immutable, memory-mapped files of rows, beside the index file.

A segment holds the postings of a stretch of songs, in the rows of `landmark.postings` (one row per bucket of
2^suffix_bits hashes, gaps in timeline order), laid end to end in bucket order, with a directory of each row's
length (a byte) and of every 16th row's first word. Looking a row up is a read of its 16-row block of lengths and
of one checkpoint, and a slice of the words: no per-row cost of a B-tree, no search, no parsing, and the operating
system's page cache keeps what queries read often. Opening one reads its header only.

File layout (little-endian):

    header       72 bytes: MAGIC, suffix_bits (u32), start_bytes (u32: 4 or 8), base_frame, rows (those holding
                 postings), words, postings, first_frame, end_frame, long_rows (u64 each)
    words        3 bytes × words, then padding to a multiple of 8 bytes
    lengths      u8 × 2^(21 − suffix_bits): each bucket's row length in words; `LONG_ROW` for a row that long or
                 longer, whose length is in `long`
    checkpoints  u32 or u64 × (2^(21 − suffix_bits) / 16 + 1): the first word of buckets 0, 16, 32, ..., and
                 then `words`; padding to a multiple of 8 bytes
    long         u64 × long_rows: the long rows' buckets, ascending; then u64 × long_rows: their lengths

The directory comes last, so that a segment is written as its postings come (`write`, `merged`). A directory of a
byte a row is what lets rows of one hash serve a library of a thousand songs: four bytes a row (the format before,
`LMPSEG02`, still read) cost 8 MB a segment at one hash a row, where this costs 2.6 MB.

A row's first gap counts from `base_frame` (the segment's first timeline frame), so that the first posting of a
row in a small segment fits a word without an escape.

A segment is written to a temporary name, flushed to disk and renamed into place before the catalogue lists it
(`landmark.store`), so a listed segment is always whole; a segment that a crash left unlisted is removed by the
next change to the index.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lmprint.errors import CannotWrite, IndexFileError, damaged, os_reason

from . import postings as codec
from .hashes import HASH_BITS
from .timeline import TIMELINE_END

MAGIC = b"LMPSEG03"
MAGIC_DENSE = b"LMPSEG02"
"""Segments written before directories of a byte a row: a u32 or u64 start for every bucket, read still."""
HEADER_DENSE = np.dtype([("magic", "S8"), ("suffix_bits", "<u4"), ("start_bytes", "<u4"), ("base_frame", "<u8"),
                         ("rows", "<u8"), ("words", "<u8"), ("postings", "<u8"), ("first_frame", "<u8"),
                         ("end_frame", "<u8")])
HEADER = np.dtype(HEADER_DENSE.descr + [("long_rows", "<u8")])
LONG_ROW = 255
"""A length byte of this value marks a row of 255 words or more, its length kept apart (`long`)."""
ROWS_PER_CHECKPOINT = 16
"""The directory keeps the first word of every this many rows; a row's start adds the lengths before it."""
SUFFIX = ".seg"


def folder_of(index_path: str | os.PathLike) -> Path:
    """Where an index file's segments live: a folder named after it, beside it (`music.db` → `music.db-postings`).
    Beside the file itself where the path is a symbolic link (an index on a larger disk, linked from home), as
    SQLite keeps its log there: the file and its folder then move, copy and back up together. A folder beside
    the link, made so by an older lmprint, is still used while there is none beside the file."""
    beside_link = Path(f"{index_path}-postings")
    beside_file = Path(f"{os.path.realpath(index_path)}-postings")
    return beside_link if beside_link.is_dir() and not beside_file.is_dir() else beside_file


def layout_for(postings: int) -> codec.RowLayout:
    """Rows of one hash in a segment of 2^22 postings or more (about 900 songs), 4 from 2^20, else 16: the
    directory (1.25 bytes a bucket) then costs at most 0.63 byte a posting, from a tail's first seal (2^18) on. A
    lookup decodes whole rows, and a budgeted one knows a row's size, not its hashes' own: rows of one hash read
    only what was asked for."""
    return codec.RowLayout(0 if postings >= 1 << 22 else 2 if postings >= 1 << 20 else 4)


@dataclass(frozen=True)
class RowRead:
    """Postings read from rows: posting i lies in the `rows[i]`-th row asked, has hash suffix `suffixes[i]` and
    timeline frame `frames[i]`."""

    rows: np.ndarray
    suffixes: np.ndarray
    frames: np.ndarray


class Segment:
    """One sealed segment, memory-mapped read-only."""

    def __init__(self, path: Path):
        self.path = path
        try:
            with open(path, "rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size < HEADER_DENSE.itemsize:
                    raise ValueError("too short")
                self._map = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError:
            raise
        except PermissionError as error:
            raise IndexFileError(f"cannot read {path}: {os_reason(error)}") from None
        except (OSError, ValueError) as error:
            raise damaged(path, str(error)) from None
        dense = bytes(self._map[:8]) == MAGIC_DENSE
        header_type = HEADER_DENSE if dense else HEADER
        if size < header_type.itemsize:
            self._map.close()
            raise damaged(path, "too short")
        header = np.frombuffer(self._map, header_type, 1)[0].copy()  # no view left on the map, so it can close
        words, bits, start_bytes = int(header["words"]), int(header["suffix_bits"]), int(header["start_bytes"])
        words_at = header_type.itemsize
        directory_at = words_at + _padded(codec.WORD_BYTES * words)
        n_buckets = 1 << (HASH_BITS - min(bits, HASH_BITS))
        if dense:
            expected = directory_at + start_bytes * (n_buckets + 1)
        else:
            long_rows = int(header["long_rows"])
            checkpoints_at = directory_at + n_buckets
            long_at = checkpoints_at + _padded(start_bytes * (n_buckets // ROWS_PER_CHECKPOINT + 1))
            expected = long_at + 16 * long_rows
        if (header["magic"] not in (MAGIC, MAGIC_DENSE) or bits > 4 or start_bytes not in (4, 8)
                or size != expected):
            self._map.close()
            raise damaged(path, "not a whole lmprint segment")
        self.layout = codec.RowLayout(bits)
        self.base_frame = int(header["base_frame"])
        self.postings = int(header["postings"])
        self.first_frame, self.end_frame = int(header["first_frame"]), int(header["end_frame"])
        if not (self.base_frame <= self.first_frame < TIMELINE_END and self.end_frame <= TIMELINE_END
                and (self.postings == 0) == (words == 0) and self.postings <= words
                and (self.postings == 0 or self.first_frame < self.end_frame)):  # its postings' place on the timeline
            self._map.close()
            raise damaged(path, "its header does not fit the timeline")
        self._lengths: np.ndarray | None = None
        self._long_buckets: np.ndarray | None = None
        self._long_lengths: np.ndarray | None = None
        if dense:
            self._starts = np.frombuffer(self._map, f"<u{start_bytes}", n_buckets + 1, directory_at)
        else:
            self._lengths = np.frombuffer(self._map, np.uint8, n_buckets, directory_at).reshape(
                -1, ROWS_PER_CHECKPOINT)
            self._starts = np.frombuffer(self._map, f"<u{start_bytes}", n_buckets // ROWS_PER_CHECKPOINT + 1,
                                         checkpoints_at)
            # views, read where a lookup asks: some 290,000 long rows at 100,000 songs, which read, copied and
            # checked whole made opening cost 15 ms (`sizes` checks the rows it reads)
            self._long_buckets = np.frombuffer(self._map, "<u8", long_rows, long_at)
            self._long_lengths = np.frombuffer(self._map, "<u8", long_rows, long_at + 8 * long_rows)
        self._words = words
        # one item a word: gathering words with `take` copies 3 bytes at a time (4× faster than bytes)
        self.words = np.frombuffer(self._map, f"V{codec.WORD_BYTES}", words, words_at)
        if self._starts[0] != 0 or self._starts[-1] != words:  # the directory spans the words
            self.close()
            raise damaged(path, "its directory does not match its postings")

    def close(self) -> None:
        """Unmap the file (left to the garbage collector while an array still views it); closing twice is once."""
        if not hasattr(self, "words"):
            return
        self._lengths = self._long_buckets = self._long_lengths = None
        del self._starts, self.words
        try:
            self._map.close()
        except BufferError:
            pass

    def sizes(self, buckets: np.ndarray) -> np.ndarray:
        """Words in each of these buckets' rows, 0 where it has none (an escaped gap takes three: a bound on its
        postings)."""
        buckets = np.asarray(buckets, np.int64)
        if self._lengths is None:
            return self._dense_rows(buckets)[1]
        lengths = self._lengths.reshape(-1)[buckets].astype(np.int64)
        long = np.flatnonzero(lengths == LONG_ROW)
        if long.size:
            assert self._long_buckets is not None and self._long_lengths is not None
            wanted = buckets[long].astype(np.uint64)
            at = np.searchsorted(self._long_buckets, wanted)
            if (at >= self._long_buckets.size).any() or (self._long_buckets[at] != wanted).any():
                raise damaged(self.path, "a row marked long has no length")
            long_lengths = self._long_lengths[at]
            if ((long_lengths < LONG_ROW) | (long_lengths > self._words)).any():  # not a huge allocation
                raise damaged(self.path, "its directory does not match its postings")
            lengths[long] = long_lengths.astype(np.int64)
        return lengths

    def _rows(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first word, words) of each of these buckets' rows: its block's checkpoint plus the lengths before it in
        the block, a long row counting its whole length; each block's lengths checked against its checkpoints."""
        if self._lengths is None:
            return self._dense_rows(buckets)
        block, column = np.divmod(buckets, ROWS_PER_CHECKPOINT)
        lengths = self._lengths[block].astype(np.int64)
        long = lengths == LONG_ROW
        if long.any():  # their whole lengths, for the rows of these blocks alone
            rows_of_block = block[:, None] * ROWS_PER_CHECKPOINT + np.arange(ROWS_PER_CHECKPOINT)
            lengths[long] = self.sizes(rows_of_block[long])
        first_words = self._starts[block].astype(np.int64)
        # a block's rows span its checkpoints: a length byte or a long length written over is damage, not rows
        # read from the wrong words (or gathered from billions of them)
        if (lengths.sum(axis=1) != self._starts[block + 1].astype(np.int64) - first_words).any():
            raise damaged(self.path, "its directory does not match its postings")
        before = np.arange(ROWS_PER_CHECKPOINT) < column[:, None]
        return first_words + np.where(before, lengths, 0).sum(axis=1), lengths[np.arange(buckets.size), column]

    def _dense_rows(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`_rows` of a segment written before directories of a byte a row: a start for every bucket."""
        starts = self._starts[buckets].astype(np.int64)
        lengths = self._starts[buckets + 1].astype(np.int64) - starts
        if (lengths < 0).any():
            raise damaged(self.path, "its directory does not match its postings")
        return starts, lengths

    def gather(self, buckets: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The words of these buckets' rows, end to end, and each row's count of words (for `decode_words`)."""
        starts, lengths = self._rows(np.asarray(buckets, np.int64))
        at = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        at += np.arange(at.size)
        try:
            return np.take(self.words, at).tobytes(), lengths
        except IndexError:
            raise damaged(self.path, "a row runs past its postings") from None

    def read(self, buckets: np.ndarray) -> RowRead:
        """The postings of these buckets' rows."""
        data, lengths = self.gather(buckets)
        row, suffixes, frames = codec.decode_words(data, lengths, self.layout)
        return RowRead(row, suffixes, frames + self.base_frame)

    def hash_range(self, first_hash: int, end_hash: int) -> tuple[np.ndarray, np.ndarray]:
        """(hashes, timeline frames) of every posting of hashes in [first_hash, end_hash), which must be whole rows
        (multiples of 16)."""
        bits = self.layout.suffix_bits
        buckets = np.arange(first_hash >> bits, end_hash >> bits)
        found = self.read(buckets)
        hashes = (buckets.astype(np.uint32)[found.rows] << bits) | found.suffixes.astype(np.uint32)
        return hashes, found.frames


def write(folder: Path, parts: Iterable[tuple[np.ndarray, np.ndarray]], postings: int, base_frame: int
          ) -> tuple[str, int]:
    """A new segment in `folder`, flushed to disk: its file name and the postings written. `parts` yields (hashes,
    timeline frames) in ascending ranges of whole rows (a multiple of 16 hashes), at most `postings` in all, none
    before `base_frame`; the layout follows that size (`layout_for`). Parts are written as they come: memory stays
    that of a part."""
    import secrets  # here: it loads OpenSSL, 5 ms of a cold `match`, which writes no segment

    name = f"{secrets.token_hex(8)}{SUFFIX}"
    temporary = folder / f".{name}.tmp"
    try:
        folder.mkdir(exist_ok=True)
        return _write(folder, name, temporary, parts, postings, base_frame)
    except OSError as error:  # a full disk, a quota, a folder it may not write: the caller's transaction rolls back
        with contextlib.suppress(OSError):  # a folder it may not write will not let it delete either
            temporary.unlink(missing_ok=True)
        raise CannotWrite(f"cannot write a segment in {folder}: {os_reason(error)}; free some space (or make the "
                          "folder writable) and run the command again: what was indexed is kept",
                          os_reason(error)) from None
    except BaseException:  # damage found in the segments a merge reads, an interrupt: no half-written file left
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def _write(folder: Path, name: str, temporary: Path, parts: Iterable[tuple[np.ndarray, np.ndarray]], postings: int,
           base_frame: int) -> tuple[str, int]:
    layout = layout_for(postings)
    row_words = np.zeros(1 << (HASH_BITS - layout.suffix_bits), np.int64)
    n_words = n_postings = rows = 0
    first_frame, end_frame = None, 0
    with open(temporary, "wb") as file:
        file.write(bytes(HEADER.itemsize))
        for hashes, frames in parts:
            if frames.size == 0:
                continue
            frames = np.asarray(frames, np.int64)
            buckets, data, starts = codec.encode_words(hashes, frames - base_frame, layout=layout)
            file.write(data)
            row_words[buckets] = np.diff(starts)
            rows += buckets.size
            n_words += int(starts[-1])
            n_postings += frames.size
            first = int(frames.min())
            first_frame = first if first_frame is None else min(first_frame, first)
            end_frame = max(end_frame, int(frames.max()) + 1)
        file.write(bytes(_padded(codec.WORD_BYTES * n_words) - codec.WORD_BYTES * n_words))
        start_bytes = 4 if n_words < 1 << 32 else 8
        file.write(np.minimum(row_words, LONG_ROW).astype(np.uint8).tobytes())
        checkpoints = np.r_[0, np.cumsum(row_words)][::ROWS_PER_CHECKPOINT].astype(f"<u{start_bytes}").tobytes()
        file.write(checkpoints + bytes(_padded(len(checkpoints)) - len(checkpoints)))
        long = np.flatnonzero(row_words >= LONG_ROW)
        file.write(long.astype("<u8").tobytes() + row_words[long].astype("<u8").tobytes())
        header = np.zeros(1, HEADER)
        header[0] = (MAGIC, layout.suffix_bits, start_bytes, base_frame, rows, n_words, n_postings,
                     base_frame if first_frame is None else first_frame, end_frame, long.size)
        file.seek(0)
        file.write(header.tobytes())
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, folder / name)
    _sync_folder(folder)
    return name, n_postings


def merged(segments: list[Segment], keep: Callable[[np.ndarray], np.ndarray] | None, hashes_per_part: int
           ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(hashes, timeline frames) of every posting of these segments that `keep(frames)` (a mask; None: all) keeps,
    a range of `hashes_per_part` hashes at a time: memory stays bounded whatever their size."""
    for first in range(0, 1 << HASH_BITS, hashes_per_part):
        parts = [segment.hash_range(first, first + hashes_per_part) for segment in segments]
        hashes = np.concatenate([part[0] for part in parts])
        frames = np.concatenate([part[1] for part in parts])
        if keep is None:
            yield hashes, frames
        else:
            kept = keep(frames)
            yield hashes[kept], frames[kept]


def _padded(n_bytes: int) -> int:
    """`n_bytes` rounded up to a multiple of 8."""
    return -(-n_bytes // 8) * 8


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
