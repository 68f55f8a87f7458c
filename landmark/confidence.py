"""One confidence for every match: 1 − the chance that a clip of a song the index does not hold would bring
evidence this strong.

A match rests on two kinds of evidence, whichever rule decided it (`vote`, `confirmed`, `verified`):

- its **vote lead**, the score of its aligned pairs minus the best other song's (`landmark.vote`);
- its **agreement z**, how far its stored peaks stand out in the clip (`landmark.verify`).

For each, `bench calibrate` measures what clips of songs that are *not* indexed reach: the best vote lead
among the candidates of each such clip, and the best agreement among its verified candidates. Above their 80th
percentiles both fall off exponentially (a peaks-over-threshold fit; both are maxima over many chance
alignments, whose tails are exponential), so each is summarised by that percentile and the mean excess over it
(`ChanceTail`). On those clips the two are uncorrelated (r = −0.02), so the chance of reaching both is the
product of the two survival rates: the match's **false-match probability**. `confidence` is 1 minus it.

It means the same for every path and grows with either kind of evidence. It is calibrated on music like the
public corpus's (game soundtracks); for a sibling track of a soundtrack (same composer, instruments and tempo)
chance is higher than this estimate. docs/design.md ("Confidence") has the measurements and what each threshold
keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ChanceTail:
    """How often clips of songs that are not indexed reach a value of one kind of evidence: a share
    `tail_share` of them reach `threshold`, and above it the share falls by e every `scale`."""

    threshold: float
    scale: float
    tail_share: float = 0.2

    def survival(self, value: float) -> float:
        """The share of chance clips whose evidence reaches `value`; 1 below `threshold`: evidence that one chance
        clip in five reaches is taken as none."""
        if value < self.threshold:
            return 1.0
        return self.tail_share * math.exp(-(value - self.threshold) / self.scale) if math.isfinite(value) else 0.0

    @classmethod
    def fit(cls, values: np.ndarray, tail_share: float = 0.2) -> ChanceTail:
        """The tail of `values` (one per chance clip): the (1 − tail_share) quantile and the mean excess over it."""
        values = np.asarray(values, np.float64)
        values = values[np.isfinite(values)]
        threshold = float(np.quantile(values, 1 - tail_share))
        return cls(round(threshold, 3), round(float(np.mean(values[values >= threshold] - threshold)), 3), tail_share)


@dataclass(frozen=True)
class Calibration:
    """The chance tails of the two kinds of evidence, at the default settings."""

    vote_lead: ChanceTail = ChanceTail(threshold=5.056, scale=3.782)
    """Measured by `bench calibrate` on 288 clips of 32 songs held out of the public corpus (seed 1, not the
    bench's)."""

    agreement_z: ChanceTail = ChanceTail(threshold=4.571, scale=0.551)
    """The same clips' best agreement among the candidates verification reads (`verify_candidates`, 80)."""

    def false_match_probability(self, vote_lead: float, agreement_z: float | None) -> float:
        """The chance that a clip of an unindexed song brings both a vote lead and an agreement this strong. An
        index that holds no peaks (schema 3) has no agreement: the vote lead alone counts."""
        z_share = 1.0 if agreement_z is None else self.agreement_z.survival(agreement_z)
        return self.vote_lead.survival(vote_lead) * z_share


CALIBRATION = Calibration()
