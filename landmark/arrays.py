"""Small numpy helpers shared by the stages."""

from __future__ import annotations

import functools
import time
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike


def run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Index of the first entry of each run of equal values in a sorted array (empty for an empty one)."""
    return np.flatnonzero(_starts_run(sorted_values))


def _starts_run(sorted_values: np.ndarray) -> np.ndarray:
    """Whether each entry of a sorted array starts a run of equal values."""
    new_run = np.empty(sorted_values.size, bool)  # not np.r_, whose parsing costs as much as the comparison
    new_run[:1] = True
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=new_run[1:])
    return new_run


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


def sort_runs(keys: np.ndarray) -> None:
    """Sort integer keys that come in sorted runs (a vote's, by song), in place, with whichever of numpy's sorts
    is the faster on this machine (`runs_sort_kind`): equal integers either way, so the same result."""
    keys.sort(kind=runs_sort_kind())


@functools.cache
def runs_sort_kind() -> Literal["quicksort", "stable"]:
    """numpy's default sort where it is vectorised (x86-simd-sort on AVX-512 or AVX2; on AVX-512 7× faster than
    the stable one at a vote's 200,000 keys), else its stable sort, a timsort that merges the runs (twice as fast
    as the default introsort there). Which one a build and a processor give cannot be asked of numpy, so both are
    timed once a process (1–3 ms), on pseudo-random keys in 64 sorted runs of 256, as random as a vote's: the
    timsort merges runs of an arithmetic sequence 4× faster, and would win there where it loses on votes."""
    keys = np.sort(_mixed(1 << 14).reshape(64, 256), axis=1).ravel()

    def fastest_s(kind: Literal["quicksort", "stable"]) -> float:
        took = []
        for _ in range(3):
            copy = keys.copy()
            began = time.perf_counter()
            copy.sort(kind=kind)
            took.append(time.perf_counter() - began)
        return min(took)

    return "quicksort" if fastest_s("quicksort") < fastest_s("stable") else "stable"


def _mixed(count: int) -> np.ndarray:
    """`count` pseudo-random non-negative int64 of 40 bits, the same every time: SplitMix64's output function on
    0, 1, 2, … (without loading `numpy.random`, whose first generator costs 9 ms)."""
    x = np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(24)).astype(np.int64)


def argsort_stable(values: np.ndarray) -> np.ndarray:
    """`np.argsort(values, kind="stable")` (ties in index order; no NaN) for 1-D `values`, by numpy's default sort
    where that is the faster one (`runs_sort_kind`): an unstable argsort, then the indices of each run of equal
    values put in order by one sort of (run, index) packed in an integer. At 20,000–150,000 values, 4–5× faster
    with few ties, 2–3× with many."""
    if runs_sort_kind() == "stable" or values.size < 2:
        return np.argsort(values, kind="stable")
    order = np.argsort(values)
    new_value = _starts_run(values[order])
    if new_value.all():
        return order
    index_bits = (values.size - 1).bit_length()
    packed = (np.cumsum(new_value, dtype=np.int64) << index_bits) | order
    packed.sort()
    return packed & ((1 << index_bits) - 1)
