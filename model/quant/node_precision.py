"""Degree-aware mixed precision: node features and messages at a bit width per node bucket.

A precision file's ``[nodes]`` table (and optionally ``[layers.N.nodes]``) splits the nodes of
the graph into a few *buckets* and gives each bucket its own bit width::

    [nodes]
    by    = "degree_quantile"      # or "degree_threshold" or "learned"
    bits  = [2, 4, 8]              # width of each bucket, low degree first (2..8)
    edges = [0.9, 0.99]            # quantile edges in (0, 1), or degree thresholds (ints)
    roles = ["input", "output", "message", "aggregate", "update"]   # never "weight"

Hardware-realisable by construction: the nodes of one bucket share one ordinary
:class:`~model.quant.quantizer.Quantizer` per tensor role (its own learnable step and zero
point, per tensor or per channel, at the bucket's width), so a layer has a small finite set of
``(bits, step, zero point)`` per role, never a free per-node step. The node -> bucket table is
fixed data derived from the graph (:func:`degree_buckets`), computed once per graph.

Degree (``deg`` below) is the in-degree plus the self-loop, ``GraphOps.deg_hat``: the number
of terms of a node's GCN/GIN sum.

* ``by = "degree_threshold"``: ``edges`` are increasing integer degrees ``t_1 < t_2 < ...``;
  node ``i`` is in bucket ``k`` = the number of edges with ``t <= deg_i`` (so ``edges = [8]``
  puts nodes with ``deg >= 8`` in bucket 1).
* ``by = "degree_quantile"``: ``edges`` are increasing fractions ``q`` in (0, 1); edge ``q``
  becomes the degree threshold ``d_(ceil(q N)) + 1`` where ``d_(m)`` is the m-th smallest
  degree: nodes whose degree exceeds the degree at quantile ``q`` go up. Ties stay below, so
  *at most* ``(1 - q) N`` nodes sit above edge ``q`` (the memory budget is never exceeded).
* ``by = "learned"`` (A2Q-style): every node has a learnable real width ``w_i``; the forward
  pass always uses the allowed width (one of ``bits``, strictly increasing) nearest to ``w_i``
  (ties to the lower one), so the model is a bucketed model at every step; the gradient of
  ``w_i`` is the straight-through slope ``(Q_hi(x_i) - Q_lo(x_i)) / (b_hi - b_lo)`` between the
  two allowed widths around ``w_i``. The loss adds ``penalty * max(0, mean(w) - target)`` (bits;
  mean over the nodes and tensors that follow learned buckets). Widths start at ``init``
  (default ``target``) and stay clamped to ``[min(bits), max(bits)]``; the parameter holds
  ``w / WIDTH_SCALE`` (see :data:`WIDTH_SCALE`) and trains with the quantizer parameters.
  :meth:`NodeBucketQuantizer.snap` freezes the nearest-width assignment into a fixed table.

The memory figure ``avg_feature_bits`` (:func:`avg_feature_bits`) is the mean width of every
stored per-node activation (all roles except weights; FP32 counts 32) over all nodes and all
such tensors of the model: a uniform INT2 model gives exactly 2.0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .quantizer import Quantizer
from .spec import INT_BITS, QuantConfigError, QuantSpec

#: Bucket assignment modes.
NODE_MODES: tuple[str, ...] = ("degree_quantile", "degree_threshold", "learned")
#: Roles that may follow node buckets (per-node activations; weights never do).
NODE_ROLES: tuple[str, ...] = ("input", "output", "message", "aggregate", "update")
#: Learned mode: the width parameter is in units of this many bits (an Adam step of the
#: quantizer learning rate 0.03 then moves a width by 0.12 bits, so 200 epochs can cross the
#: 2..8 range several times).
WIDTH_SCALE = 4.0
#: Keys of a ``nodes`` table per mode.
_COMMON_KEYS = ("by", "bits", "roles")
_MODE_KEYS: dict[str, tuple[str, ...]] = {
    "degree_quantile": (*_COMMON_KEYS, "edges"),
    "degree_threshold": (*_COMMON_KEYS, "edges"),
    "learned": (*_COMMON_KEYS, "target", "penalty", "init"),
}
_ALL_KEYS = tuple(dict.fromkeys(k for keys in _MODE_KEYS.values() for k in keys))


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _list(v: Any, where: str) -> list[Any]:
    if isinstance(v, list | tuple):
        return list(v)
    raise QuantConfigError(f"{where}: expected a list, got {v!r}")


def _width(v: Any, where: str) -> int:
    if isinstance(v, str) and v.strip().lower().startswith("int"):
        try:
            v = int(v.strip()[3:])
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, int) or v not in INT_BITS:
        raise QuantConfigError(
            f"{where}: invalid bucket width {v!r}; allowed: {', '.join(map(str, INT_BITS))}"
        )
    return v


@dataclass(frozen=True)
class NodePrecision:
    """A validated ``nodes`` table (see the module docstring).

    Attributes:
        by: one of :data:`NODE_MODES`.
        bits: width of each bucket (bits, 2..8), low degree first.
        edges: quantile edges (floats in (0, 1)) or degree thresholds (ints >= 1), strictly
            increasing, ``len(bits) - 1`` of them; empty in learned mode.
        roles: tensor roles that follow the buckets (subset of :data:`NODE_ROLES`).
        target: learned mode: target mean width (bits) of the learned tensors.
        penalty: learned mode: weight of the memory penalty (loss units per bit above target).
        init: learned mode: initial width of every node (bits).
    """

    by: str
    bits: tuple[int, ...]
    edges: tuple[float, ...] = ()
    roles: tuple[str, ...] = NODE_ROLES
    target: float | None = None
    penalty: float = 0.0
    init: float | None = None

    @property
    def learned(self) -> bool:
        return self.by == "learned"

    @classmethod
    def from_dict(cls, d: Any, where: str = "precision.nodes") -> NodePrecision:
        """Validate a raw ``nodes`` table; errors name the field (``where.<key>``)."""
        if not isinstance(d, Mapping):
            raise QuantConfigError(f"{where}: expected a table, got {d!r}")
        for k in d:
            if k not in _ALL_KEYS:
                raise QuantConfigError(
                    f"{where}.{k}: unknown key; allowed: {', '.join(_ALL_KEYS)}")
        if "by" not in d:
            raise QuantConfigError(f"{where}.by: missing; allowed: {', '.join(NODE_MODES)}")
        by = d["by"]
        if not isinstance(by, str) or by not in NODE_MODES:
            raise QuantConfigError(
                f"{where}.by: invalid mode {by!r}; allowed: {', '.join(NODE_MODES)}")
        for k in d:
            if k not in _MODE_KEYS[by]:
                raise QuantConfigError(
                    f"{where}.{k}: not used by by = {by!r}; allowed: {', '.join(_MODE_KEYS[by])}")
        if "bits" not in d:
            raise QuantConfigError(f"{where}.bits: missing (a list of bucket widths, 2..8)")
        bits = tuple(_width(b, f"{where}.bits") for b in _list(d["bits"], f"{where}.bits"))
        if not bits:
            raise QuantConfigError(f"{where}.bits: needs at least one bucket width")
        roles_raw = d.get("roles", list(NODE_ROLES))
        roles = []
        for r in _list(roles_raw, f"{where}.roles"):
            if r == "weight":
                raise QuantConfigError(
                    f"{where}.roles: 'weight' cannot follow node buckets (weights are not "
                    f"per node); allowed: {', '.join(NODE_ROLES)}")
            if not isinstance(r, str) or r not in NODE_ROLES:
                raise QuantConfigError(
                    f"{where}.roles: unknown role {r!r}; allowed: {', '.join(NODE_ROLES)}")
            if r in roles:
                raise QuantConfigError(f"{where}.roles: role {r!r} listed twice")
            roles.append(r)
        if by == "learned":
            return cls._learned(d, where, bits, tuple(roles))
        if "edges" not in d:
            raise QuantConfigError(f"{where}.edges: missing ({len(bits) - 1} needed for "
                                   f"{len(bits)} bucket widths)")
        edges_raw = _list(d["edges"], f"{where}.edges")
        edges: list[float] = []
        for e in edges_raw:
            if by == "degree_threshold":
                if isinstance(e, bool) or not isinstance(e, int) or not 1 <= e < 2**31:
                    raise QuantConfigError(
                        f"{where}.edges: degree thresholds must be integers in [1, 2^31) "
                        f"(in-degree plus self-loop), got {e!r}")
            elif not _is_number(e) or not (0.0 < e < 1.0):
                raise QuantConfigError(
                    f"{where}.edges: quantile edges must be numbers in (0, 1), got {e!r}")
            edges.append(e if by == "degree_threshold" else float(e))
        if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
            raise QuantConfigError(f"{where}.edges: must be strictly increasing, got {edges}")
        if len(bits) != len(edges) + 1:
            raise QuantConfigError(
                f"{where}.edges: {len(edges)} edge(s) for {len(bits)} bucket widths; "
                f"len(bits) must be len(edges) + 1")
        return cls(by=by, bits=bits, edges=tuple(edges), roles=tuple(roles))

    @classmethod
    def _learned(cls, d: Mapping[str, Any], where: str, bits: tuple[int, ...],
                 roles: tuple[str, ...]) -> NodePrecision:
        if any(b <= a for a, b in zip(bits, bits[1:], strict=False)):
            raise QuantConfigError(
                f"{where}.bits: learned widths must be strictly increasing, got {list(bits)}")
        lo, hi = bits[0], bits[-1]

        def number(key: str, default: float | None) -> float | None:
            if key not in d:
                return default
            v = d[key]
            if not _is_number(v) or (isinstance(v, float) and not math.isfinite(v)):
                raise QuantConfigError(f"{where}.{key}: expected a finite number, got {v!r}")
            if not -1e9 <= v <= 1e9:
                raise QuantConfigError(f"{where}.{key}: out of range [-1e9, 1e9], got {v!r}")
            return float(v)

        if "target" not in d:
            raise QuantConfigError(f"{where}.target: missing (target mean width in bits)")
        target = number("target", None)
        assert target is not None
        if not (lo <= target <= hi):
            raise QuantConfigError(f"{where}.target: must be in [{lo}, {hi}] (the bucket "
                                   f"widths), got {target}")
        penalty = number("penalty", 1.0)
        assert penalty is not None
        if penalty < 0:
            raise QuantConfigError(f"{where}.penalty: must be >= 0, got {penalty}")
        init = number("init", target)
        assert init is not None
        if not (lo <= init <= hi):
            raise QuantConfigError(f"{where}.init: must be in [{lo}, {hi}], got {init}")
        return cls(by="learned", bits=bits, roles=roles, target=target, penalty=penalty,
                   init=init)

    def to_dict(self) -> dict[str, Any]:
        """The canonical table (round-trips through :meth:`from_dict`)."""
        d: dict[str, Any] = {"by": self.by, "bits": list(self.bits)}
        if self.learned:
            d.update(target=self.target, penalty=self.penalty, init=self.init)
        else:
            d["edges"] = list(self.edges)
        d["roles"] = list(self.roles)
        return d

    def bucket_specs(self, base: QuantSpec) -> list[QuantSpec]:
        """One spec per bucket: ``base`` (range, granularity, symmetry, ...) at each width."""
        out = []
        for b in self.bits:
            trunc = base.truncation if b == 2 else "none"
            out.append(base.with_(bits=b, truncation=trunc))
        return out


# ------------------------------------------------------------------------ assignment
def degree_thresholds(deg: Tensor, node: NodePrecision) -> list[int]:
    """Integer degree thresholds of ``node``'s edges on a graph with degrees ``deg``
    (bucket ``k`` = number of thresholds ``<= deg``)."""
    if node.by == "degree_threshold":
        return [int(e) for e in node.edges]
    if node.by != "degree_quantile":
        raise ValueError(f"{node.by!r} buckets have no degree thresholds")
    d = torch.sort(deg.to(torch.int64)).values
    n = d.numel()
    out = []
    for q in node.edges:
        if n == 0:
            out.append(1)
            continue
        m = min(max(math.ceil(q * n), 1), n)
        out.append(int(d[m - 1]) + 1)
    return out


def degree_buckets(deg: Tensor, node: NodePrecision) -> Tensor:
    """Bucket index (int64 ``[N]``) of every node from its degree (in-degree + self-loop)."""
    thr = torch.tensor(degree_thresholds(deg, node), dtype=torch.int64)
    return torch.bucketize(deg.to(torch.int64), thr, right=True)


def _graph_buckets(g: Any, node: NodePrecision) -> Tensor:
    """:func:`degree_buckets` on ``g.deg_hat``, cached on the graph object per table."""
    cache: dict[NodePrecision, Tensor] = g.__dict__.setdefault("_qgnn_node_buckets", {})
    hit = cache.get(node)
    if hit is None:
        hit = degree_buckets(g.deg_hat, node)
        cache[node] = hit
    return hit


# ------------------------------------------------------------------------ quantizer
class NodeBucketQuantizer(nn.Module):
    """Fake quantizer of one per-node tensor role whose nodes are split into buckets.

    Holds one ordinary quantizer per bucket (``buckets[k]`` at width ``node.bits[k]``); node
    ``i``'s row is quantized by the quantizer of its bucket. The node -> bucket table comes
    from the graph given to :meth:`bind` (degree modes), or from the learned widths.

    ``make_quantizer(spec, channel_axis, name)`` builds each bucket's quantizer (pass
    :func:`~model.quant.bit_truncation.make_quantizer` for BT-capable buckets; the default is a
    plain :class:`~model.quant.quantizer.Quantizer`).

    ``spec`` is the lowest bucket's spec (what code that inspects ``q.spec`` sees: range,
    granularity, symmetry are those of every bucket). There is no integer form yet:
    :meth:`integer_params` raises :class:`QuantConfigError`.
    """

    def __init__(self, specs: Sequence[QuantSpec], node: NodePrecision, channel_axis: int = -1,
                 name: str = "", make_quantizer: Callable[..., nn.Module] = Quantizer) -> None:
        super().__init__()
        if len(specs) != len(node.bits):
            raise ValueError("one spec per bucket needed")
        self.node = node
        self.name = name
        self.spec = specs[0]
        self.channel_axis = channel_axis
        self.buckets: list[Any] = nn.ModuleList(  # type: ignore[assignment]
            make_quantizer(s, channel_axis, f"{name}.bucket{k}") for k, s in enumerate(specs))
        self.bucket_bits: Tensor
        self.register_buffer("bucket_bits", torch.tensor(node.bits, dtype=torch.float32),
                             persistent=False)
        self.width: nn.Parameter | None
        # learned mode: real width per node, in units of WIDTH_SCALE bits
        self.register_parameter("width", None)
        self.fixed_assign: Tensor | None
        self.register_buffer("fixed_assign", None)  # frozen table (after snap)
        self._assign: Tensor | None = None
        self._index_cache: tuple[Tensor, list[Tensor], Tensor] | None = None

    @property
    def enabled(self) -> bool:
        return True

    def extra_repr(self) -> str:
        n = self.node
        e = "" if n.learned else f", edges={list(n.edges)}"
        return f"{self.name}: nodes by {n.by}, bits={list(n.bits)}{e}"

    # ------------------------------------------------------------------- assignment
    def bind(self, g: Any) -> None:
        """Attach the graph (a :class:`~model.nn.graph_ops.GraphOps`): degree buckets are
        taken from it; a learned width vector is created for its nodes on first use."""
        n = int(g.num_nodes)
        if self.node.learned:
            if self.width is None:
                self.width = nn.Parameter(
                    torch.full((n,), float(self.node.init or 0.0) / WIDTH_SCALE))
            elif self.width.numel() != n:
                raise ValueError(f"quantizer {self.name!r}: learned widths are for "
                                 f"{self.width.numel()} nodes, the graph has {n}")
            return
        self._set_assign(_graph_buckets(g, self.node))

    def _set_assign(self, a: Tensor) -> None:
        if self._assign is not a:
            self._assign = a
            self._index_cache = None

    def snapped(self) -> Tensor:
        """Learned mode: each node's bucket, the allowed width nearest ``w_i`` (ties down)."""
        w = self._widths().detach()
        return torch.argmin((w[:, None] - self.bucket_bits[None, :]).abs(), dim=1)

    def assignment(self) -> Tensor:
        """Bucket index of every node (int64 ``[N]``)."""
        if self.fixed_assign is not None:
            return self.fixed_assign
        if self.node.learned:
            if self.width is None:
                raise RuntimeError(f"quantizer {self.name!r}: not bound to a graph")
            return self.snapped()
        if self._assign is None:
            raise RuntimeError(f"quantizer {self.name!r}: not bound to a graph; call the "
                               "model (or bind_graph) first")
        return self._assign

    def bits_per_node(self) -> Tensor:
        """Width (bits, float32 ``[N]``) each node's row is stored at."""
        return self.bucket_bits[self.assignment()]

    def soft_bits(self) -> Tensor:
        """Learned mode: the clamped real widths (differentiable); else :meth:`bits_per_node`."""
        if self.node.learned and self.fixed_assign is None and self.width is not None:
            return self._widths()
        return self.bits_per_node()

    def _widths(self) -> Tensor:
        """Learned real widths in bits, clamped to ``[min(bits), max(bits)]``."""
        assert self.width is not None
        return (self.width * WIDTH_SCALE).clamp(self.node.bits[0], self.node.bits[-1])

    @torch.no_grad()
    def snap(self) -> None:
        """Freeze the current assignment into ``fixed_assign`` (learned widths stop moving)."""
        self.fixed_assign = self.assignment().clone()
        self._index_cache = None
        if self.width is not None:
            self.width.requires_grad_(False)

    @torch.no_grad()
    def project(self) -> None:
        """Clamp learned widths to ``[min(bits), max(bits)]`` (after an optimizer step)."""
        if self.width is not None:
            self.width.clamp_(self.node.bits[0] / WIDTH_SCALE, self.node.bits[-1] / WIDTH_SCALE)

    def _indices(self, a: Tensor) -> tuple[list[Tensor], Tensor]:
        """Node ids per bucket and the inverse of their concatenation."""
        c = self._index_cache
        if c is not None and c[0] is a:
            return c[1], c[2]
        idx = [torch.nonzero(a == k).reshape(-1) for k in range(len(self.buckets))]
        inv = torch.empty_like(a)
        inv[torch.cat(idx)] = torch.arange(a.numel())
        self._index_cache = (a, idx, inv)
        return idx, inv

    def _check_rows(self, a: Tensor, n: int) -> None:
        if a.numel() != n:
            raise ValueError(f"quantizer {self.name!r}: bucket table has {a.numel()} nodes but "
                             f"the tensor has {n} rows")

    # ---------------------------------------------------------------------- forward
    def _learning(self) -> bool:
        return (self.node.learned and self.fixed_assign is None and self.training
                and torch.is_grad_enabled() and self.width is not None
                and self.width.requires_grad and len(self.buckets) > 1)

    def _uncalibrated_learned(self) -> bool:
        return (self.node.learned and self.fixed_assign is None
                and not all(bool(getattr(q, "initialized", True)) for q in self.buckets))

    def _width_ste(self, ys: list[Tensor], row_node: Tensor) -> tuple[Tensor, Tensor]:
        """Hard selection of ``ys[k(i)]`` plus the width's straight-through term;
        ``row_node`` maps each leading-axis entry of ``ys[k]`` to its node."""
        assert self.width is not None
        bits = self.bucket_bits
        a = self.snapped()[row_node]
        shape = (-1, *([1] * (ys[0].dim() - 1)))
        y = torch.zeros_like(ys[0])
        for k, yk in enumerate(ys):
            y = y + (a == k).to(yk.dtype).reshape(shape) * yk
        w = self._widths()[row_node]
        j = (torch.searchsorted(bits, w.detach(), right=True) - 1).clamp(0, len(ys) - 2)
        stack = torch.stack([yk.detach() for yk in ys])  # [K, R, ...]
        r = torch.arange(j.numel())
        lo, hi = stack[j, r], stack[j + 1, r]
        slope = (hi - lo) / (bits[j + 1] - bits[j]).reshape(shape)
        return y + (w - w.detach()).reshape(shape) * slope, a

    def forward(self, x: Tensor, protect: Tensor | None = None, *,
                elements: int | None = None) -> Tensor:
        """Fake-quantize the rows of ``x`` (``[N, ...]``), each by its bucket's quantizer.
        ``protect`` (Degree-Quant) is per row and passed to the bucket quantizers."""
        if self._uncalibrated_learned():  # every width is reachable: calibrate all buckets
            with torch.no_grad():
                for q in self.buckets:
                    q(x, protect)
        if self._learning():
            ys = [q(x, protect) for q in self.buckets]
            return self._width_ste(ys, torch.arange(x.shape[0]))[0]
        a = self.assignment()
        self._check_rows(a, x.shape[0])
        idx, inv = self._indices(a)
        parts = []
        for q, ix in zip(self.buckets, idx, strict=True):
            if ix.numel() == 0:
                continue
            parts.append(q(x.index_select(0, ix), None if protect is None else protect[ix]))
        return torch.cat(parts).index_select(0, inv)

    def forward_rows(self, values: Tensor, row: Tensor, num_rows: int,
                     protect: Tensor | None = None, num_cols: int | None = None) -> Tensor:
        """Sparse form (stored ``values`` of an ``[N, F]`` CSR matrix with row ids ``row``):
        each bucket quantizes the stored values of its rows, with its rows renumbered
        ``0..n_k-1`` (so per-tensor statistics count only that bucket's implicit zeros)."""
        if self._uncalibrated_learned():
            with torch.no_grad():
                for q in self.buckets:
                    q.forward_rows(values, row, num_rows, protect, num_cols)
        if self._learning():
            ys = [q.forward_rows(values, row, num_rows, protect, num_cols) for q in self.buckets]
            return self._width_ste(ys, row)[0]
        a = self.assignment()
        self._check_rows(a, num_rows)
        idx, _ = self._indices(a)
        local = torch.empty_like(a)
        for ix in idx:
            local[ix] = torch.arange(ix.numel())
        vb = a[row]
        order, parts = [], []
        for k, (q, ix) in enumerate(zip(self.buckets, idx, strict=True)):
            sel = torch.nonzero(vb == k).reshape(-1)
            if sel.numel() == 0:
                continue
            order.append(sel)
            parts.append(q.forward_rows(values.index_select(0, sel), local[row[sel]], ix.numel(),
                                        None if protect is None else protect[ix], num_cols))
        if not parts:
            return values
        cat_order = torch.cat(order)
        inv = torch.empty_like(cat_order)
        inv[cat_order] = torch.arange(cat_order.numel())
        return torch.cat(parts).index_select(0, inv)

    def integer_params(self, x: Tensor | None = None) -> Any:
        raise QuantConfigError(
            f"{self.name}: degree-aware mixed precision (per-node buckets) has no integer-only "
            "form yet; export/verify/simulate need a uniform-width model")

    def scale_zero(self, x: Tensor | None = None) -> Any:
        return self.integer_params(x)

    def quantize_codes(self, x: Tensor) -> Tensor:
        self.integer_params(x)
        raise AssertionError  # pragma: no cover

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "width" in state_dict and self.width is None:
            self.width = nn.Parameter(torch.empty_like(state_dict[prefix + "width"]))
        if prefix + "fixed_assign" in state_dict and self.fixed_assign is None:
            self.fixed_assign = torch.empty_like(state_dict[prefix + "fixed_assign"])
        super()._load_from_state_dict(state_dict, prefix, *args)


# ------------------------------------------------------------------------ model level
def bind_graph(module: nn.Module, g: Any) -> None:
    """Bind every :class:`NodeBucketQuantizer` inside ``module`` to graph ``g``."""
    for m in module.modules():
        if isinstance(m, NodeBucketQuantizer):
            m.bind(g)


def activation_quantizers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(role, quantizer)`` of every per-node activation (all roles but ``weight``) of the
    role-quantizer sets (``RoleQuantizers``) inside ``module``."""
    out: list[tuple[str, nn.Module]] = []
    for m in module.modules():
        items = getattr(m, "items", None)
        roles = getattr(m, "roles", None)
        if callable(items) and isinstance(roles, tuple) and hasattr(m, "layer"):
            out.extend((r, q) for r, q in items() if r != "weight")
    return out


def avg_feature_bits(module: nn.Module, num_nodes: int | None = None) -> float:
    """Mean stored width (bits) of the per-node activations of ``module``: every non-weight
    role tensor of every layer, weighted by its node count (each node counts once per tensor);
    FP32 tensors count 32. Bucketed tensors must be bound to a graph (``num_nodes`` is then
    taken from them; pass it for models without bucketed tensors, where it cancels)."""
    qs = activation_quantizers(module)
    if not qs:
        raise ValueError("no activation quantizers found")
    total = 0.0
    for _, q in qs:
        if isinstance(q, NodeBucketQuantizer):
            total += float(q.bits_per_node().double().mean())
        else:
            spec: QuantSpec = q.spec  # type: ignore[assignment]
            total += float(spec.bits)
    del num_nodes
    return total / len(qs)


def memory_penalty(module: nn.Module) -> Tensor | None:
    """Learned mode's loss term: per group of learned tensors sharing ``(target, penalty)``,
    ``penalty * max(0, mean width - target)`` (bits); ``None`` when nothing is learned."""
    groups: dict[tuple[float, float], list[Tensor]] = {}
    for m in module.modules():
        if isinstance(m, NodeBucketQuantizer) and m._learning():
            key = (float(m.node.target or 0.0), float(m.node.penalty))
            groups.setdefault(key, []).append(m.soft_bits())
    if not groups:
        return None
    total: Tensor | None = None
    for (target, penalty), ws in groups.items():
        term = penalty * torch.relu(torch.cat(ws).mean() - target)
        total = term if total is None else total + term
    return total


def node_quantizers(module: nn.Module) -> Iterable[NodeBucketQuantizer]:
    """Every :class:`NodeBucketQuantizer` inside ``module``."""
    return (m for m in module.modules() if isinstance(m, NodeBucketQuantizer))


__all__ = [
    "NODE_MODES",
    "NODE_ROLES",
    "NodeBucketQuantizer",
    "NodePrecision",
    "activation_quantizers",
    "avg_feature_bits",
    "bind_graph",
    "degree_buckets",
    "degree_thresholds",
    "memory_penalty",
    "node_quantizers",
]
