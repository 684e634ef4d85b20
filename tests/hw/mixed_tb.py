"""cocotb testbench of ``qgnn_mixed_engine`` (run by test_hw_mixed_rtl.py on Icarus); the
bench itself (:class:`Bench`, :func:`check`, :func:`load`) lives in :mod:`hw.cocotb_mixed`.

Configuration: the JSON file named by ``$QGNN_MIXED_BENCH_CONFIG`` with ``params``
(``MixedParams.to_dict``), ``images`` (``MixedImage`` fields), ``latency`` (cycles), ``stall``
(probability for the stalled runs), ``seed``, ``result`` (where the measurements go) and
``ideal_only`` (skip the stalled and reset runs).
Python-driven memories: each request is answered ``latency`` cycles after it is accepted, in
order; stalls drop request ``ready``, postpone response ``valid`` (before offering only) and
drop output ``ready``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cocotb
from qgnn.hw.cocotb_mixed import KINDS, Bench, check, load

from qgnn.core.timing import mixed_aggregation_cycles

__all__ = ["KINDS", "Bench", "check", "load", "mixed_exact_and_stalls"]


@cocotb.test()
async def mixed_exact_and_stalls(dut) -> None:  # noqa: ANN001
    """Per image: ideal memory (exact words, cycles == contract, no overflow); a stalled run
    cut by a reset in mid-stream; a stalled run (exact words, slower); a stall-free run after
    the reset that meets the contract again."""
    cfg, prm, images = load()
    lat = int(cfg["latency"])
    p = float(cfg.get("stall", 0.3))
    seed = int(cfg.get("seed", 1))
    bench = Bench(dut, prm)
    report = []
    for n, img in enumerate(images):
        want = mixed_aggregation_cycles(img.row_in_words, img.row_out_words, prm.pes, lat,
                                        overlap_drain=prm.overlap_drain)
        await bench.reset()
        t0 = time.perf_counter()
        ideal = await bench.run(img, lat)
        wall = time.perf_counter() - t0
        assert check(ideal, img) == 0, f"{img.name}: wrong words (ideal memory)"
        assert ideal["writes"] == len(img.expected), f"{img.name}: {ideal['writes']} writes"
        assert ideal["cycles"] == want == ideal["dut_cycles"], \
            f"{img.name}: {ideal['cycles']} cycles (register {ideal['dut_cycles']}), want {want}"
        assert not ideal["overflow"], f"{img.name}: overflow"
        entry = {"name": img.name, "rtl_cycles": ideal["cycles"], "expected_cycles": want,
                 "words": len(img.expected), "wall_s": round(wall, 1)}
        report.append(entry)
        if cfg.get("ideal_only"):
            continue
        cut = await bench.run(img, lat, p=p, seed=seed + 3 * n, stop_after=max(2, want // 2))
        assert not cut["completed"], f"{img.name}: finished before the reset"
        await bench.reset()
        stalled = await bench.run(img, lat + n % 2, p=p, seed=seed + 3 * n + 1)
        assert check(stalled, img) == 0, f"{img.name}: wrong words with stalls"
        assert stalled["cycles"] > want, f"{img.name}: stalls did not slow the run"
        await bench.reset()
        clean = await bench.run(img, lat)
        assert check(clean, img) == 0 and clean["cycles"] == want, \
            f"{img.name}: after reset {clean['cycles']} cycles, want {want}"
        entry["stalled_cycles"] = stalled["cycles"]
    if cfg.get("result"):
        Path(cfg["result"]).write_text(json.dumps(report, indent=1), encoding="utf-8")
