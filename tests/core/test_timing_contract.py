"""qgnn/core/timing.py: the timing contract formula (hand-computed cases) and its purity."""

from __future__ import annotations

import subprocess
import sys

import pytest

from qgnn.core import timing


def test_t_fill_and_t_deg0() -> None:
    assert [timing.t_fill(L) for L in (1, 2, 5)] == [13, 16, 25]
    assert [timing.t_deg0(L) for L in (1, 2, 5)] == [11, 12, 15]
    with pytest.raises(ValueError, match="latency"):
        timing.t_fill(0)


def test_pe_slots_round_robin() -> None:
    # rows 0..4 with lengths 3, 0, 2, 1, 5 on P = 2, W = 2: PE0 gets rows 0, 2, 4
    assert timing.pe_slots([3, 0, 2, 1, 5], 2, 2) == [2 * (3 + 2 + 5), 2 * (1 + 1)]
    assert timing.pe_slots([], 3, 4) == [0, 0, 0, 0]


def test_aggregation_cycles_hand_cases() -> None:
    # every PE with a row that has terms: T_fill(L) + max_p S_p
    assert timing.aggregation_cycles([3, 0, 2, 1, 5], 2, 2, 1) == 13 + 20
    assert timing.aggregation_cycles([1] * 40, 1, 2, 6) == 3 * 6 + 10 + 20
    # PE1 has only a degree-0 row: it finishes 2 L earlier than a PE with terms
    assert timing.aggregation_cycles([1, 0], 10, 2, 4) == 22 + 10
    # PE0's two rows are degree-0 (20 slots), PE1 has one row with a term (10 slots): PE0 is
    # last, at T_deg0(1) + 20 = 31, less than the simple T_fill(1) + max S = 33
    assert timing.aggregation_cycles([0, 1, 0], 10, 2, 1) == 11 + 20
    # N < P: idle PEs finish after T_IDLE; N = 0
    assert timing.aggregation_cycles([2], 3, 4, 1) == 13 + 6
    assert timing.aggregation_cycles([], 3, 4, 1) == timing.T_IDLE == 4
    assert timing.aggregation_cycles([0, 0, 0], 1, 4, 3) == 13 + 1
    assert timing.ideal_cycles([3, 0, 2, 1, 5], 2, 2) == 20


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="words_per_row"):
        timing.aggregation_cycles([1], 0, 1, 1)
    with pytest.raises(ValueError, match="negative"):
        timing.aggregation_cycles([1, -1], 1, 1, 1)


def test_timing_is_pure_python() -> None:
    code = "import sys, qgnn.core.timing; sys.exit(1 if 'amaranth' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
