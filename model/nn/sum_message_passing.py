"""Shared MessagePassing base: messages are the source rows, aggregation a pure sum."""

from __future__ import annotations

from torch import Tensor
from torch_geometric.nn import MessagePassing

from .graph_ops import spmm_sum


class SumMessagePassing(MessagePassing):
    """``message(x_j) = x_j`` and ``aggregate = sum``, for PyG interop (``propagate`` with an
    ``edge_index`` or a sparse ``adj_t``). The quantized layers call
    :meth:`~model.nn.graph_ops.GraphOps.sum_neighbors` directly for speed."""

    def __init__(self) -> None:
        super().__init__(aggr="add")

    def message(self, x_j: Tensor) -> Tensor:
        return x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return spmm_sum(adj_t, x)
