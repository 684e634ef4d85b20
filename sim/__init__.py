"""qgnn cycle-level accelerator simulator (see docs/sim.md).

Public API::

    from qgnn.sim import simulate, load_arch, ArchConfig
    rep = simulate("cora", model="gcn", bits=4)          # default chip, sim/configs/default.toml
    rep.to_dict()["speedup_vs_fp32"]
"""

import importlib
from typing import Any

# Imported lazily (PEP 562) so that `qgnn --help` does not import torch through sim.workload.
_EXPORTS = {
    "ArchConfig": "config", "ArchConfigError": "config", "load_arch": "config",
    "SimulationError": "engines",
    "RunResult": "simulation", "SimReport": "simulation", "run_phases": "simulation",
    "simulate": "simulation",
    "StageTiming": "stage", "simulate_stage": "stage", "simulate_mixed_stage": "stage",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sim' has no attribute {name!r}")


__all__ = [
    "ArchConfig",
    "ArchConfigError",
    "RunResult",
    "SimReport",
    "SimulationError",
    "StageTiming",
    "load_arch",
    "run_phases",
    "simulate",
    "simulate_mixed_stage",
    "simulate_stage",
]
