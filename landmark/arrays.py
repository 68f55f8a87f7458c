"""Small numpy helpers shared by the stages."""

from __future__ import annotations

import numpy as np


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first entry of each run of equal values in a sorted array (empty for an empty one)."""
    if sorted_values.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
