"""The integer arithmetic rules shared by the integer-only model, the golden vectors, the RTL
and the simulator. This module is the single definition of them.

Aggregation of one destination node ``i`` with ``n_i`` incoming terms (CSR row length, self-loop
included when the layer has one), input codes ``q`` (unsigned, ``bits`` wide, zero point
``z_in``), and per-node requantization integers ``M_i`` (unsigned, at most ``mult_bits`` bits)
and ``s_i`` (right shift, ``0..MAX_SHIFT``)::

    acc_i = sum_{j in row i} q_j                     # unsigned, ACC_WIDTH bits, no wraparound
    c_i   = acc_i - n_i * z_in                       # signed, ACC_WIDTH + 1 bits
    p_i   = c_i * M_i                                # signed, ACC_WIDTH + 1 + mult_bits bits
    r_i   = (p_i + 2**(s_i - 1)) >> s_i   (s_i > 0)  # arithmetic shift: round half up,
          = p_i                           (s_i = 0)  #   i.e. floor(p / 2**s + 1/2)
    y_i   = clamp(r_i + z_out, 0, 2**out_bits - 1)   # saturate to the output code range

Bit-truncated (BT/BT*) tensors, the INT2 codes of SMP's bit truncation
(:mod:`model.quant.bit_truncation`), are 2-bit codes ``c`` standing for the 8-bit *grid*
value ``L * c`` with ``L = 85``: the sum above then runs on the 2-bit codes unchanged and the
correction becomes ``c_i = L * acc_i - n_i * z_in`` with ``z_in`` a grid zero point (0..255).
A BT output is requantized onto its 8-bit grid (``out_bits = 8`` above), then snapped to a
2-bit code by three comparators, ``y = [g >= t_1] + [g >= t_2] + [g >= t_3]``
(:func:`snap`; the thresholds are ``85 j - 42 - k`` for skew shift ``k``, :func:`bt_thresholds`).

Widths are derived, never guessed: ``ACC_WIDTH = bit_length(max_terms * (2**bits - 1))`` is the
smallest width that holds the largest possible sum. A row longer than the width allows raises
:class:`AccumulatorOverflowError`.
"""

from __future__ import annotations

import numpy as np

#: Name of the one rounding rule used when requantizing (documented above).
ROUNDING = "half_up"
#: Default requantization multiplier width (bits, unsigned).
DEFAULT_MULT_BITS = 16
#: Largest right shift the datapath implements (a 6-bit shift field).
MAX_SHIFT = 63
#: Widest intermediate product the reference supports (fits int64 with headroom).
MAX_PRODUCT_WIDTH = 62
#: Code widths the aggregation datapath supports.
HW_BITS = (2, 4, 8)


class AccumulatorOverflowError(ValueError):
    """A row has more terms than the accumulator width can sum without wraparound."""


def acc_width(bits: int, max_terms: int) -> int:
    """Bits needed to sum ``max_terms`` unsigned ``bits``-bit codes exactly.

    ``bit_length(max_terms * (2**bits - 1))``; at least ``bits`` (a row of 0 or 1 terms).
    Cora (169 terms): 9 bits at INT2, 12 at INT4, 16 at INT8.
    """
    if not (1 <= bits <= 16):
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if max_terms < 0:
        raise ValueError(f"max_terms must be >= 0, got {max_terms}")
    return max(bits, (max(max_terms, 1) * ((1 << bits) - 1)).bit_length())


def max_terms_for_width(bits: int, width: int) -> int:
    """Largest number of ``bits``-bit codes an unsigned ``width``-bit accumulator can sum."""
    return ((1 << width) - 1) // ((1 << bits) - 1)


def corrected_width(bits: int, max_terms: int) -> int:
    """Width of the zero-point-corrected signed sum ``acc - n * z_in`` (one sign bit more)."""
    return acc_width(bits, max_terms) + 1


def product_width(bits: int, max_terms: int, mult_bits: int = DEFAULT_MULT_BITS) -> int:
    """Width of the signed product ``(acc - n z_in) * M``."""
    return corrected_width(bits, max_terms) + mult_bits


def check_row_lengths(row_lengths: np.ndarray, bits: int, width: int, what: str = "row") -> None:
    """Raise :class:`AccumulatorOverflowError` if any row needs more than ``width`` bits."""
    n = np.asarray(row_lengths, dtype=np.int64)
    if n.size == 0:
        return
    limit = max_terms_for_width(bits, width)
    worst = int(np.argmax(n))
    if int(n[worst]) > limit:
        raise AccumulatorOverflowError(
            f"{what} {worst} has {int(n[worst])} terms; a {width}-bit accumulator sums at most "
            f"{limit} {bits}-bit codes (needs {acc_width(bits, int(n[worst]))} bits)"
        )


def round_shift(p: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """``floor(p / 2**shift + 1/2)`` for int64 ``p`` and shifts in ``0..MAX_SHIFT`` (exact)."""
    p = np.asarray(p, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    if np.any(s < 0) or np.any(s > MAX_SHIFT):
        raise ValueError(f"shifts must be in 0..{MAX_SHIFT}")
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    # p + half cannot overflow: |p| < 2**MAX_PRODUCT_WIDTH and half <= 2**62.
    return np.right_shift(p + half, s)


def requantize(
    corrected: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    zero_point_out: int,
    out_bits: int,
) -> np.ndarray:
    """Output codes ``clamp(round_shift(c * M, s) + z_out, 0, 2**out_bits - 1)`` (int64).

    ``multiplier`` and ``shift`` broadcast against ``corrected`` (per node: shape ``[N, 1]``).
    """
    c = np.asarray(corrected, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    if np.any(m < 0):
        raise ValueError("requantization multipliers must be non-negative")
    cmax = int(np.abs(c).max(initial=0))
    mmax = int(m.max(initial=0))
    if (cmax * mmax).bit_length() + 1 > MAX_PRODUCT_WIDTH:
        raise ValueError(
            f"requantization product needs more than {MAX_PRODUCT_WIDTH} bits "
            f"(|c| <= {cmax}, M <= {mmax})"
        )
    r = round_shift(c * m, shift)
    return np.clip(r + int(zero_point_out), 0, (1 << out_bits) - 1)


def snap(grid_codes: np.ndarray, thresholds: tuple[int, ...] | np.ndarray) -> np.ndarray:
    """Codes ``sum_j [g >= t_j]`` (int64) of grid codes ``g`` for ascending thresholds ``t``:
    the comparator snap of a bit-truncated output (``len(t) = 2**bits - 1`` levels above 0)."""
    g = np.asarray(grid_codes, dtype=np.int64)
    t = [int(v) for v in thresholds]
    if any(b < a for a, b in zip(t, t[1:], strict=False)):
        raise ValueError(f"snap thresholds must be ascending, got {t}")
    out = np.zeros(g.shape, dtype=np.int64)
    for v in t:
        out += g >= v
    return out


def bt_thresholds(skew_shift: int, level_step: int = 85, levels: int = 4) -> tuple[int, ...]:
    """Grid-code thresholds of the BT/BT* snap ``clamp(floor((g + k + L // 2) / L), 0, 3)``:
    code ``>= j`` exactly when ``g >= L j - L // 2 - k`` (``k`` = skew shift, 0 for BT)."""
    half = level_step // 2
    return tuple(level_step * j - half - int(skew_shift) for j in range(1, levels))


def multiplier_shift(
    factor: np.ndarray, mult_bits: int = DEFAULT_MULT_BITS
) -> tuple[np.ndarray, np.ndarray]:
    """Per-node real factors as ``(M, s)`` with ``M < 2**mult_bits`` and ``s <= MAX_SHIFT``.

    ``M`` is the factor's ``mult_bits``-bit mantissa rounded half up (relative error below
    ``2**-mult_bits``). Factors too small for ``MAX_SHIFT`` are represented with a denormal
    (smaller) ``M`` at ``s = MAX_SHIFT``, down to ``M = 0`` (output = ``z_out``). Factors of
    ``2**mult_bits`` or more are an error.
    """
    f = np.asarray(factor, dtype=np.float64)
    if not np.all(np.isfinite(f)) or np.any(f < 0):
        raise ValueError("requantization factors must be finite and non-negative")
    if np.any(f >= float(1 << mult_bits) - 0.5):
        raise ValueError(f"a requantization factor {float(f.max())!r} does not fit {mult_bits}-bit M")
    mant, exp = np.frexp(f)
    shift = (mult_bits - exp).astype(np.int64)
    shift = np.clip(shift, 0, MAX_SHIFT)
    t = np.ldexp(f, shift)  # exact scaling by a power of two
    fl = np.floor(t)
    m = (fl + (t - fl >= 0.5)).astype(np.int64)
    over = m >= (1 << mult_bits)  # rounding carried out of the mantissa
    m = np.where(over, m >> 1, m)
    shift = np.where(over, shift - 1, shift)
    m = np.where(f == 0, 0, m)
    shift = np.where(f == 0, 0, shift)
    return m.astype(np.int64), shift.astype(np.int64)


__all__ = [
    "DEFAULT_MULT_BITS",
    "HW_BITS",
    "MAX_PRODUCT_WIDTH",
    "MAX_SHIFT",
    "ROUNDING",
    "AccumulatorOverflowError",
    "acc_width",
    "bt_thresholds",
    "check_row_lengths",
    "corrected_width",
    "max_terms_for_width",
    "multiplier_shift",
    "product_width",
    "requantize",
    "round_shift",
    "snap",
]
