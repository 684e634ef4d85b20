"""Tests for model.quant.quantizer (Quantizer, IntegerQuantParams)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.quant.quantizer import ALPHA_GRID, IntegerQuantParams, Quantizer
from qgnn.model.quant.spec import QuantSpec

METHODS = ["minmax", "percentile", "qlr", "lsq"]
GRANS = ["tensor", "channel", "node"]
CONFIGS = [(m, sym, g) for m in METHODS for sym in (False, True) for g in GRANS]
CONFIG_IDS = [f"{m}-{'sym' if s else 'asym'}-{g}" for m, s, g in CONFIGS]


def make_q(method: str, sym: bool, gran: str, bits: int, **kw) -> Quantizer:
    return Quantizer(QuantSpec(bits=bits, symmetric=sym, granularity=gran, range=method, **kw),
                     channel_axis=-1, name="t")


def calibrate(q: Quantizer, x: torch.Tensor) -> None:
    q.eval()
    with torch.no_grad():
        q(x)


def eval_out(q: Quantizer, x: torch.Tensor) -> torch.Tensor:
    q.eval()
    with torch.no_grad():
        return q(x)


def group_shape(gran: str, n: int, f: int) -> tuple[int, int]:
    return {"tensor": (1, 1), "channel": (1, f), "node": (n, 1)}[gran]


def is_dynamic(method: str, gran: str) -> bool:
    """Per-node ranges from the data itself (everything but LSQ)."""
    return gran == "node" and method != "lsq"


def qrange(bits: int, sym: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if sym else (0, (1 << bits) - 1)


def sz(q: Quantizer, x: torch.Tensor, gran: str) -> tuple[torch.Tensor, torch.Tensor]:
    s, z = q.scale_zero(x)
    shape = group_shape(gran, *x.shape)
    return s.reshape(shape), z.reshape(shape)


def data(seed: int, n: int, f: int, spread: float, shift: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, f, generator=g) * spread + shift


# ------------------------------------------------------------------ round trip (property)


@pytest.mark.parametrize(("method", "sym", "gran"), CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=8, deadline=None)
@given(
    bits=st.integers(2, 8),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 10),
    f=st.integers(1, 6),
    spread=st.floats(0.05, 20.0),
    shift=st.floats(-2.0, 2.0),
)
def test_round_trip_within_half_step(method, sym, gran, bits, seed, n, f, spread, shift) -> None:
    qmin, qmax = qrange(bits, sym)
    q = make_q(method, sym, gran, bits)
    x0 = data(seed, n, f, spread, shift * spread)
    calibrate(q, x0)
    g = torch.Generator().manual_seed(seed + 1)
    if is_dynamic(method, gran):
        x = x0.clone()
    else:
        s, z = sz(q, x0, gran)
        lo, hi = (qmin - z) * s, (qmax - z) * s
        x = lo + torch.rand(n, f, generator=g) * (hi - lo)
    x[torch.rand(n, f, generator=g) < 0.2] = 0.0
    x[0, 0] = 0.0
    s, z = sz(q, x, gran)

    # scale and zero point
    assert s.dtype == torch.float32 and z.dtype == torch.int64
    assert torch.all(s > 0)
    assert torch.all((z >= qmin) & (z <= qmax))
    if sym:
        assert torch.all(z == 0)

    y = eval_out(q, x)
    lo, hi = (qmin - z) * s, (qmax - z) * s
    slack = 1e-5 * s  # points at the range ends that rounding put a hair outside
    inside = (x >= lo - slack) & (x <= hi + slack)
    if method in ("minmax", "lsq") or not is_dynamic(method, gran):
        # (per-node QLR and percentile ranges clip part of the row on purpose)
        assert inside.float().mean() > 0.5
    err = (y - x).abs()
    tol = s / 2 * (1 + 1e-5) + 1e-6 * x.abs()
    assert torch.all(err[inside] <= tol.expand_as(x)[inside])
    # real 0 is exact
    assert torch.all(y[x == 0] == 0)
    # codes in range, and the output is exactly (code - z) * s in float32
    codes = q.quantize_codes(x)
    assert codes.dtype == torch.int64
    assert torch.all((codes >= qmin) & (codes <= qmax))
    assert torch.equal(y, (codes - z).to(torch.float32) * s)
    # outside the range the output saturates at the range ends
    if not is_dynamic(method, gran):
        big = eval_out(q, (hi + 3 * s).expand(n, f).contiguous())
        small = eval_out(q, (lo - 3 * s).expand(n, f).contiguous())
        torch.testing.assert_close(big, hi.expand(n, f), rtol=1e-6, atol=0)
        torch.testing.assert_close(small, lo.expand(n, f), rtol=1e-6, atol=0)


# -------------------------------------------------------------- hand-computed calibration


def test_minmax_2bit_asymmetric_hand_computed() -> None:
    q = make_q("minmax", False, "tensor", 2)
    x = torch.tensor([[-1.0, 0.5, 2.0]])
    y = eval_out(q, x)
    # lo = -1, hi = 2 -> s = 3 / 3 = 1, z = 0 - (-1)/1 = 1
    s, z = q.scale_zero()
    assert s.tolist() == [1.0] and z.tolist() == [1]
    # codes: round([-1, 0.5, 2]) + 1 = [0, 1 (half to even: 0.5 -> 0), 3]
    assert q.quantize_codes(x).tolist() == [[0, 1, 3]]
    assert y.tolist() == [[-1.0, 0.0, 2.0]]


def test_minmax_positive_only_range_includes_zero() -> None:
    q = make_q("minmax", False, "tensor", 8)
    calibrate(q, torch.tensor([[2.0, 5.1, 3.0]]))
    # lo = min(2, 0) = 0 -> s = 5.1/255, z = 0
    s, z = q.scale_zero()
    assert s.item() == pytest.approx(5.1 / 255, rel=1e-6)
    assert z.item() == 0


def test_minmax_negative_only_range_zero_point_at_qmax() -> None:
    q = make_q("minmax", False, "tensor", 4)
    calibrate(q, torch.tensor([[-3.0, -1.5]]))
    # lo = -3, hi = 0 -> s = 3/15 = 0.2, z = 0 + 3/0.2 = 15
    s, z = q.scale_zero()
    assert s.item() == pytest.approx(0.2, rel=1e-6)
    assert z.item() == 15


def test_minmax_symmetric_per_channel_hand_computed() -> None:
    q = make_q("minmax", True, "channel", 4)  # qmin=-8, qmax=7
    x = torch.tensor([[1.2, -4.4], [-2.0, 8.0], [0.5, 3.5]])
    calibrate(q, x)
    s, z = q.scale_zero()
    # col 0: absmax 2 -> s = 2/7; col 1: absmax 8 -> s = 8/7
    torch.testing.assert_close(s, torch.tensor([2 / 7, 8 / 7]))
    assert z.tolist() == [0, 0]
    # x / s: col 0 = [4.2, -7, 1.75] -> [4, -7, 2]; col 1 = [-3.85, 7, 3.0625] -> [-4, 7, 3]
    assert q.quantize_codes(x).tolist() == [[4, -4], [-7, 7], [2, 3]]


def test_weight_channel_axis_zero_groups_rows() -> None:
    q = Quantizer(QuantSpec(bits=8, symmetric=True, granularity="channel", range="minmax"),
                  channel_axis=0)
    w = torch.tensor([[1.0, -2.54], [0.5, 0.25], [127.0, 3.0]])
    calibrate(q, w)
    s, _ = q.scale_zero()
    # one scale per output channel (row): absmax / 127
    torch.testing.assert_close(s, torch.tensor([2.54 / 127, 0.5 / 127, 1.0]))
    assert q.integer_params().axis == 0


def test_minmax_per_node_uses_each_rows_range() -> None:
    q = make_q("minmax", False, "node", 8)
    x = torch.tensor([[-1.0, 1.55], [0.0, 2.55], [-5.1, -0.1]])
    calibrate(q, x)
    s, z = q.scale_zero(x)
    # row ranges [-1, 1.55], [0, 2.55], [-5.1, 0] -> s = 2.55/255 = 0.01, 0.01, 0.02
    torch.testing.assert_close(s, torch.tensor([0.01, 0.01, 0.02]))
    # z = -lo / s = 100, 0, 255
    assert z.tolist() == [100, 0, 255]
    # the range comes from the tensor being quantized, not from the calibration batch
    x2 = x * 2
    s2, z2 = q.scale_zero(x2)
    torch.testing.assert_close(s2, torch.tensor([0.02, 0.02, 0.04]))
    assert z2.tolist() == [100, 0, 255]
    with pytest.raises(ValueError, match="pass the tensor"):
        q.scale_zero()


def test_percentile_hand_computed() -> None:
    q = make_q("percentile", False, "tensor", 8, percentile=90.0)
    x = torch.linspace(-50.0, 70.0, 121).reshape(1, -1)
    calibrate(q, x)
    # 10th / 90th percentiles of -50, -49, ..., 70 are -50 + 12 = -38 and -50 + 108 = 58
    torch.testing.assert_close(q.running_lo, torch.tensor([-38.0]))
    torch.testing.assert_close(q.running_hi, torch.tensor([58.0]))
    s, z = q.scale_zero()
    # s = 96 / 255 = 0.376471; z = round(38 / s) = round(100.94) = 101
    assert s.item() == pytest.approx(96 / 255, rel=1e-6)
    assert z.item() == 101
    # values beyond the percentile range saturate
    y = eval_out(q, torch.tensor([[70.0, -50.0]]))
    torch.testing.assert_close(y, torch.tensor([[(255 - z.item()) * s.item(), -z.item() * s.item()]]))


def test_momentum_running_range_after_two_batches() -> None:
    m = 0.25
    q = make_q("minmax", False, "tensor", 8, momentum=m)
    q.train()
    x1 = torch.tensor([[-2.0, 1.0, 4.0]])
    x2 = torch.tensor([[-1.0, 8.0, 0.5]])
    q(x1)
    # first batch initialises the range to its own: (-2, 4); its update keeps it there
    torch.testing.assert_close(q.running_lo, torch.tensor([-2.0]))
    torch.testing.assert_close(q.running_hi, torch.tensor([4.0]))
    q(x2)
    # lo = 0.75 * -2 + 0.25 * -1 = -1.75; hi = 0.75 * 4 + 0.25 * 8 = 5.0
    torch.testing.assert_close(q.running_lo, torch.tensor([-1.75]))
    torch.testing.assert_close(q.running_hi, torch.tensor([5.0]))
    s, z = q.scale_zero()
    # s = 6.75 / 255 = 0.0264706; z = round(1.75 / s) = round(66.11) = 66
    assert s.item() == pytest.approx(0.0264706, rel=1e-5)
    assert z.item() == 66
    # eval mode does not update the statistics
    q.eval()
    q(torch.tensor([[-100.0, 100.0]]))
    torch.testing.assert_close(q.running_hi, torch.tensor([5.0]))
    # a positive-only batch contributes lo = 0: lo = 0.75 * -1.75 = -1.3125
    q.train()
    q(torch.tensor([[1.0, 2.0]]))
    torch.testing.assert_close(q.running_lo, torch.tensor([-1.3125]))
    torch.testing.assert_close(q.running_hi, torch.tensor([0.75 * 5.0 + 0.25 * 2.0]))


def test_momentum_per_channel() -> None:
    q = make_q("minmax", True, "channel", 8, momentum=0.5)
    q.train()
    q(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
    q(torch.tensor([[-5.0, 1.0], [1.0, 1.0]]))
    # col 0: lo = 0.5*0 + 0.5*-5 = -2.5, hi = 0.5*3 + 0.5*1 = 2
    # col 1: lo = 0.5*-2 + 0.5*0 = -1,   hi = 0.5*0.5 + 0.5*1 = 0.75
    torch.testing.assert_close(q.running_lo, torch.tensor([-2.5, -1.0]))
    torch.testing.assert_close(q.running_hi, torch.tensor([2.0, 0.75]))
    s, _ = q.scale_zero()
    torch.testing.assert_close(s, torch.tensor([2.5 / 127, 1.0 / 127]))


# -------------------------------------------------------------------- QLR / LSQ init


def _brute_force_mse(xg: np.ndarray, bits: int, sym: bool) -> np.ndarray:
    """MSE per α in ALPHA_GRID of quantizing the 1-D array ``xg`` (float64, by hand)."""
    qmin, qmax = qrange(bits, sym)
    lo, hi = min(xg.min(), 0.0), max(xg.max(), 0.0)
    errs = []
    for a in ALPHA_GRID:
        la, ha = lo * a, hi * a
        if sym:
            s = max(max(abs(la), abs(ha)) / max(qmax, 1), 1e-8)
            z = 0.0
        else:
            s = max((ha - la) / (qmax - qmin), 1e-8)
            z = min(max(np.round(qmin - la / s), qmin), qmax)
        qq = np.clip(np.round(xg / s) + z, qmin, qmax)
        errs.append(np.mean(((qq - z) * s - xg) ** 2))
    return np.array(errs)


@pytest.mark.parametrize("sym", [False, True])
@pytest.mark.parametrize("gran", ["tensor", "channel"])
@settings(max_examples=8, deadline=None)
@given(bits=st.integers(2, 8), seed=st.integers(0, 2**31 - 1))
def test_qlr_alpha_minimises_mse_over_grid(sym, gran, bits, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(30, 3, generator=g)
    x[int(seed % 30), int(seed % 3)] = 12.0  # an outlier makes α < 1 worthwhile
    q = make_q("qlr", sym, gran, bits)
    calibrate(q, x)
    alpha = q.alpha.detach().numpy()
    grid = np.array(ALPHA_GRID, dtype=np.float32)
    groups = [x.numpy().reshape(-1)] if gran == "tensor" else [x[:, j].numpy() for j in range(3)]
    assert alpha.shape == (len(groups),)
    for a, xg in zip(alpha, groups, strict=True):
        (idx,) = np.nonzero(grid == a)  # α is one of the grid values
        assert idx.size == 1
        errs = _brute_force_mse(xg.astype(np.float64), bits, sym)
        assert errs[idx[0]] <= errs.min() * (1 + 1e-4) + 1e-12


def test_qlr_outlier_gives_alpha_below_one_and_scale_follows_alpha() -> None:
    x = torch.cat([torch.linspace(-1, 1, 20001), torch.tensor([40.0])]).reshape(-1, 1)
    errs = _brute_force_mse(x.numpy().reshape(-1).astype(np.float64), 4, False)
    best = ALPHA_GRID[int(np.argmin(errs))]
    assert best < 0.9  # property of this data set (computed above by brute force)
    q = make_q("qlr", False, "tensor", 4)
    calibrate(q, x)
    a = float(q.alpha.detach())
    assert a == pytest.approx(best, abs=1e-6)
    s, z = q.scale_zero()
    # s = (hi - lo) * α / 15 with the tracked range [-1, 40]
    assert s.item() == pytest.approx(41.0 * a / 15, rel=1e-5)
    assert z.item() == round(1.0 * a / s.item())


@pytest.mark.parametrize("sym", [False, True])
def test_lsq_initialised_from_grid_search(sym) -> None:
    torch.manual_seed(5)
    x = torch.randn(200, 1)
    x[7, 0] = 9.0
    bits = 3
    q = make_q("lsq", sym, "tensor", bits)
    calibrate(q, x)
    errs = _brute_force_mse(x.numpy().reshape(-1).astype(np.float64), bits, sym)
    a = ALPHA_GRID[int(np.argmin(errs))]
    qmin, qmax = qrange(bits, sym)
    lo, hi = min(float(x.min()), 0.0), float(x.max())
    if sym:
        exp_s = max(abs(lo), hi) * a / qmax
        assert q.offset is None
    else:
        exp_s = (hi - lo) * a / (qmax - qmin)
        # the offset is the lower end of the range in units of the step
        assert q.offset.item() == pytest.approx(lo * a / exp_s, rel=1e-5)
    assert math.exp(q.log_step.item()) == pytest.approx(exp_s, rel=1e-5)
    assert q.alpha is None and q.log_step.requires_grad


def test_lsq_module_gradient_scale_hand_computed() -> None:
    # 3-bit symmetric LSQ per tensor (qmin=-4, qmax=3), 4 elements: g = 1/sqrt(4 * 3)
    q = make_q("lsq", True, "tensor", 3)
    calibrate(q, torch.ones(1, 4))
    q.train()
    with torch.no_grad():
        q.log_step.fill_(0.0)  # s = 1
    x = torch.tensor([[0.3, 2.6, -5.0, 1.0]], requires_grad=True)
    y = q(x)
    assert y.tolist() == [[0.0, 3.0, -4.0, 1.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0, 0.0, 1.0]]
    # dL/ds = -0.3 + 0.4 - 4 + 0 = -3.9; dL/dlog = -3.9 / sqrt(12) = -1.125833
    assert q.log_step.grad.item() == pytest.approx(-3.9 / math.sqrt(12), abs=1e-5)


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_lsq_asymmetric_training_is_scale_free(granularity: str) -> None:
    """The same data at two magnitudes (factor 2**-7) trained with Adam on the same loss keeps
    the same zero points and steps in the ratio 2**-7: both LSQ parameters (log step and the
    offset in units of the step) are scale-free. With an offset in real units, Adam moves it by
    about lr per update whatever the magnitude, i.e. by many steps of the small copy."""
    torch.manual_seed(0)
    x = torch.randn(64, 6) * 1.5 + 0.7
    up = torch.randn(64, 6)
    c = 2.0**-7
    qs = []
    for scale in (1.0, c):
        q = make_q("lsq", False, granularity, 3)
        calibrate(q, x * scale)
        q.train()
        opt = torch.optim.Adam(q.parameters(), lr=0.05)
        for _ in range(20):
            opt.zero_grad()
            (q(x * scale) * up).sum().backward()
            opt.step()
        qs.append(q)
    (s1, z1), (s2, z2) = qs[0].scale_zero(), qs[1].scale_zero()
    assert torch.equal(z1, z2)
    torch.testing.assert_close(s2, s1 * c, rtol=2e-3, atol=0.0)
    # and the parameters did move
    fresh = make_q("lsq", False, granularity, 3)
    calibrate(fresh, x)
    assert not torch.allclose(fresh.log_step, qs[0].log_step)


def test_qlr_alpha_receives_gradient() -> None:
    q = make_q("qlr", False, "tensor", 3)
    x = torch.randn(50, 4) * 2
    calibrate(q, x)
    q.train()
    (q(x) * torch.randn_like(x)).sum().backward()
    assert q.alpha.grad is not None and q.alpha.grad.abs().sum() > 0


# ------------------------------------------------------------------------- integer form


@pytest.mark.parametrize(("method", "sym", "gran"), CONFIGS, ids=CONFIG_IDS)
@settings(max_examples=6, deadline=None)
@given(
    bits=st.integers(2, 8),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(2, 8),
    f=st.integers(1, 5),
    spread=st.floats(0.01, 50.0),
)
def test_integer_params_reproduce_float_quantizer(method, sym, gran, bits, seed, n, f, spread):
    qmin, qmax = qrange(bits, sym)
    q = make_q(method, sym, gran, bits)
    x0 = data(seed, n, f, spread, 0.3 * spread)
    calibrate(q, x0)
    ip = q.integer_params(x0)
    assert isinstance(ip, IntegerQuantParams)
    assert (ip.bits, ip.signed, ip.qmin, ip.qmax, ip.granularity) == (bits, sym, qmin, qmax, gran)
    assert ip.axis == {"tensor": None, "channel": -1, "node": 0}[gran]
    s, z = q.scale_zero(x0)
    ngroups = {"tensor": 1, "channel": f, "node": n}[gran]
    assert ip.scale.shape == (ngroups,) and ip.zero_point.shape == (ngroups,)
    # the scale is exactly the float32 step, and exactly M * 2^-shift
    np.testing.assert_array_equal(ip.scale, s.numpy().astype(np.float64))
    np.testing.assert_array_equal(ip.zero_point, z.numpy())
    assert np.all(ip.scale_mult < 2**24) and np.all(ip.scale_mult > 0)
    assert np.array_equal(np.ldexp(ip.scale_mult.astype(np.float64), -ip.scale_shift), ip.scale)
    assert np.array_equal(ip.scale_mult * 2.0 ** (-ip.scale_shift.astype(np.float64)), ip.scale)

    # random data: integer codes equal the float quantizer's codes, dequantized values equal
    # the eval-mode output exactly
    codes = ip.quantize(x0.numpy())
    assert codes.dtype == np.int64
    np.testing.assert_array_equal(codes, q.quantize_codes(x0).numpy())
    y = eval_out(q, x0)
    np.testing.assert_array_equal(ip.dequantize(codes).astype(np.float32), y.numpy())

    if not is_dynamic(method, gran):
        # grid points x = (q - z) * s map to q and back to themselves
        g = torch.Generator().manual_seed(seed + 7)
        shape = group_shape(gran, n, f)
        qc = torch.randint(qmin, qmax + 1, (n, f), generator=g)
        qc[0, 0], qc[-1, -1] = qmin, qmax
        xg = (qc - z.reshape(shape)).to(torch.float32) * s.reshape(shape)
        np.testing.assert_array_equal(ip.quantize(xg.numpy()), qc.numpy())
        deq = ip.dequantize(qc.numpy()).astype(np.float32)
        np.testing.assert_array_equal(deq, eval_out(q, xg).numpy())
        np.testing.assert_array_equal(deq, xg.numpy())
        # random data of another distribution
        xr = data(seed + 3, n, f, spread * 2, 0.0)
        np.testing.assert_array_equal(ip.quantize(xr.numpy()), q.quantize_codes(xr).numpy())


def test_integer_params_hand_computed() -> None:
    q = make_q("minmax", False, "tensor", 2)
    calibrate(q, torch.tensor([[-1.0, 2.0]]))  # s = 1, z = 1 (see above)
    ip = q.integer_params()
    assert ip.scale.tolist() == [1.0]
    assert (ip.scale_mult.tolist(), ip.scale_shift.tolist()) == ([1], [0])
    assert ip.zero_point.tolist() == [1]
    np.testing.assert_array_equal(ip.quantize(np.array([-3.0, -1.0, 0.4, 0.6, 9.0])),
                                  [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(ip.dequantize(np.array([0, 1, 2, 3])), [-1.0, 0.0, 1.0, 2.0])


# ------------------------------------------------------------------------------ FP32


def test_fp32_is_identity_and_has_no_integer_form() -> None:
    q = Quantizer(QuantSpec(bits=32, range="minmax"))
    assert not q.enabled
    x = torch.randn(5, 3)
    q.train()
    y = q(x)
    assert y is x
    q.eval()
    assert q(x, protect=torch.ones(5, dtype=torch.bool)) is x
    assert not bool(q.initialized)
    assert list(q.parameters()) == []
    with pytest.raises(ValueError, match="FP32"):
        q.integer_params()
    with pytest.raises(ValueError, match="FP32"):
        q.scale_zero()
    assert "fp32" in repr(q)


def test_uncalibrated_scale_zero_raises() -> None:
    q = make_q("minmax", False, "tensor", 4)
    with pytest.raises(RuntimeError, match="not calibrated"):
        q.scale_zero()


def test_parameters_created_on_first_forward() -> None:
    q = make_q("lsq", False, "channel", 4)
    assert list(q.parameters()) == []
    calibrate(q, torch.randn(10, 3))
    names = sorted(n for n, _ in q.named_parameters())
    assert names == ["log_step", "offset"]
    assert q.log_step.shape == (3,) and q.offset.shape == (3,)
    qs = make_q("lsq", True, "node", 4)
    calibrate(qs, torch.randn(10, 3))
    assert [n for n, _ in qs.named_parameters()] == ["log_step"]
    assert qs.log_step.shape == (10,)
    qq = make_q("qlr", True, "tensor", 4)
    calibrate(qq, torch.randn(10, 3))
    assert [n for n, _ in qq.named_parameters()] == ["alpha"]
    qm = make_q("percentile", True, "tensor", 4)
    calibrate(qm, torch.randn(10, 3))
    assert list(qm.parameters()) == []


# --------------------------------------------------------------------- state dict


@pytest.mark.parametrize(("method", "sym", "gran"), CONFIGS, ids=CONFIG_IDS)
def test_state_dict_round_trip(method, sym, gran) -> None:
    torch.manual_seed(11)
    q = make_q(method, sym, gran, 4)
    x = torch.randn(9, 4) * 2
    calibrate(q, x)
    # move away from the calibration state: a couple of training steps
    q.train()
    for _ in range(2):
        y = q(x * 1.5 + 0.3)
        if list(q.parameters()):
            y.square().sum().backward()
            with torch.no_grad():
                for p in q.parameters():
                    p -= 0.05 * p.grad.sign()
                    p.grad = None
    sd = {k: v.clone() for k, v in q.state_dict().items()}
    fresh = make_q(method, sym, gran, 4)
    fresh.load_state_dict(sd)
    assert bool(fresh.initialized)
    assert set(fresh.state_dict()) == set(sd)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, sd[k]), k
    x2 = torch.randn(9, 4) * 3 - 1
    assert torch.equal(eval_out(fresh, x2), eval_out(q, x2))
    if not is_dynamic(method, gran):
        # a fresh quantizer calibrating on x2 itself would differ: the state was really loaded
        other = make_q(method, sym, gran, 4)
        assert not torch.equal(eval_out(other, x2), eval_out(q, x2))


# ---------------------------------------------------------------------------- errors


def test_channel_count_mismatch_raises() -> None:
    q = make_q("minmax", False, "channel", 4)
    calibrate(q, torch.randn(5, 3))
    with pytest.raises(ValueError, match="3 channels"):
        q(torch.randn(5, 4))


def test_per_node_lsq_node_count_mismatch_raises() -> None:
    q = make_q("lsq", False, "node", 4)
    calibrate(q, torch.randn(5, 3))
    with pytest.raises(ValueError, match="5 nodes"):
        q(torch.randn(6, 3))


def test_extra_repr() -> None:
    q = make_q("qlr", True, "channel", 5)
    assert "t: int5 sym per-channel qlr" in repr(q)


# -------------------------------------------- LSQ: forward value vs gradient-scale rounding


def test_lsq_eval_output_independent_of_autograd_mode() -> None:
    q = make_q("lsq", True, "tensor", 4)
    x = torch.linspace(-5.0, 5.0, 16).reshape(4, 4)
    calibrate(q, x)
    with torch.no_grad():
        q.log_step.fill_(-0.049)  # exp(-0.049) = 0.95218116 (float32)
    q.eval()
    with torch.no_grad():
        y_nograd = q(x)
    y_grad = q(x).detach()
    assert torch.equal(y_nograd, y_grad)


def test_lsq_integer_params_without_x_match_forward() -> None:
    q = make_q("lsq", True, "tensor", 4)
    x = torch.linspace(-5.0, 5.0, 16).reshape(4, 4)
    calibrate(q, x)
    with torch.no_grad():
        q.log_step.fill_(-0.114)
    y = eval_out(q, x)
    ip = q.integer_params()
    assert ip.scale[0] == float(torch.exp(q.log_step.detach())[0])
    np.testing.assert_array_equal(ip.dequantize(ip.quantize(x.numpy())).astype(np.float32),
                                  y.numpy())


# ------------------------------------------------------- sparse stored values (forward_rows)


def _sparse(seed: int, n: int = 9, f: int = 7, density: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, f, generator=g) * 2 + 0.5
    x = x * (torch.rand(n, f, generator=g) < density)
    x[2] = 0.0  # an empty row
    return x


@pytest.mark.parametrize("seed", range(4))
def test_quantiles_with_implicit_zeros_match_dense_quantile(seed: int) -> None:
    from qgnn.model.quant.quantizer import _quantiles_with_zeros, _row_quantiles_with_zeros

    x = _sparse(seed)
    qs = (0.001, 0.25, 0.999)
    nz = x != 0
    got = _quantiles_with_zeros(x[nz], int((~nz).sum()), qs)
    torch.testing.assert_close(torch.stack(got), torch.quantile(x.reshape(-1), torch.tensor(qs)))
    rows = torch.nonzero(nz)[:, 0]
    got_r = _row_quantiles_with_zeros(x[nz], rows, x.shape[0], x.shape[1], qs)
    torch.testing.assert_close(torch.stack(got_r), torch.quantile(x, torch.tensor(qs), dim=1))


@pytest.mark.parametrize("gran", ["tensor", "node"])
@pytest.mark.parametrize("seed", range(3))
def test_forward_rows_percentile_with_num_cols_equals_dense(gran: str, seed: int) -> None:
    x = _sparse(seed)
    nz = x != 0
    rows = torch.nonzero(nz)[:, 0]
    spec = QuantSpec(bits=3, granularity=gran, range="percentile", percentile=90.0)
    qd, qs = Quantizer(spec), Quantizer(spec)
    for q in (qd, qs):
        q.train()
    for _ in range(3):  # calibration, then two momentum updates (per tensor)
        yd = qd(x)
        ys = qs.forward_rows(x[nz], rows, x.shape[0], num_cols=x.shape[1])
        torch.testing.assert_close(ys, yd[nz])
    # without num_cols the implicit zeros are missing from the percentile (the old behaviour)
    q_old = Quantizer(spec)
    q_old.train()
    y_old = q_old.forward_rows(x[nz], rows, x.shape[0])
    assert not torch.equal(y_old, yd[nz])


def test_forward_rows_lsq_gradient_scale_counts_the_whole_matrix() -> None:
    x = _sparse(0, n=30, f=11)
    nz = x != 0
    rows = torch.nonzero(nz)[:, 0]
    spec = QuantSpec(bits=4, range="lsq")
    qd, qs = Quantizer(spec), Quantizer(spec)
    for q in (qd, qs):
        q.eval()
        with torch.no_grad():
            q(x)  # the same (dense) calibration for both
        q.train()
    up = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    (qd(x) * up).sum().backward()
    (qs.forward_rows(x[nz], rows, x.shape[0], num_cols=x.shape[1]) * up[nz]).sum().backward()
    assert qd.log_step.grad.abs().sum() > 0
    # implicit zeros are exact (no step gradient), so only the element count matters
    torch.testing.assert_close(qs.log_step.grad, qd.log_step.grad, rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(qs.offset.grad, qd.offset.grad, rtol=1e-5, atol=1e-9)
