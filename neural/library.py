"""`MertIndex`: add songs as MERT codes and identify clips by Hamming distance, in an lmprint index file."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

import numpy as np

from landmark import audio
from lmprint.catalogue import BUSY_TIMEOUT_S, Catalogue, song_list
from lmprint.errors import AudioError, IndexFileError, LmprintError, ModelError
from lmprint.files import content_sha1, find_audio_files, title_from_path, unstorable_name
from lmprint.moves import follow_before_adding, followed, recorder, settle_paths
from lmprint.results import AddReport, Answer, Contender, Match, Outcome, Song
from lmprint.samples import at_engine_rate, mono_samples
from lmprint.workers import checked_jobs

from . import mert, search
from .codes import Projection, kmeans
from .settings import MertSettings
from .store import CodeStore

CONTENDERS = 80
"""Nearest songs an answer lists (`match --top`): as many as a landmark decision looks at."""


class MertIndex:
    """MERT codes in an lmprint index file. The PCA basis is fit on the first batch's centroids, then frozen.

    The model (`model`: a local checkpoint folder; None: $LMPRINT_MERT_MODEL) loads when a song is first added or
    matched, so listing, removing and stats need no torch. `encoder` gives one already loaded. `busy_timeout_s`: how
    long a read or write waits for another process's lock before it gives up (`IndexLocked`)."""

    name = "mert"
    sample_rate_hz = mert.SAMPLE_RATE_HZ

    def __init__(self, path: str | os.PathLike, model: str | os.PathLike | None = None, *, create: bool = False,
                 device: str | None = None, settings: MertSettings | None = None,
                 encoder: mert.MertEncoder | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.settings = settings or MertSettings()
        self.catalogue = Catalogue(path, create=create, busy_timeout_s=busy_timeout_s)
        try:
            self.codes = CodeStore(self.catalogue, self.settings, create=create)
        except BaseException:
            self.catalogue.close()
            raise
        self._model, self._device, self._encoder = model, device, encoder
        self._search_cache: tuple | None = None
        self._search_version: tuple[int, int, int] | None = None  # the file's `Catalogue.version` when it was read:
        # a change to the file (this index's add or remove, or another connection's) reads it again

    @property
    def encoder(self) -> mert.MertEncoder:
        if self._encoder is None:
            self._encoder = mert.load(self._model, device=self._device)
        return self._encoder

    def close(self) -> None:
        self.catalogue.close()

    def __enter__(self) -> MertIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def embed_file(self, path: str, progress=None) -> tuple[np.ndarray, audio.Decoded]:
        decoded = audio.decode(path, self.sample_rate_hz)
        audio.check_usable(decoded.samples, self.sample_rate_hz, self.settings.min_clip_s)
        return self._embed(decoded.samples, progress), decoded

    def _embed(self, samples: np.ndarray, progress=None) -> np.ndarray:
        """Embeddings of a signal's windows, as the settings cut them."""
        return self.encoder.embed(samples, self.settings.batch_size, progress, self.settings.window_s,
                                  self.settings.hop_s)

    def add(self, paths: str | os.PathLike | Iterable[str | os.PathLike], jobs: int = 1,
            on_outcome: Callable[[Outcome], None] | None = None, progress=None) -> AddReport:
        """Code every audio file under `paths`, skipping content already coded. As the landmark engine's `add`
        does, a song follows its content to a moved file or records a copy (`lmprint.moves`), and the entry a path
        held before other content was coded there moves to where its content is now, or is removed. Songs of the
        batch that precedes the PCA fit wait for it in memory. `jobs` is accepted for the common interface; the
        model runs in this process."""
        checked_jobs(jobs)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        known = self.codes.coded_content()
        projection = self.codes.projection()
        # the model is checked against the index before it embeds, or at once when it is loaded already (`add`'s
        # command loads it first): not loaded only to learn that every file is known
        fits = self._encoder is not None and self._model_fits(projection) is not None
        pending: list[tuple] = []
        content_at: dict[str, str] = {}  # path → the content this batch found there
        copies_waiting: list[Outcome] = []  # files of content that waits for the basis: copies, once it is stored
        report = AddReport()
        record = recorder(self.catalogue, report, on_outcome)

        try:
            for path, error in find_audio_files(paths):
                try:
                    error = error or unstorable_name(path)
                    if error:
                        raise AudioError(error)
                    sha1 = content_sha1(path)
                    if sha1 in known:
                        content_at[path] = sha1
                        skipped = Outcome(path, skipped=True, content_sha1=sha1)
                        if any(waiting[3] == sha1 for waiting in pending):  # not in the catalogue before the fit
                            copies_waiting.append(skipped)
                        record(followed(self.catalogue, skipped, audio.title_of))
                        continue
                    if not fits:
                        self._model_fits(projection)
                        fits = True
                    follow_before_adding(self.catalogue, path, sha1, audio.title_of)  # the landmark engine's entry
                    embeddings, decoded = self.embed_file(path, progress)
                    title = decoded.title or title_from_path(path)
                    centroids = kmeans(embeddings, k=self.settings.centroids)
                    pending.append((path, title, decoded.duration_s, sha1, centroids, embeddings.shape[0]))
                    known.add(sha1)
                    content_at[path] = sha1
                    if projection is not None:
                        self._store_pending(pending, projection)
                        pending.clear()
                    record(Outcome(path, warning=decoded.warning, content_sha1=sha1), decoded.duration_s)
                except ModelError:
                    raise  # the model, not this file
                except LmprintError as failure:
                    record(Outcome(path, error=str(failure)))
        except KeyboardInterrupt:
            # the first batch waits for the basis: keep it if it holds enough to fit one well, as if it were all
            if pending and projection is None:
                if sum(p[4].shape[0] for p in pending) < self.settings.code_bits:
                    raise KeyboardInterrupt(f"the first {len(pending)} songs waited for the PCA fit, which needs "
                                            f"{self.settings.code_bits} centroids: none kept") from None
                self._fit_projection(pending)
            raise
        if pending and projection is None:
            note = self._fit_projection(pending)
            report.notes += [note] if note else []
        for skipped in copies_waiting:
            record(followed(self.catalogue, skipped, audio.title_of))
        with_postings: list[Song] = []

        def remove_stale(songs: list[Song]) -> list[int]:
            """`remove`, less the entries with landmark postings: only the landmark engine drops those."""
            with_postings.extend(song for song in songs if song.n_hashes > 0)
            return self.remove([song for song in songs if song.n_hashes == 0])

        report.replaced = settle_paths(self.catalogue, content_at, remove_stale, audio.title_of, record, on_outcome)
        if len(with_postings) == 1:
            report.notes.append(f"{with_postings[0].path} holds other audio than when the landmark engine indexed "
                                "it: that engine still names the old audio there until `lmprint add` (the landmark "
                                "engine) indexes the file again")
        elif with_postings:
            report.notes.append(f"{len(with_postings)} files hold other audio than when the landmark engine indexed "
                                f"them ({with_postings[0].path}, ...): that engine still names the old audio there "
                                "until `lmprint add` (the landmark engine) indexes them again")
        return report

    def _fit_projection(self, pending: list) -> str | None:
        """Fit and freeze the PCA basis on the first batch's centroids, and store the batch's codes. A note for the
        user where the batch held too few centroids for a well-conditioned basis; none where another process's
        first batch stored its basis first (this batch's codes are made with that one, and that process told its
        user)."""
        if self.encoder.dims < self.settings.code_bits:
            raise ModelError(f"{self.encoder.name}: a model of {self.encoder.dims} dimensions cannot give "
                             f"{self.settings.code_bits}-bit codes (its embeddings span fewer)")
        reference = np.concatenate([p[4] for p in pending])
        saved = self.codes.save_projection(Projection.fit(reference, self.settings.code_bits), self.encoder.name,
                                           reference.shape[0], self.encoder.digest)
        projection = self._model_fits(self.codes.projection())
        assert projection is not None
        self._store_pending(pending, projection)
        if not saved or reference.shape[0] >= self.settings.code_bits:
            return None
        return (f"PCA fit on {reference.shape[0]} centroids (fewer than {self.settings.code_bits}), and fixed for "
                f"this index from now on; for a well-conditioned basis, index again into a new file with at least "
                f"{-(-self.settings.code_bits // self.settings.centroids)} songs in its first batch")

    def _model_fits(self, projection: Projection | None) -> Projection | None:
        """The index's frozen PCA basis, refused in one line when this model is not the one that made its codes:
        another model's embeddings (MERT-v1-330M's 1,024 dimensions, or another checkpoint's of the same size)
        cannot be compared with them."""
        if projection is None:
            return None
        rebuild = "use the model it was built with (--model), or index again into a new file"
        if projection.mean.size != self.encoder.dims:
            raise ModelError(f"{self.catalogue.path}: its MERT codes come from a model of {projection.mean.size} "
                             f"dimensions, and {self.encoder.name} gives {self.encoder.dims}: {rebuild}")
        recorded = self.codes.model_digest()
        if recorded is not None and self.encoder.digest is not None and recorded != self.encoder.digest:
            raise ModelError(f"{self.catalogue.path}: its MERT codes come from other weights (digest {recorded}) "
                             f"than those in {self.encoder.name} ({self.encoder.digest}): {rebuild}")
        return projection

    def _store_pending(self, pending: list, projection: Projection) -> None:
        for path, title, duration_s, sha1, centroids, n_windows in pending:
            self.codes.add(path, title, duration_s, sha1, projection.codes(centroids), n_windows)
        pending.clear()

    def match(self, path: audio.AudioSource) -> Match | None:
        return self.match_samples(audio.load(path, self.sample_rate_hz))

    def match_samples(self, samples: np.ndarray, sample_rate_hz: float | None = None) -> Match | None:
        """Identify mono samples at `sample_rate_hz` (None: at 24 kHz, the engine's). The score is the Hamming
        distance in bits (lower is better); the confidence is the margin over the runner-up as a fraction of the
        code bits."""
        return self._answer(mono_samples(at_engine_rate(samples, sample_rate_hz, self.sample_rate_hz))).match

    def follow(self, samples: np.ndarray, previous: Match, offset_s: float, min_score: float = 0.0) -> Match | None:
        """None: a song's codes do not say where in it a clip lies, so every look searches."""
        return None

    def heard_span(self, samples: np.ndarray, previous: Match, offset_s: float) -> tuple[float, float] | None:
        """None: a song's codes do not say where in it a clip lies, nor where in the clip it plays."""
        return None

    def answer(self, path: audio.AudioSource) -> Answer:
        """The match of the audio file `path` and the nearest songs behind it, nearest first, with their
        distances."""
        return self._answer(audio.load(path, self.sample_rate_hz))

    def _answer(self, samples: np.ndarray) -> Answer:
        audio.check_usable(samples, self.sample_rate_hz, self.settings.min_clip_s)
        version = self.catalogue.version()
        if self._search_cache is None or version != self._search_version:
            # the basis and the codes, read again once the file has changed (this index's add, or another
            # process's or a server thread's add or remove)
            projection = self.codes.projection()
            if projection is None:
                raise IndexFileError(f"{self.catalogue.path} has no MERT codes yet (lmprint add --method mert)")
            self._search_cache = (self._model_fits(projection), *self.codes.load(projection.bits))
            self._search_version = version
        projection, song_ids, code_columns, code_song = self._search_cache
        if song_ids.size == 0:
            return Answer(None)
        query = projection.codes(self._embed(samples))
        rows, distances = search.rank(query, code_columns, code_song, song_ids.size, self.settings.rule,
                                      top=CONTENDERS)
        songs = self.catalogue.songs_by_id(song_ids[rows].tolist())
        contenders = tuple(Contender(songs[int(song_ids[row])], float(distance))
                           for row, distance in zip(rows, distances) if int(song_ids[row]) in songs)
        best = distances[0]
        runner_up = distances[1] if distances.size > 1 else float(projection.bits)
        margin = runner_up - best
        song = songs.get(int(song_ids[rows[0]]))
        if (song is None or best > self.settings.max_distance_fraction * projection.bits
                or margin < self.settings.min_margin_bits):
            return Answer(None, contenders)
        return Answer(Match(song, float(best), None, float(margin / projection.bits), "hamming"), contenders)

    def remove(self, songs: int | Song | Iterable[int | Song],
               on_removed: Callable[[list[int]], None] | None = None) -> list[int]:
        """Remove songs (by id, or as read: see the landmark engine's `remove`): their catalogue rows, and with
        them their codes and every other per-song row. A file that also holds landmark postings is cleaned
        through the landmark engine's `remove`, which drops those too. Returns the ids removed, and gives them to
        `on_removed` too (the landmark engine's housekeeping after a removal has no counterpart here)."""
        with self.catalogue.write():
            song_ids = self.catalogue.still_as_read(song_list(songs))
            self.catalogue.delete_songs(song_ids)
        if on_removed is not None:
            on_removed(song_ids)
        return song_ids

    def stats(self) -> dict:
        """Songs with codes, code bytes, the projection, and the file's size (the codes live in it)."""
        return {"path": str(self.catalogue.path), **self.codes.stats(), "file_bytes": self.catalogue.file_bytes(),
                "settings": self.settings.stored()}
