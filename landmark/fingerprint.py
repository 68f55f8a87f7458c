"""Signal → fingerprint: spectrogram, peaks and hashes, computed block by block.

Long files are processed in blocks of `BLOCK_S` seconds plus a margin on each side wide enough for the
background average and the local-maximum test, so the result is the same as for the whole signal at once while
memory stays bounded by one block's spectrogram (about 2 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import hashes as hashing
from .peaks import candidate_peaks, prominence_db, select_peaks
from .settings import Density, FingerprintSettings
from .spectrogram import frame_count, log_spectrogram

BLOCK_S = 60.0
"""Seconds of audio per processing block (rounded to whole peak blocks)."""


@dataclass(frozen=True)
class Fingerprint:
    """The landmarks of one signal: `hashes[i]` occurs at frame `anchor_frames[i]`; and the peaks they pair.

    A query's fingerprint also holds its prominence map (`prominence`, frames × bins, dB above the local
    background), against which a candidate song's stored peaks are verified (`verify`)."""

    hashes: np.ndarray  # uint32
    anchor_frames: np.ndarray  # uint32
    peak_frames: np.ndarray  # int64, sorted
    peak_bins: np.ndarray  # int64
    prominence: np.ndarray | None = None  # float32, frames × bins


def _scan(signal: np.ndarray, settings: FingerprintSettings, density: Density, keep_prominence: bool
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(frames, bins) of the selected peaks of the whole signal, sorted by frame; and its prominence map if asked."""
    total = frame_count(signal.size, settings)
    block_frames = max(1, int(round(settings.peak_block_s / settings.frame_s)))
    step = block_frames * max(1, int(round(BLOCK_S / settings.peak_block_s)))
    margin = max(settings.background_frames // 2 + settings.peak_rank_frames // 2, density.neighbourhood_frames) + 1
    all_frames, all_bins, prominence_blocks = [], [], []
    for start in range(0, total, step):
        first = max(0, start - margin)
        spectrogram_db = log_spectrogram(signal, settings, first, min(total, start + step + margin) - first)
        prominence = prominence_db(spectrogram_db, settings)
        frames, bins, rank = candidate_peaks(spectrogram_db, prominence, settings, density)
        frames = frames + first
        core = (frames >= start) & (frames < start + step)
        frames, bins = select_peaks(frames[core], bins[core], rank[core], settings, density)
        all_frames.append(frames)
        all_bins.append(bins)
        if keep_prominence:
            prominence_blocks.append(prominence[start - first:start - first + step])
    frames, bins = (np.concatenate(part) if part else np.zeros(0, np.int64) for part in (all_frames, all_bins))
    if not keep_prominence:
        return frames, bins, None
    prominence = (np.concatenate(prominence_blocks) if prominence_blocks
                  else np.zeros((0, settings.fft_size // 2 + 1), np.float32))
    return frames, bins, prominence


def extract_peaks(signal: np.ndarray, settings: FingerprintSettings, density: Density) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bins) of the selected peaks of the whole signal, sorted by frame."""
    frames, bins, _ = _scan(signal, settings, density, keep_prominence=False)
    return frames, bins


def fingerprint(signal: np.ndarray, settings: FingerprintSettings, density: Density, with_prominence: bool = False
                ) -> Fingerprint:
    """Hashes of `signal` at the given density (`FingerprintSettings.index` for songs, `MatchSettings.query` for
    clips), with the prominence map too if `with_prominence` (queries)."""
    frames, bins, prominence = _scan(signal, settings, density, with_prominence)
    hashes, anchor_frames = hashing.pair_peaks(frames, bins, settings, density)
    return Fingerprint(hashes, anchor_frames, frames, bins, prominence)
