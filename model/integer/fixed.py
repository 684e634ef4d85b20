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
from . import jit, kernels, rules

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

    def lazy(self, codes: np.ndarray, sign: int = 1) -> kernels.Centred | np.ndarray:
        """``sign * centred(codes)`` for a requantization or a matmul to fold in: a
        :class:`~model.integer.kernels.Centred` for per-tensor parameters (not materialised),
        the materialised array for per-channel ones."""
        if self.per_tensor:
            return kernels.Centred(np.asarray(codes, dtype=np.int64), sign * self.level,
                                   sign * int(self.zero))
        c = self.centred(codes)
        return c if sign == 1 else np.multiply(c, sign, out=c)

    def centred(self, codes: np.ndarray) -> np.ndarray:
        """``level * codes - zero`` (int64, a new array): the code's value in steps of
        ``scale``."""
        c = np.asarray(codes, dtype=np.int64)
        z = self._along_axis(self.zero, c.ndim)
        if self.level == 1:
            return np.subtract(c, z)
        out = np.multiply(c, self.level)
        if np.broadcast_shapes(out.shape, np.shape(z)) == out.shape:
            np.subtract(out, z, out=out)
            return out
        return out - z


@dataclass(frozen=True)
class FixedScale:
    """A real factor (scalar or broadcastable array) as integers: ``v -> round(v * M / 2**s)``."""

    mult: np.ndarray
    shift: np.ndarray

    def __post_init__(self) -> None:
        # Derived once (the fields never change): the largest multiplier, the largest left
        # shift, and the rounding offsets of the right shifts.
        mult, shift = np.asarray(self.mult), np.asarray(self.shift)
        left = int(max(0, -int(shift.min(initial=0))))
        object.__setattr__(self, "_mmax", int(mult.max(initial=0)))
        object.__setattr__(self, "_left", left)
        ok = shift.size == 0 or int(shift.max()) <= rules.MAX_SHIFT
        object.__setattr__(self, "_shift_ok", left == 0 and ok)
        object.__setattr__(self, "_half", kernels.half_of(shift) if left == 0 and ok else None)
        smin = int(np.maximum(shift, 0).min(initial=0)) if shift.size else 0
        object.__setattr__(self, "_smin", smin)

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

    def apply(self, v: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``round_half_up(v * M / 2**s)`` for int64 ``v`` (overflow-checked). A negative
        ``s`` (a factor of ``2**mult_bits`` or more) is an exact left shift by ``-s``.

        Vectorised: the product is rounded and shifted in place (in ``out`` when it has the
        result's shape; a new array otherwise). Same result and errors as :meth:`reference`."""
        if kernels.use_reference():
            return self.reference(v)
        return self._apply(v, out)[0]

    def bound(self, vmax: int) -> int:
        """An upper bound of ``|apply(v)|`` for ``|v| <= vmax``."""
        p = vmax * self._mmax  # type: ignore[attr-defined]
        return p << self._left if self._left else (p >> self._smin) + 1  # type: ignore[attr-defined]

    def _apply(self, v: np.ndarray, out: np.ndarray | None) -> tuple[np.ndarray, int]:
        """``(apply(v), bound)``, the bound of ``|apply(v)|`` from ``max |v|``."""
        v = np.asarray(v, dtype=np.int64)
        vmax = kernels.abs_max(v)
        left = self._left  # type: ignore[attr-defined]
        if (vmax * self._mmax).bit_length() + left + 1 > rules.MAX_PRODUCT_WIDTH:  # type: ignore[attr-defined]
            raise OverflowError(
                f"rescale product exceeds {rules.MAX_PRODUCT_WIDTH} bits (|v| <= {vmax})"
            )
        if left or not self._shift_ok:  # type: ignore[attr-defined]
            return self.reference(v), self.bound(vmax)
        shape = np.broadcast_shapes(v.shape, self.mult.shape)
        if out is None or out.shape != shape or out.dtype != np.int64:
            p = np.multiply(v, self.mult)
        else:
            p = np.multiply(v, self.mult, out=out)
        kernels.round_shift_inplace(p, self.shift, self._half)  # type: ignore[attr-defined]
        return p, self.bound(vmax)

    def reference(self, v: np.ndarray) -> np.ndarray:
        """The straightforward definition of :meth:`apply` (new arrays at every step)."""
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

    def __post_init__(self) -> None:
        tgt = self.target
        table = None
        if tgt.truncated and tgt.thresholds is not None:
            lo, hi = tgt.grid_range
            table = kernels.snap_table(tgt.thresholds, lo, hi)
        object.__setattr__(self, "_snap_table", table)
        object.__setattr__(self, "_ws", kernels.Workspace())
        object.__setattr__(self, "_pool", kernels.ResultPool())

    def __call__(self, *values: Any) -> np.ndarray:
        """Output codes (int64, a new array) of the terms ``values`` (int64 arrays,
        :class:`~model.integer.kernels.Centred` codes standing for ``level * codes - zero``, or
        :class:`~model.integer.kernels.Bounded` arrays with a proven bound).

        Vectorised and exact (same result as :meth:`reference`): each term's product check
        runs first, from ``max |v|`` (for centred codes from the codes' min and max); the sum of
        the terms is bounded and a sum that could leave int64 raises :class:`OverflowError`.
        Then the steps are folded into integer identities that hold exactly —
        ``floor(floor(y / 2**s) / 2**k) = floor(y / 2**(s + k))``,
        ``floor(y / 2**s) + n = floor((y + n 2**s) / 2**s)`` for integer ``n``, and ReLU before
        a monotone rounding that maps 0 to 0 equals a clamp at ``max(qmin, z)`` after it — so a
        one-term requantization is one multiply, one add, one shift and one clamp over the array,
        all in place; every folded offset is bounded below ``2**63`` first (else the steps run
        unfolded)."""
        if len(values) != len(self.terms):
            raise ValueError(f"expected {len(self.terms)} inputs, got {len(values)}")
        if kernels.use_reference():
            return self.reference(*[_materialise(v) for v in values])
        return self._fused(values)

    def _identity_of(self, values: tuple[Any, ...]) -> np.ndarray | None:
        """The input codes themselves (a read-only view) when this requantization provably
        returns them unchanged, else None.

        That is the case of a layer's update codes entering the next layer's input quantizer
        at the same scale: one term of factor exactly 1 (multiplier 1, shift 0, so the rounding
        adds 0), no bias, no fraction bits, a plain (not bit-truncated) per-tensor target
        whose zero point equals the input's, a level step of 1, and every code inside the
        clamp range (``max(qmin, z)`` with ReLU), checked from the codes' min and max. Then
        ``clamp(round_shift((c - z) * 1, 0) + z)`` is ``c`` for every element. The view is
        read-only so that no caller can modify the codes it shares with the input."""
        if len(values) != 1 or self.bias is not None or self.frac_bits:
            return None
        fs, v, tgt = self.terms[0], values[0], self.target
        if (fs.mult.ndim or fs.shift.ndim or int(fs.mult) != 1 or int(fs.shift) != 0
                or tgt.truncated or np.ndim(tgt.zero) or not isinstance(v, kernels.Centred)
                or v.level != 1 or v.zero != int(tgt.zero)):
            return None
        lo, hi = tgt.grid_range
        if self.relu:
            lo = max(lo, int(tgt.zero))
        codes = np.asarray(v.codes)
        if codes.dtype != np.int64 or codes.size == 0:
            return None
        r = v.known_range()
        if r is None:
            if lo >= 0:  # one reduction: codes in 0..hi exactly when max(codes as uint64) <= hi
                top = int(codes.view(np.uint64).max())
                if top > hi:
                    return None
                r = (int(codes.min()), top) if lo > 0 else (0, top)
            else:
                r = (int(codes.min()), int(codes.max()))
        if r[0] < lo or r[1] > hi:
            return None
        out = codes.view()
        out.flags.writeable = False
        return out

    def _fused(self, values: tuple[Any, ...]) -> np.ndarray:
        same = self._identity_of(values)
        if same is not None:
            return same
        prepared = []
        total = 0
        for fs, v in zip(self.terms, values, strict=True):
            if fs._left or not fs._shift_ok:  # type: ignore[attr-defined]
                return self.reference(*[_materialise(x) for x in values])
            if isinstance(v, kernels.Centred):
                lo_c, hi_c = v.code_range()
                vmax = v.abs_max(lo_c, hi_c)
                base = np.asarray(v.codes, dtype=np.int64)
                level, zero, cabs = int(v.level), int(v.zero), max(abs(lo_c), abs(hi_c))
            else:
                bounded = isinstance(v, kernels.Bounded)
                base = np.asarray(v.values if bounded else v, dtype=np.int64)
                level, zero = 1, 0
                vmax = -1
                if bounded:  # a proven bound passes the check exactly when it is small enough
                    vmax = int(v.bound)
                    if (vmax * fs._mmax).bit_length() + 1 > rules.MAX_PRODUCT_WIDTH:  # type: ignore[attr-defined]
                        vmax = -1
                if vmax < 0:
                    vmax = kernels.abs_max(base)
                cabs = vmax
            mmax = fs._mmax  # type: ignore[attr-defined]
            if (vmax * mmax).bit_length() + 1 > rules.MAX_PRODUCT_WIDTH:
                raise OverflowError(
                    f"rescale product exceeds {rules.MAX_PRODUCT_WIDTH} bits (|v| <= {vmax})"
                )
            total += fs.bound(vmax)
            hmax = kernels.abs_max(fs._half)  # type: ignore[attr-defined]
            if cabs * abs(level) * mmax + abs(zero) * mmax + hmax >= 2**62 and (
                    level, zero) != (1, 0):
                assert isinstance(v, kernels.Centred)
                base, level, zero, cabs = v.materialise(), 1, 0, vmax
            mult = fs.mult * level if level != 1 else fs.mult
            off = fs._half - zero * fs.mult if zero else fs._half  # type: ignore[attr-defined]
            prepared.append((fs, base, mult, np.asarray(off, dtype=np.int64),
                             cabs * abs(level) * mmax))
        k = self.frac_bits
        bias = self.bias
        total += (kernels.abs_max(bias) if bias is not None else 0) + ((1 << (k - 1)) if k else 0)
        if total >= 2**63:
            raise OverflowError(f"requantization sum may exceed int64 (bound {total})")

        lo, hi = self.target.grid_range
        zo = np.asarray(self.target.zero, dtype=np.int64)
        zo_scalar = zo.ndim == 0
        # n: everything added after the sum of the terms, before the final shift by k
        n = np.asarray(0 if bias is None else bias, dtype=np.int64)
        if k:
            n = n + (1 << (k - 1))
        if zo_scalar:
            n = n + (int(zo) << k)
        nmax = kernels.abs_max(n)
        if jit.enabled() and len(prepared) <= jit.MAX_TERMS:
            done = self._compiled(prepared, k, zo, lo, hi)
            if done is not None:
                return done

        fs0, base0, mult0, off0, pmag0 = prepared[0]
        s0 = np.asarray(fs0.shift, dtype=np.int64)
        smax0 = int(s0.max(initial=0))
        fold = (
            len(prepared) == 1
            and np.prod(np.broadcast_shapes(n.shape, s0.shape), dtype=np.int64)
            <= max(n.size, s0.size)
            and smax0 + k <= rules.MAX_SHIFT
            and smax0 < 63
            and pmag0 + kernels.abs_max(off0) + (nmax << smax0) < 2**63
        )
        if fold:
            off = off0 + n * np.left_shift(np.int64(1), s0)  # n * 2**s0, bounded above
            sh: np.ndarray | int = s0 + k
            cab = pmag0 // max(kernels.abs_max(np.asarray(mult0)), 1)  # >= max |base0|
            uni = kernels.uniform_shift(mult0, off, s0, cab)
            if uni is not None:
                mult0, off, sh = uni[0], uni[1], uni[2] + k
            blocked = self._fold_blocked(base0, mult0, off, sh, zo, lo, hi)
            if blocked is not None:
                return blocked
            t = np.multiply(base0, mult0)
            t = _iadd(t, off)
            np.right_shift(t, sh, out=t)
        else:
            t = np.multiply(base0, mult0)
            fold_n = (
                np.prod(np.broadcast_shapes(n.shape, s0.shape), dtype=np.int64)
                <= max(n.size, s0.size)
                and smax0 < 63
                and pmag0 + kernels.abs_max(off0) + (nmax << smax0) < 2**63
            )
            if fold_n:  # floor(y / 2**s0) + n = floor((y + n 2**s0) / 2**s0)
                t = _iadd(t, off0 + n * np.left_shift(np.int64(1), s0))
            else:
                t = _iadd(t, off0)
            np.right_shift(t, s0, out=t)
            ws: kernels.Workspace = self._ws  # type: ignore[attr-defined]
            for fs, base, mult, off_j, _ in prepared[1:]:
                shape = np.broadcast_shapes(base.shape, np.shape(mult))
                u = ws.get("term", shape, np.int64)
                np.multiply(base, mult, out=u)
                np.add(u, off_j, out=u)
                np.right_shift(u, fs.shift, out=u)
                t = _iadd(t, u)
            if not fold_n and (n.ndim or int(n)):
                t = _iadd(t, n)
            if k:
                np.right_shift(t, k, out=t)
        if not zo_scalar:
            t = _iadd(t, zo)
        if self.relu:  # ReLU before the rounding = clamp at max(lo, z) after it
            lo_eff: int | np.ndarray = max(lo, int(zo)) if zo_scalar else np.maximum(lo, zo)
        else:
            lo_eff = lo
        if np.ndim(lo_eff) == 0 and int(lo_eff) <= hi:
            np.clip(t, int(lo_eff), hi, out=t)
        else:
            np.maximum(t, lo_eff, out=t)
            np.minimum(t, hi, out=t)
        table = self._snap_table  # type: ignore[attr-defined]
        if table is not None:
            return kernels.snap_clamped(t, table, lo)
        return self.target.snap(t)

    def _compiled(self, prepared: list[Any], k: int, zo: np.ndarray, lo: int, hi: int
                  ) -> np.ndarray | None:
        """The requantization in one compiled pass (:func:`jit.requant`) into a recycled result
        array: ``clamp((((sum_t (b_t m_t + o_t) >> s_t) + n) >> k) + z, lo', hi)`` with
        ``n = bias + 2**(k-1)``, ``lo' = max(lo, z)`` under ReLU (the unfolded steps of
        :meth:`_fused`, whose bounds the caller has checked: every product below
        ``2**MAX_PRODUCT_WIDTH``, every folded offset below ``2**62``, the sum below ``2**63``),
        then the snap. ``None`` when an operand has no compiled form (the numpy path runs)."""
        base0 = prepared[0][1]
        if base0.ndim != 2 or base0.shape[0] < 2:
            return None
        rows, cols = base0.shape
        terms = []
        for fs, base, mult, off, _ in prepared:
            t = tuple(jit.operand(x, rows, cols) for x in (base, mult, off, fs.shift))
            if any(x is None for x in t) or not (isinstance(t[0], np.ndarray) and t[0].ndim == 2):
                return None
            terms.append(t)
        n = np.asarray(0 if self.bias is None else self.bias, dtype=np.int64)
        if k:
            n = n + (1 << (k - 1))
        lo_eff: Any = lo
        if self.relu:
            lo_eff = max(lo, int(zo)) if zo.ndim == 0 else np.maximum(lo, zo)
        tail = [jit.operand(x, rows, cols) for x in (n, zo, lo_eff)]
        if any(x is None for x in tail):
            return None
        # one form for every multiplier, offset, shift and the tail: one compiled loop each
        flat = jit.unify([x for t in terms for x in t[1:]] + tail, rows, cols)
        if flat is None:
            return None
        terms = [(t[0], *flat[3 * i:3 * i + 3]) for i, t in enumerate(terms)]
        ops = flat[-3:]
        pool: kernels.ResultPool = self._pool  # type: ignore[attr-defined]
        res = pool.get((rows, cols), np.int64)
        table = self._snap_table  # type: ignore[attr-defined]
        if not self.target.truncated:
            return jit.requant(terms, ops[0], k, ops[1], ops[2], hi, res)
        if table is None:
            return None  # target.snap raises its own error on the numpy path
        grid = jit.requant(terms, ops[0], k, ops[1], ops[2], hi,
                           self._ws.get("fold", (rows, cols), np.int64))  # type: ignore[attr-defined]
        if lo:
            np.subtract(grid, lo, out=grid)
        return np.take(table, grid, out=res)

    def _fold_blocked(self, base: np.ndarray, mult: Any, off: Any, sh: Any, zo: np.ndarray,
                      lo: int, hi: int) -> np.ndarray | None:
        """The folded one-term requantization ``clamp((base * mult + off) >> sh [+ zo])`` (then
        the snap), block of rows by block of rows (:func:`kernels.row_blocks`) so that each
        block's steps run in cache, into a recycled result array (:class:`kernels.ResultPool`).
        The same integer operations as the unblocked path, element for element. ``None`` when
        the operands do not have the plain ``[rows, features]`` form (the caller runs the
        unblocked path)."""
        if base.ndim != 2 or base.shape[0] < 2:
            return None
        rows = base.shape[0]
        ops = [np.asarray(mult), np.asarray(off), np.asarray(sh), zo]
        if any(o.ndim > 2 for o in ops) or np.broadcast_shapes(
                base.shape, *(o.shape for o in ops)) != base.shape:
            return None
        lo_eff: int | np.ndarray = lo
        zo_scalar = zo.ndim == 0
        if self.relu:
            lo_eff = max(lo, int(zo)) if zo_scalar else np.maximum(lo, zo)
        lo_arr = np.asarray(lo_eff)
        if lo_arr.ndim > 2:
            return None

        def part(a: np.ndarray, r0: int, r1: int) -> np.ndarray:
            return a[r0:r1] if a.ndim == 2 and a.shape[0] == rows else a

        table = self._snap_table  # type: ignore[attr-defined]
        snap_plain = not self.target.truncated
        if not snap_plain and table is None:
            return None  # target.snap raises its own error on the unblocked path
        pool: kernels.ResultPool = self._pool  # type: ignore[attr-defined]
        res = pool.get(base.shape, np.int64)
        scratch = None if snap_plain else self._ws.get("fold", base.shape, np.int64)  # type: ignore[attr-defined]
        m, o, s_, z = ops
        clip_scalar = lo_arr.ndim == 0 and int(lo_arr) <= hi
        for r0, r1 in kernels.row_blocks(rows, base.shape[1]):
            tb = res[r0:r1] if scratch is None else scratch[r0:r1]
            np.multiply(base[r0:r1], part(m, r0, r1), out=tb)
            np.add(tb, part(o, r0, r1), out=tb)
            np.right_shift(tb, part(s_, r0, r1), out=tb)
            if not zo_scalar:
                np.add(tb, part(z, r0, r1), out=tb)
            if clip_scalar:
                np.clip(tb, int(lo_arr), hi, out=tb)
            else:
                np.maximum(tb, part(lo_arr, r0, r1), out=tb)
                np.minimum(tb, hi, out=tb)
            if scratch is not None:  # the BT snap by lookup, clamped codes lo..hi
                if lo:
                    np.subtract(tb, lo, out=tb)
                np.take(table, tb, out=res[r0:r1])
        return res

    def reference(self, *values: np.ndarray) -> np.ndarray:
        """The straightforward definition of :meth:`__call__` (new arrays at every step)."""
        if len(values) != len(self.terms):
            raise ValueError(f"expected {len(self.terms)} inputs, got {len(values)}")
        t = self.terms[0].reference(values[0])
        for term, v in zip(self.terms[1:], values[1:], strict=True):
            t = t + term.reference(v)
        if self.bias is not None:
            t = t + self.bias
        if self.relu:
            t = np.maximum(t, 0)
        if self.frac_bits:
            t = rules.round_shift(t, self.frac_bits)
        lo, hi = self.target.grid_range
        return self.target.snap(np.clip(t + self.target.zero, lo, hi))


def _materialise(v: Any) -> np.ndarray:
    if isinstance(v, kernels.Centred):
        return v.materialise()
    return v.values if isinstance(v, kernels.Bounded) else v


def _iadd(t: np.ndarray, x: np.ndarray | int) -> np.ndarray:
    """``t + x``, in place when the broadcast keeps ``t``'s shape (``t`` is owned)."""
    if np.broadcast_shapes(t.shape, np.shape(x)) == t.shape:
        return np.add(t, x, out=t)
    return t + x


#: Partial sums below this are exact in float32 (24-bit significand).
FLOAT32_EXACT = 2**24
#: Partial sums below this are exact in float64 (53-bit significand).
FLOAT64_EXACT = 2**53


def int_matmul(x_centred: Any, w_codes: np.ndarray, out: np.ndarray | None = None) -> Any:
    """Exact ``x @ w.T`` for integer ``x`` ([N, K], dense int64, scipy sparse, or
    :class:`~model.integer.kernels.Centred` codes) and signed weight codes ``w`` ([C, K]), as
    a new int64 array; with ``out`` (int64 ``[N, C]``), written there and returned as
    :class:`~model.integer.kernels.Bounded` (``out`` with the proven bound of ``|x @ w.T|``,
    for a requantization to check instead of scanning it).

    Computed in floating point, which is exact while every product and partial sum is an
    integer below the significand's range, whatever the summation order: the bound
    ``max|x| * max|w| * K`` (``K`` = the longest sparse row) is checked from the operands before
    multiplying. Below ``2**24`` the product runs in float32, below ``2**53`` in float64
    (PyTorch's CPU GEMM, so the thread count is ``torch.set_num_threads``; float32 only while
    ``torch.get_float32_matmul_precision()`` is ``"highest"``); beyond, it is an
    :class:`OverflowError`. Same result as :func:`int_matmul_reference`.

    Centred codes ``x = L c - z`` (``[N, K]``, ``C <= K`` outputs or a level step ``L != 1``)
    are not centred first: ``x @ w.T = c @ (L w).T + b`` with the per-output bias
    ``b_j = -z * sum_k w_jk`` (an exact integer identity), added to the float product. Every
    partial sum of ``c @ (L w).T`` is at most ``max|c| * max|L w| * K`` in magnitude, and the
    sum with ``b`` is the result (at most the bound above), so when those and ``max|b|`` are
    below the range of the type chosen above every step is exact; otherwise the centred
    values are formed in float first, where ``c``, ``L c`` and ``z`` are exact too (float64,
    or int64 for codes beyond ``2**53``). The codes' range is read off their float32 copy
    (one ``aminmax`` over half the bytes) when it lies inside ``+-2**24``: rounding is
    monotone and ``2**24`` is a float32, so no code outside can round inside, and inside the
    copy is exact; otherwise the int64 codes are scanned. The dense product runs into reused
    float buffers (``torch.mm``); ``out``'s bound is ``max|x| max|w| K`` either way.
    """
    import scipy.sparse as sp
    import torch

    if kernels.use_reference():
        xr = x_centred.materialise() if isinstance(x_centred, kernels.Centred) else x_centred
        return int_matmul_reference(xr, w_codes)
    w = np.asarray(w_codes, dtype=np.int64)
    k = w.shape[1]
    wmax = kernels.abs_max(w)
    if sp.issparse(x_centred):
        xs = x_centred.tocsr()
        xmax = kernels.abs_max(xs.data) if xs.nnz else 0
        rowmax = int(np.diff(xs.indptr).max(initial=0))
        bound = xmax * wmax * max(rowmax, 1)
        if bound >= FLOAT64_EXACT:
            raise OverflowError("integer matmul partial sums may exceed 2**53")
        ft = np.float32 if bound < FLOAT32_EXACT else np.float64
        res = np.asarray(xs.astype(ft) @ w.T.astype(ft))
    else:
        fp32_ok = torch.get_float32_matmul_precision() == "highest"
        centred = isinstance(x_centred, kernels.Centred)
        have_f32 = False  # xf already holds the codes, exactly, in float32
        if centred:
            src = np.asarray(x_centred.codes, dtype=np.int64)
            if x_centred.known_range() is None and fp32_ok and src.size:
                # the float32 copy is needed anyway, and its min and max are the codes' own
                # when both are inside +-2**24: rounding is monotone and 2**24 is a float32,
                # so no code outside (-2**24, 2**24) can round inside; inside, it is exact
                xf = _MATMUL_WS.get("x", src.shape, np.float32)
                fmin, fmax = np.inf, -np.inf
                for r0, r1 in kernels.row_blocks(src.shape[0], src.shape[1]):  # in cache
                    np.copyto(xf[r0:r1], src[r0:r1], casting="unsafe")
                    bmin, bmax = torch.from_numpy(xf[r0:r1]).aminmax()
                    fmin, fmax = min(fmin, float(bmin)), max(fmax, float(bmax))
                if -FLOAT32_EXACT < fmin and fmax < FLOAT32_EXACT:
                    x_centred.remember_range(int(fmin), int(fmax))
                    have_f32 = True
            lo, hi = x_centred.code_range()
            xmax = x_centred.abs_max(lo, hi)
        else:
            src = np.asarray(x_centred, dtype=np.int64)
            xmax = kernels.abs_max(src)
        shape = src.shape
        bound = xmax * wmax * max(k, 1)
        if bound >= FLOAT64_EXACT:
            raise OverflowError("integer matmul partial sums may exceed 2**53")
        wt, bias = w, None
        lvl, zero = (int(x_centred.level), int(x_centred.zero)) if centred else (1, 0)
        # fold the centring into the product when that is no more work (C <= K or a level
        # step to multiply by) and every integer involved is provably exact
        fold = (centred and (lvl, zero) != (1, 0) and (w.shape[0] <= k or lvl != 1)
                and abs(lvl) * wmax < FLOAT64_EXACT and abs(zero) * wmax * k < FLOAT64_EXACT)
        ft = np.float32 if bound < FLOAT32_EXACT and fp32_ok else np.float64
        if fold:  # x @ w.T = c @ (L w).T + b with b_j = -z sum_k w_jk (int64, exact)
            wt = w * lvl
            b = np.sum(w, axis=1) * -zero
            # partial sums of c @ (L w).T are at most pbound; adding b gives the result
            # (|.| <= bound), so with pbound, |b| and bound below the significand range every
            # step is exact
            cabs, wlmax = max(abs(lo), abs(hi)), kernels.abs_max(wt)
            pbound = cabs * wlmax * max(k, 1)
            fmax = max(pbound, kernels.abs_max(b), bound, cabs, wlmax)  # operands exact too
            fold = fmax < (FLOAT32_EXACT if ft is np.float32 else FLOAT64_EXACT)
            wt, bias = (wt, b) if fold else (w, None)
        if centred and not fold:  # L c - z formed in ft: c, L c and z must be exact there too
            big = max(max(abs(lo), abs(hi)) * abs(lvl), abs(zero))
            if ft is np.float32 and big >= FLOAT32_EXACT:
                ft = np.float64
            if big >= FLOAT64_EXACT:  # centre in int64 (|L c - z| <= xmax < 2**53: exact)
                src, lvl, zero = x_centred.materialise(), 1, 0
        xf = _MATMUL_WS.get("x", shape, ft)
        if not (have_f32 and ft is np.float32 and src is x_centred.codes):
            np.copyto(xf, src, casting="unsafe")  # exact: every value is below ft's range
        if centred and not fold:  # level * c - zero, exact in ft (every step below its range)
            if lvl != 1:
                np.multiply(xf, lvl, out=xf)
            if zero:
                np.subtract(xf, zero, out=xf)
        c_out = w.shape[0]
        keep = out is not None and out.shape == (shape[0], c_out) and out.dtype == np.int64
        dst = out if keep else np.empty((shape[0], c_out), dtype=np.int64)
        assert dst is not None
        xt, wtt = torch.from_numpy(xf), torch.from_numpy(wt.astype(ft)).t()
        bf = None if bias is None else bias.astype(ft)
        blocks = list(kernels.row_blocks(shape[0], max(k, c_out)))
        res = _MATMUL_WS.get("res", (blocks[0][1] if blocks else 0, c_out), ft)
        rt = torch.from_numpy(res)
        for r0, r1 in blocks:  # product, bias and int64 conversion of a block in cache
            rb = rt[: r1 - r0]
            torch.mm(xt[r0:r1], wtt, out=rb)
            if bf is not None:
                np.add(res[: r1 - r0], bf, out=res[: r1 - r0])
            torch.from_numpy(dst[r0:r1]).copy_(rb)  # exact: integers below 2**53
        return kernels.Bounded(dst, bound) if keep else dst
    if out is not None and out.shape == res.shape and out.dtype == np.int64:
        np.copyto(out, res, casting="unsafe")  # exact: integers below 2**53
        return kernels.Bounded(out, bound)
    return res.astype(np.int64)


#: Reused float buffers of :func:`int_matmul` (per thread).
_MATMUL_WS = kernels.Workspace()


def int_matmul_reference(x_centred: Any, w_codes: np.ndarray) -> np.ndarray:
    """The straightforward definition of :func:`int_matmul` (float64 throughout)."""
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
    "int_matmul_reference",
]
