"""The bit-truncated INT2 (BT/BT*) datapath in amaranth.sim against the golden reference.

A truncated engine (``EngineParams(truncated=True)``) sums 2-bit codes as before, corrects with
``85 acc - n z_in`` (8-bit grid ``z_in``), requantizes onto the 8-bit grid (``z_out`` a grid
code) and snaps with three run-time thresholds (``model/integer/rules.py``). Expected words come
from ``AggregationStage.compute`` / ``packed_output`` (``model/golden/stage.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.hw.amsim import RequantVector, run_amaranth, run_requantizer
from qgnn.hw.memimage import engine_thresholds, memory_image
from qgnn.hw.params import EngineParams
from qgnn.hw.verify import design_groups, params_for_stages
from qgnn.model.golden import packing
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import rules

from qgnn.core.timing import aggregation_cycles

SETTINGS = settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def thresholds(draw) -> tuple[int, int, int]:
    """BT/BT* thresholds (skew -3..3), the same with the top one at 256 ("never"), or any
    ascending grid codes in 0..256."""
    kind = draw(st.sampled_from(["bt", "never", "any"]))
    t = rules.bt_thresholds(draw(st.integers(-3, 3)))
    if kind == "never":
        return (t[0], t[1], 256)
    if kind == "any":
        return tuple(sorted(draw(st.lists(st.integers(0, 256), min_size=3, max_size=3))))
    return t


def bt_stage(seed: int, nodes: int, features: int, degree: float, isolated: float,
             z_in: int | None, z_out: int | None, thr: tuple[int, ...],
             word_width: int = 32) -> AggregationStage:
    """A random BT stage (``random_stage(truncated=True)``) with the given zero points (``None``:
    keep the random one) and thresholds."""
    rng = np.random.default_rng(seed)
    s = random_stage(rng, num_nodes=nodes, features=features, bits=2, avg_degree=degree,
                     isolated_fraction=isolated, word_width=word_width, truncated=True)
    return dataclasses.replace(
        s, zero_point_in=s.zero_point_in if z_in is None else z_in,
        zero_point_out=s.zero_point_out if z_out is None else z_out, out_thresholds=thr)


def grid_zero_point() -> st.SearchStrategy:
    return st.sampled_from([0, 255, None]) | st.integers(0, 255)


@SETTINGS
@given(seed=st.integers(0, 2**20), pes=st.integers(1, 3), latency=st.integers(1, 4),
       nodes=st.integers(1, 16), features=st.integers(1, 40),
       degree=st.sampled_from([0.5, 2.0, 5.0]), isolated=st.sampled_from([0.0, 0.3, 0.9]),
       z_in=grid_zero_point(), z_out=grid_zero_point(), thr=thresholds())
def test_bt_engine_exact_words_and_cycles(seed, pes, latency, nodes, features, degree, isolated,
                                          z_in, z_out, thr) -> None:
    """Random BT stages (zero points 0 / 255 / any, skewed thresholds and 256, degree-0 rows,
    1..3 words per row with pad lanes), ideal memory: every word equal to the golden packed
    output, and the cycle count equal to qgnn.core.timing (the same 2-bit words as plain INT2)."""
    stage = bt_stage(seed, nodes, features, degree, isolated, z_in, z_out, thr)
    prm = EngineParams(bits=2, word_width=32, pes=pes, max_terms=max(1, stage.max_terms),
                       max_latency=4, truncated=True)
    img = memory_image(stage, prm)
    _, out = stage.compute()
    want = packing.words_as_ints(stage.packed_output(out), 32)
    assert img.expected == [w for row in want for w in row]
    assert img.thresholds == thr
    run = run_amaranth(prm, img, latency=latency)
    assert [run.outputs.get(a) for a in range(len(img.expected))] == img.expected
    assert run.writes == len(img.expected) and not run.duplicates and not run.overflow
    cycles = aggregation_cycles(img.row_lengths, img.words_per_row, pes, latency)
    assert run.cycles == cycles and run.dut_cycles == cycles


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**20), p=st.sampled_from([0.2, 0.5]), thr=thresholds())
def test_bt_engine_with_stalls(seed: int, p: float, thr: tuple[int, ...]) -> None:
    """Random valid/ready stalls on every port and on the output: the same words."""
    stage = bt_stage(seed, 12, 37, 3.0, 0.2, None, None, thr)
    prm = EngineParams(bits=2, word_width=32, pes=2, max_terms=max(1, stage.max_terms),
                       max_latency=3, truncated=True)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=2, p_req_stall=p, p_resp_stall=p, p_out_stall=p,
                       seed=seed)
    assert [run.outputs.get(a) for a in range(len(img.expected))] == img.expected
    assert run.writes == len(img.expected)


def test_bt_outputs_are_not_degenerate() -> None:
    """The random BT stages the tests use reach all four output codes, and pad lanes (input
    code z_in // 85) produce the per-row pad_output, which differs between rows."""
    stage = bt_stage(3, 40, 20, 3.0, 0.1, 128, 128, rules.bt_thresholds(2))
    _, out = stage.compute()
    assert set(np.unique(out)) == {0, 1, 2, 3}
    assert stage.pad_code_in == 128 // 85 == 1
    pads = stage.pad_output()
    assert len(set(pads.tolist())) > 1
    prm = EngineParams(bits=2, word_width=32, pes=3, max_terms=stage.max_terms, truncated=True)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=1)
    # 16 lanes per word: features 20..31 are lanes 4..15 of word 1, the pad lanes; their
    # codes are the pad_output of that row
    assert stage.words_per_row == 2
    for i in range(stage.num_nodes):
        word = run.outputs[2 * i + 1]
        assert [(word >> (2 * k)) & 3 for k in range(4, 16)] == [int(pads[i])] * 12


def test_bt_full_scale_widths() -> None:
    """Cora widths: max_terms 169 gives acc 9 bits and a 17-bit corrected sum (85 * 3 * 169 =
    43095). Rows of exactly 169 terms of code 3 (z_in 0) and of code 0 (z_in 255) reach both
    ends; with M = 1, s = 8 the grid codes are z_out + round(+-43095 / 256) = z_out +- 168
    (hand values), snapped with the BT thresholds 43, 128, 213."""
    prm = EngineParams(bits=2, word_width=16, pes=1, max_terms=169, truncated=True)
    assert (prm.acc_bits, prm.corrected_bits, prm.product_bits) == (9, 17, 33)
    assert (prm.z_in_bits, prm.z_out_bits, prm.threshold_bits) == (8, 8, 9)
    codes = np.array([[3] * 8, [0] * 8])
    thr = rules.bt_thresholds(0)
    assert thr == (43, 128, 213)
    cases = [  # (source row, z_in, z_out, expected grid code, expected 2-bit code)
        (0, 0, 0, 168, 2), (0, 0, 87, 255, 3), (1, 255, 255, 87, 1), (1, 255, 100, 0, 0),
        (1, 255, 210, 42, 0), (1, 255, 211, 43, 1),
    ]
    for src, z_in, z_out, grid, code in cases:
        stage = AggregationStage(
            name="full", indptr=np.array([0, 169]), indices=np.full(169, src), codes=codes,
            bits=2, out_bits=2, zero_point_in=z_in, zero_point_out=z_out,
            multiplier=np.array([1]), shift=np.array([8]), word_width=16, in_level=85,
            out_grid_bits=8, out_thresholds=thr)
        assert stage.corrected_width == 17
        c = 85 * 169 * codes[src, 0] - 169 * z_in
        assert abs(c) == 43095
        assert min(255, max(0, z_out + (168 if c > 0 else -168))) == grid
        _, out = stage.compute()
        assert out.tolist() == [[code] * 8]                 # the reference agrees by hand
        run = run_amaranth(prm, memory_image(stage, prm), latency=1)
        assert run.outputs[0] == int("".join([f"{code:02b}"] * 8), 2), (src, z_in, z_out)
        assert not run.overflow


def test_bt_overflow_flag_on_long_row() -> None:
    """A row longer than max_terms raises the sticky overflow flag in the truncated engine."""
    stage = bt_stage(4, 6, 8, 3.0, 0.0, 10, 20, rules.bt_thresholds(0))
    small = EngineParams(bits=2, word_width=32, pes=1, max_terms=max(1, stage.max_terms - 1),
                         truncated=True)
    big = EngineParams(bits=2, word_width=32, pes=1, max_terms=stage.max_terms, truncated=True)
    assert run_amaranth(small, memory_image(stage, big), latency=1).overflow
    assert not run_amaranth(big, memory_image(stage, big), latency=1).overflow


def test_bt_input_with_plain_output_and_small_grid() -> None:
    """A BT input with a plain 2-bit output (thresholds None) runs on the truncated engine with
    thresholds 1, 2, 3 (min(g, 3) = clamp(r + z_out, 0, 3)); an output grid of G < 8 bits maps
    its "never" threshold 2**G to 256."""
    rng = np.random.default_rng(9)
    base = random_stage(rng, num_nodes=20, features=21, bits=2, word_width=32, truncated=True)
    plain_out = dataclasses.replace(base, zero_point_out=2, out_grid_bits=None,
                                    out_thresholds=None)
    small_grid = dataclasses.replace(base, zero_point_out=9, out_grid_bits=4,
                                     out_thresholds=(3, 11, 16))
    assert engine_thresholds(plain_out) == (1, 2, 3)
    assert engine_thresholds(small_grid) == (3, 11, 256)
    prm = EngineParams(bits=2, word_width=32, pes=2, max_terms=base.max_terms, truncated=True)
    for stage in (plain_out, small_grid):
        img = memory_image(stage, prm)
        _, out = stage.compute()
        assert len(np.unique(out)) >= 3
        run = run_amaranth(prm, img, latency=2)
        assert [run.outputs.get(a) for a in range(len(img.expected))] == img.expected


# ---- rejection: what the RTL cannot run is an error naming the field ---------------------
def test_truncated_needs_int2() -> None:
    with pytest.raises(ValueError, match="truncated = True needs bits = 2"):
        EngineParams(bits=4, truncated=True)
    with pytest.raises(TypeError, match="truncated must be a bool"):
        EngineParams(bits=2, truncated=1)
    plain = EngineParams(bits=2, max_terms=169)
    assert (plain.corrected_bits, plain.z_in_bits, plain.num_thresholds) == (10, 2, 0)


def test_plain_stage_on_truncated_engine_and_vice_versa() -> None:
    rng = np.random.default_rng(11)
    plain = random_stage(rng, num_nodes=8, features=5, bits=2, word_width=32)
    bt = random_stage(rng, num_nodes=8, features=5, bits=2, word_width=32, truncated=True)
    kw = {"bits": 2, "word_width": 32, "pes": 1, "max_terms": 64}
    with pytest.raises(ValueError, match=r"is plain \(in_level 1, out_thresholds None\) but the "
                                         r"engine is bit-truncated"):
        memory_image(plain, EngineParams(**kw, truncated=True))
    with pytest.raises(ValueError, match=r"is bit-truncated \(in_level 85, out_thresholds "
                                         r"\[.*\]\) but the engine is plain; build it with "
                                         r"truncated = True"):
        memory_image(bt, EngineParams(**kw))
    # a run-time mismatch of image and engine is caught too
    img = memory_image(bt, EngineParams(**kw, truncated=True))
    with pytest.raises(ValueError, match="a plain engine takes 0"):
        run_amaranth(EngineParams(**kw), img)


def test_truncated_stages_the_rtl_cannot_run() -> None:
    rng = np.random.default_rng(12)
    bt = random_stage(rng, num_nodes=8, features=5, bits=2, word_width=32, truncated=True)
    prm = EngineParams(bits=2, word_width=32, pes=1, max_terms=64, truncated=True)
    # plain 2-bit input, BT output: in_level 1
    plain_in = dataclasses.replace(bt, in_level=1, zero_point_in=1)
    with pytest.raises(ValueError, match="in_level 1 != 85"):
        memory_image(plain_in, prm)
    # BT input, 8-bit output codes
    wide_out = dataclasses.replace(bt, out_bits=8, out_grid_bits=None, out_thresholds=None)
    with pytest.raises(ValueError, match="out_bits 8 != bits 2"):
        memory_image(wide_out, prm)
    with pytest.raises(ValueError, match="out_bits 8 != bits 2"):
        params_for_stages([wide_out])


def test_params_for_stages_picks_the_engine() -> None:
    rng = np.random.default_rng(13)
    plain = random_stage(rng, num_nodes=8, features=5, bits=2)
    bt = random_stage(rng, num_nodes=8, features=5, bits=2, truncated=True)
    assert params_for_stages([bt]).truncated and not params_for_stages([plain]).truncated
    with pytest.raises(ValueError, match=r"stages differ in truncated \(\[0, 1\]\)"):
        params_for_stages([plain, bt])
    groups = design_groups([bt, plain, bt])
    assert [(p.truncated, idx) for p, idx in groups] == [(False, [1]), (True, [0, 2])]


# ---- the requantizer alone --------------------------------------------------------------
Vector = RequantVector


def bt_reference(vec: Vector, z_out: int, thr: tuple[int, ...]) -> list[int]:
    """The BT rule written out from docs/smp.md section 3 (rules.requantize onto the 8-bit
    grid, then rules.snap)."""
    acc, n, z_in, mult, shift = vec
    c = 85 * np.asarray(acc, dtype=np.int64) - n * z_in
    g = rules.requantize(c, mult, shift, z_out, 8)
    return [int(x) for x in rules.snap(g, thr)]


@st.composite
def bt_requant_case(draw):
    max_terms = draw(st.sampled_from([1, 3, 169, 1000]))
    prm = EngineParams(bits=2, word_width=16, pes=1, max_terms=max_terms, truncated=True)
    vectors = []
    for _ in range(draw(st.integers(1, 5))):
        n = draw(st.integers(0, max_terms))
        acc = draw(st.lists(st.sampled_from([0, 3 * n]) | st.integers(0, 3 * n),
                            min_size=prm.lanes, max_size=prm.lanes))
        z_in = draw(st.sampled_from([0, 255]) | st.integers(0, 255))
        mult = draw(st.sampled_from([0, 1, (1 << 16) - 1]) | st.integers(0, (1 << 16) - 1))
        shift = draw(st.sampled_from([0, 8, prm.product_bits - 1, prm.product_bits, 63])
                     | st.integers(0, 63))
        vectors.append((acc, n, z_in, mult, shift))
    z_out = draw(st.sampled_from([0, 255]) | st.integers(0, 255))
    return prm, vectors, z_out, draw(thresholds()), draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bt_requant_case())
def test_bt_requant_matches_rules(case) -> None:
    """The requantizer with the 85x correction, grid clamp and snap, under input gaps and
    output stalls, equals the rule (saturation at both ends, ties, shifts past the width)."""
    prm, vectors, z_out, thr, seed = case
    got = run_requantizer(prm, vectors, z_out, thr, p_gap=0.3, p_stall=0.3, seed=seed)
    assert got == [bt_reference(v, z_out, thr) for v in vectors]
