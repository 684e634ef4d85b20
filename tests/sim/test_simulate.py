"""End-to-end: the public API and the report's shape and internal consistency."""

from __future__ import annotations

import math

import pytest
from qgnn.model.quant import PrecisionConfig
from qgnn.sim import SimReport, simulate
from qgnn.sim.simulation import run_phases
from qgnn.sim.workload import build_phases, model_layers
from simtest_helpers import arch_with, random_graph

REQUIRED = {"cycles", "energy_pj", "fp32_cycles", "fp32_energy_pj", "speedup_vs_fp32",
            "energy_ratio_vs_fp32", "roofline_cycles", "roofline_pct", "dram_bytes",
            "utilization", "energy_breakdown", "area_mm2", "layers"}


@pytest.fixture(scope="module")
def cora_reports(cora) -> dict[int, SimReport]:
    return {b: simulate(cora, "gcn", b) for b in (2, 4, 8)}


def test_report_keys_and_consistency(cora_reports) -> None:
    for b, rep in cora_reports.items():
        d = rep.to_dict()
        assert REQUIRED <= set(d), REQUIRED - set(d)
        assert d["bits"] == f"int{b}"
        assert d["speedup_vs_fp32"] == pytest.approx(d["fp32_cycles"] / d["cycles"])
        assert d["energy_ratio_vs_fp32"] == pytest.approx(d["fp32_energy_pj"] / d["energy_pj"])
        assert math.fsum(d["energy_breakdown"].values()) == pytest.approx(d["energy_pj"])
        assert d["dram_bytes"]["indices"] > 0 and d["dram_bytes"]["input_features"] > 0
        # roofline is a lower bound
        assert d["roofline_cycles"] <= d["cycles"]
        assert d["roofline_pct"] == pytest.approx(100 * d["cycles"] / d["roofline_cycles"])
        for row in d["layers"]:
            assert row["cycles"] == pytest.approx(row["compute"] + row["dram_stall"]
                                                  + row["imbalance"])
            assert row["phase"] and row["tiling"]
        assert sum(r["exposed_cycles"] for r in d["layers"]) == pytest.approx(d["cycles"], abs=1)
        assert 0 < d["utilization"]["combination_macs"] <= 1
        assert 0 < d["area_mm2"] < d["fp32"]["area_mm2"]


def test_cora_gcn_structure(cora_reports, cora) -> None:
    d = cora_reports[4].to_dict()
    assert [r["phase"] for r in d["layers"]] == ["layer0.combine", "layer0.aggregate",
                                                 "layer1.combine", "layer1.aggregate"]
    # INT4, sparse input (default): Cora's X (density 1.27%) streams as CSR: 49216 values of
    # 4 bits, 32-bit column indices, 2709 32-bit row pointers.
    assert d["layers"][0]["input_format"] == "csr"
    assert d["dram_bytes"]["input_features"] == 49216 * 4 // 8
    # indices: every term (10556 edges + 2708 self-loops) once per aggregation, 32 bits each,
    # plus X's column indices
    assert d["dram_bytes"]["indices"] == 2 * 13264 * 4 + 49216 * 4
    assert d["layers"][0]["dram_bytes_by_tensor"]["row_pointers"] == 2709 * 4
    # The dense product (sparse_input = "dense"): the 1433-wide input is streamed once, 4 bits
    # per feature, 717 bytes per row.
    dense = simulate(cora, "gcn", 4, arch=arch_with(combination__sparse_input="dense")).to_dict()
    assert dense["layers"][0]["input_format"] == "dense"
    assert dense["dram_bytes"]["input_features"] == 2708 * 717
    assert dense["dram_bytes"]["indices"] == 2 * 13264 * 4
    assert dense["fp32"]["dram_bytes"]["input_features"] == 2708 * 1433 * 4
    # layer-0 aggregation: the combination left its output in the feature buffer
    agg0 = d["layers"][1]
    assert agg0["input"] == "feature" and agg0["dram_bytes_by_tensor"]["features"] == 0
    assert agg0["words_per_row"] == 4 and agg0["lanes"] == 16
    # the FP32 twin reads X's non-zeros at 4 bytes each (at least once)
    assert d["fp32"]["layers"][0]["input_format"] == "csr"
    assert d["fp32"]["dram_bytes"]["input_features"] % (49216 * 4) == 0


def test_fewer_bits_faster_and_cheaper(cora_reports) -> None:
    r2, r4, r8 = (cora_reports[b] for b in (2, 4, 8))
    assert r2.cycles < r4.cycles < r8.cycles
    assert r2.energy_pj < r4.energy_pj < r8.energy_pj
    assert r2.fp32_cycles == r4.fp32_cycles == r8.fp32_cycles
    for r in (r2, r4, r8):
        assert r.speedup_vs_fp32 > 1 and r.energy_ratio_vs_fp32 > 1


def test_models_and_inputs(cora) -> None:
    for m in ("gin", "sage", "decoupled"):
        d = simulate(cora, m, 4).to_dict()
        assert d["cycles"] > 0 and d["speedup_vs_fp32"] > 1
    g = random_graph(1, 200, 4.0, 30)
    p = PrecisionConfig.from_dict({"bits": 4, "layers": {"1": {"bits": 2}}})
    d = simulate(g, "gcn", p, hidden=16).to_dict()
    assert d["bits"] == "mixed"
    bits1 = [r["bits"] for r in d["layers"] if r["layer"] == 1 and r["kind"] == "aggregate"]
    assert bits1[0]["in"] == 2


def test_auto_dataflow_is_the_cheaper_order() -> None:
    g = random_graph(2, 300, 5.0, 200)
    auto = simulate(g, "gcn", 4, hidden=32)
    costs = {}
    for order in ("aggregate-first", "combine-first"):
        a = arch_with(dataflow__default=order)
        costs[order] = simulate(g, "gcn", 4, arch=a, hidden=32).cycles
    assert auto.cycles == min(costs.values())


def test_run_phases_sum_of_exposed(cora) -> None:
    from qgnn.sim.workload import graph_from_data

    g = graph_from_data(cora)
    p = PrecisionConfig.uniform(2)
    shapes = model_layers("gcn", g.num_features, g.num_classes, p)
    phases = build_phases(shapes, p, g.num_nodes, {0: "combine-first", 1: "combine-first"})
    run = run_phases(phases, g, arch_with())
    assert run.cycles == pytest.approx(sum(ph.exposed for ph in run.phases))
    # without engine overlap nothing is hidden
    seq = run_phases(phases, g, arch_with(engine_overlap=False))
    assert seq.cycles >= run.cycles
    assert all(ph.exposed == pytest.approx(ph.cycles) for ph in seq.phases)


def test_api_errors() -> None:
    g = random_graph(3, 50, 3.0, 10)
    with pytest.raises(ValueError, match="integer bit widths"):
        simulate(g, "gcn", 32)
    with pytest.raises(ValueError, match="bit width"):
        simulate(g, "gcn", 1)
    with pytest.raises(ValueError, match="unknown model"):
        simulate(g, "gat", 4)
    with pytest.raises(ValueError, match="FP32 counterpart is derived"):
        simulate(g, "gcn", 4, arch=arch_with().fp32_counterpart())


def test_built_model_gives_the_same_shapes_as_its_name() -> None:
    from qgnn.model.nn import ModelConfig, build_model

    g = random_graph(4, 120, 3.0, 40)
    p = PrecisionConfig.uniform(4)
    net = build_model(ModelConfig(name="gin", hidden=24, layers=3), 40, 4, p)
    by_model = simulate(g, net, p)
    by_name = simulate(g, "gin", p, hidden=24, layers=3)
    assert by_model.cycles == by_name.cycles
    assert by_model.energy_pj == pytest.approx(by_name.energy_pj)
    assert [s["in"] for s in by_model.workload["layers"]] == [40, 24, 24]
