"""Adapters between the sweeps and the other parts of qgnn (model/, sim/, hw/).

Every call into another part goes through one function here, so that a change of their API is
fixed in one place. ``sim`` and ``hw`` are optional at import time: :func:`sim_available` and
:func:`hw_available` say whether they are installed.

Functions run inside Dask workers must be picklable module-level functions; they set torch to
one intra-op thread (:func:`limit_threads`) because a sweep already runs one task per core.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import math
import os
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "arch_defaults",
    "build_arch",
    "hw_available",
    "limit_threads",
    "load_data",
    "sim_available",
    "simulate",
    "train_accuracy",
]

#: Keys of :meth:`sim.SimReport.to_dict` the sweeps use (the report may hold more).
SIM_KEYS: tuple[str, ...] = (
    "cycles", "energy_pj", "fp32_cycles", "fp32_energy_pj", "speedup_vs_fp32",
    "energy_ratio_vs_fp32", "roofline_cycles", "dram_bytes", "utilization",
    "energy_breakdown", "area_mm2",
)


# ----------------------------------------------------------------------------- availability


def _has(module: str, attr: str) -> bool:
    try:
        if importlib.util.find_spec(module) is None:
            return False
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def sim_available() -> bool:
    """True when the cycle-level simulator (``sim.simulate``) is installed."""
    return _has("sim", "simulate")


def hw_available() -> bool:
    """True when the RTL verification entry point (``hw.verify``) is installed."""
    return _has("hw", "verify")


def limit_threads(threads: int = 1) -> None:
    """Set torch's intra-op threads (one per task: the sweep runs one task per core)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- architecture


def _sim_default_config_path() -> Path | None:
    spec = importlib.util.find_spec("sim")
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "configs" / "default.toml"
        if p.is_file():
            return p
    return None


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def arch_defaults() -> dict[str, Any] | None:
    """Architecture parameters the simulator accepts, as dotted keys with default values.

    Read from ``sim/configs/default.toml``; ``None`` when the simulator is not installed.
    """
    if not sim_available():
        return None
    path = _sim_default_config_path()
    if path is None:
        return None
    with path.open("rb") as fh:
        return _flatten(tomllib.load(fh))


def build_arch(overrides: Mapping[str, Any]) -> Any:
    """The simulator's architecture configuration: its defaults with ``overrides`` applied.

    ``overrides`` is a nested table (``{"pes": 8, "dram": {"preset": "ddr4"}}``). Returns
    ``None`` for no overrides (the simulator then uses its defaults).
    """
    if not overrides:
        return None
    import sim

    path = _sim_default_config_path()
    base: dict[str, Any] = {}
    if path is not None:
        with path.open("rb") as fh:
            base = tomllib.load(fh)
    merged = _merge(base, overrides)
    arch_cls = getattr(sim, "ArchConfig", None)
    for ctor in ("from_dict", "from_mapping"):
        if arch_cls is not None and hasattr(arch_cls, ctor):
            return getattr(arch_cls, ctor)(merged)
    if arch_cls is not None:
        return arch_cls(**merged)
    raise RuntimeError("sim has no ArchConfig; cannot apply architecture parameters")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------- data + model


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str | None, split: int) -> Any:
    from model.datasets import load_dataset

    return load_dataset(name, root=root, split=split)


def load_data(name: str, data_root: str | os.PathLike[str] | None = None, split: int = 0) -> Any:
    """Load a dataset once per process (a small LRU cache keyed by name, root and split)."""
    return _load_cached(name, None if data_root is None else str(data_root), split)


def train_accuracy(params: Mapping[str, Any], data_root: str | None = None) -> dict[str, Any]:
    """Quantization-aware training of one model configuration over its seeds.

    Args:
        params: resolved point parameters (:attr:`sweeps.spec.SweepPoint.params`).
        data_root: dataset root (``None``: ``$QGNN_DATA_ROOT`` or the default).

    Returns:
        :meth:`model.train.TrainSummary.to_dict` (accuracies in percent) plus
        ``train_wall_time_s`` (seconds, loading excluded).
    """
    from model.nn import ModelConfig
    from model.quant import DegreeQuantConfig, PrecisionConfig
    from model.train import TrainConfig, train_seeds

    p = params
    data = load_data(p["dataset"], data_root, int(p["split"]))
    model_cfg = ModelConfig(name=p["model"], hidden=p["hidden"], layers=p["layers"],
                            dropout=p["dropout"], k=p["k"], alpha=p["alpha"])
    train_cfg = TrainConfig(epochs=p["epochs"], lr=p["lr"], weight_decay=p["weight_decay"],
                            degree_quant=DegreeQuantConfig() if p["degree_quant"] else None,
                            row_normalize=p["row_normalize"])
    precision = PrecisionConfig.from_dict(p["precision"])
    t0 = time.perf_counter()
    summary = train_seeds(data, str(p["dataset"]), model_cfg, precision, train_cfg,
                          list(p["seeds"]), progress=False)
    d = summary.to_dict()
    d["train_wall_time_s"] = time.perf_counter() - t0
    return d


# ----------------------------------------------------------------------------- simulator


def simulate(params: Mapping[str, Any], data_root: str | None = None) -> dict[str, Any]:
    """Cycle-level simulation of one point (``sim.simulate``).

    Returns the report as a dict with at least :data:`SIM_KEYS` (missing keys are ``NaN``):
    cycles (clock cycles), energy_pj (picojoules), fp32_* (the same architecture running the
    FP32 model), speedup_vs_fp32 and energy_ratio_vs_fp32 (ratios), roofline_cycles,
    dram_bytes (bytes), utilization (fraction), energy_breakdown (component -> pJ) and area_mm2.
    """
    import sim
    from model.quant import PrecisionConfig

    p = params
    report = sim.simulate(
        p["dataset"], model=p["model"], bits=PrecisionConfig.from_dict(p["precision"]),
        arch=build_arch(p.get("arch") or {}), data_root=data_root, hidden=p["hidden"],
        layers=p["layers"],
    )
    d = dict(report.to_dict() if hasattr(report, "to_dict") else report)
    for k in SIM_KEYS:
        d.setdefault(k, math.nan)
    return d


# ----------------------------------------------------------------------------- hw


def synth_area(bits: int, arch: Mapping[str, Any] | None = None) -> float:
    """Area of the aggregation engine from synthesis figures (mm^2), if ``hw`` provides it.

    Returns ``NaN`` when no synthesis figures are available.
    """
    for mod_name, fn_name in (("hw", "area_mm2"), ("hw.synth", "area_mm2")):
        if _has(mod_name, fn_name):
            fn = getattr(importlib.import_module(mod_name), fn_name)
            return float(fn(bits=bits, **dict(arch or {})))
    return math.nan
