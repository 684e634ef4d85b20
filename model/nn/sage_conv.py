"""Quantized GraphSAGE (mean) convolution, every stage quantized."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..quant.precision import PrecisionConfig
from ..quant.quantizer import Quantizer
from .features import densify
from .graph_ops import GraphOps
from .roles import RoleQuantizers
from .sum_message_passing import SumMessagePassing


class QSAGEConv(SumMessagePassing):
    """GraphSAGE with mean aggregation, aggregate-first.

    Dataflow::

        x   = q.input(x)
        m_j = q.message(x_j)
        a_i = q.aggregate((1 / |N(i)|) * sum_{j in N(i)} m_j)   # 0 for isolated nodes
        h   = q.output(a @ q.weight(W_l).T + x @ q_root_weight(W_r).T)
        u   = q.update(act(h + b))

    The sum is a pure addition; the mean's ``1/|N(i)|`` is a per-destination factor.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        precision: PrecisionConfig,
        layer: int,
        act: Callable[[Tensor], Tensor] | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.lin_l = nn.Linear(in_channels, out_channels, bias=True)
        self.lin_r = nn.Linear(in_channels, out_channels, bias=False)
        self.q = RoleQuantizers(precision, layer)
        self.q_root_weight = Quantizer(
            precision.spec(layer, "weight"), channel_axis=0, name=f"layer{layer}.root_weight"
        )
        self.act = act
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, g: GraphOps, protect: Tensor | None = None) -> Tensor:
        q = self.q
        x = self.dropout(q.input(densify(x), protect))
        m = q.message(x, protect)
        s = g.sum_neighbors_noloop(m)
        a = q.aggregate(s * g.inv_in_degree[:, None], protect)
        h = a @ q.weight(self.lin_l.weight).t() + x @ self.q_root_weight(self.lin_r.weight).t()
        h = q.output(h, protect)
        return self.node_update(h, protect)

    def node_update(self, h: Tensor, protect: Tensor | None = None) -> Tensor:
        """Bias, activation and update quantizer."""
        h = h + self.lin_l.bias
        if self.act is not None:
            h = self.act(h)
        return self.q.update(h, protect)


