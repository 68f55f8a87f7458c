"""The postings codec: how an inverted-index row of the landmark store lists its postings, as bytes.

A row holds the postings of 2^suffix_bits hashes, those sharing `hash >> suffix_bits` (the row's *bucket*), in
timeline order, as 3-byte little-endian words, one per posting (`RowLayout`; 16 hashes a row shown):

    bits 0..19: gap, the posting's timeline frame minus the previous one's in the row (minus 0 for the first)
    bits 20..23: hash & 0xF

A gap of 2^20 − 1 or more (a row's first posting in a large index, a rare hash) takes two more words: the gap
field of the first is all ones (an escape) and the next two are digits of the gap. A digit's gap field is never
all ones, so escapes are found in one vectorised pass, without walking the row.

Grouping hashes in a row amortises SQLite's per-row overhead (~10 B), which would otherwise cost more than the
posting itself while keys hold few postings; storing gaps instead of timeline frames (36 bits) saves 40 %: the
postings of one bucket are a few hundred thousand frames apart on average, whatever the size of the index
(docs/design.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lmprint.errors import IndexFileError, damaged

from .arrays import run_starts

WORD_BYTES = 3
FRAME_BITS = 36
"""Timeline frames are below 2^36 (`landmark.timeline`): a bucket and a frame pack into one sort key."""


@dataclass(frozen=True)
class RowLayout:
    """How many hashes share a row: 2^suffix_bits, the low hash bits kept in each posting."""

    suffix_bits: int

    @property
    def suffix_mask(self) -> int:
        return (1 << self.suffix_bits) - 1

    @property
    def gap_bits(self) -> int:
        return 8 * WORD_BYTES - self.suffix_bits

    @property
    def escape(self) -> int:
        """A gap field holding this marks an escape: the posting's gap is in the next two (digit) words."""
        return (1 << self.gap_bits) - 1

    @property
    def digit_base(self) -> int:
        """Digits of an escaped gap are in [0, digit_base): `(d // escape) << gap_bits | d % escape` keeps the gap
        field of a digit word below the escape."""
        return (1 << self.suffix_bits) * self.escape

    def bucket_of(self, hashes: np.ndarray) -> np.ndarray:
        """The row each hash's postings live in."""
        return np.asarray(hashes, np.int64) >> self.suffix_bits


SIXTEEN_A_ROW = RowLayout(4)
"""The layout of a new index, and of every index made before layouts changed with the library's size."""
ESCAPE = SIXTEEN_A_ROW.escape


def encode(hashes: np.ndarray, timeline_frames: np.ndarray, row_ends: np.ndarray | int | None = None,
           layout: RowLayout = SIXTEEN_A_ROW) -> tuple[np.ndarray, list[bytes]]:
    """Group postings by bucket: (buckets, blobs), one blob per bucket, ascending buckets.

    `row_ends`, one per bucket of these hashes (ascending), is the timeline frame of the last posting already in
    that bucket's row: the blob continues the row's gaps, to be appended to it. One frame: new rows whose first
    gaps count from it. None: new rows counting from 0. Postings must not lie before their row's end (songs are
    added at the end of the timeline).
    """
    buckets, data, word_starts = encode_words(hashes, timeline_frames, row_ends, layout)
    bounds = (word_starts * WORD_BYTES).tolist()
    return buckets, [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def encode_words(hashes: np.ndarray, timeline_frames: np.ndarray, row_ends: np.ndarray | int | None = None,
                 layout: RowLayout = SIXTEEN_A_ROW) -> tuple[np.ndarray, bytes, np.ndarray]:
    """Like `encode`, with the rows laid end to end: (buckets, bytes of all rows, each row's first word and the
    end), for a store that keeps rows in one stretch (`landmark.segments`). Rows' ends and songs' places come
    from the file, so postings that do not fit them mean a damaged index (a flipped bit made every later add end
    in a traceback)."""
    hashes = np.asarray(hashes, np.int64)
    frames = np.asarray(timeline_frames, np.int64)
    buckets = hashes >> layout.suffix_bits
    if frames.size and (frames.min() < 0 or frames.max() >= 1 << FRAME_BITS):
        raise damaged("the index", "its songs' places run off the timeline")  # a place read from the file
    # by bucket, then frame: one sort of packed keys. Stable, because the input is mostly runs already sorted so (a
    # merge's segments, a batch sorted by hash), which numpy's stable sort (a timsort) merges in near-linear time:
    # 5–7 ms for 1 M keys in 2–3 runs, against 58 ms for its default sort
    order = np.argsort((buckets << FRAME_BITS) | frames, kind="stable")
    buckets, suffixes, frames = buckets[order], hashes[order] & layout.suffix_mask, frames[order]
    starts = run_starts(buckets)
    row_buckets = buckets[starts]
    previous = np.r_[np.int64(0), frames[:-1]]
    previous[starts] = 0 if row_ends is None else np.asarray(row_ends, np.int64)
    gaps = frames - previous
    if gaps.size and gaps.min() < 0:
        raise damaged("the index", "a row's recorded end lies past the postings added to it")  # as read back
    escape, gap_bits = layout.escape, layout.gap_bits
    escaped = gaps >= escape
    sizes = np.where(escaped, 3, 1)
    word_at = np.cumsum(sizes) - sizes
    words = np.zeros(int(sizes.sum()), np.int64)
    words[word_at] = (suffixes << gap_bits) | np.minimum(gaps, escape)
    high, low = np.divmod(gaps[escaped], layout.digit_base)
    for offset, digit in ((1, high), (2, low)):
        words[word_at[escaped] + offset] = ((digit // escape) << gap_bits) | (digit % escape)
    data = words.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :WORD_BYTES]
    return row_buckets.astype(np.uint32), data.tobytes(), np.r_[word_at[starts], words.size].astype(np.int64)


def decode(buckets: np.ndarray, blobs: list[bytes], layout: RowLayout = SIXTEEN_A_ROW
           ) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, timeline frames) of all postings in the given bucket rows."""
    rows, suffixes, frames = decode_rows(blobs, layout)
    return (np.asarray(buckets, np.uint32)[rows] << layout.suffix_bits) | suffixes.astype(np.uint32), frames


def decode_rows(blobs: list[bytes], layout: RowLayout = SIXTEEN_A_ROW) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row index, hash suffix, timeline frame) of every posting in the blobs, in row and timeline order."""
    sizes = np.fromiter(map(len, blobs), np.int64, len(blobs))
    if (sizes % WORD_BYTES).any():  # read end to end, a stray byte would shift every row after it
        raise damaged("the index", "a row of postings is not whole words")
    return decode_words(b"".join(blobs), sizes // WORD_BYTES, layout)


def decode_words(data: bytes, words_per_row: np.ndarray, layout: RowLayout = SIXTEEN_A_ROW
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like `decode_rows`, for rows laid end to end in `data`, `words_per_row[i]` words in row i."""
    words_per_row = np.asarray(words_per_row, np.int64)
    if words_per_row.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    data = data + bytes(4 - WORD_BYTES)
    n_words = (len(data) - (4 - WORD_BYTES)) // WORD_BYTES
    # each word read as 4 bytes starting at its own (overlapping the next word, masked off): no copy to pad it
    unaligned = np.ndarray((n_words,), "<u4", data, strides=(WORD_BYTES,))
    words = unaligned.astype(np.int64) & ((1 << (8 * WORD_BYTES)) - 1)
    escape, gap_bits = layout.escape, layout.gap_bits
    gaps = words & escape
    escapes = np.flatnonzero(gaps == escape)
    per_row = words_per_row
    if escapes.size:
        def digit(at: np.ndarray) -> np.ndarray:
            return (words[at] >> gap_bits) * escape + gaps[at]

        row_ends = np.cumsum(words_per_row)
        escape_rows = np.searchsorted(row_ends, escapes, side="right")
        # an escape's two digits follow it in its own row, before the next escape
        if (np.diff(escapes) < 3).any() or (np.searchsorted(row_ends, escapes + 2, side="right") != escape_rows).any():
            raise _damaged()
        is_posting = np.ones(words.size, bool)
        is_posting[escapes + 1] = is_posting[escapes + 2] = False
        gaps[escapes] = digit(escapes + 1) * layout.digit_base + digit(escapes + 2)
        per_row = words_per_row - 2 * np.bincount(escape_rows, minlength=words_per_row.size)
        gaps = gaps[is_posting]
        if layout.suffix_bits:  # rows of one hash have no suffixes to keep
            words = words[is_posting]
    suffixes = words >> gap_bits if layout.suffix_bits else np.zeros(gaps.size, np.int64)
    rows = np.repeat(np.arange(per_row.size), per_row)
    if rows.size != gaps.size:  # rows whose lengths do not add up to the words read
        raise _damaged()
    if rows.size == 0:
        return rows, suffixes, gaps
    totals = np.cumsum(gaps)
    before = (totals - gaps)[np.minimum(np.cumsum(per_row) - per_row, totals.size - 1)]  # empty rows: unused
    return rows, suffixes, totals - before[rows]


def _damaged() -> IndexFileError:
    return damaged("the index", "postings that do not decode")


def last_frames(rows: np.ndarray, frames: np.ndarray, n_rows: int) -> np.ndarray:
    """The latest timeline frame of each of `n_rows` rows (0 for a row without postings)."""
    last = np.zeros(n_rows, np.int64)
    np.maximum.at(last, rows, frames)
    return last
