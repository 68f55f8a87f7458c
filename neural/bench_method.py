"""The MERT method for `bench compare`."""

from __future__ import annotations

import os
import time

import numpy as np

from bench.methods import BuildStats


class MertMethod:
    name = "mert"

    def __init__(self, workdir: str, model: str | None, device: str | None = None):
        from landmark.errors import ModelError

        if not model:
            raise ModelError("no weights (pass --mert-model DIR; see README, 'Getting the MERT weights')")
        from . import mert

        self.encoder = mert.load(model, device=device)
        self.db_path = os.path.join(workdir, "mert.db")
        self.cores = 1
        # Random stand-in weights (the tests' tiny model) say nothing about recall.
        self.meaningful = self.encoder.dims >= 768 and not os.path.exists(os.path.join(model, "RANDOM_WEIGHTS"))

    def build(self, paths: list[str]) -> BuildStats:
        from .library import MertIndex

        started = time.perf_counter()
        self.index = MertIndex(self.db_path, self.encoder, create=True)
        added, _, failed = self.index.add(paths)
        seconds = time.perf_counter() - started
        conn = self.index.store.conn
        audio_s = conn.execute("SELECT COALESCE(SUM(duration_s), 0) FROM songs").fetchone()[0]
        code_bytes = conn.execute("SELECT COALESCE(SUM(LENGTH(codes)), 0) FROM mert_codes").fetchone()[0]
        return BuildStats(added, audio_s, seconds, code_bytes, os.path.getsize(self.db_path),
                          [f"{p}: {e}" for p, e in failed])

    def query(self, samples: np.ndarray, sample_rate_hz: int) -> tuple[str | None, float]:
        import soxr

        from landmark.errors import AudioError

        from .mert import SAMPLE_RATE_HZ

        if sample_rate_hz != SAMPLE_RATE_HZ:
            samples = soxr.resample(samples, sample_rate_hz, SAMPLE_RATE_HZ).astype(np.float32)
        try:
            found = self.index.match_samples(samples)
        except AudioError:
            return None, 0.0
        return (found.song.path, found.distance) if found else (None, 0.0)
