"""The vectorised kernels of the integer model against simple references: a per-row loop in
Python integers for the aggregation, the straightforward (reference) definitions for the
requantizations and matmuls, and the whole model with :func:`reference_path`. Overflow checks
are pinned at their boundaries: exactly at the limit fits, one more raises. Tests marked
``compiled`` run twice: with the compiled loops of :mod:`model.integer.jit` and with the numpy
kernels alone."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import jit, kernels, rules
from qgnn.model.integer.fixed import (
    FixedScale,
    QParams,
    Requant,
    int_matmul,
    int_matmul_reference,
)

#: run a test on both kernel paths (argument ``compiled``; see :func:`on_path`)
both_paths = pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])


def on_path(compiled: bool) -> Any:
    """The context that selects the compiled loops (when Numba is installed, as the project
    requires) or the numpy kernels."""
    import contextlib

    return contextlib.nullcontext() if compiled else jit.disabled()


# --- references ----------------------------------------------------------------------------


def _reference_stage(stage: AggregationStage) -> np.ndarray:
    """Output codes of a stage, one row and one feature at a time in Python integers."""
    width = stage.acc_width
    assert width is not None and stage.out_grid_bits is not None
    limit = rules.max_terms_for_width(stage.bits, width)
    out = np.zeros((stage.num_nodes, stage.features), dtype=np.int64)
    gmax = (1 << stage.out_grid_bits) - 1
    for i in range(stage.num_nodes):
        row = [int(j) for j in stage.indices[stage.indptr[i]:stage.indptr[i + 1]]]
        if len(row) > limit:
            raise rules.AccumulatorOverflowError(f"row {i}")
        m, s = int(stage.multiplier[i]), int(stage.shift[i])
        for f in range(stage.features):
            acc = sum(int(stage.codes[j, f]) for j in row)
            c = stage.in_level * acc - len(row) * int(stage.zero_point_in)
            p = c * m
            r = (p + (1 << (s - 1))) >> s if s > 0 else p  # floor(p / 2**s + 1/2)
            y = min(max(r + int(stage.zero_point_out), 0), gmax)
            if stage.out_thresholds is not None:
                y = sum(y >= t for t in stage.out_thresholds)
            out[i, f] = y
    return out


def _graph(draw: Any, n: int, long_rows: bool) -> tuple[np.ndarray, np.ndarray]:
    lengths = draw(st.lists(st.integers(0, 6), min_size=n, max_size=n))
    if long_rows:  # a few rows longer than a 16-bit accumulator allows for 8-bit codes
        for i in draw(st.lists(st.integers(0, n - 1), max_size=3)):
            lengths[i] = draw(st.integers(258, 700))
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    seed = draw(st.integers(0, 2**31))
    indices = np.random.default_rng(seed).integers(0, n, int(indptr[-1])).astype(np.int64)
    return indptr, indices


@st.composite
def stages(draw: Any) -> AggregationStage:
    n = draw(st.integers(1, 24))
    feats = draw(st.integers(1, 20))
    truncated = draw(st.booleans())
    bits = 2 if truncated else draw(st.sampled_from([2, 4, 8]))
    indptr, indices = _graph(draw, n, long_rows=draw(st.booleans()))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    qmax = (1 << bits) - 1
    codes = rng.integers(0, qmax + 1, size=(n, feats))
    if draw(st.booleans()):  # codes at the top of the range: the largest sums
        codes[:] = qmax
    mult = rng.integers(0, 1 << 16, size=n)
    shift = rng.integers(0, 40, size=n)
    if truncated:
        zin = draw(st.sampled_from([0, 255, int(rng.integers(0, 256))]))
        zout = draw(st.sampled_from([0, 255, int(rng.integers(0, 256))]))
        return AggregationStage(
            name="s", indptr=indptr, indices=indices, codes=codes, bits=2, out_bits=2,
            zero_point_in=zin, zero_point_out=zout, multiplier=mult, shift=shift,
            in_level=85, out_grid_bits=8,
            out_thresholds=rules.bt_thresholds(draw(st.integers(-3, 3))))
    zin = draw(st.sampled_from([0, qmax, int(rng.integers(0, qmax + 1))]))
    zout = draw(st.sampled_from([0, qmax, int(rng.integers(0, qmax + 1))]))
    return AggregationStage(
        name="s", indptr=indptr, indices=indices, codes=codes, bits=bits, out_bits=bits,
        zero_point_in=zin, zero_point_out=zout, multiplier=mult, shift=shift)


# --- aggregation ---------------------------------------------------------------------------


@both_paths
@settings(max_examples=100, deadline=None)
@given(stage=stages())
def test_stage_output_equals_the_per_row_loop_and_the_stage_reference(
        stage: AggregationStage, compiled: bool) -> None:
    want = _reference_stage(stage)
    with on_path(compiled):
        got = kernels.stage_output(stage)
        assert got.dtype == np.int64
        assert np.array_equal(got, want)
        assert np.array_equal(stage.compute()[1], want)  # the golden reference agrees
        csr = kernels.CSRSum(stage.indptr, stage.indices, stage.codes.shape[0])
        assert np.array_equal(csr.sum(stage.codes), stage.accumulate())
        csr.direct = False  # the public scipy product instead of the reused-buffer loop
        assert np.array_equal(kernels.stage_output(stage, csr), want)


@both_paths
@settings(max_examples=60, deadline=None)
@given(stage=st.builds(lambda seed, bits, trunc: random_stage(
    np.random.default_rng(seed), num_nodes=40, features=13, bits=2 if trunc else bits,
    truncated=trunc), st.integers(0, 2**31), st.sampled_from([2, 4, 8]), st.booleans()))
def test_stage_output_on_random_golden_stages(stage: AggregationStage, compiled: bool) -> None:
    with on_path(compiled):
        assert np.array_equal(kernels.stage_output(stage), stage.compute()[1])


def _long_row_stage(terms: int, bits: int, width: int) -> AggregationStage:
    """Row 0 sums ``terms`` maximal codes; the accumulator is ``width`` bits."""
    qmax = (1 << bits) - 1
    indptr = np.array([0, terms, terms + 1], dtype=np.int64)
    indices = np.zeros(terms + 1, dtype=np.int64)
    codes = np.full((2, 3), qmax, dtype=np.int64)
    return AggregationStage(name="edge", indptr=indptr, indices=indices, codes=codes, bits=bits,
                            out_bits=bits, zero_point_in=0, zero_point_out=0,
                            multiplier=np.array([1, 1]), shift=np.array([20, 0]),
                            acc_width=width)


@pytest.mark.parametrize(("bits", "width"), [(2, 9), (4, 12), (8, 16), (8, 21)])
def test_accumulator_boundary_fits_then_raises(bits: int, width: int) -> None:
    limit = rules.max_terms_for_width(bits, width)
    ok = _long_row_stage(limit, bits, width)
    assert (limit * ((1 << bits) - 1)).bit_length() == width  # the sum fills the width exactly
    assert np.array_equal(kernels.stage_output(ok), _reference_stage(ok))
    bad = _long_row_stage(limit + 1, bits, width)
    with pytest.raises(rules.AccumulatorOverflowError, match="edge: row 0 has"):
        kernels.stage_output(bad)
    with pytest.raises(rules.AccumulatorOverflowError):
        bad.compute()


@pytest.mark.parametrize(("code", "terms", "dtype"), [
    (255, 257, np.uint16),  # 257 * 255 = 65535: the largest uint16
    (2**31 - 1, 1, np.int32),  # the largest int32 (a prime: one term)
])
def test_narrow_accumulators_at_their_limits(code: int, terms: int, dtype: type) -> None:
    """A row whose largest possible sum is exactly the top of a 16/32-bit accumulator is summed
    in that type; one more term moves it to a wider one. The sums are exact either way."""
    assert code * terms == np.iinfo(dtype).max
    for extra in (0, 1):
        n = terms + extra
        indptr = np.array([0, n, n + 1], dtype=np.int64)
        codes = np.array([[code, 1], [code, 0]], dtype=np.int64)
        csr = kernels.CSRSum(indptr, np.zeros(n + 1, dtype=np.int64), 2)
        plan = csr._plan(code, True)
        if dtype is np.uint16:  # fits: one uint16 product; one more term: row 0 in chunks
            assert plan.dtype is np.uint16
            assert (plan.rows is not None and 0 in plan.rows) == (extra == 1)
        else:  # a code beyond 16 bits: a wider accumulator, int32 exactly while it fits
            assert (plan.dtype is np.int32) == (extra == 0)
        acc = csr.sum(codes)
        assert acc.tolist() == [[n * code, n], [code, 1]]


def test_accumulator_type_beyond_int64_raises() -> None:
    assert kernels._acc_dtype(65535, unsigned=True) is np.uint16
    assert kernels._acc_dtype(65536, unsigned=True) is np.int32
    assert kernels._acc_dtype(2**63 - 1, unsigned=False) is np.int64
    with pytest.raises(OverflowError, match="beyond int64"):
        kernels._acc_dtype(2**63, unsigned=False)


def test_requantization_product_width_boundary() -> None:
    """|c| * M filling MAX_PRODUCT_WIDTH - 1 bits fits (exact result); one more bit raises the
    ValueError of rules.requantize, in the fused kernel as in the reference."""
    w = rules.MAX_PRODUCT_WIDTH - 1
    m = (1 << 30) - 1
    c_ok = ((1 << w) - 1) // m  # (c * m).bit_length() == w
    assert (c_ok * m).bit_length() == w
    for c, fits in ((c_ok, True), (c_ok * 2 + 1, False)):
        arr = np.array([[c, -c]], dtype=np.int64)
        args = (np.array([[m]]), np.array([[40]]), 3, 8)
        if fits:
            got = kernels.requantize_inplace(arr.copy(), *args)
            assert np.array_equal(got, rules.requantize(arr, *args))
        else:
            with pytest.raises(ValueError, match="product needs more than"):
                rules.requantize(arr, *args)
            with pytest.raises(ValueError, match="product needs more than"):
                kernels.requantize_inplace(arr.copy(), *args)


def test_fused_aggregation_falls_back_to_the_exact_check() -> None:
    """A multiplier so large that the fused bound fails: the unfused steps run and the exact
    max |c| decides (here it fits: the result equals the loop)."""
    codes = np.array([[0, 1], [0, 0]], dtype=np.int64)
    st_ = AggregationStage(name="big", indptr=np.array([0, 2, 2]), indices=np.array([0, 1]),
                           codes=codes, bits=8, out_bits=8, zero_point_in=0, zero_point_out=0,
                           multiplier=np.array([(1 << 50) + 7, 1]), shift=np.array([50, 0]),
                           mult_bits=52)
    assert np.array_equal(kernels.stage_output(st_), _reference_stage(st_))


# --- requantization of layers --------------------------------------------------------------


def _target(draw: Any) -> QParams:
    if draw(st.booleans()):
        return QParams("bt", 2, 0, 3, np.array(0.1), np.array(draw(st.integers(0, 255))),
                       level=85, grid_max=255,
                       thresholds=rules.bt_thresholds(draw(st.integers(-3, 3))))
    bits = draw(st.sampled_from([2, 4, 8]))
    signed = draw(st.booleans())
    qmin, qmax = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    zero = draw(st.integers(qmin, qmax))
    return QParams("t", bits, qmin, qmax, np.array(0.1), np.array(zero))


@st.composite
def requant_cases(draw: Any) -> tuple[Requant, list[Any]]:
    n, c = draw(st.integers(1, 12)), draw(st.integers(1, 9))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    nterms = draw(st.integers(1, 4))
    shapes = [(), (n, 1), (c,)]
    factors = []
    for _ in range(nterms):
        shape = shapes[draw(st.integers(0, 2))]
        scale = 10.0 ** draw(st.integers(-6, 1))
        factors.append(rng.uniform(0.0, 2.0, size=shape) * scale)
    bias = rng.normal(0, 50, size=c) if draw(st.booleans()) else None
    target = _target(draw)
    rq = Requant.build(factors, target, bias=bias, relu=draw(st.booleans()))
    values: list[Any] = []
    for _ in range(nterms):
        kind = draw(st.sampled_from(["raw", "centred", "bounded", "neg"]))
        if kind == "raw":
            values.append(rng.integers(-5000, 5000, size=(n, c)))
        elif kind == "bounded":
            v = rng.integers(-5000, 5000, size=(n, c))
            values.append(kernels.Bounded(v, int(np.abs(v).max()) + draw(st.integers(0, 99))))
        else:
            level = draw(st.sampled_from([1, 85]))
            sign = -1 if kind == "neg" else 1
            values.append(kernels.Centred(rng.integers(0, 256, size=(n, c)), sign * level,
                                          sign * draw(st.integers(0, 255))))
    return rq, values


def _materialise(v: Any) -> np.ndarray:
    if isinstance(v, kernels.Centred):
        return v.level * v.codes - v.zero
    return v.values if isinstance(v, kernels.Bounded) else v


@both_paths
@settings(max_examples=200, deadline=None)
@given(case=requant_cases())
def test_requant_equals_its_reference(case: tuple[Requant, list[Any]], compiled: bool) -> None:
    rq, values = case
    want = rq.reference(*[_materialise(v) for v in values])
    with on_path(compiled):
        got = rq(*values)
    assert got.dtype == np.int64 and np.array_equal(got, want)
    with kernels.reference_path():
        assert np.array_equal(rq(*values), want)


@settings(max_examples=150, deadline=None)
@given(case=requant_cases(), block_bytes=st.sampled_from([8, 40, 96]))
def test_requant_in_small_row_blocks_equals_its_reference(case: tuple[Requant, list[Any]],
                                                          block_bytes: int) -> None:
    """The blocked requantization (one row block after another, in cache) with blocks of 1 to
    a few rows: every block boundary must give the reference's codes."""
    from unittest import mock

    rq, values = case
    want = rq.reference(*[_materialise(v) for v in values])
    with mock.patch.object(kernels, "BLOCK_BYTES", block_bytes), jit.disabled():
        got = rq(*values)
        again = rq(*values)  # a second call: the recycled result and scratch arrays
    assert got.dtype == np.int64 and np.array_equal(got, want) and np.array_equal(again, want)


def test_fixed_scale_product_boundary_and_left_shifts() -> None:
    fs = FixedScale(np.array((1 << 24) - 1), np.array(30))
    vmax = ((1 << (rules.MAX_PRODUCT_WIDTH - 1)) - 1) // ((1 << 24) - 1)
    v = np.array([[vmax, -vmax, 3]])
    assert np.array_equal(fs.apply(v), fs.reference(v))
    for f in (fs.apply, fs.reference):
        with pytest.raises(OverflowError, match="rescale product exceeds"):
            f(v * 2)
    big = FixedScale.from_real(np.array([3.0e7, 0.5]))  # a factor >= 2**24: a left shift
    w = np.array([[5, -7], [0, 123]])
    assert np.array_equal(big.apply(w), big.reference(w))


def test_requant_rejects_a_sum_that_could_leave_int64() -> None:
    """Four terms each just inside the product check can sum beyond int64: an error, never a
    wrapped result."""
    tgt = QParams("t", 8, 0, 255, np.array(1.0), np.array(0))
    rq = Requant(tuple(FixedScale(np.array((1 << 24) - 1), np.array(0)) for _ in range(4)),
                 None, False, 16, tgt)
    v = np.array([[((1 << 61) - 1) // ((1 << 24) - 1)]])
    with pytest.raises(OverflowError, match="may exceed int64"):
        rq(v, v, v, v)


def test_bounded_input_with_a_loose_bound_is_scanned() -> None:
    fs = FixedScale(np.array((1 << 24) - 1), np.array(30))
    rq = Requant((fs,), None, False, 0, QParams("t", 8, 0, 255, np.array(1.0), np.array(7)))
    v = np.array([[12345, -6789]])
    loose = kernels.Bounded(v, 1 << 60)  # too large to pass: the exact max |v| decides
    assert np.array_equal(rq(loose), rq.reference(v))


# --- matmul --------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**31), xmax=st.sampled_from([1, 255, 20_000, 2**27]),
       sparse=st.booleans(), centred=st.booleans())
def test_int_matmul_is_exact(seed: int, xmax: int, sparse: bool, centred: bool) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-xmax, xmax + 1, size=(7, 11))
    w = rng.integers(-128, 128, size=(5, 11))
    want = x @ w.T  # numpy int64 matmul: exact integers
    assert np.array_equal(int_matmul_reference(x, w), want)
    if sparse:
        x[rng.random(x.shape) < 0.5] = 0
        got = int_matmul(sp.csr_matrix(x), w)
        want = x @ w.T
    elif centred:
        codes = x + xmax  # codes >= 0 with zero point xmax
        got = int_matmul(kernels.Centred(codes, 1, xmax), w)
    else:
        got = int_matmul(x, w)
    assert got.dtype == np.int64 and np.array_equal(got, want)


def test_int_matmul_float_boundaries() -> None:
    """Partial sums just below 2**24 run in float32, from 2**24 in float64, and 2**53
    raises; every result is exact."""
    k = 4
    for bound in (2**24 - 1, 2**24, 2**53 - 1):
        xmax = bound // (127 * k)
        x = np.full((3, k), xmax, dtype=np.int64)
        x[1] = -xmax
        w = np.full((2, k), 127, dtype=np.int64)
        w[1] = -127
        assert np.array_equal(int_matmul(x, w), x @ w.T)
    x = np.full((1, 1), 2**53 // 127 + 1, dtype=np.int64)
    with pytest.raises(OverflowError, match="2\\*\\*53"):
        int_matmul(x, np.array([[127]]))
    with pytest.raises(OverflowError, match="2\\*\\*53"):
        int_matmul_reference(x, np.array([[127]]))


def test_int_matmul_falls_back_to_float64_below_highest_precision() -> None:
    before = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision("medium")
        x = np.arange(-40, 40).reshape(8, 10) * 1001
        w = np.arange(-15, 15).reshape(3, 10)
        assert np.array_equal(int_matmul(x, w), x @ w.T)
    finally:
        torch.set_float32_matmul_precision(before)


# --- whole models --------------------------------------------------------------------------

_CASES = [
    ("gcn", "uniform8"), ("gcn", "uniform4"), ("gcn", "uniform2"), ("sage", "uniform4"),
    ("gin", "uniform8"), ("decoupled", "uniform2"), ("gcn", "bt_star"), ("sage", "bt"),
    ("decoupled", "bt"), ("smp", "qlr8"), ("smp", "bt_star"),
    ("gcn", "mixed"), ("sage", "mixed"), ("decoupled", "mixed"), ("smp", "mixed"),
]

#: degree-aware node buckets (INT2 with the top-degree nodes at INT8, two buckets at INT4 too)
_MIXED = {"bits": 2, "nodes": {"by": "degree_quantile", "bits": [2, 4, 8], "edges": [0.6, 0.9]}}


def _model(cora: Any, name: str, prec: str) -> Any:
    from qgnn.model.nn import ModelConfig, build_model
    from qgnn.model.quant import PrecisionConfig
    from qgnn.model.quant.bit_truncation import bt_precision
    from qgnn.model.train import calibrate

    if prec.startswith("uniform"):
        p: Any = PrecisionConfig.uniform(int(prec[7:]))
    elif prec == "qlr8":
        p = PrecisionConfig.from_dict({"bits": 8, "range": "qlr"})
    elif prec == "mixed":
        p = PrecisionConfig.from_dict(_MIXED)
    else:
        p = bt_precision(prec)
    cfg = (ModelConfig(name="decoupled", propagation="smp", k=2) if name == "smp"
           else ModelConfig(name=name, k=3))
    torch.manual_seed(0)
    m = build_model(cfg, cora.num_features, int(cora.y.max()) + 1, p)
    calibrate(m, cora)
    m.eval()
    return m


@both_paths
@pytest.mark.parametrize(("name", "prec"), _CASES)
def test_model_forward_equals_the_reference_path(cora: Any, name: str, prec: str,
                                                 compiled: bool) -> None:
    """Every traced tensor and every aggregation stage of the vectorised forward pass equals
    the straightforward reference path (int64 scipy sums, rules.requantize, new arrays)."""
    from qgnn.model.integer.convert import model_input, to_integer

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        im = to_integer(_model(cora, name, prec), cora)
        x = model_input(cora)
        with kernels.reference_path():
            want = im.forward(x)
            want_trace = dict(im.trace)
            want_stages = [s.compute()[1] for s in im.stages()]
            want_smp = list(im.smp_trace)
        for _ in range(2):  # twice: the reused buffers must not leak between passes
            with on_path(compiled):
                got = im.forward(x)
            assert np.array_equal(got, want)
            assert im.trace.keys() == want_trace.keys()
            for k, (codes, _) in want_trace.items():
                assert im.trace[k][0].dtype == np.int64, k
                assert np.array_equal(im.trace[k][0], codes), k
            assert [np.array_equal(s.compute()[1], w) for s, w in
                    zip(im.stages(), want_stages, strict=True)] == [True] * len(want_stages)
            assert im.smp_trace == want_smp
    finally:
        torch.set_num_threads(before)
