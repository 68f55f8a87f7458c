"""Fingerprinting a batch of files at index density, in worker processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lmprint.errors import AudioError, LmprintError
from lmprint.files import content_sha1, title_from_path
from lmprint.results import Outcome
from lmprint.workers import worker_started

from . import audio
from .fingerprint import fingerprint
from .settings import FingerprintSettings


@dataclass(frozen=True)
class SongFingerprint:
    """Everything `add` stores about one file."""

    path: str
    title: str
    duration_s: float
    content_sha1: str
    hashes: np.ndarray
    anchor_frames: np.ndarray
    peak_frames: np.ndarray
    peak_bins: np.ndarray


def fingerprint_song(path: str, settings: FingerprintSettings, min_duration_s: float,
                     known_sha1: frozenset[str] = frozenset()) -> tuple[Outcome, SongFingerprint | None]:
    """Decode and fingerprint one file. Never raises for bad input: errors go in the Outcome."""
    try:
        sha1 = content_sha1(path)
        if sha1 in known_sha1:
            return Outcome(path, skipped=True, content_sha1=sha1), None
        decoded = audio.decode(path, settings.sample_rate_hz)
        audio.check_usable(decoded.samples, settings.sample_rate_hz, min_duration_s)
        print_ = fingerprint(decoded.samples, settings, settings.index)
        if print_.hashes.size == 0:
            raise AudioError("no landmarks found (silent or featureless)")
        title = decoded.title or title_from_path(path)
        song = SongFingerprint(path, title, decoded.duration_s, sha1, print_.hashes, print_.anchor_frames,
                               print_.peak_frames, print_.peak_bins)
        return Outcome(path, warning=decoded.warning), song
    except LmprintError as error:
        return Outcome(path, error=str(error)), None
    except MemoryError:
        return Outcome(path, error="out of memory"), None


_worker_state: dict = {}


def _init_worker(*arguments) -> None:
    worker_started()
    _worker_state["arguments"] = arguments


def _work(path: str) -> tuple[Outcome, SongFingerprint | None]:
    return fingerprint_song(path, *_worker_state["arguments"])


def fingerprint_songs(paths: list[str], settings: FingerprintSettings, min_duration_s: float, jobs: int = 1,
                      known_sha1: frozenset[str] = frozenset()) -> Iterator[tuple[Outcome, SongFingerprint | None]]:
    """Fingerprint `paths` with `jobs` worker processes, yielding results in the order of `paths`."""
    if jobs <= 1 or len(paths) <= 1:
        for path in paths:
            yield fingerprint_song(path, settings, min_duration_s, known_sha1)
        return
    from concurrent.futures import ProcessPoolExecutor  # here: multiprocessing costs a match's cold start 15 ms
    from concurrent.futures.process import BrokenProcessPool

    arguments = (settings, min_duration_s, known_sha1)
    remaining = list(paths)
    while remaining:  # a pool again after each worker killed (the out-of-memory killer): the batch goes on
        done = 0
        try:
            with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=arguments) as pool:
                for result in pool.map(_work, remaining, chunksize=1):
                    yield result
                    done += 1
            return
        except BrokenProcessPool:
            # the first file without a result, or one beside it, killed its worker: it is tried again alone
            yield _alone(remaining[done], arguments)
            remaining = remaining[done + 1:]


def _alone(path: str, arguments: tuple) -> tuple[Outcome, SongFingerprint | None]:
    """`fingerprint_song` in a worker of its own: a file whose decoding kills its worker again fails alone."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    try:
        with ProcessPoolExecutor(max_workers=1, initializer=_init_worker, initargs=arguments) as pool:
            return pool.submit(_work, path).result()
    except BrokenProcessPool:
        return Outcome(path, error="its worker process was killed (out of memory?)"), None
