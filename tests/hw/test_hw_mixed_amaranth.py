"""The mixed-width engine (hw/mixed_engine.py) in amaranth.sim against
model/golden/mixed_stage.py: exact words, cycles equal to the mixed timing contract, stalls,
reset in mid-run, overflow flag, elaboration errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.hw.mixed_amsim import run_mixed_amaranth
from qgnn.hw.mixed_memimage import mixed_memory_image
from qgnn.hw.mixed_params import MixedParams
from qgnn.model.golden.mixed_stage import MixedAggregationStage, random_mixed_stage
from qgnn.model.golden.stage import random_stage

from qgnn.core.timing import mixed_aggregation_cycles

SLOW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
WIDTH_SETS = [(2,), (8,), (2, 8), (2, 4), (8, 4), (2, 4, 8), (2, 2, 8)]


def params_for(stage: MixedAggregationStage, pes: int, **kw) -> MixedParams:
    widths = tuple(sorted(set(stage.bits_in) | set(stage.out_bits)))
    base = dict(in_widths=widths, word_width=stage.word_width, pes=pes,
                max_terms=max(1, stage.max_terms), max_features=stage.features,
                r_bits=stage.r_bits, max_latency=4, max_buckets=3)
    base.update(kw)
    return MixedParams(**base)


def words(run, img) -> list:
    return [run.outputs.get(a) for a in range(len(img.expected))]


def contract(img, prm: MixedParams, latency: int) -> int:
    return mixed_aggregation_cycles(img.row_in_words, img.row_out_words, prm.pes, latency,
                                    overlap_drain=prm.overlap_drain)


@SLOW
@given(seed=st.integers(0, 2**20), widths=st.sampled_from(WIDTH_SETS),
       ww=st.sampled_from([16, 32, 64]), features=st.integers(1, 21), pes=st.integers(1, 3),
       latency=st.integers(1, 4), r_bits=st.integers(1, 8),
       isolated=st.sampled_from([0.0, 0.3, 0.9]), degree=st.sampled_from([0.5, 2.0, 4.0]),
       overlap=st.booleans())
def test_random_mixed_exact_words_and_cycles(seed, widths, ww, features, pes, latency, r_bits,
                                             isolated, degree, overlap) -> None:
    """Random mixed stages (K = 1..3 buckets of 2/4/8-bit codes, zero points 0/max/any,
    R in 1..2**r_bits - 1, degree-0 rows, one or several words per row, F not a multiple of
    the lanes), serial and overlapped drain: every output word equal to the reference; cycles
    (testbench and the engine's register) equal to qgnn.core.timing.mixed_aggregation_cycles;
    no overflow."""
    rng = np.random.default_rng(seed)
    outs = tuple(rng.permutation(list(widths)).tolist())
    s = random_mixed_stage(seed, num_nodes=int(rng.integers(1, 13)), features=features,
                           bits=widths, out_bits=outs, word_width=ww, r_bits=r_bits,
                           isolated_fraction=isolated, avg_degree=degree)
    prm = params_for(s, pes, max_features=features + int(rng.integers(0, 4)),
                     overlap_drain=overlap)
    img = mixed_memory_image(s, prm)
    run = run_mixed_amaranth(prm, [img], latency=latency)[0]
    assert words(run, img) == img.expected
    assert run.writes == len(img.expected) and not run.duplicates
    want = contract(img, prm, latency)
    assert run.cycles == want and run.dut_cycles == want
    assert not run.overflow


def adversarial_stage(seed: int, n: int, features: int) -> MixedAggregationStage:
    """Many degree-0 rows (INT8 outputs: up to 6 output words) between rows of one INT2
    term (1 input word): the patterns where a walker running behind would starve the PE."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        u = rng.random()
        rows.append([] if u < 0.4 else [int(rng.integers(n))] if u < 0.7
                    else rng.integers(0, n, int(rng.integers(1, 6))).tolist())
    src_b = rng.integers(0, 2, n)
    qmax = np.where(src_b == 0, 3, 255)
    return MixedAggregationStage(
        name=f"adv{seed}", indptr=np.concatenate([[0], np.cumsum([len(r) for r in rows])]),
        indices=np.asarray([j for r in rows for j in r], dtype=np.int64),
        codes=rng.integers(0, 256, (n, features)) % (qmax[:, None] + 1), src_bucket=src_b,
        bits_in=(2, 8), z_in=(1, 7), weight=(5, 1), dst_bucket=rng.integers(0, 2, n),
        out_bits=(2, 8), z_out=(1, 100), multiplier=np.full(n, 900), shift=np.full(n, 10),
        r_bits=3, word_width=32)


@pytest.mark.parametrize("overlap", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_degree0_heavy_small_fifos(seed: int, overlap: bool) -> None:
    """Degree-0 rows with many output words among one-word rows, FIFOs of 3 entries
    (max_latency 1): exact words and cycles equal to the contract, both drain forms."""
    s = adversarial_stage(seed, 16, 24)
    prm = params_for(s, 2, max_latency=1, overlap_drain=overlap)
    img = mixed_memory_image(s, prm)
    run = run_mixed_amaranth(prm, [img], latency=1)[0]
    assert words(run, img) == img.expected
    assert run.cycles == contract(img, prm, 1) == run.dut_cycles


def test_overlap_first_row_waits_for_hold_bank() -> None:
    """A degree-0 row with 4 INT8 output words, then a row of one INT2 term (1 word in, 1
    out), one PE, L = 1. Serial drain: T_fill + (0 + 4) + (1 + 1) = 19. Overlapped drain: the
    second row alone would take T_fill + 1 + 1 + 1 = 16 (its walker item waits 1 cycle), but
    the hold bank frees only after the first row's 4 words: T_deg0 + 1 + 4 + 1 = 17 (the
    contract's 'via_hold' branch)."""
    s = MixedAggregationStage(
        name="hold", indptr=[0, 0, 1], indices=[1], codes=[[5] * 16, [2] * 16],
        src_bucket=[1, 0], bits_in=(2, 8), z_in=(0, 0), weight=(1, 1), dst_bucket=[1, 0],
        out_bits=(2, 8), z_out=(3, 9), multiplier=[1, 1], shift=[0, 0], r_bits=1,
        word_width=32)
    assert s.row_in_words.tolist() == [0, 1] and s.out_words.tolist() == [4, 1]
    for overlap, want in ((False, 19), (True, 17)):
        prm = params_for(s, 1, overlap_drain=overlap)
        img = mixed_memory_image(s, prm)
        run = run_mixed_amaranth(prm, [img], latency=1)[0]
        assert words(run, img) == img.expected
        assert run.cycles == want == contract(img, prm, 1)


@pytest.mark.parametrize("overlap", [False, True])
def test_mixed_cycles_scale_with_stored_bits(overlap: bool) -> None:
    """Same graph and features, INT2 neighbours against INT8 ones: the accumulate part of
    the run costs a quarter (64 features, 64-bit words: 2 against 8 words per term); the
    INT2 outputs cost 2 cycles per row (serial drain) or only the last row's 2 (overlapped:
    every row has at least 2 input words)."""
    rng = np.random.default_rng(5)
    n = 10
    rows = [[i, *rng.integers(0, n, int(rng.integers(0, 4))).tolist()] for i in range(n)]
    indptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    indices = np.asarray([j for r in rows for j in r])
    codes = rng.integers(0, 256, (n, 64))
    runs = {}
    for k, b in ((0, 2), (1, 8)):
        s = MixedAggregationStage(
            name=f"int{b}", indptr=indptr, indices=indices, codes=codes % (1 << b),
            src_bucket=np.full(n, k), bits_in=(2, 8), z_in=(1, 3), weight=(5, 1),
            dst_bucket=np.zeros(n, np.int64), out_bits=(2, 8), z_out=(0, 0),
            multiplier=np.full(n, 300), shift=np.full(n, 12), r_bits=4)
        prm = params_for(s, 1, in_widths=(2, 8), max_features=64, overlap_drain=overlap)
        img = mixed_memory_image(s, prm)
        run = run_mixed_amaranth(prm, [img], latency=2)[0]
        assert words(run, img) == img.expected
        drain = 2 if overlap else sum(img.row_out_words)
        runs[b] = run.cycles - (3 * 2 + 10) - drain
    assert runs[8] == 4 * runs[2] == 8 * len(indices)


def test_bucket_weights_and_zero_points_reach_the_sums() -> None:
    """Fixed two-bucket stage with R = (3, 7): exact words on the engine, and the expected
    words differ from those of the same stage with R = (1, 1) or with other zero points, so
    an engine that ignored the weights or a bucket's zero point would fail here."""
    base = random_mixed_stage(21, num_nodes=9, features=7, bits=(2, 4), word_width=16,
                              r_bits=3, isolated_fraction=0.0, top_fraction=0.5)
    s = MixedAggregationStage(**{**base.__dict__, "weight": (3, 7), "z_in": (1, 9),
                                 "acc_width": None})
    prm = params_for(s, 2)
    img = mixed_memory_image(s, prm)
    run = run_mixed_amaranth(prm, [img], latency=2)[0]
    assert words(run, img) == img.expected and run.cycles == contract(img, prm, 2)
    for kw in ({"weight": (1, 1)}, {"z_in": (0, 9)}, {"z_in": (1, 0)}):
        other = MixedAggregationStage(**{**s.__dict__, **kw, "acc_width": None})
        assert mixed_memory_image(other, prm).expected != img.expected, kw


def test_uniform_stage_on_mixed_engine_matches_uniform_reference() -> None:
    """A uniform INT4 AggregationStage as a K = 1, R = [1] mixed stage: the mixed engine's
    words equal AggregationStage.packed_output (the uniform engine's expected words)."""
    u = random_stage(np.random.default_rng(3), num_nodes=9, features=13, bits=4, word_width=32)
    m = MixedAggregationStage.from_uniform(u)
    prm = params_for(m, 2, in_widths=(4,), r_bits=1)
    img = mixed_memory_image(m, prm)
    run = run_mixed_amaranth(prm, [img], latency=1)[0]
    nb = 4
    want = [int.from_bytes(bytes(row[w * nb:(w + 1) * nb]), "little")
            for row in u.packed_output(u.compute()[1]) for w in range(u.words_per_row)]
    assert words(run, img) == want
    assert run.cycles == contract(img, prm, 1)


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**20), p=st.sampled_from([0.2, 0.5]))
def test_random_stalls_and_reset_mid_run(seed: int, p: float) -> None:
    """Random valid/ready stalls on every port and the outputs: the same words, more cycles;
    a reset in mid-run (with stalls); then another stalled run is exact again."""
    s = random_mixed_stage(seed, num_nodes=11, features=13, bits=(2, 4, 8), word_width=32,
                           r_bits=5, isolated_fraction=0.2)
    prm = params_for(s, 2, max_latency=3)
    img = mixed_memory_image(s, prm)
    want = contract(img, prm, 3)
    stalled, cut, clean = run_mixed_amaranth(prm, [img, img, img], latency=3, p_req_stall=p,
                                             p_resp_stall=p, p_out_stall=p, seed=seed,
                                             reset_at=[None, want // 2, None])
    assert words(stalled, img) == img.expected and stalled.writes == len(img.expected)
    assert stalled.cycles > want
    assert not cut.completed
    assert words(clean, img) == img.expected and clean.writes == len(img.expected)
    assert not clean.overflow


@pytest.mark.parametrize("overlap", [False, True])
def test_one_slot_per_cycle_at_max_latency(overlap: bool) -> None:
    """Rows of one term of one word and one output word (the hardest case for the
    descriptor prefetch and the credits) at the largest latency the FIFOs are sized for: two
    slots per row (serial drain) or one (overlapped, plus the last row's output word), no
    per-row overhead; one cycle more latency is correct, only slower."""
    n = 24
    rng = np.random.default_rng(0)
    s = MixedAggregationStage(
        name="tight", indptr=np.arange(n + 1), indices=rng.integers(0, n, n),
        codes=rng.integers(0, 4, (n, 8)), src_bucket=rng.integers(0, 2, n), bits_in=(2, 8),
        z_in=(1, 0), weight=(3, 1), dst_bucket=rng.integers(0, 2, n), out_bits=(2, 8),
        z_out=(2, 7), multiplier=np.full(n, 3000), shift=np.full(n, 12), r_bits=2)
    prm = params_for(s, 2, max_latency=6, overlap_drain=overlap)
    img = mixed_memory_image(s, prm)
    assert set(img.row_in_words) == {1} and set(img.row_out_words) == {1}
    fast, slow = run_mixed_amaranth(prm, [img], latency=6) + run_mixed_amaranth(prm, [img],
                                                                                latency=7)
    per_pe = n // 2 + 1 if overlap else 2 * (n // 2)
    assert fast.cycles == 3 * 6 + 10 + per_pe == contract(img, prm, 6)
    assert slow.cycles > contract(img, prm, 7)
    assert words(fast, img) == img.expected == words(slow, img)


def test_reset_mid_run_then_clean_run_meets_contract() -> None:
    s = random_mixed_stage(11, num_nodes=10, features=9, bits=(2, 8), word_width=16, r_bits=3)
    prm = params_for(s, 3)
    img = mixed_memory_image(s, prm)
    want = contract(img, prm, 2)
    cut, clean = run_mixed_amaranth(prm, [img, img], latency=2, reset_at=[want // 2, None])
    assert not cut.completed and cut.writes < len(img.expected)
    assert words(clean, img) == img.expected
    assert clean.cycles == want == clean.dut_cycles


def test_full_scale_accumulator() -> None:
    """Rows of exactly max_terms terms of the largest INT8 code at the largest weight fill
    acc_bits exactly and must not wrap; z_in at the maximum drives C to its most negative
    value (outputs clamp to 0); checked against the reference and a hand formula."""
    r_bits, mt = 5, 7
    rmax = (1 << r_bits) - 1
    prm = MixedParams(in_widths=(2, 8), word_width=16, pes=1, max_terms=mt, max_features=3,
                      r_bits=r_bits, max_buckets=2)
    assert prm.acc_bits == (mt * rmax * 255).bit_length() == 16
    acc_bits = prm.acc_bits
    codes = [[255, 255, 0], [3, 3, 3]]
    s = MixedAggregationStage(
        name="full", indptr=[0, mt, 2 * mt], indices=[0] * mt + [1] * mt, codes=codes,
        src_bucket=[1, 0], bits_in=(2, 8), z_in=(3, 0), weight=(rmax, rmax),
        dst_bucket=[1, 0], out_bits=(2, 8), z_out=(0, 0), multiplier=[1, 1],
        shift=[acc_bits - 8, 0], r_bits=r_bits, word_width=16)
    img = mixed_memory_image(s, prm)
    run = run_mixed_amaranth(prm, [img], latency=1)[0]
    assert words(run, img) == img.expected and not run.overflow
    total = mt * rmax * 255
    sh = acc_bits - 8
    y0 = min(255, (total + (1 << (sh - 1))) >> sh)
    assert s.compute()[1][0].tolist() == [y0, y0, 0]
    assert s.compute()[0][1].tolist() == [0, 0, 0]  # INT2 row: 3 - z 3 = 0 in every term


def test_overflow_flag() -> None:
    """A row longer than max_terms raises the sticky overflow flag (never a silent wrap); so
    does a run whose weighted codes exceed max_weight; the next valid run clears it."""
    s = random_mixed_stage(2, num_nodes=6, features=5, bits=(2, 8), word_width=32, r_bits=4,
                           isolated_fraction=0.0, avg_degree=4.0)
    big = params_for(s, 1)
    small = params_for(s, 1, max_terms=2, max_weight=s.max_weight)
    img = mixed_memory_image(s, big)           # built for the big engine, run on the small
    heavy = MixedAggregationStage(**{**s.__dict__, "weight": (s.weight[0], 15), "acc_width": None,
                                     "indptr": [0] + [1] * 6, "indices": [0]})
    img_heavy = mixed_memory_image(heavy, params_for(heavy, 1, max_terms=2))
    ok = MixedAggregationStage(**{**s.__dict__, "acc_width": None, "indptr": [0] + [1] * 6,
                                  "indices": [0]})
    img_ok = mixed_memory_image(ok, small)
    long_run, heavy_run, ok_run = run_mixed_amaranth(small, [img, img_heavy, img_ok])
    assert long_run.completed and long_run.overflow
    assert heavy.max_weight > small.weight_limit and heavy_run.overflow
    assert not ok_run.overflow and words(ok_run, img_ok) == img_ok.expected


def test_elaboration_errors() -> None:
    with pytest.raises(ValueError, match="acc_width = 15 is too small"):
        MixedParams(in_widths=(2, 8), max_terms=7, r_bits=5, acc_width=15)
    assert MixedParams(in_widths=(2, 8), max_terms=7, r_bits=5, acc_width=16).acc_bits == 16
    assert MixedParams(in_widths=(2,), max_terms=169, r_bits=1).acc_bits == 9  # uniform INT2
    with pytest.raises(ValueError, match="in_widths"):
        MixedParams(in_widths=(2, 3))
    with pytest.raises(ValueError, match="max_weight"):
        MixedParams(in_widths=(2,), r_bits=2, max_weight=10)
    s = random_mixed_stage(1, num_nodes=5, features=30, bits=(2, 4), word_width=32, r_bits=4)
    with pytest.raises(ValueError, match="features = 30"):
        mixed_memory_image(s, params_for(s, 1, max_features=20))
    with pytest.raises(ValueError, match=r"bits_in \[2, 4\] has \[4\]"):
        mixed_memory_image(s, params_for(s, 1, in_widths=(2, 8)))
    with pytest.raises(ValueError, match="max_terms"):
        mixed_memory_image(s, params_for(s, 1, max_terms=1))
