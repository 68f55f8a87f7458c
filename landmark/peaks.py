"""Spectral peaks: local maxima of the log spectrogram that stand out from their background.

A peak survives noise, equalisation and lossy coding far better than the energy around it, which is why the
landmark method keeps only peaks. Density is bounded: per `peak_block_s` block of time and per frequency band,
only the best-ranked peaks are kept (by prominence, and by how long their bin stays prominent: `peak_rank_frames`),
so a loud passage cannot flood the index and a quiet one still counts.
"""

from __future__ import annotations

import numpy as np

from .arrays import run_starts
from .settings import Density, FingerprintSettings


def running_max(values: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """Maximum over ±radius samples along `axis` (0: frames, 1: bins), the window clipped at the edges.

    2·radius vectorised passes: for the small radii of peak picking this is as fast as a compiled loop, and it
    keeps numba (0.7 s to initialise, even from its cache) off the query path.
    """
    out = values.copy()
    source = values if axis == 0 else values.T
    target = out if axis == 0 else out.T
    for shift in range(1, min(radius, source.shape[0] - 1) + 1):
        np.maximum(target[shift:], source[:-shift], out=target[shift:])
        np.maximum(target[:-shift], source[shift:], out=target[:-shift])
    return out


def _box_mean(values: np.ndarray, span: int, axis: int) -> np.ndarray:
    """Moving average over `span` samples along `axis`, the window shrinking at the edges."""
    radius = span // 2
    n = values.shape[axis]
    cumulative = np.cumsum(values, axis=axis, dtype=np.float64)
    cumulative = np.concatenate([np.zeros_like(np.take(cumulative, [0], axis=axis)), cumulative], axis=axis)
    index = np.arange(n)
    hi = np.minimum(n, index + radius + 1)
    lo = np.maximum(0, index - radius)
    total = np.take(cumulative, hi, axis=axis) - np.take(cumulative, lo, axis=axis)
    shape = [1, 1]
    shape[axis] = n
    return (total / (hi - lo).reshape(shape)).astype(np.float32)


def band_edges_bins(settings: FingerprintSettings) -> np.ndarray:
    """Bin edges of the `frequency_bands` bands, equal widths on a log-frequency scale."""
    bin_hz = settings.sample_rate_hz / settings.fft_size
    edges_hz = np.geomspace(settings.min_freq_hz, settings.max_freq_hz, settings.frequency_bands + 1)
    return np.round(edges_hz / bin_hz).astype(np.int64)


def prominence_db(spectrogram_db: np.ndarray, settings: FingerprintSettings) -> np.ndarray:
    """How far each bin stands above its local background (a moving average over time and frequency), in dB."""
    return spectrogram_db - _box_mean(_box_mean(spectrogram_db, settings.background_frames, 0),
                                      settings.background_bins, 1)


def candidate_peaks(spectrogram_db: np.ndarray, prominence: np.ndarray, settings: FingerprintSettings, density: Density
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frame, bin, rank) of every local maximum that stands `min_prominence_db` above its background; the rank
    orders peaks for the budget (`peak_rank_frames`).

    `prominence` is `prominence_db(spectrogram_db)`. Frames are relative to the first row of `spectrogram_db`.
    """
    local_max = running_max(running_max(spectrogram_db, density.neighbourhood_frames, axis=0),
                            density.neighbourhood_bins, axis=1)
    edges = band_edges_bins(settings)
    loud_enough = spectrogram_db >= spectrogram_db.max(axis=1, keepdims=True) - settings.dynamic_range_db
    is_peak = (spectrogram_db >= local_max) & (prominence >= settings.min_prominence_db) & loud_enough
    is_peak[:, :edges[0]] = False
    is_peak[:, edges[-1]:] = False
    frames, bins = np.nonzero(is_peak)
    rank = prominence[frames, bins]
    if settings.peak_rank_frames > 1:
        rank = 0.5 * (rank + _mean_over_frames(prominence, frames, bins, settings.peak_rank_frames))
    return frames, bins, rank


def _mean_over_frames(values: np.ndarray, frames: np.ndarray, bins: np.ndarray, span: int) -> np.ndarray:
    """Mean of `values` over `span` frames around each (frame, bin), the window shrinking at the edges: at the
    candidates only, a few thousand points, instead of a moving average over the whole map."""
    radius = span // 2
    total = np.zeros(frames.size, np.float64)
    count = np.zeros(frames.size, np.int64)
    for shift in range(-radius, radius + 1):
        at = frames + shift
        inside = (at >= 0) & (at < values.shape[0])
        total[inside] += values[at[inside], bins[inside]]
        count += inside
    return (total / np.maximum(count, 1)).astype(np.float32)


def select_peaks(frames: np.ndarray, bins: np.ndarray, rank: np.ndarray, settings: FingerprintSettings,
                 density: Density) -> tuple[np.ndarray, np.ndarray]:
    """Keep the best-ranked peaks of each (time block, frequency band): the density budget.

    `frames` must be absolute frame numbers so that blocks fall on the same grid wherever processing started.
    Returns (frames, bins) sorted by frame, then bin.
    """
    if frames.size == 0:
        return frames.astype(np.int64), bins.astype(np.int64)
    block_frames = max(1, int(round(settings.peak_block_s * settings.sample_rate_hz / settings.hop_size)))
    per_band = max(1, int(round(density.peaks_per_s * settings.peak_block_s / settings.frequency_bands)))
    band = np.searchsorted(band_edges_bins(settings), bins, side="right") - 1
    group = (frames // block_frames) * settings.frequency_bands + band
    order = np.lexsort((-rank, group))
    group_sorted = group[order]
    starts = run_starts(group_sorted)
    place = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))  # within its group
    keep = order[place < per_band]
    keep = keep[np.lexsort((bins[keep], frames[keep]))]
    return frames[keep].astype(np.int64), bins[keep].astype(np.int64)


def refine(values: np.ndarray, frames: np.ndarray, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-frame and sub-bin positions of local maxima (frames, bins) of `values`: the vertex of a parabola through
    each maximum and its two neighbours, along time and along frequency.

    A local maximum's vertex lies within ± 0.5 of it, so rounding a refined position gives the peak back; a
    query warped by a speed factor (`landmark.warp`) rounds its refined positions instead, which keeps the
    bin a stored peak of the song would have. Maxima on an edge of `values` keep their integer position."""
    fine = []
    for axis, positions in ((0, frames), (1, bins)):
        positions = np.asarray(positions, np.int64)
        inside = (positions > 0) & (positions < values.shape[axis] - 1)
        offset = np.zeros(positions.size)
        at = np.flatnonzero(inside)
        step = np.array([1, 0]) if axis == 0 else np.array([0, 1])
        centre = values[frames[at], bins[at]].astype(np.float64)
        before = values[frames[at] - step[0], bins[at] - step[1]].astype(np.float64)
        after = values[frames[at] + step[0], bins[at] + step[1]].astype(np.float64)
        curvature = before - 2 * centre + after
        with np.errstate(divide="ignore", invalid="ignore"):
            vertex = np.where(curvature < 0, 0.5 * (before - after) / curvature, 0.0)
        offset[at] = np.clip(vertex, -0.5, 0.5)
        fine.append(positions + offset)
    return fine[0], fine[1]
