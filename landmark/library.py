"""`Index`: the Python API behind every `lmprint` command (add, match, list, remove, stats)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from . import audio, vote
from .batch import Outcome, find_audio_files, fingerprint_songs
from .config import Config
from .errors import AudioError, IndexFileError
from .fingerprint import fingerprint
from .index import Song, Store
from .verify import ProminenceMap, agrees, verify


COMPACT_AFTER_CHANGE = 0.2
"""`add` and `remove` compact the file (`Store.compact`) after a batch that added or removed at least this fraction
of the audio now indexed: a bulk add then leaves a file about 10 % smaller, removing songs gives the space back,
and small changes to a large index stay cheap."""


@dataclass(frozen=True)
class Match:
    """The song a query was identified as."""

    song: Song
    score: float
    """Summed weight of the aligned hashes in the best Δt bin (see `vote`)."""
    offset_s: float
    """Where in the song the query starts, in seconds."""
    confidence: float
    """In [0, 1]. Matched by vote: the lead over the runner-up song as a fraction of the score. Matched by
    verification (`verify`): 1 − threshold / z, 0 at the threshold and near 1 when the peaks agree well."""

    def to_dict(self) -> dict:
        return {"path": self.song.path, "title": self.song.title, "score": round(self.score, 1),
                "offset_s": round(self.offset_s, 3), "confidence": round(self.confidence, 3)}


@dataclass
class AddReport:
    """Counts of a finished `add` batch, and each failed file with its reason."""

    added: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_s: float = 0.0


class Index:
    """A landmark index in one SQLite file. `Index(path, create=True)` makes the file if it does not exist."""

    def __init__(self, path: str | os.PathLike, *, create: bool = False, config: Config | None = None):
        self.store = Store(path, create=create, config=config)
        self.config = self.store.config

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> "Index":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- add --------------------------------------------------------------------------------------------------
    def add(self, paths: Iterable[str], jobs: int = 1, on_outcome: Callable[[Outcome], None] | None = None
            ) -> AddReport:
        """Index every audio file in `paths` (files and folders, recursively), skipping content already indexed.

        Each song is committed on its own, so an interrupted batch keeps every song finished before it.
        `on_outcome` is called once per file, e.g. to report errors as they happen.
        """
        report = AddReport()
        todo = []
        for path, error in find_audio_files(paths):
            if error:
                self._record(report, Outcome(path, error=error), on_outcome)
            else:
                todo.append(path)
        known = frozenset(self.store.content_hashes())
        for outcome in fingerprint_songs(todo, self.config, jobs=jobs, known_sha1=known):
            if outcome.song is not None:
                song = outcome.song
                song_id = self.store.insert_song(song.path, song.title, song.duration_s, song.content_sha1,
                                                 song.hashes, song.anchor_frames, (song.peak_frames, song.peak_bins))
                if song_id is None:
                    outcome = Outcome(outcome.path, skipped=True)
                else:
                    report.audio_s += song.duration_s
            self._record(report, outcome, on_outcome)
        self._compact_after_change(report.audio_s)
        return report

    def _compact_after_change(self, changed_audio_s: float) -> None:
        if changed_audio_s > 0 and changed_audio_s >= COMPACT_AFTER_CHANGE * self.store.indexed_duration_s():
            self.store.compact()

    @staticmethod
    def _record(report: AddReport, outcome: Outcome, on_outcome) -> None:
        if outcome.error:
            report.failed.append((outcome.path, outcome.error))
        elif outcome.skipped:
            report.skipped += 1
        else:
            report.added += 1
        if on_outcome:
            on_outcome(outcome)

    # --- match ------------------------------------------------------------------------------------------------
    def match(self, path: str | os.PathLike) -> Match | None:
        """The indexed song that the audio file `path` comes from, or None. Raises AudioError for bad input."""
        samples = audio.load(path, self.config.sample_rate_hz, max_duration_s=self.config.max_query_s)
        return self.match_samples(samples)

    def match_samples(self, samples: np.ndarray) -> Match | None:
        """Like `match`, for mono float32 samples already at `config.sample_rate_hz`."""
        match, _ = self.identify(samples)
        return match

    def identify(self, samples: np.ndarray) -> tuple[Match | None, list[vote.Candidate]]:
        """The decision and the ranked candidates behind it (for diagnostics and the bench)."""
        samples = samples[:int(self.config.max_query_s * self.config.sample_rate_hz)]
        audio.check_usable(samples, self.config.sample_rate_hz, self.config.min_duration_s)
        query = fingerprint(samples, self.config, self.config.query, with_prominence=True)
        if query.hashes.size == 0:
            raise AudioError("no landmarks found (silent or featureless)")
        alignments = self._align(query, self.config.query_delta_tolerance_frames)
        candidates = alignments.top(self._candidate_count)
        best, confidence = vote.decide(candidates, self.config)
        if best is None and self.config.query_retry_tolerance_frames > self.config.query_delta_tolerance_frames:
            alignments = self._align(query, self.config.query_retry_tolerance_frames)
            candidates = alignments.top(self._candidate_count)
            best, confidence = vote.decide(candidates, self.config, min_ratio=self.config.query_retry_min_ratio)
        if self.config.verify_candidates > 0:
            clip = ProminenceMap.of(query.prominence, self.config)
            if best is not None and not agrees(best, clip, self.store.song_peaks, self.config):
                best = None  # the vote lined up pairs, but the song's peaks are not in the clip
            if best is None:
                candidates = alignments.top(self._candidate_count, other_offsets=self.config.verify_other_offsets)
                best, confidence = verify(candidates, clip, self.store.song_peaks, self.config)
        if best is None:
            return None, candidates
        song = self.store.songs_by_id([best.song_id]).get(best.song_id)
        if song is None:  # removed between lookup and now
            return None, candidates
        offset_s = max(0.0, best.delta_frames * self.config.frame_s)
        return Match(song, best.score, offset_s, confidence), candidates

    def _align(self, query, tolerance_frames: int) -> vote.Alignments:
        """The query fingerprint's votes per song and Δt, its hashes looked up with Δt ± tolerance_frames."""
        query_hashes = vote.QueryHashes.of(query.hashes, query.anchor_frames, tolerance_frames)
        postings = self.store.lookup(query_hashes.distinct)
        return vote.align(query_hashes, *postings, self.store.fingerprinted_song_count(), self.config)

    @property
    def _candidate_count(self) -> int:
        """How many of the best-voted songs a decision looks at: the runner-up, and those verification reads."""
        return max(2, self.config.verify_candidates)

    # --- list, remove, stats ----------------------------------------------------------------------------------
    def songs(self) -> list[Song]:
        return self.store.songs()

    def remove(self, references: Iterable[str]) -> tuple[list[Song], list[str]]:
        """Remove songs named by id, path, title or content hash. Returns (removed songs, references not found)."""
        removed: dict[int, Song] = {}
        missing = []
        for reference in references:
            found = self.store.find_songs(reference)
            if not found:
                missing.append(reference)
            removed.update({song.id: song for song in found})
        self.store.delete_songs(list(removed))
        self._compact_after_change(sum(song.duration_s for song in removed.values()))
        return list(removed.values()), missing

    def stats(self) -> dict:
        return self.store.stats()


__all__ = ["Index", "Match", "AddReport", "IndexFileError"]
