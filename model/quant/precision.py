"""Precision configuration: per model, then per layer, then per tensor role.

Resolution order for ``spec(layer, role)`` (later wins)::

    role defaults  <-  model {bits, range, ...}  <-  model roles[role]
                   <-  layers[layer] {bits, ...} <-  layers[layer].roles[role]

Example (JSON/TOML/dict)::

    {"bits": 4, "range": "lsq",
     "roles": {"weight": {"granularity": "channel"}},
     "layers": {"1": {"bits": 8, "roles": {"update": {"bits": 32}}}}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass
class PrecisionConfig:
    """Typed, validated precision of a whole model.

    Attributes:
        common: model-wide spec keys (``bits``, ``range``, ...).
        roles: model-wide per-role overrides.
        layers: per-layer overrides, keyed by layer index (0-based).
    """

    common: dict[str, Any] = field(default_factory=dict)
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    layers: dict[int, LayerPrecision] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_spec_keys(self.common, "precision")
        for r, d in self.roles.items():
            _check_role(r, "precision.roles")
            _check_spec_keys(d, f"precision.roles.{r}")
        for i, lp in self.layers.items():
            if not isinstance(i, int) or i < 0:
                raise QuantConfigError(f"precision.layers: layer index must be >= 0, got {i!r}")
            _check_spec_keys(lp.common, f"precision.layers.{i}")
            for r, d in lp.roles.items():
                _check_role(r, f"precision.layers.{i}.roles")
                _check_spec_keys(d, f"precision.layers.{i}.roles.{r}")
        # Build every spec once so invalid combinations fail now, not mid-training.
        for i in [0, *self.layers]:
            for r in ROLES:
                self.spec(i, r)

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
        roles_raw = d.pop("roles", {}) or {}
        layers_raw = d.pop("layers", {}) or {}
        _check_spec_keys(d, "precision", extra=())
        roles = {
            _check_role(r, "precision.roles"): _normalise_entry(v, f"precision.roles.{r}")
            for r, v in dict(roles_raw).items()
        }
        layers: dict[int, LayerPrecision] = {}
        for k, v in dict(layers_raw).items():
            try:
                idx = int(k)
            except (TypeError, ValueError):
                raise QuantConfigError(
                    f"precision.layers: layer key must be an integer index, got {k!r}"
                ) from None
            entry = _normalise_entry(v, f"precision.layers.{k}")
            lroles_raw = entry.pop("roles", {}) or {}
            lroles = {
                _check_role(r, f"precision.layers.{k}.roles"): _normalise_entry(
                    rv, f"precision.layers.{k}.roles.{r}"
                )
                for r, rv in dict(lroles_raw).items()
            }
            layers[idx] = LayerPrecision(common=entry, roles=lroles)
        return cls(common=d, roles=roles, layers=layers)

    @classmethod
    def load(cls, text_or_path: str) -> PrecisionConfig:
        """From a JSON string, or a ``.json`` / ``.toml`` file path."""
        p = Path(text_or_path)
        if text_or_path.strip().startswith("{"):
            try:
                return cls.from_dict(json.loads(text_or_path))
            except json.JSONDecodeError as e:
                raise QuantConfigError(f"precision: invalid JSON: {e}") from None
        if not p.exists():
            raise QuantConfigError(f"precision: file not found: {p}")
        if p.suffix == ".toml":
            import tomllib

            with p.open("rb") as f:
                return cls.from_dict(tomllib.load(f))
        try:
            return cls.from_dict(json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            raise QuantConfigError(f"precision: {p}: invalid JSON: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.common)
        if self.roles:
            out["roles"] = {r: dict(v) for r, v in self.roles.items()}
        if self.layers:
            out["layers"] = {
                str(i): {**lp.common, **({"roles": lp.roles} if lp.roles else {})}
                for i, lp in sorted(self.layers.items())
            }
        return out

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
        except QuantConfigError as e:
            raise QuantConfigError(f"layer {layer}, role {role!r}: {e}") from None

    def label(self) -> str:
        """Short label such as ``int4`` or ``fp32`` (``mixed`` when not uniform)."""
        bits = {self.spec(i, r).bits for i in [0, *self.layers] for r in ROLES}
        if len(bits) == 1:
            b = bits.pop()
            return "fp32" if b == FP32_BITS else f"int{b}"
        return "mixed"
