"""qgnn cycle-level accelerator simulator (see docs/sim.md).

Public API::

    from sim import simulate, load_arch, ArchConfig
    rep = simulate("cora", model="gcn", bits=4)          # default chip, sim/configs/default.toml
    rep.to_dict()["speedup_vs_fp32"]
"""

from .config import ArchConfig, ArchConfigError, load_arch
from .engines import SimulationError
from .simulate import RunResult, SimReport, run_phases, simulate
from .stage import StageTiming, simulate_stage

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
    "simulate_stage",
]
