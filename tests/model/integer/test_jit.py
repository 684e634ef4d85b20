"""The compiled loops of :mod:`model.integer.jit`: they are really used (Numba is a dependency
and the hot kernels take the compiled path), their operand forms, and exact agreement with the
numpy kernels at the int64 limits the callers prove (products near ``2**62``, shifts up to 63,
negative values under the arithmetic shift)."""

from __future__ import annotations

import os
from typing import Any
from unittest import mock

import numpy as np
import pytest
from qgnn.model.golden.stage import random_stage
from qgnn.model.integer import jit, kernels
from qgnn.model.integer.fixed import QParams, Requant

#: QGNN_NO_JIT=1 in the environment turns the compiled loops off for the whole run
_OFF_BY_ENV = os.environ.get("QGNN_NO_JIT", "") not in ("", "0")
needs_jit = pytest.mark.skipif(_OFF_BY_ENV, reason="QGNN_NO_JIT is set")


@needs_jit
def test_numba_is_installed_and_the_compiled_loops_are_on() -> None:
    assert jit.AVAILABLE, "numba is a dependency of qgnn (pyproject.toml)"
    assert jit.enabled()
    with jit.disabled():
        assert not jit.enabled()
    assert jit.enabled()


@pytest.mark.parametrize(("shape", "form"), [
    ((), "scalar"), ((1, 1), "scalar"), ((5, 1), "row"), ((3,), "col"), ((1, 3), "col"),
    ((5, 3), "full"), ((5,), None), ((2, 3), None), ((5, 3, 1), None),
])
def test_operand_forms(shape: tuple[int, ...], form: str | None) -> None:
    x = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape)
    op = jit.operand(x, 5, 3)
    if form is None:
        assert op is None
        return
    kind = ("scalar" if isinstance(op, np.int64) else "col" if isinstance(op, tuple)
            else "row" if op.ndim == 1 else "full")
    assert kind == form
    dense = np.broadcast_to(x, (5, 3))
    for i in range(5):
        for j in range(3):
            v = (op if kind == "scalar" else op[0][j] if kind == "col"
                 else op[i] if kind == "row" else op[i, j])
            assert int(v) == int(dense[i, j])


def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(jit, name)

    def wrapped(*a: Any, **k: Any) -> Any:
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(jit, name, wrapped)
    return calls


@needs_jit
def test_requant_and_aggregation_take_the_compiled_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    rq_calls = _counting(monkeypatch, "requant")
    agg_calls = _counting(monkeypatch, "csr_requant")
    rng = np.random.default_rng(0)
    tgt = QParams("t", 4, 0, 15, np.array(0.1), np.array(3))
    rq = Requant.build([rng.uniform(0.01, 0.5, (50, 1)), 0.3], tgt, relu=True)
    a = kernels.Centred(rng.integers(0, 16, (50, 8)), 1, 5)
    b = kernels.Centred(rng.integers(0, 16, (50, 8)), 1, 2)
    got = rq(a, b)
    assert rq_calls == [1]
    with jit.disabled():
        assert np.array_equal(rq(a, b), got)
    assert rq_calls == [1]
    st = random_stage(rng, num_nodes=60, features=8, bits=4)
    out = kernels.stage_output(st)
    assert agg_calls == [1]
    assert np.array_equal(out, st.compute()[1])


def test_requant_loop_at_the_int64_limits() -> None:
    """Products just below ``2**62`` (the callers' bound), the largest shift, negative sums
    shifted arithmetically (floor, not truncation toward zero), per-row, per-column and full
    operands in one call: equal to Python integers."""
    rng = np.random.default_rng(1)
    r, c = 7, 5
    b0 = rng.integers(-(1 << 20), 1 << 20, (r, c))
    m0 = rng.integers(1, 1 << 41, (r, 1))  # per row: |b0 m0| < 2**61
    s0 = rng.integers(0, 64, (1, c))  # per column, up to 63
    b1 = rng.integers(-9, 10, (r, c))
    m1 = np.int64(3)
    o1 = rng.integers(-100, 100, (r, c))  # full
    s1 = np.int64(1)
    n, k, zo, lo, hi = np.int64(-77), 2, np.int64(4), np.int64(-(1 << 40)), 1 << 40
    out = np.empty((r, c), dtype=np.int64)
    jit.requant([(b0, jit.operand(m0, r, c), np.int64(-5), jit.operand(s0, r, c)),
                 (b1, m1, o1, s1)], n, k, zo, lo, hi, out)
    for i in range(r):
        for j in range(c):
            acc = (int(b0[i, j]) * int(m0[i, 0]) - 5) >> int(s0[0, j])
            acc += (int(b1[i, j]) * 3 + int(o1[i, j])) >> 1
            want = min(max(((acc - 77) >> 2) + 4, -(1 << 40)), 1 << 40)
            assert int(out[i, j]) == want


@pytest.mark.parametrize("sum_bound", [255 * 70_000, 2**40], ids=["int32-sums", "int64-sums"])
def test_csr_loop_sums_rows_exactly_with_narrow_codes(sum_bound: int) -> None:
    """Long rows of maximal codes (sums far beyond the codes' own type) and empty rows, with
    int32 and with int64 accumulators."""
    indptr = np.array([0, 70_000, 70_000, 70_003], dtype=np.int32)
    indices = np.concatenate([np.zeros(70_000), [1, 1, 0]]).astype(np.int32)
    codes = np.array([[255, 0, 1], [7, 255, 255]], dtype=np.uint8)
    out = np.empty((3, 3), dtype=np.int64)
    lm = np.array([3, 1, 2], dtype=np.int64)
    off = np.array([1, -4, 0], dtype=np.int64)
    jit.csr_requant(indptr, indices, codes, lm, off, np.int64(1), 0, 1 << 30, out, sum_bound)
    sums = np.array([[255 * 70_000, 0, 70_000], [0, 0, 0], [14 + 255, 510 + 0, 510 + 1]])
    want = np.clip((sums * lm[:, None] + off[:, None]) >> 1, 0, 1 << 30)
    assert np.array_equal(out, want)


@needs_jit
def test_disabling_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    monkeypatch.setenv("QGNN_NO_JIT", "1")
    with mock.patch.dict("sys.modules"):
        fresh = importlib.reload(jit)
        try:
            assert not fresh.enabled()
        finally:
            monkeypatch.delenv("QGNN_NO_JIT")
            importlib.reload(jit)
    assert jit.enabled()


def test_unify_widens_scalars_and_refuses_full_expansions() -> None:
    r, c = 4, 3
    row, col, full = np.arange(r), (np.arange(c),), np.ones((r, c), dtype=np.int64)
    got = jit.unify([np.int64(2), row], r, c)
    assert got is not None and np.array_equal(got[0], [2, 2, 2, 2]) and got[1] is row
    got = jit.unify([np.int64(5), col], r, c)
    assert got is not None and isinstance(got[0], tuple) and np.array_equal(got[0][0], [5, 5, 5])
    assert jit.unify([np.int64(1), np.int64(2)], r, c) == [1, 2]
    assert jit.unify([full, full], r, c) is not None
    for ops in ([row, col], [row, full], [np.int64(1), full]):
        assert jit.unify(ops, r, c) is None  # the numpy kernels run
