"""cocotb testbench for the exported engine (``qgnn_agg_engine``): memory models and one run.

Imported only inside a cocotb simulation (Icarus or Verilator). One coroutine does all the
per-cycle work of all ports, which keeps the Python cost per simulated cycle small:

- after each rising edge it drives this cycle's inputs: request ``ready`` (dropped with
  probability ``p_req_stall``), response ``valid``/``payload`` (a response is offered once it is
  ``latency`` cycles old; with probability ``p_resp_stall`` the offer is postponed, but once
  offered it stays until taken) and output ``ready`` (dropped with ``p_out_stall``);
- in the ``ReadOnly`` phase it reads the DUT's outputs and records the handshakes that
  complete at the coming edge (requests queue their answer for cycle ``t + latency``).

Signals are written only when their value changes. Memories are the flat lists of
:class:`hw.memimage.MemoryImage`; a truncated engine also gets the image's snap thresholds on
``thr1 .. thr3`` with ``start``.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from .memimage import MemoryImage
from .params import EngineParams, port_signal

#: Clock period used by the testbenches (ns); only relevant for waveforms.
CLOCK_NS = 10
_KINDS = ("desc", "idx", "feat")


@dataclass
class BenchRun:
    """Result of one run on the HDL simulator.

    Attributes:
        outputs: output word by address (the last write wins).
        writes: output words written.
        duplicates: addresses written more than once.
        cycles: cycles from the accepted start to the first cycle with ``done`` (testbench count).
        dut_cycles: the engine's ``cycles`` register at ``done``.
        overflow: ``overflow`` at ``done``.
        completed: ``done`` was seen (``False`` when the run was cut short by ``stop_after``).
    """

    outputs: dict[int, int] = field(default_factory=dict)
    writes: int = 0
    duplicates: list[int] = field(default_factory=list)
    cycles: int = 0
    dut_cycles: int = 0
    overflow: bool = False
    completed: bool = False


class _Port:
    """One request/response memory port of one PE."""

    __slots__ = ("req_valid", "req_ready", "req_payload", "resp_valid", "resp_ready",
                 "resp_payload", "table", "queue", "offering", "w_ready", "w_valid")

    def __init__(self, dut: Any, kind: str, pe: int, table: list[int]) -> None:
        self.req_valid = getattr(dut, port_signal(f"{kind}_req", pe, "valid"))
        self.req_ready = getattr(dut, port_signal(f"{kind}_req", pe, "ready"))
        self.req_payload = getattr(dut, port_signal(f"{kind}_req", pe, "payload"))
        self.resp_valid = getattr(dut, port_signal(f"{kind}_resp", pe, "valid"))
        self.resp_ready = getattr(dut, port_signal(f"{kind}_resp", pe, "ready"))
        self.resp_payload = getattr(dut, port_signal(f"{kind}_resp", pe, "payload"))
        self.table = table
        self.queue: deque = deque()
        self.offering = False
        self.w_ready = -1
        self.w_valid = -1


class EngineBench:
    """Drives one ``qgnn_agg_engine`` instance; create once per cocotb test."""

    def __init__(self, dut: Any, params: EngineParams) -> None:
        self.dut = dut
        self.params = params
        self._clock_started = False

    async def start_clock(self) -> None:
        if not self._clock_started:
            Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
            self._clock_started = True

    async def reset(self, cycles: int = 2) -> None:
        """Hold ``rst`` for ``cycles`` cycles with every input idle."""
        await self.start_clock()
        dut = self.dut
        self._idle_inputs()
        dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(dut.clk)
        dut.rst.value = 0
        await RisingEdge(dut.clk)

    def _idle_inputs(self) -> None:
        dut = self.dut
        dut.start.value = 0
        for pe in range(self.params.pes):
            for kind in _KINDS:
                getattr(dut, port_signal(f"{kind}_req", pe, "ready")).value = 0
                getattr(dut, port_signal(f"{kind}_resp", pe, "valid")).value = 0
            getattr(dut, port_signal("out", pe, "ready")).value = 0

    async def run(self, img: MemoryImage, latency: int = 1, p_req_stall: float = 0.0,
                  p_resp_stall: float = 0.0, p_out_stall: float = 0.0, seed: int = 0,
                  max_cycles: int = 10_000_000, stop_after: int | None = None) -> BenchRun:
        """One run of ``img``; call after :meth:`reset` (the engine must be idle).

        ``stop_after``: return after that many cycles even if ``done`` has not risen (used to
        reset the design in mid-stream).
        """
        if latency < 1:
            raise ValueError(f"latency must be >= 1 cycle, got {latency}")
        await self.start_clock()
        dut = self.dut
        clk = dut.clk
        prm = self.params
        rnd = random.Random(seed)
        rand = rnd.random
        tables = {"desc": img.desc, "idx": img.indices, "feat": img.features}
        ports = [_Port(dut, kind, pe, tables[kind]) for pe in range(prm.pes) for kind in _KINDS]
        outs = [(getattr(dut, port_signal("out", pe, "valid")),
                 getattr(dut, port_signal("out", pe, "ready")),
                 getattr(dut, port_signal("out", pe, "payload"))) for pe in range(prm.pes)]
        out_written = [-1] * prm.pes
        addr_mask = (1 << prm.addr_bits) - 1
        addr_bits = prm.addr_bits
        stall_req = p_req_stall > 0
        stall_resp = p_resp_stall > 0
        stall_out = p_out_stall > 0
        res = BenchRun()
        outputs = res.outputs

        dut.num_nodes.value = img.num_nodes
        dut.words_per_row.value = img.words_per_row
        dut.z_in.value = img.z_in
        dut.z_out.value = img.z_out
        thresholds = tuple(img.thresholds or ())
        if len(thresholds) != prm.num_thresholds:
            raise ValueError(f"image {img.name!r} has thresholds {img.thresholds}; the engine "
                             f"takes {prm.num_thresholds}")
        for k, value in enumerate(thresholds):
            getattr(dut, f"thr{k + 1}").value = value
        dut.start.value = 1
        await RisingEdge(clk)          # start accepted at the end of cycle 0
        dut.start.value = 0
        done = dut.done
        t = 1
        limit = max_cycles if stop_after is None else min(max_cycles, stop_after)
        while True:
            # ---- inputs of cycle t
            for port in ports:
                r = 0 if (stall_req and rand() < p_req_stall) else 1
                if r != port.w_ready:
                    port.req_ready.value = r
                    port.w_ready = r
                q = port.queue
                if not port.offering and q and q[0][0] <= t:
                    if not (stall_resp and rand() < p_resp_stall):
                        port.offering = True
                        port.resp_payload.value = q[0][1]
                v = 1 if port.offering else 0
                if v != port.w_valid:
                    port.resp_valid.value = v
                    port.w_valid = v
            for k, (_, o_ready, _) in enumerate(outs):
                r = 0 if (stall_out and rand() < p_out_stall) else 1
                if r != out_written[k]:
                    o_ready.value = r
                    out_written[k] = r
            await ReadOnly()
            # ---- observe cycle t
            if done.value:
                res.completed = True
                res.cycles = t
                res.dut_cycles = int(dut.cycles.value)
                res.overflow = bool(dut.overflow.value)
                break
            for port in ports:
                if port.offering and port.resp_ready.value:
                    port.queue.popleft()
                    port.offering = False
                if port.w_ready and port.req_valid.value:
                    port.queue.append((t + latency, port.table[int(port.req_payload.value)]))
            for k, (o_valid, _, o_payload) in enumerate(outs):
                if out_written[k] and o_valid.value:
                    payload = int(o_payload.value)
                    a = payload & addr_mask
                    if a in outputs:
                        res.duplicates.append(a)
                    outputs[a] = payload >> addr_bits
                    res.writes += 1
            if t >= limit:
                if stop_after is None:
                    raise TimeoutError(f"engine not done after {max_cycles} cycles")
                res.cycles = t
                break
            await RisingEdge(clk)
            t += 1
        await RisingEdge(clk)
        self._release(ports, outs)
        return res

    def _release(self, ports: list[_Port], outs: list) -> None:
        for port in ports:
            port.resp_valid.value = 0
            port.req_ready.value = 0
        for _, o_ready, _ in outs:
            o_ready.value = 0


def check_run(run: BenchRun, img: MemoryImage) -> tuple[int, int | None]:
    """``(mismatches, first mismatching address)``: every output address written exactly once
    with the expected word (a missing word counts as a mismatch)."""
    bad = 0
    first = None
    for a, want in enumerate(img.expected):
        if run.outputs.get(a) != want:
            bad += 1
            if first is None:
                first = a
    extra = [a for a in run.outputs if a >= len(img.expected)]
    bad += len(extra) + len(run.duplicates)
    if first is None and (extra or run.duplicates):
        first = min(extra + run.duplicates)
    return bad, first


__all__ = ["CLOCK_NS", "BenchRun", "EngineBench", "check_run"]
