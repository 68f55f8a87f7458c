"""Batches of files: finding audio files under folders, and fingerprinting them in worker processes."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from . import audio
from .config import Config
from .errors import AudioError, LmprintError
from .fingerprint import fingerprint

AUDIO_EXTENSIONS = frozenset(
    ".wav .wave .flac .ogg .oga .opus .mp3 .m4a .m4b .mp4 .aac .wma .aif .aiff .aifc .mka .webm .ape .wv .mpc "
    ".au .caf .ac3 .mp2 .spx".split())
"""Files with these extensions are picked up when a folder is walked. Files named explicitly are always tried."""


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


@dataclass(frozen=True)
class Outcome:
    """What happened to one file of a batch: a fingerprint, a skip (already indexed), or an error."""

    path: str
    song: SongFingerprint | None = None
    skipped: bool = False
    error: str | None = None


def find_audio_files(paths: Iterable[str]) -> Iterator[tuple[str, str | None]]:
    """(absolute path, error or None) for each file named or found under a named folder, recursively.

    Symlinked folders are followed once each; a symlink loop is never entered twice. Folder errors (unreadable,
    missing) are reported as errors against that path.
    """
    seen_dirs: set[tuple[int, int]] = set()
    for given in paths:
        path = os.path.abspath(given)
        if os.path.isdir(path):
            yield from _walk(path, seen_dirs)
        elif os.path.lexists(path) and not os.path.exists(path):
            yield path, "broken symlink"
        elif not os.path.exists(path):
            yield path, "no such file"
        else:
            yield path, None


def _walk(top: str, seen_dirs: set[tuple[int, int]]) -> Iterator[tuple[str, str | None]]:
    try:
        info = os.stat(top)
    except OSError as error:
        yield top, error.strerror or str(error)
        return
    key = (info.st_dev, info.st_ino)
    if key in seen_dirs:
        return
    seen_dirs.add(key)
    try:
        entries = sorted(os.scandir(top), key=lambda entry: entry.name)
    except OSError as error:
        yield top, f"cannot read folder: {error.strerror or error}"
        return
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=True)
        except OSError:
            is_dir = False
        if is_dir:
            yield from _walk(entry.path, seen_dirs)
        elif os.path.splitext(entry.name)[1].lower() in AUDIO_EXTENSIONS:
            if entry.is_symlink() and not os.path.exists(entry.path):
                yield entry.path, "broken symlink"
            else:
                yield entry.path, None


def content_sha1(path: str) -> str:
    """SHA-1 of the file's bytes: the identity used to skip files that are already indexed."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint_song(path: str, config: Config, known_sha1: frozenset[str] = frozenset()) -> Outcome:
    """Decode and fingerprint one file at index density. Never raises for bad input: errors go in the Outcome."""
    try:
        try:
            sha1 = content_sha1(path)
        except FileNotFoundError:
            raise AudioError("no such file (vanished?)") from None
        except PermissionError:
            raise AudioError("permission denied") from None
        except IsADirectoryError:
            raise AudioError("is a directory") from None
        except OSError as error:
            raise AudioError(error.strerror or str(error)) from None
        if sha1 in known_sha1:
            return Outcome(path, skipped=True)
        decoded = audio.decode(path, config.sample_rate_hz)
        audio.check_usable(decoded.samples, config.sample_rate_hz, config.min_duration_s)
        print_ = fingerprint(decoded.samples, config, config.index)
        if print_.hashes.size == 0:
            raise AudioError("no landmarks found (silent or featureless)")
        title = decoded.title or os.path.splitext(os.path.basename(path))[0]
        return Outcome(path, song=SongFingerprint(path, title, decoded.duration_s, sha1, print_.hashes,
                                                   print_.anchor_frames, print_.peak_frames, print_.peak_bins))
    except LmprintError as error:
        return Outcome(path, error=str(error))
    except MemoryError:
        return Outcome(path, error="out of memory")


_worker_state: dict = {}


def _init_worker(config: Config, known_sha1: frozenset[str]) -> None:
    _worker_state["config"] = config
    _worker_state["known"] = known_sha1


def _work(path: str) -> Outcome:
    return fingerprint_song(path, _worker_state["config"], _worker_state["known"])


def fingerprint_songs(paths: list[str], config: Config, jobs: int = 1,
                      known_sha1: frozenset[str] = frozenset()) -> Iterator[Outcome]:
    """Fingerprint `paths` with `jobs` worker processes, yielding outcomes in order as they complete."""
    if jobs <= 1 or len(paths) <= 1:
        for path in paths:
            yield fingerprint_song(path, config, known_sha1)
        return
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=(config, known_sha1)) as pool:
        yield from pool.map(_work, paths, chunksize=1)
