"""cocotb bench of the mixed-width engine ``qgnn_mixed_engine`` (Python-driven memories).

:class:`Bench` drives the engine's ports from Python: every request is answered ``latency``
cycles after it is accepted, in order; with a stall probability ``p`` the bench drops request
``ready``, postpones response ``valid`` (before offering only) and drops output ``ready``,
each at random per cycle from ``seed``. :func:`check` counts wrong words.

The cocotb test :func:`verify_mixed_stages` is run by ``qgnn verify``
(:func:`hw.verify.verify_vectors`) for the mixed stages of a version-3 vector set. Its
configuration is the JSON file named by ``$QGNN_MIXED_BENCH_CONFIG``: ``vectors`` (set
directory), ``stages`` (indices of the mixed stages), ``params`` (``MixedParams.to_dict``),
``latency`` (cycles), ``stalls`` (probability), ``seed``, ``result`` (JSON written here, one
entry per stage; mismatches are reported, not raised), ``reset_check`` (default on: before the
verified run, :meth:`Bench.reset_check` starts the stage, raises ``rst`` in mid-run at
:func:`hw.mixed_freerun.reset_cycle` and checks that the engine's state is cleared; the verified
run then follows that reset directly). The expected words are the set's ``expected_packed``
(not recomputed).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from qgnn.core.timing import mixed_aggregation_cycles, mixed_ideal_cycles

from .mixed_export import MIXED_CONFIG_ENV
from .mixed_freerun import RESET_HOLD, reset_cleared, reset_cycle
from .mixed_memimage import MixedImage, mixed_memory_image
from .mixed_params import BUCKET_INPUTS, MixedParams

if TYPE_CHECKING:
    from qgnn.model.golden.format import GoldenMixedStage

KINDS = ("desc", "idx", "feat")
#: Default cycle limit of :meth:`Bench.run` (cycles).
DEFAULT_TIMEOUT = 200_000


def load_config() -> dict:
    """The JSON configuration named by ``$QGNN_MIXED_BENCH_CONFIG``."""
    return json.loads(Path(os.environ[MIXED_CONFIG_ENV]).read_text(encoding="utf-8"))


def load() -> tuple[dict, MixedParams, list[MixedImage]]:
    """Configuration, engine parameters and the ``images`` (``MixedImage`` fields) of it."""
    cfg = load_config()
    return cfg, MixedParams.from_dict(cfg["params"]), [MixedImage(**d) for d in cfg["images"]]


class Bench:
    """Python memory models and output sink around the engine ``dut`` (clock 10 ns)."""

    def __init__(self, dut: Any, prm: MixedParams) -> None:
        self.dut = dut
        self.prm = prm
        Clock(dut.clk, 10, unit="ns").start()

    def sig(self, port: str, pe: int, field: str) -> Any:
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

    def valid_outputs(self) -> int:
        """1 when any request or output ``valid`` of the engine is high (read in ``ReadOnly``)."""
        return int(any(int(self.sig(port, pe, "valid").value)
                       for pe in range(self.prm.pes)
                       for port in ("desc_req", "idx_req", "feat_req", "out")))

    async def reset_check(self, img: MixedImage, latency: int, cut: int, p: float = 0.0,
                          seed: int = 0) -> dict:
        """Start ``img`` (memories of ``latency``, stalls ``p`` from ``seed``), raise ``rst``
        in cycle ``cut`` and hold it :data:`~hw.mixed_freerun.RESET_HOLD` cycles; return
        ``reset_at`` (``cut``), ``running`` (the run had not finished), ``state`` (``busy``,
        ``done``, ``overflow``, ``cycles``, ``any_valid`` under reset) and ``ok`` (running and
        every one of them 0). ``rst`` is low again on return, the inputs idle."""
        dut = self.dut
        cutrun = await self.run(img, latency, p=p, seed=seed, stop_after=cut - 1, strict=False)
        # run() returned at the edge ending cycle cut - 1: rst is high from cycle cut on
        dut.rst.value = 1
        for _ in range(RESET_HOLD):
            await RisingEdge(dut.clk)
        await ReadOnly()
        state = {"busy": int(dut.busy.value), "done": int(dut.done.value),
                 "overflow": int(dut.overflow.value), "cycles": int(dut.cycles.value),
                 "any_valid": self.valid_outputs()}
        await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)
        running = not cutrun["completed"]
        return {"reset_at": cut, "running": running, "state": state,
                "ok": running and reset_cleared(state)}

    async def run(self, img: MixedImage, latency: int, p: float = 0.0, seed: int = 0,
                  stop_after: int | None = None, timeout: int = DEFAULT_TIMEOUT,
                  strict: bool = True) -> dict:
        """One run of ``img``; returns ``outputs`` (address -> word), ``writes``, ``dups``
        (addresses written twice), ``cycles`` (start to done), ``dut_cycles``, ``overflow``,
        ``completed``. A run past ``timeout`` cycles raises ``TimeoutError`` (``strict``) or
        returns with ``completed = False``; ``stop_after`` cuts the run (not completed)."""
        dut, prm = self.dut, self.prm
        rnd = random.Random(seed)
        tables = {"desc": img.desc, "idx": img.indices, "feat": img.feat_words}
        ports = []
        k: str | int                    # a port kind here, a bucket / PE index further on
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
        res: dict = {"outputs": {}, "writes": 0, "dups": 0, "cycles": 0, "completed": False,
                     "dut_cycles": 0, "overflow": False}
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
            if t > timeout:
                if strict:
                    raise TimeoutError(f"{img.name}: no done after {timeout} cycles")
                res["cycles"] = t
                break
            await RisingEdge(dut.clk)
            t += 1
        await RisingEdge(dut.clk)
        self.idle()
        return res


def check(res: dict, img: MixedImage) -> int:
    """Wrong or missing words, plus addresses written twice or outside the output image."""
    bad = sum(res["outputs"].get(a) != w for a, w in enumerate(img.expected))
    return bad + res["dups"] + sum(a >= len(img.expected) for a in res["outputs"])


def mixed_first_mismatch(expected: list[int], outputs: dict[int, int], out_offset: list[int],
                         row_bits: list[int], word_width: int) -> dict | None:
    """The first wrong word (by address) as ``{node, word, lane, feature, expected, got}``:
    ``node`` the output row holding the address, ``word`` the word within the row, ``lane`` the
    first differing lane at the row's output width ``row_bits[node]``."""
    import bisect

    for a, want in enumerate(expected):
        got = outputs.get(a)
        if got != want:
            node = bisect.bisect_right(out_offset, a) - 1
            bits = row_bits[node]
            lanes = word_width // bits
            mask = (1 << bits) - 1
            lane = 0
            if got is not None:
                diff = got ^ want
                while lane < lanes - 1 and not (diff >> (lane * bits)) & mask:
                    lane += 1
            word = a - out_offset[node]
            return {"node": node, "word": word, "lane": lane, "feature": word * lanes + lane,
                    "expected": want, "got": got}
    return None


@cocotb.test()
async def verify_mixed_stages(dut: Any) -> None:
    """Every selected mixed stage of the vector set once: memories of the configured latency,
    random stalls of probability ``stalls`` from ``seed`` (none by default)."""
    from qgnn.model.golden.format import read_vectors

    cfg = load_config()
    prm = MixedParams.from_dict(cfg["params"])
    latency = int(cfg["latency"])
    p = float(cfg.get("stalls", 0.0))
    seed = int(cfg.get("seed", 0))
    vs = read_vectors(cfg["vectors"], check=False)
    bench = Bench(dut, prm)
    reports = []
    for k in cfg["stages"]:
        g = cast("GoldenMixedStage", vs.stages[int(k)])   # cfg["stages"]: the mixed stages
        st = g.stage
        img = mixed_memory_image(st, prm)
        img.expected = g.expected_words()          # the set's words, not recomputed
        want = mixed_aggregation_cycles(img.row_in_words, img.row_out_words, prm.pes, latency,
                                        overlap_drain=prm.overlap_drain)
        await bench.reset()
        reset = None
        if cfg.get("reset_check", True):
            cut = (int(cfg["reset_cycle"]) if cfg.get("reset_cycle") is not None
                   else reset_cycle(want, seed, int(k)))
            reset = await bench.reset_check(img, latency, cut, p=p, seed=seed)
        t0 = time.perf_counter()
        c0 = time.process_time()
        run = await bench.run(img, latency, p=p, seed=seed, strict=False,
                              timeout=(20 if p else 2) * want + 10_000)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        row_bits = [int(st.out_bits[b]) for b in st.dst_bucket]
        mm = mixed_first_mismatch(img.expected, run["outputs"], [int(v) for v in st.out_offset],
                                  row_bits, st.word_width)
        reports.append({
            "name": g.name, "kind": "mixed", "truncated": False,
            "num_nodes": st.num_nodes, "num_terms": st.num_terms,
            "words_per_row": max(img.row_out_words) if img.row_out_words else 0,
            "outputs_checked": len(img.expected), "mismatches": check(run, img),
            "first_mismatch": mm, "rtl_cycles": run["cycles"], "dut_cycles": run["dut_cycles"],
            "expected_cycles": want,
            "ideal_cycles": mixed_ideal_cycles(img.row_in_words, img.row_out_words, prm.pes,
                                               overlap_drain=prm.overlap_drain, latency=latency),
            "overflow": run["overflow"], "wall_s": wall, "cpu_s": cpu, "bench": "driven",
            "stalled": p > 0, "seed": seed, "writes": run["writes"],
            "completed": run["completed"],
            "reset_at": None if reset is None else reset["reset_at"],
            "reset_ok": None if reset is None else reset["ok"],
            "reset_state": None if reset is None else reset["state"],
        })
    Path(cfg["result"]).write_text(json.dumps({"stages": reports}, indent=1), encoding="utf-8")


__all__ = ["DEFAULT_TIMEOUT", "KINDS", "Bench", "check", "load", "load_config",
           "mixed_first_mismatch", "verify_mixed_stages"]
