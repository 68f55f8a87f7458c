"""Signal → fingerprint: spectrogram, peaks and hashes, computed block by block.

Long files are processed in blocks of `BLOCK_S` seconds plus a margin on each side wide enough for the
background average and the local-maximum test, so the result is the same as for the whole signal at once while
memory stays bounded by one block's spectrogram (about 2 MB).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import hashes as hashing
from .arrays import members
from .peaks import candidate_peaks, prominence_db, refine, select_peaks
from .settings import Density, FingerprintSettings
from .spectrogram import frame_count, log_spectrogram

BLOCK_S = 60.0
"""Seconds of audio per processing block (rounded to whole peak blocks)."""

PAIR_KINDS = 4
"""How many kinds of query pair `Fingerprint.pair_kind` tells apart: 0, 1 or 2 of its peaks among the clip's peaks
at the index's density, and `INDEX_STYLE`."""

INDEX_STYLE = 3
"""The kind of a pair that the index's own density makes from the clip: both peaks among the clip's peaks at
index density, the target among the anchor's first `fanout` there."""


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
    pair_kind: np.ndarray | None = None  # int64, one per hash
    """A query pair's kind (`fingerprint`'s `index_density` given): how many of its two peaks are among the clip's
    peaks at index density (0, 1 or 2), or `INDEX_STYLE` for a pair the index's own density would make from the
    clip. The more of it the index's density holds, the likelier the pair is an indexed one (`landmark.plan`)."""
    target_rank: np.ndarray | None = None  # int64, one per hash
    """A query pair's target's rank among its anchor's targets (0: the first)."""
    index_peaks: tuple[np.ndarray, np.ndarray] | None = None  # float64 frames, float64 bins, sorted by frame
    """A query's peaks at index density, at sub-frame and sub-bin positions (`peaks.refine`): what a speed,
    tempo or pitch search warps (`landmark.warp`)."""


def _scan(signal: np.ndarray, settings: FingerprintSettings, density: Density, keep_prominence: bool,
          also: Density | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, tuple[np.ndarray, ...]]:
    """(frames, bins) of the selected peaks of the whole signal, sorted by frame; its prominence map if asked; and
    (frames, bins, refined frames, refined bins) of its peaks at a second density `also` from the same
    spectrogram (empty when None)."""
    total = frame_count(signal.size, settings)
    block_frames = max(1, int(round(settings.peak_block_s / settings.frame_s)))
    step = block_frames * max(1, int(round(BLOCK_S / settings.peak_block_s)))
    neighbourhood_frames = max(density.neighbourhood_frames, also.neighbourhood_frames if also else 0)
    margin = max(settings.background_frames // 2 + settings.peak_rank_frames // 2, neighbourhood_frames) + 1
    all_frames: list[np.ndarray] = []
    all_bins: list[np.ndarray] = []
    also_frames: list[np.ndarray] = []
    also_bins: list[np.ndarray] = []
    also_fine: list[tuple[np.ndarray, np.ndarray]] = []
    prominence_blocks = []
    for start in range(0, total, step):
        first = max(0, start - margin)
        spectrogram_db = log_spectrogram(signal, settings, first, min(total, start + step + margin) - first)
        prominence = prominence_db(spectrogram_db, settings)
        for wanted, frames_out, bins_out in ((density, all_frames, all_bins), (also, also_frames, also_bins)):
            if wanted is not None:
                frames, bins, rank = candidate_peaks(spectrogram_db, prominence, settings, wanted)
                frames = frames + first
                core = (frames >= start) & (frames < start + step)  # the block's own frames, not its margins
                frames, bins = select_peaks(frames[core], bins[core], rank[core], settings, wanted)
                frames_out.append(frames)
                bins_out.append(bins)
                if frames_out is also_frames:
                    fine_frames, fine_bins = refine(spectrogram_db, frames - first, bins)
                    also_fine.append((fine_frames + first, fine_bins))
        if keep_prominence:
            prominence_blocks.append(prominence[start - first:start - first + step])
    frames, bins, *second = (np.concatenate(part) if part else np.zeros(0, np.int64)
                             for part in (all_frames, all_bins, also_frames, also_bins))
    second += [np.concatenate([part[i] for part in also_fine]) if also_fine else np.zeros(0) for i in (0, 1)]
    if not keep_prominence:
        return frames, bins, None, tuple(second)
    prominence = (np.concatenate(prominence_blocks) if prominence_blocks
                  else np.zeros((0, settings.fft_size // 2 + 1), np.float32))
    return frames, bins, prominence, tuple(second)


def extract_peaks(signal: np.ndarray, settings: FingerprintSettings, density: Density) -> tuple[np.ndarray, np.ndarray]:
    """(frames, bins) of the selected peaks of the whole signal, sorted by frame."""
    frames, bins, _, _ = _scan(signal, settings, density, keep_prominence=False)
    return frames, bins


def fingerprint(signal: np.ndarray, settings: FingerprintSettings, density: Density, with_prominence: bool = False,
                index_density: Density | None = None) -> Fingerprint:
    """Hashes of `signal` at the given density (`FingerprintSettings.index` for songs, `MatchSettings.query` for
    clips), with the prominence map too if `with_prominence` (queries), and each pair's kind and rank if an
    `index_density` is given (queries: `Fingerprint.pair_kind`, `target_rank`)."""
    frames, bins, prominence, (index_frames, index_bins, *fine) = _scan(signal, settings, density, with_prominence,
                                                                        index_density)
    frames, bins = np.asarray(frames, np.int64), np.asarray(bins, np.int64)
    anchors, targets = hashing.pair_indices(frames, bins, settings, density)
    hashes, anchor_frames = hashing.pair_hashes(frames, bins, anchors, targets)
    pair_kind = target_rank = index_peaks = None
    if index_density is not None:
        at_index_density = members(_ids(frames, bins), _ids(index_frames, index_bins))
        pair_kind = at_index_density[anchors].astype(np.int64) + at_index_density[targets]
        styled_hashes, styled_frames = hashing.pair_peaks(index_frames, index_bins, settings, index_density)
        styled = members(_ids(anchor_frames, hashes), _ids(styled_frames, styled_hashes))
        pair_kind[styled] = INDEX_STYLE
        target_rank = np.arange(anchors.size) - np.searchsorted(anchors, anchors)  # anchors ascend, targets in order
        by_time = np.argsort(fine[0], kind="stable")  # refining moves peaks of one frame by up to ± 0.5 of it
        index_peaks = (fine[0][by_time], fine[1][by_time])
    return Fingerprint(hashes, anchor_frames, frames, bins, prominence, pair_kind, target_rank, index_peaks)


def prominence_map(signal: np.ndarray, settings: FingerprintSettings) -> np.ndarray:
    """A clip's prominence map alone (frames × bins, dB above the local background), in one block: what checking
    a known song against a short clip reads (`Index.follow`), without peaks or hashes."""
    spectrogram_db = log_spectrogram(signal, settings, 0, frame_count(signal.size, settings))
    return prominence_db(spectrogram_db, settings)


def _ids(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """One integer per (high, low) pair of integers below 2^32: a peak's (frame, bin), a landmark's (anchor frame,
    hash)."""
    return (np.asarray(high, np.int64) << 32) | np.asarray(low, np.int64)
