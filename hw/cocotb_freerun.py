"""cocotb test module of the free-running bench (``qgnn verify --bench freerun``).

The toplevel is the ``qgnn_freerun`` harness (:mod:`hw.freerun`): memories, latency and stalls
are in the HDL. For each (selected) stage of the vector set this module writes the hex files,
resets the harness while ``load`` is high (the memories are read, the output memory cleared,
the port generators seeded from ``seed``), sets the run-time inputs, pulses ``start`` and waits
for ``RisingEdge(done)`` (or ``RisingEdge(timeout)``): no Python runs while the engine works.
It then reads the counters, has the harness dump its output memory once (``dump``) and compares
every word with the golden words.

Configuration (JSON named by ``$QGNN_HW_BENCH_CONFIG``): ``vectors``, ``params``, ``latency``,
``result``, ``stages`` (indices; optional), ``shape`` (:class:`hw.freerun.HarnessShape`),
``p_req``, ``p_resp``, ``p_out`` (stall probabilities, default 0), ``seed`` (default 1),
``max_cycles`` (default :func:`timeout_cycles`), ``repeat`` (runs per stage, each checked in
full; the reported simulation time is the shortest) and ``hdl_clock`` (the harness makes its own clock). Mismatches are reported, not raised.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import First, ReadOnly, RisingEdge
from qgnn.hw.cocotb_verify import load_config, params_from_config
from qgnn.hw.freerun import (
    CLOCK_NS,
    HEX_FILES,
    HarnessShape,
    compare_outputs,
    read_dump,
    stall_threshold,
    write_stage_files,
)
from qgnn.hw.memimage import memory_image
from qgnn.hw.verify import first_mismatch

from qgnn.core.timing import aggregation_cycles, ideal_cycles


def timeout_cycles(contract: int, p_stall: float) -> int:
    """Cycles after which a run counts as hung: 4 x the contract, stretched by ``(1 - p)^-3``
    for stall probability ``p`` (a slot crosses three stalling handshakes), + 10,000."""
    return min((1 << 32) - 1, int(4 * contract / (1.0 - p_stall) ** 3) + 10_000)


async def _one_run(dut: Any, clk: Any, img: Any, prm: Any, here: Path) -> dict:
    """Reset (loading the memories), start, await done, read the counters, dump the output
    memory and compare it with ``img.expected``."""
    dut.rst.value = 1
    dut.load.value = 1                 # memories (re)loaded, output memory cleared
    await RisingEdge(clk)
    dut.load.value = 0
    await RisingEdge(clk)
    dut.rst.value = 0
    await RisingEdge(clk)
    t0 = time.perf_counter()
    c0 = time.process_time()
    dut.start.value = 1
    await RisingEdge(clk)              # start accepted at the end of cycle 0
    dut.start.value = 0
    await First(RisingEdge(dut.done), RisingEdge(dut.timeout))
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    await RisingEdge(clk)              # counters are frozen once done is 1
    await ReadOnly()
    res: dict[str, Any] = {
        "wall": wall,
        "cpu": cpu,
        "completed": bool(int(dut.done.value)),
        "tb_cycles": int(dut.tb_cycles.value),
        "dut_cycles": int(dut.cycles.value),
        "overflow": bool(int(dut.overflow.value)),
        "writes": int(dut.writes.value),
        "mem_err": bool(int(dut.mem_err.value)),
    }
    dups = int(dut.dups.value)
    oob = int(dut.out_oob.value)
    await RisingEdge(clk)
    dut.dump.value = 1
    await RisingEdge(clk)
    dut.dump.value = 0
    await _cycles(clk, 2)
    got = read_dump(here / HEX_FILES["out"], prm.word_width, len(img.expected))
    bad, _ = compare_outputs(img.expected, got)
    res["bad"] = bad + dups + oob
    outputs = {a: w for a, w in enumerate(got) if w is not None}
    mm = first_mismatch(img.expected, outputs, img.words_per_row, prm.bits, prm.lanes)
    res["first"] = None if mm is None else mm.__dict__
    return res


async def _cycles(clk: Any, n: int) -> None:
    for _ in range(n):
        await RisingEdge(clk)


def init_harness(dut: Any, cfg: dict, latency: int, seed: int, probs: dict[str, float]) -> Any:
    """Start the clock (unless the harness makes its own, ``cfg["hdl_clock"]``), hold reset and
    set the run-time inputs shared by the uniform and mixed harnesses: ``start``/``load``/
    ``dump`` low, the memory ``latency`` (cycles), the stall ``seed`` and each port's stall
    threshold from ``probs`` (``p_req``, ``p_resp``, ``p_out``: probabilities). Returns the
    clock signal."""
    clk = dut.clk
    if not cfg.get("hdl_clock", False):   # else the harness makes its own clock
        Clock(clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    for name in ("start", "load", "dump"):
        getattr(dut, name).value = 0
    dut.latency.value = latency
    dut.seed.value = seed
    for name, v in probs.items():
        getattr(dut, name).value = stall_threshold(v)
    return clk


@cocotb.test()
async def freerun_vector_set(dut: Any) -> None:
    """Every (selected) stage of the vector set on the free-running harness."""
    from qgnn.model.golden.format import read_vectors

    cfg = load_config()
    prm = params_from_config(cfg)
    shape = HarnessShape(**cfg["shape"])
    latency = int(cfg["latency"])
    probs = {k: float(cfg.get(k, 0.0)) for k in ("p_req", "p_resp", "p_out")}
    stalled = any(v > 0 for v in probs.values())
    seed = int(cfg.get("seed", 1)) & 0xFFFFFFFF
    max_cycles_cfg = cfg.get("max_cycles")
    repeat = max(1, int(cfg.get("repeat", 1)))
    vs = read_vectors(cfg["vectors"], check=False)
    chosen = cfg.get("stages")
    here = Path(os.getcwd())
    clk = init_harness(dut, cfg, latency, seed, probs)
    k: int                              # a threshold index below
    reports = []
    for g in (vs.stages if chosen is None else [vs.stages[int(k)] for k in chosen]):
        img = memory_image(g, prm)
        write_stage_files(img, shape, here)
        dut.num_nodes.value = img.num_nodes
        dut.words_per_row.value = img.words_per_row
        dut.z_in.value = img.z_in
        dut.z_out.value = img.z_out
        for k, value in enumerate(tuple(img.thresholds or ())):
            getattr(dut, f"thr{k + 1}").value = value
        dut.n_desc.value = len(img.desc)
        dut.n_idx.value = len(img.indices)
        dut.n_feat.value = len(img.features)
        dut.n_out.value = len(img.expected)
        contract = aggregation_cycles(img.row_lengths, img.words_per_row, prm.pes, latency)
        dut.max_cycles.value = (int(max_cycles_cfg) if max_cycles_cfg is not None
                                else timeout_cycles(contract, max(probs.values())))
        runs = [await _one_run(dut, clk, img, prm, here) for _ in range(repeat)]
        first = runs[0]
        # every repetition is checked in full; a stall-free run is deterministic, and so is a
        # stalled one for a given seed: the repetitions must agree exactly
        consistent = all((r["tb_cycles"], r["dut_cycles"], r["writes"]) ==
                         (first["tb_cycles"], first["dut_cycles"], first["writes"])
                         for r in runs)
        worst = max(runs, key=lambda r: r["bad"])
        reports.append({
            "name": g.name,
            "truncated": prm.truncated,
            "num_nodes": img.num_nodes,
            "num_terms": len(img.indices),
            "words_per_row": img.words_per_row,
            "outputs_checked": len(img.expected),
            "mismatches": worst["bad"],
            "first_mismatch": worst["first"],
            "rtl_cycles": first["tb_cycles"],
            "dut_cycles": first["dut_cycles"],
            "expected_cycles": contract,
            "ideal_cycles": ideal_cycles(img.row_lengths, img.words_per_row, prm.pes),
            "overflow": any(r["overflow"] for r in runs),
            "wall_s": min(r["wall"] for r in runs),
            "cpu_s": min(r["cpu"] for r in runs),
            "bench": "freerun",
            "stalled": stalled,
            "seed": seed,
            "writes": first["writes"],
            "mem_error": any(r["mem_err"] for r in runs),
            "completed": all(r["completed"] for r in runs),
            "repeats": repeat,
            "consistent": consistent,
            "wall_s_runs": [r["wall"] for r in runs],
        })
    Path(cfg["result"]).write_text(json.dumps({"stages": reports}, indent=1), encoding="utf-8")
