"""Tests for model.nn.propagation.QPropagation."""

from __future__ import annotations

import pytest
import torch
from nn_test_graphs import N, random_graph
from qgnn.model.nn.graph_ops import GraphOps
from qgnn.model.nn.propagation import QPropagation
from qgnn.model.quant.precision import PrecisionConfig
from torch_geometric.nn import APPNP
from torch_geometric.utils import coalesce


def norm_adj(ei: torch.Tensor, n: int) -> torch.Tensor:
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a.fill_diagonal_(1.0)
    d = a.sum(1).rsqrt()
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.5, 1.0])
def test_fp32_equals_pyg_appnp_single_step(alpha: float) -> None:
    torch.manual_seed(0)
    ei = random_graph(0)
    h = torch.randn(N, 4)
    prop = QPropagation(PrecisionConfig.uniform(32), 0, alpha=alpha)
    out = prop(h, h, GraphOps.from_edge_index(ei, N))
    exp = APPNP(K=1, alpha=alpha)(h, coalesce(ei, num_nodes=N))
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)


def test_fp32_k_steps_equal_pyg_appnp() -> None:
    torch.manual_seed(1)
    ei = random_graph(1)
    h = torch.randn(N, 3)
    g = GraphOps.from_edge_index(ei, N)
    props = [QPropagation(PrecisionConfig.uniform(32), k, alpha=0.2) for k in range(4)]
    z = h
    for p in props:
        z = p(z, h, g)
    exp = APPNP(K=4, alpha=0.2)(h, coalesce(ei, num_nodes=N))
    torch.testing.assert_close(z, exp, rtol=1e-5, atol=1e-5)


def test_fp32_teleport_uses_h_not_z() -> None:
    torch.manual_seed(2)
    ei = random_graph(2)
    z, h = torch.randn(N, 3), torch.randn(N, 3)
    out = QPropagation(PrecisionConfig.uniform(32), 0, alpha=0.3)(
        z, h, GraphOps.from_edge_index(ei, N))
    exp = 0.7 * norm_adj(ei, N) @ z + 0.3 * h
    torch.testing.assert_close(out, exp, rtol=1e-5, atol=1e-5)


def test_quantized_dataflow_matches_docstring() -> None:
    torch.manual_seed(3)
    ei = random_graph(3)
    z, h = torch.randn(N, 3), torch.randn(N, 3)
    prop = QPropagation(PrecisionConfig.from_dict({"bits": 3, "range": "minmax"}), 2, alpha=0.1)
    assert [r for r, _ in prop.q.items()] == ["message", "aggregate", "update"]
    g = GraphOps.from_edge_index(ei, N)
    prop.eval()
    with torch.no_grad():
        out = prop(z, h, g)
        q = prop.q
        a = torch.zeros(N, N)
        a[ei[1], ei[0]] = 1.0
        a.fill_diagonal_(1.0)
        d = a.sum(1).rsqrt()[:, None]
        agg = q.aggregate((a @ q.message(z * d)) * d)
        exp = q.update(0.9 * agg + 0.1 * h)
    torch.testing.assert_close(out, exp, rtol=0, atol=1e-6)
    assert out.unique().numel() <= 8


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_invalid_alpha_raises(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        QPropagation(PrecisionConfig.uniform(32), 0, alpha=alpha)
