"""cocotb testbench of ``qgnn_agg_engine`` (run by test_hw_rtl.py through cocotb_tools.runner).

Configuration comes from the JSON file named by ``$QGNN_HW_BENCH_CONFIG``: ``vectors`` (a golden
vector-set directory), ``params`` (engine parameters), ``latency`` (memory latency, cycles),
``stall`` (stall probability for the randomised test), ``seed`` and ``result`` (where the exact
test writes its measurements).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cocotb
from qgnn.hw.cocotb_bench import EngineBench, check_run
from qgnn.hw.cocotb_verify import load_config, params_from_config
from qgnn.hw.memimage import memory_image

from qgnn.core.timing import aggregation_cycles, ideal_cycles


def _images(cfg: dict, prm):
    from qgnn.model.golden.format import read_vectors

    vs = read_vectors(cfg["vectors"], check=False)
    return [memory_image(g, prm) for g in vs.stages]


@cocotb.test()
async def exact_words_and_cycles(dut) -> None:
    """Ideal memory: every output word equal, cycles equal to qgnn.core.timing, no overflow."""
    cfg = load_config()
    prm = params_from_config(cfg)
    latency = int(cfg["latency"])
    bench = EngineBench(dut, prm)
    results = []
    for img in _images(cfg, prm):
        await bench.reset()
        t0 = time.perf_counter()
        run = await bench.run(img, latency=latency)
        wall = time.perf_counter() - t0
        bad, first = check_run(run, img)
        want = aggregation_cycles(img.row_lengths, img.words_per_row, prm.pes, latency)
        results.append({"name": img.name, "mismatches": bad, "rtl_cycles": run.cycles,
                        "expected_cycles": want, "num_terms": len(img.indices),
                        "num_nodes": img.num_nodes, "words_per_row": img.words_per_row,
                        "ideal_cycles": ideal_cycles(img.row_lengths, img.words_per_row, prm.pes),
                        "wall_s": wall})
        assert bad == 0, f"{img.name}: {bad} wrong output words, first at address {first}"
        assert run.writes == len(img.expected), f"{img.name}: {run.writes} writes"
        assert run.cycles == want, f"{img.name}: {run.cycles} cycles, contract says {want}"
        assert run.dut_cycles == run.cycles, f"{img.name}: cycles register {run.dut_cycles}"
        assert not run.overflow, f"{img.name}: overflow raised"
    if cfg.get("result"):
        Path(cfg["result"]).write_text(json.dumps(results, indent=1), encoding="utf-8")


@cocotb.test()
async def stalls_and_midstream_reset(dut) -> None:
    """Random valid/ready stalls on every port; reset in mid-stream; rerun and check; then a
    stall-free run must again meet the timing contract (the reset left nothing behind)."""
    cfg = load_config()
    prm = params_from_config(cfg)
    latency = int(cfg["latency"])
    p = float(cfg.get("stall", 0.3))
    seed = int(cfg.get("seed", 1))
    bench = EngineBench(dut, prm)
    for k, img in enumerate(_images(cfg, prm)):
        want = aggregation_cycles(img.row_lengths, img.words_per_row, prm.pes, latency)
        await bench.reset()
        cut = await bench.run(img, latency=latency, p_req_stall=p, p_resp_stall=p,
                              p_out_stall=p, seed=seed + 3 * k, stop_after=max(2, want // 2))
        assert not cut.completed, f"{img.name}: finished before the mid-stream reset"
        await bench.reset()
        run = await bench.run(img, latency=latency + k % 3, p_req_stall=p, p_resp_stall=p,
                              p_out_stall=p, seed=seed + 3 * k + 1)
        bad, first = check_run(run, img)
        assert bad == 0, f"{img.name} (stalls): {bad} wrong words, first at address {first}"
        assert run.cycles > want, f"{img.name}: stalls did not slow the run ({run.cycles})"
        await bench.reset()
        clean = await bench.run(img, latency=latency)
        bad, first = check_run(clean, img)
        assert bad == 0, f"{img.name} (after reset): {bad} wrong words, first {first}"
        assert clean.cycles == want, f"{img.name}: {clean.cycles} cycles after reset, want {want}"
