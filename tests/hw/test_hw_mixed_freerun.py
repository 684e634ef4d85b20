"""The mixed free-running bench (hw/mixed_freerun.py, hw/cocotb_mixed_freerun.py): the
harness of hw/freerun.py around ``qgnn_mixed_engine``, and the reset check.

- pure Python: the harness's memory and control widths equal the exported engine's ports;
  the harness shape and hex files; the seeded reset cycle; the cleared-state rule;
- Icarus (``rtl``): random mixed stages (K = 3 with permuted output widths, N < P, K = 1) on
  the free-running bench: every word, cycles = contract = the engine's register, reset check;
  with stalls (more cycles, words exact; two runs on one build agree); a corrupted expected
  word located at its row, word and lane;
- Verilator (``verilator``): the same stages, stall-free and stalled, with the same cycle
  counts as Icarus (the harness's stalls depend only on the seed).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from qgnn.hw.freerun import HarnessShape, harness_verilog
from qgnn.hw.mixed_export import generate_mixed_verilog
from qgnn.hw.mixed_freerun import (
    MIXED_HARNESS_NAME,
    mixed_harness_verilog,
    mixed_shape_for_stages,
    reset_cleared,
    reset_cycle,
    write_mixed_stage_files,
)
from qgnn.hw.mixed_memimage import mixed_memory_image
from qgnn.hw.mixed_params import MixedParams
from qgnn.hw.params import EngineParams
from qgnn.hw.verify import verify_vectors
from qgnn.model.golden.format import write_vectors
from qgnn.model.golden.mixed_stage import random_mixed_stage
from sim_markers import needs_icarus, needs_verilator

from qgnn.core.timing import mixed_aggregation_cycles

PES, LATENCY = 3, 2


def stages() -> list:
    """K = 3 (INT2/4/8 inputs, outputs permuted), degree-0 rows, F not a multiple of the
    lanes; N < P; K = 1 (INT2 only); 32-bit words."""
    shapes = [(1, 17, 13, (2, 4, 8), (4, 8, 2), 3.0, 0.2), (3, 2, 11, (4, 2, 8), None, 1.0, 0.5),
              (4, 9, 16, (2,), None, 4.0, 0.1)]
    return [random_mixed_stage(seed, num_nodes=n, features=f, bits=b, out_bits=o, avg_degree=d,
                               isolated_fraction=iso, word_width=32, r_bits=6, name=f"mx{seed}")
            for seed, n, f, b, o, d, iso in shapes]


def _contract(st, pes: int = PES, latency: int = LATENCY) -> int:  # noqa: ANN001
    return mixed_aggregation_cycles([int(v) for v in st.row_in_words],
                                    [int(v) for v in st.out_words], pes, latency)


def _input_widths(verilog: str) -> dict[str, int]:
    """``name -> width`` of every port declared in a Verilog text (``input [7:0] x;``)."""
    out = {}
    for m in re.finditer(r"^\s*(?:input|output)\s+(?:reg\s+)?(?:\[(\d+):0\]\s+)?(\w+)",
                         verilog, re.M):
        out[m.group(2)] = int(m.group(1)) + 1 if m.group(1) else 1
    return out


# ------------------------------------------------------------------------------ pure Python
def test_harness_widths_match_the_exported_engine() -> None:
    """Every control input of the harness has the engine's width, and its response queues
    have the engine's descriptor and index payload widths (read from the exported Verilog)."""
    prm = MixedParams(in_widths=(2, 4, 8), out_widths=(8, 2), word_width=32, pes=2,
                      max_terms=9, max_features=13, r_bits=5, max_buckets=3)
    engine = _input_widths(generate_mixed_verilog(prm))
    text = mixed_harness_verilog(prm, HarnessShape(desc=3, idx=4, feat=5, out=6))
    harness = _input_widths(text)
    controls = ["num_nodes", "features"] + [f"{n}__{k}" for n in
                                            ("in_sel", "z_in", "weight", "out_sel", "z_out")
                                            for k in range(3)]
    for name in controls:
        assert harness[name] == engine[name], name
        assert f".{name}({name})" in text
    assert f"module {MIXED_HARNESS_NAME} (" in text and "qgnn_mixed_engine engine (" in text
    desc_w = engine["desc_resp__0__payload"]
    idx_w = engine["idx_resp__0__payload"]
    assert f"reg [{desc_w - 1}:0] desc_mem [0:2];" in text
    assert f"reg [{idx_w - 1}:0] idx_mem [0:3];" in text
    assert f"reg [{desc_w - 1}:0] desc1_resp_p;" in text
    assert text.count("always @(posedge clk)") == 1
    assert harness["any_valid"] == 1 and "any_valid = desc0_req_v | idx0_req_v" in text
    # the uniform harness has no such port
    assert "any_valid" not in harness_verilog(EngineParams(bits=2, pes=2),
                                              HarnessShape(1, 1, 1, 1))


def test_shape_and_stage_files(tmp_path: Path) -> None:
    st = stages()
    shape = mixed_shape_for_stages(st)
    assert shape.desc == 17 and shape.idx == max(s.num_terms for s in st)
    assert shape.feat == max(len(s.input_words()) for s in st)
    assert shape.out == max(len(s.output_words()) for s in st)
    prm = MixedParams(in_widths=(2, 4, 8), word_width=32, pes=PES, max_terms=20,
                      max_features=16, r_bits=6)
    img = mixed_memory_image(st[0], prm)
    write_mixed_stage_files(img, shape, tmp_path)
    feat = (tmp_path / "qgnn_fr_feat.hex").read_text().split()
    assert [int(v, 16) for v in feat[:len(img.feat_words)]] == img.feat_words
    assert len(feat) == shape.feat
    with pytest.raises(ValueError, match="idx entries exceed the harness depth 1"):
        write_mixed_stage_files(img, HarnessShape(desc=17, idx=1, feat=99, out=99), tmp_path)
    with pytest.raises(ValueError, match="no mixed stages"):
        mixed_shape_for_stages([])


def test_reset_cycle_and_cleared_state() -> None:
    for contract in (9, 74, 2255, 11939):
        cuts = {reset_cycle(contract, seed, k) for seed in range(6) for k in range(3)}
        assert all(max(2, contract // 4) <= c <= max(2, 3 * contract // 4) for c in cuts)
        if contract > 50:
            assert len(cuts) > 3             # the seed and the stage index move it
    assert reset_cycle(74, 1, 0) == reset_cycle(74, 1, 0)
    zero = {"busy": 0, "done": 0, "overflow": 0, "cycles": 0, "any_valid": 0}
    assert reset_cleared(zero)
    for k in zero:
        assert not reset_cleared({**zero, k: 1})


# ------------------------------------------------------------------------------ Icarus
def _check(rep, st: list, stalled: bool) -> list[int]:  # noqa: ANN001
    assert rep.ok and rep.bench == "freerun"
    cycles = []
    for got, s in zip(rep.stages, st, strict=True):
        want = _contract(s)
        assert got.kind == "mixed" and got.bench == "freerun" and got.stalled == stalled
        assert got.mismatches == 0 and got.first_mismatch is None
        assert got.outputs_checked == got.writes == len(s.output_words())
        assert not got.overflow and not got.mem_error and got.completed
        if stalled:
            assert got.rtl_cycles == got.dut_cycles > want == got.expected_cycles
        else:
            assert got.rtl_cycles == got.dut_cycles == got.expected_cycles == want
        assert got.reset_ok is True and max(2, want // 4) <= got.reset_at <= 3 * want // 4
        cycles.append(got.rtl_cycles)
    return cycles


@pytest.mark.rtl
@needs_icarus
def test_random_mixed_stages_freerun_icarus(tmp_path: Path) -> None:
    """Exact words and contract cycles; with stalls (seed 5, two runs on one build) exact
    and slower; then one corrupted expected code is located at its row, word and lane."""
    st = stages()
    vec = write_vectors(tmp_path / "vec", st, {"test": "mixed freerun"})
    _check(verify_vectors(vec, pes=PES, latency=LATENCY), st, stalled=False)
    rep = verify_vectors(vec, pes=PES, latency=LATENCY, stalls=0.3, seed=5, repeat=2)
    _check(rep, st, stalled=True)
    assert all(s.repeats == 2 and s.consistent and len(s.wall_s_runs) == 2 for s in rep.stages)
    # corrupt stage 0, row 6, feature 10 (output width of that row's bucket)
    s0 = st[0]
    node, feature = 6, 10
    bits = int(s0.out_bits[int(s0.dst_bucket[node])])
    lanes = 32 // bits
    f = vec / json.loads((vec / "manifest.json").read_text())["stages"][0]["file"]
    arrays = dict(np.load(f))
    codes = arrays["expected_codes"].astype(np.int64)
    codes[node, feature] = (codes[node, feature] + 1) % (1 << bits)
    arrays["expected_codes"] = codes.astype(np.uint8)
    arrays["expected_packed"] = s0.packed_output(codes)
    np.savez_compressed(f, **arrays)
    bad = verify_vectors(vec, pes=PES, latency=LATENCY)
    assert not bad.ok and [s.mismatches for s in bad.stages] == [1, 0, 0]
    mm = bad.stages[0].first_mismatch
    assert (mm.node, mm.word, mm.lane, mm.feature) == (node, feature // lanes,
                                                      feature % lanes, feature)
    assert mm.got is not None and mm.got != mm.expected


def test_mixed_simulation_netlist_has_the_exported_ports_and_one_process() -> None:
    """The Icarus simulation netlist of the mixed engine (hw.simnetlist): the exported mixed
    engine's ports and widths, every clocked process merged into one, no combinational ones."""
    from qgnn.hw.mixed_params import MIXED_TOP_NAME
    from qgnn.hw.simnetlist import mixed_simulation_verilog

    prm = MixedParams(in_widths=(2, 8), out_widths=(8, 2), word_width=32, pes=1,
                      max_terms=9, max_features=13, r_bits=5, max_buckets=2)
    sim = mixed_simulation_verilog(prm)
    exported = generate_mixed_verilog(prm)
    def top_ports(text: str) -> dict[str, int]:  # the toplevel's own, no function inputs
        body = text.split(f"module {MIXED_TOP_NAME}(", 1)[1].split("endmodule", 1)[0]
        return _input_widths(re.sub(r"function .*?endfunction", "", body, flags=re.S))

    assert top_ports(sim) == top_ports(exported) != {}
    assert sim.count("always @(posedge clk)") == 1 and "always @*" not in sim


@pytest.mark.rtl
@needs_icarus
def test_both_mixed_netlists_give_the_same_run_icarus(tmp_path: Path) -> None:
    """With random stalls (seed 5), the exported and the simulation netlist give the same
    words, the same (stalled) cycles and the same reset check; the report says which ran."""
    st = stages()[:2]
    vec = write_vectors(tmp_path / "vec", st, {"test": "mixed netlists"})
    runs = {n: verify_vectors(vec, pes=PES, latency=LATENCY, stalls=0.3, seed=5, netlist=n)
            for n in ("exported", "simulation")}
    for name, rep in runs.items():
        _check(rep, st, stalled=True)
        assert [d["netlist"] for d in rep.to_dict()["designs"]] == [name]
    a, b = (runs[n].stages for n in ("exported", "simulation"))
    assert [s.rtl_cycles for s in a] == [s.rtl_cycles for s in b]
    assert [s.reset_at for s in a] == [s.reset_at for s in b]
    with pytest.raises(ValueError, match="for icarus"):
        verify_vectors(vec, simulator="verilator", pes=PES, latency=LATENCY,
                       netlist="simulation")


# ------------------------------------------------------------------------------ Verilator
@pytest.mark.verilator
@needs_verilator
@needs_icarus
def test_random_mixed_stages_freerun_verilator(tmp_path: Path) -> None:
    """The same stages on Verilator: exact, contract cycles, reset check; with stalls the
    cycle counts equal Icarus's for the same seed."""
    st = stages()
    vec = write_vectors(tmp_path / "vec", st, {"test": "mixed freerun"})
    rep = verify_vectors(vec, simulator="verilator", pes=PES, latency=LATENCY)
    assert rep.simulator == "verilator"
    _check(rep, st, stalled=False)
    vl = _check(verify_vectors(vec, simulator="verilator", pes=PES, latency=LATENCY,
                               stalls=0.3, seed=5), st, stalled=True)
    ic = _check(verify_vectors(vec, pes=PES, latency=LATENCY, stalls=0.3, seed=5), st,
                stalled=True)
    assert vl == ic
