"""Tests for model.quant.degree_quant and Degree-Quant masking in the Quantizer."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.quant.degree_quant import (
    DegreeQuantConfig,
    protection_probability,
    sample_protect_mask,
)
from qgnn.model.quant.quantizer import Quantizer
from qgnn.model.quant.spec import QuantSpec


def test_protection_probability_hand_computed() -> None:
    cfg = DegreeQuantConfig(p_min=0.1, p_max=0.5)
    deg = torch.tensor([0, 1, 1, 3])
    # rank = fraction of nodes with degree <= d: [1/4, 3/4, 3/4, 4/4] (ties share the highest)
    # p = 0.1 + 0.4 * rank = [0.2, 0.4, 0.4, 0.5]
    p = protection_probability(deg, cfg)
    assert p.dtype == torch.float32
    torch.testing.assert_close(p, torch.tensor([0.2, 0.4, 0.4, 0.5]))


def test_protection_probability_order_independent_and_empty() -> None:
    cfg = DegreeQuantConfig(0.0, 1.0)
    p = protection_probability(torch.tensor([5, 0, 2]), cfg)
    torch.testing.assert_close(p, torch.tensor([1.0, 1 / 3, 2 / 3]))
    assert protection_probability(torch.tensor([], dtype=torch.int64), cfg).numel() == 0


@settings(max_examples=60, deadline=None)
@given(
    degs=st.lists(st.integers(0, 50), min_size=1, max_size=40),
    p=st.tuples(st.floats(0.0, 1.0), st.floats(0.0, 1.0)).map(sorted),
)
def test_protection_probability_monotone_and_bounded(degs, p) -> None:
    cfg = DegreeQuantConfig(p_min=p[0], p_max=p[1])
    deg = torch.tensor(degs)
    prob = protection_probability(deg, cfg)
    assert prob.shape == deg.shape
    assert torch.all(prob >= cfg.p_min - 1e-6) and torch.all(prob <= cfg.p_max + 1e-6)
    order = torch.argsort(deg, stable=True)
    ps = prob[order]
    assert torch.all(ps[1:] >= ps[:-1])
    # equal degrees share one probability; the highest degree gets p_max
    for d in set(degs):
        assert prob[deg == d].unique().numel() == 1
    assert torch.allclose(prob[deg == max(degs)], torch.tensor(cfg.p_max))


@pytest.mark.parametrize(
    ("p_min", "p_max"), [(0.5, 0.4), (-0.1, 0.5), (0.0, 1.5), (1.1, 1.2), (-1.0, -0.5)]
)
def test_invalid_config_raises(p_min: float, p_max: float) -> None:
    with pytest.raises(ValueError, match="p_min"):
        DegreeQuantConfig(p_min=p_min, p_max=p_max)


def test_valid_edge_configs() -> None:
    DegreeQuantConfig(0.0, 0.0)
    DegreeQuantConfig(1.0, 1.0)
    DegreeQuantConfig(0.3, 0.3)


def test_sample_protect_mask() -> None:
    prob = torch.tensor([0.0, 1.0, 0.0, 1.0])
    m = sample_protect_mask(prob)
    assert m.dtype == torch.bool
    assert m.tolist() == [False, True, False, True]
    p = torch.full((4000,), 0.3)
    a = sample_protect_mask(p, torch.Generator().manual_seed(3))
    b = sample_protect_mask(p, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert 0.25 < a.float().mean() < 0.35


# ------------------------------------------------------------- protect mask in Quantizer


@pytest.mark.parametrize(
    ("method", "gran"),
    [(m, g) for m in ["minmax", "percentile", "qlr", "lsq"] for g in ["tensor", "channel", "node"]],
)
def test_protected_rows_pass_through_in_training_only(method: str, gran: str) -> None:
    torch.manual_seed(0)
    q = Quantizer(QuantSpec(bits=3, granularity=gran, range=method), name="a")
    x = torch.randn(8, 5) * 2
    protect = torch.tensor([True, False, False, True, False, False, False, True])
    q.train()
    y = q(x, protect)
    assert torch.equal(y[protect], x[protect])
    assert not torch.equal(y[~protect], x[~protect])  # the others are quantized (3 bits)
    q.eval()
    with torch.no_grad():
        ye = q(x, protect)
        yn = q(x)
    assert torch.equal(ye, yn)  # eval ignores the mask
    assert not torch.equal(ye[protect], x[protect])


def test_protect_after_calibration_per_node_lsq() -> None:
    # calibrated without a mask (as model.train.calibrate does), the mask works for per-node LSQ
    torch.manual_seed(0)
    q = Quantizer(QuantSpec(bits=3, granularity="node", range="lsq"))
    x = torch.randn(8, 5) * 2
    q.eval()
    with torch.no_grad():
        q(x)
    protect = torch.tensor([True, False, False, True, False, False, False, True])
    q.train()
    y = q(x, protect)
    assert torch.equal(y[protect], x[protect])
    assert not torch.equal(y[~protect], x[~protect])


def test_protected_rows_are_left_out_of_range_statistics() -> None:
    q = Quantizer(QuantSpec(bits=8, range="minmax", momentum=1.0))
    x = torch.tensor([[1.0, -2.0], [100.0, -300.0], [0.5, 3.0]])
    protect = torch.tensor([False, True, False])
    q.train()
    q(x, protect)
    # calibration and the update both ignore row 1
    assert q.running_lo.tolist() == [-2.0]
    assert q.running_hi.tolist() == [3.0]
    y = q(x, protect)
    assert torch.equal(y[1], x[1])


def test_all_rows_protected_still_calibrates() -> None:
    q = Quantizer(QuantSpec(bits=8, range="minmax"))
    x = torch.tensor([[1.0, -2.0], [4.0, 0.5]])
    q.train()
    y = q(x, torch.ones(2, dtype=torch.bool))
    assert torch.equal(y, x)
    assert bool(q.initialized)
    assert q.running_lo.tolist() == [-2.0] and q.running_hi.tolist() == [4.0]
