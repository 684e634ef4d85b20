"""The free-running RTL bench (hw/freerun.py, hw/cocotb_freerun.py): memories, latency and
stalls in a Verilog harness, cocotb only starts the run and reads the output memory once.

- pure Python: the output-dump reader (comments, ``@`` addresses, unwritten and unknown words),
  the word comparison, shape and stall-probability errors, the harness text;
- Icarus (``rtl``): random plain and BT stages with stalls off (every word equal, cycles equal
  to qgnn.core.timing and to the engine's register) and on (every word equal, more cycles);
  the stall seed changes the cycles but not the words; a corrupted expected word is reported
  with its node, word and lane; the free-running and the driven bench agree;
- Verilator (``verilator``): random stages with stalls off and on, and Cora's CSR.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from qgnn.hw.freerun import (
    HarnessShape,
    compare_outputs,
    harness_verilog,
    read_dump,
    stall_threshold,
)
from qgnn.hw.memimage import memory_image
from qgnn.hw.params import EngineParams
from qgnn.hw.verify import params_for_stages, verify_stages, verify_vectors
from qgnn.model.golden import packing
from qgnn.model.golden.format import write_vectors
from qgnn.model.golden.stage import random_stage
from qgnn.model.integer import rules
from sim_markers import needs_icarus, needs_verilator

from qgnn.core.timing import aggregation_cycles


def plain_stages(bits: int, seed: int) -> list:
    """Small stages of several shapes: isolated rows, 1..3 words per row, N < P."""
    rng = np.random.default_rng(seed)
    shapes = [(37, 20, 3.0, 0.1, True), (25, 70, 1.0, 0.5, False), (2, 9, 2.0, 0.0, True),
              (30, 33, 6.0, 0.2, True)]
    return [random_stage(rng, num_nodes=n, features=f, bits=bits, avg_degree=d,
                         isolated_fraction=iso, self_loops=loops, name=f"r{k}")
            for k, (n, f, d, iso, loops) in enumerate(shapes)]


def bt_stages(seed: int) -> list:
    rng = np.random.default_rng(seed)
    out = []
    for k, (n, f, zi, zo, skew) in enumerate([(31, 20, 0, 255, 3), (19, 40, 255, 0, -3),
                                             (3, 9, 128, 77, 0)]):
        s = random_stage(rng, num_nodes=n, features=f, bits=2, avg_degree=3.0,
                         isolated_fraction=0.2, name=f"bt{k}", truncated=True)
        out.append(dataclasses.replace(s, zero_point_in=zi, zero_point_out=zo,
                                       out_thresholds=rules.bt_thresholds(skew)))
    return out


def _check_exact(rep, stages, pes: int, latency: int) -> None:
    assert rep.bench == "freerun" and rep.ok
    assert [s.name for s in rep.stages] == [s.name for s in stages]
    for got, st in zip(rep.stages, stages, strict=True):
        want = aggregation_cycles(st.row_lengths, st.words_per_row, pes, latency)
        assert got.mismatches == 0 and got.first_mismatch is None
        assert got.outputs_checked == st.num_nodes * st.words_per_row
        assert got.writes == got.outputs_checked
        assert got.rtl_cycles == got.dut_cycles == got.expected_cycles == want
        assert not got.overflow and not got.mem_error and got.completed
        assert not got.stalled and got.bench == "freerun"


def _check_stalled(rep, stages, pes: int, latency: int) -> list[int]:
    assert rep.ok and rep.stalls > 0
    cycles = []
    for got, st in zip(rep.stages, stages, strict=True):
        want = aggregation_cycles(st.row_lengths, st.words_per_row, pes, latency)
        assert got.mismatches == 0 and got.stalled
        assert got.writes == got.outputs_checked
        assert got.rtl_cycles == got.dut_cycles > want, (got.name, got.rtl_cycles, want)
        cycles.append(got.rtl_cycles)
    return cycles


# ------------------------------------------------------------------------------ pure Python
def test_read_dump_and_compare(tmp_path: Path) -> None:
    f = tmp_path / "out.hex"
    # word width 8: bit 8 marks a written word; a comment, an unwritten word, an x word, and an
    # @ address jump as $writememh may write them
    f.write_text("// 0x00000000\n1ab\n0ff\n1xx\n@4\n100\n1ff\n", encoding="ascii")
    got = read_dump(f, word_width=8, count=6)
    assert got == [0xAB, None, None, None, 0x00, 0xFF]
    assert compare_outputs([0xAB, 0xFF, 1, 2, 0, 0xFF], got) == (3, 1)
    assert compare_outputs([0xAB], got[:1]) == (0, None)
    with pytest.raises(ValueError, match="has 6 words, expected 7"):
        read_dump(f, word_width=8, count=7)


def test_shape_and_stall_errors() -> None:
    st = plain_stages(4, seed=1)
    shape = HarnessShape.for_stages(st)
    assert shape.desc == 37 and shape.out == max(s.num_nodes * s.words_per_row for s in st)
    prm = params_for_stages(st, pes=2)
    small = HarnessShape(desc=2, idx=8, feat=8, out=8)
    with pytest.raises(ValueError, match="desc entries exceed the harness depth 2"):
        small.fits(memory_image(st[0], prm))
    with pytest.raises(ValueError, match="depth idx must be an int >= 1"):
        HarnessShape(desc=1, idx=0, feat=1, out=1)
    assert stall_threshold(0.0) == 0 and stall_threshold(0.5) == 32768
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        stall_threshold(1.0)
    with pytest.raises(ValueError, match="bench 'fast' not supported"):
        verify_stages(st, bench="fast")
    with pytest.raises(ValueError, match="stalls must be a probability"):
        verify_stages(st, stalls=-0.1)
    with pytest.raises(ValueError, match="repeat > 1 needs the free-running bench"):
        verify_stages(st, bench="driven", repeat=2)


def test_harness_text() -> None:
    prm = EngineParams(bits=2, pes=3, truncated=True, max_terms=20)
    text = harness_verilog(prm, HarnessShape(desc=5, idx=6, feat=7, out=8))
    assert text.count("always @(posedge clk)") == 1          # one process for all ports
    for k in range(3):
        for port in ("desc_req", "idx_resp", "feat_resp", "out"):
            assert f".{port}__{k}__valid(" in text
    assert ".thr3(thr3)" in text and "$readmemh" in text and "$writememh" in text
    clocked = harness_verilog(prm, HarnessShape(1, 1, 1, 1), hdl_clock=True)
    assert "always #5 clk = ~clk;" in clocked and "input clk" not in clocked


# ------------------------------------------------------------------------------ Icarus
@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("bits, pes, latency", [(2, 3, 2), (4, 2, 1), (8, 4, 3)])
def test_random_stages_exact_icarus(bits: int, pes: int, latency: int) -> None:
    stages = plain_stages(bits, seed=bits)
    rep = verify_stages(stages, pes=pes, latency=latency)
    _check_exact(rep, stages, pes, latency)


@pytest.mark.rtl
@needs_icarus
def test_stalls_seed_changes_cycles_not_words_icarus(tmp_path: Path) -> None:
    stages = plain_stages(4, seed=11)
    vec = write_vectors(tmp_path / "vec", stages, {"test": "freerun"})
    a = verify_vectors(vec, pes=3, latency=2, stalls=0.3, seed=1, repeat=2)
    b = verify_vectors(vec, pes=3, latency=2, stalls=0.3, seed=2)
    ca = _check_stalled(a, stages, 3, 2)
    cb = _check_stalled(b, stages, 3, 2)
    assert ca != cb                         # another stall pattern
    # the two runs of seed 1 on one build were each checked and agreed: deterministic
    assert all(s.repeats == 2 and s.consistent and len(s.wall_s_runs) == 2 for s in a.stages)
    assert all(s.wall_s == min(s.wall_s_runs) for s in a.stages)


@pytest.mark.rtl
@needs_icarus
def test_bt_stages_icarus() -> None:
    stages = bt_stages(seed=5)
    rep = verify_stages(stages, pes=3, latency=2)
    assert all(s.truncated for s in rep.stages)
    _check_exact(rep, stages, 3, 2)
    _check_stalled(verify_stages(stages, pes=3, latency=2, stalls=0.25, seed=9), stages, 3, 2)


@pytest.mark.rtl
@needs_icarus
def test_corrupted_expected_word_is_reported_icarus(tmp_path: Path) -> None:
    """One expected code changed (consistently repacked): exactly one wrong word, located."""
    stages = plain_stages(4, seed=3)[:2]
    vec = write_vectors(tmp_path / "vec", stages, {"test": "freerun mismatch"})
    f = vec / "stage01.npz"
    arrays = dict(np.load(f))
    codes = arrays["expected_codes"].astype(np.int64)
    node, feat = 7, 37          # 16 lanes per word: word 2, lane 5
    codes[node, feat] = (codes[node, feat] + 1) % 16
    arrays["expected_codes"] = codes.astype(np.uint8)
    zo = json.loads((vec / "manifest.json").read_text())["stages"][1]["zero_point_out"]
    arrays["expected_packed"] = packing.pack_codes(codes, 4, 64, int(zo))
    np.savez_compressed(f, **arrays)
    rep = verify_vectors(vec, pes=2, latency=1)
    assert not rep.ok and rep.mismatches == 1
    assert rep.stages[0].mismatches == 0
    name, mm = rep.first_mismatch()
    assert (name, mm.node, mm.word, mm.lane, mm.feature) == ("r1", node, 2, 5, feat)
    assert mm.got is not None and mm.got != mm.expected
    # the cycle count is still the contract's: only the words differ
    assert all(s.cycles_ok for s in rep.stages)


@pytest.mark.rtl
@needs_icarus
def test_timeout_is_a_failure_icarus() -> None:
    """A run cut off before done (max_cycles below the contract) is reported as not completed,
    and the set fails (never a silent pass on partial output)."""
    stages = plain_stages(4, seed=13)[:1]
    rep = verify_stages(stages, pes=2, latency=1, max_cycles=20)
    (s,) = rep.stages
    assert not s.completed and not s.ok and not rep.ok
    assert 20 <= s.rtl_cycles < s.expected_cycles
    assert s.mismatches > 0      # words never written are mismatches


@pytest.mark.rtl
@needs_icarus
def test_freerun_agrees_with_driven_bench_icarus(tmp_path: Path) -> None:
    stages = plain_stages(2, seed=21)[:3]
    vec = write_vectors(tmp_path / "vec", stages, {"test": "benches"})
    fr = verify_vectors(vec, pes=2, latency=3, bench="freerun")
    dr = verify_vectors(vec, pes=2, latency=3, bench="driven")
    assert fr.ok and dr.ok and dr.bench == "driven"
    assert [s.rtl_cycles for s in fr.stages] == [s.rtl_cycles for s in dr.stages]
    assert [s.outputs_checked for s in fr.stages] == [s.outputs_checked for s in dr.stages]


# ------------------------------------------------------------------------------ Verilator
@pytest.mark.verilator
@needs_verilator
def test_random_stages_verilator(tmp_path: Path) -> None:
    stages = plain_stages(4, seed=31)
    vec = write_vectors(tmp_path / "vec", stages, {"test": "freerun verilator"})
    _check_exact(verify_vectors(vec, simulator="verilator", pes=2, latency=3), stages, 2, 3)
    a = _check_stalled(verify_vectors(vec, simulator="verilator", pes=2, latency=3,
                                      stalls=0.3, seed=4), stages, 2, 3)
    b = _check_stalled(verify_vectors(vec, simulator="verilator", pes=2, latency=3,
                                      stalls=0.3, seed=5), stages, 2, 3)
    assert a != b


@pytest.mark.verilator
@needs_verilator
def test_bt_stages_verilator() -> None:
    stages = bt_stages(seed=41)
    _check_exact(verify_stages(stages, simulator="verilator", pes=2, latency=1), stages, 2, 1)


@pytest.mark.verilator
@needs_verilator
def test_cora_csr_verilator(cora) -> None:
    from qgnn.hw.stages import graph_stage

    st = graph_stage(cora.edge_index.numpy(), int(cora.num_nodes), bits=4, features=64,
                     seed=2, name="cora.int4")
    assert (st.num_nodes, st.num_terms) == (2708, 13264)
    _check_exact(verify_stages([st], simulator="verilator", pes=4, latency=2), [st], 4, 2)
