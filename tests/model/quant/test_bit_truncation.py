"""Tests for model.quant.bit_truncation (SMP's INT2 bit truncation BT and BT*)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qgnn.model.nn.roles import RoleQuantizers
from qgnn.model.quant.bit_truncation import (
    BitTruncQuantizer,
    TruncatedPrecision,
    make_quantizer,
    skewness_shift,
    truncate_grid_codes,
    truncate_grid_codes_np,
)
from qgnn.model.quant.precision import PrecisionConfig
from qgnn.model.quant.quantizer import Quantizer
from qgnn.model.quant.spec import QuantConfigError, QuantSpec

BT = QuantSpec(bits=2, range="minmax", truncation="bt")
BT_STAR = QuantSpec(bits=2, range="minmax", truncation="bt_star")


def bt_table(shift: int) -> np.ndarray:
    """2-bit code of every 8-bit code 0..255, written out from the snapping thresholds: the
    levels 0, 85, 170, 255 have midpoints 42.5, 127.5, 212.5, moved down by ``shift``."""
    q8 = np.arange(256)
    v = q8 + shift
    return (v >= 43).astype(int) + (v >= 128).astype(int) + (v >= 213).astype(int)


@pytest.mark.parametrize("shift", [0, 1, 3, -2, 7])
def test_truncate_grid_codes_matches_hand_thresholds(shift: int) -> None:
    exp = bt_table(shift)
    q8 = torch.arange(256, dtype=torch.float32)
    got = truncate_grid_codes(q8, shift).numpy().astype(int)
    np.testing.assert_array_equal(got, exp)
    np.testing.assert_array_equal(truncate_grid_codes_np(np.arange(256), shift), exp)
    np.testing.assert_array_equal(
        truncate_grid_codes(torch.arange(256), shift).numpy(), exp)


def test_bt_boundaries_by_hand() -> None:
    # BT: 42 -> 0, 43 -> 1, 127 -> 1, 128 -> 2, 212 -> 2, 213 -> 3
    q8 = torch.tensor([0, 42, 43, 127, 128, 212, 213, 255], dtype=torch.float32)
    assert truncate_grid_codes(q8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # BT* with skew shift +3: 39 -> 0, 40 -> 1, 124 -> 1, 125 -> 2, 209 -> 2, 210 -> 3
    q8 = torch.tensor([0, 39, 40, 124, 125, 209, 210, 255], dtype=torch.float32)
    assert truncate_grid_codes(q8, 3).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    # large shifts clamp to the code range
    assert truncate_grid_codes(torch.tensor([255.0]), 60).tolist() == [3]
    assert truncate_grid_codes(torch.tensor([0.0]), -60).tolist() == [0]


def test_skewness_shift_hand_values() -> None:
    # [0, 0, 0, 1]: mean 1/4, m2 = 3/16, m3 = 3/32 -> skew = 2/sqrt(3) = 1.1547 -> 1
    # [0, 1, 1, 1]: the mirror image -> -1; a symmetric row -> 0; a constant row -> 0
    # [0]*9 + [1]: skew = 8/3 = 2.667 -> 3
    x = torch.tensor([[0.0, 0, 0, 1], [0, 1, 1, 1], [-1, 0, 0, 1], [2, 2, 2, 2]])
    assert skewness_shift(x).tolist() == [1.0, -1.0, 0.0, 0.0]
    assert skewness_shift(torch.tensor([[0.0] * 9 + [1.0]])).tolist() == [3.0]


def test_bt_code_set_is_four_levels_and_inverse() -> None:
    torch.manual_seed(0)
    x = torch.randn(200, 8) * 2 + 0.5
    q = BitTruncQuantizer(BT, name="t")
    q.eval()
    y = q(x)
    ip = q.integer_params()
    s, z = float(ip.grid_scale[0]), int(ip.grid_zero_point[0])
    assert 0 < z < 255
    # the output takes exactly the four values (85c - z) * s, c = 0..3
    levels = torch.tensor([(85 * c - z) * s for c in range(4)], dtype=torch.float32)
    assert set(y.unique().tolist()) == set(levels.tolist())
    codes = q.quantize_codes(x)
    assert set(codes.unique().tolist()) == {0, 1, 2, 3}
    torch.testing.assert_close(y, levels[codes], rtol=0, atol=1e-6)
    # integer form: same codes, exact dequantization, dequantize/quantize round trip
    np.testing.assert_array_equal(ip.quantize(x.numpy()), codes.numpy())
    np.testing.assert_allclose(ip.dequantize(codes.numpy()), y.double().numpy(), rtol=0, atol=1e-6)
    c = np.arange(4)
    np.testing.assert_array_equal(ip.quantize(ip.dequantize(c).astype(np.float32)), c)
    # the 8-bit grid codes of the outputs are the kept levels 0, 85, 170, 255
    np.testing.assert_array_equal(ip.grid_codes(ip.dequantize(c).astype(np.float32)),
                                  [0, 85, 170, 255])


def test_bt_star_shift_is_rounded_skew_and_moves_thresholds() -> None:
    torch.manual_seed(1)
    x = torch.distributions.Exponential(1.0).sample((4000, 1))  # skewness 2 -> shift 2
    plain, star = BitTruncQuantizer(BT, name="bt"), BitTruncQuantizer(BT_STAR, name="bt*")
    plain.eval()
    star.eval()
    plain(x)
    star(x)
    assert plain.skew_shift is not None and star.skew_shift is not None
    assert plain.skew_shift.tolist() == [0.0]
    assert star.skew_shift.tolist() == [2.0]
    ip = star.integer_params()
    s, z = float(ip.grid_scale[0]), int(ip.grid_zero_point[0])
    assert z == 0  # non-negative data
    # grid codes 41 and 126 snap up only under BT* (41 + 2 >= 43, 126 + 2 >= 128)
    probe = torch.tensor([[41.0], [126.0], [40.0]]) * s
    np.testing.assert_array_equal(ip.grid_codes(probe.numpy()).ravel(), [41, 126, 40])
    assert star.quantize_codes(probe).ravel().tolist() == [1, 2, 0]
    p_ip = plain.integer_params()
    probe_p = torch.tensor([[41.0], [126.0]]) * float(p_ip.grid_scale[0])
    assert plain.quantize_codes(probe_p).ravel().tolist() == [0, 1]
    # levels are unchanged: dequantized codes are 85c * s
    np.testing.assert_allclose(ip.dequantize(np.arange(4)), [0, 85 * s, 170 * s, 255 * s],
                               rtol=1e-7)


def test_bt_gradients_clipped_ste() -> None:
    q = BitTruncQuantizer(QuantSpec(bits=2, range="qlr", truncation="bt"), name="t")
    x = torch.linspace(-1, 1, 101)[:, None]
    q.train()
    q(x)  # calibrate
    with torch.no_grad():
        q.alpha.fill_(0.5)  # range [-0.5, 0.5]: the outer quarters are clipped
    x = x.clone().requires_grad_(True)
    y = q(x)
    y.sum().backward()
    assert x.grad is not None and q.alpha.grad is not None
    ip = q.integer_params()
    s, z = float(ip.grid_scale[0]), int(ip.grid_zero_point[0])
    v = torch.round(x.detach() / s) + z
    inside = ((v >= 0) & (v <= 255)).float()
    torch.testing.assert_close(x.grad, inside)
    assert 0 < inside.sum() < 101
    assert float(q.alpha.grad.abs().sum()) > 0


def test_spec_validation_names_the_field() -> None:
    with pytest.raises(QuantConfigError, match="bits=2"):
        QuantSpec(bits=4, truncation="bt")
    with pytest.raises(QuantConfigError, match="asymmetric"):
        QuantSpec(bits=2, symmetric=True, truncation="bt_star")
    with pytest.raises(QuantConfigError, match="granularity"):
        QuantSpec(bits=2, granularity="node", truncation="bt")
    with pytest.raises(QuantConfigError, match="range"):
        QuantSpec(bits=2, range="lsq", truncation="bt")
    with pytest.raises(QuantConfigError, match="truncation.*allowed: none, bt, bt_star"):
        QuantSpec(bits=2, truncation="bts")
    assert "truncation" not in QuantSpec(bits=2).to_dict()
    assert QuantSpec.from_dict(BT_STAR.to_dict()) == BT_STAR


def test_truncated_precision_and_roles() -> None:
    base = PrecisionConfig.from_dict(
        {"bits": 2, "range": "qlr", "roles": {"weight": {"symmetric": False}},
         "layers": {"1": {"roles": {"update": {"bits": 8}}}}})
    p = TruncatedPrecision.wrap(base, "bt_star")
    assert p.spec(0, "message").truncation == "bt_star"
    assert p.spec(1, "update").truncation == "none"  # 8-bit tensors are not truncated
    assert p.label() == "mixed-bt*"
    assert p.to_dict()["truncation"] == "bt_star"
    rq = RoleQuantizers(p, 1)
    assert isinstance(rq.message, BitTruncQuantizer)
    assert not isinstance(rq.update, BitTruncQuantizer) and isinstance(rq.update, Quantizer)
    assert isinstance(make_quantizer(QuantSpec(bits=2)), Quantizer)
    with pytest.raises(QuantConfigError, match="role 'weight'.*asymmetric"):
        TruncatedPrecision.wrap(PrecisionConfig.uniform(2), "bt")
    with pytest.raises(QuantConfigError, match="truncation"):
        TruncatedPrecision.wrap(base, "sbt")
    # truncating only some roles: symmetric INT2 weights stay plain INT2
    acts = ("input", "output", "message", "aggregate", "update")
    only = TruncatedPrecision.wrap(PrecisionConfig.uniform(2, range="qlr"), "bt", roles=acts)
    assert only.spec(0, "weight").truncation == "none" and only.spec(0, "weight").symmetric
    assert only.spec(0, "update").truncation == "bt"
    assert only.to_dict()["truncate_roles"] == list(acts)
    with pytest.raises(QuantConfigError, match="truncate_roles.*'weights'"):
        TruncatedPrecision.wrap(base, "bt", roles=("weights",))


def test_state_dict_round_trip_keeps_skew_shift() -> None:
    torch.manual_seed(2)
    x = torch.distributions.Exponential(1.0).sample((500, 3))
    q = BitTruncQuantizer(QuantSpec(bits=2, range="qlr", truncation="bt_star"), name="t")
    q.eval()
    y = q(x)
    q2 = BitTruncQuantizer(QuantSpec(bits=2, range="qlr", truncation="bt_star"), name="t")
    q2.load_state_dict(q.state_dict())
    q2.eval()
    torch.testing.assert_close(q2(x), y, rtol=0, atol=0)


def test_sparse_rows_need_exact_zero() -> None:
    q = BitTruncQuantizer(BT, name="input")
    q.eval()
    vals = torch.tensor([1.0, 0.5, 0.25, 1.0])
    out = q.forward_rows(vals, torch.tensor([0, 0, 1, 2]), 3)
    assert out.shape == vals.shape
    neg = BitTruncQuantizer(BT, name="input2")
    neg.eval()
    with pytest.raises(ValueError, match="implicit zeros"):
        # zero point round(127.5) = 128 (range [-1, 1]) truncates to 170: 0 is not a level
        neg.forward_rows(torch.tensor([-1.0, 1.0, 0.3]), torch.tensor([0, 1, 2]), 3)
