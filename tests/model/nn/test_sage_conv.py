"""Tests for model.nn.sage_conv.QSAGEConv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nn_test_graphs import N, random_graph
from qgnn.model.nn.graph_ops import GraphOps
from qgnn.model.nn.sage_conv import QSAGEConv
from qgnn.model.quant.precision import PrecisionConfig
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import coalesce, remove_self_loops


def dense_a(ei: torch.Tensor, n: int) -> torch.Tensor:
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a.fill_diagonal_(0.0)
    return a


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fp32_equals_pyg_sageconv_mean(seed: int) -> None:
    torch.manual_seed(seed)
    ei = random_graph(seed)
    x = torch.randn(N, 6)
    conv = QSAGEConv(6, 4, PrecisionConfig.uniform(32), 0)
    ref = SAGEConv(6, 4, aggr="mean")
    # PyG: out = lin_l(mean_{j in N(i)} x_j) + lin_r(x_i); lin_l has the bias, lin_r none
    assert ref.lin_r.bias is None and conv.lin_r.bias is None
    with torch.no_grad():
        ref.lin_l.weight.copy_(conv.lin_l.weight)
        ref.lin_l.bias.copy_(conv.lin_l.bias)
        ref.lin_r.weight.copy_(conv.lin_r.weight)
    out = conv(x, GraphOps.from_edge_index(ei, N))
    # PyG keeps self-loops and duplicate edges in the mean; QSAGEConv drops/merges them
    ei_ref, _ = remove_self_loops(coalesce(ei, num_nodes=N))
    exp = ref(x, ei_ref)
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)


def test_fp32_dense_formula_isolated_node_and_activation() -> None:
    torch.manual_seed(4)
    ei = random_graph(4)
    x = torch.randn(N, 3)
    conv = QSAGEConv(3, 5, PrecisionConfig.uniform(32), 0, act=F.relu)
    a = dense_a(ei, N)
    deg = a.sum(1, keepdim=True)
    mean = torch.where(deg > 0, (a @ x) / deg.clamp_min(1), torch.zeros(()))
    exp = F.relu(mean @ conv.lin_l.weight.t() + x @ conv.lin_r.weight.t() + conv.lin_l.bias)
    out = conv(x, GraphOps.from_edge_index(ei, N))
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)
    # isolated node: mean is 0, only the root term and the bias remain
    torch.testing.assert_close(
        out[12], F.relu(x[12] @ conv.lin_r.weight.t() + conv.lin_l.bias), rtol=1e-6, atol=1e-6)


def test_quantized_dataflow_matches_docstring() -> None:
    torch.manual_seed(3)
    ei = random_graph(3)
    x = torch.randn(N, 6)
    conv = QSAGEConv(6, 4, PrecisionConfig.from_dict({"bits": 4, "range": "minmax"}), 0,
                     act=F.relu)
    g = GraphOps.from_edge_index(ei, N)
    conv.eval()
    with torch.no_grad():
        out = conv(x, g)
        q = conv.q
        assert all(bool(qz.initialized) for _, qz in q.items())
        assert bool(conv.q_root_weight.initialized)
        assert conv.q_root_weight.spec == q.weight.spec
        xq = q.input(x)
        a = dense_a(ei, N)
        inv = 1.0 / a.sum(1, keepdim=True).clamp_min(1)
        agg = q.aggregate((a @ q.message(xq)) * inv)
        h = agg @ q.weight(conv.lin_l.weight).t() + xq @ conv.q_root_weight(conv.lin_r.weight).t()
        exp = q.update(F.relu(q.output(h) + conv.lin_l.bias))
    torch.testing.assert_close(out, exp, rtol=0, atol=1e-6)
    assert out.unique().numel() <= 16


def test_root_weight_quantized_separately_per_channel() -> None:
    conv = QSAGEConv(4, 3, PrecisionConfig.uniform(4), 0)
    conv.eval()
    with torch.no_grad():
        conv(torch.randn(5, 4), GraphOps.from_edge_index(torch.tensor([[0, 1], [1, 2]]), 5))
        s_l, _ = conv.q.weight.scale_zero()
        s_r, _ = conv.q_root_weight.scale_zero()
    assert s_l.shape == (3,) and s_r.shape == (3,)  # one step per output channel
    assert not torch.equal(s_l, s_r)
