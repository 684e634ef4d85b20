"""Sweep specification files: a grid or a list of design points, validated on load.

A spec is a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file with these top-level keys
(every one optional except that at least one point must result)::

    name = "cora-bits"               # free text, shown in reports
    description = "..."

    [fixed]                           # parameters shared by every point
    dataset = "cora"
    epochs = 100
    seeds = 3                         # 3 seeds: 0, 1, 2; or a list [0, 5, 7]

    [grid]                            # cartesian product; every leaf is a non-empty list
    bits = [32, 8, 4, 2]
    arch.pes = [4, 16]
    precision.layers.1.bits = [8, 4]  # per-layer; precision.roles.weight.bits: per-role

    [[points]]                        # explicit list; combined with every grid combination
    precision = { bits = 4, roles = { weight = { bits = 8 } } }

    [evaluate]
    accuracy = true                   # quantization-aware training (cached by model config)
    simulate = true                   # cycles, energy, area from sim/

A point's parameters are ``fixed``, overridden by the list entry, then by the grid values (a key
may not appear in both a list entry and the grid). With only ``[grid]`` the points are the
product; with only ``[[points]]`` the list; with both, list x grid (list outer, grid inner, the
last grid axis fastest). Parameters (:data:`PARAMS`):

- ``dataset`` (required), ``split``; ``model``, ``hidden``, ``layers``, ``dropout``, ``k``,
  ``alpha``, ``propagation`` (:class:`model.nn.ModelConfig`); ``epochs``, ``lr``,
  ``weight_decay``, ``quant_lr``, ``distill``, ``degree_quant``, ``row_normalize``
  (:class:`model.train.TrainConfig`); ``seeds``.
- ``bits``: model-wide bit width (2..8, 32/"fp32"), shorthand for ``precision.bits``.
- ``precision``: a :class:`model.quant.PrecisionConfig` table (``bits``, ``range``, ...,
  ``roles.<role>``, ``layers.<i>``, ``layers.<i>.roles.<role>``); layer indices must exist in
  the model.
- ``arch.<key>``: accelerator parameters; the allowed keys and their defaults are those of the
  simulator's default architecture file (see :func:`sweeps.evaluate.arch_defaults`).

Every error names the field (``grid.arch.pes``, ``points[2].model``, ...) and the allowed values.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULTS",
    "EVALUATE_KEYS",
    "PARAMS",
    "SPEC_KEYS",
    "EvaluateOptions",
    "SpecError",
    "SweepPoint",
    "SweepSpec",
    "canonical_json",
    "flatten",
    "load_spec",
    "parse_spec",
    "short_hash",
]

#: Top-level keys of a spec file.
SPEC_KEYS: tuple[str, ...] = ("name", "description", "fixed", "grid", "points", "evaluate")
#: Keys of the ``[evaluate]`` table.
EVALUATE_KEYS: tuple[str, ...] = ("accuracy", "simulate")
#: Scalar point parameters (``precision`` and ``arch`` are tables, ``bits`` a shorthand).
PARAMS: tuple[str, ...] = (
    "dataset", "split", "model", "hidden", "layers", "dropout", "k", "alpha", "propagation",
    "epochs", "lr", "weight_decay", "quant_lr", "distill", "degree_quant", "row_normalize",
    "seeds",
)
#: Every top-level name a point may set.
POINT_KEYS: tuple[str, ...] = (*PARAMS, "bits", "precision", "arch")
#: Defaults of the scalar parameters (``dataset`` has none: a spec must set it). The model and
#: training ones equal ``ModelConfig()`` / ``TrainConfig()`` defaults (a test checks this; they
#: are repeated here so that reading a spec does not import torch).
DEFAULTS: dict[str, Any] = {
    "split": 0, "model": "gcn", "hidden": 64, "layers": 2, "dropout": 0.5, "k": 10,
    "alpha": 0.1, "propagation": "appnp", "epochs": 200, "lr": 0.01, "weight_decay": 5e-3,
    "quant_lr": 0.03, "distill": 1.0, "degree_quant": False, "row_normalize": False, "seeds": 3,
}
#: Propagation steps of the decoupled model.
PROPAGATIONS: tuple[str, ...] = ("appnp", "smp")
#: Largest number of points a spec may define.
MAX_POINTS = 100_000
#: Bump when the meaning of a cached accuracy or a point file changes.
HASH_VERSION = 2


class SpecError(ValueError):
    """An invalid sweep specification; the message names the field and the allowed values."""


# ----------------------------------------------------------------------------- helpers


def canonical_json(obj: Any) -> str:
    """Deterministic JSON (sorted keys, no spaces) used for hashing."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def short_hash(obj: Any, length: int = 16) -> str:
    """First ``length`` hex digits of the SHA-256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables to dotted keys; lists and scalars are leaves.

    ``{"arch": {"pes": 4}, "bits": 8}`` -> ``{"arch.pes": 4, "bits": 8}``.
    """
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _set_dotted(d: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = d
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    if isinstance(value, Mapping):
        existing = cur.get(parts[-1])
        merged = dict(existing) if isinstance(existing, dict) else {}
        for k, v in flatten(value).items():
            _set_dotted(merged, k, v)
        cur[parts[-1]] = merged
    else:
        cur[parts[-1]] = value


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(base))  # deep copy of plain data
    for k, v in flatten(over).items():
        _set_dotted(out, k, v)
    return out


def _type_name(v: Any) -> str:
    return "table" if isinstance(v, Mapping) else type(v).__name__


def _int(v: Any, where: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise SpecError(f"{where}: expected an integer >= {lo}, got {v!r}")
    return v


def _float(v: Any, where: str, check: Callable[[float], bool], allowed: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) \
            or not check(float(v)):
        raise SpecError(f"{where}: expected {allowed}, got {v!r}")
    return float(v)


def _bool(v: Any, where: str) -> bool:
    if not isinstance(v, bool):
        raise SpecError(f"{where}: expected true or false, got {v!r}")
    return v


# ----------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class EvaluateOptions:
    """What each point computes.

    Attributes:
        accuracy: train (QAT) and report test/validation accuracy (percent).
        simulate: run the cycle-level simulator (cycles, energy in pJ, area in mm^2).
    """

    accuracy: bool = True
    simulate: bool = True

    def to_dict(self) -> dict[str, bool]:
        return {"accuracy": self.accuracy, "simulate": self.simulate}


@dataclass(frozen=True)
class SweepPoint:
    """One fully resolved design point.

    Attributes:
        index: position in the spec's point order (0-based).
        params: every parameter, resolved: the scalars of :data:`PARAMS` (``seeds`` as a list),
            ``precision`` (canonical :meth:`PrecisionConfig.to_dict`) and ``arch`` (overrides
            of the simulator defaults; empty when none).
        evaluate: what to compute.
        point_id: config hash of ``params`` and ``evaluate`` (16 hex digits); names the point's
            result file.
        model_hash: hash of everything accuracy depends on (dataset, split, model and training
            configuration, seeds, resolved per-layer per-role quantization); the accuracy
            cache key, shared by points that differ only in ``arch``.
    """

    index: int
    params: dict[str, Any]
    evaluate: EvaluateOptions
    point_id: str
    model_hash: str

    # ---- typed views
    def model_config(self) -> Any:
        from qgnn.model.nn import ModelConfig

        p = self.params
        return ModelConfig(name=p["model"], hidden=p["hidden"], layers=p["layers"],
                           dropout=p["dropout"], k=p["k"], alpha=p["alpha"],
                           propagation=p["propagation"])

    def train_config(self) -> Any:
        from qgnn.model.quant import DegreeQuantConfig
        from qgnn.model.train import TrainConfig

        p = self.params
        return TrainConfig(epochs=p["epochs"], lr=p["lr"], weight_decay=p["weight_decay"],
                           quant_lr=p["quant_lr"], distill=p["distill"],
                           degree_quant=DegreeQuantConfig() if p["degree_quant"] else None,
                           row_normalize=p["row_normalize"])

    def precision_config(self) -> Any:
        from qgnn.model.quant import PrecisionConfig

        return PrecisionConfig.from_dict(self.params["precision"])

    @property
    def seeds(self) -> list[int]:
        return list(self.params["seeds"])

    @property
    def bits_label(self) -> str:
        """``fp32``, ``int4``... or ``mixed``."""
        return str(self.precision_config().label())

    def flat(self) -> dict[str, Any]:
        """Parameters as dotted columns (``arch.pes``, ``precision.layers.1.bits``, ...);
        ``seeds`` as a comma-separated string."""
        p = dict(self.params)
        p["seeds"] = ",".join(str(s) for s in p["seeds"])
        return flatten(p)

    def describe(self) -> str:
        """Short label such as ``cora gcn int4 arch.aggregation.pes=8``."""
        p = self.params
        parts = [str(p["dataset"]), str(p["model"]), self.bits_label]
        if p["arch"]:
            parts += [f"{k}={v}" for k, v in flatten({"arch": p["arch"]}).items()]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "point_id": self.point_id, "model_hash": self.model_hash,
                "params": self.params, "evaluate": self.evaluate.to_dict()}


@dataclass
class SweepSpec:
    """A validated sweep: the expanded, deduplicated list of points."""

    name: str
    description: str
    evaluate: EvaluateOptions
    points: list[SweepPoint]
    axes: list[str] = field(default_factory=list)
    source: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def spec_hash(self) -> str:
        return short_hash([p.point_id for p in self.points])

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[SweepPoint]:
        return iter(self.points)


# ----------------------------------------------------------------------------- loading


def load_spec(path: str | Path, arch_schema: Mapping[str, Any] | None | bool = True) -> SweepSpec:
    """Read and validate a TOML or YAML spec file.

    Args:
        path: ``.toml``, ``.yaml`` or ``.yml`` file.
        arch_schema: allowed ``arch`` keys (dotted) with their default values; ``True`` asks the
            simulator (:func:`sweeps.evaluate.arch_defaults`); ``None`` or ``False``: arch
            parameters are rejected.

    Raises:
        SpecError: unreadable file, syntax error or invalid content.
    """
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"sweep spec not found: {p}")
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise SpecError(f"{p}: unknown spec format {suffix!r}; allowed: .toml, .yaml, .yml")
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise SpecError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise SpecError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    try:
        if suffix == ".toml":
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise SpecError(f"{p}: invalid TOML: {e}") from None
        else:
            import yaml

            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as e:
                raise SpecError(f"{p}: invalid YAML: {' '.join(str(e).split())}") from None
            if raw is None:
                raw = {}
    except RecursionError:
        raise SpecError(f"{p}: invalid {suffix[1:].upper()}: nested too deeply") from None
    spec = parse_spec(raw, arch_schema=arch_schema)
    spec.source = p
    return spec


def _resolve_arch_schema(arch_schema: Mapping[str, Any] | None | bool) -> dict[str, Any] | None:
    if arch_schema is True:
        from .evaluate import arch_defaults

        return arch_defaults()
    if arch_schema is False or arch_schema is None:
        return None
    return dict(arch_schema)


def _check_point_keys(d: Mapping[str, Any], where: str) -> None:
    for k in d:
        if k not in POINT_KEYS:
            raise SpecError(f"{where}: unknown parameter {k!r}; allowed: {', '.join(POINT_KEYS)}")
    for table in ("precision", "arch"):
        if table in d and not isinstance(d[table], Mapping) and not where.startswith("grid"):
            raise SpecError(f"{where}.{table}: expected a table, got {_type_name(d[table])}")


#: Deepest nesting of tables and lists a spec may use.
MAX_DEPTH = 32


def _check_plain(raw: Mapping[str, Any]) -> None:
    """Reject what JSON cannot hold (dates, times, bytes, non-finite numbers, non-string
    keys) and nesting deeper than :data:`MAX_DEPTH`, naming the field (iterative: no
    recursion limit)."""
    stack: list[tuple[str, Any, int]] = [("", raw, 0)]
    while stack:
        where, v, depth = stack.pop()
        name = where or "spec"
        if depth > MAX_DEPTH:
            raise SpecError(f"{name}: nested more than {MAX_DEPTH} tables/lists deep")
        if isinstance(v, Mapping):
            for k, x in v.items():
                if isinstance(k, bool) or not isinstance(k, str | int):
                    raise SpecError(f"{name}: key {k!r} must be a string")
                stack.append((f"{where}.{k}" if where else str(k), x, depth + 1))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                stack.append((f"{name}[{i}]", x, depth + 1))
        elif isinstance(v, float) and not math.isfinite(v):
            raise SpecError(f"{name}: {v!r} is not a finite number")
        elif v is not None and not isinstance(v, str | int | float | bool):
            raise SpecError(f"{name}: a {type(v).__name__} value ({v!r}) is not allowed; use "
                            "a string, number, boolean, list or table")


def _grid_axes(grid: Any) -> list[tuple[str, list[Any]]]:
    if not isinstance(grid, Mapping):
        raise SpecError(f"grid: expected a table, got {_type_name(grid)}")
    _check_point_keys(grid, "grid")
    axes: list[tuple[str, list[Any]]] = []
    for key, values in flatten(grid).items():
        if not isinstance(values, list):
            raise SpecError(f"grid.{key}: expected a list of values (one per grid step), got "
                            f"{values!r}; put single values in [fixed]")
        if not values:
            raise SpecError(f"grid.{key}: empty list; give at least one value")
        if len(values) > MAX_POINTS:
            raise SpecError(f"grid.{key}: {len(values)} values; a spec defines at most "
                            f"{MAX_POINTS} points")
        seen: set[str] = set()
        for a in values:
            ident = f"{type(a).__name__}:{canonical_json(a)}"
            if ident in seen:
                raise SpecError(f"grid.{key}: value {a!r} is listed twice")
            seen.add(ident)
        axes.append((key, values))
    if not axes:
        raise SpecError("grid: empty grid; give at least one parameter with a list of values, "
                        "e.g. bits = [8, 4]")
    return axes


def parse_spec(raw: Any, arch_schema: Mapping[str, Any] | None | bool = True) -> SweepSpec:
    """Validate a spec given as a dict (the parsed TOML/YAML) and expand its points.

    See the module docstring for the format; ``arch_schema`` as in :func:`load_spec`.
    """
    if not isinstance(raw, Mapping):
        raise SpecError(f"spec: expected a table at the top level, got {_type_name(raw)}")
    unknown = [k for k in raw if k not in SPEC_KEYS]
    if unknown:
        raise SpecError(f"spec: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                        f"{', '.join(SPEC_KEYS)}")
    _check_plain(raw)
    name = raw.get("name", "sweep")
    description = raw.get("description", "")
    for key, val in (("name", name), ("description", description)):
        if not isinstance(val, str):
            raise SpecError(f"{key}: expected a string, got {val!r}")

    ev_raw = raw.get("evaluate", {})
    if not isinstance(ev_raw, Mapping):
        raise SpecError(f"evaluate: expected a table, got {_type_name(ev_raw)}")
    for k in ev_raw:
        if k not in EVALUATE_KEYS:
            raise SpecError(f"evaluate: unknown key {k!r}; allowed: {', '.join(EVALUATE_KEYS)}")
    evaluate = EvaluateOptions(
        **{k: _bool(v, f"evaluate.{k}") for k, v in ev_raw.items()})
    if not (evaluate.accuracy or evaluate.simulate):
        raise SpecError("evaluate: accuracy and simulate are both false; nothing to compute")

    fixed = raw.get("fixed", {})
    if not isinstance(fixed, Mapping):
        raise SpecError(f"fixed: expected a table, got {_type_name(fixed)}")
    _check_point_keys(fixed, "fixed")

    entries: list[tuple[str, Mapping[str, Any]]] = []
    if "points" in raw:
        pts = raw["points"]
        if not isinstance(pts, list):
            raise SpecError(f"points: expected a list of tables ([[points]]), got "
                            f"{_type_name(pts)}")
        if not pts:
            raise SpecError("points: empty list; give at least one [[points]] entry")
        for i, e in enumerate(pts):
            if not isinstance(e, Mapping):
                raise SpecError(f"points[{i}]: expected a table, got {_type_name(e)}")
            _check_point_keys(e, f"points[{i}]")
            entries.append((f"points[{i}]", e))
    axes = _grid_axes(raw["grid"]) if "grid" in raw else []
    if not entries and not axes:
        raise SpecError("spec defines no points: add a [grid] table or [[points]] entries")

    n_grid = math.prod(len(v) for _, v in axes) if axes else 1
    total = max(1, len(entries)) * n_grid
    if total > MAX_POINTS:
        raise SpecError(f"spec defines {total} points; at most {MAX_POINTS} are allowed")

    schema = _resolve_arch_schema(arch_schema)
    if not entries:
        entries = [("fixed", {})]
    axis_keys = [k for k, _ in axes]
    points: list[SweepPoint] = []
    seen: dict[str, str] = {}
    arch_prints: dict[str, Any] = {}
    combos = list(itertools.product(*[v for _, v in axes])) if axes else [()]
    for where_entry, entry in entries:
        entry_flat = flatten(entry)
        for k in axis_keys:
            clash = [e for e in entry_flat if e == k or e.startswith(k + ".")
                     or k.startswith(e + ".")]
            if clash:
                raise SpecError(f"{where_entry}.{clash[0]}: also a grid axis (grid.{k}); "
                                "set a parameter in one place only")
        base = _deep_merge(dict(fixed), entry)
        for combo in combos:
            merged = base
            grid_vals = dict(zip(axis_keys, combo, strict=True))
            if grid_vals:
                merged = _deep_merge(base, {})
                for k, v in grid_vals.items():
                    _set_dotted(merged, k, v)
            where = where_entry if not grid_vals else (
                f"{where_entry} x grid(" if where_entry != "fixed" else "grid(") + ", ".join(
                f"{k}={v!r}" for k, v in grid_vals.items()) + ")"
            params = _resolve(merged, where, schema)
            if params["arch"] and not evaluate.simulate:
                raise SpecError(f"{where}: arch.{next(iter(flatten(params['arch'])))}: "
                                "architecture parameters need evaluate.simulate = true")
            pid = short_hash({"v": HASH_VERSION, "params": params,
                              "arch": _arch_fingerprint(params["arch"], arch_prints),
                              "evaluate": evaluate.to_dict()})
            if pid in seen:
                raise SpecError(f"{where}: the same point as {seen[pid]}; every point must "
                                "differ in at least one parameter")
            seen[pid] = where
            points.append(SweepPoint(
                index=len(points), params=params, evaluate=evaluate, point_id=pid,
                model_hash=_model_hash(params)))
    return SweepSpec(name=name, description=description, evaluate=evaluate, points=points,
                     axes=axis_keys, raw=dict(raw))


# ----------------------------------------------------------------------------- resolution


def _check_dataset(name: Any, where: str) -> str:
    from qgnn.model.datasets import DatasetError, available_datasets
    from qgnn.model.datasets.csbm import CSBM_PARAMS
    from qgnn.model.datasets.params import parse_params, split_name
    from qgnn.model.datasets.real import REAL_DATASETS
    from qgnn.model.datasets.rmat import RMAT_PARAMS

    if not isinstance(name, str) or not name.strip():
        raise SpecError(f"{where}: expected a dataset name; allowed: "
                        f"{', '.join(available_datasets())} (synthetic: csbm:key=value,...)")
    family, params = split_name(name)
    synthetic = {"csbm": CSBM_PARAMS, "rmat": RMAT_PARAMS}
    try:
        if family in REAL_DATASETS:
            if params is not None:
                raise SpecError(f"{where}: dataset {family!r} takes no parameters")
        elif family in synthetic:
            parse_params(family, params, synthetic[family])
        else:
            raise SpecError(f"{where}: unknown dataset {name!r}; allowed: "
                            f"{', '.join(available_datasets())}")
    except DatasetError as e:
        raise SpecError(f"{where}: {e}") from None
    return name.strip().lower()


def _check_seeds(v: Any, where: str) -> list[int]:
    if isinstance(v, int) and not isinstance(v, bool):
        _int(v, where, 1)
        return list(range(v))
    if isinstance(v, list) and v and all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in v):
        if len(set(v)) != len(v):
            raise SpecError(f"{where}: seeds {v} repeat a value")
        return [int(s) for s in v]
    raise SpecError(f"{where}: expected a seed count >= 1 or a non-empty list of distinct "
                    f"integers >= 0, got {v!r}")


def _check_arch(arch: Any, where: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """Validate ``arch`` overrides: keys against ``schema``, values by building the chip."""
    from .evaluate import build_arch, canonical_arch

    if not isinstance(arch, Mapping):
        raise SpecError(f"{where}: expected a table of architecture parameters, got "
                        f"{_type_name(arch)}")
    flat = flatten(arch)
    if not flat:
        return {}
    if schema is None:
        raise SpecError(f"{where}.{next(iter(flat))}: architecture parameters need the "
                        "simulator (sim/), which is not installed")
    open_tables = [t for t, d in schema.items() if isinstance(d, Mapping) and not d]
    for k, v in list(flat.items()):
        if any(k.startswith(t + ".") for t in open_tables):  # e.g. dataflow.layers.<i>
            continue
        if k not in schema:
            raise SpecError(f"{where}.{k}: unknown architecture parameter; allowed: "
                            f"{', '.join(sorted(schema))}")
        default = schema[k]
        if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
            flat[k] = float(v)  # 500 and 500.0 are the same clock
    try:
        canon = canonical_arch(flat)
        build_arch(canon)
    except ValueError as e:
        raise SpecError(f"{where}: {e}") from None
    out: dict[str, Any] = {}
    for k, v in canon.items():
        _set_dotted(out, k, v)
    return out


def _arch_fingerprint(arch: Mapping[str, Any], memo: dict[str, Any]) -> Any:
    """The fully resolved chip of ``arch`` overrides (memoised), so that a point's hash changes
    when an arch file it names changes."""
    if not arch:
        return None
    key = canonical_json(arch)
    if key not in memo:
        from .evaluate import arch_fingerprint

        memo[key] = arch_fingerprint(arch)
    return memo[key]


def _num_layers(params: Mapping[str, Any]) -> int:
    """Precision layer indices of the model (decoupled: MLP layers then propagation steps)."""
    n = int(params["layers"])
    return n + int(params["k"]) if params["model"] == "decoupled" else n


def _resolve(merged: Mapping[str, Any], where: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    from qgnn.model.nn import MODEL_NAMES, ModelConfig
    from qgnn.model.quant import PrecisionConfig, QuantConfigError, check_bits

    m = dict(merged)
    if "dataset" not in m:
        raise SpecError(f"{where}: dataset is not set; give it in [fixed], [grid] or [[points]]")
    p: dict[str, Any] = {"dataset": _check_dataset(m["dataset"], f"{where}: dataset")}
    for k in PARAMS:
        if k == "dataset":
            continue
        v = m.get(k, DEFAULTS[k])
        w = f"{where}: {k}"
        if k == "model":
            if not isinstance(v, str) or v.lower() not in MODEL_NAMES:
                raise SpecError(f"{w}: unknown model {v!r}; allowed: {', '.join(MODEL_NAMES)}")
            v = v.lower()
        elif k in ("split", "k"):
            v = _int(v, w, 0)
        elif k in ("hidden", "layers", "epochs"):
            v = _int(v, w, 1)
        elif k == "dropout":
            v = _float(v, w, lambda x: 0.0 <= x < 1.0, "a number in [0, 1)")
        elif k == "alpha":
            v = _float(v, w, lambda x: 0.0 <= x <= 1.0, "a number in [0, 1]")
        elif k == "lr":
            v = _float(v, w, lambda x: x > 0.0, "a number > 0")
        elif k in ("weight_decay", "distill"):
            v = _float(v, w, lambda x: x >= 0.0, "a number >= 0")
        elif k == "quant_lr":
            v = _float(v, w, lambda x: x > 0.0, "a number > 0")
        elif k == "propagation":
            if v not in PROPAGATIONS:
                raise SpecError(f"{w}: unknown propagation {v!r}; allowed: "
                                f"{', '.join(PROPAGATIONS)}")
        elif k in ("degree_quant", "row_normalize"):
            v = _bool(v, w)
        elif k == "seeds":
            v = _check_seeds(v, w)
        p[k] = v
    try:
        ModelConfig(name=p["model"], hidden=p["hidden"], layers=p["layers"],
                    dropout=p["dropout"], k=p["k"], alpha=p["alpha"],
                    propagation=p["propagation"])
    except ValueError as e:
        raise SpecError(f"{where}: {e}") from None

    prec_raw = m.get("precision", {})
    if not isinstance(prec_raw, Mapping):
        raise SpecError(f"{where}: precision: expected a table, got {_type_name(prec_raw)}")
    prec = dict(prec_raw)
    if "bits" in m:
        if "bits" in prec:
            raise SpecError(f"{where}: both bits and precision.bits are set; use one")
        try:
            prec["bits"] = check_bits(m["bits"], "bits")
        except QuantConfigError as e:
            raise SpecError(f"{where}: {e}") from None
    prec.setdefault("bits", 32)
    try:
        pc = PrecisionConfig.from_dict(prec)
    except QuantConfigError as e:
        raise SpecError(f"{where}: {e}") from None
    n_layers = _num_layers(p)
    for idx in pc.layers:
        if idx >= n_layers:
            raise SpecError(f"{where}: precision.layers.{idx}: model {p['model']} with these "
                            f"settings has layers 0..{n_layers - 1}")
    p["precision"] = _canonical_precision(pc.to_dict())
    p["arch"] = _check_arch(m.get("arch", {}), f"{where}: arch", schema)
    return p


def _canonical_precision(d: Mapping[str, Any]) -> dict[str, Any]:
    """Bit widths as ints (``"int4"`` -> 4) so equal configurations hash equally."""
    from qgnn.model.quant import check_bits

    out: dict[str, Any] = {}
    for k, v in d.items():
        if k == "nodes":  # a node-bucket table (bits is a list of widths): validated by the model
            out[k] = dict(v) if isinstance(v, Mapping) else v
        elif isinstance(v, Mapping):
            out[str(k)] = _canonical_precision(v)
        elif k == "bits":
            out[k] = check_bits(v)
        else:
            out[k] = v
    return out


def resolved_precision(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Every layer's every role as a :class:`QuantSpec` dict, and its node-bucket table when it
    has one (the precision actually used)."""
    from dataclasses import asdict

    from qgnn.model.quant import PrecisionConfig
    from qgnn.model.quant.precision import ROLES

    pc = PrecisionConfig.from_dict(params["precision"])
    out: dict[str, dict[str, Any]] = {}
    for i in range(_num_layers(params)):
        for r in ROLES:
            out[f"{i}.{r}"] = asdict(pc.spec(i, r))
        node = pc.node_precision(i)
        if node is not None:  # degree buckets change the trained model: part of its identity
            out[f"{i}.nodes"] = asdict(node)
    return out


def _model_hash(params: Mapping[str, Any]) -> str:
    keys = [k for k in PARAMS if k not in ("k", "alpha")]
    key: dict[str, Any] = {k: params[k] for k in keys}
    if params["model"] == "decoupled":
        key["k"], key["alpha"] = params["k"], params["alpha"]
    key["precision"] = resolved_precision(params)
    return short_hash({"v": HASH_VERSION, "accuracy_of": key})
