"""How likely each query pair is to be evidence, so that a query reads its likeliest evidence per posting first.

A query asks for some 20,000 keys (its dense pairs, each also at Δt ± 2), of which a few dozen are pairs the
index stored for the clip's song. Every posting of a key asked for is read and voted on, so reading them all costs
in step with the library: a key holds 30 postings on average at 10,000 songs, 300 at 100,000. Instead, a query
reads its keys in order of expected evidence per posting, `likelihood / postings`, until it has read
`MatchSettings.max_postings_read` (`PostingStore.lookup` with a priority and a budget):

- **likelihood**: the chance that a query pair is one the index stored (`PAIR_LIKELIHOOD`). A pair the index's
  own density would make from the clip (`Fingerprint.index_style`) is one a quarter of the time, any other pair
  about one time in a hundred; a Δt widened by one frame is 4× less likely, by two 20–50× less.
- **postings**: what reading the key costs, which the store knows without reading it. Stores read keys in units
  (SQLite: a row of 16 keys), so a unit's priority is its keys' summed likelihood.

Rare keys of likely pairs come first and common keys of unlikely pairs last, so a budget spends its reads where
the clip's song is (docs/tuning.md, 2026-12-01). A library whose query asks for fewer postings than the budget
reads them all.
"""

from __future__ import annotations

import numpy as np

PAIR_LIKELIHOOD = np.array([[0.012, 0.0031, 0.0007],    # other query pairs, at Δt shifted by 0, 1, 2 frames
                            [0.27, 0.065, 0.005]])      # index-style pairs
"""Chance that a query pair is an indexed pair of the clip's song, by [index-style][|Δt shift|]: the share of
such pairs that hit the song's postings at its offset, on clips of the calibration split (clean and ambient
noise at 0 dB, 10,000 songs; docs/tuning.md). A shift beyond 2 frames takes the last column."""


def likelihood(index_style: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """`PAIR_LIKELIHOOD` of each query pair."""
    return PAIR_LIKELIHOOD[np.asarray(index_style, np.int64), np.minimum(shifts, PAIR_LIKELIHOOD.shape[1] - 1)]
