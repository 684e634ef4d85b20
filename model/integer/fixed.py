"""Integer building blocks of the integer-only model: quantizer parameters in integer form,
fixed-point rescaling and requantization (integer multiplier, right shift, clamp).

Every real factor is turned into integers (multiplier ``M``, shift ``s``) once, at conversion;
inference then runs on int64 arrays only. Rounding everywhere is the one rule of
:mod:`model.integer.rules` (round half up).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..quant.bit_truncation import BitTruncQuantizer
from ..quant.fixed_point import to_multiplier_shift
from ..quant.quantizer import Quantizer
from . import rules

#: Multiplier width (bits) of requantizations outside the aggregation datapath.
REQUANT_MULT_BITS = 24
#: Extra fractional bits of the common scale when several terms or a bias are summed.
FRAC_BITS = 16


class IntegerConversionError(ValueError):
    """The model cannot be expressed in integers (an FP32 role, an unsupported option)."""


@dataclass(frozen=True)
class QParams:
    """Integer form of one quantizer: codes ``q`` stand for ``(level * q - zero) * scale``.

    ``scale``/``zero`` are scalars (per tensor) or ``[C]`` arrays along ``axis``
    (per channel). ``name`` is the quantizer's module path, used by the trace.

    Plain quantizers have ``level = 1``. Bit-truncated ones (BT/BT*, INT2) have 2-bit codes on
    an 8-bit grid: ``level = 85``, ``scale``/``zero`` the grid's step and zero point,
    ``grid_max = 255`` and, per tensor, the snap ``thresholds`` (grid codes) that turn a
    requantized grid code into a 2-bit code (:func:`~model.integer.rules.snap`).
    """

    name: str
    bits: int
    qmin: int
    qmax: int
    scale: np.ndarray
    zero: np.ndarray
    axis: int = -1
    level: int = 1
    grid_max: int | None = None
    thresholds: tuple[int, ...] | None = None

    @classmethod
    def of(cls, name: str, q: Quantizer) -> QParams:
        if not q.spec.enabled:
            raise IntegerConversionError(
                f"{name}: role is FP32; the integer path needs every role quantized (bits 2..8)"
            )
        if q.spec.granularity == "node":
            raise IntegerConversionError(
                f"{name}: per-node quantization is not supported by the integer path "
                "(allowed: tensor, channel)"
            )
        if isinstance(q, BitTruncQuantizer):
            bt = q.integer_params()
            per_tensor = bt.axis is None
            return cls(
                name, bt.bits, bt.qmin, bt.qmax,
                (bt.grid_scale.reshape(()) if per_tensor else bt.grid_scale).astype(np.float64),
                (bt.grid_zero_point.reshape(()) if per_tensor else bt.grid_zero_point).astype(
                    np.int64),
                -1 if bt.axis is None else bt.axis, level=bt.level_step, grid_max=bt.grid_qmax,
                thresholds=rules.bt_thresholds(int(bt.skew_shift[0]), bt.level_step)
                if per_tensor else None,
            )
        p = q.integer_params()
        scale = p.scale if p.scale.size > 1 else p.scale.reshape(())
        zero = p.zero_point if p.zero_point.size > 1 else p.zero_point.reshape(())
        axis = -1 if p.axis is None else p.axis
        return cls(name, p.bits, p.qmin, p.qmax, scale.astype(np.float64), zero.astype(np.int64), axis)

    @property
    def per_tensor(self) -> bool:
        return self.scale.ndim == 0

    @property
    def truncated(self) -> bool:
        """True for a bit-truncated (BT/BT*) quantizer."""
        return self.level != 1

    @property
    def grid_range(self) -> tuple[int, int]:
        """Clamp range of a requantized code before the snap: ``(qmin, qmax)`` for plain
        quantizers, the 8-bit grid ``(0, 255)`` for BT."""
        return (self.qmin, self.qmax) if self.grid_max is None else (0, self.grid_max)

    def snap(self, grid_codes: np.ndarray) -> np.ndarray:
        """Stored codes of clamped grid codes: identity for plain quantizers, the BT snap
        otherwise (per-tensor BT only: per-channel thresholds have no integer form)."""
        if not self.truncated:
            return grid_codes
        if self.thresholds is None:
            raise IntegerConversionError(
                f"{self.name}: a per-channel bit-truncated tensor cannot be a requantization "
                "target (allowed: per-tensor BT/BT*)"
            )
        return rules.snap(grid_codes, self.thresholds)

    def _along_axis(self, a: np.ndarray, ndim: int) -> np.ndarray:
        if self.per_tensor:
            return a
        shape = [1] * ndim
        shape[self.axis] = -1
        return a.reshape(shape)

    def dequantize(self, codes: np.ndarray) -> np.ndarray:
        """Real values (float64) of ``codes`` (for traces and reports, not for inference)."""
        c = np.asarray(codes, dtype=np.int64)
        return self.centred(c) * self._along_axis(self.scale, c.ndim)

    def step(self, ndim: int) -> np.ndarray:
        """The real distance between adjacent codes (``level * scale``), shaped to broadcast
        against an ``ndim``-D code array."""
        return self.level * self._along_axis(self.scale, ndim)

    def centred(self, codes: np.ndarray) -> np.ndarray:
        """``level * codes - zero`` (int64): the code's value in steps of ``scale``."""
        c = np.asarray(codes, dtype=np.int64)
        return self.level * c - self._along_axis(self.zero, c.ndim)


@dataclass(frozen=True)
class FixedScale:
    """A real factor (scalar or broadcastable array) as integers: ``v -> round(v * M / 2**s)``."""

    mult: np.ndarray
    shift: np.ndarray

    @classmethod
    def from_real(cls, factor: np.ndarray | float, mult_bits: int = REQUANT_MULT_BITS) -> FixedScale:
        f = np.asarray(factor, dtype=np.float64)
        if not np.all(np.isfinite(f)) or np.any(f < 0):
            raise IntegerConversionError("rescale factors must be finite and non-negative")
        m, s = to_multiplier_shift(f, mult_bits=mult_bits, max_shift=rules.MAX_SHIFT)
        if np.any(s < -rules.MAX_SHIFT):
            raise IntegerConversionError(
                f"rescale factor {float(f.max())!r} too large for a {mult_bits}-bit multiplier "
                f"and a left shift of at most {rules.MAX_SHIFT}"
            )
        return cls(m.astype(np.int64), s.astype(np.int64))

    def apply(self, v: np.ndarray) -> np.ndarray:
        """``round_half_up(v * M / 2**s)`` for int64 ``v`` (overflow-checked). A negative
        ``s`` (a factor of ``2**mult_bits`` or more) is an exact left shift by ``-s``."""
        v = np.asarray(v, dtype=np.int64)
        vmax = int(np.abs(v).max(initial=0))
        left = int(max(0, -int(self.shift.min(initial=0))))
        if (vmax * int(self.mult.max(initial=0))).bit_length() + left + 1 > rules.MAX_PRODUCT_WIDTH:
            raise OverflowError(
                f"rescale product exceeds {rules.MAX_PRODUCT_WIDTH} bits (|v| <= {vmax})"
            )
        p = v * self.mult
        if left == 0:
            return rules.round_shift(p, self.shift)
        neg = self.shift < 0
        return np.where(neg, np.left_shift(p, np.where(neg, -self.shift, 0)),
                        rules.round_shift(p, np.maximum(self.shift, 0)))


@dataclass(frozen=True)
class Requant:
    """``y = clamp(round((sum_t v_t * f_t + bias) [relu]) + z, qmin, qmax)`` in integers.

    With one term and no bias the factor maps straight to the target scale; otherwise the
    terms are first rescaled to a common scale ``target_step / 2**FRAC_BITS`` (bias likewise,
    rounded once at conversion), summed, optionally passed through ReLU, then shifted down.
    """

    terms: tuple[FixedScale, ...]
    bias: np.ndarray | None
    relu: bool
    frac_bits: int
    target: QParams

    @classmethod
    def build(
        cls,
        factors: Sequence[np.ndarray | float],
        target: QParams,
        bias: np.ndarray | None = None,
        relu: bool = False,
    ) -> Requant:
        """``factors[t]`` is the real scale of term ``t`` divided by the target's step."""
        k = 0 if (len(factors) == 1 and bias is None) else FRAC_BITS
        terms = tuple(FixedScale.from_real(np.asarray(f, dtype=np.float64) * 2.0**k) for f in factors)
        b = None
        if bias is not None:
            bf = np.asarray(bias, dtype=np.float64) / target.scale * 2.0**k
            b = np.floor(bf + 0.5).astype(np.int64)  # round half up, once, at conversion
        return cls(terms, b, relu, k, target)

    def __call__(self, *values: np.ndarray) -> np.ndarray:
        if len(values) != len(self.terms):
            raise ValueError(f"expected {len(self.terms)} inputs, got {len(values)}")
        t = self.terms[0].apply(values[0])
        for term, v in zip(self.terms[1:], values[1:], strict=True):
            t = t + term.apply(v)
        if self.bias is not None:
            t = t + self.bias
        if self.relu:
            t = np.maximum(t, 0)
        if self.frac_bits:
            t = rules.round_shift(t, self.frac_bits)
        lo, hi = self.target.grid_range
        return self.target.snap(np.clip(t + self.target.zero, lo, hi))


def int_matmul(x_centred: Any, w_codes: np.ndarray) -> np.ndarray:
    """Exact ``x @ w.T`` for integer ``x`` ([N, K], dense int64 or scipy sparse) and signed
    weight codes ``w`` ([C, K]), as int64.

    Computed in float64, which is exact while every partial sum stays below 2**53; that bound
    is checked from the operands' magnitudes before multiplying.
    """
    import scipy.sparse as sp

    k = w_codes.shape[1]
    wmax = int(np.abs(w_codes).max(initial=0))
    if sp.issparse(x_centred):
        xs = x_centred.tocsr()
        xmax = int(np.abs(xs.data).max(initial=0)) if xs.nnz else 0
        rowmax = int(np.diff(xs.indptr).max(initial=0))
        bound = xmax * wmax * max(rowmax, 1)
        if bound >= 2**53:
            raise OverflowError("integer matmul partial sums may exceed 2**53")
        out = xs.astype(np.float64) @ w_codes.T.astype(np.float64)
    else:
        xd = np.asarray(x_centred, dtype=np.int64)
        bound = int(np.abs(xd).max(initial=0)) * wmax * max(k, 1)
        if bound >= 2**53:
            raise OverflowError("integer matmul partial sums may exceed 2**53")
        out = xd.astype(np.float64) @ w_codes.T.astype(np.float64)
    return np.asarray(np.rint(out), dtype=np.int64)


__all__ = [
    "FRAC_BITS",
    "REQUANT_MULT_BITS",
    "FixedScale",
    "IntegerConversionError",
    "QParams",
    "Requant",
    "int_matmul",
]
