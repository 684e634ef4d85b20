"""Row groups of the per-node (bucketed) requantizations: every combination of buckets that
some row has, its rows ascending, in the order of ``np.unique`` over the stacked bucket
tables (the straightforward definition), cached per set of read-only tables."""

from __future__ import annotations

import numpy as np
import pytest
from qgnn.model.integer.convert import NodeQParams, _bucket_groups
from qgnn.model.integer.fixed import QParams


def _nq(assign: np.ndarray, buckets: int) -> NodeQParams:
    qps = [QParams(f"b{k}", 4, 0, 15, np.array(0.1 * (k + 1)), np.array(k)) for k in range(buckets)]
    return NodeQParams.of(assign, qps)


def _unique_groups(*qs: NodeQParams) -> list[tuple[np.ndarray, list[int]]]:
    key = np.stack([q.assign for q in qs], axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    return [(np.flatnonzero(inv == g), [int(c) for c in combo]) for g, combo in enumerate(uniq)]


@pytest.mark.parametrize("seed", range(5))
def test_groups_equal_the_unique_rows_definition(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    radices = [int(r) for r in rng.integers(1, 5, size=int(rng.integers(1, 4)))]
    qs = [_nq(rng.integers(0, r, n), r) for r in radices]
    got = list(_bucket_groups(*qs))
    want = _unique_groups(*qs)
    assert len(got) == len(want)
    for (rows, qps), (wrows, combo) in zip(got, want, strict=True):
        assert np.array_equal(rows, wrows)
        assert [q.qps.index(p) for q, p in zip(qs, qps, strict=True)] == combo


def test_groups_are_cached_read_only_and_follow_the_tables() -> None:
    a = _nq(np.array([1, 0, 1, 1, 0]), 2)
    b = _nq(np.array([0, 0, 1, 1, 1]), 2)
    first = [rows for rows, _ in _bucket_groups(a, b)]
    again = [rows for rows, _ in _bucket_groups(a, b)]
    assert all(x is y for x, y in zip(first, again, strict=True))  # computed once
    assert not first[0].flags.writeable and not a.assign.flags.writeable
    with pytest.raises(ValueError):
        a.assign[0] = 0  # the tables cannot change under the cache
    other = [rows for rows, _ in _bucket_groups(b, a)]  # another key: its own groups
    assert [r.tolist() for r in other] == [[1], [0], [4], [2, 3]]


def test_of_copies_the_callers_table() -> None:
    table = np.array([0, 1, 1])
    q = _nq(table, 2)
    table[0] = 1  # the caller's array stays writable and does not alias the buckets
    assert q.assign.tolist() == [0, 1, 1]
