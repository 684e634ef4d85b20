"""Quantized GIN convolution (GIN-0): ``MLP((A + I) X)``, every stage quantized."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..quant.precision import PrecisionConfig
from .features import densify
from .graph_ops import GraphOps
from .roles import RoleQuantizers
from .sum_message_passing import SumMessagePassing


class QGINConv(SumMessagePassing):
    """GIN layer with ε = 0, aggregate-first; the sum over ``N(i) ∪ {i}`` is a pure addition.

    Dataflow::

        x   = q.input(x)
        m_j = q.message(x_j)
        a_i = q.aggregate(sum_{j in N(i) + i} m_j)
        h   = q.output(a @ q.weight(W1).T + b1)      # MLP, first linear
        h   = q2.input(relu(h))
        o   = q2.output(h @ q2.weight(W2).T)          # MLP, second linear
        u   = q.update(act(o + b2))

    The MLP's second linear has its own quantizers (``q2``) with the same specs as the layer's
    ``input``/``weight``/``output`` roles.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        precision: PrecisionConfig,
        layer: int,
        act: Callable[[Tensor], Tensor] | None = None,
        dropout: float = 0.0,
        hidden: int | None = None,
    ) -> None:
        super().__init__()
        hidden = hidden or out_channels
        self.lin1 = nn.Linear(in_channels, hidden)
        self.lin2 = nn.Linear(hidden, out_channels)
        self.q = RoleQuantizers(precision, layer)
        self.q2 = RoleQuantizers(precision, layer, roles=("input", "weight", "output"), prefix="mlp2.")
        self.act = act
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, g: GraphOps, protect: Tensor | None = None) -> Tensor:
        q, q2 = self.q, self.q2
        x = self.dropout(q.input(densify(x), protect))
        m = q.message(x, protect)
        s = g.sum_neighbors(m)
        a = q.aggregate(s, protect)
        h = q.output(a @ q.weight(self.lin1.weight).t() + self.lin1.bias, protect)
        h = q2.input(torch.relu(h), protect)
        o = q2.output(h @ q2.weight(self.lin2.weight).t(), protect)
        return self.node_update(o, protect)

    def node_update(self, o: Tensor, protect: Tensor | None = None) -> Tensor:
        """Bias, activation and update quantizer."""
        o = o + self.lin2.bias
        if self.act is not None:
            o = self.act(o)
        return self.q.update(o, protect)
