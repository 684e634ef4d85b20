"""Run the mixed-width engine on one image in ``amaranth.sim`` (fast tests, no HDL simulator).

Memory models as :mod:`hw.amsim`: each request is answered ``latency`` cycles after it is
accepted (in order); request ports drop ``ready`` and response ports postpone ``valid`` (before
offering only: once offered, a response stays until taken) with the given probabilities; the
output streams drop ``ready`` likewise. ``reset_at`` pulses the engine's reset in that cycle
(mid-run) and ends the run there, for reset tests.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

from amaranth import Module, ResetInserter, Signal, Value
from amaranth.lib import wiring
from amaranth.sim import Simulator

from .mixed_engine import MixedAggregationEngine
from .mixed_memimage import MixedImage
from .mixed_params import MixedParams

_KINDS = ("desc", "idx", "feat")


@dataclass
class MixedRun:
    """Outcome of one run: ``outputs`` by address, ``writes``, ``duplicates``, ``cycles``
    (testbench count from the accepted start to the first cycle with ``done``), ``dut_cycles``
    (the engine's register), ``overflow``, ``completed`` (``False`` when cut by a reset)."""

    outputs: dict[int, int] = field(default_factory=dict)
    writes: int = 0
    duplicates: list[int] = field(default_factory=list)
    cycles: int = 0
    dut_cycles: int = 0
    overflow: bool = False
    completed: bool = False


class _Top(wiring.Component):
    """The engine behind a testbench-driven synchronous reset (``soft_rst``)."""

    def __init__(self, engine: MixedAggregationEngine) -> None:
        self.engine = engine
        self.soft_rst = Signal()
        super().__init__({})

    def elaborate(self, platform: object) -> Module:
        m = Module()
        m.submodules.engine = ResetInserter(self.soft_rst)(self.engine)
        return m


def run_mixed_amaranth(params: MixedParams, images: list[MixedImage], latency: int = 1,
                       p_req_stall: float = 0.0, p_resp_stall: float = 0.0,
                       p_out_stall: float = 0.0, seed: int = 0,
                       reset_at: list[int | None] | None = None,
                       max_cycles: int = 200_000) -> list[MixedRun]:
    """Simulate runs of ``images`` one after the other on one engine (same simulation).

    ``reset_at[r]`` (cycles after run ``r``'s start, or ``None``) resets the engine in
    mid-run; that run then ends there (``completed = False``) and the next starts.
    """
    if latency < 1:
        raise ValueError(f"latency must be >= 1 cycle, got {latency}")
    eng = MixedAggregationEngine(params)
    top = _Top(eng)
    rnd = random.Random(seed)
    P = params.pes
    cuts = list(reset_at or [None] * len(images))
    results: list[MixedRun] = []

    async def one_run(ctx, img: MixedImage, cut: int | None) -> MixedRun:  # noqa: ANN001
        tables = {"desc": img.desc, "idx": img.indices, "feat": img.feat_words}
        queues: dict[tuple[str, int], deque[tuple[int, int]]] = {
            (k, p): deque() for k in _KINDS for p in range(P)}
        offering = {(k, p): False for k in _KINDS for p in range(P)}
        run = MixedRun()
        ctx.set(eng.num_nodes, img.num_nodes)
        ctx.set(eng.features, img.features)
        for name in ("in_sel", "z_in", "weight", "out_sel", "z_out"):
            for port, v in zip(getattr(eng, name), getattr(img, name), strict=True):
                ctx.set(port, v)
        ctx.set(eng.start, 1)
        await ctx.tick()
        ctx.set(eng.start, 0)
        t = 1
        while not ctx.get(eng.done):
            if cut is not None and t >= cut:
                ctx.set(top.soft_rst, 1)
                for kind in _KINDS:
                    for p in range(P):
                        ctx.set(getattr(eng, f"{kind}_resp")[p].valid, 0)
                await ctx.tick()
                ctx.set(top.soft_rst, 0)
                run.cycles = t
                return run
            if t > max_cycles:
                raise TimeoutError(f"{img.name}: no done after {max_cycles} cycles")
            for kind in _KINDS:
                for p in range(P):
                    req = getattr(eng, f"{kind}_req")[p]
                    resp = getattr(eng, f"{kind}_resp")[p]
                    q = queues[kind, p]
                    ctx.set(req.ready, rnd.random() >= p_req_stall)
                    if not offering[kind, p] and q and q[0][0] <= t:
                        offering[kind, p] = rnd.random() >= p_resp_stall
                    ctx.set(resp.valid, offering[kind, p])
                    if offering[kind, p]:
                        ctx.set(Value.cast(resp.payload), q[0][1])
            for p in range(P):
                ctx.set(eng.out[p].ready, rnd.random() >= p_out_stall)
            for kind, table in tables.items():
                for p in range(P):
                    req = getattr(eng, f"{kind}_req")[p]
                    resp = getattr(eng, f"{kind}_resp")[p]
                    q = queues[kind, p]
                    if offering[kind, p] and ctx.get(resp.ready):
                        q.popleft()
                        offering[kind, p] = False
                    if ctx.get(req.valid) and ctx.get(req.ready):
                        a = ctx.get(req.payload)
                        q.append((t + latency, table[a] if a < len(table) else 0))
            for p in range(P):
                o = eng.out[p]
                if ctx.get(o.valid) and ctx.get(o.ready):
                    a = ctx.get(o.payload.addr)
                    if a in run.outputs:
                        run.duplicates.append(a)
                    run.outputs[a] = ctx.get(o.payload.word)
                    run.writes += 1
            await ctx.tick()
            t += 1
        for kind in _KINDS:
            for p in range(P):
                ctx.set(getattr(eng, f"{kind}_resp")[p].valid, 0)
        run.cycles = t
        run.dut_cycles = ctx.get(eng.cycles)
        run.overflow = bool(ctx.get(eng.overflow))
        run.completed = True
        return run

    async def bench(ctx) -> None:  # noqa: ANN001
        for img, cut in zip(images, cuts, strict=True):
            results.append(await one_run(ctx, img, cut))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return results


__all__ = ["MixedRun", "run_mixed_amaranth"]
