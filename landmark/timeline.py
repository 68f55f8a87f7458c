"""The timeline: every song's frames laid end to end, in the order the songs were added.

A posting names song and time with one number, its timeline frame. Timeline frames are never reused: a removed
song leaves a gap, so a reader holding an older list of songs cannot misattribute a posting.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

TIMELINE_BITS = 36
TIMELINE_END = 1 << TIMELINE_BITS
"""Timeline capacity: 2^36 frames, 300,000 hours at 16 ms frames."""
CELLS_PER_SONG = 4
"""Cells of `Timeline._cells` per song: a cell then holds a song's start one time in four, on average."""
CELL_STEPS = 4
"""Steps forward from a cell's song before the remaining frames take a binary search (a cell of many short
songs)."""


@dataclass(frozen=True)
class Timeline:
    """Where each song's frames lie on the timeline (sorted by start), to turn a posting's timeline frame back
    into (song, frame)."""

    starts: np.ndarray  # int64
    ends: np.ndarray  # int64, exclusive
    song_ids: np.ndarray  # int64
    end: int
    """The end of the timeline when the songs were listed (at least the last song's end; past it where the songs
    last added were removed since): postings past it belong to songs added since."""

    @classmethod
    def of(cls, rows: list[tuple[int, int, int]] | np.ndarray, end: int = 0) -> Timeline:
        """From (start, end, song id) rows sorted by start, and the timeline's end as the index recorded it with
        them (0: the last song's end)."""
        starts, ends, ids = np.asarray(rows, np.int64).reshape(-1, 3).T
        return cls(starts, ends, ids, max(end, int(ends.max()) if ends.size else 0))

    def locate(self, timeline_frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mask of the entries that fall in a song, their song ids, their frames within the song)."""
        if self.starts.size == 0:
            return np.zeros(timeline_frames.size, bool), np.zeros(0, np.int64), np.zeros(0, np.int64)
        slot = self._slots(np.asarray(timeline_frames, np.int64))
        frames = timeline_frames - self.starts[slot]
        inside = (frames >= 0) & (timeline_frames < self.ends[slot])
        if inside.all():  # the rule: only postings of songs removed since lie outside
            return inside, self.song_ids[slot], frames
        return inside, self.song_ids[slot[inside]], frames[inside]

    @cached_property
    def _cells(self) -> tuple[int, np.ndarray, np.ndarray]:
        """(cell_bits, first, next_starts): the timeline cut into cells of 2^cell_bits frames, `first[c]` the slot of
        the last song starting at or before cell c, and each slot's next song's start. A binary search per posting
        costs about 8× more at 90,000 postings: its probes miss the cache."""
        cell_bits = max(0, int(np.ceil(np.log2(max(self.end, 1) / (CELLS_PER_SONG * self.starts.size)))))
        n_cells = (self.end >> cell_bits) + 1
        # songs starting at or before each cell's start: those whose start, rounded up to a cell, is that cell or
        # an earlier one (a count, 4× faster than a binary search per cell)
        first_cell_after = (self.starts + (1 << cell_bits) - 1) >> cell_bits
        first = np.maximum(np.cumsum(np.bincount(first_cell_after, minlength=n_cells)[:n_cells]) - 1, 0)
        return cell_bits, first, np.r_[self.starts[1:], np.iinfo(np.int64).max]

    def _slots(self, timeline_frames: np.ndarray) -> np.ndarray:
        """Per frame, the slot of the last song starting at or before it (0 before the first)."""
        cell_bits, first, next_starts = self._cells
        slot = first[np.clip(timeline_frames >> cell_bits, 0, first.size - 1)]
        for _ in range(CELL_STEPS):
            ahead = next_starts[slot] <= timeline_frames
            if not ahead.any():
                return slot
            slot = slot + ahead
        ahead = np.flatnonzero(next_starts[slot] <= timeline_frames)
        slot[ahead] = np.searchsorted(self.starts, timeline_frames[ahead], side="right") - 1
        return slot
