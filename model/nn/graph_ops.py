"""Graph operators shared by the quantized layers, built once per graph.

All adjacency matrices are ``adj_t`` (rows are destination nodes, columns sources) in
``torch.sparse_csr`` form with 0/1 entries, so aggregation is a pure sum of messages; every
normalisation is a per-node factor applied before (source side) or after (destination side).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

from .spmm import CSRPattern, csr_matmul

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


@dataclass
class GraphOps:
    """Per-graph constants.

    Attributes:
        num_nodes: N.
        adj_t: (A + I)^T, 0/1, sparse CSR ``[N, N]`` (destination rows).
        adj_t_noloop: A^T without self-loops, sparse CSR ``[N, N]``.
        deg_hat: in-degree plus one (the self-loop), float32 ``[N]``: terms per GCN/GIN sum.
        dinv_sqrt: ``deg_hat ** -0.5`` (GCN normalisation), float32 ``[N]``.
        in_degree: in-degree without self-loop, int64 ``[N]``.
        inv_in_degree: ``1 / in_degree`` with 0 for isolated nodes (SAGE mean), float32 ``[N]``.
        indptr, indices: CSR of A + I (int64), as exported to the hardware.
    """

    num_nodes: int
    adj_t: Tensor
    adj_t_noloop: Tensor
    deg_hat: Tensor
    dinv_sqrt: Tensor
    in_degree: Tensor
    inv_in_degree: Tensor
    indptr: Tensor
    indices: Tensor
    pattern: CSRPattern
    pattern_noloop: CSRPattern

    def sum_neighbors(self, m: Tensor) -> Tensor:
        """``s_i = sum_{j in N(i) + i} m_j`` (pure addition, self-loop included)."""
        return csr_matmul(self.pattern, self.adj_t.values(), m)

    def sum_neighbors_noloop(self, m: Tensor) -> Tensor:
        """``s_i = sum_{j in N(i)} m_j`` (no self-loop; 0 for isolated nodes)."""
        return csr_matmul(self.pattern_noloop, self.adj_t_noloop.values(), m)

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int) -> GraphOps:
        """Build from a ``[2, E]`` (source, destination) edge list; self-loops are dropped
        and duplicate edges merged before the single self-loop per node is added."""
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {tuple(edge_index.shape)}")
        if edge_index.numel() and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
            raise ValueError(f"edge_index has node ids outside [0, {num_nodes})")
        src, dst = edge_index[0].long(), edge_index[1].long()
        keep = src != dst
        src, dst = src[keep], dst[keep]
        key = torch.unique(dst * num_nodes + src)  # sorted by (dst, src), duplicates merged
        dst, src = key // num_nodes, key % num_nodes
        in_degree = torch.bincount(dst, minlength=num_nodes)
        adj_noloop = _csr(dst, src, in_degree, num_nodes)
        loop = torch.arange(num_nodes)
        key2 = torch.sort(torch.cat([key, loop * num_nodes + loop])).values
        dst2, src2 = key2 // num_nodes, key2 % num_nodes
        deg_hat = in_degree + 1
        adj = _csr(dst2, src2, deg_hat, num_nodes)
        deg_f = deg_hat.to(torch.float32)
        inv = torch.where(in_degree > 0, 1.0 / in_degree.clamp_min(1).to(torch.float32), 0.0)
        return cls(
            num_nodes=num_nodes,
            adj_t=adj,
            adj_t_noloop=adj_noloop,
            deg_hat=deg_f,
            dinv_sqrt=deg_f.rsqrt(),
            in_degree=in_degree,
            inv_in_degree=inv,
            indptr=adj.crow_indices(),
            indices=adj.col_indices(),
            pattern=CSRPattern.from_tensor(adj),
            pattern_noloop=CSRPattern.from_tensor(adj_noloop),
        )


def _csr(dst: Tensor, src: Tensor, counts: Tensor, n: int) -> Tensor:
    indptr = torch.zeros(n + 1, dtype=torch.int64)
    indptr[1:] = torch.cumsum(counts, 0)
    return torch.sparse_csr_tensor(
        indptr, src, torch.ones(src.numel(), dtype=torch.float32), size=(n, n)
    )


def graph_ops(data: object) -> GraphOps:
    """The :class:`GraphOps` of a PyG ``Data`` object, cached on it."""
    # Kept in the instance __dict__, outside PyG's attribute store, so it is never collated
    # or moved with the data.
    cached = data.__dict__.get("_qgnn_graph_ops")
    if cached is None:
        cached = GraphOps.from_edge_index(data.edge_index, int(data.num_nodes))  # type: ignore[attr-defined]
        data.__dict__["_qgnn_graph_ops"] = cached
    return cached


def spmm_sum(adj_t: Tensor, x: Tensor) -> Tensor:
    """``out[i] = sum_{j: adj_t[i, j] = 1} x[j]`` (pure sum of messages)."""
    return torch.sparse.mm(adj_t, x)
