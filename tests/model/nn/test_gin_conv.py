"""Tests for model.nn.gin_conv.QGINConv."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from nn_test_graphs import N, random_graph
from qgnn.model.nn.gin_conv import QGINConv
from qgnn.model.nn.graph_ops import GraphOps
from qgnn.model.quant.precision import PrecisionConfig
from torch import nn
from torch_geometric.nn import GINConv
from torch_geometric.utils import coalesce, remove_self_loops


def dense_a_plus_i(ei: torch.Tensor, n: int) -> torch.Tensor:
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a.fill_diagonal_(1.0)
    return a


@pytest.mark.parametrize("act", [None, F.relu])
@pytest.mark.parametrize("hidden", [None, 7])
def test_fp32_equals_manual_a_plus_i_then_mlp(act, hidden) -> None:
    torch.manual_seed(0)
    ei = random_graph(0)
    x = torch.randn(N, 5)
    conv = QGINConv(5, 3, PrecisionConfig.uniform(32), 0, act=act, hidden=hidden)
    assert conv.lin1.out_features == (hidden or 3)
    out = conv(x, GraphOps.from_edge_index(ei, N))
    s = dense_a_plus_i(ei, N) @ x
    h = torch.relu(s @ conv.lin1.weight.t() + conv.lin1.bias)
    exp = h @ conv.lin2.weight.t() + conv.lin2.bias
    if act is not None:
        exp = act(exp)
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)


def test_fp32_equals_pyg_ginconv_eps0() -> None:
    torch.manual_seed(1)
    ei = random_graph(1)
    x = torch.randn(N, 5)
    conv = QGINConv(5, 3, PrecisionConfig.uniform(32), 0, hidden=8)
    mlp = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    ref = GINConv(mlp, eps=0.0)  # (re-initialises the MLP: copy the weights afterwards)
    mlp[0].load_state_dict(conv.lin1.state_dict())
    mlp[2].load_state_dict(conv.lin2.state_dict())
    ei_ref, _ = remove_self_loops(coalesce(ei, num_nodes=N))
    torch.testing.assert_close(conv(x, GraphOps.from_edge_index(ei, N)), ref(x, ei_ref),
                               rtol=1e-5, atol=1e-5)


def test_quantized_dataflow_matches_docstring() -> None:
    torch.manual_seed(2)
    ei = random_graph(2)
    x = torch.randn(N, 5)
    conv = QGINConv(5, 3, PrecisionConfig.from_dict({"bits": 4, "range": "minmax"}), 0,
                    act=F.relu, hidden=6)
    g = GraphOps.from_edge_index(ei, N)
    conv.eval()
    with torch.no_grad():
        out = conv(x, g)
        q, q2 = conv.q, conv.q2
        assert all(bool(qz.initialized) for _, qz in [*q.items(), *q2.items()])
        # q2 reuses the layer's input/weight/output specs
        for r in ("input", "weight", "output"):
            assert getattr(q2, r).spec == getattr(q, r).spec
        a = q.aggregate(dense_a_plus_i(ei, N) @ q.message(q.input(x)))
        h = q.output(a @ q.weight(conv.lin1.weight).t() + conv.lin1.bias)
        h = q2.input(torch.relu(h))
        o = q2.output(h @ q2.weight(conv.lin2.weight).t())
        exp = q.update(F.relu(o + conv.lin2.bias))
    torch.testing.assert_close(out, exp, rtol=0, atol=1e-6)
    assert out.unique().numel() <= 16
