"""Quantized linear layer (the MLP stages of the decoupled model)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from ..quant.precision import PrecisionConfig
from .features import matmul, quantize_input
from .roles import RoleQuantizers


class QLinear(nn.Module):
    """``q.update(act(q.output(q.input(x) @ q.weight(W).T) + b))``."""

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
        self.lin = nn.Linear(in_channels, out_channels)
        self.q = RoleQuantizers(precision, layer, roles=("input", "weight", "output", "update"))
        self.act = act
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, protect: Tensor | None = None) -> Tensor:
        q = self.q
        xq = quantize_input(q.input, self.dropout, x, protect)
        h = q.output(matmul(xq, q.weight(self.lin.weight).t()), protect) + self.lin.bias
        if self.act is not None:
            h = self.act(h)
        return q.update(h, protect)
