"""Properties: more bandwidth never costs cycles; fewer bits never move more bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.sim import simulate
from simtest_helpers import arch_with, random_graph

graphs = st.builds(
    lambda seed, n, deg, f: random_graph(seed, n, deg, f),
    st.integers(0, 10_000), st.integers(5, 400), st.floats(0.0, 8.0), st.integers(1, 300))
models = st.sampled_from(["gcn", "gin", "sage", "decoupled"])
dataflows = st.sampled_from(["auto", "combine-first", "aggregate-first"])
small_buffers = st.sampled_from([None, 1.0, 8.0])  # KiB for the feature/weight buffers

SETTINGS = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def chip(bw: float, dataflow: str, buf: float | None, preset: str = "hbm2"):
    kw = {"dram__preset": preset, "dram__bandwidth_gbps": bw, "dataflow__default": dataflow}
    if buf is not None:
        kw.update(buffers__feature__size_kib=buf, buffers__weight__size_kib=buf,
                  buffers__feature__banks=1, buffers__weight__banks=1)
    return arch_with(**kw)


@SETTINGS
@given(g=graphs, model=models, df=dataflows, buf=small_buffers, bits=st.sampled_from([2, 4, 8]),
       bw=st.floats(1.0, 500.0), factor=st.floats(1.0, 20.0),
       preset=st.sampled_from(["ddr4", "lpddr4", "hbm2"]))
def test_more_bandwidth_never_costs_cycles(g, model, df, buf, bits, bw, factor, preset) -> None:
    slow = simulate(g, model, bits, arch=chip(bw, df, buf, preset), hidden=16)
    fast = simulate(g, model, bits, arch=chip(bw * factor, df, buf, preset), hidden=16)
    assert fast.run.cycles <= slow.run.cycles + 1e-6
    assert fast.fp32.cycles <= slow.fp32.cycles + 1e-6


@SETTINGS
@given(g=graphs, model=models, df=st.sampled_from(["combine-first", "aggregate-first"]),
       buf=small_buffers, hidden=st.integers(1, 96))
def test_fewer_bits_never_move_more_bytes(g, model, df, buf, hidden) -> None:
    """For a fixed dataflow. (``auto`` picks the order by cycles and may trade bytes for
    cycles, so it is not covered.)"""
    a = chip(256.0, df, buf)
    totals = [simulate(g, model, b, arch=a, hidden=hidden).run.dram_bytes_total
              for b in (2, 4, 8)]
    assert totals[0] <= totals[1] <= totals[2]
