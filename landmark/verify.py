"""Peak-level verification: do a candidate song's stored peaks line up with the clip's local maxima?

Voting counts pairs of peaks, and a pair needs both its peaks among the clip's selected peaks. Under babble at
0 dB about 0.4 of a song's peaks are (0.4² of its pairs), so the true song often leads the vote by too little to be
told from chance. Yet about 0.8 of its peaks are still local maxima of the clip: they are there, but rank below
the noise's. Verification uses them. For each of the best-voted songs it takes the song's stored peaks under the
clip, at the voted offset, and counts those that fall on a local maximum of the clip (± `verify_tolerance_frames`,
± `verify_tolerance_bins`).

Chance hits are not uniform: music stays in a key, so two songs' peaks share bins, and it keeps a beat, so
maxima crowd into the frames of note onsets. The chance that a point is covered is therefore modelled as the
product of its frame's and its bin's coverage (the share of the clip's bins, and of its frames, that its maxima
cover there) over the clip's overall coverage. The agreement is the hit count in standard deviations above that
expectation (a z-score), so one threshold holds for clips of any length or density.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .config import Config
from .peaks import running_max
from .vote import Candidate

CHANCE_FLOOR = 0.02
"""Chance is kept within [floor, 1 − floor], so that an empty or saturated frame or bin does not make one hit or
miss look like overwhelming evidence."""


@dataclass(frozen=True)
class MaximaMap:
    """Where a clip has local maxima, widened by the verification tolerance."""

    covered: np.ndarray  # bool, frames × bins
    frame_cover: np.ndarray  # float64 per frame: the share of its bins covered
    bin_cover: np.ndarray  # float64 per bin: the share of its frames covered, over the clip's overall share

    def chance(self, frames: np.ndarray, bins: np.ndarray) -> np.ndarray:
        """Probability that each point (frame, bin) is covered by chance."""
        return np.clip(self.frame_cover[frames] * self.bin_cover[bins], CHANCE_FLOOR, 1.0 - CHANCE_FLOOR)

    @classmethod
    def of(cls, frames: np.ndarray, bins: np.ndarray, n_frames: int, config: Config) -> "MaximaMap":
        grid = np.zeros((max(n_frames, 1), config.fft_size // 2 + 1), bool)
        inside = (frames >= 0) & (frames < n_frames)
        grid[frames[inside], bins[inside]] = True
        covered = running_max(running_max(grid, config.verify_tolerance_frames, axis=0),
                              config.verify_tolerance_bins, axis=1)
        overall = max(float(covered.mean()), 1e-9)
        return cls(covered, covered.mean(axis=1), covered.mean(axis=0) / overall)


def agreement(maxima: MaximaMap, song_frames: np.ndarray, song_bins: np.ndarray, delta_frames: int,
              config: Config) -> tuple[float, int]:
    """(z, Δt): how far above chance the song's peaks (sorted by frame), moved by −Δt into the clip's frames, fall
    on its maxima; the best over Δt ± `verify_shift_frames`. z is −inf when no peak of the song lies under the clip."""
    best = (-np.inf, delta_frames)
    n_frames = maxima.covered.shape[0]
    shift = config.verify_shift_frames
    window = slice(*np.searchsorted(song_frames, [delta_frames - shift, delta_frames + n_frames + shift]))
    song_frames, song_bins = song_frames[window], song_bins[window]  # sorted by frame: only those near the clip
    for delta in range(delta_frames - shift, delta_frames + shift + 1):
        frames = song_frames - delta
        inside = (frames >= 0) & (frames < n_frames)
        if not inside.any():
            continue
        frames, bins = frames[inside], song_bins[inside]
        hits = np.count_nonzero(maxima.covered[frames, bins])
        chance = maxima.chance(frames, bins)
        z = (hits - chance.sum()) / np.sqrt((chance * (1.0 - chance)).sum())
        if z > best[0]:
            best = (float(z), delta)
    return best


def verify(candidates: list[Candidate], maxima: MaximaMap,
           song_peaks: Callable[[list[int]], dict[int, tuple[np.ndarray, np.ndarray]]], config: Config
           ) -> tuple[Candidate | None, float]:
    """The best-agreeing of the first `verify_candidates` candidates if its z reaches `min_agreement_z` and leads
    every other candidate's by `min_agreement_lead`, else None; and its z. The candidate returned carries the Δt
    that agreed best. `song_peaks` reads songs' stored peaks."""
    candidates = candidates[:config.verify_candidates]
    peaks = song_peaks([c.song_id for c in candidates])
    agreed = []
    for candidate in candidates:
        if candidate.song_id in peaks:
            z, delta = agreement(maxima, *peaks[candidate.song_id], candidate.delta_frames, config)
            agreed.append((z, Candidate(candidate.song_id, candidate.score, delta)))
    if not agreed:
        return None, -np.inf
    agreed.sort(key=lambda pair: -pair[0])
    best_z, best = agreed[0]
    runner_up_z = agreed[1][0] if len(agreed) > 1 else -np.inf
    if best_z < config.min_agreement_z or best_z - runner_up_z < config.min_agreement_lead:
        return None, best_z
    return best, best_z
