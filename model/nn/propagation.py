"""Quantized parameter-free propagation step (APPNP-style), for the decoupled model."""

from __future__ import annotations

from torch import Tensor

from ..quant.precision import PrecisionConfig
from .graph_ops import GraphOps
from .roles import RoleQuantizers
from .sum_message_passing import SumMessagePassing


class QPropagation(SumMessagePassing):
    """One step ``z' = (1 - α) D^-1/2 (A + I) D^-1/2 z + α h``, every stage quantized.

    Dataflow::

        m_j = q.message(d_j^-1/2 * z_j)
        a_i = q.aggregate(d_i^-1/2 * sum_{j in N(i) + i} m_j)
        z_i = q.update((1 - α) a_i + α h_i)

    ``h`` is the MLP output (the teleport term); ``α`` is the teleport probability.
    """

    def __init__(self, precision: PrecisionConfig, layer: int, alpha: float = 0.1) -> None:
        super().__init__()
        if not (0.0 <= alpha <= 1.0):
            raise ValueError(f"teleport alpha must be in [0, 1], got {alpha}")
        self.alpha = alpha
        self.q = RoleQuantizers(precision, layer, roles=("message", "aggregate", "update"))

    def forward(
        self, z: Tensor, h: Tensor, g: GraphOps, protect: Tensor | None = None
    ) -> Tensor:
        q = self.q
        m = q.message(z * g.dinv_sqrt[:, None], protect)
        s = g.sum_neighbors(m)
        a = q.aggregate(s * g.dinv_sqrt[:, None], protect)
        return q.update((1.0 - self.alpha) * a + self.alpha * h, protect)
