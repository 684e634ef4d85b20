"""Cycle-exactness of the simulator's mixed-width aggregation against the mixed engine's RTL.

For every stage, ``qgnn.sim.simulate_mixed_stage`` (the simulator's mixed-engine aggregation,
ideal memory, the same element count, latency and drain form) must give exactly the cycles
the RTL (``hw/mixed_engine.py``) takes in ``amaranth.sim`` (``hw/mixed_amsim.py``: memories
of fixed latency, no stalls): the testbench count from the accepted start to ``done`` and the
engine's own ``cycles`` register. Stages: random mixed stages
(``model.golden.mixed_stage.random_mixed_stage``: 1-3 buckets of 2/4/8-bit codes, degree-0
rows, rows of several words, fewer rows than elements) with both drain forms, and a
Cora-like stage (Cora's real CSR, the top 10% of nodes by degree at INT8, the rest at INT2),
on which the simulator is checked against ``qgnn.core.timing.mixed_aggregation_cycles``
(the contract the RTL is tested against in tests/hw) because the RTL run would take minutes.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from qgnn.model.golden.mixed_stage import MixedAggregationStage, random_mixed_stage
from qgnn.sim import simulate_mixed_stage

from qgnn.core.timing import mixed_aggregation_cycles

HAVE_RTL = (importlib.util.find_spec("amaranth") is not None
            and importlib.util.find_spec("qgnn.hw.mixed_amsim") is not None)

#: (seed, nodes, features, bucket widths, word width, P, L, overlapped drain)
CASES = [
    (1, 12, 20, (2, 8), 64, 2, 1, True),
    (2, 9, 33, (2, 4, 8), 64, 3, 2, True),
    (3, 10, 7, (8, 2), 32, 2, 3, False),
    (4, 5, 17, (4,), 64, 4, 1, True),     # K = 1 and fewer rows than elements
    (5, 11, 12, (2, 8), 16, 1, 2, False),
]


def _stage(seed: int, nodes: int, features: int, bits: tuple[int, ...], ww: int
           ) -> MixedAggregationStage:
    return random_mixed_stage(seed, num_nodes=nodes, features=features, bits=bits,
                              word_width=ww, isolated_fraction=0.25, avg_degree=2.5, r_bits=4)


@pytest.mark.skipif(not HAVE_RTL, reason="amaranth or hw/mixed_amsim.py not available")
@pytest.mark.parametrize("seed, nodes, features, bits, ww, pes, latency, overlap", CASES)
def test_simulator_cycles_equal_mixed_rtl(seed: int, nodes: int, features: int,
                                          bits: tuple[int, ...], ww: int, pes: int,
                                          latency: int, overlap: bool) -> None:
    from qgnn.hw.mixed_amsim import run_mixed_amaranth
    from qgnn.hw.mixed_memimage import mixed_memory_image
    from qgnn.hw.mixed_params import MixedParams

    st = _stage(seed, nodes, features, bits, ww)
    widths = tuple(sorted(set(st.bits_in) | set(st.out_bits)))
    prm = MixedParams(in_widths=widths, word_width=ww, pes=pes,
                      max_terms=max(1, st.max_terms), max_features=features, r_bits=st.r_bits,
                      max_latency=4, max_buckets=3, overlap_drain=overlap)
    img = mixed_memory_image(st, prm)
    run = run_mixed_amaranth(prm, [img], latency=latency)[0]
    # cycles only: the output words against the reference are tests/hw's
    # (test_hw_mixed_amaranth.py); a run must complete without overflow to count
    assert run.completed and not run.overflow
    sim = simulate_mixed_stage(st, pes=pes, latency=latency, overlap_drain=overlap)
    assert sim.cycles == run.cycles == run.dut_cycles, (
        f"{st.name}: simulator {sim.cycles} cycles, RTL {run.cycles} (register "
        f"{run.dut_cycles})")


def cora_mixed_stage(cora, features: int, top: float, seed: int) -> MixedAggregationStage:
    """Cora's CSR (A + I) with the top ``top`` fraction of nodes by degree at INT8."""
    from qgnn.model.nn import graph_ops
    from qgnn.model.quant.node_precision import NodePrecision, degree_buckets

    g = graph_ops(cora)
    n = int(cora.num_nodes)
    node = NodePrecision.from_dict({"by": "degree_quantile", "bits": [2, 8],
                                    "edges": [1.0 - top]})
    bucket = degree_buckets(g.deg_hat, node).numpy().astype(np.int64)
    rng = np.random.default_rng(seed)
    qmax = np.where(bucket == 1, 255, 3)
    codes = rng.integers(0, 256, size=(n, features)) % (qmax[:, None] + 1)
    return MixedAggregationStage(
        name=f"cora-mixed-{top}", indptr=g.indptr.numpy(), indices=g.indices.numpy(),
        codes=codes, src_bucket=bucket, bits_in=(2, 8), z_in=(1, 128), weight=(85, 1),
        dst_bucket=bucket.copy(), out_bits=(2, 8), z_out=(1, 128),
        multiplier=np.ones(n, dtype=np.int64), shift=np.full(n, 10, dtype=np.int64),
        r_bits=8)


@pytest.mark.parametrize("features, top, pes, latency, overlap",
                         [(64, 0.1, 8, 1, True), (16, 0.2, 4, 2, False), (33, 0.1, 3, 3, True)])
def test_cora_mixed_stage_equals_contract(cora, features: int, top: float, pes: int,
                                          latency: int, overlap: bool) -> None:
    st = cora_mixed_stage(cora, features, top, seed=features)
    assert 0 < int(st.src_bucket.sum()) <= top * st.num_nodes
    sim = simulate_mixed_stage(st, pes=pes, latency=latency, overlap_drain=overlap)
    want = mixed_aggregation_cycles(st.row_in_words, st.out_words, pes, latency, overlap)
    assert sim.cycles == sim.contract_cycles == want
