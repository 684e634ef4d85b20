"""Tests for model.quant.ste: straight-through estimators, fused and LSQ fake quantizers.

Expected gradients are derived by hand (comments show the arithmetic) from the clipped STE:
inside the code range dL/dx = 1, dL/ds = round(x/s) - x/s, dL/dz = 0; clipped below/above
dL/dx = 0, dL/ds = qmin - z / qmax - z, dL/dz = -s.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.quant.ste import (
    clipped_ste_fake_quant,
    fake_quant,
    grad_scale,
    lsq_fake_quant,
    round_ste,
)

FQ_FUNCS = [fake_quant, clipped_ste_fake_quant]


def _t(v, grad: bool = True) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float32, requires_grad=grad)


# ------------------------------------------------------------------ round_ste / grad_scale


def test_round_ste_forward_half_to_even_and_identity_grad() -> None:
    x = _t([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 2.51, -2.7])
    y = round_ste(x)
    assert y.tolist() == [0.0, 2.0, 2.0, -0.0, -2.0, 0.0, 3.0, -3.0]
    (y * _t([1, 2, 3, 4, 5, 6, 7, 8], grad=False)).sum().backward()
    assert x.grad.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


def test_grad_scale_scales_gradient() -> None:
    x = _t([1.0, -2.0, 4.0])
    y = grad_scale(x, 0.25)
    torch.testing.assert_close(y.detach(), x.detach())
    (y * _t([1.0, 2.0, 3.0], grad=False)).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([0.25, 0.5, 0.75]))


# ----------------------------------------------------------------- hand-computed gradients


@pytest.mark.parametrize("fq", FQ_FUNCS)
def test_fake_quant_hand_computed_2bit_asymmetric(fq) -> None:
    # 2-bit asymmetric: qmin=0, qmax=3, s=0.5, z=2
    x = _t([0.26, -0.9, 3.0, -2.0])
    s = _t(0.5)
    z = _t(2.0)
    y = fq(x, s, z, 0, 3)
    # x/s = [0.52, -1.8, 6, -4] -> round = [1, -2, 6, -4] -> +z = [3, 0, 8, -2]
    # clamp to [0, 3] -> [3, 0, 3, 0] (3 and 0 are the inclusive range ends: inside)
    # (q - z) * s = [0.5, -1.0, 0.5, -1.0]
    assert y.tolist() == [0.5, -1.0, 0.5, -1.0]
    up = torch.tensor([1.0, 2.0, 3.0, 4.0])
    (y * up).sum().backward()
    # dL/dx = up * inside = [1, 2, 0, 0]
    assert x.grad.tolist() == [1.0, 2.0, 0.0, 0.0]
    # dL/ds = 1*(1 - 0.52) + 2*(-2 + 1.8) + 3*(qmax - z = 1) + 4*(qmin - z = -2)
    #       = 0.48 - 0.4 + 3 - 8 = -4.92
    assert s.grad.item() == pytest.approx(-4.92, abs=1e-5)
    # dL/dz = (3 + 4) * (-s) = -3.5
    assert z.grad.item() == pytest.approx(-3.5, abs=1e-6)


@pytest.mark.parametrize("fq", FQ_FUNCS)
def test_fake_quant_hand_computed_3bit_symmetric_per_element(fq) -> None:
    # 3-bit symmetric: qmin=-4, qmax=3, z=0, per-element steps s=[1, 0.25, 2]
    x = _t([0.3, 0.8, -9.5])
    s = _t([1.0, 0.25, 2.0])
    z = _t([0.0, 0.0, 0.0])
    y = fq(x, s, z, -4, 3)
    # x/s = [0.3, 3.2, -4.75] -> round = [0, 3, -5] -> clamp [-4, 3] -> [0, 3, -4]
    # y = [0, 0.75, -8]
    assert y.tolist() == [0.0, 0.75, -8.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]
    # dL/ds = [0 - 0.3, 3 - 3.2, qmin - z = -4] = [-0.3, -0.2, -4]
    torch.testing.assert_close(s.grad, torch.tensor([-0.3, -0.2, -4.0]), atol=1e-5, rtol=0)
    # dL/dz = [0, 0, -s] = [0, 0, -2]
    torch.testing.assert_close(z.grad, torch.tensor([0.0, 0.0, -2.0]), atol=1e-6, rtol=0)


def test_fake_quant_no_grad_path_equals_grad_path() -> None:
    torch.manual_seed(0)
    x = torch.randn(50, 7) * 3
    s = torch.rand(1, 7) + 0.1
    z = torch.randint(0, 16, (1, 7)).float()
    with torch.no_grad():
        a = fake_quant(x, s, z, 0, 15)
    b = fake_quant(x.clone().requires_grad_(), s, z, 0, 15)
    assert torch.equal(a, b.detach())
    assert a.grad_fn is None


# ---------------------------------------------------------------------------- LSQ, by hand


def test_lsq_symmetric_hand_computed() -> None:
    # 3-bit symmetric: qmin=-4, qmax=3; log_step = 0 -> s = 1; grad_factor 0.25
    x = _t([0.3, 2.6, -5.0])
    log_step = _t([0.0])
    y = lsq_fake_quant(x, log_step, None, [1], -4, 3, 0.25)
    # round(x) = [0, 3, -5] -> clamp [-4, 3] -> [0, 3, -4]
    assert y.tolist() == [0.0, 3.0, -4.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0]
    # dL/ds = (0 - 0.3) + (3 - 2.6) + (qmin - 0 = -4) = -3.9
    # dL/dlog_step = s * dL/ds * g = 1 * -3.9 * 0.25 = -0.975
    assert log_step.grad.item() == pytest.approx(-0.975, abs=1e-5)


def test_lsq_symmetric_step_two_hand_computed() -> None:
    # log_step = ln 2 -> s ~ 2 (float32 exp); qmin=-4, qmax=3; grad_factor 0.1
    x = _t([1.1, -9.4])
    log_step = _t([math.log(2.0)])
    y = lsq_fake_quant(x, log_step, None, [1], -4, 3, 0.1)
    # x/s = [0.55, -4.7] -> round [1, -5] -> clamp [1, -4] -> y = [2, -8]
    torch.testing.assert_close(y.detach(), torch.tensor([2.0, -8.0]))
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0]
    # dL/ds = (1 - 0.55) + (-4) = -3.55; dL/dlog = 2 * -3.55 * 0.1 = -0.71
    assert log_step.grad.item() == pytest.approx(-0.71, abs=1e-5)


def test_lsq_asymmetric_offset_chain_hand_computed() -> None:
    # 2-bit asymmetric: qmin=0, qmax=3; log_step=ln 2 -> s=2; offset=-1.3 steps; g = 0.5
    x = _t([0.4, 5.4, -6.0])
    log_step = _t([math.log(2.0)])
    offset = _t([-1.3])
    y = lsq_fake_quant(x, log_step, offset, [1], 0, 3, 0.5)
    # zr = qmin - offset = 1.3 (the offset is in steps); z = clamp(round(1.3), 0, 3) = 1
    # x/s = [0.2, 2.7, -3]; round [0, 3, -3]; clamp to [qmin - z, qmax - z] = [-1, 2]
    # -> [0, 2, -1] -> y = s * [0, 2, -1] = [0, 4, -2]
    torch.testing.assert_close(y.detach(), torch.tensor([0.0, 4.0, -2.0]))
    y.sum().backward()
    # inside = [1, 0, 0]
    assert x.grad.tolist() == [1.0, 0.0, 0.0]
    # dL/ds = (0 - 0.2) + (qmax - z = 2) + (qmin - z = -1) = 0.8 (z does not depend on s)
    # dL/dz = 2 clipped * (-s) = -4; dz/doffset = -1 -> dL/doffset = 4 * g = 2.0
    # dL/dlog_step = s * 0.8 * g = 0.8
    assert log_step.grad.item() == pytest.approx(0.8, abs=1e-5)
    assert offset.grad.item() == pytest.approx(2.0, abs=1e-5)


def test_lsq_asymmetric_clamped_zero_point_blocks_offset_gradient() -> None:
    # qmin=0, qmax=3, s=1, offset=+2 -> zr = -2 -> round -2 -> clamped to z = 0: no gradient
    x = _t([0.4, 5.0])
    log_step = _t([0.0])
    offset = _t([2.0])
    y = lsq_fake_quant(x, log_step, offset, [1], 0, 3, 1.0)
    # round(x) = [0, 5] -> clamp [0, 3] -> y = [0, 3]
    assert y.tolist() == [0.0, 3.0]
    y.sum().backward()
    assert x.grad.tolist() == [1.0, 0.0]
    # dL/ds = (0 - 0.4) + (qmax - z = 3) = 2.6; dz/d. = 0 (clamped): dL/dlog = 1 * 2.6 * 1
    assert log_step.grad.item() == pytest.approx(2.6, abs=1e-5)
    assert offset.grad.item() == 0.0


def test_lsq_per_group_shape_hand_computed() -> None:
    # two channels (columns), symmetric 2-bit: qmin=-2, qmax=1; s = [1, 1]; g = 1
    x = _t([[0.4, -0.3], [3.0, -0.6]])
    log_step = _t([0.0, 0.0])
    y = lsq_fake_quant(x, log_step, None, [1, 2], -2, 1, 1.0)
    # col 0: round [0, 3] -> clamp [0, 1]; col 1: round [-0, -1] -> [0, -1]
    assert y.tolist() == [[0.0, -0.0], [1.0, -1.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[1.0, 1.0], [0.0, 1.0]]
    # col 0: (0 - 0.4) + (qmax = 1) = 0.6; col 1: (0 + 0.3) + (-1 + 0.6) = -0.1
    torch.testing.assert_close(log_step.grad, torch.tensor([0.6, -0.1]), atol=1e-6, rtol=0)


def test_lsq_matches_autograd_of_reference_chain() -> None:
    """The fused LSQ backward equals autograd through the explicit parameterisation."""
    torch.manual_seed(3)
    x = torch.randn(40, 5) * 2
    ls = (torch.randn(1, 5) * 0.3 - 1).requires_grad_()
    off = (torch.randn(1, 5) * 4 - 3).requires_grad_()
    qmin, qmax, gfac = 0, 15, 0.37
    y = lsq_fake_quant(x, ls, off, [1, 5], qmin, qmax, gfac)
    up = torch.randn_like(x)
    gl, go = torch.autograd.grad((y * up).sum(), [ls, off])

    ls2 = ls.detach().clone().requires_grad_()
    off2 = off.detach().clone().requires_grad_()
    s = torch.exp(ls2)
    z = torch.clamp(round_ste(qmin - off2), qmin, qmax)  # offset in steps
    y2 = clipped_ste_fake_quant(x, s, z, qmin, qmax)
    assert torch.equal(y.detach(), y2.detach())
    gl2, go2 = torch.autograd.grad((y2 * up).sum(), [ls2, off2])
    gl2, go2 = gl2 * gfac, go2 * gfac  # LSQ's gradient scale on the parameters
    torch.testing.assert_close(gl, gl2, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(go, go2, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------- fused == reference (random)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 12),
    f=st.integers(1, 6),
    bits=st.integers(2, 8),
    symmetric=st.booleans(),
    mode=st.sampled_from(["tensor0d", "tensor", "channel", "row"]),
    spread=st.floats(0.1, 10.0),
)
def test_fused_equals_reference(seed, n, f, bits, symmetric, mode, spread) -> None:
    g = torch.Generator().manual_seed(seed)
    qmin, qmax = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if symmetric else (0, (1 << bits) - 1))
    x = torch.randn(n, f, generator=g) * spread
    # exact half-step ties are exercised too
    x[0, 0] = 0.5
    pshape = {"tensor0d": (), "tensor": (1, 1), "channel": (1, f), "row": (n, 1)}[mode]
    s = torch.rand(pshape, generator=g) * spread / 4 + 0.01
    if symmetric:
        z = torch.zeros(pshape)
    else:
        z = torch.randint(qmin, qmax + 1, pshape, generator=g).float()
    up = torch.randn(n, f, generator=g)

    outs = []
    for fq in FQ_FUNCS:
        xs = x.clone().requires_grad_()
        ss = s.clone().requires_grad_()
        zs = z.clone().requires_grad_()
        y = fq(xs, ss, zs, qmin, qmax)
        (y * up).sum().backward()
        outs.append((y.detach(), xs.grad, ss.grad, zs.grad))
    (y1, gx1, gs1, gz1), (y2, gx2, gs2, gz2) = outs
    assert torch.equal(y1, y2)
    # the reference's dx is up * (1/s) * s (autograd), the fused one is up exactly
    torch.testing.assert_close(gx1, gx2, rtol=1e-5, atol=0)
    assert gs1.shape == s.shape and gz1.shape == z.shape
    # tolerance relative to the magnitude of the summed terms (summation order differs)
    mag = (up.abs() * (x.abs() / s + qmax - qmin)).sum()
    torch.testing.assert_close(gs1, gs2, rtol=1e-5, atol=float(mag) * 1e-6)
    torch.testing.assert_close(gz1, gz2, rtol=1e-5, atol=float(up.abs().sum() * s.max()) * 1e-6)
    # and the clipped-STE rule elementwise: dx is the upstream gradient or exactly 0
    assert torch.all((gx1 == up) | (gx1 == 0))
    inside = (torch.round(x * torch.reciprocal(s)) + z >= qmin) & (
        torch.round(x * torch.reciprocal(s)) + z <= qmax)
    assert torch.equal(gx1, torch.where(inside, up, torch.zeros_like(up)))


def test_fused_accepts_lower_rank_broadcast_scale() -> None:
    x = torch.tensor([[0.3, 1.2, -0.7], [2.0, -3.0, 0.1]], requires_grad=True)
    s = torch.tensor([0.5, 0.25, 0.1], requires_grad=True)
    z = torch.tensor([1.0, 2.0, 0.0], requires_grad=True)
    fake_quant(x, s, z, 0, 3).sum().backward()
    s_ref, z_ref = s.detach().clone().requires_grad_(), z.detach().clone().requires_grad_()
    clipped_ste_fake_quant(x.detach(), s_ref, z_ref, 0, 3).sum().backward()
    torch.testing.assert_close(s.grad, s_ref.grad)
    torch.testing.assert_close(z.grad, z_ref.grad)


def test_fused_accepts_zero_point_shaped_unlike_scale() -> None:
    x = torch.tensor([[0.3, 1.2, -0.7], [2.0, -3.0, 0.1]])
    s = torch.tensor(0.5, requires_grad=True)
    z = torch.tensor([[1.0, 2.0, 0.0]], requires_grad=True)
    fake_quant(x, s, z, 0, 3).sum().backward()
    # by hand: x/s = [[0.6, 2.4, -1.4], [4, -6, 0.2]] -> round [[1, 2, -1], [4, -6, 0]]
    # + z -> [[2, 4, -1], [5, -4, 0]]; clipped: (0,1) high, (0,2) low, (1,0) high, (1,1) low
    # dL/dz per column = -s * clipped count = [-0.5, -1.0, -0.5]
    torch.testing.assert_close(z.grad, torch.tensor([[-0.5, -1.0, -0.5]]))
