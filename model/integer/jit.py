"""Compiled (Numba) loops of the integer-only model's two hot kernels, each one pass over its
output: the requantization of up to four terms, and the aggregation (CSR row sums) with its
requantization.

They compute exactly what the numpy kernels of :mod:`model.integer.kernels` and
:class:`model.integer.fixed.Requant` compute — the same int64 operations in the same order —
and they never decide anything: every bound, overflow check and error stays in the Python
callers, which call a loop only once the int64 ranges are proven (every intermediate below
``2**63``). What they save is the memory traffic and the per-call overhead of a chain of numpy
passes (a per-row multiplier broadcast over 8 columns runs numpy's inner loop 8 elements at a
time).

Operands are passed in one of four forms, chosen by type at compile time (:func:`operand`): a
scalar (``int64``), a per-row vector (1-D ``[R]``), a per-column vector (a 1-tuple holding the
1-D ``[C]`` array) or a full ``[R, C]`` array.

Numba is a dependency of the project; without it (or inside :func:`disabled`, or with
``QGNN_NO_JIT=1``) the numpy kernels run, with the same results.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

#: True when Numba is installed (this module imports it on the first compiled call)
AVAILABLE = importlib.util.find_spec("numba") is not None

_DISABLED: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "qgnn_jit_disabled", default=os.environ.get("QGNN_NO_JIT", "") not in ("", "0"))


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Within this block the numpy kernels run instead of the compiled loops (for tests)."""
    token = _DISABLED.set(True)
    try:
        yield
    finally:
        _DISABLED.reset(token)


def enabled() -> bool:
    """True when the compiled loops are used (Numba importable, not :func:`disabled`)."""
    return AVAILABLE and not _DISABLED.get()


#: Most terms :func:`requant` takes (more run on the numpy path).
MAX_TERMS = 4


def operand(x: Any, rows: int, cols: int) -> Any:
    """``x`` (broadcastable against ``[rows, cols]``) in the form the loops take: an
    ``np.int64`` scalar, a 1-D per-row ``[rows]`` array, a ``([cols],)`` per-column tuple or a
    C-contiguous ``[rows, cols]`` array (all int64); None for any other shape."""
    a = np.asarray(x, dtype=np.int64)
    if a.size == 1 and a.ndim <= 2:
        return np.int64(a.reshape(()))
    if a.shape == (rows, cols):
        return np.ascontiguousarray(a)
    if a.ndim == 2 and a.shape == (rows, 1):
        return np.ascontiguousarray(a.reshape(rows))
    if a.shape in ((cols,), (1, cols)):
        return (np.ascontiguousarray(a.reshape(cols)),)
    return None


_SCALAR, _ROW, _COL, _FULL = 0, 1, 2, 3


def _form(op: Any) -> int:
    if isinstance(op, np.int64):
        return _SCALAR
    if isinstance(op, tuple):
        return _COL
    return _ROW if op.ndim == 1 else _FULL


def _as_form(op: Any, form: int, rows: int, cols: int) -> Any:
    """Operand ``op`` (a form of :func:`operand`) in the wider ``form`` (same values)."""
    have = _form(op)
    if have == form:
        return op
    if form == _ROW:  # from a scalar
        return np.full(rows, op, dtype=np.int64)
    assert form == _COL and have == _SCALAR
    return (np.full(cols, op, dtype=np.int64),)


def unify(ops: list[Any], rows: int, cols: int) -> list[Any] | None:
    """``ops`` (forms of :func:`operand`) all in one form, the narrowest that holds each, or
    None when that would expand a vector into a full ``[rows, cols]`` array (a per-row and a
    per-column operand together, or a vector beside a full array: the numpy kernels run
    then). A loop is compiled once per form, so every operand of a call shares one; scalars
    widen to vectors (a few kilobytes)."""
    forms = {_form(op) for op in ops}
    if _FULL in forms or {_ROW, _COL} <= forms:
        return ops if forms <= {_FULL, _SCALAR} and _FULL in forms and all(
            _form(op) == _FULL for op in ops) else None
    form = _ROW if _ROW in forms else _COL if _COL in forms else _SCALAR
    return [_as_form(op, form, rows, cols) for op in ops]


@functools.cache
def _loops() -> tuple[Any, Any]:
    """The compiled loops ``(requant4, csr_requant)``, defined (and compiled, or loaded from
    Numba's on-disk cache) on first use."""
    import numba
    from numba import types
    from numba.extending import overload

    def _at(a: Any, i: int, j: int) -> Any:  # pragma: no cover - replaced in compiled code
        raise NotImplementedError

    @overload(_at, inline="always")
    def _at_impl(a, i, j):  # type: ignore[no-untyped-def]  # numba matches plain signatures
        """``a`` at row ``i``, column ``j``, by the form of :func:`operand`."""
        if isinstance(a, types.Integer):
            return lambda a, i, j: a
        if isinstance(a, types.Array) and a.ndim == 1:
            return lambda a, i, j: a[i]
        if isinstance(a, types.Array) and a.ndim == 2:
            return lambda a, i, j: a[i, j]
        if isinstance(a, types.BaseTuple):
            return lambda a, i, j: a[0][j]
        return None

    @numba.njit(nogil=True, cache=True)
    def _requant4(nt, b0, m0, o0, s0, b1, m1, o1, s1, b2, m2, o2, s2, b3, m3, o3, s3,
                  n, k, zo, lo, hi, out):  # pragma: no cover - compiled
        r, c = out.shape
        for i in range(r):
            for j in range(c):  # nt is loop-invariant: the compiler unswitches the branches
                acc = (b0[i, j] * _at(m0, i, j) + _at(o0, i, j)) >> _at(s0, i, j)
                if nt > 1:
                    acc += (b1[i, j] * _at(m1, i, j) + _at(o1, i, j)) >> _at(s1, i, j)
                    if nt > 2:
                        acc += (b2[i, j] * _at(m2, i, j) + _at(o2, i, j)) >> _at(s2, i, j)
                        if nt > 3:
                            acc += (b3[i, j] * _at(m3, i, j) + _at(o3, i, j)) >> _at(s3, i, j)
                acc = ((acc + _at(n, i, j)) >> k) + _at(zo, i, j)
                out[i, j] = min(max(acc, _at(lo, i, j)), hi)

    @numba.njit(nogil=True, cache=True)
    def _csr_requant(indptr, indices, codes, lm, off, sh, lo, hi, acc_type, out):  # pragma: no cover
        r, c = out.shape
        acc = np.zeros(c, acc_type.dtype)  # local: the compiler knows it aliases nothing
        for i in range(r):
            for j in range(c):
                acc[j] = 0
            for p in range(indptr[i], indptr[i + 1]):
                q = indices[p]
                for j in range(c):
                    acc[j] += codes[q, j]
            mi, oi, si = _at(lm, i, 0), _at(off, i, 0), _at(sh, i, 0)
            for j in range(c):
                out[i, j] = min(max((np.int64(acc[j]) * mi + oi) >> si, lo), hi)

    return _requant4, _csr_requant


def requant(terms: list[tuple[Any, ...]], n: Any, k: int, zo: Any, lo: Any, hi: int,
            out: np.ndarray) -> np.ndarray:
    """``out = clamp(((sum_t (b_t m_t + o_t) >> s_t) + n) >> k) + zo, lo, hi)`` element by
    element (int64; ``terms`` = up to :data:`MAX_TERMS` tuples ``(b, m, o, s)`` with full
    ``[R, C]`` bases ``b``; every ``m``, ``o``, ``s`` and ``n``, ``zo``, ``lo`` in one form of
    :func:`operand`, see :func:`unify`). The caller has proven every intermediate
    below ``2**63`` and every shift in ``0..63``."""
    assert 1 <= len(terms) <= MAX_TERMS
    t = [*terms, *[terms[0]] * (MAX_TERMS - len(terms))]  # unused slots: never read
    _loops()[0](np.int64(len(terms)), *t[0], *t[1], *t[2], *t[3], n, np.int64(k), zo, lo,
                np.int64(hi), out)
    return out


#: accumulator types of :func:`csr_requant` (their dtype selects the compiled loop)
_ACC32, _ACC64 = np.empty(0, dtype=np.int32), np.empty(0, dtype=np.int64)


def csr_requant(indptr: np.ndarray, indices: np.ndarray, codes: np.ndarray, lm: Any, off: Any,
                sh: Any, lo: int, hi: int, out: np.ndarray, sum_bound: int) -> np.ndarray:
    """``out[i] = clamp((sum_{p in row i} codes[indices[p]]) * lm_i + off_i) >> sh_i, lo, hi)``
    (int64 ``[R, F]``; ``codes`` any integer type, ``lm``/``off``/``sh`` per-row vectors or
    scalars in the forms of :func:`operand`). ``sum_bound`` bounds every partial row sum
    (``max_terms * max |code|``): below ``2**31`` the sums run in int32 (fewer bytes per
    lane), else in int64. The caller has proven every row sum times ``lm`` plus ``off`` below
    ``2**63`` and every shift in ``0..63``."""
    acc = _ACC32 if sum_bound < 2**31 else _ACC64
    _loops()[1](indptr, indices, codes, lm, off, sh, np.int64(lo), np.int64(hi), acc, out)
    return out


__all__ = ["MAX_TERMS", "csr_requant", "disabled", "enabled", "operand", "requant", "unify"]
