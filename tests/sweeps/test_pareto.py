"""Pareto marking (maximize accuracy, minimize energy / latency) on hand-made rows."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.sweeps.pareto import mark_pareto, pareto_front
from qgnn.sweeps.report import add_pareto_columns


def brute_force(acc: list[float], cost: list[float]) -> list[bool]:
    """Direct definition: not dominated by any other eligible point."""
    ok = [not (math.isnan(a) or math.isnan(c)) for a, c in zip(acc, cost, strict=True)]
    out = []
    for i in range(len(acc)):
        if not ok[i]:
            out.append(False)
            continue
        dominated = any(
            ok[j] and acc[j] >= acc[i] and cost[j] <= cost[i]
            and (acc[j] > acc[i] or cost[j] < cost[i])
            for j in range(len(acc)) if j != i)
        out.append(not dominated)
    return out


def test_simple_front() -> None:
    #        A     B     C     D     E
    acc = [80.0, 78.0, 75.0, 79.0, 70.0]
    e = [10.0, 5.0, 2.0, 6.0, 3.0]
    # A: most accurate. B, C: cheaper than anything more accurate. D (79, 6): A is more
    # accurate but costlier, B is cheaper but less accurate, so nothing dominates it.
    # E (70, 3) is dominated by C (75, 2).
    assert pareto_front(acc, e) == [True, True, True, True, False]


def test_ties() -> None:
    # Exact duplicates are both on the front.
    assert pareto_front([80.0, 80.0, 70.0], [5.0, 5.0, 9.0]) == [True, True, False]
    # Equal cost: only the most accurate survives.
    assert pareto_front([80.0, 79.0], [5.0, 5.0]) == [True, False]
    # Equal accuracy: only the cheapest survives.
    assert pareto_front([80.0, 80.0], [5.0, 6.0]) == [True, False]
    # A duplicate pair dominated by a third point: both off.
    assert pareto_front([70.0, 70.0, 71.0], [5.0, 5.0, 4.0]) == [False, False, True]


def test_missing_values_are_not_eligible_and_dominate_nothing() -> None:
    nan = float("nan")
    assert pareto_front([90.0, nan, 80.0], [nan, 1.0, 5.0]) == [False, False, True]
    assert pareto_front([None, 80.0], [1.0, 5.0]) == [False, True]
    assert pareto_front([], []) == []


def test_rows_grouped_by_dataset_and_failed_rows_excluded() -> None:
    rows = [
        {"dataset": "cora", "status": "ok", "test_acc_mean": 80.0, "energy_pj": 10.0, "cycles": 50},
        {"dataset": "cora", "status": "ok", "test_acc_mean": 70.0, "energy_pj": 20.0, "cycles": 40},
        # would dominate everything on cora, but failed
        {"dataset": "cora", "status": "error", "test_acc_mean": 99.0, "energy_pj": 1.0,
         "cycles": 1},
        # a different dataset: its own front, even though 60 % < 70 %
        {"dataset": "pubmed", "status": "ok", "test_acc_mean": 60.0, "energy_pj": 30.0,
         "cycles": 90},
    ]
    assert mark_pareto(rows, "test_acc_mean", "energy_pj") == [True, False, False, True]
    assert mark_pareto(rows, "test_acc_mean", "cycles") == [True, True, False, True]
    # one front over everything
    assert mark_pareto(rows, "test_acc_mean", "energy_pj", group_by=()) == [
        True, False, False, False]
    add_pareto_columns(rows)
    assert [r["pareto_energy"] for r in rows] == [True, False, False, True]
    assert [r["pareto_latency"] for r in rows] == [True, True, False, True]


values = st.one_of(st.sampled_from([1.0, 2.0, 3.0, 4.0]), st.just(float("nan")))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, values), max_size=25))
def test_matches_the_definition(pairs: list[tuple[float, float]]) -> None:
    acc = [a for a, _ in pairs]
    cost = [c for _, c in pairs]
    assert pareto_front(acc, cost) == brute_force(acc, cost)
