"""`MertIndex`: add songs as MERT codes and identify clips by Hamming distance, in the shared index file."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from landmark import audio
from landmark.batch import Outcome, content_sha1, find_audio_files
from landmark.errors import AudioError, IndexFileError, LmprintError
from landmark.index import Song, Store

from . import mert, search
from . import store as code_store
from .codes import CODE_BITS, Projection, kmeans

MAX_DISTANCE_FRACTION = 0.25
"""No match when the nearest song is further than this fraction of the code bits (64 of 256), or..."""

MIN_MARGIN_BITS = 4
"""...when it beats the runner-up by fewer bits than this. Both are provisional: they must be calibrated with
the real weights on clips of songs that are not indexed (`bench compare`), which these machines cannot get."""


@dataclass(frozen=True)
class MertMatch:
    song: Song
    distance: float
    """Hamming distance in bits (mean over the query's windows, under the default rule)."""
    confidence: float
    """Margin over the runner-up as a fraction of the code bits."""

    def to_dict(self) -> dict:
        return {"path": self.song.path, "title": self.song.title, "score": round(self.distance, 2),
                "offset_s": None, "confidence": round(self.confidence, 3)}


class MertIndex:
    """MERT codes in an lmprint index file. The PCA basis is fit on the first batch's centroids, then frozen."""

    def __init__(self, path: str | os.PathLike, encoder: mert.MertEncoder, *, create: bool = False,
                 batch_size: int = 16, rule: str = "mean"):
        self.store = Store(path, create=create)
        code_store.ensure_tables(self.store)
        self.encoder = encoder
        self.batch_size = batch_size
        self.rule = rule
        self._search_cache = None

    def close(self) -> None:
        self.store.close()

    def embed_file(self, path: str, progress=None) -> tuple[np.ndarray, audio.Decoded]:
        decoded = audio.decode(path, mert.SAMPLE_RATE_HZ)
        audio.check_usable(decoded.samples, mert.SAMPLE_RATE_HZ, mert.MIN_CLIP_S)
        return self.encoder.embed(decoded.samples, self.batch_size, progress), decoded

    def add(self, paths: Iterable[str], on_outcome: Callable[[Outcome], None] | None = None, progress=None
            ) -> tuple[int, int, list[tuple[str, str]]]:
        """(added, skipped, failed). Songs of the batch that precedes the PCA fit wait for it in memory."""
        known = code_store.coded_content(self.store)
        projection = code_store.projection(self.store)
        pending = []
        added = skipped = 0
        failed: list[tuple[str, str]] = []

        def report(outcome: Outcome) -> None:
            if on_outcome:
                on_outcome(outcome)

        for path, error in find_audio_files(paths):
            try:
                if error:
                    raise AudioError(error)
                try:
                    sha1 = content_sha1(path)
                except OSError as os_error:
                    raise AudioError(os_error.strerror or str(os_error)) from None
                if sha1 in known:
                    skipped += 1
                    report(Outcome(path, skipped=True))
                    continue
                embeddings, decoded = self.embed_file(path, progress)
                title = decoded.title or os.path.splitext(os.path.basename(path))[0]
                centroids = kmeans(embeddings)
                pending.append((path, title, decoded.duration_s, sha1, centroids, embeddings.shape[0]))
                known.add(sha1)
                if projection is not None:
                    added += self._store_pending(pending, projection)
                report(Outcome(path))
            except LmprintError as failure:
                failed.append((path, str(failure)))
                report(Outcome(path, error=str(failure)))
        if pending and projection is None:
            reference = np.concatenate([p[4] for p in pending])
            if reference.shape[0] < CODE_BITS:
                print(f"lmprint: note: PCA fit on {reference.shape[0]} centroids (fewer than {CODE_BITS}); "
                      "index at least 26 songs in the first batch for a well-conditioned basis", file=sys.stderr)
            code_store.save_projection(self.store, Projection.fit(reference), self.encoder.name, reference.shape[0])
            projection = code_store.projection(self.store)
            added += self._store_pending(pending, projection)
        self._search_cache = None
        return added, skipped, failed

    def _store_pending(self, pending: list, projection: Projection) -> int:
        stored = 0
        for path, title, duration_s, sha1, centroids, n_windows in pending:
            stored += code_store.add_codes(self.store, path, title, duration_s, sha1, projection.codes(centroids),
                                           n_windows) is not None
        pending.clear()
        return stored

    def match(self, path: str) -> MertMatch | None:
        return self.match_samples(audio.load(path, mert.SAMPLE_RATE_HZ))

    def match_samples(self, samples: np.ndarray) -> MertMatch | None:
        """Identify mono float32 samples at 24 kHz."""
        audio.check_usable(samples, mert.SAMPLE_RATE_HZ, mert.MIN_CLIP_S)
        if self._search_cache is None:  # the basis and the codes, read once until the next add
            projection = code_store.projection(self.store)
            if projection is None:
                raise IndexFileError(f"{self.store.path} has no MERT codes yet (lmprint add --method mert)")
            self._search_cache = (projection, *code_store.load_codes(self.store, projection.bits))
        projection, song_ids, code_columns, code_song = self._search_cache
        if song_ids.size == 0:
            return None
        query = projection.codes(self.encoder.embed(samples, self.batch_size))
        rows, distances = search.rank(query, code_columns, code_song, song_ids.size, self.rule)
        best = distances[0]
        runner_up = distances[1] if distances.size > 1 else float(projection.bits)
        margin = runner_up - best
        if best > MAX_DISTANCE_FRACTION * projection.bits or margin < MIN_MARGIN_BITS:
            return None
        song = self.store.songs_by_id([int(song_ids[rows[0]])]).get(int(song_ids[rows[0]]))
        return MertMatch(song, float(best), float(margin / projection.bits)) if song else None
