"""Landmark hashes: pairs of peaks packed into 32-bit integers.

Each anchor peak (t1, f1) is paired with the next `fanout` peaks (t2, f2) in its target zone:
min_delta_frames ≤ t2 − t1 ≤ max_delta_frames and |f2 − f1| ≤ max_delta_bins. A pair is stored under its
hash together with the anchor's frame time t1.

Bit layout of a hash (bits 31..21 are zero):

    20            13 12          6 5          0
    +---------------+-------------+------------+
    |  f1 (8 bits)  | Δf+63 (7 b) | Δt (6 bits) |
    +---------------+-------------+------------+

f1 is the anchor's FFT bin (< 256 because max_freq_hz < sample_rate_hz / 2 at fft_size 512), Δf = f2 − f1 in
bins offset by 63 to be non-negative, and Δt = t2 − t1 in frames. Absolute time is *not* in the hash: that is
what lets a clip from anywhere in the song produce the same hashes.
"""

from __future__ import annotations

import numpy as np

from .settings import Density, FingerprintSettings

FREQ_BITS = 8
DELTA_FREQ_BITS = 7
DELTA_TIME_BITS = 6
DELTA_FREQ_OFFSET = 63
HASH_BITS = FREQ_BITS + DELTA_FREQ_BITS + DELTA_TIME_BITS


def fits_hash_layout(settings: FingerprintSettings) -> bool:
    """Whether every hash these settings can make fits the bit layout above."""
    return (settings.max_delta_frames < (1 << DELTA_TIME_BITS) and settings.max_delta_bins <= DELTA_FREQ_OFFSET
            and settings.max_freq_hz * settings.fft_size / settings.sample_rate_hz < (1 << FREQ_BITS))


def pack(anchor_bin, delta_bins, delta_frames):
    """Hashes from their three fields (see the bit layout above); scalars or arrays."""
    return ((anchor_bin << (DELTA_FREQ_BITS + DELTA_TIME_BITS))
            | ((delta_bins + DELTA_FREQ_OFFSET) << DELTA_TIME_BITS)
            | delta_frames)


def unpack(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchor_bin, delta_bins, delta_frames) of each hash: the inverse of `pack`."""
    hashes = np.asarray(hashes, dtype=np.int64)
    delta_frames = hashes & ((1 << DELTA_TIME_BITS) - 1)
    delta_bins = ((hashes >> DELTA_TIME_BITS) & ((1 << DELTA_FREQ_BITS) - 1)) - DELTA_FREQ_OFFSET
    anchor_bin = hashes >> (DELTA_FREQ_BITS + DELTA_TIME_BITS)
    return anchor_bin, delta_bins, delta_frames


def pair_peaks(frames: np.ndarray, bins: np.ndarray, settings: FingerprintSettings, density: Density
               ) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint32, anchor_frames uint32) of every anchor with its next `fanout` peaks in the target zone.
    Peaks must be sorted by frame."""
    frames = np.asarray(frames, np.int64)
    bins = np.asarray(bins, np.int64)
    return pair_hashes(frames, bins, *pair_indices(frames, bins, settings, density))


def pair_hashes(frames: np.ndarray, bins: np.ndarray, anchors: np.ndarray, targets: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint32, anchor_frames uint32) of the pairs (anchors[i], targets[i]) of int64 peaks."""
    hashes = pack(bins[anchors], bins[targets] - bins[anchors], frames[targets] - frames[anchors])
    return hashes.astype(np.uint32), frames[anchors].astype(np.uint32)


def pair_indices(frames: np.ndarray, bins: np.ndarray, settings: FingerprintSettings, density: Density,
                 zone: tuple[float, float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(anchor, target) indices into the peaks of every pair `pair_peaks` makes, anchors ascending and each anchor's
    targets in the order of the peaks; with a `zone` (min Δt, max Δt, max |Δf|), the target zone is that instead
    of the settings' (peaks may then be fractional).

    Vectorised over an (anchor × following peak) matrix whose width is the most peaks any anchor has within the
    zone, which the per-block peak budget keeps small; anchors are taken `ANCHOR_BLOCK` at a time.
    """
    zone = zone or (settings.min_delta_frames, settings.max_delta_frames, settings.max_delta_bins)
    zone_end = np.searchsorted(frames, frames + zone[1], side="right")
    pairs = [_pair_anchors(frames, bins, zone_end, start, min(frames.size, start + ANCHOR_BLOCK), zone, density)
             for start in range(0, frames.size, ANCHOR_BLOCK)]
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


ANCHOR_BLOCK = 4096
"""Anchors paired at a time: bounds the (anchor × following peak) matrices for a 2-hour file."""


def _pair_anchors(frames, bins, zone_end, start, stop, zone: tuple[float, float, float], density: Density):
    """(anchor, target) indices of the pairs of the anchors start..stop-1 (see `pair_indices`)."""
    anchors = np.arange(start, stop)
    width = int((zone_end[start:stop] - anchors - 1).max())
    if width <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    targets = anchors[:, None] + np.arange(1, width + 1)[None, :]
    in_zone = targets < zone_end[start:stop, None]
    targets = np.minimum(targets, frames.size - 1)
    delta_frames = frames[targets] - frames[anchors, None]
    delta_bins = bins[targets] - bins[anchors, None]
    in_zone &= (delta_frames >= zone[0]) & (np.abs(delta_bins) <= zone[2])
    in_zone &= np.cumsum(in_zone, axis=1) <= density.fanout
    rows, cols = np.nonzero(in_zone)
    return anchors[rows], targets[rows, cols]


def widen_delta_time(hashes: np.ndarray, tolerance_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add copies of each query hash with Δt shifted by ±1..tolerance frames: (hashes, the index in `hashes` each
    comes from, |shift| in frames of each, 0 for the originals), the originals first.

    A clip cut at an arbitrary sample moves each peak by up to one frame, which changes Δt of some pairs; the
    index holds each pair once, so the query asks for the neighbours too.
    """
    hashes = np.asarray(hashes, np.uint32)
    delta_frames = hashes.astype(np.int64) & ((1 << DELTA_TIME_BITS) - 1)
    all_hashes, sources, all_shifts = [hashes], [np.arange(hashes.size)], [np.zeros(hashes.size, np.int64)]
    for shift in range(1, max(tolerance_frames, 0) + 1):
        for signed in (-shift, shift):
            shifted = delta_frames + signed
            ok = np.flatnonzero((shifted >= 1) & (shifted < (1 << DELTA_TIME_BITS)))
            all_hashes.append((hashes[ok].astype(np.int64) + signed).astype(np.uint32))
            sources.append(ok)
            all_shifts.append(np.full(ok.size, shift, np.int64))
    return np.concatenate(all_hashes), np.concatenate(sources), np.concatenate(all_shifts)
