"""Quantized GCN convolution: ``D^-1/2 (A + I) D^-1/2 X W + b``, every stage quantized."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..quant.precision import PrecisionConfig
from .features import matmul, quantize_input
from .graph_ops import GraphOps
from .roles import RoleQuantizers
from .sum_message_passing import SumMessagePassing


class QGCNConv(SumMessagePassing):
    """GCN layer, combine-first, with the normalisation split so aggregation is a pure sum.

    Dataflow (``q.<role>`` is a fake quantizer)::

        x   = q.input(x)                       # node features
        w   = q.weight(W)                      # [out, in], per output channel
        h   = q.output(x @ w.T)                # combination
        m_j = q.message(d_j^-1/2 * h_j)        # source-side norm folded into the message
        s_i = sum_{j in N(i) + i} m_j          # pure addition
        a_i = q.aggregate(d_i^-1/2 * s_i)      # destination-side norm
        u_i = q.update(act(a_i + b))           # bias and activation

    Dropout, when given, is applied to the quantized input (after ``q.input``) so the
    input quantizer sees the evaluation-time distribution.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        precision: PrecisionConfig,
        layer: int,
        act: Callable[[Tensor], Tensor] | None = None,
        dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.q = RoleQuantizers(precision, layer)
        self.act = act
        self.dropout = nn.Dropout(dropout)
        nn.init.xavier_uniform_(self.lin.weight)

    def forward(self, x: Tensor, g: GraphOps, protect: Tensor | None = None) -> Tensor:
        q = self.q
        xq = quantize_input(q.input, self.dropout, x, protect)
        h = q.output(matmul(xq, q.weight(self.lin.weight).t()), protect)
        m = q.message(h * g.dinv_sqrt[:, None], protect)
        s = g.sum_neighbors(m)
        a = q.aggregate(s * g.dinv_sqrt[:, None], protect)
        return self.node_update(a, protect)

    def node_update(self, a: Tensor, protect: Tensor | None = None) -> Tensor:
        """Per-node update after aggregation: bias, activation, update quantizer."""
        if self.bias is not None:
            a = a + self.bias
        if self.act is not None:
            a = self.act(a)
        return self.q.update(a, protect)
