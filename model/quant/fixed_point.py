"""Fixed-point (integer multiplier + right shift) representation of real scale factors.

A positive real ``r`` is represented as ``M * 2**(-shift)`` with ``M`` an unsigned integer of at
most ``mult_bits`` bits. The integer inference path and the hardware requantize with ``M`` and
``shift``; this module is the single place those integers are derived.
"""

from __future__ import annotations

import numpy as np

#: Multiplier width that represents every float32 scale exactly (24-bit mantissa).
EXACT_FLOAT32_MULT_BITS = 24


def to_multiplier_shift(
    real: float | np.ndarray, mult_bits: int = 31, max_shift: int = 127
) -> tuple[np.ndarray, np.ndarray]:
    """Represent positive reals as ``M * 2**-shift`` with ``2**(mult_bits-1) <= M < 2**mult_bits``.

    ``M`` is rounded to nearest (ties away from zero); the relative error is below
    ``2**-mult_bits``. Zeros map to ``M = 0, shift = 0``.

    Args:
        real: scalar or array of non-negative finite reals.
        mult_bits: multiplier width in bits (1..62).
        max_shift: largest allowed right shift; smaller reals raise ``ValueError``.

    Returns:
        ``(M, shift)`` as int64 arrays of the input's shape.
    """
    if not (1 <= mult_bits <= 62):
        raise ValueError(f"mult_bits must be in 1..62, got {mult_bits}")
    r = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("scale factors must be finite and non-negative")
    mant, exp = np.frexp(r)  # r = mant * 2**exp, mant in [0.5, 1)
    t = np.ldexp(mant, mult_bits)  # exact
    fl = np.floor(t)
    m = (fl + (t - fl >= 0.5)).astype(np.int64)  # round half up, without a rounded "+ 0.5"
    shift = (mult_bits - exp).astype(np.int64)
    # rounding up to 2**mult_bits: renormalise
    over = m >= (1 << mult_bits)
    m = np.where(over, m >> 1, m)
    shift = np.where(over, shift - 1, shift)
    zero = r == 0
    m = np.where(zero, 0, m)
    shift = np.where(zero, 0, shift)
    # Strip trailing zero bits so the representation is canonical (smallest M for the value),
    # but never produce a negative shift.
    while True:
        can = (m != 0) & ((m & 1) == 0) & (shift > 0)
        if not np.any(can):
            break
        m = np.where(can, m >> 1, m)
        shift = np.where(can, shift - 1, shift)
    if np.any(shift > max_shift):
        raise ValueError(
            f"scale too small for a right shift of at most {max_shift} bits "
            f"(smallest value {float(r[~zero].min()) if np.any(~zero) else 0.0!r})"
        )
    return m, shift


def multiplier_shift_value(m: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """The real value ``M * 2**-shift`` as float64 (exact for ``M < 2**53``)."""
    return np.ldexp(np.asarray(m, dtype=np.float64), -np.asarray(shift, dtype=np.int64))


def is_exact(real: float | np.ndarray, mult_bits: int = EXACT_FLOAT32_MULT_BITS) -> bool:
    """True when every value is represented exactly with ``mult_bits``-bit multipliers."""
    m, s = to_multiplier_shift(real, mult_bits)
    return bool(np.all(multiplier_shift_value(m, s) == np.asarray(real, dtype=np.float64)))


def ceil_log2(n: int) -> int:
    """``⌈log2 n⌉`` for ``n >= 1`` (0 for n = 1)."""
    if n < 1:
        raise ValueError(f"ceil_log2 needs n >= 1, got {n}")
    return (n - 1).bit_length()


__all__ = [
    "EXACT_FLOAT32_MULT_BITS",
    "ceil_log2",
    "is_exact",
    "multiplier_shift_value",
    "to_multiplier_shift",
]
