"""Degree-aware mixed precision in the simulator: per-node widths in traffic, cycles, buffers,
combination passes and energy; uniform precision unchanged; the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.model.quant import PrecisionConfig
from qgnn.sim import load_arch, simulate
from qgnn.sim.energy import energy_table
from qgnn.sim.engines import simulate_agg, simulate_gemm
from qgnn.sim.workload import AggPhase, GemmPhase, NodeBuckets, graph_from_arrays
from qgnn.sweeps.cli import main
from simtest_helpers import arch_with, random_graph

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "precision" / "degree-mixed.toml"
FEW = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def six_node_graph():
    """Edges 1->0, 4->0, 5->0, 0->1, 4->2, 2->3, 5->4, 4->5 (plus self-loops in GCN rows)."""
    src = np.array([1, 4, 5, 0, 4, 2, 5, 4])
    dst = np.array([0, 0, 0, 1, 2, 3, 4, 5])
    return graph_from_arrays("six", 6, src, dst, num_features=40, num_classes=2)


def mixed_agg(features: int = 40, bucket=(0, 0, 0, 0, 1, 1), widths=(2, 8)) -> AggPhase:
    nb = NodeBuckets(np.array(bucket, dtype=np.int64), len(widths))
    return AggPhase(0, "layer0.aggregate", features, max(widths), max(widths), True,
                    pre_requants=0, post_requants=1, buckets=nb, in_widths=widths,
                    out_widths=widths)


def test_per_node_bytes_and_cycles_hand_computed() -> None:
    """F = 40, 64-bit words: an INT2 row is 2 words (16 B), an INT8 row 5 words (40 B).
    Nodes 0-3 INT2, 4-5 INT8: 4 x 16 + 2 x 40 = 144 B of source rows and of output rows;
    14 terms x 4 B of indices as on the uniform engine. Serial drain, P = 2, L = 1:
    I = [2+2+5+5, 2+2, 5+2, 2+2, 5+5, 5+5] = [14, 4, 7, 4, 10, 10], O = [2, 2, 2, 2, 5, 5];
    PE 0 (rows 0, 2, 4): 16 + 9 + 15 = 40, PE 1 (rows 1, 3, 5): 6 + 6 + 15 = 27;
    cycles = T_fill(1) + 40 = 13 + 40 = 53."""
    g = six_node_graph()
    arch = arch_with(aggregation__pes=2, aggregation__sram_latency=1)
    r = simulate_agg(mixed_agg(), g, arch, energy_table(), input_src="dram", output_dst="dram",
                     overlap_drain=False)
    assert r.mode == "whole"
    assert r.dram["features"] == 144.0
    assert r.dram["outputs"] == 144.0
    assert r.dram["indices"] == 14 * 4
    assert r.info["contract_cycles"] == 53
    assert r.info["input_words"] == 14 + 4 + 7 + 4 + 10 + 10
    assert r.info["output_words"] == 18
    by = {b["bucket"]: b for b in r.info["buckets"]}
    assert by[0]["feature_bytes"] == 64.0 and by[1]["feature_bytes"] == 80.0
    # terms from bucket 1: 4->0, 4->2, 4->5, 5->0, 5->4 and the two self-loops, 5 words each
    assert by[1]["terms_from"] == 7 and by[1]["input_words"] == 35
    # the uniform INT2 engine on the same graph moves 6 x 16 B
    u = simulate_agg(replace(mixed_agg(), in_bits=2, out_bits=2, buckets=None, in_widths=None,
                             out_widths=None), g, arch, energy_table())
    assert u.dram["features"] == 96.0 and u.dram["indices"] == r.dram["indices"]


def test_k1_mixed_engine_bytes_equal_uniform_engine() -> None:
    """A uniform INT4 phase on the mixed engine (K = 1): the same feature, output and index
    bytes as on the uniform engine (only the wider descriptors differ)."""
    g = random_graph(3, 50, 3.0, 24)
    arch = load_arch()
    et = energy_table()
    ph = AggPhase(0, "a", 24, 4, 4, True, pre_requants=0, post_requants=1)
    u = simulate_agg(ph, g, arch, et)
    m = simulate_agg(replace(ph, buckets=NodeBuckets.single(50), in_widths=(4,),
                             out_widths=(4,)), g, arch, et)
    for key in ("features", "outputs", "indices", "row_pointers"):
        assert m.dram[key] == u.dram[key], key
    assert m.dram["requant_params"] > u.dram["requant_params"]


def test_combination_per_bucket_passes_hand_computed() -> None:
    """6 rows (4 INT2, 2 INT8) x K = 64 by 64 x 32 INT2 weights, from DRAM: activations
    4 x 16 + 2 x 64 = 192 B; outputs 4 x 8 + 2 x 32 = 96 B; the 512 B of weights are loaded
    once (the second pass finds them in the buffer); INT2 rows run at 16 MACs per element and
    cycle, INT8 rows at 4."""
    nb = NodeBuckets(np.array([0, 1, 0, 0, 1, 0]), 2)
    ph = GemmPhase(0, "layer0.combine", 6, 64, 32, 8, 2, 8, post_requants=1, buckets=nb,
                   act_widths=(2, 8), out_widths=(2, 8))
    r = simulate_gemm(ph, load_arch(), energy_table())
    assert r.dram["input_features"] == 192.0
    assert r.dram["outputs"] == 96.0
    assert r.dram["weights"] == 512.0
    rates = {b["act_bits"]: b["macs_per_pe"] for b in r.info["buckets"]}
    assert rates == {2: 16.0, 8: 4.0}
    assert [b["nodes"] for b in r.info["buckets"]] == [4, 2]
    assert r.ops == 6 * 64 * 32


def test_uniform_precision_reports_unchanged(cora) -> None:
    """Pinned from the simulator before per-node widths (Cora GCN, default chip)."""
    for bits, cycles, dram, energy in ((2, 11278, 408740.0, 17745172.2385),
                                       (4, 24609, 444084.0, 21416613.0054)):
        d = simulate(cora, "gcn", bits).to_dict()
        assert d["cycles"] == cycles and d["fp32_cycles"] == 131510
        assert d["dram_bytes_total"] == dram
        assert d["energy_pj"] == pytest.approx(energy, rel=1e-9)
        assert "mixed" not in d


def test_nodes_off_in_every_layer_is_uniform() -> None:
    """A precision whose [nodes] table is switched off in every layer gives the uniform
    report exactly (same phases, engines, bytes, energy)."""
    g = random_graph(7, 120, 4.0, 30)
    mixed = PrecisionConfig.from_dict({"bits": 2, "nodes": {"by": "degree_quantile",
                                                            "bits": [2, 8], "edges": [0.8]},
                                       "layers": {"0": {"nodes": False}, "1": {"nodes": False}}})
    a = simulate(g, "gcn", mixed, hidden=16).to_dict()
    b = simulate(g, "gcn", 2, hidden=16).to_dict()
    for key in ("cycles", "energy_pj", "dram_bytes", "energy_breakdown", "layers", "fp32"):
        assert a[key] == b[key], key


@FEW
@given(seed=st.integers(0, 10_000), n=st.integers(4, 40), widths=st.sampled_from([(2, 8), (2, 4),
                                                                                  (4, 8)]),
       features=st.sampled_from([1, 7, 32, 40, 64, 65]), pes=st.integers(1, 5), overlap=st.booleans(),
       kib=st.sampled_from([0.25, 1.0, 256.0]))
def test_wider_bucket_never_reduces_aggregation_bytes_or_cycles(seed, n, widths, features, pes,
                                                                overlap, kib) -> None:
    """Moving nodes to the wider bucket never reduces the mixed aggregation's DRAM bytes (the
    simulator picks the plan with the fewest bytes, then the fewest cycles; tiny feature
    buffers force column tiling or gathers), nor, under any one plan both can use, its cycles
    and its energy when no row has padding lanes (F a multiple of 32: a narrow row's padding
    lanes are added too, so with padding a wider row can cost fewer adds). Across *different*
    plans cycles may fall: a wider graph can make the byte-cheapest plan a faster one (seed 0,
    n 11, widths (4, 8), F 40, P 2, 0.25 KiB: column x3 232.5 cycles, then gather 228)."""
    rng = np.random.default_rng(seed)
    g = random_graph(seed, n, float(rng.uniform(0.5, 4.0)), features)
    low = (rng.random(n) < 0.3).astype(np.int64)
    high = np.maximum(low, (rng.random(n) < 0.4).astype(np.int64))
    arch = arch_with(aggregation__pes=pes, buffers__feature__size_kib=kib)
    et = energy_table()
    r = [simulate_agg(mixed_agg(features, b, widths), g, arch, et, overlap_drain=overlap)
         for b in (low, high)]
    assert r[1].dram_bytes >= r[0].dram_bytes
    for tiling in ("whole", "gather"):
        try:
            f = [simulate_agg(mixed_agg(features, b, widths), g, arch, et, tiling=tiling,
                              overlap_drain=overlap) for b in (low, high)]
        except ValueError:  # the plan does not fit this buffer
            continue
        assert f[1].dram_bytes >= f[0].dram_bytes, tiling
        assert f[1].cycles >= f[0].cycles, tiling
        if features % 32 == 0:
            assert f[1].energy_pj >= f[0].energy_pj, tiling


def test_lower_threshold_never_reduces_model_bytes() -> None:
    """Whole GCN, fixed dataflow: lowering the degree threshold (more nodes at INT8) never
    reduces DRAM bytes or the aggregations' cycles."""
    g = random_graph(11, 300, 5.0, 40)
    arch = arch_with(dataflow__default="combine-first")
    prev = None
    for t in (30, 9, 7, 5, 3, 1):
        p = PrecisionConfig.from_dict({"bits": 2, "nodes": {"by": "degree_threshold",
                                                            "bits": [2, 8], "edges": [t]}})
        rep = simulate(g, "gcn", p, arch=arch, hidden=16)
        agg = sum(q.cycles for q in rep.run.phases if q.kind == "aggregate")
        cur = (rep.run.dram_bytes_total, agg)
        if prev is not None:
            assert cur[0] >= prev[0] and cur[1] >= prev[1], (t, cur, prev)
        prev = cur


def test_engine_choice_and_errors() -> None:
    g = random_graph(5, 60, 3.0, 20)
    p = PrecisionConfig.load(str(EXAMPLE))
    with pytest.raises(ValueError, match="uniform"):
        simulate(g, "gcn", p, engine="uniform", hidden=8)
    with pytest.raises(ValueError, match="engine"):
        simulate(g, "gcn", 2, engine="fast", hidden=8)
    learned = PrecisionConfig.from_dict({"bits": 2, "nodes": {"by": "learned", "bits": [2, 8],
                                                              "target": 3.0}})
    with pytest.raises(ValueError, match="learned"):
        simulate(g, "gcn", learned, hidden=8)
    d = simulate(g, "gcn", 4, engine="mixed", hidden=8).to_dict()
    assert d["mixed"]["avg_feature_bits"] == 4.0 and d["mixed"]["layers"] == []
    assert all(p["buckets"] for p in d["mixed"]["phases"])


def _expected_top(cora) -> int:
    """Nodes above the 0.9 degree quantile, from the degrees (ties stay below)."""
    deg = np.bincount(cora.edge_index[1].numpy(), minlength=cora.num_nodes) + 1
    thr = np.sort(deg)[int(np.ceil(0.9 * cora.num_nodes)) - 1]
    return int((deg > thr).sum())


def test_cli_mixed_json(data_root: str, cora, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    out = tmp_path / "m.json"
    code = main(["simulate", "--dataset", "cora", "--precision", str(EXAMPLE),
                 "--data-root", data_root, "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "avg_feature_bits" in captured.out
    d = json.loads(out.read_text())
    assert d["bits"] == "mixed"
    mx = d["mixed"]
    top = _expected_top(cora)
    n = cora.num_nodes
    assert mx["avg_feature_bits"] == pytest.approx(2 + 6 * top / n)
    assert mx["aggregation_engine"] == "mixed"
    for layer in mx["layers"]:
        assert [b["nodes"] for b in layer["buckets"]] == [n - top, top]
        assert layer["buckets"][1]["bits"]["message"] == 8
    agg = [p for p in mx["phases"] if p["kind"] == "aggregate"]
    assert agg and all(len(p["buckets"]) == 2 for p in agg)
    for p in agg:
        b0, b1 = p["buckets"]
        assert b0["feature_bytes"] == b0["nodes"] * 8 * b0["words_per_row"]
        assert b1["feature_bytes"] == b1["nodes"] * 8 * b1["words_per_row"]
    # layer 0's aggregation sums 64-wide rows: 2 words at INT2, 8 at INT8
    (l0,) = [p for p in agg if p["phase"] == "layer0.aggregate"]
    assert [b["words_per_row"] for b in l0["buckets"]] == [2, 8]
    # against the same chip at uniform INT2: more bytes and cycles, fewer than INT8
    u2 = simulate(cora, "gcn", 2).to_dict()
    u8 = simulate(cora, "gcn", 8).to_dict()
    assert u2["dram_bytes_total"] < d["dram_bytes_total"] < u8["dram_bytes_total"]
    assert u2["cycles"] < d["cycles"] < u8["cycles"]


@pytest.mark.parametrize("text, contains", [
    ("bits = 2\n[nodes]\nby = \"degree_quantile\"\nbits = [2, 9]\nedges = [0.9]\n", "nodes.bits"),
    ("bits = 2\n[nodes]\nby = \"degree_quantile\"\nbits = [2, 8]\nedges = [1.5]\n", "edges"),
    ("bits = 2\n[nodes]\nby = \"learned\"\nbits = [2, 8]\ntarget = 3.0\n", "learned"),
    ("bits = 2\n[nodes\n", "invalid TOML"),
])
def test_cli_bad_precision_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch, text: str, contains: str) -> None:
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    f = tmp_path / "p.toml"
    f.write_text(text)
    code = main(["simulate", "--dataset", "csbm:n=100", "--precision", str(f)])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qgnn: error: ") and contains in lines[0], err


def test_cli_engine_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                         monkeypatch) -> None:
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    out = tmp_path / "k1.json"
    code = main(["simulate", "--dataset", "csbm:n=100", "--bits", "4", "--engine", "mixed",
                 "--hidden", "8", "--json", str(out)])
    first = capsys.readouterr()
    assert code == 0, first.err
    d = json.loads(out.read_text())
    assert d["bits"] == "int4" and d["mixed"]["avg_feature_bits"] == 4.0
    code = main(["simulate", "--dataset", "csbm:n=100", "--precision", str(EXAMPLE),
                 "--engine", "uniform"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "engine" in err[0], err
