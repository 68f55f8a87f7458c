"""Signal → fingerprint: spectrogram, peaks and hashes, computed block by block.

Long files are processed in blocks of `BLOCK_S` seconds plus a margin on each side wide enough for the
background average and the local-maximum test, so the result is the same as for the whole signal at once while
memory stays bounded by one block's spectrogram (about 2 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import hashes as hashing
from .config import Config, Density
from .peaks import candidate_peaks, select_peaks
from .spectrogram import frame_count, log_spectrogram

BLOCK_S = 60.0
"""Seconds of audio per processing block (rounded to whole peak blocks)."""


@dataclass(frozen=True)
class Fingerprint:
    """The landmarks of one signal: `hashes[i]` occurs at frame `anchor_frames[i]`; and the peaks they pair.

    A query's fingerprint also holds its local maxima (`maxima_frames`, `maxima_bins`): every peak candidate before
    the density budget, against which a candidate song's stored peaks are verified (`verify`)."""

    hashes: np.ndarray  # uint32
    anchor_frames: np.ndarray  # uint32
    peak_frames: np.ndarray  # int64, sorted
    peak_bins: np.ndarray  # int64
    maxima_frames: np.ndarray | None = None  # int64
    maxima_bins: np.ndarray | None = None  # int64


def extract_peaks(signal: np.ndarray, config: Config, density: Density, with_maxima: bool = False):
    """(frames, bins) of the selected peaks of the whole signal, sorted by frame.

    With `with_maxima`, also (frames, bins) of every local maximum the selection chose from (a query's
    verification map): four arrays.
    """
    total = frame_count(signal.size, config)
    block_frames = max(1, int(round(config.peak_block_s / config.frame_s)))
    step = block_frames * max(1, int(round(BLOCK_S / config.peak_block_s)))
    margin = max(config.background_frames // 2, density.neighbourhood_frames) + 1
    all_frames, all_bins, maxima_frames, maxima_bins = [], [], [], []
    for start in range(0, total, step):
        first = max(0, start - margin)
        spectrogram_db = log_spectrogram(signal, config, first, min(total, start + step + margin) - first)
        frames, bins, prominence = candidate_peaks(spectrogram_db, config, density)
        frames = frames + first
        core = (frames >= start) & (frames < start + step)
        frames, bins, prominence = frames[core], bins[core], prominence[core]
        if with_maxima:
            maxima_frames.append(frames.astype(np.int64))
            maxima_bins.append(bins.astype(np.int64))
        frames, bins = select_peaks(frames, bins, prominence, config, density)
        all_frames.append(frames)
        all_bins.append(bins)
    peaks = [np.concatenate(part) if part else np.zeros(0, np.int64) for part in (all_frames, all_bins)]
    if with_maxima:
        peaks += [np.concatenate(part) if part else np.zeros(0, np.int64) for part in (maxima_frames, maxima_bins)]
    return tuple(peaks)


def fingerprint(signal: np.ndarray, config: Config, density: Density, with_maxima: bool = False) -> Fingerprint:
    """Hashes of `signal` at the given density (config.index for songs, config.query for clips), with the local
    maxima too if `with_maxima` (queries)."""
    frames, bins, *maxima = extract_peaks(signal, config, density, with_maxima)
    hashes, anchor_frames = hashing.pair_peaks(frames, bins, config, density)
    return Fingerprint(hashes, anchor_frames, frames, bins, *maxima)
