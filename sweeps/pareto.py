"""Pareto marking: maximize accuracy, minimize a cost (energy in pJ, latency in cycles).

A point ``p`` is **dominated** when another point ``q`` is at least as good in both objectives
and strictly better in one: ``acc_q >= acc_p`` and ``cost_q <= cost_p`` and
(``acc_q > acc_p`` or ``cost_q < cost_p``). The Pareto front is the set of points that are not
dominated.

Ties:

- Points with exactly equal accuracy *and* cost do not dominate each other: all of them are on
  the front (or all off it).
- Among points of equal cost only those with the highest accuracy can be on the front; among
  points of equal accuracy only those with the lowest cost.
- Comparisons are exact (no tolerance): accuracies that differ in the last bit are different.

Points with a missing value (``None`` or ``NaN``) in either objective, failed points for
example, are not eligible: they are never on the front and never dominate another point.
With ``group_by``, fronts are computed separately per group (e.g. per dataset, because
accuracies on different datasets are not comparable).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

__all__ = ["mark_pareto", "pareto_front"]


def _valid(v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return False
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return not math.isnan(f)


def pareto_front(maximize: Sequence[Any], minimize: Sequence[Any]) -> list[bool]:
    """For each point, whether it is on the Pareto front (see the module docstring).

    Args:
        maximize: the objective to maximize (accuracy), one value per point.
        minimize: the objective to minimize (energy, cycles), one value per point.

    Returns:
        One bool per point. ``O(n log n)``.
    """
    if len(maximize) != len(minimize):
        raise ValueError(f"maximize and minimize differ in length: "
                         f"{len(maximize)} != {len(minimize)}")
    n = len(maximize)
    on = [False] * n
    idx = [i for i in range(n) if _valid(maximize[i]) and _valid(minimize[i])]
    # Increasing cost; within equal cost the order does not matter (handled per group).
    idx.sort(key=lambda i: float(minimize[i]))
    best_lower = -math.inf  # best accuracy among points of strictly lower cost
    k = 0
    while k < len(idx):
        cost = float(minimize[idx[k]])
        group = []
        while k < len(idx) and float(minimize[idx[k]]) == cost:
            group.append(idx[k])
            k += 1
        top = max(float(maximize[i]) for i in group)
        if top > best_lower:
            for i in group:
                on[i] = float(maximize[i]) == top
        best_lower = max(best_lower, top)
    return on


def mark_pareto(
    rows: Sequence[Mapping[str, Any]],
    maximize: str = "test_acc_mean",
    minimize: str = "energy_pj",
    group_by: Sequence[str] = ("dataset",),
) -> list[bool]:
    """Pareto marks for table rows (dicts), fronts computed per ``group_by`` value.

    Rows whose ``status`` is present and not ``"ok"`` are not eligible.
    """
    marks = [False] * len(rows)
    groups: dict[tuple[Hashable, ...], list[int]] = {}
    for i, r in enumerate(rows):
        if r.get("status", "ok") != "ok":
            continue
        groups.setdefault(tuple(r.get(g) for g in group_by), []).append(i)
    for members in groups.values():
        front = pareto_front([rows[i].get(maximize) for i in members],
                             [rows[i].get(minimize) for i in members])
        for i, f in zip(members, front, strict=True):
            marks[i] = f
    return marks
