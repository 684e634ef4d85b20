"""Hand-computed tiny cases for every phase: cycles, DRAM bytes and activity energy.

The tiny graph (conftest.tiny_graph): N = 4, rows with self-loops of 3, 1, 4, 1 terms
(E = 9 terms), 20 features. At 4 bits a 64-bit word has 16 lanes, so W = 2 words per row.
With P = 2 elements, element 0 has rows 0 and 2 (2 * (3 + 4) = 14 cycles of work) and
element 1 rows 1 and 3 (2 * (1 + 1) = 4).
"""

from __future__ import annotations

import pytest
from qgnn.sim.energy import energy_table
from qgnn.sim.engines import SimulationError, simulate_agg, simulate_gemm
from qgnn.sim.stage import ideal_memory
from qgnn.sim.timing import T_fill
from qgnn.sim.workload import AggPhase, GemmPhase
from simtest_helpers import arch_with, tiny_graph

ET = energy_table()


def agg(features: int = 20, bits: int = 4) -> AggPhase:
    return AggPhase(layer=0, name="agg", features=features, in_bits=bits, out_bits=bits,
                    self_loops=True, pre_requants=0, post_requants=1)


def chip(**kw):
    base = {"aggregation__pes": 2, "aggregation__sram_latency": 1,
            "dram__bandwidth_gbps": 8.0, "dram__latency_ns": 3.0}
    base.update(kw)
    return arch_with(**base)


def test_aggregation_ideal_memory_is_the_contract() -> None:
    r = simulate_agg(agg(), tiny_graph(), ideal_memory(chip()), ET, input_src="feature",
                     output_dst="stream")
    assert r.mode == "whole" and r.passes == 1
    assert r.dram_stall == 0
    assert r.cycles == T_fill(1) + 14
    # balanced work is the mean over elements: (14 + 4) / 2 = 9
    assert r.compute == pytest.approx(T_fill(1) + 9)
    assert r.imbalance == pytest.approx(5)


def test_aggregation_whole_from_dram_bytes_and_stall() -> None:
    r = simulate_agg(agg(), tiny_graph(), chip(), ET, input_src="dram", output_dst="dram")
    d = r.dram
    assert d["features"] == 4 * 2 * 8        # N * W * 8 bytes
    assert d["indices"] == 9 * 4             # E terms * 32-bit index
    assert d["row_pointers"] == 5 * 4        # (N + 1) pointers
    assert d["requant_params"] == 4 * 3      # 16-bit M + 6-bit shift per node
    assert d["outputs"] == 4 * 2 * 8
    compute = T_fill(1) + 14
    # 8 B/cycle, 3 cycles latency: 3 + 64/8 + max(compute, (36 + 20 + 12 + 64) / 8)
    assert r.cycles == pytest.approx(3 + 8 + max(compute, 132 / 8))
    assert r.dram_stall == pytest.approx(11)
    # lane adds: 9 terms * 2 words * 16 lanes at the 6-bit accumulator (4 terms of 4 bits)
    assert r.bits["acc"] == 6
    assert r.energy["aggregation.add"] == pytest.approx(288 * 0.03 * 6 / 8)
    assert r.energy["dram"] == pytest.approx(r.dram_bytes * 8 * 3.9)


def test_aggregation_column_tiling() -> None:
    # 64-byte feature buffer, double-buffered: 32 usable bytes hold one word column of 4 rows.
    a = chip(buffers__feature__size_kib=64 / 1024, buffers__feature__banks=1)
    r = simulate_agg(agg(), tiny_graph(), a, ET, tiling="column")
    assert r.mode == "column x2" and r.passes == 2
    assert r.dram["features"] == 64
    assert r.dram["indices"] == 2 * 36 and r.dram["row_pointers"] == 2 * 20
    per_pass = T_fill(1) + 7  # one word per row: element 0 has 3 + 4 terms
    stream = 36 + 20 + 12 / 2 + 64 / 2  # indices, pointers, half the params and outputs
    expected = 3 + 32 / 8 + max(per_pass, (stream + 32) / 8) + max(per_pass, stream / 8)
    assert r.cycles == pytest.approx(expected)
    assert r.compulsory_bytes == pytest.approx(r.dram_bytes - 56)  # re-read indices/pointers


def test_aggregation_gather_rounds_to_bursts() -> None:
    r = simulate_agg(agg(), tiny_graph(), chip(), ET, tiling="gather")
    # HBM2 pseudo-channel bursts are 32 B; a 16-byte row costs one burst per term.
    assert r.dram["features"] == 9 * 32
    r8 = simulate_agg(agg(features=4), tiny_graph(), chip(), ET, tiling="gather")
    assert r8.dram["features"] == 9 * 32  # 8-byte rows still cost a whole burst


def test_aggregation_source_tiling_refetch() -> None:
    # Feature buffer 64 B (32 usable): S = 2 source rows per tile. Accumulator 64 B (32 usable):
    # a row's partial sums are 20 features x 6 bits = 15 B, so D = 2 rows per block.
    a = chip(buffers__feature__size_kib=64 / 1024, buffers__feature__banks=1,
             buffers__accumulator__size_kib=64 / 1024, buffers__accumulator__banks=1)
    r = simulate_agg(agg(), tiny_graph(), a, ET, tiling="source")
    # terms (dst, src): row0 0,1,2; row1 1; row2 0,1,2,3; row3 3 -> (block, tile) pairs
    # (0,0) (0,1) (1,0) (1,1): all four non-empty, each loads 2 rows x 16 B.
    assert r.mode == "source 2x2" and r.passes == 4
    assert r.dram["features"] == 4 * 2 * 16
    assert r.dram["indices"] == 36
    assert r.dram["row_pointers"] == 4 * 3 * 4
    # per pass: 2 words x busiest element's terms: (0,0) 2, (0,1) 1, (1,0) 2, (1,1) 2
    busy = sum(T_fill(1) + 2 * t for t in (2, 1, 2, 2))
    assert r.compute + r.imbalance == pytest.approx(busy)


def test_aggregation_refuses_impossible_forced_tiling() -> None:
    a = chip(buffers__feature__size_kib=16 / 1024, buffers__feature__banks=1)
    with pytest.raises(SimulationError, match="feature buffer"):
        simulate_agg(agg(), tiny_graph(), a, ET, tiling="whole")


def test_fp32_aggregation_two_lanes_per_word() -> None:
    f = chip().fp32_counterpart()
    p = AggPhase(0, "agg", 20, 32, 32, True, 0, 1)
    r = simulate_agg(p, tiny_graph(), ideal_memory(f), ET, input_src="feature",
                     output_dst="stream")
    assert r.info["lanes"] == 2 and r.info["words_per_row"] == 10
    assert r.cycles == T_fill(1) + 10 * 7  # element 0: 10 words x 7 terms
    assert r.energy["aggregation.add"] == pytest.approx(9 * 10 * 2 * 0.9)


def gemm(bits: int = 4, n: int = 70, k: int = 100, m: int = 40) -> GemmPhase:
    return GemmPhase(layer=0, name="gemm", n=n, k=k, m=m, act_bits=bits, weight_bits=bits,
                     out_bits=bits, post_requants=1)


def test_combination_fit_hand() -> None:
    a = ideal_memory(arch_with())
    r = simulate_gemm(gemm(), a, ET)
    # INT4: 4 MACs/element/cycle -> 25 cycles of MACs per tile; a full 32-column tile drains
    # 32 x 32 values through 32 requantizers in 32 cycles, the 8-column tile in 8.
    # 3 row tiles x (max(25, 32) + max(25, 8)) + fill 32 + 32.
    assert r.mode == "weights fit"
    assert r.cycles == 3 * (32 + 25) + 64
    assert r.dram["input_features"] == 70 * 50
    assert r.dram["weights"] == 2000
    assert r.dram["outputs"] == 70 * 20
    assert r.ops == 70 * 100 * 40
    assert r.energy["combination.mac"] == pytest.approx(
        70 * 100 * 40 * (0.05 + 0.03 + 8 * 0.07 / 24))  # 4x4 mult + 16-bit add (8+7+1)


def test_combination_fp32_hand() -> None:
    a = ideal_memory(arch_with().fp32_counterpart())
    r = simulate_gemm(gemm(bits=32), a, ET)
    assert r.cycles == 3 * (100 + 100) + 64
    assert r.dram["input_features"] == 70 * 400 and r.dram["weights"] == 16000
    assert r.energy["combination.mac"] == pytest.approx(70 * 100 * 40 * 4.6)


def test_combination_tilings_hand() -> None:
    # 1 KiB weight buffer (512 B usable): INT8 weights of 100 x 40 = 4000 B do not fit.
    a = arch_with(buffers__weight__size_kib=1.0, buffers__weight__banks=1,
                  buffers__accumulator__size_kib=1.0, buffers__accumulator__banks=1)
    m = simulate_gemm(gemm(bits=8), a, ET, tiling="m")
    # 512 // 100 = 5 columns per tile -> 8 tiles, the input re-read by each.
    assert m.mode == "m-tiled x8"
    assert m.dram["input_features"] == 8 * 70 * 100 and m.dram["weights"] == 4000
    k = simulate_gemm(gemm(bits=8), a, ET, tiling="k")
    # 512 // 40 = 12 rows per tile -> 9 tiles; 70 x 40 partial sums of 8+8+7+1 = 24 bits =
    # 8400 B do not fit 1 KiB: spilled and re-read between tiles.
    assert k.mode == "k-tiled x9"
    assert k.dram["input_features"] == 7000 and k.dram["weights"] == 4000
    assert k.dram["partial_sums"] == 2 * 8 * 8400
    best = simulate_gemm(gemm(bits=8), a, ET)
    assert best.dram_bytes == min(m.dram_bytes, k.dram_bytes, best.dram_bytes)


def test_combination_stream_input_moves_no_input_bytes() -> None:
    r = simulate_gemm(gemm(), arch_with(), ET, input_src="stream", output_dst="feature")
    assert r.dram["input_features"] == 0 and r.dram["activations"] == 0
    assert r.dram["outputs"] == 0
    assert r.dram_bytes == 2000  # only the weights
