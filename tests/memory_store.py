"""A `PostingStore` kept in memory: the whole interface in a page, as a backend for a key-value store would
implement it (one value of postings per key). The contract tests hold it and the embedded store to the same
behaviour; lmprint itself never uses it.

A store outside the index file cannot join the catalogue's write transaction. It writes at once, and undoes what it
wrote if that transaction rolls back (`Catalogue.after_rollback`): a song id rolled back is given again, and its
postings must not answer for the next song."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from landmark.store import Postings, SongPostings, within_budget
from lmprint.catalogue import Catalogue

KEYS_PER_SCAN = 4096
"""Keys returned by one batch of `scan`."""


class MemoryPostingStore:
    """Postings per key, each key's as (song ids, frames) arrays; nothing survives `close`."""

    def __init__(self, catalogue: Catalogue) -> None:
        self._catalogue = catalogue
        self._by_key: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._per_song: Counter[int] = Counter()

    def add(self, songs: Sequence[SongPostings]) -> None:
        self._catalogue.after_rollback(lambda: self._drop([song.song_id for song in songs]))
        for song in songs:
            if song.hashes.size == 0:
                continue
            order = np.argsort(song.hashes, kind="stable")
            hashes, frames = np.asarray(song.hashes)[order], np.asarray(song.frames, np.int64)[order]
            starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]])
            for key, key_frames in zip(hashes[starts].tolist(), np.split(frames, starts[1:])):
                songs_before, frames_before = self._by_key.get(key, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
                self._by_key[key] = (np.r_[songs_before, np.full(key_frames.size, song.song_id)],
                                     np.r_[frames_before, key_frames])
            self._per_song[song.song_id] += int(hashes.size)

    def lookup(self, keys: np.ndarray, priority: np.ndarray | None = None, max_postings: int = 0) -> Postings:
        keys = np.asarray(keys, np.uint32)
        if (keys[1:] <= keys[:-1]).any():
            raise ValueError("lookup needs ascending, distinct keys")
        found = [self._by_key.get(key) for key in keys.tolist()]
        sizes = np.array([0 if postings is None else postings[0].size for postings in found], np.int64)
        taken = (within_budget(priority, sizes, max_postings) if priority is not None and max_postings > 0
                 else np.ones(keys.size, bool))
        read = [i for i in np.flatnonzero(taken & (sizes > 0)).tolist()]
        if not read:
            return Postings.empty()
        return Postings(np.repeat(np.array(read, np.int64), sizes[read]),
                        np.concatenate([found[i][0] for i in read]).astype(np.int64),  # type: ignore[index]
                        np.concatenate([found[i][1] for i in read]).astype(np.int64))  # type: ignore[index]

    def remove(self, song_ids: Sequence[int]) -> None:
        kept_before = dict(self._by_key), Counter(self._per_song)

        def undo() -> None:
            self._by_key, self._per_song = kept_before
        self._catalogue.after_rollback(undo)
        self._drop(song_ids)

    def _drop(self, song_ids: Sequence[int]) -> None:
        gone = np.asarray(list(song_ids), np.int64)
        for key, (songs, frames) in list(self._by_key.items()):
            kept = ~np.isin(songs, gone)
            if kept.all():
                continue
            if kept.any():
                self._by_key[key] = (songs[kept], frames[kept])
            else:
                del self._by_key[key]
        for song_id in gone.tolist():
            self._per_song.pop(song_id, None)

    def scan(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        keys = sorted(self._by_key)
        for first in range(0, len(keys), KEYS_PER_SCAN):
            batch = keys[first:first + KEYS_PER_SCAN]
            sizes = [self._by_key[key][0].size for key in batch]
            yield (np.repeat(np.array(batch, np.uint32), sizes),
                   np.concatenate([self._by_key[key][0] for key in batch]),
                   np.concatenate([self._by_key[key][1] for key in batch]))

    def song_count(self) -> int:
        return sum(1 for count in self._per_song.values() if count > 0)

    def compact(self) -> None:
        """Nothing to do: a removal drops its postings at once."""

    def stats(self) -> dict:
        postings = sum(songs.size for songs, _ in self._by_key.values())
        return {"hashes": postings, "postings_bytes": 16 * postings, "segment_bytes": 0}

    def close(self) -> None:
        self._by_key.clear()
        self._per_song.clear()
