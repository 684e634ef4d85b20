"""Cycle-exactness of the simulator's aggregation phase against the RTL (``qgnn verify``).

For every stage, the simulator (ideal memory, the same element count and memory latency) must
give exactly the ``rtl_cycles`` that hw.verify measures on Icarus (free-running bench: memories
of fixed latency in the HDL harness, hw/freerun.py). Stages: Cora's real CSR
(A + I, 13264 terms) with random codes, and random graphs from
``model.golden.stage.random_stage`` (isolated rows, several words per row, elements without
rows), at 2, 4 and 8 bits. Any difference fails.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import rules
from qgnn.sim import simulate_stage

pytestmark = [
    pytest.mark.rtl,
    pytest.mark.skipif(importlib.util.find_spec("qgnn.hw.verify") is None,
                       reason="hw/verify.py not present"),
    pytest.mark.skipif(shutil.which("iverilog") is None, reason="Icarus Verilog not installed"),
]

#: (bits, elements P, memory latency L, Cora features): P and L vary across the runs.
RUNS = [(2, 8, 2, 32), (4, 4, 1, 16), (8, 3, 3, 5)]


def cora_stage(cora, bits: int, features: int, seed: int) -> AggregationStage:
    from qgnn.model.nn import graph_ops

    g = graph_ops(cora)
    rng = np.random.default_rng(seed)
    n = int(cora.num_nodes)
    qmax = (1 << bits) - 1
    m, s = rules.multiplier_shift(rng.uniform(0.0, 0.2, size=n))
    return AggregationStage(
        name=f"cora-int{bits}", indptr=g.indptr.numpy(), indices=g.indices.numpy(),
        codes=rng.integers(0, qmax + 1, size=(n, features)), bits=bits, out_bits=bits,
        zero_point_in=int(rng.integers(0, qmax + 1)), zero_point_out=int(rng.integers(0, qmax + 1)),
        multiplier=m, shift=s)


def random_stages(bits: int, seed: int) -> list[AggregationStage]:
    rng = np.random.default_rng(seed)
    lanes = 64 // bits
    shapes = [  # (nodes, features, average degree, isolated fraction)
        (40, lanes, 3.0, 0.1),            # one word per row
        (33, 2 * lanes + 3, 2.0, 0.3),    # three words per row, many empty rows
        (5, lanes + 1, 1.5, 0.5),         # fewer rows than elements for P = 8
        (60, 7, 4.0, 0.0),                # no empty rows
    ]
    return [random_stage(rng, num_nodes=nn, features=f, bits=bits, avg_degree=d,
                         isolated_fraction=iso, name=f"random{seed}-{i}")
            for i, (nn, f, d, iso) in enumerate(shapes)]


@pytest.mark.parametrize("bits, pes, latency, cora_features", RUNS)
def test_simulator_cycles_equal_rtl_cycles(cora, bits: int, pes: int, latency: int,
                                           cora_features: int) -> None:
    from qgnn.hw.verify import verify_stages

    stages = random_stages(bits, seed=bits) + [cora_stage(cora, bits, cora_features, bits)]
    rep = verify_stages(stages, pes=pes, latency=latency, bench="freerun")
    assert rep.bench == "freerun" and rep.ok
    assert len(rep.stages) == len(stages)
    assert rep.mismatches == 0, rep.first_mismatch()
    for st, got in zip(stages, rep.stages, strict=True):
        assert got.name == st.name
        sim = simulate_stage(st, pes=pes, latency=latency)
        assert sim.cycles == got.rtl_cycles, (
            f"{st.name} ({bits} bits, P={pes}, L={latency}): simulator {sim.cycles} cycles, "
            f"RTL {got.rtl_cycles}")
