"""The methods under test, behind one small interface: build an index of songs, then answer queries."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class BuildStats:
    songs: int = 0
    audio_s: float = 0.0
    seconds: float = 0.0
    fingerprint_bytes: int = 0
    db_bytes: int = 0
    notes: list[str] = field(default_factory=list)


class LandmarkMethod:
    """The landmark engine, through its public `Index` API."""

    name = "landmark"
    meaningful = True

    def __init__(self, workdir: str, jobs: int = 2, config=None):
        self.db_path = os.path.join(workdir, "landmark.db")
        self.jobs = jobs
        self.config = config

    def build(self, paths: list[str]) -> BuildStats:
        from landmark import Index

        if os.path.exists(self.db_path):
            os.unlink(self.db_path)
        started = time.perf_counter()
        with Index(self.db_path, create=True, config=self.config) as index:
            report = index.add(paths, jobs=self.jobs)
        seconds = time.perf_counter() - started
        self.index = Index(self.db_path, config=self.config)
        self.rate = self.index.config.sample_rate_hz
        stats = self.index.stats()
        notes = [f"{path}: {error}" for path, error in report.failed]
        fingerprint_bytes = stats["postings_bytes"] + stats["peaks_bytes"]  # matching reads both
        return BuildStats(stats["songs"], stats["duration_s"], seconds, fingerprint_bytes,
                          os.path.getsize(self.db_path), notes)

    def query(self, samples: np.ndarray, sample_rate_hz: int) -> tuple[str | None, float]:
        """(path of the identified song or None, score)."""
        import soxr

        from landmark.errors import AudioError

        if sample_rate_hz != self.rate:
            samples = soxr.resample(samples, sample_rate_hz, self.rate).astype(np.float32)
        try:
            found = self.index.match_samples(samples)
        except AudioError:
            return None, 0.0
        return (found.song.path, found.score) if found else (None, 0.0)
