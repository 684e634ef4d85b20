"""Workload: a graph (row lengths, edge endpoints) and a model as an ordered list of phases.

A phase is one engine's pass over the whole graph: a combination (``GemmPhase``: an
``N x K`` by ``K x M`` product on the MAC array) or an aggregation (``AggPhase``: a CSR sum of
code rows on the aggregation engine). The first combination of a model, when it reads the
dataset's input features X directly, carries X's sparsity pattern (:class:`InputPattern`) so
that the engine can stream only X's non-zeros (see ``docs/sim.md``, sparse input). The list comes from the layer shapes of a model built by
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
from qgnn.model.nn import ModelConfig, build_model
from qgnn.model.nn.features import SPARSE_DENSITY
from qgnn.model.nn.gcn_conv import QGCNConv
from qgnn.model.nn.gin_conv import QGINConv
from qgnn.model.nn.models import QConvStack, QDecoupled, QuantGNN
from qgnn.model.nn.sage_conv import QSAGEConv
from qgnn.model.quant import PrecisionConfig

__all__ = ["AggPhase", "GemmPhase", "Graph", "InputPattern", "NodeBuckets", "Phase",
           "SPARSE_DENSITY", "TileStats", "build_phases", "graph_from_data", "layer_buckets",
           "model_layers"]

FP32 = 32
#: Largest (row tile x column) bitmap :meth:`InputPattern.tile_stats` builds (entries);
#: beyond it the union counts come from ``np.unique``.
MAX_UNION_BITMAP = 1 << 26


@dataclass(frozen=True)
class TileStats:
    """Per (row tile, column block) counts of a sparse input, each int64 ``[tiles, blocks]``.

    Row tile ``t`` holds rows ``t*R .. t*R + R - 1``; column block ``b`` holds columns
    ``b*kt .. b*kt + kt - 1`` (one block when the reduction is not tiled).

    Attributes:
        union: distinct column indices among the tile's non-zeros in the block.
        nnz: non-zeros of the tile in the block.
        row_max: the largest number of non-zeros of one row of the tile in the block.
    """

    union: np.ndarray
    nnz: np.ndarray
    row_max: np.ndarray


class InputPattern:
    """Sparsity pattern (CSR without values) of an ``[N, K]`` input feature matrix.

    Built from a dense matrix (:meth:`from_dense`: keeps a reference and extracts the CSR only
    when a sparse combination needs it) or from CSR arrays (:meth:`from_csr`). Column indices
    are sorted within each row.
    """

    def __init__(self, num_rows: int, num_cols: int, nnz: int, *,
                 indptr: np.ndarray | None = None, indices: np.ndarray | None = None,
                 dense: Any = None) -> None:
        if num_rows < 0 or num_cols < 1 or not 0 <= nnz <= num_rows * num_cols:
            raise ValueError(f"invalid input pattern: {num_rows} x {num_cols} with {nnz} "
                             "non-zeros")
        self.num_rows = int(num_rows)
        self.num_cols = int(num_cols)
        self.nnz = int(nnz)
        self._indptr = indptr
        self._indices = indices
        self._dense = dense
        self._cache: dict[Any, Any] = {}

    @classmethod
    def from_dense(cls, x: Any) -> InputPattern:
        """The pattern of a dense 2-D ``torch.Tensor`` or array (zeros are the implicit
        entries)."""
        if isinstance(x, torch.Tensor):
            if x.layout != torch.strided:
                x = x.to_dense()
            nnz = int(torch.count_nonzero(x))
        else:
            x = np.asarray(x)
            nnz = int(np.count_nonzero(x))
        if x.ndim != 2:
            raise ValueError(f"input features must be 2-D, got shape {tuple(x.shape)}")
        return cls(int(x.shape[0]), int(x.shape[1]), nnz, dense=x)

    @classmethod
    def from_csr(cls, num_rows: int, num_cols: int, indptr: Any, indices: Any) -> InputPattern:
        """A pattern from CSR row pointers ``[N + 1]`` and column indices ``[nnz]``."""
        ip = np.asarray(indptr, dtype=np.int64)
        ix = np.asarray(indices, dtype=np.int64)
        if ip.shape != (num_rows + 1,) or ip[0] != 0 or ip[-1] != ix.size or np.any(
                np.diff(ip) < 0):
            raise ValueError("indptr must be non-decreasing [N + 1] from 0 to len(indices)")
        if ix.size and (ix.min() < 0 or ix.max() >= num_cols):
            raise ValueError(f"column indices outside [0, {num_cols})")
        rows = np.repeat(np.arange(num_rows, dtype=np.int64), np.diff(ip))
        key = rows * num_cols + ix
        if key.size > 1 and not bool(np.all(key[1:] > key[:-1])):
            raise ValueError("column indices must be sorted and unique within each row")
        return cls(num_rows, num_cols, int(ix.size), indptr=ip, indices=ix)

    @property
    def density(self) -> float:
        """Fraction of non-zero entries."""
        total = self.num_rows * self.num_cols
        return self.nnz / total if total else 0.0

    def csr(self) -> tuple[np.ndarray, np.ndarray]:
        """``(indptr int64 [N + 1], indices int64 [nnz])``."""
        if self._indptr is None:
            x = self._dense
            nz = (x != 0).cpu().numpy() if isinstance(x, torch.Tensor) else (x != 0)
            rows, cols = np.nonzero(nz)  # row-major: columns sorted within rows
            counts = np.bincount(rows, minlength=self.num_rows)
            self._indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            self._indices = cols.astype(np.int64)
            self._dense = None
        assert self._indices is not None
        return self._indptr, self._indices

    def row_nnz(self) -> np.ndarray:
        """Non-zeros per row, int64 ``[N]``."""
        return np.diff(self.csr()[0])

    def select_rows(self, rows: np.ndarray) -> InputPattern:
        """The pattern of the rows ``rows`` (increasing row ids), in that order."""
        indptr, cols = self.csr()
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.diff(indptr)
        keep = np.zeros(self.num_rows, dtype=bool)
        keep[rows] = True
        nz_keep = np.repeat(keep, counts)
        ip = np.concatenate([[0], np.cumsum(counts[rows])]).astype(np.int64)
        return InputPattern(int(rows.size), self.num_cols, int(ip[-1]), indptr=ip,
                            indices=cols[nz_keep])

    def tile_stats(self, rows: int, k_block: int | None = None) -> TileStats:
        """Counts per tile of ``rows`` rows and block of ``k_block`` columns (None: all)."""
        kt = self.num_cols if k_block is None else int(k_block)
        key = (int(rows), kt)
        if key not in self._cache:
            indptr, cols = self.csr()
            n_t = -(-self.num_rows // rows)
            n_b = -(-self.num_cols // kt)
            row = np.repeat(np.arange(self.num_rows, dtype=np.int64), np.diff(indptr))
            tile = row // rows
            blk = cols // kt
            nnz = np.bincount(tile * n_b + blk, minlength=n_t * n_b)
            if n_t * self.num_cols <= MAX_UNION_BITMAP:  # a (tile, column) bitmap
                mark = np.zeros(n_t * n_b * kt, dtype=bool)
                mark[(tile * n_b + blk) * kt + cols % kt] = True
                union = mark.reshape(n_t * n_b, kt).sum(axis=1)
            else:
                pairs = np.unique(tile * self.num_cols + cols)
                union = np.bincount((pairs // self.num_cols) * n_b
                                    + (pairs % self.num_cols) // kt, minlength=n_t * n_b)
            per_row = np.bincount(row * n_b + blk, minlength=self.num_rows * n_b)
            per_row = np.concatenate([per_row, np.zeros(n_t * rows * n_b - per_row.size,
                                                        dtype=per_row.dtype)])
            row_max = per_row.reshape(n_t, rows, n_b).max(axis=1)
            self._cache[key] = TileStats(union.reshape(n_t, n_b).astype(np.int64),
                                         nnz.reshape(n_t, n_b).astype(np.int64),
                                         row_max.astype(np.int64))
        return self._cache[key]

    def __repr__(self) -> str:
        return (f"InputPattern({self.num_rows} x {self.num_cols}, nnz={self.nnz}, "
                f"density={self.density:.4g})")


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
        input: sparsity pattern of the input features X (None: unknown, treated as dense).
    """

    name: str
    num_nodes: int
    src: np.ndarray
    dst: np.ndarray
    in_degree: np.ndarray
    num_features: int
    num_classes: int
    input: InputPattern | None = field(default=None, repr=False, compare=False)
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
    g = graph_from_arrays(name or str(getattr(data, "name", "graph")), n, ei[0], ei[1],
                          nf, int(nc))
    if x is not None and getattr(x, "ndim", 0) == 2 and int(x.shape[0]) == n:
        g.input = InputPattern.from_dense(x)
    return g


# ----------------------------------------------------------------------------- phases


@dataclass(eq=False)
class NodeBuckets:
    """Node -> width bucket of one layer (degree-aware mixed precision, ``docs/sim.md``).

    Attributes:
        bucket: bucket of every node, int64 ``[N]`` in ``0..num_buckets - 1``.
        num_buckets: K.
        by: how the table was made (``degree_quantile``, ``degree_threshold``, ``uniform``:
            one bucket, a uniform model on the mixed engine).
        thresholds: the integer degree thresholds (in-degree + self-loop) of the buckets.
    """

    bucket: np.ndarray
    num_buckets: int
    by: str = "uniform"
    thresholds: tuple[int, ...] = ()

    def counts(self) -> np.ndarray:
        """Nodes per bucket, int64 ``[K]``."""
        return np.bincount(self.bucket, minlength=self.num_buckets).astype(np.int64)

    @classmethod
    def single(cls, n: int) -> NodeBuckets:
        """Every node in one bucket (K = 1)."""
        return cls(np.zeros(int(n), dtype=np.int64), 1)


@dataclass
class GemmPhase:
    """A combination: ``[n x k]`` codes times ``[k x m]`` weights on the MAC array.

    Bits are per tensor (32 = FP32). ``post_requants`` requantizations follow every output
    value (integer model). The last ``root_k`` of the ``k`` input columns are not streamed from
    the previous phase but read per row from the layer input (``root_bits`` wide; SAGE's root
    term ``x_i`` when aggregate-first). ``input`` is the sparsity pattern of the streamed input
    when it is the dataset's X (first combination of the model), else None (dense)."""

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
    input: InputPattern | None = field(default=None, repr=False, compare=False)
    #: Degree-aware mixed precision: the node -> bucket table and the width of each bucket for
    #: the input rows (``act_widths``) and the output rows (``out_widths``); ``None``: uniform
    #: (then ``act_bits``/``out_bits`` hold; with buckets they hold the widest bucket).
    buckets: NodeBuckets | None = field(default=None, repr=False, compare=False)
    act_widths: tuple[int, ...] | None = None
    out_widths: tuple[int, ...] | None = None


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
    #: Mixed-width engine (``docs/sim.md``, mixed precision): the node -> bucket table of the
    #: source rows (``in_widths`` per bucket) and of the destination rows (``out_buckets``,
    #: default the same table; ``out_widths`` per bucket). ``None``: the uniform engine.
    buckets: NodeBuckets | None = field(default=None, repr=False, compare=False)
    in_widths: tuple[int, ...] | None = None
    out_widths: tuple[int, ...] | None = None
    out_buckets: NodeBuckets | None = field(default=None, repr=False, compare=False)


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


#: (layer kind, dataflow order, phase suffix) -> (role of the input rows, role of the output
#: rows): which per-node tensor each phase reads and writes (the constructors below).
PHASE_ROLES: dict[tuple[str, str, str], tuple[str, str]] = {
    ("linear", "", "combine"): ("input", "update"),
    ("prop", "", "propagate"): ("message", "update"),
    ("gcn", "combine-first", "combine"): ("input", "message"),
    ("gcn", "combine-first", "aggregate"): ("message", "update"),
    ("gcn", "aggregate-first", "aggregate"): ("message", "aggregate"),
    ("gcn", "aggregate-first", "combine"): ("aggregate", "update"),
    ("gin", "combine-first", "combine1"): ("input", "message"),
    ("gin", "combine-first", "aggregate"): ("message", "input"),
    ("gin", "combine-first", "combine2"): ("input", "update"),
    ("gin", "aggregate-first", "aggregate"): ("message", "aggregate"),
    ("gin", "aggregate-first", "combine1"): ("aggregate", "output"),
    ("gin", "aggregate-first", "combine2"): ("input", "update"),
    ("sage", "combine-first", "combine"): ("input", "message"),
    ("sage", "combine-first", "aggregate"): ("message", "update"),
    ("sage", "aggregate-first", "aggregate"): ("message", "aggregate"),
    ("sage", "aggregate-first", "combine"): ("aggregate", "update"),
}

#: One layer's node buckets and the width of every bucketed role (bits per bucket).
LayerNodes = tuple[NodeBuckets, dict[str, tuple[int, ...]]]


def layer_phases(shape: LayerShape, precision: PrecisionConfig, n: int, order: str,
                 teleport_bits: int = 0, nodes: LayerNodes | None = None,
                 mixed_engine: bool = False) -> list[Phase]:
    """Phases of one layer in dataflow ``order`` (``aggregate-first``/``combine-first``).

    ``nodes``: the layer's node buckets and the widths of its bucketed roles (degree-aware
    mixed precision); the phases then carry per-bucket widths (their scalar bits are the
    widest bucket's). ``mixed_engine``: aggregations of a layer without buckets run on the
    mixed-width engine too (one bucket, K = 1)."""
    i = shape.index
    b = {r: _bits(precision, i, r) for r in
         ("input", "weight", "output", "message", "aggregate", "update")}
    if nodes is not None:
        for r, w in nodes[1].items():
            b[r] = max(w)
    phases = _layer_phases(shape, b, n, order, teleport_bits)
    if nodes is None and not mixed_engine:
        return phases
    out: list[Phase] = []
    for ph in phases:
        key = (shape.kind, "" if shape.kind in ("linear", "prop") else order,
               ph.name.split(".", 1)[1])
        r_in, r_out = PHASE_ROLES[key]
        if nodes is None:
            if isinstance(ph, AggPhase):
                ph = replace(ph, buckets=NodeBuckets.single(n), in_widths=(ph.in_bits,),
                             out_widths=(ph.out_bits,))
        elif isinstance(ph, AggPhase):
            ph = replace(ph, buckets=nodes[0], in_widths=nodes[1].get(r_in),
                         out_widths=nodes[1].get(r_out))
        elif r_in in nodes[1] or r_out in nodes[1]:
            ph = replace(ph, buckets=nodes[0], act_widths=nodes[1].get(r_in),
                         out_widths=nodes[1].get(r_out))
        out.append(ph)
    return out


def _layer_phases(shape: LayerShape, b: dict[str, int], n: int, order: str,
                  teleport_bits: int) -> list[Phase]:
    i = shape.index
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
                 orders: dict[int, str], input_pattern: InputPattern | None = None,
                 nodes: dict[int, LayerNodes] | None = None, mixed_engine: bool = False
                 ) -> list[Phase]:
    """All phases of a model, layer by layer (``orders``: dataflow per layer index).

    ``input_pattern`` (the dataset's X) is attached to the first phase when that phase is a
    combination streaming X itself (combine-first first layer, MLP first layer); an
    aggregate-first first layer reads X dense, as the integer model does
    (``model.nn.features.densify``). ``nodes`` (layer index -> :func:`layer_buckets`) and
    ``mixed_engine``: see :func:`layer_phases`."""
    phases: list[Phase] = []
    teleport_bits = 0
    nodes = nodes or {}
    for s in shapes:
        if s.kind == "linear":
            teleport_bits = _bits(precision, s.index, "update")
        phases.extend(layer_phases(s, precision, n, orders.get(s.index, "combine-first"),
                                   teleport_bits, nodes.get(s.index), mixed_engine))
    if input_pattern is not None and phases:
        first = phases[0]
        if isinstance(first, GemmPhase) and first.layer == 0 and first.root_k == 0:
            if (input_pattern.num_rows, input_pattern.num_cols) != (n, first.k):
                raise ValueError(
                    f"input pattern is {input_pattern.num_rows} x {input_pattern.num_cols}, "
                    f"the first combination reads {n} x {first.k}")
            phases[0] = replace(first, input=input_pattern)
    return phases


def fp32_phases(phases: list[Phase]) -> list[Phase]:
    """The same phases with every tensor in FP32 (the FP32 counterpart's workload: the
    uniform engines, no node buckets)."""
    out: list[Phase] = []
    for p in phases:
        if isinstance(p, GemmPhase):
            out.append(replace(p, act_bits=FP32, weight_bits=FP32, out_bits=FP32,
                               root_bits=FP32 if p.root_k else 0, buckets=None,
                               act_widths=None, out_widths=None))
        else:
            out.append(replace(p, in_bits=FP32, out_bits=FP32,
                               side_bits=FP32 if p.side_values else 0, buckets=None,
                               in_widths=None, out_widths=None, out_buckets=None))
    return out


def layer_buckets(precision: PrecisionConfig, shapes: list[LayerShape],
                  in_degree: np.ndarray) -> dict[int, LayerNodes]:
    """Node buckets of every layer whose precision has a ``nodes`` table, from the degrees
    ``deg = in_degree + 1`` (in-degree plus self-loop, ``GraphOps.deg_hat``) with
    :func:`model.quant.node_precision.degree_buckets`; value: ``(NodeBuckets, {role: bits per
    bucket})`` for the bucketed roles. Learned buckets need a trained model (ValueError)."""
    from qgnn.model.quant.node_precision import degree_buckets, degree_thresholds

    deg = torch.from_numpy(np.asarray(in_degree, dtype=np.int64) + 1)
    out: dict[int, LayerNodes] = {}
    for s in shapes:
        node = precision.node_precision(s.index)
        if node is None:
            continue
        if node.learned:
            raise ValueError(
                f"precision: layer {s.index}: nodes.by = 'learned' has no node -> bucket table "
                "before training; the simulator needs degree buckets (degree_quantile or "
                "degree_threshold)")
        widths: dict[str, tuple[int, ...]] = {}
        for role in node.roles:
            specs = precision.node_specs(s.index, role)
            if specs is not None:
                widths[role] = tuple(int(q.bits) for q in specs)
        if not widths:
            continue
        nb = NodeBuckets(degree_buckets(deg, node).numpy().astype(np.int64), len(node.bits),
                         node.by, tuple(degree_thresholds(deg, node)))
        out[s.index] = (nb, widths)
    return out


def has_orders(shapes: list[LayerShape]) -> list[int]:
    """Layers whose dataflow can be chosen (message-passing layers)."""
    return [s.index for s in shapes if s.kind in ("gcn", "gin", "sage")]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def log2_ceil(x: int) -> int:
    return math.ceil(math.log2(max(x, 1)))
