"""Top level: schedule a model's phases on a chip and on its FP32 counterpart; the report.

Schedule (per run): phases execute in model order. Data placement follows the buffers:

- a combination whose output feeds an aggregation keeps it in the feature buffer when it fits
  (else writes it to DRAM, and the aggregation tiles it back in);
- an aggregation whose output feeds a combination streams its rows into it and, with
  ``engine_overlap``, both engines run concurrently (sharing DRAM bandwidth; the combination
  starts after the first R rows); a column-tiled aggregation completes rows only in its last
  pass, so it writes them to DRAM instead;
- consecutive combinations chain on chip (row tiles); consecutive aggregations keep the
  intermediate in the feature buffer when input and output fit together;
- the first input and the final output are in DRAM.

Dataflow ``auto`` tries both orders of every message-passing layer (all combinations for up
to four such layers, else greedily layer by layer) and keeps the one with the fewest total
cycles (the model's own order on a tie).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgnn.model.quant import PrecisionConfig, check_bits

from .area import area_breakdown
from .config import ArchConfig, load_arch
from .energy import EnergyTable, energy_table
from .engines import (
    DRAM_TENSORS,
    PhaseResult,
    SimulationError,
    ceil_div,
    mixed_agg_bytes,
    simulate_agg,
    simulate_gemm,
)
from .timing import timing_source
from .workload import (
    AggPhase,
    GemmPhase,
    Graph,
    Phase,
    build_phases,
    fp32_phases,
    graph_from_data,
    has_orders,
    layer_buckets,
    model_layers,
)

__all__ = ["AGG_ENGINES", "RunResult", "SimReport", "feature_bits", "run_phases", "simulate"]

NATIVE_ORDER = {"gcn": "combine-first", "gin": "aggregate-first", "sage": "aggregate-first"}
#: ``auto`` dataflow tries all 2^L orders up to this many message-passing layers.
MAX_EXHAUSTIVE = 4
ENERGY_COMPONENTS = ("dram", "sram.feature", "sram.index", "sram.accumulator", "sram.weight",
                     "sram.input", "sram.output", "aggregation.add", "combination.mac",
                     "combination.index", "requantization")


@dataclass
class RunResult:
    """One chip running one workload."""

    arch: ArchConfig
    phases: list[PhaseResult]
    cycles: float
    orders: dict[int, str] = field(default_factory=dict)

    @property
    def energy_breakdown(self) -> dict[str, float]:
        out = dict.fromkeys(ENERGY_COMPONENTS, 0.0)
        for p in self.phases:
            for k, v in p.energy.items():
                out[k] = out.get(k, 0.0) + v
        return out

    @property
    def energy_pj(self) -> float:
        return math.fsum(self.energy_breakdown.values())

    @property
    def dram_bytes(self) -> dict[str, float]:
        out = dict.fromkeys(DRAM_TENSORS, 0.0)
        for p in self.phases:
            for k, v in p.dram.items():
                out[k] += v
        return out

    @property
    def dram_bytes_total(self) -> float:
        return math.fsum(self.dram_bytes.values())

    @property
    def compulsory_bytes(self) -> float:
        return math.fsum(p.compulsory_bytes for p in self.phases)

    def engine_bound(self, engine: str) -> float:
        """Cycles an engine needs at peak throughput for its useful operations."""
        return math.fsum(p.ops / p.peak_ops_per_cycle for p in self.phases
                         if p.engine == engine and p.peak_ops_per_cycle > 0)

    @property
    def memory_bound(self) -> float:
        """Cycles to move the compulsory DRAM bytes at peak bandwidth."""
        return self.compulsory_bytes / self.arch.bytes_per_cycle

    @property
    def roofline_cycles(self) -> float:
        """Lower bound: max(compulsory bytes / bandwidth, each engine's ops / peak)."""
        return max(self.memory_bound, self.engine_bound("aggregation"),
                   self.engine_bound("combination"))

    def utilization(self) -> dict[str, float]:
        cyc = max(self.cycles, 1.0)
        agg = [p for p in self.phases if p.engine == "aggregation"]
        comb = [p for p in self.phases if p.engine == "combination"]
        return {
            "aggregation_lanes": self.engine_bound("aggregation") / cyc,
            "combination_macs": self.engine_bound("combination") / cyc,
            "aggregation_busy": math.fsum(p.compute + p.imbalance for p in agg) / cyc,
            "combination_busy": math.fsum(p.compute + p.imbalance for p in comb) / cyc,
            "dram_bandwidth": self.dram_bytes_total / (self.arch.bytes_per_cycle * cyc),
        }

    def to_dict(self) -> dict[str, Any]:
        cyc = int(math.ceil(self.cycles))
        return {
            "arch": self.arch.name,
            "cycles": cyc,
            "time_us": cyc / self.arch.clock_mhz,
            "energy_pj": self.energy_pj,
            "energy_breakdown": self.energy_breakdown,
            "dram_bytes": self.dram_bytes,
            "dram_bytes_total": self.dram_bytes_total,
            "compulsory_dram_bytes": self.compulsory_bytes,
            "roofline_cycles": self.roofline_cycles,
            "roofline_pct": 100.0 * cyc / self.roofline_cycles if self.roofline_cycles else 0.0,
            "roofline_bounds": {"memory": self.memory_bound,
                                "aggregation": self.engine_bound("aggregation"),
                                "combination": self.engine_bound("combination")},
            "utilization": self.utilization(),
            "dataflow": {str(k): v for k, v in sorted(self.orders.items())},
            "layers": [p.to_dict() for p in self.phases],
        }


# ----------------------------------------------------------------------------- scheduling


def _agg_in_bytes(ph: AggPhase, arch: ArchConfig, g: Graph) -> int:
    if ph.buckets is not None and ph.in_bits != 32:
        return mixed_agg_bytes(ph, arch)[0]
    lanes = arch.agg_lanes(ph.in_bits)
    return g.num_nodes * ceil_div(ph.features, lanes) * arch.aggregation.word_width // 8


def _agg_out_bytes(ph: AggPhase, arch: ArchConfig, g: Graph) -> int:
    if ph.buckets is not None and ph.in_bits != 32:
        return mixed_agg_bytes(ph, arch)[1]
    lanes = arch.agg_lanes(ph.out_bits)
    return g.num_nodes * ceil_div(ph.features, lanes) * arch.aggregation.word_width // 8


def run_phases(phases: list[Phase], g: Graph, arch: ArchConfig,
               et: EnergyTable | None = None) -> RunResult:
    """Simulate ``phases`` in order on ``arch`` (placement and overlap as in the module doc)."""
    et = et or energy_table()
    fcap = arch.buffers["feature"].bytes
    results: list[PhaseResult] = []
    prev_out = "dram"  # where the previous phase left its output
    prev_agg_whole = False
    total = 0.0
    pending: PhaseResult | None = None  # aggregation streaming into the next combination
    for i, ph in enumerate(phases):
        nxt = phases[i + 1] if i + 1 < len(phases) else None
        if isinstance(ph, AggPhase):
            input_src = "feature" if prev_out == "feature" else "dram"
            in_b = _agg_in_bytes(ph, arch, g)
            side_b = g.num_nodes * ceil_div(ph.side_values * ph.side_bits, 8)
            if isinstance(nxt, GemmPhase) and arch.engine_overlap:
                out = "stream"
            elif isinstance(nxt, AggPhase) and in_b + _agg_out_bytes(ph, arch, g) + side_b <= fcap:
                out = "feature"
            else:
                out = "dram"
            side_on = bool(ph.side_values) and input_src == "feature" and (
                in_b + side_b + (_agg_out_bytes(ph, arch, g) if out == "feature" else 0) <= fcap)
            r = simulate_agg(ph, g, arch, et, input_src=input_src, output_dst=out,
                             side_onchip=side_on)
            if out == "stream" and r.mode.startswith("column") and r.passes > 1:
                out = "dram"
                r = simulate_agg(ph, g, arch, et, input_src=input_src, output_dst=out,
                                 side_onchip=side_on)
            prev_agg_whole = r.mode == "whole"
            r.exposed = r.cycles
            results.append(r)
            total += r.cycles
            pending = r if out == "stream" else None
            prev_out = out
        else:
            if prev_out == "stream":
                input_src = "stream"
            elif i > 0 and isinstance(phases[i - 1], GemmPhase):
                input_src = "chain"
            else:
                input_src = "dram"
            if isinstance(nxt, AggPhase):
                need = _agg_in_bytes(nxt, arch, g)
                if nxt.side_from_prev:  # SAGE: the root-term half stays beside it
                    need += g.num_nodes * ceil_div(nxt.side_values * nxt.side_bits, 8)
                out = "feature" if need <= fcap else "dram"
            elif isinstance(nxt, GemmPhase):
                out = "chain"
            else:
                out = "dram"
            root_on = bool(ph.root_k) and prev_agg_whole
            r = simulate_gemm(ph, arch, et, input_src=input_src, output_dst=out,
                              root_onchip=root_on)
            if pending is not None:
                a = pending
                frac = min(1.0, arch.combination.rows / max(g.num_nodes, 1))
                shared = ((a.dram_bytes + r.dram_bytes) / arch.bytes_per_cycle
                          + arch.dram_latency_cycles)
                group = max(a.cycles + r.cycles * frac, r.cycles + a.cycles * frac, shared)
                r.exposed = max(0.0, group - a.cycles)
            else:
                r.exposed = r.cycles
            total += r.exposed
            results.append(r)
            pending = None
            prev_out = out
            prev_agg_whole = False
    return RunResult(arch=arch, phases=results, cycles=total)


def _choose_orders(shapes: list[Any], precision: PrecisionConfig, g: Graph, arch: ArchConfig,
                   et: EnergyTable, fp32: bool, nodes: dict[int, Any] | None = None,
                   mixed_engine: bool = False) -> tuple[dict[int, str], RunResult]:
    """Per-layer dataflow: fixed ones as configured; ``auto`` layers by total cycles, trying
    every combination when there are at most :data:`MAX_EXHAUSTIVE` of them (else greedily,
    layer by layer). Ties keep the model's own order."""
    fixed = {s.index: arch.dataflow(s.index) for s in shapes if arch.dataflow(s.index) != "auto"}
    native = {s.index: NATIVE_ORDER.get(s.kind, "combine-first") for s in shapes}
    auto = [li for li in has_orders(shapes) if li not in fixed]

    def run(o: dict[int, str]) -> RunResult | None:
        ph = build_phases(shapes, precision, g.num_nodes, o, g.input, nodes=nodes,
                          mixed_engine=mixed_engine)
        if fp32:
            ph = fp32_phases(ph)
        try:
            res = run_phases(ph, g, arch, et)
        except SimulationError:
            if not auto:
                raise
            return None  # this order does not fit the chip; another may
        res.orders = {k: v for k, v in o.items() if k in has_orders(shapes)}
        return res

    def flip(o: str) -> str:
        return "aggregate-first" if o == "combine-first" else "combine-first"

    def better(cand: RunResult | None, best: RunResult | None) -> bool:
        return cand is not None and (best is None or cand.cycles < best.cycles)

    orders = {**native, **fixed}
    best = run(orders)
    if len(auto) <= MAX_EXHAUSTIVE:
        for mask in range(1, 1 << len(auto)):
            alt = dict(orders)
            for bit, li in enumerate(auto):
                if mask >> bit & 1:
                    alt[li] = flip(native[li])
            cand = run(alt)
            if better(cand, best):
                best = cand
    else:
        cur = dict(orders)
        for li in auto:
            alt = dict(cur)
            alt[li] = flip(alt[li])
            cand = run(alt)
            if better(cand, best):
                best, cur = cand, alt
    if best is None:
        raise SimulationError("no dataflow order of this model fits the chip's buffers")
    return best.orders, best


# ----------------------------------------------------------------------------- report


@dataclass
class SimReport:
    """The result of :func:`simulate`: the quantized run and its FP32 counterpart.

    :meth:`to_dict` is the stable JSON shape (see ``docs/sim.md``)."""

    dataset: str
    model: str
    precision: PrecisionConfig
    graph: Graph
    run: RunResult
    fp32: RunResult
    area: dict[str, Any]
    fp32_area: dict[str, Any]
    workload: dict[str, Any]
    #: Degree-aware mixed precision / mixed-width engine (None: uniform engine, no buckets).
    mixed: dict[str, Any] | None = None

    @property
    def cycles(self) -> int:
        return int(math.ceil(self.run.cycles))

    @property
    def fp32_cycles(self) -> int:
        return int(math.ceil(self.fp32.cycles))

    @property
    def speedup_vs_fp32(self) -> float:
        return self.fp32_cycles / self.cycles if self.cycles else float("inf")

    @property
    def energy_pj(self) -> float:
        return self.run.energy_pj

    @property
    def fp32_energy_pj(self) -> float:
        return self.fp32.energy_pj

    @property
    def energy_ratio_vs_fp32(self) -> float:
        """FP32 energy / quantized energy (> 1: the quantized chip uses less)."""
        return self.fp32_energy_pj / self.energy_pj if self.energy_pj else float("inf")

    @property
    def memory_ceiling(self) -> float:
        """FP32 compulsory DRAM bytes / quantized compulsory bytes: the speedup a purely
        memory-bound chip could reach (the anchors' ceiling, computed for this workload)."""
        q = self.run.compulsory_bytes
        return self.fp32.compulsory_bytes / q if q else float("inf")

    def to_dict(self) -> dict[str, Any]:
        r = self.run.to_dict()
        f = self.fp32.to_dict()
        return {
            "dataset": self.dataset,
            "model": self.model,
            "bits": self.precision.label(),
            "precision": self.precision.to_dict(),
            "arch": self.run.arch.to_dict(),
            "cycles": self.cycles,
            "time_us": r["time_us"],
            "energy_pj": self.energy_pj,
            "fp32_cycles": self.fp32_cycles,
            "fp32_time_us": f["time_us"],
            "fp32_energy_pj": self.fp32_energy_pj,
            "speedup_vs_fp32": self.speedup_vs_fp32,
            "energy_ratio_vs_fp32": self.energy_ratio_vs_fp32,
            "memory_ceiling_vs_fp32": self.memory_ceiling,
            "dram_bytes_ratio_vs_fp32": (self.fp32.dram_bytes_total / self.run.dram_bytes_total
                                         if self.run.dram_bytes_total else float("inf")),
            "roofline_cycles": r["roofline_cycles"],
            "roofline_pct": r["roofline_pct"],
            "roofline_bounds": r["roofline_bounds"],
            "dram_bytes": r["dram_bytes"],
            "dram_bytes_total": r["dram_bytes_total"],
            "compulsory_dram_bytes": r["compulsory_dram_bytes"],
            "utilization": r["utilization"],
            "energy_breakdown": r["energy_breakdown"],
            "area_mm2": self.area["total_mm2"],
            "area_breakdown": self.area,
            "dataflow": r["dataflow"],
            "layers": r["layers"],
            "fp32": {**f, "area_mm2": self.fp32_area["total_mm2"],
                     "area_breakdown": self.fp32_area},
            "workload": self.workload,
            "timing_source": timing_source(),
            **({"mixed": self.mixed} if self.mixed is not None else {}),
        }

    def table(self) -> str:
        """A per-layer text table of both runs."""
        return format_table(self)


def format_table(rep: SimReport) -> str:
    hdr = (f"{'chip':<6} {'phase':<18} {'tiling':<20} {'cycles':>10} {'compute':>10} "
           f"{'stall':>9} {'imbal':>8} {'exposed':>10} {'DRAM KiB':>10} {'energy uJ':>10}")
    lines = [hdr, "-" * len(hdr)]
    for label, run in (("quant", rep.run), ("fp32", rep.fp32)):
        for p in run.phases:
            lines.append(
                f"{label:<6} {p.name:<18} {p.mode:<20} {p.cycles:>10.0f} {p.compute:>10.0f} "
                f"{p.dram_stall:>9.0f} {p.imbalance:>8.0f} {p.exposed:>10.0f} "
                f"{p.dram_bytes / 1024:>10.1f} {p.energy_pj / 1e6:>10.3f}")
    d = rep.to_dict()
    lines.append("-" * len(hdr))
    lines.append(
        f"{rep.dataset} {rep.model} {d['bits']} on {rep.run.arch.name}: "
        f"{rep.cycles} cycles ({d['time_us']:.1f} us), {rep.energy_pj / 1e6:.2f} uJ; "
        f"FP32 {rep.fp32_cycles} cycles, {rep.fp32_energy_pj / 1e6:.2f} uJ")
    lines.append(
        f"speedup {rep.speedup_vs_fp32:.2f}x (memory-bound ceiling {rep.memory_ceiling:.2f}x; "
        f"FP32 moves {d['dram_bytes_ratio_vs_fp32']:.2f}x the DRAM bytes), "
        f"energy {rep.energy_ratio_vs_fp32:.2f}x less; roofline {d['roofline_cycles']:.0f} "
        f"cycles, simulated = {d['roofline_pct']:.0f}% of it; area {d['area_mm2']:.2f} mm^2 "
        f"(FP32 {rep.fp32_area['total_mm2']:.2f})")
    if rep.mixed is not None:
        mx = rep.mixed
        lines.append(
            f"aggregation on the {mx['aggregation_engine']} engine (overlap_drain "
            f"{mx['overlap_drain']}); avg_feature_bits {mx['avg_feature_bits']:.3f}; "
            + "; ".join(f"layer {li['layer']}: " + ", ".join(
                f"{b['nodes']} nodes at {b['bits']}" for b in li["buckets"])
                for li in mx["layers"]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- API


def _precision(bits: int | str | PrecisionConfig) -> PrecisionConfig:
    if isinstance(bits, PrecisionConfig):
        return bits
    return PrecisionConfig.uniform(check_bits(bits, "bits"))


def simulate(
    dataset: str | Any,
    model: str | Any = "gcn",
    bits: int | str | PrecisionConfig = 4,
    arch: ArchConfig | str | Path | None = None,
    data_root: str | Path | None = None,
    hidden: int = 64,
    layers: int = 2,
    *,
    split: int = 0,
    seed: int = 0,
    engine: str = "auto",
) -> SimReport:
    """Simulate a model on a graph on ``arch`` and on its FP32 counterpart.

    Args:
        dataset: a dataset name for :func:`model.datasets.load_dataset` (real or synthetic,
            e.g. ``"cora"``, ``"rmat:edges=10000000,scale=20"``), a PyG ``Data``, or a
            :class:`~sim.workload.Graph`.
        model: ``gcn``/``gin``/``sage``/``decoupled``, a :class:`model.nn.ModelConfig`, or a
            built (trained) :class:`model.nn.QuantGNN` (its layer shapes are used).
        bits: model-wide bit width (2..8) or a full :class:`model.quant.PrecisionConfig`.
        arch: an :class:`ArchConfig`, a TOML path, a preset name in ``sim/configs``, or None
            for ``sim/configs/default.toml``.
        data_root: dataset root (see ``qgnn datasets``).
        hidden, layers: model width and depth when ``model`` is a name.
        engine: aggregation engine of the quantized chip: ``auto`` (the mixed-width engine
            when the precision has node buckets, else the uniform one), ``uniform`` or
            ``mixed`` (a uniform model on the mixed engine: one bucket, K = 1). The FP32
            counterpart always runs the uniform engines.

    Returns:
        A :class:`SimReport`; ``to_dict()`` has cycles, energy_pj, fp32_cycles,
        fp32_energy_pj, speedup_vs_fp32, energy_ratio_vs_fp32, roofline_cycles, roofline_pct,
        dram_bytes (by tensor), utilization, energy_breakdown, area_mm2 and per-phase layers.
    """
    precision = _precision(bits)
    if precision.label() == "fp32":
        raise ValueError("bits: the quantized run needs integer bit widths (2..8); the FP32 "
                         "counterpart is simulated alongside it")
    chip = load_arch(arch)
    if chip.fp32:
        raise ValueError("arch: pass the quantized chip; its FP32 counterpart is derived")
    if isinstance(dataset, Graph):
        g = dataset
    elif isinstance(dataset, str):
        from qgnn.model.datasets import load_dataset

        g = graph_from_data(load_dataset(dataset, root=data_root, split=split, seed=seed))
    else:
        g = graph_from_data(dataset)
    from qgnn.model.nn.models import QuantGNN

    model_name = (model.name if hasattr(model, "name") and isinstance(model.name, str)
                  else type(model).__name__ if isinstance(model, QuantGNN) else str(model).lower())
    if engine not in AGG_ENGINES:
        raise ValueError(f"engine: invalid value {engine!r}; allowed: {', '.join(AGG_ENGINES)}")
    from .workload import _model_from

    net = _model_from(model, g.num_features, g.num_classes, precision, hidden, layers)
    shapes = model_layers(net, g.num_features, g.num_classes, precision, hidden, layers)
    nodes = layer_buckets(precision, shapes, g.in_degree)
    if nodes and engine == "uniform":
        raise ValueError("engine: 'uniform' cannot run a precision with node buckets (per-node "
                         "widths need the mixed-width engine); use 'auto' or 'mixed'")
    mixed_engine = engine == "mixed" or (engine == "auto" and bool(nodes))
    et = energy_table()
    _, run = _choose_orders(shapes, precision, g, chip, et, fp32=False, nodes=nodes,
                            mixed_engine=mixed_engine)
    fp_arch = chip.fp32_counterpart()
    _, frun = _choose_orders(shapes, precision, g, fp_arch, et, fp32=True)
    max_terms = int(g.in_degree.max(initial=0)) + 1
    agg_bits = [p.bits["mode"] for p in run.phases if p.engine == "aggregation"]
    area = area_breakdown(chip, min(agg_bits) if agg_bits else min(chip.aggregation.bits),
                          max_terms)
    fp_area = area_breakdown(fp_arch, 32, max_terms)
    workload = {
        "num_nodes": g.num_nodes, "num_edges": g.num_edges, "num_features": g.num_features,
        "num_classes": g.num_classes, "max_in_degree": int(g.in_degree.max(initial=0)),
        "layers": [{"index": s.index, "kind": s.kind, "in": s.k, "out": s.m} for s in shapes],
    }
    mixed = (_mixed_section(net, g, precision, shapes, nodes, run) if mixed_engine else None)
    return SimReport(dataset=g.name, model=model_name, precision=precision, graph=g, run=run,
                     fp32=frun, area=area, fp32_area=fp_area, workload=workload, mixed=mixed)


#: Aggregation engines of :func:`simulate` (``engine``).
AGG_ENGINES = ("auto", "uniform", "mixed")


def feature_bits(net: Any, g: Graph) -> float:
    """``avg_feature_bits`` of a built model on graph ``g``
    (:func:`model.quant.node_precision.avg_feature_bits`: the mean stored width, bits, of
    every per-node activation tensor over all nodes; its node buckets are bound to ``g``'s
    degrees, in-degree + self-loop)."""
    import types

    import numpy as np
    import torch
    from qgnn.model.quant.node_precision import avg_feature_bits, bind_graph

    deg = torch.from_numpy(np.asarray(g.in_degree, dtype=np.int64) + 1)
    bind_graph(net, types.SimpleNamespace(num_nodes=g.num_nodes, deg_hat=deg))
    return float(avg_feature_bits(net, g.num_nodes))


def _mixed_section(net: Any, g: Graph, precision: PrecisionConfig, shapes: list[Any],
                   nodes: dict[int, Any], run: RunResult) -> dict[str, Any]:
    """The report's ``mixed`` entry: engine, avg_feature_bits, buckets per layer and the
    per-bucket figures of every mixed phase."""
    from .engines import MIXED_OVERLAP_DRAIN, MIXED_R_BITS

    deg = g.in_degree + 1
    layers = []
    for s in shapes:
        if s.index not in nodes:
            continue
        nb, widths = nodes[s.index]
        rows = []
        for k, cnt in enumerate(nb.counts().tolist()):
            sel = nb.bucket == k
            rows.append({"bucket": k, "nodes": int(cnt),
                         "bits": {r: int(w[k]) for r, w in widths.items()},
                         "min_degree": int(deg[sel].min()) if cnt else None,
                         "max_degree": int(deg[sel].max()) if cnt else None})
        layers.append({"layer": s.index, "by": nb.by, "thresholds": list(nb.thresholds),
                       "roles": sorted(widths), "buckets": rows})
    phases = [{"phase": p.name, "kind": p.kind, "tiling": p.mode, "cycles": p.cycles,
               "dram_bytes": p.dram_bytes, "buckets": p.info["buckets"]}
              for p in run.phases if "buckets" in p.info]
    return {"aggregation_engine": "mixed", "overlap_drain": MIXED_OVERLAP_DRAIN,
            "r_bits": MIXED_R_BITS, "avg_feature_bits": feature_bits(net, g),
            "layers": layers, "phases": phases}
