"""Sparse input features: the CSR row-wise product of the first combination.

The hand case (``hand_pattern``): X is 4 x 8 with rows {0, 3}, {3, 5, 7}, {}, {1}
(6 non-zeros). On a 2 x 2 array (R = C = 2) the row tiles are rows 0-1 and rows 2-3:

- tile 0: union {0, 3, 5, 7} = 4 columns, 5 non-zeros, longest row 3;
- tile 1: union {1} = 1 column, 1 non-zero, longest row 1.

With M = 3 outputs there are two column tiles (2 and 1 channels); 4 requantizers drain a
2 x 2 (or 2 x 1) output tile in 1 cycle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from qgnn.sim import simulate
from qgnn.sim.config import ArchConfigError
from qgnn.sim.energy import energy_table
from qgnn.sim.engines import SimulationError, simulate_gemm
from qgnn.sim.stage import ideal_memory
from qgnn.sim.workload import (
    SPARSE_DENSITY,
    GemmPhase,
    InputPattern,
    graph_from_arrays,
)
from simtest_helpers import arch_with

ET = energy_table()


def hand_pattern() -> InputPattern:
    return InputPattern.from_csr(4, 8, [0, 2, 5, 5, 6], [0, 3, 3, 5, 7, 1])


def hand_gemm(bits: int = 8, pattern: InputPattern | None = None) -> GemmPhase:
    return GemmPhase(layer=0, name="gemm", n=4, k=8, m=3, act_bits=bits, weight_bits=bits,
                     out_bits=bits, post_requants=1, input=pattern or hand_pattern())


def hand_chip(mode: str = "sparse", weights: str = "broadcast", **kw):
    base = {"combination__rows": 2, "combination__cols": 2, "combination__requant_units": 4,
            "combination__sparse_input": mode, "combination__sparse_weights": weights,
            "dram__bandwidth_gbps": 8.0, "dram__latency_ns": 3.0}
    base.update(kw)
    return arch_with(**base)


def random_pattern(seed: int, n: int, k: int, density: float) -> InputPattern:
    rng = np.random.default_rng(seed)
    return InputPattern.from_dense(rng.random((n, k)) < density)


# ----------------------------------------------------------------------------- pattern


def test_tile_stats_hand() -> None:
    st1 = hand_pattern().tile_stats(2)
    assert st1.union[:, 0].tolist() == [4, 1]
    assert st1.nnz[:, 0].tolist() == [5, 1]
    assert st1.row_max[:, 0].tolist() == [3, 1]
    # column blocks of 4: tile 0 has {0, 3} | {5, 7}; tile 1 has {1} | {}
    stk = hand_pattern().tile_stats(2, 4)
    assert stk.union.tolist() == [[2, 2], [1, 0]]
    assert stk.nnz.tolist() == [[3, 2], [1, 0]]
    assert stk.row_max.tolist() == [[2, 2], [1, 0]]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), k=st.integers(1, 40),
       density=st.floats(0.0, 0.6), rows=st.integers(1, 9), kt=st.integers(1, 45))
def test_tile_stats_match_brute_force(seed, n, k, density, rows, kt) -> None:
    rng = np.random.default_rng(seed)
    x = rng.random((n, k)) < density
    p = InputPattern.from_dense(x)
    assert p.nnz == int(x.sum()) and p.density == pytest.approx(x.mean())
    s = p.tile_stats(rows, kt)
    for t in range(math.ceil(n / rows)):
        block = x[t * rows:(t + 1) * rows]
        for b in range(math.ceil(k / kt)):
            part = block[:, b * kt:(b + 1) * kt]
            assert s.union[t, b] == int(part.any(axis=0).sum())
            assert s.nnz[t, b] == int(part.sum())
            assert s.row_max[t, b] == int(part.sum(axis=1).max(initial=0))


def test_tile_stats_unique_path_equals_bitmap_path(monkeypatch) -> None:
    import qgnn.sim.workload as wl

    x = np.random.default_rng(5).random((97, 61)) < 0.07
    ref = InputPattern.from_dense(x).tile_stats(8, 10)
    monkeypatch.setattr(wl, "MAX_UNION_BITMAP", 0)
    alt = InputPattern.from_dense(x).tile_stats(8, 10)
    assert np.array_equal(ref.union, alt.union) and np.array_equal(ref.nnz, alt.nnz)


def test_pattern_validation() -> None:
    with pytest.raises(ValueError, match="sorted"):
        InputPattern.from_csr(1, 4, [0, 2], [3, 1])
    with pytest.raises(ValueError, match="outside"):
        InputPattern.from_csr(1, 4, [0, 1], [4])
    with pytest.raises(ValueError, match="indptr"):
        InputPattern.from_csr(2, 4, [0, 1], [0])


# ----------------------------------------------------------------------------- hand cases


def test_sparse_broadcast_hand_cycles_bytes_energy() -> None:
    a = hand_chip()
    r = simulate_gemm(hand_gemm(), ideal_memory(a), ET)
    assert r.mode == "csr weights fit" and r.info["input_format"] == "csr"
    # INT8: 1 MAC per element per cycle. Tile 0 walks 4 union columns, tile 1 one column, per
    # column tile (2 of them), each at least the 1-cycle drain; fill R + C = 4.
    assert r.cycles == 2 * 4 + 2 * 1 + 4
    # balanced: 5 and 1 non-zeros spread over 2 rows -> 3 and 1 cycles per column tile
    assert r.compute == 2 * 3 + 2 * 1 + 4
    assert r.imbalance == 2
    assert r.ops == 6 * 3  # only the stored non-zeros are multiplied
    d = r.dram
    assert d["input_features"] == 6         # 6 INT8 values
    assert d["indices"] == 6 * 4            # 32-bit column indices
    assert d["row_pointers"] == 5 * 4       # N + 1 row pointers
    assert d["weights"] == 8 * 3
    assert d["outputs"] == 4 * 3
    # with DRAM: 8 B/cycle, 3 cycles latency: 3 + 24/8 + max(14, (6 + 24 + 20 + 12) / 8)
    rd = simulate_gemm(hand_gemm(), a, ET)
    assert rd.cycles == pytest.approx(3 + 3 + 14)
    # energy: 18 MACs of an 8x8 multiply (0.2 pJ) and a 20-bit add (8+8+3+1), gated idle slots
    e = rd.energy
    assert e["combination.mac"] == pytest.approx(18 * (0.2 + 0.03 + 12 * 0.07 / 24))
    # merge: ceil(log2 2) = 1 compare of 32 bits (0.1 pJ) per non-zero per column tile
    assert e["combination.index"] == pytest.approx(6 * 1 * 2 * 0.1)
    wbank = a.buffers["weight"].bank_kib
    # weight rows read: 4 + 1 union columns x 3 outputs x 8 bits; plus 24 bytes filled
    assert e["sram.weight"] == pytest.approx((5 * 3 * 8 / 64 + 24 / 8)
                                             * ET.sram_access(wbank, 64))
    ibank = a.buffers["input"].bank_kib
    # CSR read once per column tile (values 8 + index 32 bits, 5 x 32-bit pointers) + fills
    csr_reads = 2 * (6 * (8 + 32) + 5 * 32) / 64
    assert e["sram.input"] == pytest.approx((csr_reads + 50 / 8) * ET.sram_access(ibank, 64))
    assert e["dram"] == pytest.approx(rd.dram_bytes * 8 * a.dram.pj_per_bit)


def test_sparse_per_row_hand() -> None:
    a = ideal_memory(hand_chip(weights="per-row"))
    r = simulate_gemm(hand_gemm(), a, ET)
    # each tile waits for its longest row: 3 and 1 cycles per column tile
    assert r.cycles == 2 * 3 + 2 * 1 + 4
    assert r.imbalance == 0  # (3 = ceil(5 / 2): this tile's rows are already balanced)
    assert r.energy["combination.index"] == 0  # no merge: every row fetches its own rows
    wbank = a.buffers["weight"].bank_kib
    assert r.energy["sram.weight"] == pytest.approx((6 * 3 * 8 / 64 + 24 / 8)
                                                    * ET.sram_access(wbank, 64))


def test_dense_hand_for_comparison() -> None:
    r = simulate_gemm(hand_gemm(), ideal_memory(hand_chip(mode="dense")), ET)
    # 2 row tiles x (8 reduction steps per column tile x 2 column tiles) + fill 4
    assert r.mode == "weights fit" and r.info["input_format"] == "dense"
    assert r.cycles == 2 * (8 + 8) + 4
    assert r.dram["input_features"] == 4 * 8 and r.dram["indices"] == 0


def test_sparse_int4_bit_fusion_rate() -> None:
    # INT4: 4 MACs per element per cycle -> ceil(4 / 4) = 1 and ceil(1 / 4) = 1 per column tile
    r = simulate_gemm(hand_gemm(bits=4), ideal_memory(hand_chip()), ET)
    assert r.cycles == 2 * 1 + 2 * 1 + 4
    assert r.dram["input_features"] == 3  # 6 values x 4 bits


def test_sparse_fp32_twin_rate_and_bytes() -> None:
    f = ideal_memory(hand_chip().fp32_counterpart())
    p = GemmPhase(0, "gemm", 4, 8, 3, 32, 32, 32, 1, input=hand_pattern())
    r = simulate_gemm(p, f, ET)
    assert r.info["input_format"] == "csr" and r.cycles == 2 * 4 + 2 * 1 + 4
    assert r.dram["input_features"] == 6 * 4 and r.dram["indices"] == 6 * 4
    assert r.energy["combination.mac"] == pytest.approx(18 * (3.7 + 0.9))


def test_sparse_m_and_k_tilings_hand() -> None:
    # 16-byte weight buffer (8 usable): INT8 W is 8 x 3 = 24 B and does not fit.
    a = ideal_memory(hand_chip(buffers__weight__size_kib=16 / 1024, buffers__weight__banks=1))
    m = simulate_gemm(hand_gemm(), a, ET, tiling="m")
    # a weight column is 8 B -> 1 column per tile, 3 passes; the CSR re-read per pass
    assert m.mode == "csr m-tiled x3" and m.passes == 3
    assert m.dram["input_features"] == 3 * 6 and m.dram["indices"] == 3 * 24
    assert m.cycles == 3 * (4 + 1 + 4)  # per pass: tile 0 4 columns, tile 1 one, fill 4
    assert m.compulsory_bytes == pytest.approx(m.dram_bytes - 2 * (6 + 24 + 20))
    k = simulate_gemm(hand_gemm(), a, ET, tiling="k")
    # a weight row is 3 B -> 2 rows per tile (8 usable bytes), 4 column blocks of 2
    assert k.mode == "csr k-tiled x4" and k.passes == 4
    # blocks {0,1} {2,3} {4,5} {6,7}: tile 0 has one union column in each ({0} {3} {5} {7}),
    # tile 1 only in the first ({1}); an empty block still drains (1 cycle per column tile)
    assert k.cycles == 4 * (2 * 1 + 2 * 1 + 4)
    # values and indices once (column-blocked CSR), row pointers once per block
    assert k.dram["input_features"] == 6 and k.dram["indices"] == 24
    assert k.dram["row_pointers"] == 4 * 20
    best = simulate_gemm(hand_gemm(), a, ET)
    assert best.cycles == min(m.cycles, k.cycles)


# ----------------------------------------------------------------------------- selection


def test_auto_uses_the_model_threshold() -> None:
    assert SPARSE_DENSITY == 0.1
    n, k = 64, 200
    sparse = random_pattern(1, n, k, 0.05)
    denser = random_pattern(2, n, k, 0.3)
    assert sparse.density <= SPARSE_DENSITY < denser.density
    a = arch_with()
    for pat, fmt in ((sparse, "csr"), (denser, "dense")):
        p = GemmPhase(0, "gemm", n, k, 16, 4, 4, 4, 1, input=pat)
        assert simulate_gemm(p, a, ET).info["input_format"] == fmt
    p = GemmPhase(0, "gemm", n, k, 16, 4, 4, 4, 1, input=sparse)
    assert simulate_gemm(p, arch_with(combination__sparse_input="dense"), ET
                         ).info["input_format"] == "dense"
    p = GemmPhase(0, "gemm", n, k, 16, 4, 4, 4, 1, input=denser)
    assert simulate_gemm(p, arch_with(combination__sparse_input="sparse"), ET
                         ).info["input_format"] == "csr"
    # rows that do not come from DRAM (a stream from an aggregation) are never sparse
    assert simulate_gemm(p, arch_with(combination__sparse_input="sparse"), ET,
                         input_src="stream").info["input_format"] == "dense"


def test_csr_can_cost_more_than_dense_at_int2_and_auto_keeps_dense() -> None:
    """Density 0.09 <= 0.1, but at INT2 a value + 32-bit index is 34 bits against 2 bits of a
    dense code: the CSR moves 1.55x the bytes, and on DDR4 the phase is memory-bound."""
    pat = random_pattern(3, 512, 1000, 0.09)
    assert pat.density <= SPARSE_DENSITY
    p = GemmPhase(0, "gemm", 512, 1000, 8, 2, 2, 2, 1, input=pat)
    ddr4 = {"dram__preset": "ddr4"}
    forced = simulate_gemm(p, arch_with(combination__sparse_input="sparse", **ddr4), ET)
    dense = simulate_gemm(p, arch_with(combination__sparse_input="dense", **ddr4), ET)
    assert forced.dram_bytes > dense.dram_bytes
    assert forced.cycles > dense.cycles
    auto = simulate_gemm(p, arch_with(**ddr4), ET)
    assert auto.info["input_format"] == "dense" and auto.cycles == dense.cycles
    assert auto.info["sparse_cycles"] == forced.cycles


def test_forced_sparse_without_a_plan_is_an_error() -> None:
    # The hand rows in 80 columns (density 6 / 320 <= 0.1). 8-byte weight buffer (4 usable):
    # INT8 W is 80 x 6 = 480 B; a weight column (80 B) and a weight row (6 B) both exceed 4 B,
    # so no sparse plan exists. 'auto' falls back to the dense product (C-column x K-row tiles).
    pat = InputPattern.from_csr(4, 80, [0, 2, 5, 5, 6], [0, 3, 3, 5, 7, 1])
    p = GemmPhase(0, "gemm", 4, 80, 6, 8, 8, 8, 1, input=pat)
    small = {"buffers__weight__size_kib": 8 / 1024, "buffers__weight__banks": 1}
    with pytest.raises(SimulationError, match="sparse_input = 'sparse'"):
        simulate_gemm(p, hand_chip(**small), ET)
    r = simulate_gemm(p, hand_chip(mode="auto", **small), ET)
    assert r.info["input_format"] == "dense" and r.mode.startswith("mk-tiled")
    assert r.info["sparse_cycles"] is None


def test_config_validation() -> None:
    with pytest.raises(ArchConfigError, match=r"combination\.sparse_input.*auto, dense, sparse"):
        arch_with(combination__sparse_input="csr")
    with pytest.raises(ArchConfigError, match=r"combination\.sparse_weights.*broadcast, per-row"):
        arch_with(combination__sparse_weights="gather")
    a = arch_with()
    assert (a.combination.sparse_input, a.combination.sparse_weights) == ("auto", "broadcast")
    assert arch_with(combination__sparse_input="dense").to_dict()["combination"][
        "sparse_input"] == "dense"


# ----------------------------------------------------------------------------- properties

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 300), k=st.integers(1, 400),
       m=st.integers(1, 80), density=st.floats(0.0, SPARSE_DENSITY),
       bits=st.sampled_from([2, 3, 4, 8, 32]), bw=st.floats(1.0, 500.0),
       rows=st.sampled_from([4, 16, 32]), per_row=st.booleans())
def test_sparse_never_slower_when_csr_is_no_larger(seed, n, k, m, density, bits, bw, rows,
                                                   per_row) -> None:
    """At density <= 0.1, with the weights in the weight buffer: whenever X's CSR (values,
    32-bit indices, row pointers) moves no more bytes than X's dense codes, the sparse
    product takes no more cycles than the dense one (each row tile's union has at most K
    columns). The CSR condition is needed: see the INT2 counterexample above."""
    pat = random_pattern(seed, n, k, density)
    assume(pat.density <= SPARSE_DENSITY)
    csr = math.ceil(pat.nnz * bits / 8) + pat.nnz * 4 + (n + 1) * 4
    assume(csr <= n * math.ceil(k * bits / 8))
    kw = {"dram__bandwidth_gbps": bw, "combination__rows": rows,
          "combination__sparse_weights": "per-row" if per_row else "broadcast"}
    sp = arch_with(combination__sparse_input="sparse", **kw)
    dn = arch_with(combination__sparse_input="dense", **kw)
    if bits == 32:
        sp, dn = sp.fp32_counterpart(), dn.fp32_counterpart()
    assume(math.ceil(k * m * bits / 8) <= sp.buffers["weight"].bytes)
    p = GemmPhase(0, "gemm", n, k, m, bits, bits, bits, 1, input=pat)
    rs, rd = simulate_gemm(p, sp, ET), simulate_gemm(p, dn, ET)
    assert rs.info["input_format"] == "csr"
    assert rs.cycles <= rd.cycles + 1e-9
    assert rs.ops <= rd.ops


def sparse_graph(seed: int, n: int, deg: float, f: int, density: float):
    rng = np.random.default_rng(seed)
    e = int(n * deg)
    g = graph_from_arrays(f"sparse{seed}", n, rng.integers(0, n, e), rng.integers(0, n, e),
                          num_features=f, num_classes=4)
    g.input = InputPattern.from_dense(rng.random((n, f)) < density)
    return g


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(5, 300), deg=st.floats(0.0, 6.0),
       f=st.integers(1, 300), density=st.floats(0.0, 0.3),
       model=st.sampled_from(["gcn", "gin", "sage", "decoupled"]),
       bits=st.sampled_from([2, 4, 8]), buf=st.sampled_from([None, 1.0, 8.0]),
       preset=st.sampled_from(["ddr4", "hbm2"]), factor=st.floats(1.0, 20.0))
def test_auto_never_costs_more_than_dense_and_bandwidth_monotone(
        seed, n, deg, f, density, model, bits, buf, preset, factor) -> None:
    g = sparse_graph(seed, n, deg, f, density)
    kw: dict = {"dram__preset": preset}
    if buf is not None:
        kw.update(buffers__feature__size_kib=buf, buffers__weight__size_kib=buf,
                  buffers__feature__banks=1, buffers__weight__banks=1)
    auto = simulate(g, model, bits, arch=arch_with(**kw), hidden=16)
    dense = simulate(g, model, bits, arch=arch_with(combination__sparse_input="dense", **kw),
                     hidden=16)
    assert auto.run.cycles <= dense.run.cycles + 1e-6
    assert auto.fp32.cycles <= dense.fp32.cycles + 1e-6
    fast_kw = {**kw, "dram__bandwidth_gbps": arch_with(**kw).dram.bandwidth_gbps * factor}
    forced = simulate(g, model, bits, arch=arch_with(combination__sparse_input="sparse", **kw),
                      hidden=16) if _sparse_fits(g, model, bits, kw) else None
    fast = simulate(g, model, bits, arch=arch_with(**fast_kw), hidden=16)
    assert fast.run.cycles <= auto.run.cycles + 1e-6
    assert fast.fp32.cycles <= auto.fp32.cycles + 1e-6
    if forced is not None:
        ffast = simulate(g, model, bits, arch=arch_with(combination__sparse_input="sparse",
                                                         **fast_kw), hidden=16)
        assert ffast.run.cycles <= forced.run.cycles + 1e-6


def _sparse_fits(g, model, bits, kw) -> bool:
    try:
        simulate(g, model, bits, arch=arch_with(combination__sparse_input="sparse", **kw),
                 hidden=16)
    except SimulationError:
        return False
    return True


# ----------------------------------------------------------------------------- Cora


@pytest.fixture(scope="module")
def cora_runs(cora):
    dense = arch_with(combination__sparse_input="dense")
    return {b: (simulate(cora, "gcn", b), simulate(cora, "gcn", b, arch=dense))
            for b in (2, 4)}


def test_cora_first_combination_is_sparse_on_both_chips(cora_runs) -> None:
    nnz = 49216  # Cora's binary bag-of-words: 49,216 ones in 2708 x 1433
    for b, (rep, _) in cora_runs.items():
        for run, vbits in ((rep.run, b), (rep.fp32, 32)):
            first = run.phases[0]
            assert first.name == "layer0.combine" and first.info["input_format"] == "csr"
            assert first.info["input_nnz"] == nnz
            assert first.info["input_density"] == pytest.approx(nnz / (2708 * 1433))
            assert first.ops == nnz * 64
            d = first.dram
            passes = int(first.mode.split("x")[-1]) if "m-tiled" in first.mode else 1
            assert d["input_features"] == passes * math.ceil(nnz * vbits / 8)
            assert d["indices"] >= nnz * 4
            # later combinations read dense hidden activations
            assert all(p.info.get("input_format") == "dense" for p in run.phases[1:]
                       if p.engine == "combination")


def test_cora_dense_mode_reproduces_the_previous_figures(cora_runs) -> None:
    """Pinned from the simulator before sparse inputs existed (docs/sim.md headline then)."""
    old = {2: (21138, 64957136.609580025, 1160908.0), 4: (70533, 119295445.42298238, 2153412.0)}
    for b, (_, dense) in cora_runs.items():
        cyc, energy, dram = old[b]
        assert dense.cycles == cyc and dense.fp32_cycles == 318788
        assert dense.energy_pj == pytest.approx(energy, rel=1e-12)
        assert dense.fp32_energy_pj == pytest.approx(2064088846.4083683, rel=1e-12)
        assert dense.run.dram_bytes_total == dram
        assert dense.fp32.dram_bytes_total == 22887932.0


def test_cora_sparse_is_faster_than_dense(cora_runs) -> None:
    for rep, dense in cora_runs.values():
        assert rep.cycles < dense.cycles and rep.fp32_cycles < dense.fp32_cycles
        assert rep.run.phases[0].cycles < dense.run.phases[0].cycles
