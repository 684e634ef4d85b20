"""Tests for model.nn.graph_ops (GraphOps construction and neighbourhood sums)."""

from __future__ import annotations

import math

import pytest
import torch
from qgnn.model.nn.graph_ops import GraphOps, graph_ops, spmm_sum
from torch_geometric.data import Data

# 4-node graph, edges (source -> destination): 0->1, 2->1, 1->0, a duplicate 0->1 and a
# self-loop 2->2; node 3 is isolated.
EDGES = torch.tensor([[0, 2, 1, 0, 2], [1, 1, 0, 1, 2]])


def test_csr_of_a_plus_i_hand_made_graph() -> None:
    g = GraphOps.from_edge_index(EDGES, 4)
    assert g.num_nodes == 4
    # rows are destinations: row 0 <- {0 (loop), 1}; row 1 <- {0, 1 (loop), 2};
    # row 2 <- {2 (loop; the input self-loop is not doubled)}; row 3 <- {3}
    assert g.indptr.tolist() == [0, 2, 5, 6, 7]
    assert g.indices.tolist() == [0, 1, 0, 1, 2, 2, 3]
    assert g.indptr.dtype == torch.int64 and g.indices.dtype == torch.int64
    dense = g.adj_t.to_dense()
    assert dense.tolist() == [
        [1.0, 1.0, 0.0, 0.0],
        [1.0, 1.0, 1.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
    noloop = g.adj_t_noloop
    assert noloop.crow_indices().tolist() == [0, 1, 3, 3, 3]
    assert noloop.col_indices().tolist() == [1, 0, 2]
    assert noloop.values().tolist() == [1.0, 1.0, 1.0]


def test_degrees_and_normalisation_factors() -> None:
    g = GraphOps.from_edge_index(EDGES, 4)
    assert g.in_degree.tolist() == [1, 2, 0, 0]
    assert g.deg_hat.tolist() == [2.0, 3.0, 1.0, 1.0]
    torch.testing.assert_close(
        g.dinv_sqrt, torch.tensor([1 / math.sqrt(2), 1 / math.sqrt(3), 1.0, 1.0]))
    # isolated nodes (and the node whose only edge was a self-loop) get inv_in_degree = 0
    assert g.inv_in_degree.tolist() == [1.0, 0.5, 0.0, 0.0]
    assert g.inv_in_degree.dtype == torch.float32


def test_sum_neighbors_hand_computed() -> None:
    g = GraphOps.from_edge_index(EDGES, 4)
    m = torch.tensor([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0], [8.0, 80.0]])
    # with self-loop: row0 = m0 + m1, row1 = m0 + m1 + m2, row2 = m2, row3 = m3
    assert g.sum_neighbors(m).tolist() == [[3.0, 30.0], [7.0, 70.0], [4.0, 40.0], [8.0, 80.0]]
    # no self-loop: row0 = m1, row1 = m0 + m2, rows 2, 3 = 0
    assert g.sum_neighbors_noloop(m).tolist() == [[2.0, 20.0], [5.0, 50.0], [0.0, 0.0],
                                                  [0.0, 0.0]]
    assert spmm_sum(g.adj_t, m).tolist() == g.sum_neighbors(m).tolist()


def test_sum_neighbors_gradient() -> None:
    g = GraphOps.from_edge_index(EDGES, 4)
    m = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (g.sum_neighbors(m) * w).sum().backward()
    torch.testing.assert_close(m.grad, g.adj_t.to_dense().t() @ w)


def test_random_graph_matches_dense_construction() -> None:
    gen = torch.Generator().manual_seed(0)
    n = 30
    ei = torch.randint(0, n, (2, 200), generator=gen)
    g = GraphOps.from_edge_index(ei, n)
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0  # destination rows; duplicates merged
    a.fill_diagonal_(0.0)
    torch.testing.assert_close(g.adj_t_noloop.to_dense(), a)
    torch.testing.assert_close(g.adj_t.to_dense(), a + torch.eye(n))
    assert g.in_degree.tolist() == a.sum(1).long().tolist()
    torch.testing.assert_close(g.deg_hat, a.sum(1) + 1)
    # CSR columns sorted within every row
    for i in range(n):
        row = g.indices[g.indptr[i]:g.indptr[i + 1]]
        assert torch.all(row[1:] > row[:-1])


def test_empty_edge_index() -> None:
    g = GraphOps.from_edge_index(torch.zeros(2, 0, dtype=torch.int64), 3)
    assert g.indptr.tolist() == [0, 1, 2, 3]
    assert g.indices.tolist() == [0, 1, 2]
    assert g.inv_in_degree.tolist() == [0.0, 0.0, 0.0]
    m = torch.randn(3, 2)
    torch.testing.assert_close(g.sum_neighbors(m), m)
    torch.testing.assert_close(g.sum_neighbors_noloop(m), torch.zeros(3, 2))


@pytest.mark.parametrize(
    ("ei", "n", "match"),
    [
        (torch.tensor([0, 1, 2]), 3, "shape"),
        (torch.tensor([[0, 1], [1, 2], [2, 0]]), 3, "shape"),
        (torch.tensor([[0, 3], [1, 0]]), 3, "outside"),
        (torch.tensor([[0, -1], [1, 0]]), 3, "outside"),
    ],
)
def test_invalid_edge_index_raises(ei: torch.Tensor, n: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GraphOps.from_edge_index(ei, n)


def test_graph_ops_caches_on_data() -> None:
    data = Data(x=torch.randn(4, 2), edge_index=EDGES)
    g1 = graph_ops(data)
    g2 = graph_ops(data)
    assert g1 is g2
    assert g1.indptr.tolist() == [0, 2, 5, 6, 7]
    assert "_qgnn_graph_ops" not in data.keys()  # kept out of PyG's attribute store
