"""Tests for model.nn.features (sparse model inputs)."""

from __future__ import annotations

import pytest
import torch
from qgnn.model.nn.features import (
    SPARSE_DENSITY,
    SparseFeatures,
    as_model_input,
    cached_model_input,
    densify,
    matmul,
    quantize_input,
)
from qgnn.model.nn.graph_ops import GraphOps
from qgnn.model.nn.models import ModelConfig, build_model
from qgnn.model.quant.precision import PrecisionConfig
from qgnn.model.quant.quantizer import Quantizer
from qgnn.model.quant.spec import QuantSpec
from torch import nn
from torch_geometric.data import Data

N, F = 40, 50


def sparse_x(seed: int = 0, density: float = 0.05) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(N, F)
    mask = torch.rand(N, F, generator=g) < density
    x[mask] = torch.rand(int(mask.sum()), generator=g) * 3 + 0.1
    return x


def graph(seed: int = 0) -> GraphOps:
    g = torch.Generator().manual_seed(seed)
    return GraphOps.from_edge_index(torch.randint(0, N, (2, 120), generator=g), N)


# ------------------------------------------------------------------------ as_model_input


def test_threshold_constant() -> None:
    assert SPARSE_DENSITY == 0.1


def test_sparse_input_becomes_csr_features() -> None:
    x = sparse_x()
    f = as_model_input(x)
    assert isinstance(f, SparseFeatures)
    assert f.shape == (N, F)
    assert f.values.numel() == int((x != 0).sum())
    assert torch.equal(f.to_dense(), x)
    assert torch.equal(densify(f), x)


def test_density_threshold_boundary() -> None:
    x = torch.zeros(10, 10)
    x.view(-1)[:10] = 1.0  # density exactly 0.1: sparse
    assert isinstance(as_model_input(x), SparseFeatures)
    x.view(-1)[10] = 1.0  # 0.11: dense, unchanged
    assert as_model_input(x) is x


def test_inputs_left_unchanged() -> None:
    v = torch.zeros(20)
    assert as_model_input(v) is v  # 1-D
    e = torch.zeros(0, 4)
    assert as_model_input(e) is e  # empty
    s = sparse_x().to_sparse_coo()
    assert as_model_input(s) is s  # not strided
    d = torch.randn(5, 5)
    assert as_model_input(d) is d
    assert densify(d) is d


def test_cached_model_input() -> None:
    data = Data(x=sparse_x(1), edge_index=torch.zeros(2, 0, dtype=torch.int64))
    a = cached_model_input(data)
    assert cached_model_input(data) is a
    data.x = sparse_x(2)
    b = cached_model_input(data)
    assert b is not a and torch.equal(b.to_dense(), sparse_x(2))


def test_matmul_sparse_equals_dense() -> None:
    x = sparse_x(3)
    w = torch.randn(F, 7)
    torch.testing.assert_close(matmul(as_model_input(x), w), x @ w, rtol=1e-5, atol=1e-5)
    assert torch.equal(matmul(x, w), x @ w)


def test_quantize_input_sparse_per_tensor_quantizes_stored_values() -> None:
    x = sparse_x(4)
    qs = Quantizer(QuantSpec(bits=4, range="minmax"))
    qd = Quantizer(QuantSpec(bits=4, range="minmax"))
    qs.eval()
    qd.eval()
    drop = nn.Dropout(0.0)
    with torch.no_grad():
        ys = quantize_input(qs, drop, as_model_input(x), None)
        yd = quantize_input(qd, drop, x, None)
    assert isinstance(ys, SparseFeatures)
    assert torch.equal(ys.to_dense(), yd)
    assert not torch.equal(yd, x)


def test_quantize_input_sparse_non_tensor_granularity_densifies() -> None:
    x = sparse_x(5)
    q = Quantizer(QuantSpec(bits=4, range="minmax", granularity="channel"))
    q.eval()
    with torch.no_grad():
        y = quantize_input(q, nn.Dropout(0.0), as_model_input(x), None)
    assert isinstance(y, torch.Tensor) and y.shape == (N, F)
    assert q.running_lo.shape == (F,)


def test_quantize_input_sparse_protect_rows() -> None:
    x = sparse_x(6, density=0.1)
    protect = torch.zeros(N, dtype=torch.bool)
    protect[::3] = True
    q = Quantizer(QuantSpec(bits=2, range="minmax"))
    q.train()
    y = quantize_input(q, nn.Dropout(0.0), as_model_input(x), protect).to_dense()
    assert torch.equal(y[protect], x[protect])
    assert not torch.equal(y[~protect], x[~protect])


# ------------------------------------------------------------------- forward_rows


def test_forward_rows_per_node_minmax_equals_dense_per_node() -> None:
    x = torch.tensor([[0.0, 1.6, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.7]])
    f = as_model_input(torch.cat([x, torch.zeros(37, 4)]))  # density 5/160: sparse
    assert isinstance(f, SparseFeatures)
    spec = QuantSpec(bits=2, granularity="node", range="minmax")
    qs, qd = Quantizer(spec), Quantizer(spec)
    qs.eval()
    qd.eval()
    with torch.no_grad():
        ys = qs.forward_rows(f.values, f.pattern.row, f.shape[0])
        yd = qd(f.to_dense())
    assert torch.equal(SparseFeatures(f.pattern, ys).to_dense(), yd)
    # row 0 by hand: range [-1, 1.6] -> s = 2.6/3, z = round(1/s) = round(1.154) = 1;
    # 1.6/s = 1.846 -> 2 -> y = 2s = 1.7333; -1/s = -1.154 -> -1 -> y = -s
    s0 = 2.6 / 3
    torch.testing.assert_close(ys[:2], torch.tensor([2 * s0, -s0]))
    # row 2: range [0, 3] -> s = 1, z = 0: 3 -> 3, 0.7 -> 1
    torch.testing.assert_close(ys[2:], torch.tensor([3.0, 1.0]))


def test_forward_rows_protect_and_invalid_specs() -> None:
    x = sparse_x(7, density=0.1)
    f = as_model_input(x)
    protect = torch.zeros(N, dtype=torch.bool)
    protect[::2] = True
    q = Quantizer(QuantSpec(bits=2, granularity="node", range="minmax"))
    q.train()
    y = SparseFeatures(f.pattern, q.forward_rows(f.values, f.pattern.row, N, protect)).to_dense()
    assert torch.equal(y[protect], x[protect])
    assert not torch.equal(y[~protect], x[~protect])
    for spec in (QuantSpec(bits=4, granularity="channel", range="minmax"),
                 QuantSpec(bits=4, granularity="node", range="lsq")):
        with pytest.raises(ValueError, match="sparse inputs"):
            Quantizer(spec).forward_rows(f.values, f.pattern.row, N)
    fp = Quantizer(QuantSpec(bits=32))
    assert fp.forward_rows(f.values, f.pattern.row, N) is f.values


# ----------------------------------------------------- model output: sparse == dense path


def _pair(name: str, prec: PrecisionConfig) -> tuple[nn.Module, nn.Module]:
    cfg = ModelConfig(name=name, hidden=8, layers=2, k=2, dropout=0.0)
    torch.manual_seed(1)
    m1 = build_model(cfg, F, 3, prec)
    torch.manual_seed(1)
    m2 = build_model(cfg, F, 3, prec)
    return m1, m2


def _prec(bits: int, rng: str, gran: str) -> PrecisionConfig:
    return PrecisionConfig.from_dict(
        {"bits": bits, "range": rng, "roles": {"input": {"range": rng, "granularity": gran}}})


def _cases():
    for name in ("gcn", "decoupled"):  # the models that keep sparse inputs sparse
        for bits in (4, 32):
            for rng in ("minmax", "qlr", "lsq"):
                for gran in ("tensor", "node"):
                    yield pytest.param(name, bits, rng, gran, id=f"{name}-{bits}-{rng}-{gran}")
    for name in ("gin", "sage"):  # these densify first
        yield pytest.param(name, 4, "minmax", "node", id=f"{name}-4-minmax-node")


@pytest.mark.parametrize(("name", "bits", "rng", "gran"), list(_cases()))
def test_sparse_and_dense_inputs_give_the_same_output(name, bits, rng, gran) -> None:
    x = sparse_x(0)
    xs = as_model_input(x)
    assert isinstance(xs, SparseFeatures)
    g = graph(0)
    m1, m2 = _pair(name, _prec(bits, rng, gran))
    m1.eval()
    m2.eval()
    with torch.no_grad():
        a = m1(xs, g)  # calibrates on the sparse path
        b = m2(x, g)  # dense path
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # and once calibrated, one model gives the same output for both input forms
    with torch.no_grad():
        torch.testing.assert_close(m2(xs, g), m2(x, g), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("name", "gran"),
    [(n, gr) for n in ("gcn", "decoupled") for gr in ("tensor", "node")]
    + [("gin", "tensor"), ("sage", "node")],  # gin/sage densify before quantizing
)
def test_sparse_and_dense_inputs_same_output_percentile(name: str, gran: str) -> None:
    """Percentile ranges count a sparse input's implicit zeros (``forward_rows(num_cols=)``)."""
    x = sparse_x(0)
    g = graph(0)
    m1, m2 = _pair(name, _prec(4, "percentile", gran))
    m1.eval()
    m2.eval()
    with torch.no_grad():
        a = m1(as_model_input(x), g)
        b = m2(x, g)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_sparse_and_dense_inputs_same_lsq_gradients() -> None:
    """LSQ's gradient scale ``1/sqrt(n Qp)`` uses n = N*F on the sparse path too, not nnz."""
    x = sparse_x(0)
    g = graph(0)
    m1, m2 = _pair("gcn", _prec(4, "lsq", "tensor"))
    m1.eval()
    m2.eval()
    with torch.no_grad():
        m1(as_model_input(x), g)
        m2(x, g)
    m1.train()
    m2.train()
    m1(as_model_input(x), g).square().sum().backward()
    m2(x, g).square().sum().backward()
    q1 = m1.convs[0].q.input
    q2 = m2.convs[0].q.input
    assert q1.log_step.grad.abs().sum() > 0
    torch.testing.assert_close(q1.log_step.grad, q2.log_step.grad, rtol=1e-4, atol=1e-7)
