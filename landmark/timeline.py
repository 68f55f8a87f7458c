"""The timeline: every song's frames laid end to end, in the order the songs were added.

A posting names song and time with one number, its timeline frame. Timeline frames are never reused: a removed
song leaves a gap, so a reader holding an older list of songs cannot misattribute a posting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIMELINE_BITS = 36
TIMELINE_END = 1 << TIMELINE_BITS
"""Timeline capacity: 2^36 frames, 300,000 hours at 16 ms frames."""


@dataclass(frozen=True)
class Timeline:
    """Where each song's frames lie on the timeline (sorted by start), to turn a posting's timeline frame back
    into (song, frame)."""

    starts: np.ndarray  # int64
    ends: np.ndarray  # int64, exclusive
    song_ids: np.ndarray  # int64
    end: int
    """The end of the last song listed; postings past it belong to songs added since."""

    @classmethod
    def of(cls, rows: list[tuple[int, int, int]]) -> Timeline:
        """From (start, end, song id) rows sorted by start."""
        starts, ends, ids = np.asarray(rows, np.int64).reshape(-1, 3).T
        return cls(starts, ends, ids, int(ends.max()) if ends.size else 0)

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
