"""The methods under test, each an engine behind `lmprint.method.Method`: build an index of songs, then answer
queries."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from lmprint.errors import AudioError, ModelError
from lmprint.method import Method


@dataclass
class BuildStats:
    songs: int = 0
    audio_s: float = 0.0
    seconds: float = 0.0
    fingerprint_bytes: int = 0
    db_bytes: int = 0
    """The index on disk: the file, its write-ahead log and any folder beside it (the engine's `file_bytes`)."""
    notes: list[str] = field(default_factory=list)


class BenchMethod:
    """One engine under test: `build` indexes the songs into a fresh file, `query` names a clip."""

    meaningful = True
    """False when the figures say nothing about the method (MERT with random stand-in weights)."""

    def __init__(self, name: str, db_path: str, jobs: int, cores: int):
        self.name, self.db_path, self.jobs, self.cores = name, db_path, jobs, cores
        self.index: Method | None = None

    def open(self, create: bool) -> Method:
        raise NotImplementedError

    def stored_bytes(self, stats: dict) -> int:
        """Bytes of what matching reads, from the engine's stats."""
        raise NotImplementedError

    def build(self, paths: list[str]) -> BuildStats:
        for leftover in (self.db_path, f"{self.db_path}-wal", f"{self.db_path}-shm"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        started = time.perf_counter()
        with self.open(create=True) as index:
            report = index.add(paths, jobs=self.jobs)
        seconds = time.perf_counter() - started
        self.index = self.open(create=False)
        stats = self.index.stats()
        audio_s = self.index.catalogue.audio_s()
        return BuildStats(len(self.index.catalogue.songs()), round(audio_s, 1), seconds, self.stored_bytes(stats),
                          stats["file_bytes"], report.notes + [f"{path}: {error}" for path, error in report.failed])

    def query(self, samples: np.ndarray, sample_rate_hz: int) -> tuple[str | None, float, tuple[float, float] | None]:
        """(path of the identified song or None, score, (tempo, pitch) it was heard at or None where the engine
        cannot tell)."""
        import soxr

        assert self.index is not None, "build first"
        if sample_rate_hz != self.index.sample_rate_hz:
            samples = soxr.resample(samples, sample_rate_hz, self.index.sample_rate_hz).astype(np.float32)
        try:
            found = self.index.match_samples(samples)
        except AudioError:
            return None, 0.0, None
        if found is None:
            return None, 0.0, None
        return found.song.path, found.score, heard_at(found)


def heard_at(found) -> tuple[float, float] | None:
    """(tempo, pitch) a match reports (a speed s: (s, s)), or None where the engine cannot tell."""
    if found.speed is not None:
        return found.speed, found.speed
    if found.tempo is not None and found.pitch is not None:
        return found.tempo, found.pitch
    return None


class LandmarkMethod(BenchMethod):
    """The landmark engine, through its public `Index` API."""

    def __init__(self, workdir: str, jobs: int = 2, fingerprint=None, matching=None):
        super().__init__("landmark", os.path.join(workdir, "landmark.db"), jobs, cores=jobs)
        self.fingerprint, self.matching = fingerprint, matching

    def open(self, create: bool) -> Method:
        from landmark import Index

        return Index(self.db_path, create=create, fingerprint=self.fingerprint, matching=self.matching)

    def stored_bytes(self, stats: dict) -> int:
        return stats["postings_bytes"] + stats["peaks_bytes"]  # matching reads both


class MertMethod(BenchMethod):
    """The MERT engine, with a local checkpoint folder."""

    def __init__(self, workdir: str, model: str | None, device: str | None = None):
        if not model:
            raise ModelError("no weights (pass --mert-model DIR or set $LMPRINT_MERT_MODEL; see README, 'Getting the "
                             "MERT weights')")
        from neural import mert

        super().__init__("mert", os.path.join(workdir, "mert.db"), jobs=1, cores=1)
        self.encoder = mert.load(model, device=device)
        # Random stand-in weights (the tests' tiny model) say nothing about recall.
        self.meaningful = self.encoder.dims >= 768 and not os.path.exists(os.path.join(model, "RANDOM_WEIGHTS"))

    def open(self, create: bool) -> Method:
        from neural.library import MertIndex

        return MertIndex(self.db_path, create=create, encoder=self.encoder)

    def stored_bytes(self, stats: dict) -> int:
        return stats["code_bytes"]
