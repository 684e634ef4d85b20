"""Run the engine on one stage in ``amaranth.sim`` (fast unit tests, no HDL simulator).

The memory models answer each request ``latency`` cycles after it is accepted (in order), and
can stall: a request port drops ``ready`` and a response port withholds ``valid`` (only before a
response is offered: once offered it stays until taken, as the stream rules require) with the
given probabilities; the output stream drops ``ready`` likewise. The cocotb testbench
(:mod:`hw.cocotb_bench`) implements the same models against the exported Verilog.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from amaranth import Value
from amaranth.sim import Simulator

from .engine import AggregationEngine
from .memimage import MemoryImage
from .params import EngineParams
from .requant import Requantizer, threshold_ports

#: One requantizer input: per-lane accumulators, row length n, z_in, multiplier, shift.
RequantVector = tuple[list[int], int, int, int, int]


@dataclass
class RunResult:
    """Outcome of one run.

    Attributes:
        outputs: output words by address (the last write wins).
        writes: number of output words written (each address must be written once).
        cycles: cycles from the accepted start to ``done`` as counted by the testbench.
        dut_cycles: the engine's own ``cycles`` register at ``done``.
        overflow: the ``overflow`` flag at ``done``.
        duplicates: addresses written more than once.
    """

    outputs: dict[int, int]
    writes: int
    cycles: int
    dut_cycles: int
    overflow: bool
    duplicates: list[int] = field(default_factory=list)


def check_thresholds(params: EngineParams, img: MemoryImage) -> tuple[int, ...]:
    """The image's snap thresholds, checked against the engine (none for a plain one)."""
    t = tuple(img.thresholds or ())
    if len(t) != params.num_thresholds:
        kind = "a truncated" if params.truncated else "a plain"
        raise ValueError(f"image {img.name!r} has thresholds {img.thresholds}; {kind} engine "
                         f"takes {params.num_thresholds} (build the image with memory_image "
                         "for this engine)")
    return t


def run_amaranth(params: EngineParams, img: MemoryImage, latency: int = 1,
                 p_req_stall: float = 0.0, p_resp_stall: float = 0.0,
                 p_out_stall: float = 0.0, seed: int = 0, max_cycles: int = 1_000_000,
                 engine: AggregationEngine | None = None) -> RunResult:
    """Simulate one run of ``img`` with memories of fixed ``latency`` (cycles, >= 1)."""
    if latency < 1:
        raise ValueError(f"latency must be >= 1 cycle, got {latency}")
    check_thresholds(params, img)
    dut = engine if engine is not None else AggregationEngine(params)
    rnd = random.Random(seed)
    P = params.pes
    tables = {"desc": img.desc, "idx": img.indices, "feat": img.features}
    result: dict = {}

    async def bench(ctx) -> None:
        queues: dict[tuple[str, int], deque] = {(k, p): deque() for k in tables for p in range(P)}
        offering = {(k, p): False for k in tables for p in range(P)}
        outputs: dict[int, int] = {}
        dups: list[int] = []
        writes = 0
        ctx.set(dut.num_nodes, img.num_nodes)
        ctx.set(dut.words_per_row, img.words_per_row)
        ctx.set(dut.z_in, img.z_in)
        ctx.set(dut.z_out, img.z_out)
        for port, value in zip(threshold_ports(dut, params), check_thresholds(params, img),
                               strict=True):
            ctx.set(port, value)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        t = 1
        while not ctx.get(dut.done):
            if t > max_cycles:
                raise TimeoutError(f"no done after {max_cycles} cycles")
            # drive this cycle's inputs
            for kind in tables:
                for p in range(P):
                    req = getattr(dut, f"{kind}_req")[p]
                    resp = getattr(dut, f"{kind}_resp")[p]
                    q = queues[kind, p]
                    ctx.set(req.ready, rnd.random() >= p_req_stall)
                    if not offering[kind, p] and q and q[0][0] <= t:
                        offering[kind, p] = rnd.random() >= p_resp_stall
                    ctx.set(resp.valid, offering[kind, p])
                    if offering[kind, p]:
                        ctx.set(Value.cast(resp.payload), q[0][1])
            for p in range(P):
                ctx.set(dut.out[p].ready, rnd.random() >= p_out_stall)
            # observe handshakes completing at the end of this cycle
            for kind, table in tables.items():
                for p in range(P):
                    req = getattr(dut, f"{kind}_req")[p]
                    resp = getattr(dut, f"{kind}_resp")[p]
                    q = queues[kind, p]
                    if offering[kind, p] and ctx.get(resp.ready):
                        q.popleft()
                        offering[kind, p] = False
                    if ctx.get(req.valid) and ctx.get(req.ready):
                        a = ctx.get(req.payload)
                        q.append((t + latency, table[a]))
            for p in range(P):
                o = dut.out[p]
                if ctx.get(o.valid) and ctx.get(o.ready):
                    a = ctx.get(o.payload.addr)
                    if a in outputs:
                        dups.append(a)
                    outputs[a] = ctx.get(Value.cast(o.payload.word))
                    writes += 1
            await ctx.tick()
            t += 1
        result["run"] = RunResult(outputs=outputs, writes=writes, cycles=t,
                                  dut_cycles=ctx.get(dut.cycles),
                                  overflow=bool(ctx.get(dut.overflow)), duplicates=dups)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result["run"]


def run_requantizer(params: EngineParams, vectors: list[RequantVector], z_out: int,
                    thresholds: tuple[int, ...] = (), p_gap: float = 0.0,
                    p_stall: float = 0.0, seed: int = 0) -> list[list[int]]:
    """Drive a lone :class:`~hw.requant.Requantizer` with ``vectors`` in ``amaranth.sim``
    (random input gaps and output stalls with probabilities ``p_gap``/``p_stall``); return each
    output word's lane codes. ``thresholds`` set the snap of a truncated (BT) requantizer."""
    dut = Requantizer(params)
    rnd = random.Random(seed)
    outs: list[list[int]] = []
    mask = (1 << params.bits) - 1

    async def bench(ctx) -> None:  # type: ignore[no-untyped-def]
        ctx.set(dut.z_out, z_out)
        for k, t in enumerate(thresholds):
            ctx.set(getattr(dut, f"thr{k + 1}"), t)
        i = 0
        offering = False
        for _ in range(20 * len(vectors) + 50):
            if len(outs) == len(vectors):
                break
            if not offering and i < len(vectors) and rnd.random() >= p_gap:
                acc, n, z_in, mult, shift = vectors[i]
                ctx.set(dut.i.payload, {"acc": acc, "nz": n * z_in, "multiplier": mult,
                                        "shift": shift})
                offering = True
            ctx.set(dut.i.valid, offering)
            ctx.set(dut.o.ready, rnd.random() >= p_stall)
            if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                word = ctx.get(Value.cast(dut.o.payload))
                outs.append([(word >> (k * params.bits)) & mask for k in range(params.lanes)])
            if offering and ctx.get(dut.i.ready):
                offering = False
                i += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return outs


__all__ = ["RequantVector", "RunResult", "check_thresholds", "run_amaranth", "run_requantizer"]
