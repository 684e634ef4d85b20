"""One golden-vector aggregation stage through the simulator's aggregation model.

This is the calibration point against the RTL: with ideal memory (the contract's fixed-latency
memories that never stall), :func:`simulate_stage` must give exactly the cycles that
``qgnn verify`` measures (``rtl_cycles``) for the same stage, element count and latency.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from qgnn.model.golden.stage import AggregationStage

from .config import ArchConfig, DramConfig, load_arch
from .energy import energy_table
from .engines import simulate_agg
from .timing import aggregation_cycles
from .workload import AggPhase, Graph

__all__ = ["StageTiming", "simulate_stage", "stage_graph"]


@dataclass(frozen=True)
class StageTiming:
    """Simulated cycles of one stage.

    Attributes:
        cycles: the simulator's aggregation phase (ideal memory).
        contract_cycles: the timing contract formula evaluated directly.
        words_per_row: W.
        pes: P.
        latency: memory latency L (cycles).
    """

    cycles: int
    contract_cycles: int
    words_per_row: int
    pes: int
    latency: int


def stage_graph(stage: AggregationStage) -> Graph:
    """The stage's CSR as a :class:`Graph` (terms kept as they are, duplicates included)."""
    n = stage.row_lengths.astype(np.int64)
    dst = np.repeat(np.arange(stage.num_nodes, dtype=np.int64), n)
    return Graph(name=stage.name, num_nodes=stage.num_nodes, src=stage.indices.copy(), dst=dst,
                 in_degree=n, num_features=stage.features, num_classes=2)


def ideal_memory(arch: ArchConfig) -> ArchConfig:
    """``arch`` with memory that never stalls (no DRAM latency, unbounded bandwidth)."""
    d = arch.dram
    ideal = DramConfig(preset=d.preset, bandwidth_gbps=1e18, latency_ns=0.0,
                       pj_per_bit=d.pj_per_bit, burst_bytes=d.burst_bytes,
                       sources={**d.sources, "bandwidth_gbps": "ideal", "latency_ns": "ideal"})
    return replace(arch, dram=ideal)


def simulate_stage(stage: AggregationStage, pes: int, latency: int,
                   arch: ArchConfig | None = None) -> StageTiming:
    """Cycles of ``stage`` on ``pes`` aggregation elements with memory latency ``latency``
    (cycles), ideal memory, the source rows on chip (the setting of ``qgnn verify``)."""
    base = load_arch(arch)
    agg = replace(base.aggregation, pes=pes, word_width=stage.word_width, sram_latency=latency,
                  bits=tuple(sorted(set(base.aggregation.bits) | {stage.bits, stage.out_bits})))
    chip = ideal_memory(replace(base, aggregation=agg))
    g = stage_graph(stage)
    ph = AggPhase(layer=0, name=stage.name, features=stage.features, in_bits=stage.bits,
                  out_bits=stage.out_bits, self_loops=False, pre_requants=0, post_requants=1)
    r = simulate_agg(ph, g, chip, energy_table(), input_src="feature", output_dst="stream")
    contract = aggregation_cycles(stage.row_lengths, stage.words_per_row, pes, latency)
    return StageTiming(cycles=int(round(r.cycles)), contract_cycles=int(contract),
                       words_per_row=stage.words_per_row, pes=pes, latency=latency)
