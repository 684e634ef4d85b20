"""Tests for model.nn.gcn_conv.QGCNConv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nn_test_graphs import N, random_graph
from qgnn.model.nn.gcn_conv import QGCNConv
from qgnn.model.nn.graph_ops import GraphOps
from qgnn.model.quant.precision import PrecisionConfig
from torch_geometric.nn import GCNConv
from torch_geometric.utils import coalesce


def dense_a_hat(ei: torch.Tensor, n: int) -> torch.Tensor:
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a.fill_diagonal_(1.0)
    return a


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fp32_equals_pyg_gcnconv(seed: int) -> None:
    torch.manual_seed(seed)
    ei = random_graph(seed)
    x = torch.randn(N, 6)
    conv = QGCNConv(6, 4, PrecisionConfig.uniform(32), 0)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(4))
    ref = GCNConv(6, 4)
    with torch.no_grad():
        ref.lin.weight.copy_(conv.lin.weight)
        ref.bias.copy_(conv.bias)
    out = conv(x, GraphOps.from_edge_index(ei, N))
    # PyG counts duplicate edges twice; QGCNConv merges them: compare on the coalesced graph
    exp = ref(x, coalesce(ei, num_nodes=N))
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
    # zero bias too (the default of QGCNConv)
    conv0 = QGCNConv(6, 4, PrecisionConfig.uniform(32), 0)
    assert torch.equal(conv0.bias, torch.zeros(4))
    with torch.no_grad():
        ref.lin.weight.copy_(conv0.lin.weight)
        ref.bias.zero_()
    torch.testing.assert_close(conv0(x, GraphOps.from_edge_index(ei, N)),
                               ref(x, coalesce(ei, num_nodes=N)), rtol=1e-5, atol=1e-5)


def test_fp32_equals_dense_formula_with_activation() -> None:
    torch.manual_seed(0)
    ei = random_graph(5)
    x = torch.randn(N, 3)
    conv = QGCNConv(3, 5, PrecisionConfig.uniform(32), 0, act=F.relu, bias=False)
    assert conv.bias is None
    a = dense_a_hat(ei, N)
    dinv = a.sum(1).rsqrt()
    exp = F.relu(dinv[:, None] * a * dinv[None, :] @ (x @ conv.lin.weight.t()))
    out = conv(x, GraphOps.from_edge_index(ei, N))
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
    # the isolated node only sees itself: h_12 * (1/sqrt(1))^2
    torch.testing.assert_close(out[12], F.relu(x[12] @ conv.lin.weight.t()))


def test_quantized_dataflow_matches_docstring() -> None:
    torch.manual_seed(1)
    ei = random_graph(1)
    x = torch.randn(N, 6)
    prec = PrecisionConfig.from_dict({"bits": 4, "range": "minmax"})
    conv = QGCNConv(6, 4, prec, 0, act=F.relu)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(4))
    g = GraphOps.from_edge_index(ei, N)
    conv.eval()
    with torch.no_grad():
        out = conv(x, g)  # calibrates every quantizer
        q = conv.q
        for _, qz in q.items():
            assert bool(qz.initialized)
        a = dense_a_hat(ei, N)
        dinv = a.sum(1).rsqrt()[:, None]
        h = q.output(q.input(x) @ q.weight(conv.lin.weight).t())
        m = q.message(h * dinv)
        agg = q.aggregate((a @ m) * dinv)
        exp = q.update(F.relu(agg + conv.bias))
    torch.testing.assert_close(out, exp, rtol=0, atol=1e-6)
    # every stage really quantizes: 4-bit output takes at most 16 distinct values
    assert out.unique().numel() <= 16
    fp = QGCNConv(6, 4, PrecisionConfig.uniform(32), 0, act=F.relu)
    fp.load_state_dict({k: v for k, v in conv.state_dict().items() if not k.startswith("q.")},
                       strict=False)
    with torch.no_grad():
        ref = fp(x, g)
    assert not torch.equal(out, ref)


def test_int8_close_to_fp32() -> None:
    torch.manual_seed(2)
    ei = random_graph(2)
    x = torch.randn(N, 8)
    conv8 = QGCNConv(8, 4, PrecisionConfig.uniform(8), 0)
    conv32 = QGCNConv(8, 4, PrecisionConfig.uniform(32), 0)
    conv32.lin.weight.data.copy_(conv8.lin.weight.data)
    g = GraphOps.from_edge_index(ei, N)
    conv8.eval()
    with torch.no_grad():
        y8 = conv8(x, g)
        y32 = conv32(x, g)
    err = (y8 - y32).abs().max()
    assert 0 < err < 0.05 * y32.abs().max()
