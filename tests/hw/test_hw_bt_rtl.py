"""The bit-truncated INT2 (BT/BT*) engine as exported Verilog on Icarus (marker ``rtl``), driven
through cocotb_tools.runner with the testbench module ``hw_tb_engine``:

- random BT stages (zero points 0 and 255, skewed thresholds, a threshold of 256, degree-0 rows,
  several words per row with pad lanes): exact words and cycles equal to qgnn.core.timing with ideal
  memory; random valid/ready stalls on every port with a reset in mid-stream;
- Cora's real CSR (A + I: 2708 rows, 13264 terms) with random 2-bit codes for 16 features, on
  the free-running bench (hw/freerun.py), as `qgnn verify` runs whole stages.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from qgnn.hw.verify import build_rtl, params_for_stages, run_cocotb
from qgnn.model.golden.format import write_vectors
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import rules

from qgnn.core.timing import aggregation_cycles

HERE = Path(__file__).resolve().parent
TB = "hw_tb_engine"

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="iverilog not installed"),
]


def run_bt_tb(tmp: Path, stages: list, pes: int, latency: int, testcase: str | None = None,
              stall: float = 0.3, seed: int = 1) -> list:
    """Write ``stages`` as a vector set, build the engine ``qgnn verify`` would pick (the
    truncated one) and run the testbench; return the exact test's measurements."""
    vec = write_vectors(tmp / "vectors", stages, {"test": "hw bt rtl"})
    prm = params_for_stages(stages, pes=pes)
    assert prm.truncated and prm.bits == 2
    runner = build_rtl(prm, tmp / "build", "icarus")
    result = tmp / "result.json"
    cfg = {"vectors": str(vec), "params": prm.to_dict(), "latency": latency, "stall": stall,
           "seed": seed, "result": str(result)}
    run_cocotb(runner, "icarus", TB, cfg, tmp / "run", testcase=testcase,
               extra_paths=[str(HERE)])
    return json.loads(result.read_text())


def random_bt_stages(seed: int) -> list[AggregationStage]:
    rng = np.random.default_rng(seed)
    shapes = [  # nodes, features, degree, isolated, self-loops, z_in, z_out, thresholds
        (37, 20, 3.0, 0.1, True, 0, 255, rules.bt_thresholds(3)),
        (25, 70, 1.0, 0.5, False, 255, 0, rules.bt_thresholds(-3)[:2] + (256,)),
        (2, 9, 2.0, 0.0, True, None, None, rules.bt_thresholds(0)),
        (30, 33, 6.0, 0.2, True, 128, 77, rules.bt_thresholds(1)),
    ]
    out = []
    for k, (n, f, d, iso, loops, zi, zo, thr) in enumerate(shapes):
        s = random_stage(rng, num_nodes=n, features=f, bits=2, avg_degree=d,
                         isolated_fraction=iso, self_loops=loops, name=f"bt{k}", truncated=True)
        out.append(dataclasses.replace(
            s, zero_point_in=s.zero_point_in if zi is None else zi,
            zero_point_out=s.zero_point_out if zo is None else zo, out_thresholds=thr))
    return out


def test_random_bt_stages_icarus(tmp_path: Path) -> None:
    """Both testbench tests (exact words and cycles; stalls, mid-stream reset, rerun) on four
    random BT stages; the exact test's measurements are checked here as well."""
    stages = random_bt_stages(seed=21)
    assert [s.words_per_row for s in stages] == [1, 3, 1, 2]
    assert any(int(n) == 0 for s in stages for n in s.row_lengths)
    res = run_bt_tb(tmp_path, stages, pes=3, latency=2)
    assert [r["name"] for r in res] == [s.name for s in stages]
    for r, s in zip(res, stages, strict=True):
        assert r["mismatches"] == 0
        assert r["rtl_cycles"] == r["expected_cycles"] == aggregation_cycles(
            s.row_lengths, s.words_per_row, 3, 2)


def test_cora_bt_icarus(tmp_path: Path, data_root: str) -> None:
    """Cora's CSR (A + I) as a BT stage: random 2-bit codes, 16 features (one 64-bit word per
    row, 16 pad lanes), per-row factors near 1/n_i, BT* thresholds: every word equal, cycles
    equal qgnn.core.timing."""
    from qgnn.model.datasets import load_dataset
    from qgnn.model.nn.graph_ops import graph_ops

    g = graph_ops(load_dataset("cora", root=data_root))
    indptr, indices = g.indptr.numpy(), g.indices.numpy()
    n = int(indptr.shape[0]) - 1
    rng = np.random.default_rng(7)
    lengths = np.maximum(np.diff(indptr), 1)
    m, s = rules.multiplier_shift(rng.uniform(0.5, 1.5, size=n) / lengths)
    stage = AggregationStage(
        name="cora.bt.aggregate", indptr=indptr, indices=indices,
        codes=rng.integers(0, 4, size=(n, 16)), bits=2, out_bits=2, zero_point_in=100,
        zero_point_out=140, multiplier=m, shift=s, in_level=85, out_grid_bits=8,
        out_thresholds=rules.bt_thresholds(-2))
    assert (stage.num_nodes, stage.num_terms, stage.max_terms) == (2708, 13264, 169)
    assert stage.corrected_width == 17
    _, out = stage.compute()
    assert set(np.unique(out)) == {0, 1, 2, 3}
    from qgnn.hw.verify import verify_stages

    rep = verify_stages([stage], pes=4, latency=2, bench="freerun")
    assert rep.designs[0]["truncated"] is True and rep.ok
    (r,) = rep.stages
    assert (r.num_nodes, r.num_terms, r.words_per_row) == (2708, 13264, 1)
    assert r.truncated and r.bench == "freerun"
    assert r.mismatches == 0 and r.writes == 2708
    assert not r.overflow and not r.mem_error
    assert r.rtl_cycles == r.dut_cycles == r.expected_cycles == aggregation_cycles(
        stage.row_lengths, 1, 4, 2)


def test_trained_cora_bt_star_model_verifies(tmp_path: Path, data_root: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """End to end as a user runs it: `qgnn export --truncation bt_star` of a GCN trained on Cora
    (layer 1: 2708 rows, 13264 terms, 7 BT* features), then `qgnn verify` on Icarus."""
    from qgnn.sweeps.cli import main

    vec = tmp_path / "vec"
    assert main(["export", "--dataset", "cora", "--data-root", data_root, "--model", "gcn",
                 "--truncation", "bt_star", "--layer", "1", "--epochs", "20", "--threads", "1",
                 "--quiet", "--out", str(vec)]) == 0
    capsys.readouterr()
    report = tmp_path / "verify.json"
    assert main(["verify", "--vectors", str(vec), "--json", str(report)]) == 0  # freerun
    out = capsys.readouterr().out
    assert "[BT]" in out and "0 mismatches" in out
    res = json.loads(report.read_text())
    assert res["ok"] and res["truncated"] and res["mismatches"] == 0
    assert res["bench"] == "freerun"
    (st,) = res["stages"]
    assert st["name"] == "layer1.aggregate" and st["truncated"]
    assert st["outputs_checked"] == 2708  # one 64-bit word of 7 codes per row
    assert st["rtl_cycles"] == st["expected_cycles"] and st["cycles_ok"]
