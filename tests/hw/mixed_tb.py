"""cocotb testbench of ``qgnn_mixed_engine`` (run by test_hw_mixed_rtl.py on Icarus).

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
import os
import random
import time
from collections import deque
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge
from qgnn.hw.mixed_export import MIXED_CONFIG_ENV
from qgnn.hw.mixed_memimage import MixedImage
from qgnn.hw.mixed_params import BUCKET_INPUTS, MixedParams

from qgnn.core.timing import mixed_aggregation_cycles

KINDS = ("desc", "idx", "feat")


def load() -> tuple[dict, MixedParams, list[MixedImage]]:
    cfg = json.loads(Path(os.environ[MIXED_CONFIG_ENV]).read_text(encoding="utf-8"))
    return cfg, MixedParams.from_dict(cfg["params"]), [MixedImage(**d) for d in cfg["images"]]


class Bench:
    def __init__(self, dut, prm: MixedParams) -> None:  # noqa: ANN001
        self.dut = dut
        self.prm = prm
        Clock(dut.clk, 10, unit="ns").start()

    def sig(self, port: str, pe: int, field: str):  # noqa: ANN201
        return getattr(self.dut, f"{port}__{pe}__{field}")

    def idle(self) -> None:
        self.dut.start.value = 0
        for p in range(self.prm.pes):
            for k in KINDS:
                self.sig(f"{k}_req", p, "ready").value = 0
                self.sig(f"{k}_resp", p, "valid").value = 0
            self.sig("out", p, "ready").value = 0

    async def reset(self) -> None:
        self.idle()
        self.dut.rst.value = 1
        for _ in range(2):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def run(self, img: MixedImage, latency: int, p: float = 0.0, seed: int = 0,
                  stop_after: int | None = None) -> dict:
        dut, prm = self.dut, self.prm
        rnd = random.Random(seed)
        tables = {"desc": img.desc, "idx": img.indices, "feat": img.feat_words}
        ports = []
        for pe in range(prm.pes):
            for k in KINDS:
                ports.append({"req_v": self.sig(f"{k}_req", pe, "valid"),
                              "req_r": self.sig(f"{k}_req", pe, "ready"),
                              "req_p": self.sig(f"{k}_req", pe, "payload"),
                              "resp_v": self.sig(f"{k}_resp", pe, "valid"),
                              "resp_r": self.sig(f"{k}_resp", pe, "ready"),
                              "resp_p": self.sig(f"{k}_resp", pe, "payload"),
                              "table": tables[k], "q": deque(), "off": False, "r": 0})
        outs = [(self.sig("out", pe, "valid"), self.sig("out", pe, "ready"),
                 self.sig("out", pe, "payload")) for pe in range(prm.pes)]
        out_r = [0] * prm.pes
        dut.num_nodes.value = img.num_nodes
        dut.features.value = img.features
        for name in BUCKET_INPUTS:
            for k, v in enumerate(getattr(img, name)):
                getattr(dut, f"{name}__{k}").value = v
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        res = {"outputs": {}, "writes": 0, "dups": 0, "cycles": 0, "completed": False}
        t = 1
        amask = (1 << prm.addr_bits) - 1
        while True:
            for port in ports:
                r = 0 if (p and rnd.random() < p) else 1
                port["req_r"].value = r
                port["r"] = r
                q = port["q"]
                if not port["off"] and q and q[0][0] <= t and not (p and rnd.random() < p):
                    port["off"] = True
                    port["resp_p"].value = q[0][1]
                port["resp_v"].value = 1 if port["off"] else 0
            for k, (_, o_r, _) in enumerate(outs):
                out_r[k] = 0 if (p and rnd.random() < p) else 1
                o_r.value = out_r[k]
            await ReadOnly()
            if dut.done.value:
                res.update(completed=True, cycles=t, dut_cycles=int(dut.cycles.value),
                           overflow=bool(dut.overflow.value))
                break
            for port in ports:
                if port["off"] and port["resp_r"].value:
                    port["q"].popleft()
                    port["off"] = False
                if port["r"] and port["req_v"].value:
                    a = int(port["req_p"].value)
                    port["q"].append((t + latency, port["table"][a]))
            for k, (o_v, _, o_p) in enumerate(outs):
                if out_r[k] and o_v.value:
                    v = int(o_p.value)
                    a = v & amask
                    res["dups"] += a in res["outputs"]
                    res["outputs"][a] = v >> prm.addr_bits
                    res["writes"] += 1
            if stop_after is not None and t >= stop_after:
                res["cycles"] = t
                break
            if t > 200_000:
                raise TimeoutError(f"{img.name}: no done")
            await RisingEdge(dut.clk)
            t += 1
        await RisingEdge(dut.clk)
        self.idle()
        return res


def check(res: dict, img: MixedImage) -> int:
    bad = sum(res["outputs"].get(a) != w for a, w in enumerate(img.expected))
    return bad + res["dups"] + sum(a >= len(img.expected) for a in res["outputs"])


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
