"""The aggregation engine: ``P`` processing elements and the run control (Amaranth 0.5).

Row ``i`` is aggregated by PE ``i mod P``; each PE has its own descriptor, index and feature
memory ports and its own output stream (``docs/aggregation-engine.md``). The engine latches the
run-time inputs ``num_nodes`` (N), ``words_per_row`` (W), ``z_in`` and ``z_out`` (and, when
``params.truncated``, the snap thresholds ``thr1``, ``thr2``, ``thr3``) when it accepts ``start``
while idle, starts every PE one cycle later, and raises ``done`` once every PE has emitted its
last output word.

Control and status (all synchronous to ``clk``, reset by ``rst``):

- ``start`` (in): accepted in a cycle where ``busy`` is 0; ignored while busy.
- ``busy`` (out): 1 from the cycle after ``start`` is accepted until ``done`` rises.
- ``done`` (out): 0 while busy; 1 from the end of a run until the next ``start`` (0 after reset).
- ``overflow`` (out): sticky for the run: some row had more than ``max_terms`` terms (the
  accumulators could have wrapped) or a descriptor with ``end < start``.
- ``cycles`` (out): cycles from accepting ``start`` (cycle 0) to the first cycle with
  ``done = 1``; in that cycle and afterwards it holds ``rtl_cycles`` of the run
  (:func:`qgnn.core.timing.aggregation_cycles` with ideal memory).
"""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .params import CYCLE_BITS, EngineParams
from .pe import AggregationPE, pe_members, threshold_members
from .requant import threshold_ports


class AggregationEngine(wiring.Component):
    """``params.pes`` aggregation PEs with run control; see the module docstring."""

    def __init__(self, params: EngineParams) -> None:
        self.params = params
        members: dict = {
            "start": In(1),
            "num_nodes": In(params.node_bits),
            "words_per_row": In(params.wpr_bits),
            "z_in": In(params.z_in_bits),
            "z_out": In(params.z_out_bits),
            **threshold_members(params),
            "busy": Out(1),
            "done": Out(1),
            "overflow": Out(1),
            "cycles": Out(CYCLE_BITS),
        }
        for name, member in pe_members(params).items():
            members[name] = member.array(params.pes)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        prm = self.params
        n_reg = Signal(prm.node_bits)
        w_reg = Signal(prm.wpr_bits)
        zi_reg = Signal(prm.z_in_bits)
        zo_reg = Signal(prm.z_out_bits)
        thr_in = threshold_ports(self, prm)
        thr_reg = [Signal(prm.threshold_bits, name=f"thr{k + 1}_reg")
                   for k in range(prm.num_thresholds)]
        launch = Signal()   # the cycle the PEs see start
        running = Signal()  # PEs started, waiting for them to finish

        pes = []
        for k in range(prm.pes):
            pe = AggregationPE(prm, k)
            m.submodules[f"pe{k}"] = pe
            pes.append(pe)
            m.d.comb += [
                pe.start.eq(launch),
                pe.num_nodes.eq(n_reg),
                pe.words_per_row.eq(w_reg),
                pe.z_in.eq(zi_reg),
                pe.z_out.eq(zo_reg),
                *[p.eq(r) for p, r in zip(threshold_ports(pe, prm), thr_reg, strict=True)],
            ]
            for name in pe_members(prm):
                port = getattr(self, name)[k]
                wiring.connect(m, getattr(pe, name), wiring.flipped(port))

        any_busy = Signal()
        any_overflow = Signal()
        busy_bits = [pe.busy for pe in pes]
        ovf_bits = [pe.overflow for pe in pes]
        m.d.comb += [
            any_busy.eq(_or(busy_bits)),
            any_overflow.eq(_or(ovf_bits)),
            self.overflow.eq(any_overflow),
        ]

        m.d.sync += launch.eq(0)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(running & ~any_busy):
            m.d.sync += [running.eq(0), self.busy.eq(0), self.done.eq(1)]
        with m.If(launch):
            m.d.sync += running.eq(1)
        with m.If(self.start & ~self.busy):
            m.d.sync += [
                n_reg.eq(self.num_nodes),
                w_reg.eq(self.words_per_row),
                zi_reg.eq(self.z_in),
                zo_reg.eq(self.z_out),
                *[r.eq(t) for r, t in zip(thr_reg, thr_in, strict=True)],
                launch.eq(1),
                self.busy.eq(1),
                self.done.eq(0),
                self.cycles.eq(1),
            ]
        return m


def _or(bits: list) -> object:
    out = bits[0]
    for b in bits[1:]:
        out = out | b
    return out


__all__ = ["AggregationEngine"]
