"""The timing contract (against qgnn/core/timing.py) and the DRAM/compute pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.sim.timing import T_fill, aggregation_cycles, pe_loads, pipeline


def test_pe_loads_hand() -> None:
    # rows 3, 0, 4, 1 on 2 elements, W = 2: PE0 rows 0, 2 -> 2*(3+4); PE1 rows 1, 3 -> 2*(1+1)
    assert pe_loads([3, 0, 4, 1], 2, 2).tolist() == [14, 4]
    assert pe_loads([3, 0, 4, 1], 1, 3).tolist() == [3 + 1, 1, 4]


def test_contract_hand() -> None:
    # busiest element has terms: T_fill(L) + S_max
    assert aggregation_cycles([3, 0, 4, 1], 2, 2, 1) == T_fill(1) + 14
    assert aggregation_cycles([3, 0, 4, 1], 2, 2, 4) == T_fill(4) + 14


def test_fill_constant_is_the_rtls() -> None:
    import qgnn.core.timing as ht

    for L in (1, 2, 3, 8):
        assert T_fill(L) == ht.t_fill(L)


@settings(max_examples=300, deadline=None)
@given(n=st.lists(st.integers(0, 6), min_size=0, max_size=40),
       w=st.integers(1, 5), p=st.integers(1, 9), lat=st.integers(1, 8))
def test_vectorised_contract_equals_hw_timing(n: list[int], w: int, p: int, lat: int) -> None:
    import qgnn.core.timing as ht

    assert aggregation_cycles(np.array(n, dtype=np.int64), w, p, lat) == \
        ht.aggregation_cycles(n, w, p, lat)


def test_pipeline_hand() -> None:
    # double-buffered: 5 + 100/10 + max(10, (0 + 50)/10) + max(10, 20/10) = 35
    assert pipeline([10, 10], [100, 50], [0, 20], 10.0, 5, True) == pytest.approx(35.0)
    # single-buffered: (5 + 10 + 10) + (5 + 7 + 10) = 47
    assert pipeline([10, 10], [100, 50], [0, 20], 10.0, 5, False) == pytest.approx(47.0)
    # nothing moves: no latency
    assert pipeline([7], [0], [0], 1.0, 100, True) == pytest.approx(7.0)


@settings(max_examples=100, deadline=None)
@given(c=st.lists(st.floats(0, 1e4), min_size=1, max_size=6), b1=st.floats(0.1, 100),
       f=st.floats(1.0, 10.0), db=st.booleans(), data=st.data())
def test_pipeline_more_bandwidth_never_slower(c, b1, f, db, data) -> None:
    k = len(c)
    pre = data.draw(st.lists(st.floats(0, 1e5), min_size=k, max_size=k))
    stream = data.draw(st.lists(st.floats(0, 1e5), min_size=k, max_size=k))
    assert pipeline(c, pre, stream, b1 * f, 10, db) <= pipeline(c, pre, stream, b1, 10, db) + 1e-6
