"""Precision configuration: per model, then per layer, then per tensor role.

Resolution order for ``spec(layer, role)`` (later wins)::

    role defaults  <-  model {bits, range, ...}  <-  model roles[role]
                   <-  layers[layer] {bits, ...} <-  layers[layer].roles[role]

Example (JSON/TOML/dict)::

    {"bits": 4, "range": "lsq",
     "roles": {"weight": {"granularity": "channel"}},
     "layers": {"1": {"bits": 8, "roles": {"update": {"bits": 32}}}}}

Degree-aware mixed precision (:mod:`model.quant.node_precision`): a ``nodes`` table gives the
per-node roles it lists a width per node bucket (by degree threshold, degree quantile, or
learned); the buckets set only the width, every other key (range, granularity, symmetry) of a
role comes from the resolution above. ``layers.N.nodes`` overrides it per layer: a table with
``by`` replaces the model-level table, a table without ``by`` is merged over it, and
``nodes = false`` turns the buckets off in that layer::

    {"bits": 2, "nodes": {"by": "degree_quantile", "bits": [2, 8], "edges": [0.9],
                          "roles": ["message", "aggregate"]},
     "layers": {"1": {"nodes": {"bits": [2, 4]}}}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .node_precision import NodePrecision
from .spec import FP32_BITS, QuantConfigError, QuantSpec, check_bits

#: Tensor roles of a quantized GNN layer, in dataflow order.
ROLES: tuple[str, ...] = ("input", "weight", "output", "message", "aggregate", "update")

#: Keys a model-level or layer-level entry may set for every role at once.
SPEC_KEYS: tuple[str, ...] = ("bits", "symmetric", "granularity", "range", "momentum", "percentile")

#: Defaults per role before any override: weights symmetric per output channel; layer inputs
#: asymmetric per tensor with momentum min/max (the first layer's input is fixed data); the
#: other activations asymmetric per tensor, which keeps aggregation a pure sum of codes.
ROLE_DEFAULTS: dict[str, dict[str, Any]] = {
    "input": {"symmetric": False, "granularity": "tensor", "range": "minmax"},
    "weight": {"symmetric": True, "granularity": "channel"},
    "output": {"symmetric": False, "granularity": "tensor"},
    "message": {"symmetric": False, "granularity": "tensor"},
    "aggregate": {"symmetric": False, "granularity": "tensor"},
    "update": {"symmetric": False, "granularity": "tensor"},
}


def _check_role(role: str, where: str) -> str:
    if role not in ROLES:
        raise QuantConfigError(f"{where}: unknown role {role!r}; allowed roles: {', '.join(ROLES)}")
    return role


def _check_spec_keys(d: Mapping[str, Any], where: str, extra: tuple[str, ...] = ()) -> None:
    if not isinstance(d, Mapping):
        raise QuantConfigError(f"{where}: expected a table, got {d!r}")
    allowed = set(SPEC_KEYS) | set(extra)
    unknown = [k for k in d if k not in allowed]
    if unknown:
        raise QuantConfigError(
            f"{where}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}"
        )
    if "bits" in d:
        check_bits(d["bits"], f"{where}.bits")


def _normalise_entry(value: Any, where: str) -> dict[str, Any]:
    """An override is a dict of spec keys, or a bare bit width."""
    if isinstance(value, int | str) and not isinstance(value, bool):
        return {"bits": check_bits(value, where)}
    if not isinstance(value, Mapping):
        raise QuantConfigError(f"{where}: expected a bit width or a table, got {value!r}")
    return dict(value)


@dataclass
class LayerPrecision:
    """Overrides for one layer: keys for all roles plus per-role tables."""

    common: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: ``None``: inherit the model-level ``nodes``; ``False``: no buckets in this layer; a
    #: table: replaces (with ``by``) or is merged over (without) the model-level table.
    nodes: dict[str, Any] | bool | None = None


def _table(v: Any, where: str) -> dict[Any, Any]:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise QuantConfigError(f"{where}: expected a table, got {v!r}")
    return dict(v)


@dataclass
class PrecisionConfig:
    """Typed, validated precision of a whole model.

    Attributes:
        common: model-wide spec keys (``bits``, ``range``, ...).
        roles: model-wide per-role overrides.
        layers: per-layer overrides, keyed by layer index (0-based).
        nodes: the model-level degree-aware ``nodes`` table (canonical form), or ``None``.
    """

    common: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    layers: dict[int, LayerPrecision] = field(default_factory=dict)
    nodes: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.nodes is not None:
            self.nodes = NodePrecision.from_dict(self.nodes, "precision.nodes").to_dict()
        _check_spec_keys(self.common, "precision")
        for r, d in self.roles.items():
            _check_role(r, "precision.roles")
            _check_spec_keys(d, f"precision.roles.{r}")
        for i, lp in self.layers.items():
            if isinstance(i, bool) or not isinstance(i, int) or i < 0:
                raise QuantConfigError(f"precision.layers: layer index must be >= 0, got {i!r}")
            if not (lp.nodes is None or isinstance(lp.nodes, bool | Mapping)):
                raise QuantConfigError(
                    f"precision.layers.{i}.nodes: expected a table or false, got {lp.nodes!r}")
            if lp.nodes is True:
                raise QuantConfigError(
                    f"precision.layers.{i}.nodes: true is not a table; use a table, or false "
                    "to turn the buckets off in this layer")
            self.node_precision(i)
            _check_spec_keys(lp.common, f"precision.layers.{i}")
            for r, d in lp.roles.items():
                _check_role(r, f"precision.layers.{i}.roles")
                _check_spec_keys(d, f"precision.layers.{i}.roles.{r}")
        # Build every spec once so invalid combinations fail now, not mid-training.
        for i in [0, *self.layers]:
            for r in ROLES:
                self.spec(i, r)
                self.node_specs(i, r)

    # ---------------------------------------------------------------- construction
    @classmethod
    def uniform(cls, bits: int | str, **common: Any) -> PrecisionConfig:
        """Every role of every layer at ``bits`` (32 = FP32)."""
        return cls(common={"bits": check_bits(bits), **common})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PrecisionConfig:
        if not isinstance(d, Mapping):
            raise QuantConfigError(f"precision: expected a table, got {type(d).__name__}")
        d = dict(d)
        roles_raw = _table(d.pop("roles", None), "precision.roles")
        layers_raw = _table(d.pop("layers", None), "precision.layers")
        nodes = d.pop("nodes", None)
        if nodes is not None and not isinstance(nodes, Mapping):
            raise QuantConfigError(f"precision.nodes: expected a table, got {nodes!r}")
        _check_spec_keys(d, "precision", extra=())
        roles = {
            _check_role(r, "precision.roles"): _normalise_entry(v, f"precision.roles.{r}")
            for r, v in roles_raw.items()
        }
        layers: dict[int, LayerPrecision] = {}
        for k, v in layers_raw.items():
            try:
                if isinstance(k, bool | float):
                    raise TypeError
                idx = int(k)
            except (TypeError, ValueError, OverflowError):
                raise QuantConfigError(
                    f"precision.layers: layer key must be an integer index, got {k!r}"
                ) from None
            if idx in layers:
                raise QuantConfigError(f"precision.layers: layer {idx} given twice")
            entry = _normalise_entry(v, f"precision.layers.{k}")
            lroles_raw = _table(entry.pop("roles", None), f"precision.layers.{k}.roles")
            lnodes = entry.pop("nodes", None)
            lroles = {
                _check_role(r, f"precision.layers.{k}.roles"): _normalise_entry(
                    rv, f"precision.layers.{k}.roles.{r}"
                )
                for r, rv in lroles_raw.items()
            }
            layers[idx] = LayerPrecision(
                common=entry, roles=lroles,
                nodes=dict(lnodes) if isinstance(lnodes, Mapping) else lnodes)
        return cls(common=d, roles=roles, layers=layers,
                   nodes=None if nodes is None else dict(nodes))

    @classmethod
    def load(cls, text_or_path: str) -> PrecisionConfig:
        """From a JSON string, or a ``.json`` / ``.toml`` file path."""
        if not isinstance(text_or_path, str | Path):
            raise QuantConfigError(
                f"precision: expected a JSON string or a file path, got {text_or_path!r}")
        text_or_path = str(text_or_path)
        if text_or_path.strip().startswith("{"):
            return cls.from_dict(_parse_json(text_or_path, "precision"))
        try:
            p = Path(text_or_path)
            if not p.is_file():
                what = "is not a file" if p.exists() else "file not found"
                raise QuantConfigError(f"precision: {what}: {p}")
            raw = p.read_bytes()
        except (OSError, ValueError) as e:
            if isinstance(e, QuantConfigError):
                raise
            raise QuantConfigError(f"precision: cannot read {text_or_path!r}: {e}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise QuantConfigError(f"precision: {p}: not UTF-8 text: {e}") from None
        if p.suffix == ".toml":
            import tomllib

            try:
                return cls.from_dict(tomllib.loads(text))
            except tomllib.TOMLDecodeError as e:
                raise QuantConfigError(f"precision: {p}: invalid TOML: {e}") from None
            except RecursionError:
                raise QuantConfigError(f"precision: {p}: invalid TOML: nested too deeply") from None
        return cls.from_dict(_parse_json(text, f"precision: {p}"))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.common)
        if self.roles:
            out["roles"] = {r: dict(v) for r, v in self.roles.items()}
        if self.nodes is not None:
            out["nodes"] = dict(self.nodes)
        if self.layers:
            out["layers"] = {
                str(i): {**lp.common, **({"roles": lp.roles} if lp.roles else {}),
                         **({"nodes": lp.nodes} if lp.nodes is not None else {})}
                for i, lp in sorted(self.layers.items())
            }
        return out

    # -------------------------------------------------------------- node buckets
    def node_precision(self, layer: int) -> NodePrecision | None:
        """The resolved ``nodes`` table of layer ``layer`` (``None``: no buckets there)."""
        lp = self.layers.get(layer)
        over = None if lp is None else lp.nodes
        if over is False:
            return None
        if over is None:
            return None if self.nodes is None else NodePrecision.from_dict(
                self.nodes, "precision.nodes")
        assert isinstance(over, Mapping)
        merged = dict(over) if "by" in over or self.nodes is None else {**self.nodes, **over}
        return NodePrecision.from_dict(merged, f"precision.layers.{layer}.nodes")

    def node_specs(self, layer: int, role: str) -> list[QuantSpec] | None:
        """One spec per node bucket when ``role`` of layer ``layer`` follows node buckets
        (the role's resolved spec at each bucket width), else ``None``."""
        node = self.node_precision(layer)
        if node is None or role not in node.roles:
            return None
        base = self.spec(layer, role)
        if base.granularity == "node":
            raise QuantConfigError(
                f"precision.nodes.roles: role {role!r} of layer {layer} is per-node "
                "(granularity 'node'); roles that follow node buckets need 'tensor' or 'channel'")
        try:
            return node.bucket_specs(base)
        except QuantConfigError as e:
            raise QuantConfigError(f"precision.nodes.bits: layer {layer}, role {role!r}: {e}"
                                   ) from None

    # ---------------------------------------------------------------------- lookup
    def spec(self, layer: int, role: str) -> QuantSpec:
        """The resolved :class:`QuantSpec` for ``role`` in layer ``layer``."""
        _check_role(role, "precision lookup")
        merged: dict[str, Any] = {"bits": FP32_BITS, **ROLE_DEFAULTS[role]}
        merged.update(self.common)
        merged.update(self.roles.get(role, {}))
        lp = self.layers.get(layer)
        if lp is not None:
            merged.update(lp.common)
            merged.update(lp.roles.get(role, {}))
        try:
            return QuantSpec(**merged)
        except (QuantConfigError, TypeError) as e:
            raise QuantConfigError(f"precision: layer {layer}, role {role!r}: {e}") from None

    def label(self) -> str:
        """Short label such as ``int4`` or ``fp32`` (``mixed`` when not uniform)."""
        bits: set[int] = set()
        for i in [0, *self.layers]:
            for r in ROLES:
                ns = self.node_specs(i, r)
                bits |= {s.bits for s in ns} if ns is not None else {self.spec(i, r).bits}
        if len(bits) == 1:
            b = bits.pop()
            return "fp32" if b == FP32_BITS else f"int{b}"
        return "mixed"


def _parse_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise QuantConfigError(f"{where}: invalid JSON: {e}") from None
    except RecursionError:
        raise QuantConfigError(f"{where}: invalid JSON: nested too deeply") from None
