"""How likely each query pair is to be evidence, so that a query reads its likeliest evidence per posting first.

A query asks for some 15,000 keys (its dense pairs, each also at Δt ± 2), of which a few dozen are pairs the
index stored for the clip's song. Every posting of a key asked for is read and voted on, so reading them all costs
in step with the library: a key holds 30 postings on average at 10,000 songs, 300 at 100,000. Instead, a query
reads its keys in order of expected evidence per posting, `likelihood / postings`, until it has read
`MatchSettings.max_postings_read` (`PostingStore.lookup` with a priority and a budget):

- **likelihood**: the chance that a query pair is one the index stored (`PAIR_LIKELIHOOD`), from what the clip
  itself says of the pair (`Fingerprint.pair_kind`, `Fingerprint.target_rank`). A pair the index's own density
  would make from the clip is one a quarter of the time. Of the query's other pairs, one whose two peaks are both
  among the clip's peaks at index density is one 12 % of the time, one with a single such peak 2.5 %, one with
  none 0.3 %; the further down an anchor's targets, the less likely (× 0.8 a rank past the fourth); a Δt widened
  by one frame is 3–4.3× less likely, by two 19–68× less. Across one query's pairs the chance spans three orders
  of magnitude, so a budget spent by it reads the song's pairs first.
- **postings**: what reading the key costs, which the store knows without reading it. Stores read keys in units
  (the embedded store: a row of 1, 4 or 16 keys), so a unit's priority is its keys' summed likelihood.

Rare keys of likely pairs come first and common keys of unlikely pairs last, so a budget spends its reads where
the clip's song is (docs/tuning.md, 2026-12-01). A library whose query asks for fewer postings than the budget
reads them all.
"""

from __future__ import annotations

import numpy as np

from .fingerprint import INDEX_STYLE

PAIR_LIKELIHOOD = np.array([[0.0028, 0.0009, 0.00015],   # neither peak at index density, Δt shifted by 0, 1, 2
                            [0.025, 0.0073, 0.0008],     # one of its peaks
                            [0.12, 0.036, 0.0023],       # both, but the index's density would not pair them
                            [0.265, 0.061, 0.0039]])     # a pair the index's density makes from the clip
"""Chance that a query pair of the first `FLAT_RANKS` targets of its anchor is an indexed pair of the clip's song,
by [`Fingerprint.pair_kind`][|Δt shift|]: the share of such pairs that hit the song's postings at its offset, on
clips of the calibration split (clean and ambient noise at 0 dB: 1.2 M query pairs; docs/tuning.md, 2026-12-04,
seventh sitting). A shift beyond 2 frames takes the last column."""

FLAT_RANKS = 4
"""An anchor's first this many targets in the query are about as likely to be indexed pairs as each other. The
index pairs an anchor with its first 2 targets at 18 peaks/s, the query with its first 20 at 60: the further down
an anchor's targets, the more of the index's peaks lie between."""

RANK_DECAY = 0.8
"""Each target past the first `FLAT_RANKS` is this many times as likely to be an indexed pair as the one before
(fitted from the fourth on: 0.77, 0.80 and 0.81 for pairs with 0, 1 and 2 peaks at index density). An
`INDEX_STYLE` pair's target is among the index's first two whatever its rank in the query, so it is not
discounted."""


def likelihood(kinds: np.ndarray, target_ranks: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """`PAIR_LIKELIHOOD` of each query pair, by its kind (`Fingerprint.pair_kind`), its Δt shift and its target's
    rank among its anchor's targets."""
    kinds = np.asarray(kinds, np.int64)
    past_flat = np.maximum(np.asarray(target_ranks, np.int64) - (FLAT_RANKS - 1), 0)
    discount = np.where(kinds == INDEX_STYLE, 1.0, RANK_DECAY ** past_flat.astype(np.float64))
    return PAIR_LIKELIHOOD[kinds, np.minimum(shifts, PAIR_LIKELIHOOD.shape[1] - 1)] * discount
