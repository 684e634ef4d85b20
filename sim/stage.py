"""One golden-vector aggregation stage through the simulator's aggregation model.

This is the calibration point against the RTL: with ideal memory (the contract's fixed-latency
memories that never stall), :func:`simulate_stage` must give exactly the cycles that
``qgnn verify`` measures (``rtl_cycles``) for the same stage, element count and latency.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from qgnn.model.golden.stage import AggregationStage

from .config import ArchConfig, DramConfig, load_arch
from .energy import energy_table
from .engines import simulate_agg
from .timing import aggregation_cycles
from .workload import AggPhase, Graph

__all__ = ["StageTiming", "simulate_mixed_stage", "simulate_stage", "stage_graph"]


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


def simulate_mixed_stage(stage: Any, pes: int, latency: int, overlap_drain: bool = True,
                         arch: ArchConfig | None = None) -> StageTiming:
    """Cycles of a mixed-width stage (``model.golden.mixed_stage.MixedAggregationStage``) on
    the simulator's mixed-engine aggregation with ``pes`` elements, memory latency ``latency``
    (cycles), ideal memory and the source rows on chip: the calibration point of the mixed
    engine (``hw/mixed_engine.py``). ``contract_cycles`` is
    ``qgnn.core.timing.mixed_aggregation_cycles`` on the stage's own per-row words."""
    from qgnn.core.timing import mixed_aggregation_cycles

    from .workload import NodeBuckets

    if stage.num_src < stage.num_nodes:
        raise ValueError(f"{stage.name}: {stage.num_src} source rows for {stage.num_nodes} "
                         "destination rows; the simulator needs a source row per node")
    base = load_arch(arch)
    widths = set(stage.bits_in) | set(stage.out_bits) | set(base.aggregation.bits)
    agg = replace(base.aggregation, pes=pes, word_width=stage.word_width, sram_latency=latency,
                  bits=tuple(sorted(widths)))
    chip = ideal_memory(replace(base, aggregation=agg))
    n = stage.row_lengths.astype(np.int64)
    dst = np.repeat(np.arange(stage.num_nodes, dtype=np.int64), n)
    g = Graph(name=stage.name, num_nodes=stage.num_nodes, src=stage.indices.copy(), dst=dst,
              in_degree=n, num_features=stage.features, num_classes=2)
    ph = AggPhase(layer=0, name=stage.name, features=stage.features,
                  in_bits=max(stage.bits_in), out_bits=max(stage.out_bits), self_loops=False,
                  pre_requants=0, post_requants=1,
                  buckets=NodeBuckets(stage.src_bucket.astype(np.int64), stage.num_buckets),
                  in_widths=tuple(stage.bits_in), out_widths=tuple(stage.out_bits),
                  out_buckets=NodeBuckets(stage.dst_bucket.astype(np.int64),
                                          len(stage.out_bits)))
    r = simulate_agg(ph, g, chip, energy_table(), input_src="feature", output_dst="stream",
                     overlap_drain=overlap_drain)
    contract = mixed_aggregation_cycles(stage.row_in_words, stage.out_words, pes, latency,
                                        overlap_drain)
    words = int(stage.words_in_bucket().max(initial=1))
    return StageTiming(cycles=int(round(r.cycles)), contract_cycles=int(contract),
                       words_per_row=words, pes=pes, latency=latency)
