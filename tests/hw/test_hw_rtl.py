"""RTL tests: the exported Verilog on Icarus (marker ``rtl``) and Verilator (``verilator``),
driven through cocotb_tools.runner with the testbench module ``hw_tb_engine``.

- random graphs (several shapes, isolated nodes, 1..3 words per row) at INT2/INT4/INT8: exact
  words and cycles with ideal memory; random valid/ready stalls and a reset in mid-stream;
- the golden vectors model/ exports for Cora (``qgnn export``, layer-0 aggregation: 2708 rows,
  13264 terms, 64 features) at INT2 and INT4 (INT8 is marked slow) on the free-running bench
  (hw/freerun.py, as `qgnn verify` runs them): every output word equal, cycles equal to
  qgnn.core.timing and to the engine's register, no overflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from qgnn.hw.verify import build_rtl, params_for_stages, run_cocotb
from qgnn.model.golden.format import write_vectors
from qgnn.model.golden.stage import random_stage
from sim_markers import needs_icarus, needs_verilator

HERE = Path(__file__).resolve().parent
TB = "hw_tb_engine"


def random_stages(bits: int, seed: int) -> list:
    """Several small stages of different shapes (N < P included)."""
    rng = np.random.default_rng(seed)
    shapes = [  # num_nodes, features, avg_degree, isolated_fraction, self_loops
        (37, 20, 3.0, 0.1, True),
        (25, 70, 1.0, 0.5, False),
        (2, 9, 2.0, 0.0, True),
        (30, 33, 6.0, 0.2, True),
    ]
    out = []
    for k, (n, f, d, iso, loops) in enumerate(shapes):
        out.append(random_stage(rng, num_nodes=n, features=f, bits=bits, avg_degree=d,
                                isolated_fraction=iso, self_loops=loops, name=f"random{k}"))
    return out


def run_tb(tmp: Path, stages: list, simulator: str, pes: int, latency: int,
           testcase: str | None = None, stall: float = 0.3, seed: int = 1) -> list | None:
    """Write ``stages`` as a vector set, build the engine and run the testbench."""
    vec = write_vectors(tmp / "vectors", stages, {"test": "hw rtl"})
    prm = params_for_stages(stages, pes=pes)
    runner = build_rtl(prm, tmp / "build", simulator)
    result = tmp / "result.json"
    cfg = {"vectors": str(vec), "params": prm.to_dict(), "latency": latency, "stall": stall,
           "seed": seed, "result": str(result)}
    run_cocotb(runner, simulator, TB, cfg, tmp / "run", testcase=testcase, extra_paths=[str(HERE)])
    return json.loads(result.read_text()) if result.is_file() else None


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_random_graphs_icarus(bits: int, tmp_path: Path) -> None:
    run_tb(tmp_path, random_stages(bits, seed=bits), "icarus", pes=3, latency=2)


def cora_vectors(bits: int, out: Path, data_root: str) -> Path:
    """Golden vectors that model/ exports for Cora (``qgnn export``): layer 0's aggregation of a
    GCN trained briefly at ``bits`` (2708 rows, 13264 terms, 64 features). ``$QGNN_CORA_VECTORS``
    may name a directory with ready sets ``int<bits>/`` instead (no training)."""
    import os

    from qgnn.sweeps.cli import main

    ready = os.environ.get("QGNN_CORA_VECTORS")
    if ready and (Path(ready) / f"int{bits}" / "manifest.json").is_file():
        return Path(ready) / f"int{bits}"
    rc = main(["export", "--dataset", "cora", "--model", "gcn", "--bits", str(bits),
               "--layer", "0", "--epochs", "20", "--threads", "1", "--quiet",
               "--data-root", data_root, "--out", str(out)])
    assert rc == 0
    return out


def run_vectors_freerun(tmp: Path, vec: Path, simulator: str, pes: int, latency: int) -> list:
    """Every stage of ``vec`` on the free-running bench; checks what the driven bench's exact
    test checks (all words, each written once, cycles = contract = the engine's register, no
    overflow) with the contract computed here from the set's CSR; returns the stage reports."""
    from qgnn.hw.verify import verify_vectors
    from qgnn.model.golden.format import read_vectors

    from qgnn.core.timing import aggregation_cycles

    stages = read_vectors(vec, check=False).stages
    rep = verify_vectors(vec, simulator=simulator, pes=pes, latency=latency, bench="freerun",
                         work_dir=tmp / "verify")
    assert rep.bench == "freerun" and len(rep.stages) == len(stages)
    for r, g in zip(rep.stages, stages, strict=True):
        st = g.stage
        want = aggregation_cycles(st.row_lengths, st.words_per_row, pes, latency)
        assert r.mismatches == 0, (r.name, r.first_mismatch)
        assert r.writes == r.outputs_checked == st.num_nodes * st.words_per_row
        assert r.rtl_cycles == r.dut_cycles == r.expected_cycles == want
        assert not r.overflow and not r.mem_error and r.completed
    assert rep.ok
    return rep.stages


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("bits", [
    2, 4, pytest.param(8, marks=pytest.mark.slow),
])
def test_cora_icarus(bits: int, tmp_path: Path, data_root: str) -> None:
    vec = cora_vectors(bits, tmp_path / "vectors", data_root)
    res = run_vectors_freerun(tmp_path, vec, "icarus", pes=4, latency=1)
    (r,) = [x for x in res if x.name == "layer0.aggregate"]
    assert (r.num_nodes, r.num_terms) == (2708, 13264)
    assert r.words_per_row == -(-64 // (64 // bits))
    assert r.mismatches == 0 and r.rtl_cycles == r.expected_cycles


@pytest.mark.verilator
@needs_verilator
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_random_graphs_verilator(bits: int, tmp_path: Path) -> None:
    run_tb(tmp_path, random_stages(bits, seed=10 + bits), "verilator", pes=2, latency=3)


@pytest.mark.verilator
@needs_verilator
@pytest.mark.parametrize("bits", [2, 4, 8])
def test_cora_verilator(bits: int, tmp_path: Path, data_root: str) -> None:
    vec = cora_vectors(bits, tmp_path / "vectors", data_root)
    res = run_vectors_freerun(tmp_path, vec, "verilator", pes=4, latency=2)
    assert all(r.mismatches == 0 and r.rtl_cycles == r.expected_cycles for r in res)
