"""The integer arithmetic rules: widths, rounding, requantization, multiplier/shift."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.integer import rules


def test_documented_cora_widths() -> None:
    """docs: Cora's longest row (169 terms) needs 9, 12, 16 bits at INT2, INT4, INT8."""
    assert rules.acc_width(2, 169) == 9
    assert rules.acc_width(4, 169) == 12
    assert rules.acc_width(8, 169) == 16


@settings(max_examples=300, deadline=None)
@given(bits=st.integers(1, 16), max_terms=st.integers(1, 100_000))
def test_acc_width_is_the_smallest_exact_width(bits: int, max_terms: int) -> None:
    width = rules.acc_width(bits, max_terms)
    largest = max_terms * ((1 << bits) - 1)
    assert largest < 2**width  # holds the largest sum
    assert width == bits or largest >= 2 ** (width - 1)  # one bit less would not
    assert rules.max_terms_for_width(bits, width) >= max_terms
    assert rules.max_terms_for_width(bits, width - 1) < max_terms


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 16), max_terms=st.integers(1, 5000))
def test_check_row_lengths_fires_exactly_one_bit_below(bits: int, max_terms: int) -> None:
    width = rules.acc_width(bits, max_terms)
    rows = np.array([0, max_terms, 1], dtype=np.int64)
    rules.check_row_lengths(rows, bits, width)
    with pytest.raises(rules.AccumulatorOverflowError, match=f"row 1 has {max_terms} terms"):
        rules.check_row_lengths(rows, bits, width - 1)


def test_widths_of_the_corrected_sum_and_product() -> None:
    assert rules.corrected_width(4, 169) == 13
    assert rules.product_width(4, 169, 16) == 29
    with pytest.raises(ValueError, match="bits"):
        rules.acc_width(0, 3)
    with pytest.raises(ValueError, match="max_terms"):
        rules.acc_width(4, -1)


def exact_round_shift(p: int, s: int) -> int:
    """floor(p / 2**s + 1/2) with exact rationals."""
    return math.floor(Fraction(p, 2**s) + Fraction(1, 2))


P_LIMIT = 2**rules.MAX_PRODUCT_WIDTH - 1


@settings(max_examples=500, deadline=None)
@given(p=st.integers(-P_LIMIT, P_LIMIT), s=st.integers(0, rules.MAX_SHIFT))
def test_round_shift_matches_rationals(p: int, s: int) -> None:
    assert int(rules.round_shift(np.int64(p), np.int64(s))) == exact_round_shift(p, s)


@settings(max_examples=300, deadline=None)
@given(k=st.integers(-(2**20), 2**20), s=st.integers(1, 40))
def test_round_shift_ties_round_up(k: int, s: int) -> None:
    """p = (2k+1) * 2**(s-1) is exactly halfway between k and k+1: it goes to k+1,
    for negative values too (-2.5 -> -2, 2.5 -> 3)."""
    p = (2 * k + 1) * 2 ** (s - 1)
    assert int(rules.round_shift(np.int64(p), np.int64(s))) == k + 1


def test_round_shift_small_cases() -> None:
    p = np.array([5, -5, 3, -3, 1, -1, 7, 0, -7])
    s = np.array([1, 1, 1, 1, 0, 0, 2, 3, 2])
    # 2.5->3, -2.5->-2, 1.5->2, -1.5->-1, s=0 unchanged, 1.75->2, 0, -1.75->-2
    np.testing.assert_array_equal(rules.round_shift(p, s), [3, -2, 2, -1, 1, -1, 2, 0, -2])
    with pytest.raises(ValueError, match="shifts"):
        rules.round_shift(np.array([1]), np.array([rules.MAX_SHIFT + 1]))
    with pytest.raises(ValueError, match="shifts"):
        rules.round_shift(np.array([1]), np.array([-1]))


@settings(max_examples=300, deadline=None)
@given(
    c=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=8),
    m=st.integers(0, 2**16 - 1),
    s=st.integers(0, rules.MAX_SHIFT),
    z_out=st.integers(0, 255),
    out_bits=st.sampled_from([2, 4, 8]),
)
def test_requantize_matches_rationals(c: list[int], m: int, s: int, z_out: int, out_bits: int) -> None:
    z_out %= 1 << out_bits
    got = rules.requantize(np.array(c), m, s, z_out, out_bits)
    hi = (1 << out_bits) - 1
    want = [min(max(exact_round_shift(x * m, s) + z_out, 0), hi) for x in c]
    assert got.tolist() == want


def test_requantize_rejects_too_wide_products_and_negative_multipliers() -> None:
    with pytest.raises(ValueError, match="62 bits"):
        rules.requantize(np.array([2**40]), np.array([2**30]), np.array([0]), 0, 8)
    with pytest.raises(ValueError, match="non-negative"):
        rules.requantize(np.array([1]), np.array([-1]), np.array([0]), 0, 8)


@settings(max_examples=500, deadline=None)
@given(data=st.data(), mult_bits=st.integers(2, 31))
def test_multiplier_shift_is_accurate(data: st.DataObject, mult_bits: int) -> None:
    hi = float(2**mult_bits) - 0.5
    f = data.draw(st.floats(2.0**-30, hi, exclude_max=True, allow_nan=False))
    m, s = rules.multiplier_shift(np.array([f]), mult_bits)
    m0, s0 = int(m[0]), int(s[0])
    assert 0 <= s0 <= rules.MAX_SHIFT
    assert 0 < m0 < 2**mult_bits
    exact = Fraction(f)
    rel = abs(Fraction(m0, 2**s0) - exact) / exact
    assert rel < Fraction(1, 2**mult_bits)


def test_multiplier_shift_edges() -> None:
    m, s = rules.multiplier_shift(np.array([0.0, 1.0, 0.75]), 16)
    assert m.tolist() == [0, 2**15, 3 * 2**14]
    assert s.tolist() == [0, 15, 16]
    # a factor too small for a 63-bit shift becomes a denormal M (here rounded to 0 or 1)
    m, s = rules.multiplier_shift(np.array([2.0**-80, 2.0**-64]), 16)
    assert s.tolist() == [rules.MAX_SHIFT, rules.MAX_SHIFT]
    assert m.tolist() == [0, 1]
    # rounding that carries out of the mantissa renormalises
    m, s = rules.multiplier_shift(np.array([1.0 - 2.0**-20]), 16)
    assert (int(m[0]), int(s[0])) == (2**15, 15)
    with pytest.raises(ValueError, match="does not fit"):
        rules.multiplier_shift(np.array([2.0**16]), 16)
    with pytest.raises(ValueError, match="finite and non-negative"):
        rules.multiplier_shift(np.array([-1.0]), 16)


def test_fixed_scale_above_the_multiplier_range_is_an_exact_left_shift() -> None:
    """Factors of 2**mult_bits or more (e.g. a tiny target step) use a left shift: still
    round(v * M * 2**-s) exactly, with M the factor's 24-bit mantissa."""
    from qgnn.model.integer.fixed import FixedScale

    v = np.array([-255, -3, 0, 1, 7, 255], dtype=np.int64)
    for factor in (2.0**24 + 3.0, 2.6e7, 2.159e9):
        fs = FixedScale.from_real(factor)
        assert int(fs.shift) < 0
        exact = Fraction(int(fs.mult)) * Fraction(2) ** int(-fs.shift)
        assert abs(exact / Fraction(factor) - 1) < Fraction(1, 2**23)
        assert fs.apply(v).tolist() == [int(x * exact) for x in v.tolist()]
