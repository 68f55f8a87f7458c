"""Small numpy helpers shared by the stages."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first entry of each run of equal values in a sorted array (empty for an empty one)."""
    if sorted_values.size == 0:
        return np.zeros(0, np.int64)
    new_run = np.empty(sorted_values.size, bool)  # not np.r_, whose parsing costs as much as the comparison
    new_run[0] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new_run[1:])
    return np.flatnonzero(new_run)


def members(values: ArrayLike, pool: ArrayLike) -> np.ndarray:
    """Whether each of `values` is among `pool` (`np.isin` for integers of one signedness), by one sort of the pool
    and a binary search: a query asks this of a few hundred values against thousands, where `np.isin` sorts
    both sides together."""
    values, pool = np.asarray(values), np.sort(np.asarray(pool).ravel())
    if pool.size == 0:
        return np.zeros(values.shape, bool)
    at = np.minimum(np.searchsorted(pool, values), pool.size - 1)
    return np.asarray(pool[at] == values)


def covered(starts: np.ndarray, ends: np.ndarray, size: int) -> np.ndarray:
    """Sorted indices in [0, size) that lie in any of the half-open spans [starts[i], ends[i]), where 0 ≤ start ≤
    end ≤ size: a union of spans by one running count, not a sort of every index they hold."""
    steps = np.bincount(starts, minlength=size + 1) - np.bincount(ends, minlength=size + 1)
    return np.flatnonzero(np.cumsum(steps[:-1]) > 0)


def largest(values: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` largest values (no NaN), largest first and the lower index first on a tie: the first
    `count` of a stable argsort of −values, from a partition rather than a sort of them all (a query's candidates
    are the best 20 of thousands of songs)."""
    if count >= values.size:
        return np.argsort(-values, kind="stable")
    if count <= 0:
        return np.zeros(0, np.int64)
    cut = np.partition(values, values.size - count)[values.size - count]  # the count-th largest value
    above, at = np.flatnonzero(values > cut), np.flatnonzero(values == cut)
    chosen = np.concatenate([above, at[:count - above.size]])
    return chosen[np.lexsort((chosen, -values[chosen]))]
