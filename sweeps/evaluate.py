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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "arch_defaults",
    "build_arch",
    "configs_of",
    "export_available",
    "export_golden",
    "hw_available",
    "limit_threads",
    "load_data",
    "sim_available",
    "simulate",
    "stage_cycles",
    "train_accuracy",
    "verify_rtl",
]

# ----------------------------------------------------------------------------- availability


def _has(module: str, attr: str) -> bool:
    try:
        if importlib.util.find_spec(module) is None:
            return False
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


def sim_available() -> bool:
    """True when the cycle-level simulator (``qgnn.sim.simulate``) is installed."""
    return _has("qgnn.sim", "simulate")


def hw_available() -> bool:
    """True when RTL verification (``hw.verify.verify_vectors``) is installed."""
    return _has("qgnn.hw.verify", "verify_vectors")


def export_available() -> bool:
    """True when the golden-vector export (``model.integer.export.export_vectors``) exists."""
    return _has("qgnn.model.integer.export", "export_vectors")


def limit_threads(threads: int = 1) -> None:
    """Set torch's intra-op threads (one per task: the sweep runs one task per core)."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- architecture

#: Short names accepted in ``arch.*`` sweep parameters, and the simulator keys they stand for.
ARCH_ALIASES: dict[str, str] = {
    "pes": "aggregation.pes",
    "word_width": "aggregation.word_width",
    "dram": "dram.preset",
}
#: ``arch.file``: an arch TOML path or a preset name in ``sim/configs`` used as the base chip.
ARCH_FILE_KEY = "file"


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def arch_defaults() -> dict[str, Any] | None:
    """Architecture parameters the simulator accepts, as dotted keys with their default values
    (``aggregation.pes``, ``buffers.feature.size_kib``, ``dram.preset``, ...), plus the short
    aliases of :data:`ARCH_ALIASES` and ``file``. ``None`` when the simulator is missing."""
    if not _has("qgnn.sim.config", "load_arch"):
        return None
    from qgnn.sim.config import load_arch

    flat = _flatten(load_arch(None).to_dict())
    # Area of the aggregation logic from `qgnn hw synth` figures (absent from the default chip).
    flat.setdefault("area.synth_json", "")
    for alias, key in ARCH_ALIASES.items():
        flat[alias] = flat.get(key)
    flat[ARCH_FILE_KEY] = "default"
    return flat


def canonical_arch(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted overrides with aliases replaced by the simulator's keys (``pes`` ->
    ``aggregation.pes``). Raises ``ValueError`` when an alias and its key are both set."""
    out: dict[str, Any] = {}
    for k, v in _flatten(overrides).items():
        key = ARCH_ALIASES.get(k, k)
        if key in out:
            raise ValueError(f"{k}: also given as {key}; set it once")
        out[key] = v
    return out


def build_arch(overrides: Mapping[str, Any]) -> Any:
    """The simulator's :class:`sim.config.ArchConfig`: the default chip (or ``file``) with the
    dotted ``overrides`` applied and validated. ``None`` when there is nothing to override.

    Raises:
        ValueError: (``sim.config.ArchConfigError``) a bad key or value, naming it.
    """
    flat = canonical_arch(overrides)
    if not flat:
        return None
    from qgnn.sim.config import load_arch

    base = load_arch(flat.pop(ARCH_FILE_KEY, None))
    return base.with_overrides(flat) if flat else base


def arch_fingerprint(overrides: Mapping[str, Any]) -> dict[str, Any] | None:
    """The complete resolved architecture (``ArchConfig.to_dict()``) for hashing; ``None``
    without overrides (the default chip, which the simulator's version pins)."""
    arch = build_arch(overrides)
    if arch is None:
        return None
    d = dict(arch.to_dict())
    d.pop("source", None)
    return d


# ----------------------------------------------------------------------------- data + model


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, root: str | None, split: int) -> Any:
    from qgnn.model.datasets import load_dataset

    return load_dataset(name, root=root, split=split)


def load_data(name: str, data_root: str | os.PathLike[str] | None = None, split: int = 0) -> Any:
    """Load a dataset once per process (a small LRU cache keyed by name, root and split)."""
    return _load_cached(name, None if data_root is None else str(data_root), split)


def configs_of(params: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """``(ModelConfig, TrainConfig, PrecisionConfig)`` of resolved point parameters."""
    from qgnn.model.nn import ModelConfig
    from qgnn.model.quant import DegreeQuantConfig, PrecisionConfig
    from qgnn.model.train import TrainConfig

    p = params
    model_cfg = ModelConfig(name=p["model"], hidden=p["hidden"], layers=p["layers"],
                            dropout=p["dropout"], k=p["k"], alpha=p["alpha"],
                            propagation=p["propagation"])
    train_cfg = TrainConfig(epochs=p["epochs"], lr=p["lr"], weight_decay=p["weight_decay"],
                            quant_lr=p["quant_lr"], distill=p["distill"],
                            degree_quant=DegreeQuantConfig() if p["degree_quant"] else None,
                            row_normalize=p["row_normalize"])
    return model_cfg, train_cfg, PrecisionConfig.from_dict(p["precision"])


def train_accuracy(params: Mapping[str, Any], data_root: str | None = None) -> dict[str, Any]:
    """Quantization-aware training of one model configuration over its seeds.

    Args:
        params: resolved point parameters (:attr:`sweeps.spec.SweepPoint.params`).
        data_root: dataset root (``None``: ``$QGNN_DATA_ROOT`` or the default).

    Returns:
        :meth:`model.train.TrainSummary.to_dict` (accuracies in percent) plus
        ``train_wall_time_s`` (seconds, loading excluded).
    """
    from qgnn.model.train import train_seeds

    p = params
    data = load_data(p["dataset"], data_root, int(p["split"]))
    model_cfg, train_cfg, precision = configs_of(p)
    t0 = time.perf_counter()
    summary = train_seeds(data, str(p["dataset"]), model_cfg, precision, train_cfg,
                          list(p["seeds"]), progress=False)
    d = summary.to_dict()
    d["train_wall_time_s"] = time.perf_counter() - t0
    return d


# ----------------------------------------------------------------------------- simulator


def simulate(params: Mapping[str, Any], data_root: str | None = None) -> dict[str, Any]:
    """Cycle-level simulation of one point (``sim.simulate``) as a JSON-shaped dict.

    Keys used by the sweeps (see ``docs/sim.md`` for the rest): ``cycles`` (clock cycles),
    ``time_us``, ``energy_pj`` (pJ), ``fp32_cycles`` and ``fp32_energy_pj`` (the same chip with
    FP32 arithmetic), ``speedup_vs_fp32`` and ``energy_ratio_vs_fp32`` (FP32 / quantized),
    ``roofline_cycles``, ``dram_bytes_total`` (bytes), ``dram_bytes`` (bytes per tensor),
    ``utilization`` (fractions), ``energy_breakdown`` (pJ per part), ``area_mm2`` (mm^2).

    An all-FP32 point is the FP32 counterpart chip: the simulator derives it alongside any
    quantized run, so it runs at the chip's widest integer mode and reports the counterpart's
    figures (speedup and energy ratio 1). ``sim_run`` says which (``"quantized"`` or
    ``"fp32-counterpart"``).
    """
    from qgnn.model.quant import PrecisionConfig

    from qgnn import sim

    p = params
    precision = PrecisionConfig.from_dict(p["precision"])
    fp32 = precision.label() == "fp32"
    arch = build_arch(p.get("arch") or {})
    if fp32:  # any integer mode the chip has; the FP32 counterpart does not depend on it
        chip = arch if arch is not None else sim.load_arch(None)
        modes = set(chip.aggregation.bits) & set(chip.combination.bits)
        precision = PrecisionConfig.uniform(max(modes) if modes else 8)
    report = sim.simulate(
        p["dataset"], model=p["model"], bits=precision, arch=arch, data_root=data_root,
        hidden=p["hidden"], layers=p["layers"], split=int(p.get("split", 0)),
    )
    d = dict(report.to_dict())
    if not fp32:
        d["sim_run"] = "quantized"
        return d
    f = dict(d["fp32"])
    out = {k: v for k, v in d.items() if k not in f and k != "fp32"}
    out.update(f)
    out.update(
        bits="fp32", precision=dict(p["precision"]), sim_run="fp32-counterpart",
        cycles=d["fp32_cycles"], energy_pj=d["fp32_energy_pj"], speedup_vs_fp32=1.0,
        energy_ratio_vs_fp32=1.0, memory_ceiling_vs_fp32=1.0,
        area_mm2=f.get("area_mm2", math.nan), fp32_area_mm2=f.get("area_mm2", math.nan),
    )
    return out


# ----------------------------------------------------------------------------- golden + hw


def export_golden(model: Any, data: Any, out: str | os.PathLike[str],
                  source: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a trained model to the integer-only model, write its aggregation stages as a
    golden vector set in ``out`` and compare integer and fake-quant predictions.

    Returns ``{"path", "stages" (AggregationStage list), "agreement" (dict: prediction
    agreement and test accuracies as fractions)}``.
    """
    from qgnn.model.integer.compare import agreement
    from qgnn.model.integer.export import export_vectors

    path, imodel, stages = export_vectors(model, data, Path(out), source=dict(source))
    ag = agreement(model, imodel, data)
    return {"path": Path(path), "stages": list(stages), "agreement": {
        "prediction_agreement": float(ag.prediction_agreement),
        "test_nodes": int(ag.test_nodes),
        "integer_test_acc": float(ag.integer_test_acc),
        "fake_quant_test_acc": float(ag.fake_quant_test_acc)}}


def verify_rtl(vectors: str | os.PathLike[str], simulator: str = "icarus", pes: int = 4,
               latency: int = 1) -> dict[str, Any]:
    """Run a golden vector set on the RTL (``hw.verify.verify_vectors``).

    Returns ``VerifyReport.to_dict()``: ``ok`` (every word equal, no overflow, cycles equal the
    timing contract), ``mismatches`` (words), ``outputs_checked`` (words), ``rtl_cycles`` and
    ``expected_cycles`` (clock cycles), and per-stage ``stages``.
    """
    from qgnn.hw.verify import verify_vectors

    return dict(verify_vectors(vectors, simulator=simulator, pes=pes, latency=latency).to_dict())


def stage_cycles(stage: Any, pes: int = 4, latency: int = 1) -> int:
    """The simulator's cycles for one aggregation stage with ideal memory (the setting of RTL
    verification), which the timing contract says equal the RTL's (``sim.stage``)."""
    from qgnn.sim.stage import simulate_stage

    return int(simulate_stage(stage, pes=pes, latency=latency).cycles)
