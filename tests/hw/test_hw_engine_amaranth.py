"""The engine in amaranth.sim: lane packing, accumulation, stalls, overflow, timing contract."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.hw.amsim import run_amaranth
from qgnn.hw.memimage import memory_image
from qgnn.hw.params import EngineParams
from qgnn.model.golden import packing
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import rules

from qgnn.core.timing import aggregation_cycles

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def stage_from_rows(rows: list[list[int]], codes: np.ndarray, bits: int, z_in: int, z_out: int,
                    mult: list[int], shift: list[int], word_width: int = 32) -> AggregationStage:
    lengths = [len(r) for r in rows]
    return AggregationStage(
        name="t", indptr=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        indices=np.asarray([j for r in rows for j in r], dtype=np.int64), codes=codes,
        bits=bits, out_bits=bits, zero_point_in=z_in, zero_point_out=z_out,
        multiplier=np.asarray(mult), shift=np.asarray(shift), word_width=word_width)


def outputs_as_rows(outputs: dict[int, int], n: int, w: int) -> list[list[int]]:
    return [[outputs.get(i * w + k, -1) for k in range(w)] for i in range(n)]


@SLOW
@given(bits=st.sampled_from([2, 4, 8]), features=st.integers(1, 40),
       z=st.integers(0, 255), seed=st.integers(0, 2**16))
def test_lane_packing_identity(bits: int, features: int, z: int, seed: int) -> None:
    """Row i = {i}, M = 1, s = 0: y = (q - z) + z = q, so the output words must be exactly the
    packed input words (lane order, multi-word rows, pad lanes holding the zero point)."""
    rng = np.random.default_rng(seed)
    z %= 1 << bits
    n = 5
    codes = rng.integers(0, 1 << bits, size=(n, features))
    stage = stage_from_rows([[i] for i in range(n)], codes, bits, z, z, [1] * n, [0] * n)
    prm = EngineParams(bits=bits, word_width=32, pes=2, max_terms=1)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=1)
    want = packing.words_as_ints(packing.pack_codes(codes, bits, 32, pad_code=z), 32)
    assert outputs_as_rows(run.outputs, n, stage.words_per_row) == want
    got_codes = packing.unpack_codes(
        np.asarray([[b for w in row for b in w.to_bytes(4, "little")]
                    for row in outputs_as_rows(run.outputs, n, stage.words_per_row)],
                   dtype=np.uint8), bits, 32, features)
    assert np.array_equal(got_codes, codes)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_accumulator_full_scale(bits: int) -> None:
    """Rows of exactly max_terms terms of the largest code: the sum fills acc_bits exactly
    and must not wrap. With z_in = 0, M = 1, s = acc_bits - bits the output is
    round(sum / 2**s), checked against a hand formula."""
    qmax = (1 << bits) - 1
    max_terms = 37
    acc_bits = rules.acc_width(bits, max_terms)
    s = acc_bits - bits
    n_src = 3
    codes = np.full((n_src, 10), qmax)
    codes[1] = 0
    rows = [[0] * max_terms, [0] * (max_terms - 1) + [1], [2, 0], [1]]
    sums = [max_terms * qmax, (max_terms - 1) * qmax, 2 * qmax, 0]
    stage = stage_from_rows(rows, codes, bits, 0, 0, [1] * 4, [s] * 4)
    prm = EngineParams(bits=bits, word_width=32, pes=1, max_terms=max_terms)
    assert prm.acc_bits == acc_bits and (max_terms * qmax).bit_length() == acc_bits
    run = run_amaranth(prm, memory_image(stage, prm), latency=2)
    for i, total in enumerate(sums):
        want = min(qmax, (total + (1 << (s - 1))) >> s) if s else min(qmax, total)
        word = run.outputs[i * stage.words_per_row]
        assert word & qmax == want, (i, total)
    assert not run.overflow


@SLOW
@given(seed=st.integers(0, 2**20), bits=st.sampled_from([2, 4, 8]),
       pes=st.integers(1, 4), latency=st.integers(1, 4), nodes=st.integers(1, 20),
       features=st.integers(1, 30), degree=st.sampled_from([0.5, 2.0, 5.0]),
       isolated=st.sampled_from([0.0, 0.3, 0.9]))
def test_engine_exact_words_and_cycles(seed, bits, pes, latency, nodes, features, degree,
                                       isolated) -> None:
    """Random graphs, ideal memory: every word equal to the reference and the cycle count
    equal to qgnn.core.timing.aggregation_cycles (counted by the testbench and by the engine)."""
    rng = np.random.default_rng(seed)
    stage = random_stage(rng, num_nodes=nodes, features=features, bits=bits, avg_degree=degree,
                         isolated_fraction=isolated, word_width=32)
    prm = EngineParams(bits=bits, word_width=32, pes=pes, max_terms=max(1, stage.max_terms),
                       max_latency=4)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=latency)
    assert [run.outputs.get(a) for a in range(len(img.expected))] == img.expected
    assert run.writes == len(img.expected) and not run.duplicates
    want = aggregation_cycles(img.row_lengths, img.words_per_row, pes, latency)
    assert run.cycles == want and run.dut_cycles == want


@SLOW
@given(seed=st.integers(0, 2**20), p=st.sampled_from([0.1, 0.4, 0.7]))
def test_engine_with_stalls(seed: int, p: float) -> None:
    """Random valid/ready stalls on every port and the output: same words, longer runs."""
    rng = np.random.default_rng(seed)
    stage = random_stage(rng, num_nodes=14, features=12, bits=4, word_width=32)
    prm = EngineParams(bits=4, word_width=32, pes=3, max_terms=max(1, stage.max_terms),
                       max_latency=3)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=3, p_req_stall=p, p_resp_stall=p, p_out_stall=p,
                       seed=seed)
    assert [run.outputs.get(a) for a in range(len(img.expected))] == img.expected
    assert run.writes == len(img.expected)
    assert run.cycles >= aggregation_cycles(img.row_lengths, img.words_per_row, 3, 3)


def test_one_word_per_cycle_at_max_latency() -> None:
    """Rows of one term and one word (the hardest case for the descriptor prefetch) at the
    largest latency the FIFOs are sized for: still one row per cycle, no per-row overhead;
    one cycle more latency than that is still correct, only slower."""
    n = 40
    rng = np.random.default_rng(0)
    stage = stage_from_rows([[int(j)] for j in rng.integers(0, n, n)],
                            rng.integers(0, 16, (n, 8)), 4, 3, 5, [3000] * n, [12] * n)
    prm = EngineParams(bits=4, word_width=32, pes=2, max_terms=1, max_latency=6)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=6)
    assert run.cycles == 3 * 6 + 10 + n // 2
    slow = run_amaranth(prm, img, latency=7)
    assert slow.cycles > 3 * 7 + 10 + n // 2
    assert [slow.outputs.get(a) for a in range(n)] == img.expected


def test_overflow_flag_on_long_row() -> None:
    """A row longer than max_terms raises the sticky overflow flag (never a silent wrap);
    the next run with valid rows clears it."""
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 16, (4, 8))
    long_stage = stage_from_rows([[0, 1, 2], [0] * 9, [1]], codes, 4, 0, 0, [1] * 3, [4] * 3)
    prm_big = EngineParams(bits=4, word_width=32, pes=1, max_terms=9)
    prm = EngineParams(bits=4, word_width=32, pes=1, max_terms=4)
    img = memory_image(long_stage, prm_big)  # built for the big engine, run on the small one
    run = run_amaranth(prm, img, latency=1)
    assert run.overflow
    ok_stage = stage_from_rows([[0, 1, 2], [3], [1]], codes, 4, 0, 0, [1] * 3, [4] * 3)
    run2 = run_amaranth(prm, memory_image(ok_stage, prm), latency=1)
    assert not run2.overflow


def test_acc_width_too_small_is_an_elaboration_error() -> None:
    with pytest.raises(ValueError, match="acc_width = 11 is too small"):
        EngineParams(bits=4, max_terms=169, acc_width=11)
    assert EngineParams(bits=4, max_terms=169, acc_width=12).acc_bits == 12
    assert EngineParams(bits=2, max_terms=169).acc_bits == 9       # Cora widths (rules.py)
    assert EngineParams(bits=8, max_terms=169).acc_bits == 16
    with pytest.raises(ValueError, match="bits = 3 not supported"):
        EngineParams(bits=3)


def test_stage_that_does_not_fit_is_rejected() -> None:
    rng = np.random.default_rng(2)
    stage = random_stage(rng, num_nodes=10, features=4, bits=4, avg_degree=8, word_width=32)
    with pytest.raises(ValueError, match="max_terms"):
        memory_image(stage, EngineParams(bits=4, word_width=32, pes=1, max_terms=2))
    with pytest.raises(ValueError, match="bits 4 != engine bits 2"):
        memory_image(stage, EngineParams(bits=2, word_width=32, pes=1, max_terms=64))


def test_degree0_only_pe_finishes_2L_early() -> None:
    """PE0's rows are both degree-0 (2 x 15 words), PE1's row has one term (15 words): the run
    ends when PE0 does, at T_deg0(1) + 30 = 41 cycles (the simple T_fill + max S would be 43);
    degree-0 rows emit clamp(z_out) in every lane."""
    stage = stage_from_rows([[], [1], []], np.ones((3, 60), dtype=np.int64), 4, 0, 7,
                            [1, 1, 1], [0, 0, 0], word_width=16)
    prm = EngineParams(bits=4, word_width=16, pes=2, max_terms=1)
    img = memory_image(stage, prm)
    run = run_amaranth(prm, img, latency=1)
    assert run.cycles == 41 == aggregation_cycles(img.row_lengths, 15, 2, 1)
    assert run.outputs[0] == 0x7777 and run.outputs[15] == 0x8888
