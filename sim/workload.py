"""Workload: a graph (row lengths, edge endpoints) and a model as an ordered list of phases.

A phase is one engine's pass over the whole graph: a combination (``GemmPhase``: a dense
``N x K`` by ``K x M`` product on the MAC array) or an aggregation (``AggPhase``: a CSR sum of
code rows on the aggregation engine). The list comes from the layer shapes of a model built by
:func:`model.nn.build_model` and the per-role bit widths of a
:class:`model.quant.PrecisionConfig`; the requantizations per value follow the integer model
(:mod:`model.integer.convert`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from model.nn import ModelConfig, build_model
from model.nn.gcn_conv import QGCNConv
from model.nn.gin_conv import QGINConv
from model.nn.models import QConvStack, QDecoupled, QuantGNN
from model.nn.sage_conv import QSAGEConv
from model.quant import PrecisionConfig

__all__ = ["AggPhase", "GemmPhase", "Graph", "Phase", "build_phases", "graph_from_data",
           "model_layers"]

FP32 = 32


@dataclass
class Graph:
    """Graph structure in the form the simulator needs (no features).

    Attributes:
        name: dataset name.
        num_nodes: N.
        src, dst: endpoints of every edge (no self-loops, no duplicates), int64 ``[E]``.
        in_degree: in-degree without self-loop, int64 ``[N]``.
        num_features: input feature width.
        num_classes: output width.
    """

    name: str
    num_nodes: int
    src: np.ndarray
    dst: np.ndarray
    in_degree: np.ndarray
    num_features: int
    num_classes: int
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    def row_lengths(self, self_loops: bool) -> np.ndarray:
        """Terms per destination row, int64 ``[N]`` (``in_degree + 1`` with self-loops)."""
        return self.in_degree + 1 if self_loops else self.in_degree

    def num_terms(self, self_loops: bool) -> int:
        return self.num_edges + (self.num_nodes if self_loops else 0)


def graph_from_arrays(name: str, num_nodes: int, src: np.ndarray, dst: np.ndarray,
                      num_features: int, num_classes: int) -> Graph:
    """A :class:`Graph` from edge endpoints; self-loops are dropped and duplicates merged."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError("src and dst must be 1-D arrays of the same length")
    if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= num_nodes):
        raise ValueError(f"edge endpoints outside [0, {num_nodes})")
    keep = src != dst
    if not keep.all():
        src, dst = src[keep], dst[keep]
    key = dst * np.int64(num_nodes) + src
    if key.size > 1 and not bool(np.all(key[1:] > key[:-1])):
        key = np.unique(key)
        dst, src = np.divmod(key, np.int64(num_nodes))
    in_degree = np.bincount(dst, minlength=num_nodes).astype(np.int64)
    return Graph(name=name, num_nodes=int(num_nodes), src=src, dst=dst, in_degree=in_degree,
                 num_features=int(num_features), num_classes=int(num_classes))


def graph_from_data(data: Any, name: str | None = None) -> Graph:
    """A :class:`Graph` from a PyG ``Data`` (``edge_index`` row 0 = source, row 1 = target)."""
    ei = data.edge_index
    ei = ei.cpu().numpy() if isinstance(ei, torch.Tensor) else np.asarray(ei)
    n = int(data.num_nodes)
    x = getattr(data, "x", None)
    nf = int(x.shape[1]) if x is not None else int(getattr(data, "num_features", 1))
    nc = getattr(data, "num_classes", None)
    if nc is None:
        y = getattr(data, "y", None)
        nc = int(y.max()) + 1 if y is not None and len(y) else 2
    return graph_from_arrays(name or str(getattr(data, "name", "graph")), n, ei[0], ei[1],
                             nf, int(nc))


# ----------------------------------------------------------------------------- phases


@dataclass
class GemmPhase:
    """A combination: ``[n x k]`` codes times ``[k x m]`` weights on the MAC array.

    Bits are per tensor (32 = FP32). ``post_requants`` requantizations follow every output
    value (integer model). The last ``root_k`` of the ``k`` input columns are not streamed from
    the previous phase but read per row from the layer input (``root_bits`` wide; SAGE's root
    term ``x_i`` when aggregate-first)."""

    layer: int
    name: str
    n: int
    k: int
    m: int
    act_bits: int
    weight_bits: int
    out_bits: int
    post_requants: int
    root_k: int = 0
    root_bits: int = 0
    kind: str = "combine"


@dataclass
class AggPhase:
    """An aggregation: ``out_i = requant(sum_{j in row i} x_j)`` over ``features`` lanes.

    ``self_loops`` selects the CSR (A + I for GCN/GIN/propagation, A for SAGE).
    ``pre_requants`` are requantizations per input value before the sum (message codes from
    the layer input), ``post_requants`` per output value after it (the engine's own one
    included). ``side_values`` values of ``side_bits`` bits per row are an extra operand read
    at the output (SAGE's root term when combine-first, the propagation's teleport term).
    ``side_from_prev``: the side operand is part of the previous combination's output.
    ``node_factor`` says the
    FP32 counterpart reads a per-node scale (GCN/SAGE/propagation normalisation)."""

    layer: int
    name: str
    features: int
    in_bits: int
    out_bits: int
    self_loops: bool
    pre_requants: int
    post_requants: int
    side_values: int = 0
    side_bits: int = 0
    side_from_prev: bool = False
    node_factor: bool = True
    kind: str = "aggregate"


Phase = GemmPhase | AggPhase


@dataclass(frozen=True)
class LayerShape:
    """One model layer: its type and widths (from the built model)."""

    index: int
    kind: str  # gcn | gin | sage | linear | prop
    k: int
    m: int
    hidden: int = 0


def _model_from(model: str | ModelConfig | QuantGNN, in_channels: int, num_classes: int,
                precision: PrecisionConfig, hidden: int, layers: int) -> QuantGNN:
    if isinstance(model, QuantGNN):
        return model
    cfg = model if isinstance(model, ModelConfig) else ModelConfig(
        name=str(model).lower(), hidden=hidden, layers=layers)
    return build_model(cfg, in_channels, num_classes, precision)


def model_layers(model: str | ModelConfig | QuantGNN, in_channels: int, num_classes: int,
                 precision: PrecisionConfig, hidden: int = 64, layers: int = 2
                 ) -> list[LayerShape]:
    """Layer shapes read from the built model's modules (weights are not used)."""
    net = _model_from(model, in_channels, num_classes, precision, hidden, layers)
    out: list[LayerShape] = []
    if isinstance(net, QConvStack):
        for i, conv in enumerate(net.convs):
            if isinstance(conv, QGCNConv):
                o, k = conv.lin.weight.shape
                out.append(LayerShape(i, "gcn", int(k), int(o)))
            elif isinstance(conv, QGINConv):
                h, k = conv.lin1.weight.shape
                o = conv.lin2.weight.shape[0]
                out.append(LayerShape(i, "gin", int(k), int(o), int(h)))
            elif isinstance(conv, QSAGEConv):
                o, k = conv.lin_l.weight.shape
                out.append(LayerShape(i, "sage", int(k), int(o)))
            else:  # pragma: no cover - future layer types
                raise ValueError(f"layer {i}: unsupported layer type {type(conv).__name__}")
    elif isinstance(net, QDecoupled):
        for i, lin in enumerate(net.mlp):
            o, k = lin.lin.weight.shape  # type: ignore[union-attr,misc]
            out.append(LayerShape(i, "linear", int(k), int(o)))
        c = out[-1].m
        for j, _prop in enumerate(net.props):
            out.append(LayerShape(len(net.mlp) + j, "prop", c, c))
    else:  # pragma: no cover
        raise ValueError(f"unsupported model type {type(net).__name__}")
    return out


def _bits(p: PrecisionConfig, layer: int, role: str) -> int:
    return int(p.spec(layer, role).bits)


def layer_phases(shape: LayerShape, precision: PrecisionConfig, n: int, order: str,
                 teleport_bits: int = 0) -> list[Phase]:
    """Phases of one layer in dataflow ``order`` (``aggregate-first``/``combine-first``)."""
    i = shape.index
    b = {r: _bits(precision, i, r) for r in
         ("input", "weight", "output", "message", "aggregate", "update")}
    nm = f"layer{i}"
    if shape.kind == "linear":
        return [GemmPhase(i, f"{nm}.combine", n, shape.k, shape.m, b["input"], b["weight"],
                          b["update"], post_requants=2)]
    if shape.kind == "prop":
        return [AggPhase(i, f"{nm}.propagate", shape.k, b["message"], b["update"], True,
                         pre_requants=1, post_requants=2, side_values=shape.k,
                         side_bits=teleport_bits)]
    if shape.kind == "gcn":
        if order == "combine-first":
            return [GemmPhase(i, f"{nm}.combine", n, shape.k, shape.m, b["input"], b["weight"],
                              b["message"], post_requants=2),
                    AggPhase(i, f"{nm}.aggregate", shape.m, b["message"], b["update"], True,
                             pre_requants=0, post_requants=2)]
        return [AggPhase(i, f"{nm}.aggregate", shape.k, b["message"], b["aggregate"], True,
                         pre_requants=1, post_requants=1),
                GemmPhase(i, f"{nm}.combine", n, shape.k, shape.m, b["aggregate"], b["weight"],
                          b["update"], post_requants=2)]
    if shape.kind == "gin":
        h = shape.hidden
        second = GemmPhase(i, f"{nm}.combine2", n, h, shape.m, b["input"], b["weight"],
                           b["update"], post_requants=2)
        if order == "combine-first":
            return [GemmPhase(i, f"{nm}.combine1", n, shape.k, h, b["input"], b["weight"],
                              b["message"], post_requants=1),
                    AggPhase(i, f"{nm}.aggregate", h, b["message"], b["input"], True,
                             pre_requants=0, post_requants=2, node_factor=False),
                    second]
        return [AggPhase(i, f"{nm}.aggregate", shape.k, b["message"], b["aggregate"], True,
                         pre_requants=1, post_requants=1, node_factor=False),
                GemmPhase(i, f"{nm}.combine1", n, shape.k, h, b["aggregate"], b["weight"],
                          b["output"], post_requants=2),
                second]
    if shape.kind == "sage":
        if order == "combine-first":
            # [W_l | W_r] in one product; only the W_l half is aggregated, the W_r half is
            # the root term added at the aggregation's output.
            return [GemmPhase(i, f"{nm}.combine", n, shape.k, 2 * shape.m, b["input"],
                              b["weight"], b["message"], post_requants=1),
                    AggPhase(i, f"{nm}.aggregate", shape.m, b["message"], b["update"], False,
                             pre_requants=0, post_requants=3,
                             side_values=shape.m, side_bits=b["message"],
                             side_from_prev=True)]
        return [AggPhase(i, f"{nm}.aggregate", shape.k, b["message"], b["aggregate"], False,
                         pre_requants=1, post_requants=1),
                GemmPhase(i, f"{nm}.combine", n, 2 * shape.k, shape.m,
                          max(b["aggregate"], b["input"]), b["weight"], b["update"],
                          post_requants=2, root_k=shape.k, root_bits=b["input"])]
    raise ValueError(f"unknown layer kind {shape.kind!r}")  # pragma: no cover


def build_phases(shapes: list[LayerShape], precision: PrecisionConfig, n: int,
                 orders: dict[int, str]) -> list[Phase]:
    """All phases of a model, layer by layer (``orders``: dataflow per layer index)."""
    phases: list[Phase] = []
    teleport_bits = 0
    for s in shapes:
        if s.kind == "linear":
            teleport_bits = _bits(precision, s.index, "update")
        phases.extend(layer_phases(s, precision, n, orders.get(s.index, "combine-first"),
                                   teleport_bits))
    return phases


def fp32_phases(phases: list[Phase]) -> list[Phase]:
    """The same phases with every tensor in FP32 (the FP32 counterpart's workload)."""
    out: list[Phase] = []
    for p in phases:
        if isinstance(p, GemmPhase):
            out.append(replace(p, act_bits=FP32, weight_bits=FP32, out_bits=FP32,
                               root_bits=FP32 if p.root_k else 0))
        else:
            out.append(replace(p, in_bits=FP32, out_bits=FP32,
                               side_bits=FP32 if p.side_values else 0))
    return out


def has_orders(shapes: list[LayerShape]) -> list[int]:
    """Layers whose dataflow can be chosen (message-passing layers)."""
    return [s.index for s in shapes if s.kind in ("gcn", "gin", "sage")]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def log2_ceil(x: int) -> int:
    return math.ceil(math.log2(max(x, 1)))
