"""cocotb test module run by ``qgnn verify`` (:func:`hw.verify.verify_vectors`).

Reads its configuration from the JSON file named by ``$QGNN_HW_BENCH_CONFIG`` (vector-set
directory, engine parameters, memory latency, result path and optionally ``stages``, the
indices of the stages this engine runs; ``p_req``, ``p_resp``, ``p_out`` stall probabilities
and ``seed``, default 0: ideal memory), runs every (selected) stage once and writes the
per-stage results as JSON. Mismatches are reported, not raised: the
caller decides.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import cocotb
from qgnn.hw.cocotb_bench import EngineBench, check_run
from qgnn.hw.memimage import memory_image
from qgnn.hw.params import EngineParams
from qgnn.hw.verify import CONFIG_ENV, first_mismatch

from qgnn.core.timing import aggregation_cycles, ideal_cycles


def load_config() -> dict:
    """The run configuration written by :func:`hw.verify.run_cocotb`."""
    return json.loads(Path(os.environ[CONFIG_ENV]).read_text(encoding="utf-8"))


def params_from_config(cfg: dict) -> EngineParams:
    """The engine parameters of the configuration (``EngineParams.to_dict`` form)."""
    return EngineParams.from_dict(cfg["params"])


@cocotb.test()
async def verify_vector_set(dut: object) -> None:
    """Every stage of the vector set, ideal memory of the configured latency."""
    from qgnn.model.golden.format import read_vectors

    cfg = load_config()
    prm = params_from_config(cfg)
    latency = int(cfg["latency"])
    probs: dict[str, Any] = {f"{k}_stall": float(cfg.get(k, 0.0))
                             for k in ("p_req", "p_resp", "p_out")}
    stalled = any(v > 0 for v in probs.values())
    seed = int(cfg.get("seed", 0))
    vs = read_vectors(cfg["vectors"], check=False)
    bench = EngineBench(dut, prm)
    reports = []
    chosen = cfg.get("stages")
    for g in (vs.stages if chosen is None else [vs.stages[int(k)] for k in chosen]):
        img = memory_image(g, prm)
        await bench.reset()
        t0 = time.perf_counter()
        c0 = time.process_time()
        run = await bench.run(img, latency=latency, seed=seed, **probs)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        bad, _ = check_run(run, img)
        mm = first_mismatch(img.expected, run.outputs, img.words_per_row, prm.bits, prm.lanes)
        reports.append({
            "name": g.name,
            "truncated": prm.truncated,
            "num_nodes": img.num_nodes,
            "num_terms": len(img.indices),
            "words_per_row": img.words_per_row,
            "outputs_checked": len(img.expected),
            "mismatches": bad,
            "first_mismatch": None if mm is None else mm.__dict__,
            "rtl_cycles": run.cycles,
            "dut_cycles": run.dut_cycles,
            "expected_cycles": aggregation_cycles(img.row_lengths, img.words_per_row, prm.pes,
                                                  latency),
            "ideal_cycles": ideal_cycles(img.row_lengths, img.words_per_row, prm.pes),
            "overflow": run.overflow,
            "wall_s": wall,
            "cpu_s": cpu,
            "bench": "driven",
            "stalled": stalled,
            "seed": seed,
            "writes": run.writes,
            "completed": run.completed,
        })
    Path(cfg["result"]).write_text(json.dumps({"stages": reports}, indent=1), encoding="utf-8")
