"""The fast paths of the integer kernels and where their proofs stop: the one-reduction code
range of the aggregation (and its fallback when a code is outside ``0..code_max``), the
recycled result arrays (never while anything references them), the folded centring of
:func:`int_matmul` (and its fallback when the folded partial sums could leave the float
significand), each checked against exact integer arithmetic."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from qgnn.model.golden.stage import AggregationStage
from qgnn.model.integer import kernels
from qgnn.model.integer.fixed import FLOAT32_EXACT, int_matmul

# --- recycled results ------------------------------------------------------------------------


def test_result_pool_reuses_only_unreferenced_arrays() -> None:
    pool = kernels.ResultPool(depth=2, min_bytes=0)
    a = pool.get((4, 3), np.int64)
    b = pool.get((4, 3), np.int64)
    assert a is not b  # a is still held here
    a_id = id(a)
    del a
    c = pool.get((4, 3), np.int64)
    assert id(c) == a_id  # released: recycled
    view = c[1:]
    del c
    d = pool.get((4, 3), np.int64)
    assert d.base is None and not np.shares_memory(d, view)  # a view keeps it alive
    t = torch.from_numpy(d)
    del d
    e = pool.get((4, 3), np.int64)
    assert not np.shares_memory(e, t.numpy())  # a tensor on it keeps it alive too
    assert pool.get((4, 3), np.int32).dtype == np.int32  # one pool per shape and type


def test_result_pool_leaves_small_arrays_to_the_allocator() -> None:
    pool = kernels.ResultPool(min_bytes=1 << 20)
    assert pool.get((8, 8), np.int64).shape == (8, 8)
    assert getattr(pool._local, "pools", {}) == {}  # nothing kept
    assert len(pool.get((1024, 128), np.int64)) == 1024  # 1 MiB: pooled
    assert len(pool._local.pools[((1024, 128), np.dtype(np.int64))]) == 1


def _stage(codes: np.ndarray, rows: list[list[int]], bits: int = 8) -> AggregationStage:
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    indices = np.array([j for r in rows for j in r], dtype=np.int64)
    n = len(rows)
    rng = np.random.default_rng(1)
    return AggregationStage(
        name="s", indptr=indptr, indices=indices, codes=codes, bits=bits, out_bits=bits,
        zero_point_in=3, zero_point_out=5, multiplier=rng.integers(1, 1 << 15, size=n),
        shift=rng.integers(10, 24, size=n))


def _loop(stage: AggregationStage) -> np.ndarray:
    """Output codes one element at a time in Python integers (no accumulator width)."""
    out = np.zeros((stage.num_nodes, stage.features), dtype=np.int64)
    gmax = (1 << stage.out_bits) - 1
    for i in range(stage.num_nodes):
        row = stage.indices[stage.indptr[i]:stage.indptr[i + 1]]
        m, s = int(stage.multiplier[i]), int(stage.shift[i])
        for f in range(stage.features):
            c = sum(int(stage.codes[j, f]) for j in row) - len(row) * int(stage.zero_point_in)
            r = (c * m + (1 << (s - 1))) >> s
            out[i, f] = min(max(r + int(stage.zero_point_out), 0), gmax)
    return out


def test_recycled_aggregation_results_never_overwrite_held_ones() -> None:
    rng = np.random.default_rng(0)
    rows = [list(rng.integers(0, 30, size=int(rng.integers(1, 9)))) for _ in range(30)]
    csr = None
    held = []
    for seed in range(4):
        codes = np.random.default_rng(seed).integers(0, 256, size=(30, 7))
        st = _stage(codes, rows)
        if csr is None:
            csr = kernels.CSRSum(st.indptr, st.indices, 30)
            csr.results = kernels.ResultPool(min_bytes=0)  # recycle even these small arrays
        y = kernels.stage_output(st, csr)
        assert np.array_equal(y, _loop(st))
        held.append((y, y.copy()))
        if seed == 1:
            held.pop(0)  # release the first: later calls may recycle it
    for y, want in held:
        assert np.array_equal(y, want)  # nothing held was overwritten


# --- one-reduction code range ----------------------------------------------------------------


def test_code_range_from_one_reduction_when_codes_fit_code_max() -> None:
    codes = np.array([[0, 255], [17, 3]], dtype=np.int64)
    csr = kernels.CSRSum(np.array([0, 2, 3]), np.array([0, 1, 1]), 2)
    parts, cmax = csr.sum_bounded(codes, code_max=255)
    assert cmax == 255
    assert np.array_equal(parts[0][1], [[17, 258], [17, 3]])


@pytest.mark.parametrize("bad", [300, -1])
def test_codes_outside_code_max_fall_back_to_the_exact_range(bad: int) -> None:
    """A code above ``code_max`` (or negative: huge as uint64) must not use the plan of
    ``code_max``: 250 codes of 300 sum to 75000, which a 255-based uint16 plan would wrap."""
    n = 250
    codes = np.full((n + 1, 2), 200, dtype=np.int64)
    codes[:, 0] = bad
    rows = [list(range(n)), [n]]
    csr = kernels.CSRSum(np.array([0, n, n + 1]), np.array(rows[0] + rows[1]), n + 1)
    parts, cmax = csr.sum_bounded(codes, code_max=255)
    assert cmax == max(abs(bad), 200)
    acc = csr.sum(codes)
    assert acc.tolist() == [[n * bad, n * 200], [bad, 200]]
    if bad > 0:  # a valid (if out-of-range) stage: the kernel equals the loop
        st = _stage(codes, rows)
        assert np.array_equal(kernels.stage_output(st), _loop(st))
        assert np.array_equal(kernels.stage_output(st), st.compute()[1])


# --- folded centring of int_matmul -----------------------------------------------------------


def _exact(c: np.ndarray, level: int, zero: int, w: np.ndarray) -> np.ndarray:
    return (level * c - zero) @ w.T  # numpy int64 matmul: exact integers


@pytest.mark.parametrize(("level", "zero", "cmax", "k", "c_out"), [
    (1, 131, 255, 64, 64),  # an 8-bit layer: folded, float32
    (1, 131, 255, 64, 8),  # fewer outputs than inputs: folded, float32
    (85, 120, 3, 16, 32),  # a BT input (level 85): folded although C > K
    (1, 7, 15, 8, 32),  # C > K, level 1: centred first
    (1, 2**20, 2**21, 64, 8),  # bound beyond 2**24: float64 (folded)
])
def test_int_matmul_folded_centring_is_exact(level: int, zero: int, cmax: int, k: int,
                                            c_out: int) -> None:
    rng = np.random.default_rng(level + k + c_out)
    c = rng.integers(0, cmax + 1, size=(50, k))
    c[0] = cmax
    c[1] = 0
    w = rng.integers(-128, 128, size=(c_out, k))
    w[0] = -128
    w[1] = 127
    want = _exact(c, level, zero, w)
    got = int_matmul(kernels.Centred(c, level, zero), w)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    out = np.empty(want.shape, dtype=np.int64)
    b = int_matmul(kernels.Centred(c, level, zero), w, out=out)
    assert isinstance(b, kernels.Bounded) and b.values is out
    assert np.array_equal(out, want)
    xmax = max(abs(level * int(c.max()) - zero), abs(level * int(c.min()) - zero))
    assert b.bound == xmax * 128 * k  # the bound of the centred product, as before


def test_int_matmul_falls_back_when_the_folded_sums_leave_float32() -> None:
    """Codes near 2**23 with the zero point 2**23: the centred values are small (bound below
    2**24, float32), but ``c @ w.T`` has partial sums near 2**25, where float32 loses odd
    integers. The fold must not be used: the result is still exact."""
    z = 2**23
    k = 4
    rng = np.random.default_rng(3)
    c = z + rng.integers(-3, 4, size=(64, k))
    c[:, 0] |= 1  # odd codes: the folded float32 sums are inexact
    w = np.ones((2, k), dtype=np.int64)
    w[1, ::2] = -1
    assert (3 * 1 * k) < FLOAT32_EXACT <= int(c.max()) * k  # centred fits, folded does not
    folded = (c.astype(np.float32) @ w.T.astype(np.float32)) - np.float32(z) * w.sum(axis=1)
    assert not np.array_equal(folded.astype(np.int64), _exact(c, 1, z, w))  # the hazard
    got = int_matmul(kernels.Centred(c, 1, z), w)
    assert np.array_equal(got, _exact(c, 1, z, w))


@pytest.mark.parametrize("zero", [2**25, 2**54])
def test_int_matmul_centres_exactly_when_the_codes_exceed_the_float_range(zero: int) -> None:
    """Codes beyond 2**24 (or 2**53) with a zero point next to them: the centred values are
    small, but the codes themselves are not exact in float32 (float64): the centring must
    happen where it is exact (float64, or int64)."""
    rng = np.random.default_rng(4)
    c = zero + rng.integers(-5, 6, size=(20, 6))
    w = rng.integers(-128, 128, size=(9, 6))  # C > K: not folded
    assert np.array_equal(int_matmul(kernels.Centred(c, 1, zero), w), _exact(c, 1, zero, w))


@pytest.mark.parametrize("top", [2**24 - 1, 2**24, 2**24 + 1, -(2**24) - 1])
def test_int_matmul_takes_the_code_range_from_float32_only_when_exact(top: int) -> None:
    """The codes' range read off their float32 copy: exact inside +-2**24; 2**24 + 1 rounds to
    2**24, so at 2**24 the copy proves nothing and the int64 codes are scanned."""
    c = np.array([[top, 0, 5], [3, top // 2, 1]], dtype=np.int64)
    w = np.array([[1, -2, 3], [4, 5, -6]], dtype=np.int64)
    xc = kernels.Centred(c, 1, 7)
    assert np.array_equal(int_matmul(xc, w), _exact(c, 1, 7, w))
    assert xc.code_range() == (int(c.min()), int(c.max()))


def test_int_matmul_dense_and_sparse_unchanged_with_out() -> None:
    import scipy.sparse as sp

    rng = np.random.default_rng(5)
    x = rng.integers(-300, 300, size=(40, 12))
    w = rng.integers(-128, 128, size=(6, 12))
    out = np.empty((40, 6), dtype=np.int64)
    b = int_matmul(x, w, out=out)
    assert isinstance(b, kernels.Bounded) and np.array_equal(out, x @ w.T)
    assert b.bound == int(np.abs(x).max()) * int(np.abs(w).max()) * 12
    x[rng.random(x.shape) < 0.6] = 0
    assert np.array_equal(int_matmul(sp.csr_matrix(x), w), x @ w.T)


def test_centred_code_range_is_exact() -> None:
    c = kernels.Centred(np.array([[4, -2], [9, 0]]), 1, 3)
    assert c.code_range() == (-2, 9)
    assert c.code_range() == (-2, 9)
    assert c.abs_max(*c.code_range()) == 6


# --- whole model: recycled arrays never leak into held traces --------------------------------


def test_held_outputs_and_traces_survive_later_passes(cora: Any) -> None:
    from qgnn.model.integer.convert import model_input, to_integer
    from qgnn.model.nn import ModelConfig, build_model
    from qgnn.model.quant import PrecisionConfig
    from qgnn.model.train import calibrate

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        m = build_model(ModelConfig(name="gcn"), cora.num_features, int(cora.y.max()) + 1,
                        PrecisionConfig.uniform(4))
        calibrate(m, cora)
        m.eval()
        im = to_integer(m, cora)
        x = model_input(cora)
        im.forward(x)
        for lay in im.layers:  # recycle every aggregation result, however small
            assert lay.agg._csr is not None
            lay.agg._csr.results = kernels.ResultPool(min_bytes=0)
        held = []
        for _ in range(3):
            out = im.forward(x)
            held.append((out, out.copy(), {k: (v[0], v[0].copy()) for k, v in im.trace.items()}))
        for out, want, tr in held:
            assert np.array_equal(out, want)
            for k, (codes, copy) in tr.items():
                assert np.array_equal(codes, copy), k
    finally:
        torch.set_num_threads(before)


# --- requantizations that provably return their input ------------------------------------------

def _unit_requant(zero: int, relu: bool = False, qmax: int = 15) -> Any:
    from qgnn.model.integer.fixed import QParams, Requant

    tgt = QParams("next.input", 4, 0, qmax, np.array(0.1), np.array(zero))
    return Requant.build([1.0], tgt, relu=relu)


@pytest.mark.parametrize("zero", [0, 3])
def test_unit_requant_returns_the_codes_read_only(zero: int) -> None:
    rng = np.random.default_rng(zero)
    codes = rng.integers(0, 16, size=(300, 7), dtype=np.int64)
    rq = _unit_requant(zero)
    got = rq(kernels.Centred(codes, 1, zero))
    with kernels.reference_path():
        want = rq(kernels.Centred(codes, 1, zero))
    assert np.array_equal(got, want)
    assert np.shares_memory(got, codes) and not got.flags.writeable
    with pytest.raises(ValueError):
        got[0, 0] = 1  # a caller cannot change the codes it shares with the input


@pytest.mark.parametrize("case", ["above", "negative", "relu_below_zero", "other_zero", "level"])
def test_unit_requant_clamps_when_the_codes_leave_the_range(case: str) -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, size=(200, 5), dtype=np.int64)
    zero, relu, level, in_zero = 2, False, 1, 2
    if case == "above":
        codes[3, 1] = 16
    elif case == "negative":
        codes[7, 4] = -1
    elif case == "relu_below_zero":
        relu = True  # ReLU clamps at the zero point: codes 0..1 become 2
    elif case == "other_zero":
        in_zero = 1
    else:
        level = 2
    rq = _unit_requant(zero, relu=relu)
    v = kernels.Centred(codes, level, in_zero)
    got = rq(v)
    with kernels.reference_path():
        want = rq(kernels.Centred(codes, level, in_zero))
    assert np.array_equal(got, want)
    assert not np.shares_memory(got, codes)
    assert not np.array_equal(want, codes)  # the case really changes codes
