"""Quantized GNN models: GCN, GIN, GraphSAGE (mean) and the decoupled MLP + propagation model.

Layer indices used by :class:`~model.quant.precision.PrecisionConfig`: message-passing models
number their convolutions 0..L-1; the decoupled model numbers its MLP layers 0..L-1 and its
propagation steps L..L+K-1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..quant.degree_quant import DegreeQuantConfig, protection_probability, sample_protect_mask
from ..quant.node_precision import (
    NodeBucketQuantizer,
    avg_feature_bits,
    bind_graph,
    memory_penalty,
    node_quantizers,
)
from ..quant.precision import PrecisionConfig
from ..quant.quantizer import Quantizer
from .gcn_conv import QGCNConv
from .gin_conv import QGINConv
from .graph_ops import GraphOps, graph_ops
from .linear import QLinear
from .propagation import QPropagation
from .sage_conv import QSAGEConv
from .smp_propagation import QSMPPropagation, SMPConstants, SMPState

MODEL_NAMES: tuple[str, ...] = ("gcn", "gin", "sage", "decoupled")
#: Propagation steps of the decoupled model: APPNP-style, or smoothness-aware (SMP).
PROPAGATIONS: tuple[str, ...] = ("appnp", "smp")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture hyper-parameters.

    Attributes:
        name: one of :data:`MODEL_NAMES`.
        hidden: hidden width (features).
        layers: message-passing layers (GCN/GIN/SAGE) or MLP layers (decoupled).
        dropout: dropout probability on layer inputs.
        k: propagation steps of the decoupled model.
        alpha: teleport probability of the decoupled model's APPNP propagation.
        propagation: the decoupled model's step, one of :data:`PROPAGATIONS`: ``"appnp"``
            (:class:`~model.nn.propagation.QPropagation`) or ``"smp"``
            (:class:`~model.nn.smp_propagation.QSMPPropagation`, which ignores ``alpha``).
        smp_mu, smp_step, smp_eta_lambda, smp_eta_slack, smp_bound, smp_lambda0, smp_slack0:
            SMP's constants (see :class:`~model.nn.smp_propagation.SMPConstants`).
    """

    name: str = "gcn"
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.5
    k: int = 10
    alpha: float = 0.1
    propagation: str = "appnp"
    smp_mu: float = 9.0
    smp_step: float = 0.1
    smp_eta_lambda: float = 1e-5
    smp_eta_slack: float = 1e-5
    smp_bound: float = 0.1
    smp_lambda0: float = 1e-3
    smp_slack0: float = 1e-3

    def __post_init__(self) -> None:
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.name!r}; allowed: {', '.join(MODEL_NAMES)}")
        if self.hidden < 1 or self.layers < 1 or self.k < 0:
            raise ValueError("hidden and layers must be >= 1 and k >= 0")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not (0.0 <= self.alpha <= 1.0):
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.propagation not in PROPAGATIONS:
            raise ValueError(
                f"unknown propagation {self.propagation!r}; allowed: {', '.join(PROPAGATIONS)}"
            )
        self.smp_constants()  # validates the SMP constants

    def smp_constants(self) -> SMPConstants:
        """The SMP constants as :class:`~model.nn.smp_propagation.SMPConstants`."""
        return SMPConstants(
            mu=self.smp_mu, step=self.smp_step, eta_lambda=self.smp_eta_lambda,
            eta_slack=self.smp_eta_slack, bound=self.smp_bound, lambda0=self.smp_lambda0,
            slack0=self.smp_slack0,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class QuantGNN(nn.Module):
    """Base class: graph handling, Degree-Quant masking and quantizer enumeration."""

    def __init__(self, degree_quant: DegreeQuantConfig | None = None) -> None:
        super().__init__()
        self.degree_quant = degree_quant

    def protect_mask(self, g: GraphOps) -> Tensor | None:
        """Sample Degree-Quant's protected nodes (training only)."""
        if self.degree_quant is None or not self.training:
            return None
        prob = protection_probability(g.in_degree, self.degree_quant)
        return sample_protect_mask(prob)

    def quantizers(self) -> list[tuple[str, Quantizer]]:
        """All quantizers with their module paths, in registration order."""
        return [(n, m) for n, m in self.named_modules() if isinstance(m, Quantizer)]

    def quant_parameters(self) -> list[nn.Parameter]:
        """Learnable quantizer parameters (step sizes, offsets, α, learned node widths)."""
        ids = {id(p) for _, q in self.quantizers() for p in q.parameters(recurse=False)}
        ids |= {id(p) for q in node_quantizers(self) for p in q.parameters(recurse=False)}
        return [p for p in self.parameters() if id(p) in ids]

    # ------------------------------------------------------------ node buckets
    def bind_graph(self, g: GraphOps) -> None:
        """Give every node-bucketed quantizer the graph's bucket table (degree modes) or a
        width per node (learned mode). Called by ``forward``."""
        bind_graph(self, g)

    def avg_feature_bits(self, graph: GraphOps | Any | None = None) -> float:
        """Mean stored width in bits of the per-node activations (every non-weight role of
        every layer, node-count weighted; FP32 = 32): 2.0 for a uniform INT2 model. Models
        with node buckets need ``graph`` (or a previous forward pass)."""
        if graph is not None:
            self.bind_graph(graph if isinstance(graph, GraphOps) else graph_ops(graph))
        return avg_feature_bits(self)

    def memory_penalty(self) -> Tensor | None:
        """The learned-width memory penalty (see :mod:`model.quant.node_precision`), or
        ``None`` when no width is learned."""
        return memory_penalty(self)

    def has_node_buckets(self) -> bool:
        return any(True for _ in node_quantizers(self))

    def project_node_widths(self) -> None:
        """Clamp learned widths into their allowed range (after an optimizer step)."""
        for q in node_quantizers(self):
            q.project()

    def snap_node_widths(self) -> None:
        """Freeze learned widths into fixed bucket tables (a plain bucketed model)."""
        for q in node_quantizers(self):
            if isinstance(q, NodeBucketQuantizer) and q.node.learned:
                q.snap()

    def weight_parameters(self) -> list[nn.Parameter]:
        """Every other parameter (weights and biases)."""
        ids = {id(p) for p in self.quant_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def forward(self, x: Tensor, graph: GraphOps | Any) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class QConvStack(QuantGNN):
    """L message-passing layers with ReLU between them (GCN, GIN, SAGE)."""

    def __init__(
        self,
        conv: type[nn.Module],
        in_channels: int,
        num_classes: int,
        precision: PrecisionConfig,
        cfg: ModelConfig,
        degree_quant: DegreeQuantConfig | None = None,
    ) -> None:
        super().__init__(degree_quant)
        dims = [in_channels] + [cfg.hidden] * (cfg.layers - 1) + [num_classes]
        self.convs = nn.ModuleList()
        for i in range(cfg.layers):
            last = i == cfg.layers - 1
            self.convs.append(
                conv(dims[i], dims[i + 1], precision, i, act=None if last else F.relu, dropout=cfg.dropout)
            )

    def forward(self, x: Tensor, graph: GraphOps | Any) -> Tensor:
        g = graph if isinstance(graph, GraphOps) else graph_ops(graph)
        self.bind_graph(g)
        protect = self.protect_mask(g)
        for conv in self.convs:
            x = conv(x, g, protect)
        return x


class QDecoupled(QuantGNN):
    """Decoupled model (SMP's architecture): an MLP, then K parameter-free propagation steps
    (APPNP-style, or SMP's smoothness-aware steps with ``cfg.propagation == "smp"``).

    With SMP, ``smp_trace`` holds the last forward pass's multiplier and slack after every
    step, as ``[(λ_1, s_1), ..., (λ_K, s_K)]`` floats (diagnostics only).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        precision: PrecisionConfig,
        cfg: ModelConfig,
        degree_quant: DegreeQuantConfig | None = None,
    ) -> None:
        super().__init__(degree_quant)
        dims = [in_channels] + [cfg.hidden] * (cfg.layers - 1) + [num_classes]
        self.mlp = nn.ModuleList(
            QLinear(dims[i], dims[i + 1], precision, i,
                    act=None if i == cfg.layers - 1 else F.relu, dropout=cfg.dropout)
            for i in range(cfg.layers)
        )
        self.propagation = cfg.propagation
        self.smp = cfg.smp_constants()
        self.smp_trace: list[tuple[float, float]] = []
        if cfg.propagation == "smp":
            self.props = nn.ModuleList(
                QSMPPropagation(precision, cfg.layers + k, self.smp) for k in range(cfg.k)
            )
        else:
            self.props = nn.ModuleList(
                QPropagation(precision, cfg.layers + k, alpha=cfg.alpha) for k in range(cfg.k)
            )

    def forward(self, x: Tensor, graph: GraphOps | Any) -> Tensor:
        g = graph if isinstance(graph, GraphOps) else graph_ops(graph)
        self.bind_graph(g)
        protect = self.protect_mask(g)
        for lin in self.mlp:
            x = lin(x, protect)
        h = x
        z = h
        if self.propagation == "smp":
            state = SMPState.initial(self.smp, h)
            trace = []
            for prop in self.props:
                z, state = prop(z, h, g, state, protect)
                trace.append((state.lam, state.slack))
            self.smp_trace = [(float(lam.detach()), float(s.detach())) for lam, s in trace]
            return z
        for prop in self.props:
            z = prop(z, h, g, protect)
        return z


def build_model(
    cfg: ModelConfig,
    in_channels: int,
    num_classes: int,
    precision: PrecisionConfig,
    degree_quant: DegreeQuantConfig | None = None,
) -> QuantGNN:
    """Instantiate the model named by ``cfg.name``."""
    if cfg.name == "decoupled":
        return QDecoupled(in_channels, num_classes, precision, cfg, degree_quant)
    conv = {"gcn": QGCNConv, "gin": QGINConv, "sage": QSAGEConv}[cfg.name]
    return QConvStack(conv, in_channels, num_classes, precision, cfg, degree_quant)


