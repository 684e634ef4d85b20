"""qgnn/core/timing.py, mixed-width contract: hand-computed cases, argument errors, numpy input."""

from __future__ import annotations

import numpy as np
import pytest

from qgnn.core import timing

SERIAL = {"overlap_drain": False}


def test_mixed_pe_slots_round_robin() -> None:
    # rows 0..4: input words 3, 0, 2, 8, 5 and output words 1, 2, 1, 4, 1 on P = 2
    # PE0: rows 0, 2, 4 -> (3+1) + (2+1) + (5+1) = 13; PE1: rows 1, 3 -> (0+2) + (8+4) = 14
    assert timing.mixed_pe_slots([3, 0, 2, 8, 5], [1, 2, 1, 4, 1], 2, **SERIAL) == [13, 14]
    assert timing.mixed_pe_slots([], [], 3, **SERIAL) == [0, 0, 0]


def test_mixed_cycles_hand_cases_serial_drain() -> None:
    cyc = timing.mixed_aggregation_cycles
    # both PEs have a row with terms: T_fill(L) + max S = 3 L + 10 + 14
    assert cyc([3, 0, 2, 8, 5], [1, 2, 1, 4, 1], 2, 1, **SERIAL) == 13 + 14
    assert cyc([3, 0, 2, 8, 5], [1, 2, 1, 4, 1], 2, 4, **SERIAL) == 22 + 14
    # PE1's only row is degree-0 with 8 output words: L + 10 + 8 = 19 > 13 + 4 = 17
    assert cyc([3, 0], [1, 8], 2, 1, **SERIAL) == 19
    # N < P: idle PEs take T_IDLE; N = 0
    assert cyc([2], [1], 4, 1, **SERIAL) == 13 + 3
    assert cyc([], [], 2, 1, **SERIAL) == timing.T_IDLE == 4
    assert timing.mixed_ideal_cycles([3, 0, 2, 8, 5], [1, 2, 1, 4, 1], 2, **SERIAL) == 14
    assert timing.mixed_pe_finish_cycles([0, 0, 4], [2, 2, 1], 2, 2, **SERIAL) == [
        16 + 2 + 4 + 1, 12 + 2]


def test_mixed_cycles_hand_cases_overlapped_drain() -> None:
    """Row i costs max(A_i, O_{i-1}) (A_i = max(I_i, 1)), plus the PE's last O."""
    cyc = timing.mixed_aggregation_cycles
    # PE0 rows 0, 2, 4: 3 + max(2, 1) + max(5, 1) + 1 = 11 -> 13 + 11 = 24. PE1 rows 1, 3:
    # a leading degree-0 row (held 1 cycle), then 8 words: 1 + 8 (memory path) against
    # max(2, 1) + T_deg0 + 1 - T_fill = 1 (hold path), + last O 4 = 13 -> 26
    assert cyc([3, 0, 2, 8, 5], [1, 2, 1, 4, 1], 2, 1) == 26
    assert timing.mixed_pe_slots([3, 0, 2, 8, 5], [1, 2, 1, 4, 1], 2) == [11, 13]
    # the drain of row i is hidden when the next row has at least O_i input words
    assert cyc([4, 4, 4], [2, 2, 2], 1, 2) == 16 + 12 + 2
    assert cyc([1, 1, 1], [3, 3, 3], 1, 2) == 16 + 1 + 3 + 3 + 3
    # all rows degree-0: T_deg0(L) + 1 (the hold-bank stage) + sum O
    assert cyc([0, 0], [3, 2], 1, 2) == 12 + 1 + 5
    # a leading degree-0 row with 4 words before a 1-word row: the hold bank decides:
    # T_deg0(1) + 1 + 4 + 1 = 17 (the memory path alone: T_fill(1) + 1 + 1 + 1 = 16)
    assert cyc([0, 1], [4, 1], 1, 1) == 17
    assert cyc([2], [1], 4, 1) == 13 + 3 and cyc([], [], 2, 1) == 4


def test_mixed_uniform_case_is_words_per_term_plus_output() -> None:
    """A uniform stage (W words per row, no degree-0 rows) costs W (n_i + 1) per row: the
    old order's W n_i plus the row's W output slots."""
    n = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    w = 2
    got = timing.mixed_aggregation_cycles(w * n, np.full(n.size, w), 3, 2, **SERIAL)
    assert got == 16 + max(sum(w * (n[p::3] + 1)) for p in range(3))
    # overlapped: every row has >= W input words, so only each PE's last output row shows
    got = timing.mixed_aggregation_cycles(w * n, np.full(n.size, w), 3, 2)
    assert got == 16 + max(sum(w * n[p::3]) + w for p in range(3))


def test_mixed_numpy_and_lists_agree() -> None:
    rng = np.random.default_rng(0)
    i = rng.integers(0, 20, 101)
    o = rng.integers(1, 9, 101)
    for ov in (False, True):
        assert timing.mixed_aggregation_cycles(i, o, 4, 3, ov) == \
            timing.mixed_aggregation_cycles(i.tolist(), o.tolist(), 4, 3, ov)


def test_mixed_bad_arguments() -> None:
    with pytest.raises(ValueError, match="one entry per row"):
        timing.mixed_aggregation_cycles([1, 2], [1], 1, 1)
    with pytest.raises(ValueError, match="negative input words"):
        timing.mixed_aggregation_cycles([1, -1], [1, 1], 1, 1)
    with pytest.raises(ValueError, match="output words"):
        timing.mixed_aggregation_cycles([1], [0], 1, 1)
    with pytest.raises(ValueError, match="latency"):
        timing.mixed_aggregation_cycles([1], [1], 1, 0)
    with pytest.raises(ValueError, match="pes"):
        timing.mixed_pe_slots([1], [1], 0)
