"""Requantizer (hw/requant.py) in amaranth.sim against model/integer/rules.py."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.hw.amsim import RequantVector, run_requantizer
from qgnn.hw.params import EngineParams
from qgnn.hw.requant import Requantizer
from qgnn.model.integer import rules

# one vector: (acc lanes, n, z_in, multiplier, shift)
Vector = RequantVector


def reference(prm: EngineParams, vec: Vector, z_out: int) -> list[int]:
    acc, n, z_in, mult, shift = vec
    c = np.asarray(acc, dtype=np.int64) - n * z_in
    return [int(x) for x in rules.requantize(c, mult, shift, z_out, prm.bits)]


@st.composite
def requant_case(draw):
    bits = draw(st.sampled_from([2, 4, 8]))
    max_terms = draw(st.sampled_from([1, 3, 169, 1000]))
    prm = EngineParams(bits=bits, word_width=32, pes=1, max_terms=max_terms)
    qmax = (1 << bits) - 1
    z_out = draw(st.sampled_from([0, qmax]) | st.integers(0, qmax))
    vectors = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(0, max_terms))
        acc = draw(st.lists(st.integers(0, n * qmax), min_size=prm.lanes, max_size=prm.lanes))
        z_in = draw(st.sampled_from([0, qmax]) | st.integers(0, qmax))
        mult = draw(st.sampled_from([0, 1, (1 << 16) - 1]) | st.integers(0, (1 << 16) - 1))
        shift = draw(st.sampled_from([0, 1, prm.product_bits - 1, prm.product_bits, 63])
                     | st.integers(0, 63))
        vectors.append((acc, n, z_in, mult, shift))
    return prm, vectors, z_out, draw(st.integers(0, 2**16))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requant_case())
def test_requant_matches_rules(case) -> None:
    prm, vectors, z_out, seed = case
    got = run_requantizer(prm, vectors, z_out, p_gap=0.3, p_stall=0.3, seed=seed)
    assert got == [reference(prm, v, z_out) for v in vectors]


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_requant_edge_cases(bits: int) -> None:
    """Saturation at both ends, rounding ties (both signs), zero points 0 and maximum,
    shifts 0 / at the product width / 63, multipliers 0 and maximum."""
    max_terms = 7
    prm = EngineParams(bits=bits, word_width=16, pes=1, max_terms=max_terms)
    qmax = (1 << bits) - 1
    lanes = prm.lanes
    full = max_terms * qmax
    mmax = (1 << prm.mult_bits) - 1
    pw = prm.product_bits

    def same(v: int) -> list[int]:
        return [v] * lanes

    cases: list[tuple[Vector, int, list[int]]] = [
        # (vector, z_out, expected lanes) -- expectations by hand
        ((same(full), max_terms, 0, mmax, 0), 0, same(qmax)),        # saturate high
        ((same(0), max_terms, qmax, mmax, 0), qmax, same(0)),         # saturate low
        ((same(1), 1, 0, 1, 1), 0, same(1)),                          # +0.5 -> 1 (tie, up)
        ((same(0), 1, 1, 1, 1), 2, same(2)),                          # -0.5 -> 0, + z_out 2
        ((same(0), 3, 1, 1, 1), 3, same(2)),                          # -1.5 -> -1, + 3
        ((same(3), 1, 0, 5, 2), 0, same(min(4, qmax))),                # 15/4 = 3.75 -> 4
        ((same(3), 3, 1, 1, 0), qmax, same(qmax)),                    # c = 0 -> z_out max
        ((same(full), max_terms, 0, mmax, pw), 1, same(1)),           # shift >= width: 0
        ((same(full), max_terms, 0, mmax, 63), 0, same(0)),
        ((same(full), max_terms, 0, 0, 5), qmax, same(qmax)),         # M = 0 -> z_out
        ((same(full), max_terms, qmax, 1, 0), 0, same(0)),            # c = 0, z_out 0
        ((list(range(lanes)), 1, 0, 1, 0), 0, [min(k, qmax) for k in range(lanes)]),
    ]
    for vec, z_out, want in cases:
        assert reference(prm, vec, z_out) == want, (vec, z_out)   # the hand values hold
        assert run_requantizer(prm, [vec], z_out) == [want], (vec, z_out)


def test_requant_throughput_one_word_per_cycle() -> None:
    """Without stalls a word enters every cycle: 12 words leave in 12 + 3 cycles."""
    prm = EngineParams(bits=4, word_width=16, pes=1, max_terms=3)
    dut = Requantizer(prm)
    seen: list[int] = []

    async def bench(ctx) -> None:
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, {"acc": [1, 2, 3, 4], "nz": 0, "multiplier": 1, "shift": 0})
        for t in range(30):
            if t == 12:
                ctx.set(dut.i.valid, 0)
            assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                seen.append(t)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == list(range(3, 15))
