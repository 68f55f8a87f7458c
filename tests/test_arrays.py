"""The small array helpers against numpy's own, on random cases with the edges a query meets."""

import numpy as np
import pytest

from landmark import arrays
from landmark.arrays import argsort_stable, covered, largest, members, run_starts, sort_runs


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


@pytest.mark.parametrize("kind", ["quicksort", "stable"])
def test_argsort_stable_keeps_ties_in_index_order_with_either_sort(kind, monkeypatch):
    monkeypatch.setattr(arrays, "runs_sort_kind", lambda: kind)  # the machine's choice, forced both ways
    rng = np.random.default_rng(3)
    for size in (0, 1, 2, 3, 70, 5000):
        for values in (rng.random(size), rng.integers(0, 4, size).astype(np.uint32),  # distinct; many ties
                       -np.round(rng.random(size), 2), np.where(rng.random(size) < 0.5, -0.0, 0.0)):
            assert np.array_equal(argsort_stable(values), np.argsort(values, kind="stable"))


@pytest.mark.parametrize("kind", ["quicksort", "stable"])
def test_sort_runs_sorts_keys_in_runs(kind, monkeypatch):
    monkeypatch.setattr(arrays, "runs_sort_kind", lambda: kind)
    rng = np.random.default_rng(4)
    keys = np.concatenate([np.sort(rng.integers(0, 1 << 40, int(rng.integers(1, 50)))) for _ in range(200)])
    expected = np.sort(keys, kind="stable")
    sort_runs(keys)
    assert np.array_equal(keys, expected)


def test_members_takes_a_pool_of_any_shape_as_isin_does():
    """The pool is a set of values whatever its shape: a 2-D pool holds each of its entries."""
    rng = np.random.default_rng(6)
    for _ in range(50):
        values = rng.integers(-5, 40, int(rng.integers(0, 30)))
        pool = rng.integers(-5, 40, (int(rng.integers(1, 6)), int(rng.integers(1, 6))))
        assert np.array_equal(members(values, pool), np.isin(values, pool))
