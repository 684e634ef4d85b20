"""Vectorised kernels of the integer-only model: the rules of :mod:`model.integer.rules` on
whole arrays, with the same results, the same errors and no silent wraparound.

The integer model is the exact reference for the RTL, so every kernel here computes bit for bit
what the straightforward definitions compute (:meth:`model.golden.stage.AggregationStage.compute`,
:func:`model.integer.rules.requantize`, the reference methods kept in
:mod:`model.integer.fixed`); ``tests/model/integer/test_kernels.py`` pins them on random
inputs. What makes them fast:

* the CSR of an aggregation is built once per graph (:class:`CSRSum`), with 32-bit indices;
* sums run in 16-bit accumulators where that provably holds them (the bound
  ``row_length * max |code|`` is computed before summing, as the RTL sums in ``acc_width``
  bits): rows too long for 16 bits are summed as chunks that fit, and the chunk sums are added
  in int64; a bound beyond int64 raises :class:`OverflowError`;
* everything after the sum is int64 arithmetic done in place on arrays the kernel owns,
  overflow checked from ``max |x|`` (one min and one max reduction, or a proven bound such as a
  matmul's ``max|x| max|w| K``) against the operands' largest multipliers, never per element;
  the zero-point correction, the rounding offset, the output zero point, a bias and ReLU are
  folded into one multiply, one add, one shift and one clamp by exact integer identities
  (each folded term bounded below ``2**63`` first, else the steps run unfolded);
* the snap of bit-truncated outputs is a table lookup over the clamped grid codes;
* the code range that proves the narrow sum is one reduction when the codes have a known
  bound (``max`` of the codes viewed as ``uint64`` is at most ``2**bits - 1`` exactly when
  every code is in ``0..2**bits - 1``), not a min and a max;
* large scratch arrays are reused between passes (:class:`Workspace`, per thread), and an
  aggregation's output array is recycled once nothing references the previous one
  (:class:`ResultPool`: a fresh 32 MiB array costs its page faults, several milliseconds);
* the integer sums stay integer sums: a ``uint16`` CSR product is about twice as fast as the
  float32 sparse product FP32 inference runs on the same graph (measured on R-MAT 10^6 edges),
  so an exact float32 sum (fine below ``2**24``) would be slower, not faster;
* once the bounds above are proven, the requantization of up to four terms and the fused
  aggregation (row sums, then the per-row requantization) run as compiled loops
  (:mod:`model.integer.jit`, Numba), one pass over the output each, with the same int64
  operations; the numpy steps here remain the path without Numba (``jit.disabled()``,
  ``QGNN_NO_JIT=1``) and for operand shapes the loops do not take, and both are tested.

:func:`reference_path` switches the integer model back to the straightforward definitions (for
tests and for the benchmark's cross-check).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import jit, rules

_REFERENCE: contextvars.ContextVar[bool] = contextvars.ContextVar("qgnn_integer_reference",
                                                                  default=False)


@contextlib.contextmanager
def reference_path() -> Iterator[None]:
    """Within this block the integer model uses the straightforward reference definitions
    (int64 scipy sum, :func:`rules.requantize`, the ``reference`` methods of
    :mod:`model.integer.fixed`) instead of the vectorised kernels."""
    token = _REFERENCE.set(True)
    try:
        yield
    finally:
        _REFERENCE.reset(token)


def use_reference() -> bool:
    """True inside :func:`reference_path`."""
    return _REFERENCE.get()


def abs_max(a: np.ndarray) -> int:
    """``max |a|`` as a Python int (0 for an empty array), from one min and one max reduction
    (no ``|a|`` temporary, no int64 overflow for ``-2**63``)."""
    if a.size == 0:
        return 0
    return max(int(a.max()), -int(a.min()))


def check_shifts(shift: np.ndarray | int) -> None:
    """Raise :class:`ValueError` unless every shift is in ``0..rules.MAX_SHIFT`` (the message of
    :func:`rules.round_shift`)."""
    s = np.asarray(shift)
    if s.size and (int(s.min()) < 0 or int(s.max()) > rules.MAX_SHIFT):
        raise ValueError(f"shifts must be in 0..{rules.MAX_SHIFT}")


def half_of(shift: np.ndarray | int) -> np.ndarray:
    """``2**(s - 1)`` for ``s > 0``, else 0 (int64, shaped like ``shift``): the rounding offset
    of :func:`rules.round_shift`."""
    s = np.asarray(shift, dtype=np.int64)
    return np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0).astype(np.int64)


def round_shift_inplace(p: np.ndarray, shift: np.ndarray | int,
                        half: np.ndarray | int | None = None) -> np.ndarray:
    """``p <- floor(p / 2**shift + 1/2)`` in place (int64 ``p``; shifts broadcast against it and
    are in ``0..MAX_SHIFT``; the caller guarantees ``|p| < 2**MAX_PRODUCT_WIDTH`` so
    ``p + 2**(s-1)`` fits int64, as :func:`rules.round_shift` does). ``half`` is
    :func:`half_of(shift) <half_of>` when the caller has it cached."""
    if half is None:
        check_shifts(shift)
        half = half_of(shift)
    np.add(p, half, out=p)
    np.right_shift(p, shift, out=p)
    return p


def snap_table(thresholds: tuple[int, ...], lo: int, hi: int) -> np.ndarray:
    """Lookup table ``T[g - lo] = sum_j [g >= t_j]`` for grid codes ``g`` in ``lo..hi`` (int64):
    :func:`rules.snap` of every code the clamp can leave."""
    return rules.snap(np.arange(lo, hi + 1, dtype=np.int64), thresholds)


def snap_clamped(g: np.ndarray, table: np.ndarray, lo: int) -> np.ndarray:
    """:func:`rules.snap` of grid codes already clamped to ``lo..lo + len(table) - 1``, by
    lookup (a new int64 array)."""
    if lo:
        g = g - lo
    return np.take(table, g)


def requantize_inplace(
    corrected: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    zero_point_out: int,
    out_bits: int,
) -> np.ndarray:
    """:func:`rules.requantize` computed in place on ``corrected`` (int64, owned by the caller):
    ``clamp(round_shift(c * M, s) + z_out, 0, 2**out_bits - 1)``. Same checks, same errors:
    negative multipliers, a product wider than ``MAX_PRODUCT_WIDTH`` bits, shifts outside
    ``0..MAX_SHIFT`` raise :class:`ValueError` before anything is computed."""
    c = corrected
    if c.dtype != np.int64:
        raise TypeError(f"corrected sums must be int64, got {c.dtype}")
    m = np.asarray(multiplier, dtype=np.int64)
    if m.size and int(m.min()) < 0:
        raise ValueError("requantization multipliers must be non-negative")
    cmax = abs_max(c)
    mmax = int(m.max(initial=0))
    if (cmax * mmax).bit_length() + 1 > rules.MAX_PRODUCT_WIDTH:
        raise ValueError(
            f"requantization product needs more than {rules.MAX_PRODUCT_WIDTH} bits "
            f"(|c| <= {cmax}, M <= {mmax})"
        )
    check_shifts(shift)
    np.multiply(c, m, out=c)
    round_shift_inplace(c, shift, half_of(shift))
    np.add(c, int(zero_point_out), out=c)
    np.clip(c, 0, (1 << out_bits) - 1, out=c)
    return c


def _acc_dtype(bound: int, unsigned: bool) -> type[np.integer]:
    """Narrowest accumulator type holding every partial sum of magnitude ``<= bound``."""
    if unsigned and bound <= np.iinfo(np.uint16).max:
        return np.uint16
    for dt in (np.int16, np.int32, np.int64):
        if bound <= np.iinfo(dt).max:
            return dt
    raise OverflowError(f"aggregation sums may reach {bound}, beyond int64")


try:  # the loop scipy's CSR @ dense runs, called with reused output buffers
    from scipy.sparse import _sparsetools

    _CSR_MATVECS = getattr(_sparsetools, "csr_matvecs", None)
except ImportError:  # pragma: no cover - depends on the scipy build
    _CSR_MATVECS = None


@dataclass
class _Plan:
    """How a :class:`CSRSum` sums codes of a given bound: one CSR product in ``dtype`` whose
    first ``num_rows`` output rows are the row sums; rows too long for ``dtype`` are empty
    there and split into chunks (output rows ``num_rows..``) that do fit, and their sums are
    the int64 sums of their chunks (``starts`` = first chunk of each of ``rows``)."""

    dtype: type
    matrix: sp.csr_matrix
    rows: np.ndarray | None = None
    starts: np.ndarray | None = None


class CSRSum:
    """``acc[i] = sum_{j in row i} codes[j]`` for one CSR, built once and reused.

    ``indptr``/``indices``: int64 CSR (rows are destinations, ``indices`` are source rows of the
    ``codes`` passed to :meth:`sum`, ``0..num_src - 1``).

    Sums are integer arithmetic only, in the narrowest type that provably holds them: with
    codes bounded by ``c``, every row of at most ``65535 // c`` terms (``32767 // c`` for signed
    codes) is summed in ``uint16``/``int16``; a longer row (power-law graphs) is summed as
    chunks of that many terms, whose sums are then added in int64. (A code too large for
    16 bits uses ``int32``/``int64`` accumulators; a bound beyond int64 raises
    :class:`OverflowError`.) The plan is computed once per code bound and cached.
    """

    def __init__(self, indptr: np.ndarray, indices: np.ndarray, num_src: int) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int64)
        self.num_src = int(num_src)
        self.num_rows = int(self.indptr.shape[0]) - 1
        self.row_lengths = np.diff(self.indptr)
        self.max_terms = int(self.row_lengths.max(initial=0))
        nnz = int(self.indices.shape[0])
        small = max(nnz, self.num_src, self.num_rows) < 2**31 - 1
        self._idx = np.int32 if small else np.int64
        self._plans: dict[tuple[int, bool], _Plan] = {}
        self._ws = Workspace()
        #: recycled output arrays of :func:`aggregate_requantize`
        self.results = ResultPool()
        #: use scipy's CSR loop directly (with reused buffers); False: the public ``A @ x``
        self.direct = _CSR_MATVECS is not None

    def _csr(self, indptr: np.ndarray, indices: np.ndarray, dt: type) -> sp.csr_matrix:
        a = sp.csr_matrix((np.ones(indices.shape[0], dtype=dt), indices.astype(self._idx),
                           indptr.astype(self._idx)),
                          shape=(int(indptr.shape[0]) - 1, self.num_src))
        if a.indices.dtype != a.indptr.dtype:  # scipy chose its own index types
            a.indptr = a.indptr.astype(a.indices.dtype)
        return a

    def _plan(self, cmax: int, unsigned: bool) -> _Plan:
        key = (cmax, unsigned)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        full = _acc_dtype(self.max_terms * cmax, unsigned)
        narrow = np.uint16 if unsigned else np.int16
        cap = int(np.iinfo(narrow).max) // cmax if cmax > 0 else 0
        if np.dtype(full).itemsize <= 2 or cap < 1:
            plan = _Plan(full, self._csr(self.indptr, self.indices, full))
        else:
            n = self.row_lengths
            long = n > cap
            rows = np.flatnonzero(long)
            chunks = -(-n[rows] // cap)  # chunks per long row
            # chunk lengths: cap each, the last one the remainder
            clen = np.full(int(chunks.sum()), cap, dtype=np.int64)
            ends = np.cumsum(chunks) - 1
            clen[ends] = n[rows] - (chunks - 1) * cap
            lengths = np.concatenate([np.where(long, 0, n), clen])
            indptr = np.concatenate([[0], np.cumsum(lengths)])
            keep_short = np.repeat(~long, n)
            indices = np.concatenate([self.indices[keep_short], self.indices[~keep_short]])
            starts = np.concatenate([[0], np.cumsum(chunks)[:-1]]).astype(np.int64)
            plan = _Plan(narrow, self._csr(indptr, indices, narrow), rows, starts)
        self._plans[key] = plan
        return plan

    def _check(self, x: np.ndarray) -> None:
        if x.ndim != 2 or x.shape[0] != self.num_src:
            raise ValueError(f"codes must be [{self.num_src}, F], got {list(x.shape)}")

    def sum_parts(
        self, codes: np.ndarray, code_max: int | None = None
    ) -> tuple[list[tuple[np.ndarray | None, np.ndarray]], int, int]:
        """``(parts, code_min, code_max)``: exact sums as ``(rows, acc)`` pairs, the first in a
        buffer reused by the next call. The first pair has ``rows = None`` and covers all rows;
        a second pair, when present, holds the int64 sums of the long ``rows`` (which the first
        leaves at 0). ``code_max`` (e.g. ``2**bits - 1``) fixes the plan when the codes are
        within ``0..code_max``."""
        x = np.asarray(codes, dtype=np.int64)
        self._check(x)
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        return self._sum(x, lo, hi, code_max), lo, hi

    def sum_bounded(
        self, codes: np.ndarray, code_max: int | None = None
    ) -> tuple[list[tuple[np.ndarray | None, np.ndarray]], int]:
        """``(parts, max |code|)``: the sums of :meth:`sum_parts` and the exact largest code
        magnitude, from one reduction when every code is in ``0..code_max``: the codes viewed as
        ``uint64`` (negative ones become ``>= 2**63``) have a maximum ``<= code_max`` exactly
        then, and that maximum is the largest code. Otherwise the min and the max are scanned,
        as in :meth:`sum_parts`. Same plan, same sums."""
        x, lo, hi = self.code_bound(codes, code_max)
        return self._sum(x, lo, hi, code_max), max(hi, -lo)

    def code_bound(self, codes: np.ndarray, code_max: int | None = None
                   ) -> tuple[np.ndarray, int, int]:
        """``(codes as int64, lo, hi)`` after the shape check: ``hi`` the exact largest code
        and ``lo`` a lower bound of the codes that is ``>= 0`` when they all are and the exact
        smallest one otherwise; ``max(hi, -lo)`` is the exact ``max |code|``. One reduction
        when every code is in ``0..code_max`` (the codes viewed as ``uint64`` have a maximum
        ``<= code_max`` exactly then, and it is the largest code; ``lo`` is then 0), else a min
        and a max."""
        x = np.asarray(codes, dtype=np.int64)
        self._check(x)
        if x.size and code_max is not None:
            top = int(x.view(np.uint64).max())
            if top <= code_max:  # every code in 0..code_max: min >= 0, max = top
                return x, 0, top
        lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
        return x, lo, hi

    def compiled_index(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr, indices)`` in the index type of the CSR (32-bit when it fits), for the
        compiled loops of :mod:`model.integer.jit` (built once)."""
        idx = self.__dict__.get("_jit_index")
        if idx is None:
            idx = (self.indptr.astype(self._idx), self.indices.astype(self._idx))
            self.__dict__["_jit_index"] = idx
        return idx

    def narrow_codes(self, x: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Int64 codes ``x`` in ``lo..hi`` copied into a reused buffer of the narrowest type
        that holds every one exactly (``uint8`` .. ``int64``): the compiled aggregation
        gathers fewer bytes per term."""
        for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
            info = np.iinfo(dt)
            if info.min <= lo and hi <= info.max:
                buf = self._ws.get("jit_codes", x.shape, dt)
                np.copyto(buf, x, casting="unsafe")  # exact: every code fits the type
                return buf
        return np.ascontiguousarray(x)

    def _sum(self, x: np.ndarray, lo: int, hi: int, code_max: int | None
             ) -> list[tuple[np.ndarray | None, np.ndarray]]:
        """The sums of int64 codes ``x`` checked to lie in ``lo..hi`` (``lo`` may be any lower
        bound ``<= min`` that is ``>= 0`` when the codes are; ``hi`` is the exact max)."""
        f = x.shape[1]
        if x.size == 0 or self.max_terms == 0:
            return [(None, np.zeros((self.num_rows, f), dtype=np.int64))]
        unsigned = lo >= 0
        cmax = max(hi, -lo)
        if code_max is not None and unsigned and hi <= code_max:
            cmax = int(code_max)
        plan = self._plan(cmax, unsigned)
        xb = self._ws.get("codes", x.shape, plan.dtype)
        np.copyto(xb, x, casting="unsafe")  # exact: every code fits the type (|code| <= cmax)
        a = plan.matrix
        if self.direct:
            y = self._ws.get("acc", (a.shape[0], f), plan.dtype)
            y.fill(0)
            assert _CSR_MATVECS is not None
            _CSR_MATVECS(a.shape[0], self.num_src, f, a.indptr, a.indices, a.data,
                         xb.ravel(), y.ravel())
        else:
            y = np.asarray(a @ xb)
        out: list[tuple[np.ndarray | None, np.ndarray]] = [(None, y[: self.num_rows])]
        if plan.rows is not None and plan.rows.size:
            assert plan.starts is not None
            out.append((plan.rows, np.add.reduceat(y[self.num_rows:], plan.starts, axis=0,
                                                   dtype=np.int64)))
        return out

    def sum(self, codes: np.ndarray) -> np.ndarray:
        """Exact sums (int64 ``[N, F]``, a new array) of int64 codes ``[num_src, F]``."""
        parts, _, _ = self.sum_parts(codes)
        acc = parts[0][1].astype(np.int64)
        for rows, y in parts[1:]:
            acc[rows] = y
        return acc

    def corrected(self, codes: np.ndarray, in_level: int, zero_point_in: int) -> np.ndarray:
        """``in_level * acc - n_i * zero_point_in`` (int64, a new array the caller owns)."""
        acc = self.sum(codes)
        if in_level != 1:
            np.multiply(acc, int(in_level), out=acc)
        if zero_point_in:
            np.subtract(acc, (self.row_lengths * int(zero_point_in))[:, None], out=acc)
        return acc


def aggregate_requantize(
    csr: CSRSum,
    codes: np.ndarray,
    in_level: int,
    zero_point_in: int,
    multiplier: np.ndarray,
    shift: np.ndarray,
    zero_point_out: int,
    grid_bits: int,
    snap: np.ndarray | None = None,
    out_offset: int = 0,
    code_max: int | None = None,
) -> np.ndarray:
    """Output codes of an aggregation stage (int64 ``[N, F]``, a new array): the sum over each
    row, the correction ``c = in_level * acc - n z_in``, :func:`rules.requantize` with the
    per-row ``multiplier``/``shift`` onto ``grid_bits`` bits, the snap (lookup ``snap`` over
    ``0..2**grid_bits - 1``) of a BT output, minus ``out_offset`` (the offset binary of
    signed codes). ``code_max`` is the input code bound (``2**bits - 1``) that fixes the row
    split of :meth:`CSRSum.sum_parts`.

    Exactly :meth:`AggregationStage.requantize` of :meth:`AggregationStage.accumulate`; the
    caller checks the row lengths against the accumulator width. Same errors (negative
    multiplier, product wider than ``MAX_PRODUCT_WIDTH``, shift out of range). Fused: with
    ``|c| <= in_level * max_terms * max|code| + max_terms * |z_in|`` safely inside the product
    width, ``((c * M + 2**(s-1)) >> s) + z_out`` is computed as
    ``(acc * (in_level M) + (2**(s-1) - n z_in M + z_out 2**s)) >> s`` straight from the
    narrow accumulators: one multiply, one add, one shift and one clamp (every term bounded
    below ``2**63`` first; otherwise the unfused steps run, with the exact ``max |c|`` check).
    """
    m = np.asarray(multiplier, dtype=np.int64).reshape(-1)
    s = np.asarray(shift, dtype=np.int64).reshape(-1)
    if m.size and int(m.min()) < 0:
        raise ValueError("requantization multipliers must be non-negative")
    x, code_lo, code_hi = csr.code_bound(codes, code_max)
    cabs = max(code_hi, -code_lo)  # max |code|, exact
    lvl, z, zo = int(in_level), int(zero_point_in), int(zero_point_out)
    nmax = csr.max_terms
    cbound = lvl * nmax * cabs + nmax * abs(z)
    mmax = int(m.max(initial=0))
    smax = int(s.max(initial=0))
    z_fold = zo - (0 if snap is not None else int(out_offset))
    hmax = (1 << (smax - 1)) if smax > 0 else 0
    fused = (
        (cbound * mmax).bit_length() + 1 <= rules.MAX_PRODUCT_WIDTH
        and smax < 63
        and lvl * nmax * cabs * mmax + nmax * abs(z) * mmax + hmax
        + (abs(z_fold) << smax) < 2**63
    )
    gmax = (1 << grid_bits) - 1
    if not fused:
        parts = csr._sum(x, code_lo, code_hi, code_max)  # the unfused steps, with the exact max |c| check
        c = parts[0][1].astype(np.int64)
        for rows, part in parts[1:]:
            c[rows] = part
        if lvl != 1:
            np.multiply(c, lvl, out=c)
        if z:
            np.subtract(c, (csr.row_lengths * z)[:, None], out=c)
        y = requantize_inplace(c, m[:, None], s[:, None], zo, grid_bits)
        if snap is not None:
            y = snap_clamped(y, snap, 0)
        if out_offset:
            np.subtract(y, int(out_offset), out=y)
        return y
    check_shifts(s)
    lm = (m * lvl)[:, None]
    off = (half_of(s) - csr.row_lengths * z * m + z_fold * np.left_shift(np.int64(1), s))[:, None]
    sh: np.ndarray | int = s[:, None]
    amax = lvl * nmax * cabs  # >= max |acc * in_level|
    u = uniform_shift(m[:, None], off, s[:, None], amax)
    if u is not None:
        lm, off, sh = u[0] * lvl, u[1], u[2]
    if jit.enabled() and x.size and csr.max_terms:
        return _aggregate_compiled(csr, x, code_lo, code_hi, lm, off, sh, grid_bits, snap,
                                   int(out_offset))
    parts = csr._sum(x, code_lo, code_hi, code_max)
    acc = parts[0][1]
    # the result array: recycled from an earlier call once nothing references it (a BT
    # output is computed in scratch and snapped into it)
    take = (snap is not None and snap.ndim == 1 and snap.dtype == np.int64
            and snap.shape[0] > gmax)  # every clamped index valid: snapped into the result
    res = csr.results.get(acc.shape, np.int64)
    y = res if not take else csr._ws.get("requant", acc.shape, np.int64)
    per_row_shift = np.ndim(sh) > 0
    for r0, r1 in row_blocks(acc.shape[0], acc.shape[1]):  # each block's steps run in cache
        yb = y[r0:r1]
        np.multiply(acc[r0:r1], lm[r0:r1], out=yb, dtype=np.int64)
        np.add(yb, off[r0:r1], out=yb)
        np.right_shift(yb, sh[r0:r1] if per_row_shift else sh, out=yb)  # type: ignore[index]
        if snap is None:
            np.clip(yb, -int(out_offset), gmax - int(out_offset), out=yb)
    for rows, part in parts[1:]:  # the long rows, summed in chunks
        yl = np.multiply(part, lm[rows], dtype=np.int64)
        np.add(yl, off[rows], out=yl)
        np.right_shift(yl, sh if u is not None else s[rows, None], out=yl)
        if snap is None:
            np.clip(yl, -int(out_offset), gmax - int(out_offset), out=yl)
        y[rows] = yl
    if snap is not None:
        np.clip(y, 0, gmax, out=y)
        if take:  # snap_clamped into the result (the indices are in range: "clip" is a no-op)
            np.take(snap, y, out=res, mode="clip")
            y = res
        else:
            y = snap_clamped(y, snap, 0)
        if out_offset:
            np.subtract(y, int(out_offset), out=y)
        return y
    return y


def _aggregate_compiled(csr: CSRSum, x: np.ndarray, lo: int, hi: int, lm: np.ndarray,
                        off: np.ndarray, sh: np.ndarray | int, grid_bits: int,
                        snap: np.ndarray | None, out_offset: int) -> np.ndarray:
    """The fused steps of :func:`aggregate_requantize` in one compiled pass
    (:func:`jit.csr_requant`: each row's sum in int64, then ``(acc * lm + off) >> sh`` and the
    clamp), into a recycled result array; the caller has bounded every term below ``2**63``
    (the condition of the fused path). Then the snap of a BT output by lookup."""
    rows, f = csr.num_rows, x.shape[1]
    indptr, indices = csr.compiled_index()
    ops = [jit.operand(v, rows, 1) for v in (lm, off, sh)]
    gmax = (1 << grid_bits) - 1
    codes = csr.narrow_codes(x, lo, hi)
    res = csr.results.get((rows, f), np.int64)
    bound = csr.max_terms * max(hi, -lo)  # >= every partial row sum
    lm_, off_, sh_ = ops
    if snap is None:
        return jit.csr_requant(indptr, indices, codes, lm_, off_, sh_, -out_offset,
                               gmax - out_offset, res, bound)
    grid = jit.csr_requant(indptr, indices, codes, lm_, off_, sh_, 0, gmax,
                           csr._ws.get("requant", (rows, f), np.int64), bound)
    if snap.ndim == 1 and snap.dtype == np.int64 and snap.shape[0] > gmax:
        np.take(snap, grid, out=res, mode="clip")  # every index in range: "clip" is a no-op
        y = res
    else:
        y = snap_clamped(grid, snap, 0)
    if out_offset:
        np.subtract(y, out_offset, out=y)
    return y


#: Bytes of int64 scratch per block of rows in :func:`aggregate_requantize`: the multiply,
#: add, shift and clamp of one block run while it is in the core's L2 cache (2 MiB here), so
#: the result crosses memory once instead of four times.
BLOCK_BYTES = 1 << 20


def row_blocks(rows: int, features: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges covering ``0..rows`` with about :data:`BLOCK_BYTES` of
    int64 (``features`` per row) each: a chain of elementwise steps run block by block stays
    in cache."""
    step = max(1, BLOCK_BYTES // (8 * max(features, 1)))
    for r0 in range(0, rows, step):
        yield r0, min(rows, r0 + step)


def stage_output(stage: object, csr: CSRSum | None = None,
                 snap: np.ndarray | None = None, out_offset: int = 0) -> np.ndarray:
    """Output codes of an :class:`~model.golden.stage.AggregationStage` (int64 ``[N, F]``,
    minus ``out_offset``): exactly ``stage.compute()[1] - out_offset``, vectorised. Raises
    :class:`rules.AccumulatorOverflowError` when a row is too long for the stage's
    ``acc_width`` (the check of :meth:`AggregationStage.accumulate`), and the errors of
    :func:`rules.requantize`. ``csr``/``snap``: a cached :class:`CSRSum` of the stage's CSR and
    its snap table (built here when omitted)."""
    st = stage
    assert st.acc_width is not None and st.out_grid_bits is not None  # type: ignore[attr-defined]
    check_stage_rows(st.row_lengths, st.bits, st.acc_width, st.name)  # type: ignore[attr-defined]
    codes = st.codes  # type: ignore[attr-defined]
    if csr is None:
        csr = CSRSum(st.indptr, st.indices, codes.shape[0])  # type: ignore[attr-defined]
    thresholds = st.out_thresholds  # type: ignore[attr-defined]
    if thresholds is not None and snap is None:
        snap = snap_table(thresholds, 0, (1 << st.out_grid_bits) - 1)  # type: ignore[attr-defined]
    return aggregate_requantize(
        csr, codes, st.in_level, int(st.zero_point_in), st.multiplier,  # type: ignore[attr-defined]
        st.shift, st.zero_point_out, st.out_grid_bits,  # type: ignore[attr-defined]
        snap if thresholds is not None else None, out_offset,
        code_max=(1 << st.bits) - 1)  # type: ignore[attr-defined]


def uniform_shift(mult: np.ndarray, off: np.ndarray, shift: np.ndarray, vmax: int
                  ) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Per-element shifts ``s`` made one shift ``S = max s``: ``floor((v M + o) / 2**s) =
    floor((v M 2**d + o 2**d) / 2**S)`` with ``d = S - s`` (exact: numerator and denominator
    times ``2**d``). Returns ``(M 2**d, o 2**d, S)`` when ``|v| <= vmax`` keeps every term below
    ``2**63`` (a scalar shift is one pass cheaper than a broadcast one), else None."""
    s = np.asarray(shift, dtype=np.int64)
    if s.ndim == 0:
        return None
    smax = int(s.max(initial=0))
    d = smax - s
    dmax = int(d.max(initial=0))
    mmax, omax = abs_max(np.asarray(mult)), abs_max(np.asarray(off))
    if dmax > 62 or (max(vmax, 1) * mmax + omax) << dmax >= 2**63:
        return None
    p = np.left_shift(np.int64(1), d)
    return np.asarray(mult, dtype=np.int64) * p, np.asarray(off, dtype=np.int64) * p, smax


class Workspace:
    """Scratch arrays reused between calls (large temporaries are then not re-allocated and
    re-faulted on every forward pass). A buffer is only ever handed out for values consumed
    before the next request of the same tag; results returned to callers never live here."""

    def __init__(self) -> None:
        self._local = threading.local()  # one set of buffers per thread

    def get(self, tag: str, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
        key = (tag, tuple(int(v) for v in shape), np.dtype(dtype))
        b = bufs.get(key)
        if b is None:
            b = np.empty(key[1], dtype=key[2])
            bufs[key] = b
        return b

    def __getstate__(self) -> dict:
        return {}  # buffers are scratch: not pickled

    def __setstate__(self, state: dict) -> None:
        self._local = threading.local()


def _refs_when_free() -> int:
    """``sys.getrefcount`` of a pooled array that only its pool references, as
    :meth:`ResultPool.get` sees it (its list slot, plus the call's own argument)."""
    bufs = [np.empty(1)]
    return sys.getrefcount(bufs[0])


class ResultPool:
    """Result arrays recycled between calls, for outputs handed to callers.

    :meth:`get` returns an array that nothing outside the pool references any more (its
    reference count shows only the pool's own: no caller, view, trace or tensor can still
    read or write it, since every view of a numpy array, ``torch.from_numpy`` and every
    buffer export hold a reference), or a new one. To a caller it is a new uninitialised
    array; what it saves is the page faults of fresh memory (glibc maps every array of
    32 MiB or more afresh and unmaps it when freed: an int64 ``[65536, 64]`` costs several
    milliseconds of page faults each time). At most ``depth`` arrays are kept per shape and
    type (per thread); arrays under ``min_bytes`` (16 MiB) are not pooled: the allocator
    already reuses those from its heap. Only on CPython (elsewhere :meth:`get` is
    ``np.empty``)."""

    #: True where reference counts say who holds an array (CPython)
    ENABLED = sys.implementation.name == "cpython"
    _FREE = _refs_when_free()

    def __init__(self, depth: int = 2, min_bytes: int = 1 << 24) -> None:
        self.depth = int(depth)
        self.min_bytes = int(min_bytes)
        self._local = threading.local()

    def get(self, shape: tuple[int, ...], dtype: type | np.dtype) -> np.ndarray:
        """An uninitialised array of ``shape``/``dtype`` that no one else references."""
        dt = np.dtype(dtype)
        shp = tuple(int(v) for v in shape)
        if not self.ENABLED or int(np.prod(shp, dtype=np.int64)) * dt.itemsize < self.min_bytes:
            return np.empty(shp, dtype=dt)
        pools = getattr(self._local, "pools", None)
        if pools is None:
            pools = self._local.pools = {}
        bufs: list[np.ndarray] = pools.setdefault((shp, dt), [])
        for i in range(len(bufs)):
            if sys.getrefcount(bufs[i]) == self._FREE:
                return bufs[i]
        b = np.empty(shp, dtype=dt)
        if len(bufs) < self.depth:
            bufs.append(b)
        return b

    def __getstate__(self) -> dict:
        return {"depth": self.depth, "min_bytes": self.min_bytes}  # the arrays are not pickled

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["depth"], state["min_bytes"])  # type: ignore[misc]


@dataclass(frozen=True)
class Bounded:
    """Integer ``values`` with a proven bound ``|values| <= bound`` (e.g. a matmul's
    ``max|x| * max|w| * K``): a requantization checks its product width against the bound and
    scans the values only when the bound is too large to pass."""

    values: np.ndarray
    bound: int

    @property
    def shape(self) -> tuple[int, ...]:
        return self.values.shape


@dataclass(frozen=True)
class Centred:
    """The centred values ``level * codes - zero`` of int64 ``codes`` (per-tensor ``zero``),
    not materialised: a requantization folds ``level`` into its multiplier and ``zero`` into
    its rounding offset (exact: the same integers, bounded before use)."""

    codes: np.ndarray
    level: int
    zero: int

    def materialise(self) -> np.ndarray:
        """``level * codes - zero`` (int64, a new array)."""
        c = np.asarray(self.codes, dtype=np.int64)
        out = np.multiply(c, self.level) if self.level != 1 else c.copy()
        np.subtract(out, self.zero, out=out)
        return out

    def code_range(self) -> tuple[int, int]:
        """``(min, max)`` of the codes (``(0, 0)`` when empty), scanned once per instance (a
        :class:`Centred` stands for fixed values: its codes are not modified while in use)."""
        r = self.known_range()
        if r is None:
            c = self.codes
            r = (int(c.min()), int(c.max())) if c.size else (0, 0)
            self.remember_range(*r)
        return r

    def known_range(self) -> tuple[int, int] | None:
        """The exact ``(min, max)`` of the codes when already found, else None."""
        return self.__dict__.get("_range")

    def remember_range(self, lo: int, hi: int) -> None:
        """Record the exact ``(min, max)`` of the codes, found by a caller from an exact scan
        (e.g. of an exact float copy of the codes), for :meth:`code_range` to return."""
        object.__setattr__(self, "_range", (int(lo), int(hi)))

    def abs_max(self, lo: int, hi: int) -> int:
        """``max |level * c - zero|`` over codes in ``lo..hi`` (exact for the actual range)."""
        return max(abs(self.level * hi - self.zero), abs(self.level * lo - self.zero))


def check_stage_rows(row_lengths: np.ndarray, bits: int, width: int, name: str) -> None:
    """:func:`rules.check_row_lengths` with the stage's message (``"<name>: row i has ..."``)."""
    rules.check_row_lengths(row_lengths, bits, width, what=f"{name}: row")


__all__ = [
    "Bounded",
    "CSRSum",
    "Centred",
    "ResultPool",
    "Workspace",
    "abs_max",
    "aggregate_requantize",
    "check_shifts",
    "check_stage_rows",
    "half_of",
    "reference_path",
    "requantize_inplace",
    "round_shift_inplace",
    "row_blocks",
    "snap_clamped",
    "snap_table",
    "stage_output",
    "uniform_shift",
    "use_reference",
]
