"""Tests for model.quant.fixed_point (multiplier + shift representation of scales)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.quant.fixed_point import (
    EXACT_FLOAT32_MULT_BITS,
    ceil_log2,
    is_exact,
    multiplier_shift_value,
    to_multiplier_shift,
)


def _exact(m: int, shift: int) -> Fraction:
    return Fraction(int(m)) * Fraction(2) ** (-int(shift))


float32_scales = st.floats(
    min_value=2.0**-100, max_value=2.0**60, allow_nan=False, allow_infinity=False,
    allow_subnormal=False, width=32,
)


@settings(max_examples=200, deadline=None)
@given(float32_scales)
def test_float32_round_trip_is_exact(v: float) -> None:
    r = float(np.float32(v))
    m, sh = to_multiplier_shift(np.float32(r).astype(np.float64), EXACT_FLOAT32_MULT_BITS)
    assert m.dtype == np.int64 and sh.dtype == np.int64
    assert 1 <= int(m) < 2**24
    assert _exact(m, sh) == Fraction(r)
    assert float(multiplier_shift_value(m, sh)) == r
    assert is_exact(r)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(min_value=1e-15, max_value=1e12, allow_nan=False, allow_infinity=False),
    st.integers(min_value=1, max_value=62),
)
def test_relative_error_below_2_pow_minus_mult_bits(r: float, mult_bits: int) -> None:
    m, sh = to_multiplier_shift(r, mult_bits=mult_bits)
    m_i, sh_i = int(m), int(sh)
    assert 1 <= m_i < 2**mult_bits
    # canonical: no trailing zero bit while a right shift remains
    assert m_i % 2 == 1 or sh_i <= 0
    err = abs(_exact(m_i, sh_i) - Fraction(r)) / Fraction(r)
    assert err < Fraction(1, 2**mult_bits)


def test_hand_computed_examples() -> None:
    # 0.75 = 192 * 2^-8 with 8 bits, canonicalised by stripping trailing zeros: 3 * 2^-2
    assert tuple(map(int, to_multiplier_shift(0.75, mult_bits=8))) == (3, 2)
    # 0.1 = 0.8 * 2^-3; 0.8 * 16 = 12.8 -> 13; 13 * 2^-7 = 0.1015625
    assert tuple(map(int, to_multiplier_shift(0.1, mult_bits=4))) == (13, 7)
    # 0.99 * 16 = 15.84 -> 16 overflows 4 bits -> 8 * 2^-3 -> canonical 1 * 2^0
    assert tuple(map(int, to_multiplier_shift(0.99, mult_bits=4))) == (1, 0)
    # tie: 0.53125 * 16 = 8.5 rounds away from zero to 9 (not to even 8)
    assert tuple(map(int, to_multiplier_shift(0.53125, mult_bits=4))) == (9, 4)
    # integers are exact with shift 0
    assert tuple(map(int, to_multiplier_shift(3.0))) == (3, 0)
    # float32(0.1) = 13421773 * 2^-27 exactly
    assert tuple(map(int, to_multiplier_shift(float(np.float32(0.1)), 24))) == (13421773, 27)


def test_array_shape_and_zero_handling() -> None:
    r = np.array([[0.0, 0.5, 0.25], [0.0, 3.0, 0.375]])
    m, sh = to_multiplier_shift(r, mult_bits=16)
    assert m.shape == (2, 3) and sh.shape == (2, 3)
    np.testing.assert_array_equal(m, [[0, 1, 1], [0, 3, 3]])
    np.testing.assert_array_equal(sh, [[0, 1, 2], [0, 0, 3]])
    np.testing.assert_array_equal(multiplier_shift_value(m, sh), r)
    m0, s0 = to_multiplier_shift(0.0)
    assert (int(m0), int(s0)) == (0, 0)
    assert m0.shape == ()


@pytest.mark.parametrize("bad", [-1.0, -1e-30, float("nan"), float("inf"), -float("inf")])
def test_negative_nan_inf_raise(bad: float) -> None:
    with pytest.raises(ValueError):
        to_multiplier_shift(bad)
    with pytest.raises(ValueError):
        to_multiplier_shift(np.array([0.5, bad]))


@pytest.mark.parametrize("mb", [0, 63, -1])
def test_invalid_mult_bits_raise(mb: int) -> None:
    with pytest.raises(ValueError, match="mult_bits"):
        to_multiplier_shift(0.5, mult_bits=mb)


def test_too_small_scale_raises() -> None:
    with pytest.raises(ValueError, match="too small"):
        to_multiplier_shift(1.5 * 2.0**-130, mult_bits=24)
    # an odd 24-bit multiplier needs its full shift: (2^23 + 1) * 2^-40
    r = float((2**23 + 1) * 2.0**-40)
    assert tuple(map(int, to_multiplier_shift(r, 24, max_shift=40))) == (2**23 + 1, 40)
    with pytest.raises(ValueError, match="too small"):
        to_multiplier_shift(r, 24, max_shift=39)


def test_max_shift_applies_to_returned_shift() -> None:
    m, sh = to_multiplier_shift(2.0**-10, mult_bits=24, max_shift=31)
    assert (int(m), int(sh)) == (1, 10)


def test_mult_bits_53_is_exact_for_float64() -> None:
    r = 1.0 + 2.0**-52
    m, sh = to_multiplier_shift(r, mult_bits=53)
    assert (int(m), int(sh)) == (2**52 + 1, 52)


def test_is_exact() -> None:
    assert is_exact(np.float32(0.1).astype(np.float64))
    assert not is_exact(0.1)  # float64 0.1 needs more than 24 mantissa bits
    assert is_exact(0.1, mult_bits=53)
    assert is_exact(np.array([0.0, 0.5, 1.25]))


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (9, 4), (1024, 10), (1025, 11)],
)
def test_ceil_log2(n: int, expected: int) -> None:
    assert ceil_log2(n) == expected


def test_ceil_log2_rejects_zero() -> None:
    with pytest.raises(ValueError):
        ceil_log2(0)
