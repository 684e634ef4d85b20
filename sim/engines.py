"""Cycle and activity model of one phase on one engine.

Aggregation (docs/aggregation-engine.md): row ``i`` runs on element ``i mod P``; each row costs
``W * max(n_i, 1)`` cycles (one word column at a time, one term per cycle); a pass over a set of
rows costs ``T_fill(L) + max_p (work of element p)``. With the whole source feature matrix on
chip and no DRAM traffic this is exactly the timing contract (:func:`sim.timing.aggregation_cycles`).
When the source rows do not fit the feature buffer the engine picks the tiling that moves the
fewest DRAM bytes (ties: fewest cycles) among:

- ``column``: passes over groups of word columns; every pass holds those columns of all
  source rows; indices and row descriptors are re-read per pass;
- ``source``: the source rows are cut into tiles that fit half the feature buffer, destination
  rows into blocks whose partial sums fit half the accumulator buffer; every non-empty
  (block, tile) pair is a pass that loads its tile (the refetch);
- ``gather``: no tiling; every term fetches its source row from DRAM, rounded up to whole
  bursts (staged per element; partial sums of long rows stay in the element).

Combination: an R x C output-stationary array; a tile of R rows and C output channels takes
``max(ceil(K / rate), ceil(R * C / requant_units))`` cycles (MACs, or draining the outputs
through the requantizers), plus an ``R + C`` fill per pass. Weights are tiled over output
columns (input rows re-read per tile) or over the reduction dimension (partial sums kept in
the accumulator buffer or spilled), whichever moves fewer bytes.

Sparse input (the dataset's X as CSR, ``[combination] sparse_input``): a row-wise product on
the same array. A tile of R rows walks the sorted union ``U_t`` of its rows' column indices,
``rate`` columns per cycle; each column's weight row enters on the dense dataflow's column
wires and is shared by the R rows, and each row supplies its own value there (zero where it
has none: that element's MAC is gated). A tile takes ``max(ceil(|U_t| / rate),
ceil(R * C / requant_units))`` cycles per column tile (``per-row`` weights, a what-if:
``ceil(max_i nnz_i / rate)``, the slowest row). X moves as values + 32-bit column indices +
row pointers; plans (weights fit, m-tiled, k-tiled, row-blocked) are chosen by cycles, then
bytes.

DRAM and compute overlap through :func:`sim.timing.pipeline` (double buffering).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from qgnn.model.integer import rules

from .config import FP32_BITS, ArchConfig
from .energy import EnergyTable
from .timing import T_fill, pe_finish, pe_kinds, pe_loads, pipeline
from .workload import SPARSE_DENSITY, AggPhase, GemmPhase, Graph, InputPattern, TileStats

__all__ = ["MIXED_OVERLAP_DRAIN", "MIXED_R_BITS", "PhaseResult", "SimulationError",
           "mixed_agg_bytes", "simulate_agg", "simulate_gemm"]

try:  # requantizations outside the aggregation datapath (integer model)
    from qgnn.model.integer.fixed import REQUANT_MULT_BITS
except ImportError:  # pragma: no cover
    REQUANT_MULT_BITS = 24
#: Extra fractional bits of the integer model's multi-term requantizations.
FRAC_BITS = 8
#: Largest (block x tile x element) table the source tiling builds (entries).
MAX_SOURCE_TABLE = 4_000_000

DRAM_TENSORS = ("input_features", "features", "weights", "activations", "outputs",
                "partial_sums", "indices", "row_pointers", "requant_params", "side_inputs")


class SimulationError(ValueError):
    """The workload cannot run on the chip (a buffer too small for the smallest tile...)."""


def ceil_div(a: int, b: int) -> int:
    return -(-int(a) // int(b))


@dataclass
class PhaseResult:
    """Cycles, DRAM bytes and energy of one phase.

    Cycles: ``cycles = compute + imbalance + dram_stall``; ``compute`` is the balanced work
    (mean over elements, fills included), ``imbalance`` the extra cycles of the busiest element,
    ``dram_stall`` the cycles the engine waits for DRAM. ``exposed`` is what the phase adds to
    the run after overlap with a concurrent phase (set by the scheduler).
    """

    layer: int
    name: str
    kind: str
    engine: str
    bits: dict[str, int]
    mode: str
    passes: int
    compute: float
    imbalance: float
    dram_stall: float
    dram: dict[str, float]
    compulsory_bytes: float
    energy: dict[str, float]
    ops: float
    peak_ops_per_cycle: float
    info: dict[str, Any] = field(default_factory=dict)
    exposed: float = 0.0

    @property
    def cycles(self) -> float:
        return self.compute + self.imbalance + self.dram_stall

    @property
    def dram_bytes(self) -> float:
        return float(sum(self.dram.values()))

    @property
    def energy_pj(self) -> float:
        return float(sum(self.energy.values()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "phase": self.name, "kind": self.kind, "engine": self.engine,
            "bits": dict(self.bits), "tiling": self.mode, "passes": self.passes,
            "cycles": self.cycles, "compute": self.compute, "imbalance": self.imbalance,
            "dram_stall": self.dram_stall, "exposed_cycles": self.exposed,
            "dram_bytes": self.dram_bytes, "dram_bytes_by_tensor": dict(self.dram),
            "compulsory_dram_bytes": self.compulsory_bytes,
            "energy_pj": self.energy_pj, "energy_breakdown": dict(self.energy),
            "ops": self.ops, "peak_ops_per_cycle": self.peak_ops_per_cycle,
            **{k: v for k, v in self.info.items()},
        }


def _zero_bytes() -> dict[str, float]:
    return dict.fromkeys(DRAM_TENSORS, 0.0)


def _sram(et: EnergyTable, arch: ArchConfig, buf: str, accesses: float, width: float) -> float:
    """Energy (pJ) of ``accesses`` accesses of ``width`` bits to buffer ``buf``."""
    if accesses <= 0:
        return 0.0
    return float(accesses) * et.sram_access(arch.buffers[buf].bank_kib, width)


@dataclass
class _Plan:
    mode: str
    compute: np.ndarray
    balanced: np.ndarray
    prefetch: np.ndarray
    stream: np.ndarray
    dram: dict[str, float]
    refetch: float
    extra: dict[str, float] = field(default_factory=dict)

    def cycles(self, arch: ArchConfig) -> float:
        return pipeline(self.compute, self.prefetch, self.stream, arch.bytes_per_cycle,
                        arch.dram_latency_cycles, arch.double_buffering)

    @property
    def total_bytes(self) -> float:
        return float(sum(self.dram.values()))


# ============================================================================ aggregation


def simulate_agg(ph: AggPhase, g: Graph, arch: ArchConfig, et: EnergyTable, *,
                 input_src: str = "dram", output_dst: str = "dram",
                 side_onchip: bool = False, tiling: str | None = None,
                 overlap_drain: bool | None = None) -> PhaseResult:
    """Simulate one aggregation phase (on the mixed-width engine when ``ph.buckets`` is set).

    Args:
        input_src: ``"dram"`` or ``"feature"`` (source rows already in the feature buffer).
        output_dst: ``"dram"``, ``"feature"`` (kept for the next aggregation) or ``"stream"``
            (rows go straight to the next combination).
        side_onchip: the per-row side operand is already on chip.
        tiling: force a tiling (``whole``/``column``/``source``/``gather``), for tests.
        overlap_drain: mixed engine only: its drain form (None: :data:`MIXED_OVERLAP_DRAIN`).
    """
    if ph.buckets is not None and ph.in_bits != FP32_BITS:
        return _simulate_agg_mixed(ph, g, arch, et, input_src=input_src, output_dst=output_dst,
                                   side_onchip=side_onchip, tiling=tiling,
                                   overlap_drain=MIXED_OVERLAP_DRAIN if overlap_drain is None
                                   else overlap_drain)
    a = arch.aggregation
    fp32 = ph.in_bits == FP32_BITS
    mode_in = arch.agg_mode_bits(ph.in_bits)
    mode_out = arch.agg_mode_bits(ph.out_bits)
    ww = a.word_width
    lanes = ww // mode_in
    lanes_out = ww // mode_out
    F = ph.features
    W = ceil_div(F, lanes)
    W_out = ceil_div(F, lanes_out)
    wb = ww // 8
    N = g.num_nodes
    P = a.pes
    n = g.row_lengths(ph.self_loops)
    E = int(n.sum())
    max_terms = int(n.max(initial=0))
    acc = FP32_BITS if fp32 else rules.acc_width(mode_in, max_terms)

    key = ("loads", ph.self_loops, P)
    if key not in g._cache:
        g._cache[key] = (pe_loads(n, 1, P), *pe_kinds(n, P))
    loads, has_rows, has_terms = g._cache[key]
    l_mean = float(loads.sum()) / P
    tfill = float(T_fill(a.sram_latency))

    def finish(words: float) -> float:
        """Busiest element's finish time (the contract) for ``words`` words per row."""
        if float(words).is_integer():
            return float(pe_finish(loads, has_rows, has_terms, int(words), a.sram_latency).max())
        return tfill + words * float(loads.max(initial=0))

    def balanced_of(words: float, busy: float) -> float:
        return min(busy, tfill + words * l_mean)

    idx_b = a.index_bits / 8
    ptr_b = a.pointer_bits / 8
    rq_b = 4 if fp32 else ceil_div(a.mult_bits + 6, 8)  # FP32 scale, or M and a 6-bit shift
    params = N * rq_b if (not fp32 or ph.node_factor) else 0
    pointers = (N + 1) * ptr_b
    feat_bytes = float(N * W * wb)
    out_bytes = float(N * W_out * wb) if output_dst == "dram" else 0.0
    side_bytes = 0.0 if side_onchip else float(N * ceil_div(ph.side_values * ph.side_bits, 8))
    idx_bytes = float(E * idx_b)
    # Rows whose indices do not fit the index buffer re-read them from DRAM per word column.
    idx_cap = arch.usable_bytes("index")
    big_terms = float(n[n * idx_b > idx_cap].sum()) if E else 0.0
    resident = input_src == "feature"

    def base_bytes(passes: int, idx_words: float) -> dict[str, float]:
        d = _zero_bytes()
        d["indices"] = idx_bytes * passes + big_terms * idx_b * idx_words
        d["row_pointers"] = pointers * passes
        d["requant_params"] = float(params)
        d["outputs"] = out_bytes
        d["side_inputs"] = side_bytes
        return d

    plans: list[_Plan] = []
    fits_whole = resident or feat_bytes <= arch.buffers["feature"].bytes
    if tiling in (None, "whole") and fits_whole:
        d = base_bytes(1, max(W - 1, 0))
        d["features"] = 0.0 if resident else feat_bytes
        stream = d["indices"] + pointers + params + out_bytes + side_bytes
        busy = finish(W)
        plans.append(_Plan("whole", np.array([busy]), np.array([balanced_of(W, busy)]),
                           np.array([d["features"]]), np.array([stream]), d, 0.0))
    elif tiling == "whole":
        raise SimulationError(f"{ph.name}: {feat_bytes:.0f} B of source rows do not fit the "
                              f"{arch.buffers['feature'].bytes} B feature buffer")
    if not plans:
        cap = arch.usable_bytes("feature")
        # -- column tiling
        if tiling in (None, "column") and N * wb <= cap:
            wt = min(W, cap // (N * wb))
            nt = ceil_div(W, wt)
            wk = np.full(nt, wt, dtype=np.float64)
            wk[-1] = W - wt * (nt - 1)
            d = base_bytes(nt, max(W - nt, 0))
            d["features"] = feat_bytes
            stream_k = (idx_bytes + pointers + params / nt + (out_bytes + side_bytes) * wk / W
                        + big_terms * idx_b * (wk - 1))
            busy_k = np.array([finish(w_) for w_ in wk])
            bal_k = np.array([balanced_of(w_, b_) for w_, b_ in zip(wk, busy_k, strict=True)])
            plans.append(_Plan(f"column x{nt}", busy_k, bal_k,
                               N * wk * wb, stream_k, d, refetch=d["indices"] + d["row_pointers"]
                               - idx_bytes - pointers - big_terms * idx_b * max(W - 1, 0)))
        # -- source tiling
        if tiling in (None, "source"):
            p = _source_plan(ph, g, arch, n, W, W_out, wb, lanes, acc, tfill, idx_b, ptr_b,
                             params, out_bytes, side_bytes, big_terms)
            if p is not None:
                plans.append(p)
        # -- gather
        if tiling in (None, "gather"):
            burst = arch.dram.burst_bytes
            per_term = ceil_div(W * wb, burst) * burst
            d = base_bytes(1, max(W - 1, 0))
            d["features"] = float(E * per_term)
            stream = sum(d.values())
            busy = finish(W)
            plans.append(_Plan("gather", np.array([busy]),
                               np.array([balanced_of(W, busy)]), np.array([0.0]),
                               np.array([stream]), d,
                               refetch=max(0.0, E * per_term - feat_bytes)))
    if not plans:
        raise SimulationError(f"{ph.name}: tiling {tiling!r} is not possible on this chip")
    plan = min(plans, key=lambda q: (q.total_bytes, q.cycles(arch)))

    total = plan.cycles(arch)
    busy = float(plan.compute.sum())
    balanced = float(plan.balanced.sum())
    npass = int(plan.compute.size)

    # ---------------------------------------------------------------- activity and energy
    en: dict[str, float] = {}
    fills = plan.dram["features"] / wb
    en["sram.feature"] = (_sram(et, arch, "feature", E * W, ww)
                          + _sram(et, arch, "feature", fills, ww))
    idx_fill = plan.dram["indices"] / idx_b
    desc_acc = N * npass
    en["sram.index"] = (_sram(et, arch, "index", W * E + idx_fill, a.index_bits)
                        + _sram(et, arch, "index", 2 * desc_acc, a.pointer_bits + 8 * rq_b))
    psum = plan.extra.get("psum_accesses", 0.0)
    en["sram.accumulator"] = _sram(et, arch, "accumulator", psum, ww)
    # Output words: written into the next phase's buffer (stream: the combination's input
    # buffer; feature: kept for the next aggregation) or staged and read out to DRAM.
    out_buf = {"stream": "input", "feature": "feature"}.get(output_dst, "output")
    staged = N * W_out * (2 if output_dst == "dram" else 1)
    en[f"sram.{out_buf}"] = en.get(f"sram.{out_buf}", 0.0) + _sram(et, arch, out_buf, staged, ww)
    en["sram.output"] = en.get("sram.output", 0.0) + _sram(et, arch, "output",
                                                           2 * side_bytes / wb, ww)
    lane_adds = float(E) * W * lanes
    en["aggregation.add"] = lane_adds * (et.fp32_add() if fp32 else et.int_add(acc))
    values = float(N) * F
    engine_rq = float(N) * W_out * lanes_out
    rq_first = et.requant(acc, a.mult_bits, fp32)
    rq_more = et.requant(mode_out + FRAC_BITS, REQUANT_MULT_BITS, fp32)
    rq_pre = et.requant(mode_in + FRAC_BITS, REQUANT_MULT_BITS, fp32)
    en["requantization"] = (engine_rq * rq_first + max(ph.post_requants - 1, 0) * values * rq_more
                            + ph.pre_requants * values * rq_pre)
    en["dram"] = plan.total_bytes * 8 * arch.dram.pj_per_bit

    compulsory = plan.total_bytes - plan.refetch
    return PhaseResult(
        layer=ph.layer, name=ph.name, kind="aggregate", engine="aggregation",
        bits={"in": ph.in_bits, "out": ph.out_bits, "mode": mode_in, "acc": acc},
        mode=plan.mode, passes=npass,
        compute=balanced, imbalance=busy - balanced, dram_stall=max(0.0, total - busy),
        dram=plan.dram, compulsory_bytes=compulsory, energy=en,
        ops=float(E) * F, peak_ops_per_cycle=float(P * lanes),
        info={"features": F, "words_per_row": W, "out_words_per_row": W_out, "lanes": lanes,
              "terms": E, "max_terms": max_terms, "pes": P,
              "contract_cycles": int(finish(W)),
              "lane_utilization": (float(E) * F) / (float(E) * W * lanes) if E else 0.0,
              "input": input_src, "output": output_dst},
    )


def _source_plan(ph: AggPhase, g: Graph, arch: ArchConfig, n: np.ndarray, W: int, W_out: int,
                 wb: int, lanes: int, acc: int, tfill: float, idx_b: float, ptr_b: float,
                 params: float, out_bytes: float, side_bytes: float,
                 big_terms: float) -> _Plan | None:
    """Source-tile x destination-block passes (vectorised over edges), or None."""
    N = g.num_nodes
    P = arch.aggregation.pes
    S = arch.usable_bytes("feature") // (W * wb)
    row_psum_bytes = ceil_div(ph.features * acc, 8)  # padding lanes need no partial sums
    D = arch.usable_bytes("accumulator") // row_psum_bytes
    if S < 1 or D < 1:
        return None
    n_s = ceil_div(N, S)
    n_d = ceil_div(N, D)
    if n_s * n_d * P > MAX_SOURCE_TABLE:
        return None
    ck = ("source", ph.self_loops, S, D, P)
    if ck not in g._cache:
        nb = n_d * n_s
        dst, src = g.dst, g.src
        pair = (dst // D) * n_s + src // S
        key = pair * P + dst % P
        work = np.bincount(key, minlength=nb * P).astype(np.int64)
        terms = np.bincount(pair, minlength=nb).astype(np.int64)
        if ph.self_loops:
            i = np.arange(N, dtype=np.int64)
            lp = (i // D) * n_s + i // S
            work += np.bincount(lp * P + i % P, minlength=nb * P)
            terms += np.bincount(lp, minlength=nb)
        work = work.reshape(nb, P)
        # Degree-0 rows cost one cycle per word: put them in their block's first pass.
        zero = np.flatnonzero(n == 0)
        nonempty = terms > 0
        first_s = np.full(n_d, -1, dtype=np.int64)
        ne = np.flatnonzero(nonempty)
        if ne.size:
            dblk = ne // n_s
            # first non-empty tile per block: ne is sorted, take the first of each block.
            starts = np.flatnonzero(np.r_[True, dblk[1:] != dblk[:-1]])
            first_s[dblk[starts]] = ne[starts] % n_s
        zd = zero // D
        zs = np.where(first_s[zd] >= 0, first_s[zd], 0)
        zadd = np.bincount((zd * n_s + zs) * P + zero % P, minlength=nb * P).reshape(nb, P)
        work = work + zadd
        active = np.flatnonzero(terms + zadd.sum(axis=1) > 0)
        g._cache[ck] = (work[active], terms[active], active, nonempty[active])
    work, terms, active, loads_tile = g._cache[ck]
    d_blk = active // n_s
    s_blk = active % n_s
    rows_s = np.minimum(S, N - s_blk * S).astype(np.float64)
    rows_d = np.minimum(D, N - d_blk * D).astype(np.float64)
    compute = tfill + W * work.max(axis=1).astype(np.float64)
    balanced = tfill + W * work.sum(axis=1).astype(np.float64) / P
    prefetch = np.where(loads_tile, rows_s * W * wb, 0.0)
    last_of_block = np.r_[d_blk[1:] != d_blk[:-1], True]
    frac_out = np.where(last_of_block, rows_d / N, 0.0)
    stream = (terms * idx_b + (rows_d + 1) * ptr_b + frac_out * (params + out_bytes + side_bytes)
              + big_terms * idx_b * max(W - 1, 0) * terms / max(1, terms.sum()))
    d = _zero_bytes()
    d["features"] = float(prefetch.sum())
    d["indices"] = float(terms.sum() * idx_b + big_terms * idx_b * max(W - 1, 0))
    d["row_pointers"] = float(((rows_d + 1) * ptr_b).sum())
    d["requant_params"] = float(params)
    d["outputs"] = out_bytes
    d["side_inputs"] = side_bytes
    refetch = max(0.0, d["features"] - N * W * wb) + max(0.0, d["row_pointers"] - (N + 1) * ptr_b)
    # Partial sums: read and write once per (row segment, pass); bounded by rows per pass.
    seg = float(np.minimum(rows_d, terms).sum())
    psum_acc = 2 * seg * ceil_div(ph.features * acc, arch.aggregation.word_width)
    return _Plan(f"source {n_d}x{n_s}", compute, balanced, prefetch, stream, d, refetch,
                 {"psum_accesses": psum_acc})


# ============================================================================ combination


def _tiles_cycles(arch: ArchConfig, n: int, k: int, m: int, rate: float) -> tuple[float, int]:
    """Cycles of the R x C tiles covering an ``n x m`` output with reduction ``k``."""
    c = arch.combination
    n_r = ceil_div(n, c.rows)
    full, rest = divmod(m, c.cols)
    cols = [c.cols] * full + ([rest] if rest else [])
    k_cyc = math.ceil(k / rate)
    t = sum(max(k_cyc, ceil_div(c.rows * cj, c.requant_units)) for cj in cols)
    return float(n_r * t), len(cols)


def simulate_gemm(ph: GemmPhase, arch: ArchConfig, et: EnergyTable, *,
                  input_src: str = "dram", output_dst: str = "dram",
                  root_onchip: bool = False, tiling: str | None = None,
                  weights_onchip: bool = False) -> PhaseResult:
    """Simulate one combination phase (per node bucket when ``ph.buckets`` is set).

    The input is combined as CSR (:func:`_simulate_sparse_gemm`) when the phase carries the
    dataset's sparsity pattern (``ph.input``), reads it from DRAM, and
    ``arch.combination.sparse_input`` is ``sparse``, or ``auto`` with a density of at most
    :data:`SPARSE_DENSITY` and no more cycles than the dense product; otherwise it is dense.

    Args:
        input_src: ``"dram"``, ``"stream"`` (rows arrive from a concurrent aggregation) or
            ``"chain"`` (rows come from the previous combination on chip).
        output_dst: ``"dram"``, ``"feature"`` (kept on chip for the next aggregation) or
            ``"chain"``.
        root_onchip: the root-term rows are in the feature buffer.
        tiling: force ``fit``/``m``/``k`` (both), ``mk`` (dense) or ``row`` (sparse) (tests).
        weights_onchip: the whole weight matrix is already in the weight buffer (a previous
            bucket's pass left it there): a plan that keeps it loads nothing.
    """
    if ph.buckets is not None and FP32_BITS not in (ph.act_bits, ph.weight_bits):
        return _simulate_gemm_buckets(ph, arch, et, input_src=input_src,
                                      output_dst=output_dst, root_onchip=root_onchip,
                                      tiling=tiling)
    mode = arch.combination.sparse_input
    pat = ph.input if (input_src == "dram" and ph.root_k == 0) else None
    if pat is None or mode == "dense":
        return _mark_dense(_simulate_dense_gemm(ph, arch, et, input_src=input_src,
                                                output_dst=output_dst,
                                                root_onchip=root_onchip, tiling=tiling,
                                                weights_onchip=weights_onchip), pat)
    if mode == "sparse":
        sp = _simulate_sparse_gemm(ph, pat, arch, et, output_dst=output_dst, tiling=tiling,
                                   weights_onchip=weights_onchip)
        if sp is None:
            raise SimulationError(
                f"{ph.name}: combination.sparse_input = 'sparse', but no sparse tiling fits "
                f"the {arch.buffers['weight'].bytes} B weight buffer; use 'auto' or 'dense'")
        return sp
    dn = _mark_dense(_simulate_dense_gemm(ph, arch, et, input_src=input_src,
                                          output_dst=output_dst, root_onchip=root_onchip,
                                          tiling=tiling if tiling != "row" else None,
                                          weights_onchip=weights_onchip), pat)
    if pat.density > SPARSE_DENSITY:
        return dn
    sp = _simulate_sparse_gemm(ph, pat, arch, et, output_dst=output_dst,
                               tiling=tiling if tiling != "mk" else None,
                               weights_onchip=weights_onchip)
    if sp is not None and sp.cycles <= dn.cycles:
        sp.info["dense_cycles"] = dn.cycles
        return sp
    dn.info["sparse_cycles"] = sp.cycles if sp is not None else None
    return dn


def _mark_dense(r: PhaseResult, pat: InputPattern | None) -> PhaseResult:
    r.info["input_format"] = "dense"
    if pat is not None:
        r.info["input_density"] = pat.density
    return r


def _simulate_dense_gemm(ph: GemmPhase, arch: ArchConfig, et: EnergyTable, *,
                         input_src: str, output_dst: str, root_onchip: bool,
                         tiling: str | None, weights_onchip: bool = False) -> PhaseResult:
    """The dense combination (every input value streamed and multiplied)."""
    c = arch.combination
    fp32 = FP32_BITS in (ph.act_bits, ph.weight_bits)
    rate = arch.macs_per_pe(ph.act_bits, ph.weight_bits)
    ab = FP32_BITS if fp32 else arch.comb_mode_bits(ph.act_bits)
    wbits = FP32_BITS if fp32 else arch.comb_mode_bits(ph.weight_bits)
    ob = ph.out_bits
    N, K, M = ph.n, ph.k, ph.m
    k_stream = K - ph.root_k
    x_bytes = float(N * ceil_div(k_stream * ph.act_bits, 8))
    root_bytes = 0.0 if root_onchip else float(N * ceil_div(ph.root_k * ph.root_bits, 8))
    w_bytes = float(ceil_div(K * M * ph.weight_bits, 8))
    out_bytes = float(N * ceil_div(M * ob, 8)) if output_dst == "dram" else 0.0
    acc_bits = FP32_BITS if fp32 else 2 * max(ab, wbits) + math.ceil(math.log2(max(K, 2))) + 1
    psum_bytes = float(N * ceil_div(M * acc_bits, 8))
    from_dram = input_src == "dram"
    fill = float(c.rows + c.cols)

    def bytes_dict(x_reads: float, x_spill: float, w: float, psum: float) -> dict[str, float]:
        d = _zero_bytes()
        d["input_features" if ph.layer == 0 and from_dram else "activations"] = x_reads + x_spill
        d["weights"] = w
        d["partial_sums"] = psum
        d["outputs"] = out_bytes
        d["side_inputs"] = root_bytes
        return d

    plans: list[_Plan] = []
    full_w = arch.buffers["weight"].bytes
    usable_w = arch.usable_bytes("weight")
    if tiling in (None, "fit") and w_bytes <= full_w:
        cyc_fit, _ = _tiles_cycles(arch, N, K, M, rate)
        xr = x_bytes if from_dram else 0.0
        w_fit = 0.0 if weights_onchip else w_bytes
        d = bytes_dict(xr, 0.0, w_fit, 0.0)
        plans.append(_Plan("weights fit", np.array([cyc_fit + fill]), np.array([cyc_fit + fill]),
                           np.array([w_fit]), np.array([xr + root_bytes + out_bytes]), d, 0.0))
    if not plans or tiling in ("m", "k"):
        col_bytes = ceil_div(K * ph.weight_bits, 8)
        mt = usable_w // col_bytes
        if tiling in (None, "m") and mt >= 1:
            n_m = ceil_div(M, mt)
            m_list = [mt] * (n_m - 1) + [M - mt * (n_m - 1)]
            cyc_m = np.array([_tiles_cycles(arch, N, K, m_, rate)[0] + fill for m_ in m_list])
            pre_m = np.array([float(ceil_div(K * m_ * ph.weight_bits, 8)) for m_ in m_list])
            # Input rows are re-read per weight tile; rows that arrive as a stream are spilled
            # to DRAM during the first tile and re-read by the others.
            x_pass = np.full(n_m, x_bytes if (from_dram or n_m > 1) else 0.0)
            stream_m = x_pass + root_bytes + out_bytes * np.array(m_list, dtype=np.float64) / M
            x_total = float(x_pass.sum())
            d = bytes_dict(x_total, 0.0, float(pre_m.sum()), 0.0)
            d["side_inputs"] = root_bytes * n_m
            refetch = x_total - (x_bytes if from_dram else 0.0) + root_bytes * (n_m - 1)
            plans.append(_Plan(f"m-tiled x{n_m}", cyc_m, cyc_m, pre_m, stream_m, d, refetch))
        row_bytes = ceil_div(M * ph.weight_bits, 8)
        kt = usable_w // row_bytes
        if tiling in (None, "k") and kt >= 1:
            n_k = ceil_div(K, kt)
            k_list = [kt] * (n_k - 1) + [K - kt * (n_k - 1)]
            cyc_k = np.array([_tiles_cycles(arch, N, k_, M, rate)[0] + fill for k_ in k_list])
            pre_k = np.array([float(ceil_div(k_ * M * ph.weight_bits, 8)) for k_ in k_list])
            frac = np.array(k_list, dtype=np.float64) / K
            x_read = x_bytes if from_dram else 0.0
            spill = 0.0 if from_dram or n_k == 1 else x_bytes * 2  # buffer a stream once
            psum = 0.0
            if n_k > 1 and psum_bytes > arch.buffers["accumulator"].bytes:
                psum = 2 * (n_k - 1) * psum_bytes
            stream_kt = ((x_read + spill) * frac + root_bytes * frac + psum / n_k
                         + np.r_[np.zeros(n_k - 1), out_bytes])
            d = bytes_dict(x_read, spill, float(pre_k.sum()), psum)
            plans.append(_Plan(f"k-tiled x{n_k}", cyc_k, cyc_k, pre_k, stream_kt, d,
                               refetch=spill + psum,
                               extra={"psum_onchip": float(n_k > 1 and psum == 0.0)}))
            # Row-blocked: blocks of rows whose partial sums fit the accumulator buffer run
            # through every weight slice; weights are re-read per block, partial sums stay.
            nb_rows = (arch.buffers["accumulator"].bytes // ceil_div(M * acc_bits, 8)
                       // c.rows * c.rows)
            if n_k > 1 and nb_rows >= c.rows and psum > 0:
                n_b = ceil_div(N, nb_rows)
                rows_b = np.full(n_b, nb_rows, dtype=np.int64)
                rows_b[-1] = N - nb_rows * (n_b - 1)
                cyc_b = np.array([[_tiles_cycles(arch, int(r_), k_, M, rate)[0] + fill
                                   for k_ in k_list] for r_ in rows_b]).ravel()
                pre_b = np.tile(pre_k, n_b)
                rfrac = np.repeat(rows_b / N, n_k) * np.tile(frac, n_b)
                last = np.tile(np.r_[np.zeros(n_k - 1), 1.0], n_b) * np.repeat(rows_b / N, n_k)
                stream_b = (x_read + spill + root_bytes) * rfrac + out_bytes * last
                d = bytes_dict(x_read, spill, float(pre_b.sum()), 0.0)
                plans.append(_Plan(f"row-blocked {n_b}x{n_k}", cyc_b, cyc_b, pre_b, stream_b,
                                   d, refetch=spill + float(pre_b.sum()) - w_bytes,
                                   extra={"psum_onchip": 1.0}))
    if not plans and tiling in (None, "mk"):
        # Neither a whole weight column nor a whole row fits: tiles of C columns x Kt rows;
        # input rows re-read per column tile, partial sums per column tile as in k-tiling.
        mt = min(M, c.cols)
        kt = usable_w // ceil_div(mt * ph.weight_bits, 8)
        if kt >= 1:
            n_m, n_k = ceil_div(M, mt), ceil_div(K, kt)
            mj = np.array([mt] * (n_m - 1) + [M - mt * (n_m - 1)], dtype=np.float64)
            kj = np.array([kt] * (n_k - 1) + [K - kt * (n_k - 1)], dtype=np.float64)
            cyc_mk = np.array([_tiles_cycles(arch, N, int(k_), int(m_), rate)[0] + fill
                               for m_ in mj for k_ in kj])
            pre_mk = np.array([float(ceil_div(int(k_) * int(m_) * ph.weight_bits, 8))
                               for m_ in mj for k_ in kj])
            x_total = x_bytes * n_m if (from_dram or n_m * n_k > 1) else 0.0
            psum_tile = float(N * ceil_div(mt * acc_bits, 8))
            psum = (2 * (n_k - 1) * psum_tile * n_m
                    if psum_tile > arch.buffers["accumulator"].bytes else 0.0)
            share = np.outer(mj / M, kj / K).ravel()
            stream_mk = (x_total / n_m * np.repeat(np.ones(n_m), n_k) * np.tile(kj / K, n_m)
                         + root_bytes * share * n_m + psum * share + out_bytes * share)
            d = bytes_dict(x_total, 0.0, float(pre_mk.sum()), psum)
            d["side_inputs"] = root_bytes * n_m
            plans.append(_Plan(f"mk-tiled {n_m}x{n_k}", cyc_mk, cyc_mk, pre_mk, stream_mk, d,
                               refetch=x_total - (x_bytes if from_dram else 0.0) + psum
                               + root_bytes * (n_m - 1),
                               extra={"psum_onchip": float(n_k > 1 and psum == 0.0)}))
    if not plans:
        raise SimulationError(
            f"{ph.name}: the {full_w} B weight buffer cannot hold one weight row or column "
            f"({ceil_div(K * ph.weight_bits, 8)} / {ceil_div(M * ph.weight_bits, 8)} B)")
    plan = min(plans, key=lambda q: (q.total_bytes, q.cycles(arch)))
    total = plan.cycles(arch)
    busy = float(plan.compute.sum())
    npass = int(plan.compute.size)

    # ---------------------------------------------------------------- activity and energy
    macs = float(N) * K * M
    n_rt = ceil_div(N, c.rows)
    n_ct = ceil_div(M, c.cols)
    en: dict[str, float] = {}
    en["combination.mac"] = macs * et.mac(ab, wbits, K)
    x_bits_read = float(N) * k_stream * ab * n_ct
    root_bits_read = float(N) * ph.root_k * (ph.root_bits or ab) * n_ct
    fills_in = (plan.dram["input_features"] + plan.dram["activations"]
                + (plan.dram["side_inputs"] if not root_onchip else 0.0)) / 8
    en["sram.input"] = (_sram(et, arch, "input", x_bits_read / 64 + fills_in, 64)
                        + (0.0 if root_onchip else _sram(et, arch, "input", root_bits_read / 64, 64)))
    if root_onchip:
        en["sram.feature"] = _sram(et, arch, "feature", root_bits_read / 64, 64)
    en["sram.weight"] = (_sram(et, arch, "weight", float(K) * M * wbits * n_rt / 64, 64)
                         + _sram(et, arch, "weight", plan.dram["weights"] / 8, 64))
    out_acc = float(N) * M * ob / 64 * (2 if output_dst == "dram" else 1)
    dst_buf = {"feature": "feature", "chain": "input"}.get(output_dst, "output")
    en[f"sram.{dst_buf}"] = en.get(f"sram.{dst_buf}", 0.0) + _sram(et, arch, dst_buf, out_acc, 64)
    if plan.extra.get("psum_onchip"):
        n_k_eff = npass if plan.mode.startswith("k-tiled") else npass // ceil_div(N, max(
            1, arch.buffers["accumulator"].bytes // ceil_div(M * acc_bits, 8) // c.rows * c.rows))
        en["sram.accumulator"] = _sram(et, arch, "accumulator",
                                       2 * max(n_k_eff - 1, 0) * psum_bytes / 8, 64)
    values = float(N) * M
    rq_first = et.requant(acc_bits, REQUANT_MULT_BITS, fp32)
    rq_more = et.requant(ob + FRAC_BITS, REQUANT_MULT_BITS, fp32)
    en["requantization"] = values * (rq_first + max(ph.post_requants - 1, 0) * rq_more)
    en["dram"] = plan.total_bytes * 8 * arch.dram.pj_per_bit

    peak = float(c.rows * c.cols * rate)
    return PhaseResult(
        layer=ph.layer, name=ph.name, kind="combine", engine="combination",
        bits={"act": ph.act_bits, "weight": ph.weight_bits, "out": ph.out_bits,
              "acc": acc_bits},
        mode=plan.mode, passes=npass, compute=busy, imbalance=0.0,
        dram_stall=max(0.0, total - busy), dram=plan.dram,
        compulsory_bytes=plan.total_bytes - plan.refetch, energy=en,
        ops=macs, peak_ops_per_cycle=peak,
        info={"n": N, "k": K, "m": M, "macs_per_pe": rate,
              "array_utilization": macs / (busy * peak) if busy else 0.0,
              "input": input_src, "output": output_dst},
    )


# ---------------------------------------------------------------------- sparse combination


def _sparse_tile_cycles(arch: ArchConfig, work: np.ndarray, nnz: np.ndarray, m: int,
                        rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Cycles of each row tile over the column tiles covering ``m`` outputs: ``(busy,
    balanced)``, float ``[tiles]``.

    ``work`` is the reduction steps of a tile (union columns, or the longest row for per-row
    weights); busy = ``sum_j max(ceil(work / rate), ceil(R * c_j / requant_units))``. Balanced
    replaces ``work`` by the tile's non-zeros spread evenly over its R rows,
    ``nnz / R``: the difference is the rows' idle slots (the load imbalance)."""
    c = arch.combination
    full, rest = divmod(m, c.cols)
    cols = [c.cols] * full + ([rest] if rest else [])
    mac = np.ceil(work.astype(np.float64) / rate)
    even = np.ceil(nnz.astype(np.float64) / (c.rows * rate))
    busy = np.zeros(work.shape, dtype=np.float64)
    bal = np.zeros(work.shape, dtype=np.float64)
    for cj in cols:
        drain = float(ceil_div(c.rows * cj, c.requant_units))
        busy += np.maximum(mac, drain)
        bal += np.maximum(even, drain)
    return busy, bal


def _simulate_sparse_gemm(ph: GemmPhase, pat: InputPattern, arch: ArchConfig,
                          et: EnergyTable, *, output_dst: str,
                          tiling: str | None, weights_onchip: bool = False
                          ) -> PhaseResult | None:
    """The combination of a sparse input read from DRAM as CSR (see the module docstring).

    DRAM: X's values (``act_bits`` each, packed), ``index_bits`` column indices and
    ``pointer_bits`` row pointers. Plans: ``weights fit`` (W in the weight buffer: X's CSR
    streamed once); ``m-tiled`` (weight-column tiles; the CSR re-read per tile); ``k-tiled``
    (weight-row tiles; X stored as one CSR per column block, so values and indices move once
    and row pointers once per block; partial sums spilled when the accumulator buffer is too
    small); ``row-blocked`` (row blocks whose partial sums fit, weights re-read per block).
    The plan with the fewest cycles wins (ties: fewest bytes). Returns None when no plan
    fits.
    """
    c = arch.combination
    R = c.rows
    per_row = c.sparse_weights == "per-row"
    fp32 = FP32_BITS in (ph.act_bits, ph.weight_bits)
    rate = arch.macs_per_pe(ph.act_bits, ph.weight_bits)
    ab = FP32_BITS if fp32 else arch.comb_mode_bits(ph.act_bits)
    wbits = FP32_BITS if fp32 else arch.comb_mode_bits(ph.weight_bits)
    ob = ph.out_bits
    N, K, M = ph.n, ph.k, ph.m
    nnz = pat.nnz
    ibits, pbits = arch.aggregation.index_bits, arch.aggregation.pointer_bits
    val_bytes = float(ceil_div(nnz * ph.act_bits, 8))
    idx_bytes = float(nnz * ibits / 8)
    ptr_bytes = float((N + 1) * pbits / 8)
    csr_bytes = val_bytes + idx_bytes + ptr_bytes
    w_bytes = float(ceil_div(K * M * ph.weight_bits, 8))
    out_bytes = float(N * ceil_div(M * ob, 8)) if output_dst == "dram" else 0.0
    acc_bits = FP32_BITS if fp32 else 2 * max(ab, wbits) + math.ceil(math.log2(max(K, 2))) + 1
    psum_bytes = float(N * ceil_div(M * acc_bits, 8))
    fill = float(c.rows + c.cols)
    full_w = arch.buffers["weight"].bytes
    usable_w = arch.usable_bytes("weight")
    acc_buf = arch.buffers["accumulator"].bytes

    def work_of(st: TileStats) -> np.ndarray:
        return st.row_max if per_row else st.union

    def bytes_dict(vals: float, idx: float, ptr: float, w: float, psum: float) -> dict[str, float]:
        d = _zero_bytes()
        d["input_features"] = vals
        d["indices"] = idx
        d["row_pointers"] = ptr
        d["weights"] = w
        d["partial_sums"] = psum
        d["outputs"] = out_bytes
        return d

    plans: list[_Plan] = []
    st1 = pat.tile_stats(R)
    if tiling in (None, "fit") and w_bytes <= full_w:
        busy, bal = _sparse_tile_cycles(arch, work_of(st1)[:, 0], st1.nnz[:, 0], M, rate)
        w_fit = 0.0 if weights_onchip else w_bytes
        d = bytes_dict(val_bytes, idx_bytes, ptr_bytes, w_fit, 0.0)
        plans.append(_Plan("weights fit", np.array([busy.sum() + fill]),
                           np.array([bal.sum() + fill]), np.array([w_fit]),
                           np.array([csr_bytes + out_bytes]), d, 0.0,
                           {"col_passes": float(ceil_div(M, c.cols))}))
    if not plans or tiling in ("m", "k", "row"):
        col_bytes = ceil_div(K * ph.weight_bits, 8)
        mt = usable_w // col_bytes
        if tiling in (None, "m") and mt >= 1:
            n_m = ceil_div(M, mt)
            m_list = [mt] * (n_m - 1) + [M - mt * (n_m - 1)]
            cyc = [_sparse_tile_cycles(arch, work_of(st1)[:, 0], st1.nnz[:, 0], m_, rate)
                   for m_ in m_list]
            pre = np.array([float(ceil_div(K * m_ * ph.weight_bits, 8)) for m_ in m_list])
            stream = csr_bytes + out_bytes * np.array(m_list, dtype=np.float64) / M
            d = bytes_dict(val_bytes * n_m, idx_bytes * n_m, ptr_bytes * n_m, float(pre.sum()),
                           0.0)
            plans.append(_Plan(f"m-tiled x{n_m}", np.array([b.sum() + fill for b, _ in cyc]),
                               np.array([q.sum() + fill for _, q in cyc]), pre, stream, d,
                               refetch=csr_bytes * (n_m - 1),
                               extra={"col_passes": float(sum(ceil_div(m_, c.cols)
                                                              for m_ in m_list))}))
        row_bytes = ceil_div(M * ph.weight_bits, 8)
        kt = usable_w // row_bytes
        if tiling in (None, "k", "row") and kt >= 1 and ceil_div(K, kt) > 1:
            n_k = ceil_div(K, kt)
            stk = pat.tile_stats(R, kt)
            k_list = [kt] * (n_k - 1) + [K - kt * (n_k - 1)]
            pre_k = np.array([float(ceil_div(k_ * M * ph.weight_bits, 8)) for k_ in k_list])
            busy_k, bal_k = _sparse_tile_cycles(arch, work_of(stk), stk.nnz, M, rate)
            share = stk.nnz.sum(axis=0) / max(nnz, 1)  # non-zeros per column block
            psum = 2 * (n_k - 1) * psum_bytes if psum_bytes > acc_buf else 0.0
            if tiling in (None, "k"):
                stream = ((val_bytes + idx_bytes) * share + ptr_bytes + psum / n_k
                          + np.r_[np.zeros(n_k - 1), out_bytes])
                d = bytes_dict(val_bytes, idx_bytes, ptr_bytes * n_k, float(pre_k.sum()), psum)
                plans.append(_Plan(f"k-tiled x{n_k}", busy_k.sum(axis=0) + fill,
                                   bal_k.sum(axis=0) + fill, pre_k, stream, d,
                                   refetch=psum + ptr_bytes * (n_k - 1),
                                   extra={"col_passes": float(ceil_div(M, c.cols)),
                                          "n_k": float(n_k),
                                          "psum_onchip": float(psum == 0.0)}))
            nb_rows = acc_buf // ceil_div(M * acc_bits, 8) // R * R
            if tiling in (None, "row") and nb_rows >= R and psum > 0:
                per_blk = nb_rows // R
                n_t = busy_k.shape[0]
                n_b = ceil_div(n_t, per_blk)
                pad = n_b * per_blk - n_t

                def by_block(a: np.ndarray) -> np.ndarray:
                    a = np.concatenate([a, np.zeros((pad, n_k))]) if pad else a
                    return a.reshape(n_b, per_blk, n_k).sum(axis=1)

                busy_b = (by_block(busy_k) + fill).ravel()
                bal_b = (by_block(bal_k) + fill).ravel()
                nnz_b = by_block(stk.nnz.astype(np.float64)).ravel() / max(nnz, 1)
                rows_b = np.minimum(nb_rows, N - nb_rows * np.arange(n_b)).astype(np.float64)
                ptr_b = np.repeat((rows_b + 1) * pbits / 8, n_k)
                pre_b = np.tile(pre_k, n_b)
                last = np.tile(np.r_[np.zeros(n_k - 1), 1.0], n_b) * np.repeat(rows_b / N, n_k)
                stream = (val_bytes + idx_bytes) * nnz_b + ptr_b + out_bytes * last
                d = bytes_dict(val_bytes, idx_bytes, float(ptr_b.sum()), float(pre_b.sum()), 0.0)
                plans.append(_Plan(f"row-blocked {n_b}x{n_k}", busy_b, bal_b, pre_b, stream, d,
                                   refetch=float(pre_b.sum()) - w_bytes
                                   + float(ptr_b.sum()) - ptr_bytes,
                                   extra={"col_passes": float(ceil_div(M, c.cols)),
                                          "n_k": float(n_k), "psum_onchip": 1.0}))
    if not plans:
        return None

    # ---------------------------------------------------------------- activity and energy
    macs = float(nnz) * M
    weight_rows = float(st1.nnz.sum() if per_row else st1.union.sum())
    merge = 0 if (per_row or R == 1) else math.ceil(math.log2(R))
    out_acc = float(N) * M * ob / 64 * (2 if output_dst == "dram" else 1)
    dst_buf = {"feature": "feature", "chain": "input"}.get(output_dst, "output")
    values = float(N) * M
    rq_first = et.requant(acc_bits, REQUANT_MULT_BITS, fp32)
    rq_more = et.requant(ob + FRAC_BITS, REQUANT_MULT_BITS, fp32)

    def energy(plan: _Plan) -> dict[str, float]:
        col_passes = plan.extra["col_passes"]
        en: dict[str, float] = {}
        en["combination.mac"] = macs * et.mac(ab, wbits, K)  # idle (zero) slots are gated
        en["combination.index"] = float(nnz) * merge * col_passes * et.index_compare(ibits)
        fills_in = (plan.dram["input_features"] + plan.dram["indices"]
                    + plan.dram["row_pointers"]) / 8
        csr_reads = col_passes * (float(nnz) * (ab + ibits) + (N + 1) * pbits) / 64
        en["sram.input"] = _sram(et, arch, "input", csr_reads + fills_in, 64)
        en["sram.weight"] = (_sram(et, arch, "weight", weight_rows * M * wbits / 64, 64)
                             + _sram(et, arch, "weight", plan.dram["weights"] / 8, 64))
        en[f"sram.{dst_buf}"] = (en.get(f"sram.{dst_buf}", 0.0)
                                 + _sram(et, arch, dst_buf, out_acc, 64))
        if plan.extra.get("psum_onchip"):
            en["sram.accumulator"] = _sram(et, arch, "accumulator",
                                           2 * (plan.extra["n_k"] - 1) * psum_bytes / 8, 64)
        en["requantization"] = values * (rq_first + max(ph.post_requants - 1, 0) * rq_more)
        en["dram"] = plan.total_bytes * 8 * arch.dram.pj_per_bit
        return en

    # Fewest cycles, then fewest bytes (the rule of the dataflow choice). Not the dense
    # plans' bytes-first rule: the byte-minimal sparse plan can be several times slower
    # (weight-column tiles narrower than the array). A minimum of cycle counts that each
    # never grow with bandwidth never grows with bandwidth either.
    plan = min(plans, key=lambda q: (q.cycles(arch), q.total_bytes))
    total = float(plan.cycles(arch))
    en = energy(plan)
    busy_total = float(plan.compute.sum())
    balanced = float(plan.balanced.sum())
    npass = int(plan.compute.size)

    peak = float(c.rows * c.cols * rate)
    return PhaseResult(
        layer=ph.layer, name=ph.name, kind="combine", engine="combination",
        bits={"act": ph.act_bits, "weight": ph.weight_bits, "out": ph.out_bits,
              "acc": acc_bits},
        mode=f"csr {plan.mode}", passes=npass, compute=balanced,
        imbalance=busy_total - balanced, dram_stall=max(0.0, total - busy_total), dram=plan.dram,
        compulsory_bytes=plan.total_bytes - plan.refetch, energy=en,
        ops=macs, peak_ops_per_cycle=peak,
        info={"n": N, "k": K, "m": M, "macs_per_pe": rate,
              "array_utilization": macs / (busy_total * peak) if busy_total else 0.0,
              "input": "dram", "output": output_dst, "input_format": "csr",
              "input_nnz": nnz, "input_density": pat.density,
              "union_columns": int(st1.union.sum()), "weight_rows_read": weight_rows,
              "sparse_weights": c.sparse_weights},
    )


# ====================================================================== mixed-width aggregation

#: The mixed engine's drain (``hw/mixed_params.py`` ``MixedParams.overlap_drain``, default True):
#: a row's output words are requantized from a hold bank while the next row accumulates.
MIXED_OVERLAP_DRAIN = True
#: Width of the bucket weights ``R[k]`` (bits; ``MixedParams.r_bits`` default): every input lane
#: is multiplied by its bucket's weight before the add (``docs/aggregation-engine.md``).
MIXED_R_BITS = 8


def _bucket_bits(k: int) -> int:
    return max(1, (int(k) - 1).bit_length())


def mixed_row_words(ph: AggPhase, arch: ArchConfig, features: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-node words of a mixed-engine aggregation at ``features`` features (default all):
    ``(src_words [N_src], out_words [N], src_mode [N_src], out_mode [N])``; a row of
    ``b``-bit codes (mode width of the chip) is ``ceil(F / (word_width // b))`` words."""
    assert ph.buckets is not None
    ww = arch.aggregation.word_width
    f = ph.features if features is None else int(features)
    ob = ph.out_buckets or ph.buckets
    k_in, k_out = ph.buckets.num_buckets, ob.num_buckets
    in_w = ph.in_widths or (ph.in_bits,) * k_in
    out_w = ph.out_widths or (ph.out_bits,) * k_out
    if len(in_w) != k_in or len(out_w) != k_out:
        raise SimulationError(f"{ph.name}: {len(in_w)} input / {len(out_w)} output widths for "
                              f"{k_in} / {k_out} buckets")
    m_in = np.array([arch.agg_mode_bits(b) for b in in_w], dtype=np.int64)
    m_out = np.array([arch.agg_mode_bits(b) for b in out_w], dtype=np.int64)
    w_in = -(-f // (ww // m_in))
    w_out = -(-f // (ww // m_out))
    return (w_in[ph.buckets.bucket], w_out[ob.bucket], m_in[ph.buckets.bucket],
            m_out[ob.bucket])


def mixed_agg_bytes(ph: AggPhase, arch: ArchConfig) -> tuple[int, int]:
    """``(source rows, output rows)`` bytes of a mixed-engine aggregation (each row at its
    bucket's width)."""
    src, out, _, _ = mixed_row_words(ph, arch)
    wb = arch.aggregation.word_width // 8
    return int(src.sum()) * wb, int(out.sum()) * wb


def _row_in_words(g: Graph, self_loops: bool, src_words: np.ndarray) -> np.ndarray:
    """``I_i = sum_{j in N(i)} W_k(j)`` (int64 ``[N]``), self-loops included when asked."""
    N = g.num_nodes
    if g.num_edges:
        i = np.bincount(g.dst, weights=src_words[g.src], minlength=N)
        i = np.rint(i).astype(np.int64)
    else:
        i = np.zeros(N, dtype=np.int64)
    if self_loops:
        i = i + src_words[:N]
    return i


def _simulate_agg_mixed(ph: AggPhase, g: Graph, arch: ArchConfig, et: EnergyTable, *,
                        input_src: str, output_dst: str, side_onchip: bool,
                        tiling: str | None, overlap_drain: bool) -> PhaseResult:
    """An aggregation on the mixed-width engine (timing: ``qgnn.core.timing.mixed_*``)."""
    from qgnn.model.golden.mixed_stage import weighted_acc_width

    from qgnn.core.timing import mixed_pe_finish_cycles, mixed_pe_slots

    assert ph.buckets is not None
    a = arch.aggregation
    ww = a.word_width
    wb = ww // 8
    N = g.num_nodes
    P = a.pes
    L = a.sram_latency
    F = ph.features
    ob = ph.out_buckets or ph.buckets
    src_w, out_w, src_m, out_m = mixed_row_words(ph, arch)
    n = g.row_lengths(ph.self_loops)
    E = int(n.sum())
    max_terms = int(n.max(initial=0))
    w_max = ((1 << MIXED_R_BITS) - 1) * ((1 << int(src_m.max(initial=2))) - 1)
    acc = weighted_acc_width(max_terms, w_max)
    # terms per source row (the row is streamed once per term)
    cnt_src = (np.bincount(g.src, minlength=src_w.size).astype(np.int64) if g.num_edges
               else np.zeros(src_w.size, dtype=np.int64))
    if ph.self_loops:
        cnt_src[:N] += 1
    tfill = float(T_fill(L))

    def timing(f: int) -> tuple[float, float, np.ndarray, np.ndarray]:
        """(busy, balanced, I, O) of one pass over ``f`` features."""
        sw, owd, _, _ = mixed_row_words(ph, arch, f)
        i_w = _row_in_words(g, ph.self_loops, sw)
        fin = mixed_pe_finish_cycles(cast(Any, i_w), cast(Any, owd), P, L, overlap_drain)
        slots = mixed_pe_slots(cast(Any, i_w), cast(Any, owd), P, overlap_drain, L)
        busy = float(max(fin))
        return busy, min(busy, tfill + float(sum(slots)) / P), i_w, owd

    idx_b = a.index_bits / 8
    ptr_b = a.pointer_bits / 8
    # descriptor: M (mult_bits), shift (6), the row's output bucket and its output word offset
    # (pointer_bits wide: rows of several widths need their word address)
    rq_b = ceil_div(a.mult_bits + 6 + _bucket_bits(ob.num_buckets) + a.pointer_bits, 8)
    params = float(N * rq_b)
    pointers = (N + 1) * ptr_b
    feat_bytes = float(src_w.sum() * wb)
    out_total = float(out_w.sum() * wb)
    out_bytes = out_total if output_dst == "dram" else 0.0
    side_bytes = 0.0 if side_onchip else float(N * ceil_div(ph.side_values * ph.side_bits, 8))
    idx_bytes = float(E * idx_b)
    resident = input_src == "feature"

    def base_bytes(passes: int) -> dict[str, float]:
        d = _zero_bytes()
        d["indices"] = idx_bytes * passes
        d["row_pointers"] = pointers * passes
        d["requant_params"] = params
        d["outputs"] = out_bytes
        d["side_inputs"] = side_bytes
        return d

    plans: list[_Plan] = []
    fits_whole = resident or feat_bytes <= arch.buffers["feature"].bytes
    busy_w, bal_w, i_all, o_all = timing(F)
    if tiling in (None, "whole") and fits_whole:
        d = base_bytes(1)
        d["features"] = 0.0 if resident else feat_bytes
        stream = d["indices"] + pointers + params + out_bytes + side_bytes
        plans.append(_Plan("whole", np.array([busy_w]), np.array([bal_w]),
                           np.array([d["features"]]), np.array([stream]), d, 0.0))
    elif tiling == "whole":
        raise SimulationError(f"{ph.name}: {feat_bytes:.0f} B of source rows do not fit the "
                              f"{arch.buffers['feature'].bytes} B feature buffer")
    if not plans:
        cap = arch.usable_bytes("feature")
        # -- column tiling: passes over groups of features, a multiple of every bucket's lanes
        lanes_all = [ww // int(m) for m in np.unique(np.concatenate([src_m, out_m]))]
        step = math.lcm(*lanes_all) if lanes_all else 1
        bits_per_feature = float(src_m.sum())
        ft = int(cap * 8 // bits_per_feature) // step * step if bits_per_feature else F
        if tiling in (None, "column") and ft >= step:
            ft = min(ft, F)
            nt = ceil_div(F, ft)
            fk = [ft] * (nt - 1) + [F - ft * (nt - 1)]
            tk = [timing(f_) for f_ in fk]
            pre = np.array([float(mixed_row_words(ph, arch, f_)[0].sum() * wb) for f_ in fk])
            outs = np.array([float(t[3].sum() * wb) for t in tk])
            d = base_bytes(nt)
            d["features"] = float(pre.sum())
            stream_k = (idx_bytes + pointers + params / nt + side_bytes * np.array(fk) / F
                        + (outs if output_dst == "dram" else 0.0))
            plans.append(_Plan(f"column x{nt}", np.array([t[0] for t in tk]),
                               np.array([t[1] for t in tk]), pre, stream_k, d,
                               refetch=(idx_bytes + pointers) * (nt - 1)))
        # -- gather: every term fetches its source row, rounded up to whole bursts
        if tiling in (None, "gather"):
            burst = arch.dram.burst_bytes
            per_src = -(-(src_w * wb) // burst) * burst
            d = base_bytes(1)
            d["features"] = float((cnt_src * per_src).sum())
            plans.append(_Plan("gather", np.array([busy_w]), np.array([bal_w]),
                               np.array([0.0]), np.array([sum(d.values())]), d,
                               refetch=max(0.0, d["features"] - feat_bytes)))
    if not plans:
        raise SimulationError(f"{ph.name}: tiling {tiling!r} is not possible on this chip "
                              "(mixed-width engine: whole, column or gather)")
    plan = min(plans, key=lambda q: (q.total_bytes, q.cycles(arch)))
    total = plan.cycles(arch)
    busy = float(plan.compute.sum())
    balanced = float(plan.balanced.sum())
    npass = int(plan.compute.size)

    # ---------------------------------------------------------------- activity and energy
    src_lanes = ww // src_m
    out_lanes = ww // out_m
    words_in = float((cnt_src * src_w).sum())          # = sum_i I_i
    lane_ops = float((cnt_src * src_w * src_lanes).sum())  # lanes summed (padding included)
    en: dict[str, float] = {}
    fills = plan.dram["features"] / wb
    en["sram.feature"] = (_sram(et, arch, "feature", words_in, ww)
                          + _sram(et, arch, "feature", fills, ww))
    idx_fill = plan.dram["indices"] / idx_b
    en["sram.index"] = (_sram(et, arch, "index", E * npass + idx_fill, a.index_bits)
                        + _sram(et, arch, "index", 2 * N * npass, a.pointer_bits + 8 * rq_b))
    en["sram.accumulator"] = 0.0
    out_buf = {"stream": "input", "feature": "feature"}.get(output_dst, "output")
    out_words = float(out_w.sum())
    staged = out_words * (2 if output_dst == "dram" else 1)
    en[f"sram.{out_buf}"] = en.get(f"sram.{out_buf}", 0.0) + _sram(et, arch, out_buf, staged, ww)
    en["sram.output"] = en.get("sram.output", 0.0) + _sram(et, arch, "output",
                                                           2 * side_bytes / wb, ww)
    en["aggregation.add"] = lane_ops * et.int_add(acc)
    # every lane's code times its bucket's weight R[k] (an in_bits x r_bits multiply)
    mult = np.array([et.int_mult(int(m), MIXED_R_BITS) for m in src_m.tolist()]) if src_m.size \
        else np.zeros(0)
    en["aggregation.weight"] = float((cnt_src * src_w * src_lanes * mult).sum())
    engine_rq = float((out_w * out_lanes).sum())
    rq_first = et.requant(acc, a.mult_bits, False)
    rq_more = np.array([et.requant(int(m) + FRAC_BITS, REQUANT_MULT_BITS, False)
                        for m in out_m.tolist()])
    rq_pre = np.array([et.requant(int(m) + FRAC_BITS, REQUANT_MULT_BITS, False)
                       for m in src_m[:N].tolist()])
    en["requantization"] = (engine_rq * rq_first
                            + max(ph.post_requants - 1, 0) * F * float(rq_more.sum())
                            + ph.pre_requants * F * float(rq_pre.sum()))
    en["dram"] = plan.total_bytes * 8 * arch.dram.pj_per_bit

    buckets = []
    kb = ph.buckets.bucket
    for k in range(ph.buckets.num_buckets):
        sel = kb == k
        buckets.append({
            "bucket": k, "nodes": int(sel.sum()),
            "in_bits": int((ph.in_widths or (ph.in_bits,) * ph.buckets.num_buckets)[k]),
            "words_per_row": int(src_w[sel][0]) if sel.any() else 0,
            "feature_bytes": float(src_w[sel].sum() * wb),
            "terms_from": int(cnt_src[sel].sum()),
            "input_words": float((cnt_src * src_w)[sel].sum()),
        })
    for k in range(ob.num_buckets):
        sel = ob.bucket == k
        if k < len(buckets):
            row = buckets[k]
        else:
            row = {"bucket": k}
            buckets.append(row)
        row["out_nodes"] = int(sel.sum())
        row["out_bits"] = int((ph.out_widths or (ph.out_bits,) * ob.num_buckets)[k])
        row["output_bytes"] = float(out_w[sel].sum() * wb)
    compulsory = plan.total_bytes - plan.refetch
    peak = float(E) * F * P / words_in if words_in else float(P * ww // int(src_m.min(initial=2)))
    return PhaseResult(
        layer=ph.layer, name=ph.name, kind="aggregate", engine="aggregation",
        bits={"in": ph.in_bits, "out": ph.out_bits, "mode": int(src_m.min(initial=ph.in_bits)),
              "acc": acc},
        mode=plan.mode, passes=npass,
        compute=balanced, imbalance=busy - balanced, dram_stall=max(0.0, total - busy),
        dram=plan.dram, compulsory_bytes=compulsory, energy=en,
        ops=float(E) * F, peak_ops_per_cycle=peak,
        info={"aggregation_engine": "mixed", "overlap_drain": overlap_drain, "features": F,
              "terms": E, "max_terms": max_terms, "pes": P,
              "input_words": int(i_all.sum()), "output_words": int(o_all.sum()),
              "contract_cycles": int(busy_w),
              "lane_utilization": float(E) * F / lane_ops if lane_ops else 0.0,
              "buckets": buckets, "input": input_src, "output": output_dst},
    )


# ====================================================================== per-bucket combination


def _simulate_gemm_buckets(ph: GemmPhase, arch: ArchConfig, et: EnergyTable, *,
                           input_src: str, output_dst: str, root_onchip: bool,
                           tiling: str | None) -> PhaseResult:
    """A combination whose rows have per-bucket widths: one pass per bucket.

    The Bit Fusion array runs one activation mode at a time (the weight stream of a tile is
    shared by its R rows), so the rows of bucket ``k`` form their own row tiles at that
    bucket's activation width (``act_widths[k]``) and output width (``out_widths[k]``); a
    pass is the ordinary combination (dense or CSR, every plan) of those ``N_k`` rows. When a
    pass keeps the whole weight matrix in the weight buffer, the next passes find it there.
    Cycles, bytes and energy are the sums over the passes."""
    from dataclasses import replace

    nb = ph.buckets
    assert nb is not None
    K = nb.num_buckets
    act_w = ph.act_widths or (ph.act_bits,) * K
    out_w = ph.out_widths or (ph.out_bits,) * K
    if len(act_w) != K or len(out_w) != K:
        raise SimulationError(f"{ph.name}: {len(act_w)} / {len(out_w)} widths for {K} buckets")
    counts = nb.counts()
    subs: list[tuple[int, PhaseResult]] = []
    resident = False
    for k in range(K):
        nk = int(counts[k])
        if nk == 0:
            continue
        pat = None
        if ph.input is not None:
            pat = ph.input if K == 1 else ph.input.select_rows(np.flatnonzero(nb.bucket == k))
        sub = replace(ph, n=nk, act_bits=int(act_w[k]), out_bits=int(out_w[k]), input=pat,
                      buckets=None, act_widths=None, out_widths=None)
        r = simulate_gemm(sub, arch, et, input_src=input_src, output_dst=output_dst,
                          root_onchip=root_onchip, tiling=tiling, weights_onchip=resident)
        resident = resident or r.mode.endswith("weights fit")
        subs.append((k, r))
    if not subs:  # no rows at all
        sub = replace(ph, buckets=None, act_widths=None, out_widths=None)
        return simulate_gemm(sub, arch, et, input_src=input_src, output_dst=output_dst,
                             root_onchip=root_onchip, tiling=tiling)
    if len(subs) == 1 and K == 1:
        return subs[0][1]
    dram = _zero_bytes()
    energy: dict[str, float] = {}
    for _, r in subs:
        for key, v in r.dram.items():
            dram[key] += v
        for key, v in r.energy.items():
            energy[key] = energy.get(key, 0.0) + v
    ops = math.fsum(r.ops for _, r in subs)
    slots = math.fsum(r.ops / r.peak_ops_per_cycle for _, r in subs if r.peak_ops_per_cycle)
    busy = math.fsum(r.compute + r.imbalance for _, r in subs)
    first = subs[0][1]
    # the weights are compulsory once: later passes that load them again re-fetch
    w_bytes = float(ceil_div(ph.k * ph.m * ph.weight_bits, 8))
    compulsory = math.fsum(r.compulsory_bytes for _, r in subs) - math.fsum(
        min(r.dram["weights"], w_bytes) for _, r in subs[1:])
    info = {key: v for key, v in first.info.items()
            if key in ("k", "m", "input", "output", "input_format", "input_density",
                       "sparse_weights")}
    info.update({
        "n": ph.n, "per_bucket_passes": True,
        "array_utilization": ops / (busy * (ops / slots)) if busy and slots else 0.0,
        "buckets": [{"bucket": k, "nodes": r.info.get("n"), "act_bits": r.bits["act"],
                     "out_bits": r.bits["out"], "macs_per_pe": r.info.get("macs_per_pe"),
                     "tiling": r.mode, "cycles": r.cycles, "dram_bytes": r.dram_bytes,
                     "energy_pj": r.energy_pj} for k, r in subs],
    })
    if any("input_nnz" in r.info for _, r in subs):
        info["input_nnz"] = int(sum(r.info.get("input_nnz", 0) for _, r in subs))
        info["union_columns"] = int(sum(r.info.get("union_columns", 0) for _, r in subs))
    return PhaseResult(
        layer=ph.layer, name=ph.name, kind="combine", engine="combination",
        bits={"act": max(r.bits["act"] for _, r in subs), "weight": ph.weight_bits,
              "out": max(r.bits["out"] for _, r in subs),
              "acc": max(r.bits["acc"] for _, r in subs)},
        mode=" | ".join(f"INT{r.bits['act']}: {r.mode}" for _, r in subs),
        passes=sum(r.passes for _, r in subs),
        compute=math.fsum(r.compute for _, r in subs),
        imbalance=math.fsum(r.imbalance for _, r in subs),
        dram_stall=math.fsum(r.dram_stall for _, r in subs), dram=dram,
        compulsory_bytes=compulsory,
        energy=energy, ops=ops, peak_ops_per_cycle=ops / slots if slots else 0.0, info=info)
