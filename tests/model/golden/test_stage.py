"""AggregationStage.compute against an exact rational reference; overflow; pad lanes."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.golden import packing
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import rules


def rational_reference(stage: AggregationStage) -> tuple[list[list[int]], list[list[int]]]:
    """Plain-Python loop over the CSR with exact rationals:
    acc = sum of codes, out = clamp(floor((acc - n z_in) * M / 2**s + 1/2) + z_out)."""
    codes = stage.codes.tolist()
    indptr = stage.indptr.tolist()
    indices = stage.indices.tolist()
    hi = 2**stage.out_bits - 1
    accs, outs = [], []
    for i in range(len(indptr) - 1):
        row = indices[indptr[i] : indptr[i + 1]]
        n = len(row)
        m = int(stage.multiplier[i])
        s = int(stage.shift[i])
        acc_row, out_row = [], []
        for f in range(stage.features):
            acc = sum(codes[j][f] for j in row)
            x = Fraction((acc - n * stage.zero_point_in) * m, 2**s) + Fraction(1, 2)
            out_row.append(min(max(math.floor(x) + stage.zero_point_out, 0), hi))
            acc_row.append(acc)
        accs.append(acc_row)
        outs.append(out_row)
    return accs, outs


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([1, 2, 3, 4, 8]),
    num_nodes=st.integers(1, 24),
    features=st.integers(1, 12),
    avg_degree=st.floats(0.0, 8.0),
    self_loops=st.booleans(),
    mult_bits=st.sampled_from([8, 16, 24]),
)
def test_compute_equals_exact_rational_reference(
    seed: int, bits: int, num_nodes: int, features: int, avg_degree: float,
    self_loops: bool, mult_bits: int,
) -> None:
    rng = np.random.default_rng(seed)
    stage = random_stage(
        rng, num_nodes=num_nodes, features=features, bits=bits, avg_degree=avg_degree,
        self_loops=self_loops, mult_bits=mult_bits,
    )
    acc, out = stage.compute()
    want_acc, want_out = rational_reference(stage)
    assert acc.tolist() == want_acc
    assert out.tolist() == want_out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.integers(0, rules.MAX_SHIFT))
def test_extreme_multipliers_and_shifts(seed: int, shift: int) -> None:
    """Largest multipliers, every shift, all-maximum codes: still exact."""
    rng = np.random.default_rng(seed)
    stage = random_stage(rng, num_nodes=8, features=5, bits=8, avg_degree=6)
    stage.codes[:] = np.where(rng.random(stage.codes.shape) < 0.5, 255, stage.codes)
    stage.multiplier[:] = 2**16 - 1 - rng.integers(0, 3, size=stage.num_nodes)
    stage.shift[:] = shift
    acc, out = stage.compute()
    want_acc, want_out = rational_reference(stage)
    assert acc.tolist() == want_acc
    assert out.tolist() == want_out


def one_long_row_stage(bits: int, terms: int, acc_width: int | None) -> AggregationStage:
    """Row 0 sums ``terms`` maximum codes (the largest possible sum); row 1 is empty."""
    qmax = (1 << bits) - 1
    return AggregationStage(
        name="long", indptr=np.array([0, terms, terms]), indices=np.zeros(terms, dtype=np.int64),
        codes=np.full((1, 3), qmax), bits=bits, out_bits=bits, zero_point_in=0,
        zero_point_out=0, multiplier=np.zeros(2, dtype=np.int64), shift=np.zeros(2, dtype=np.int64),
        acc_width=acc_width,
    )


@settings(max_examples=150, deadline=None)
@given(bits=st.integers(1, 8), max_terms=st.integers(1, 3000))
def test_overflow_check_fires_exactly_one_bit_below_derived_width(bits: int, max_terms: int) -> None:
    derived = rules.acc_width(bits, max_terms)
    assert one_long_row_stage(bits, max_terms, None).acc_width == derived
    acc, _ = one_long_row_stage(bits, max_terms, derived).compute()
    assert int(acc[0, 0]) == max_terms * ((1 << bits) - 1) < 2**derived
    with pytest.raises(rules.AccumulatorOverflowError, match=f"row 0 has {max_terms} terms"):
        one_long_row_stage(bits, max_terms, derived - 1).compute()


def test_pad_lanes_hold_z_in_and_compute_to_z_out() -> None:
    """Pad lanes of the input memory hold z_in; summing them gives n*z_in, which corrects to 0
    and requantizes to z_out: exactly the pad value of the expected output words."""
    rng = np.random.default_rng(7)
    for bits, ww, feats in ((4, 64, 5), (2, 16, 9), (8, 32, 3)):
        stage = random_stage(rng, num_nodes=12, features=feats, bits=bits, word_width=ww)
        stage.zero_point_in = 3 % (1 << bits)
        stage.zero_point_out = 1
        full_feats = stage.words_per_row * stage.lanes
        # the datapath sees whole words: decode the pad lanes as features too
        wide_codes = packing.unpack_codes(stage.packed_input(), bits, ww, full_feats)
        assert np.all(wide_codes[:, feats:] == stage.zero_point_in)
        wide = AggregationStage(
            name="wide", indptr=stage.indptr, indices=stage.indices, codes=wide_codes, bits=bits,
            out_bits=bits, zero_point_in=stage.zero_point_in, zero_point_out=1,
            multiplier=stage.multiplier, shift=stage.shift, word_width=ww,
        )
        _, wide_out = wide.compute()
        _, out = stage.compute()
        assert np.all(wide_out[:, feats:] == 1)
        np.testing.assert_array_equal(wide.packed_output(wide_out), stage.packed_output(out))


# --- bit-truncated (BT/BT*) stages -------------------------------------------------------------
def bt_reference(stage: AggregationStage, skew: int) -> list[list[int]]:
    """Independent BT rule with exact rationals: the real sum of dequantized BT inputs
    ``sum_j (85 c_j - z_in)`` (grid units), scaled by ``M / 2**s``, rounded half up onto the
    8-bit output grid, then snapped ``clamp(round((g + k) / 85), 0, 3)`` (never a tie)."""
    out = []
    for i in range(stage.num_nodes):
        row = stage.indices[stage.indptr[i]: stage.indptr[i + 1]].tolist()
        m, s = int(stage.multiplier[i]), int(stage.shift[i])
        vals = []
        for f in range(stage.features):
            real = sum(85 * int(stage.codes[j, f]) - stage.zero_point_in for j in row)
            g = math.floor(Fraction(real * m, 2**s) + Fraction(1, 2)) + stage.zero_point_out
            g = min(max(g, 0), 255)
            vals.append(min(max(round(Fraction(g + skew, 85)), 0), 3))
        out.append(vals)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), num_nodes=st.integers(1, 24),
       features=st.integers(1, 12), avg_degree=st.floats(0.0, 8.0))
def test_bt_stage_equals_independent_reference(seed: int, num_nodes: int, features: int,
                                               avg_degree: float) -> None:
    rng = np.random.default_rng(seed)
    stage = random_stage(rng, num_nodes=num_nodes, features=features, bits=2,
                         avg_degree=avg_degree, truncated=True)
    assert stage.out_thresholds is not None and stage.truncated
    skew = 43 - stage.out_thresholds[0]  # thresholds are 43 - k, 128 - k, 213 - k
    acc, out = stage.compute()
    assert acc.max(initial=0) < 2**stage.acc_width  # the sum still runs on 2-bit codes
    assert out.tolist() == bt_reference(stage, skew)
    assert stage.corrected_width <= rules.acc_width(8, stage.max_terms) + 1


def test_bt_pad_lanes_compute_what_the_expected_words_hold() -> None:
    """BT pad lanes hold floor(z_in / 85); the expected output words' pad lanes hold what the
    rule computes from them, row by row (not z_out)."""
    rng = np.random.default_rng(3)
    stage = random_stage(rng, num_nodes=16, features=13, bits=2, word_width=16, truncated=True)
    stage.zero_point_in = 100
    full = stage.words_per_row * stage.lanes
    wide_codes = packing.unpack_codes(stage.packed_input(), 2, 16, full)
    assert np.all(wide_codes[:, 13:] == 1)  # floor(100 / 85)
    wide = AggregationStage(
        name="wide", indptr=stage.indptr, indices=stage.indices, codes=wide_codes, bits=2,
        out_bits=2, zero_point_in=100, zero_point_out=stage.zero_point_out,
        multiplier=stage.multiplier, shift=stage.shift, word_width=16, in_level=85,
        out_grid_bits=8, out_thresholds=stage.out_thresholds,
    )
    _, wide_out = wide.compute()
    _, out = stage.compute()
    assert np.array_equal(stage.packed_output(out), packing.pack_codes(wide_out, 2, 16))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"in_level": 0}, "in_level must be >= 1"),
    ({"in_level": 85, "zero_point_in": 256}, "zero_point_in 256 outside 0..255"),
    ({"out_grid_bits": 8}, "needs out_thresholds"),
    ({"out_grid_bits": 8, "out_thresholds": (43, 128)}, "needs 3 values"),
    ({"out_grid_bits": 8, "out_thresholds": (128, 43, 213)}, "must be ascending"),
    ({"out_grid_bits": 8, "out_thresholds": (43, 128, 213), "zero_point_out": 256},
     "zero_point_out 256 outside 0..255"),
])
def test_bad_bt_stage_fields_are_rejected(kwargs: dict, match: str) -> None:
    base = dict(name="s", indptr=[0, 1], indices=[0], codes=[[1]], bits=2, out_bits=2,
                zero_point_in=0, zero_point_out=0, multiplier=[1], shift=[0])
    with pytest.raises(ValueError, match=match):
        AggregationStage(**{**base, **kwargs})
