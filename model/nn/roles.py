"""Per-layer set of role quantizers."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ..quant.bit_truncation import make_quantizer
from ..quant.node_precision import NodeBucketQuantizer
from ..quant.precision import ROLES, PrecisionConfig
from ..quant.quantizer import Quantizer


class RoleQuantizers(nn.Module):
    """One :class:`Quantizer` per tensor role of layer ``layer``.

    Access as attributes: ``q.input``, ``q.weight``, ``q.output``, ``q.message``,
    ``q.aggregate``, ``q.update``. Weights are quantized per output channel (axis 0 of
    ``[out, in]``); activations along their feature axis (-1). A spec with INT2 bit
    truncation (``truncation="bt"``/``"bt_star"``) gets a
    :class:`~model.quant.bit_truncation.BitTruncQuantizer`. A role that follows the
    precision's node buckets (``nodes`` table) gets a
    :class:`~model.quant.node_precision.NodeBucketQuantizer` (one quantizer per bucket).
    """

    def __init__(
        self, precision: PrecisionConfig, layer: int, roles: Iterable[str] = ROLES, prefix: str = ""
    ) -> None:
        super().__init__()
        self.layer = layer
        self.roles = tuple(roles)
        for role in self.roles:
            spec = precision.spec(layer, role)
            axis = 0 if role == "weight" else -1
            name = f"{prefix}layer{layer}.{role}"
            node_specs = precision.node_specs(layer, role)
            node = precision.node_precision(layer)
            q: Quantizer | NodeBucketQuantizer
            if node_specs is not None and node is not None:
                q = NodeBucketQuantizer(node_specs, node, channel_axis=axis, name=name,
                                        make_quantizer=make_quantizer)
            else:
                q = make_quantizer(spec, channel_axis=axis, name=name)
            self.add_module(role, q)

    def __getattr__(self, name: str) -> Quantizer:  # type: ignore[override]
        return super().__getattr__(name)  # type: ignore[return-value]

    def items(self) -> list[tuple[str, Quantizer]]:
        """``(role, quantizer)`` pairs in dataflow order."""
        return [(r, getattr(self, r)) for r in self.roles]
