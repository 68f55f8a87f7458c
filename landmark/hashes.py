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
from numba import njit

from .config import Config, Density

FREQ_BITS = 8
DELTA_FREQ_BITS = 7
DELTA_TIME_BITS = 6
DELTA_FREQ_OFFSET = 63
HASH_BITS = FREQ_BITS + DELTA_FREQ_BITS + DELTA_TIME_BITS


@njit(cache=True)
def pack(anchor_bin, delta_bins, delta_frames):
    """One hash from its three fields (see the bit layout above)."""
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


@njit(cache=True)
def _pair_peaks(frames, bins, fanout, min_dt, max_dt, max_df):
    """Hashes and anchor frames of all pairs. Peaks must be sorted by frame."""
    n = frames.size
    hashes = np.empty(n * fanout, np.uint32)
    anchor_frames = np.empty(n * fanout, np.uint32)
    count = 0
    for i in range(n):
        paired = 0
        for j in range(i + 1, n):
            dt = frames[j] - frames[i]
            if dt > max_dt:
                break
            df = bins[j] - bins[i]
            if dt < min_dt or df > max_df or df < -max_df:
                continue
            hashes[count] = pack(bins[i], df, dt)
            anchor_frames[count] = frames[i]
            count += 1
            paired += 1
            if paired == fanout:
                break
    return hashes[:count], anchor_frames[:count]


def pair_peaks(frames: np.ndarray, bins: np.ndarray, config: Config, density: Density
               ) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint32, anchor_frames uint32) for peaks sorted by frame."""
    if not (config.max_delta_frames < (1 << DELTA_TIME_BITS) and config.max_delta_bins <= DELTA_FREQ_OFFSET
            and config.max_freq_hz * config.fft_size / config.sample_rate_hz < (1 << FREQ_BITS)):
        raise ValueError("settings do not fit the hash bit layout")
    return _pair_peaks(np.ascontiguousarray(frames, np.int64), np.ascontiguousarray(bins, np.int64),
                       density.fanout, config.min_delta_frames, config.max_delta_frames, config.max_delta_bins)


def widen_delta_time(hashes: np.ndarray, anchor_frames: np.ndarray, tolerance_frames: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Add copies of each query hash with Δt shifted by ±1..tolerance frames.

    A clip cut at an arbitrary sample moves each peak by up to one frame, which changes Δt of some pairs; the
    index holds each pair once, so the query asks for the neighbours too.
    """
    if tolerance_frames <= 0 or hashes.size == 0:
        return hashes, anchor_frames
    delta_frames = hashes.astype(np.int64) & ((1 << DELTA_TIME_BITS) - 1)
    all_hashes, all_frames = [hashes], [anchor_frames]
    for shift in range(1, tolerance_frames + 1):
        for signed in (-shift, shift):
            shifted = delta_frames + signed
            ok = (shifted >= 1) & (shifted < (1 << DELTA_TIME_BITS))
            all_hashes.append((hashes[ok].astype(np.int64) + signed).astype(np.uint32))
            all_frames.append(anchor_frames[ok])
    return np.concatenate(all_hashes), np.concatenate(all_frames)
