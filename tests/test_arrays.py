"""The small array helpers against numpy's own, on random cases with the edges a query meets."""

import numpy as np

from landmark.arrays import covered, largest, members, run_starts


def test_members_is_isin():
    rng = np.random.default_rng(0)
    for _ in range(300):
        values = rng.integers(-5, 40, int(rng.integers(0, 30)))
        pool = rng.integers(-5, 40, int(rng.integers(0, 30)))
        assert np.array_equal(members(values, pool), np.isin(values, pool))
    # a 2-D block of values keeps its shape; an empty pool holds nothing
    block = np.arange(12).reshape(3, 4)
    assert np.array_equal(members(block, [0, 5, 11]), np.isin(block, [0, 5, 11]))
    assert not members(block, np.zeros(0, np.int64)).any()


def test_covered_is_the_union_of_spans():
    rng = np.random.default_rng(1)
    for _ in range(300):
        size, count = int(rng.integers(1, 60)), int(rng.integers(0, 6))
        starts = rng.integers(0, size + 1, count)
        ends = np.minimum(starts + rng.integers(0, 25, count), size)  # some empty, some reaching the end
        union = np.unique(np.concatenate([np.arange(a, b) for a, b in zip(starts, ends)] + [np.zeros(0, int)]))
        assert np.array_equal(covered(starts, ends, size), union)


def test_run_starts():
    assert np.array_equal(run_starts(np.array([3, 3, 4, 7, 7, 7])), [0, 2, 3])
    assert np.array_equal(run_starts(np.array([5])), [0])
    assert run_starts(np.zeros(0, np.int64)).size == 0


def test_largest_is_the_head_of_a_stable_sort():
    rng = np.random.default_rng(2)
    for _ in range(500):
        scores = rng.integers(0, 6, int(rng.integers(0, 40))).astype(float)  # many ties, at the cut too
        count = int(rng.integers(0, 45))
        assert np.array_equal(largest(scores, count), np.argsort(-scores, kind="stable")[:count])
