"""Quantized GNN layers (one per file) and models."""

from .gcn_conv import QGCNConv
from .gin_conv import QGINConv
from .graph_ops import GraphOps, graph_ops
from .linear import QLinear
from .models import MODEL_NAMES, ModelConfig, QConvStack, QDecoupled, QuantGNN, build_model
from .propagation import QPropagation
from .sage_conv import QSAGEConv

__all__ = [
    "MODEL_NAMES",
    "GraphOps",
    "ModelConfig",
    "QConvStack",
    "QDecoupled",
    "QGCNConv",
    "QGINConv",
    "QLinear",
    "QPropagation",
    "QSAGEConv",
    "QuantGNN",
    "build_model",
    "graph_ops",
]
