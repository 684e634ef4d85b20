"""model/golden/mixed_stage.py: the mixed-width arithmetic reference (hand values, widths,
layout, and equality with the uniform AggregationStage for K = 1, R = [1])."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.model.golden import packing
from qgnn.model.golden.mixed_stage import (
    MixedAggregationStage,
    random_mixed_stage,
    weighted_acc_width,
)
from qgnn.model.golden.stage import random_stage
from qgnn.model.integer import rules

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def hand_stage(**kw) -> MixedAggregationStage:
    """Two buckets (INT2: z 1, R 4; INT8: z 100, R 1), F = 3, 8-bit words (values by hand in
    test_hand_values)."""
    args = dict(
        name="hand", indptr=[0, 2, 2, 5], indices=[0, 1, 2, 1, 1],
        codes=[[3, 0, 1], [200, 100, 0], [2, 2, 2]], src_bucket=[0, 1, 0],
        bits_in=(2, 8), z_in=(1, 100), weight=(4, 1), dst_bucket=[0, 1, 1],
        out_bits=(2, 8), z_out=(1, 128), multiplier=[1, 7, 3], shift=[6, 0, 2],
        r_bits=3, word_width=8)
    args.update(kw)
    return MixedAggregationStage(**args)


def test_hand_values() -> None:
    s = hand_stage()
    # row 0 = {j0 (INT2, R 4), j1 (INT8, R 1)}: acc = 4 [3,0,1] + [200,100,0] = [212,100,4],
    # corr = 4*1 + 1*100 = 104; row 1 has no terms; row 2 = {j2, j1, j1}:
    # acc = 4 [2,2,2] + 2 [200,100,0] = [408,208,8], corr = 4 + 200 = 204
    assert s.accumulate().tolist() == [[212, 100, 4], [0, 0, 0], [408, 208, 8]]
    assert s.correction().tolist() == [104, 0, 204]
    c, y = s.compute()
    assert c.tolist() == [[108, -4, -100], [0, 0, 0], [204, 4, -196]]
    # row 0: round(108/64) = 2, round(-4/64) = 0, round(-100/64) = -2 (half up); + z_out 1,
    # clamp to 0..3; row 1: z_out 128; row 2: 204*3/4 = 153 -> 281 -> 255, 3 -> 131, -147 -> 0
    assert y.tolist() == [[3, 1, 0], [128, 128, 128], [255, 131, 0]]
    assert s.bucket_terms().tolist() == [[1, 1], [0, 0], [1, 2]]
    # layout: INT2 rows take 1 word (4 lanes, pad lane = z_in 1), INT8 rows 3 words
    assert s.feat_offset.tolist() == [0, 1, 4]
    assert s.input_words() == [3 | 0 << 2 | 1 << 4 | 1 << 6, 200, 100, 0,
                               2 | 2 << 2 | 2 << 4 | 1 << 6]
    assert s.out_offset.tolist() == [0, 1, 4]
    assert s.output_words() == [3 | 1 << 2 | 0 << 4 | 1 << 6, 128, 128, 128, 255, 131, 0]
    assert s.row_in_words.tolist() == [1 + 3, 0, 1 + 3 + 3]
    assert s.out_words.tolist() == [1, 3, 3]
    # widths: max weighted code max(4*3, 1*255) = 255, 3 terms: bit_length(765) = 10
    assert s.max_weight == 255 and s.acc_width == 10 and s.corrected_width == 11
    assert s.product_width == 11 + 16


def test_widths_and_errors() -> None:
    assert weighted_acc_width(169, 3) == rules.acc_width(2, 169) == 9
    assert weighted_acc_width(255, 255 * 255) == 24
    assert weighted_acc_width(0, 0) == 1
    with pytest.raises(ValueError, match="acc_width = 9 is too small"):
        hand_stage(acc_width=9)
    assert hand_stage(acc_width=12).acc_width == 12
    s = hand_stage()
    s.acc_width = 9   # narrowed after construction: the sum refuses instead of wrapping
    with pytest.raises(rules.AccumulatorOverflowError, match="row 2 has 3 terms"):
        s.accumulate()
    for kw, msg in [(dict(z_in=(4, 100)), r"z_in\[0\] = 4 outside 0..3"),
                    (dict(z_out=(1, 256)), r"z_out\[1\] = 256 outside 0..255"),
                    (dict(weight=(8, 1)), r"weight\[0\] = 8 outside 0..7"),
                    (dict(bits_in=(3, 8)), "bits_in"),
                    (dict(src_bucket=[0, 2, 0]), "src_bucket values"),
                    (dict(dst_bucket=[0, 1]), "dst_bucket needs 3"),
                    (dict(codes=[[4, 0, 1], [200, 100, 0], [2, 2, 2]]), "codes of source row"),
                    (dict(shift=[6, 0, 64]), "shift")]:
        with pytest.raises(ValueError, match=msg):
            hand_stage(**kw)


@FAST
@given(seed=st.integers(0, 2**20), bits=st.sampled_from([2, 4, 8]),
       features=st.integers(1, 40), ww=st.sampled_from([8, 16, 32, 64]))
def test_uniform_stage_equals_aggregation_stage(seed: int, bits: int, features: int,
                                                ww: int) -> None:
    """K = 1, R = [1]: the mixed reference gives exactly AggregationStage's outputs, memory
    images and (as C = acc - n z_in) sums."""
    if ww < bits:
        return
    u = random_stage(np.random.default_rng(seed), num_nodes=15, features=features, bits=bits,
                     word_width=ww)
    m = MixedAggregationStage.from_uniform(u)
    acc, y = u.compute()
    c, y2 = m.compute()
    assert np.array_equal(y2, y)
    assert np.array_equal(c, acc - u.row_lengths[:, None] * u.zero_point_in)
    assert m.acc_width == u.acc_width
    assert np.array_equal(m.packed_output(y2).reshape(u.num_nodes, -1), u.packed_output(y))
    assert np.array_equal(m.packed_input().reshape(u.codes.shape[0], -1), u.packed_input())
    assert np.array_equal(m.row_in_words, u.words_per_row * u.row_lengths)


@FAST
@given(seed=st.integers(0, 2**20), k=st.integers(1, 3), ww=st.sampled_from([16, 32, 64]))
def test_random_mixed_against_per_term_loop(seed: int, k: int, ww: int) -> None:
    """The vectorised reference against a direct loop over terms (Python ints), and the
    memory image decoded row by row with packing.unpack_codes."""
    bits = [(2,), (2, 8), (2, 4, 8)][k - 1]
    s = random_mixed_stage(seed, num_nodes=12, features=11, bits=bits, word_width=ww)
    c, y = s.compute()
    for i in range(s.num_nodes):
        acc = [0] * s.features
        corr = 0
        for j in s.indices[s.indptr[i]:s.indptr[i + 1]]:
            kb = int(s.src_bucket[j])
            corr += s.weight[kb] * s.z_in[kb]
            for f in range(s.features):
                acc[f] += s.weight[kb] * int(s.codes[j, f])
        want_c = [a - corr for a in acc]
        assert c[i].tolist() == want_c
        ko = int(s.dst_bucket[i])
        for f in range(s.features):
            p = want_c[f] * int(s.multiplier[i])
            sh = int(s.shift[i])
            r = (p + (1 << (sh - 1))) >> sh if sh else p
            assert y[i, f] == min(max(r + s.z_out[ko], 0), (1 << s.out_bits[ko]) - 1)
    packed = s.packed_input()
    nb = ww // 8
    for j in range(s.num_src):
        b = s.bits_in[int(s.src_bucket[j])]
        w = packing.words_per_row(s.features, b, ww)
        row = packed[s.feat_offset[j] * nb:(s.feat_offset[j] + w) * nb][None, :]
        assert packing.unpack_codes(row, b, ww, s.features)[0].tolist() == s.codes[j].tolist()
    out = s.packed_output(y)
    for i in range(s.num_nodes):
        b = s.out_bits[int(s.dst_bucket[i])]
        w = packing.words_per_row(s.features, b, ww)
        row = out[s.out_offset[i] * nb:(s.out_offset[i] + w) * nb][None, :]
        full = packing.unpack_codes(row, b, ww, w * (ww // b))[0]
        assert full[:s.features].tolist() == y[i].tolist()
        assert set(full[s.features:].tolist()) <= {s.z_out[int(s.dst_bucket[i])]}
