"""The mixed-width aggregation engine: ``P`` mixed PEs and the run control (Amaranth 0.5).

Run-time inputs, latched when ``start`` is accepted while idle: ``num_nodes`` (N),
``features`` (F, ``1..max_features``) and per bucket ``k < max_buckets`` (Verilog
``<name>__<k>``): ``in_sel`` (index of the bucket's input width in ``in_widths``), ``z_in``,
``weight`` (``R[k]``), ``out_sel`` (index in ``out_widths``), ``z_out``. Unused buckets may hold
anything valid (e.g. all 0). From them the engine derives, for the PEs, every bucket's input
and output words per row (``ceil(F / lanes)``) and ``R[k] z_in[k]``.

Status: ``busy``, ``done``, ``cycles`` as :mod:`hw.engine`; ``overflow`` (sticky for the run)
is raised by a row longer than ``max_terms`` or with ``end < start`` (any PE), and by a run
configuration the accumulators are not sized for: ``F = 0`` or ``F > max_features``, an
``in_sel``/``out_sel`` outside the width lists, a zero point outside its width's range, or a
weighted code ``R[k] (2**bits_in[k] - 1)`` above ``max_weight``. Nothing wraps silently.
"""

from __future__ import annotations

from typing import cast

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .mixed_params import MixedParams
from .mixed_pe import MixedAggregationPE, mixed_pe_members
from .params import CYCLE_BITS


def control_members(params: MixedParams) -> dict:
    kb = params.max_buckets
    return {
        "start": In(1),
        "num_nodes": In(params.node_bits),
        "features": In(params.feat_bits),
        "in_sel": In(params.in_sel_bits).array(kb),
        "z_in": In(params.z_in_bits).array(kb),
        "weight": In(params.r_bits).array(kb),
        "out_sel": In(params.out_sel_bits).array(kb),
        "z_out": In(params.z_out_bits).array(kb),
        "busy": Out(1),
        "done": Out(1),
        "overflow": Out(1),
        "cycles": Out(CYCLE_BITS),
    }


class MixedAggregationEngine(wiring.Component):
    """``params.pes`` mixed-width PEs with run control; see the module docstring."""

    def __init__(self, params: MixedParams) -> None:
        self.params = params
        members = control_members(params)
        for name, member in mixed_pe_members(params).items():
            members[name] = member.array(params.pes)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        prm = self.params
        kb = prm.max_buckets
        n_reg = Signal(prm.node_bits)
        f_reg = Signal(prm.feat_bits)
        isel = [Signal(prm.in_sel_bits, name=f"in_sel_reg{k}") for k in range(kb)]
        zi = [Signal(prm.z_in_bits, name=f"z_in_reg{k}") for k in range(kb)]
        wt = [Signal(prm.r_bits, name=f"weight_reg{k}") for k in range(kb)]
        osel = [Signal(prm.out_sel_bits, name=f"out_sel_reg{k}") for k in range(kb)]
        zo = [Signal(prm.z_out_bits, name=f"z_out_reg{k}") for k in range(kb)]
        launch = Signal()
        running = Signal()
        cfg_err = Signal()

        # derived run values (combinational from the latched registers, stable in a run)
        in_words = [Signal(prm.wpr_bits, name=f"in_words{k}") for k in range(kb)]
        out_words = [Signal(prm.wpr_bits, name=f"out_words{k}") for k in range(kb)]
        rz = [Signal(prm.rz_bits, name=f"rz{k}") for k in range(kb)]
        bad = []
        for k in range(kb):
            iw = 0
            ow = 0
            qm = 0
            for bi, b in enumerate(prm.in_widths):
                lb = prm.lanes(b)
                words = (f_reg + (lb - 1)) >> (lb.bit_length() - 1)
                iw = words if bi == 0 else Mux(isel[k] == bi, words, iw)
                qm = (1 << b) - 1 if bi == 0 else Mux(isel[k] == bi, (1 << b) - 1, qm)
            zmax_out = 0
            for oi, b in enumerate(cast(tuple[int, ...], prm.out_widths)):
                lb = prm.lanes(b)
                words = (f_reg + (lb - 1)) >> (lb.bit_length() - 1)
                ow = words if oi == 0 else Mux(osel[k] == oi, words, ow)
                zmax_out = (1 << b) - 1 if oi == 0 else Mux(osel[k] == oi, (1 << b) - 1, zmax_out)
            m.d.comb += [in_words[k].eq(iw), out_words[k].eq(ow), rz[k].eq(wt[k] * zi[k])]
            bad += [isel[k] >= len(prm.in_widths),
                    osel[k] >= len(cast(tuple[int, ...], prm.out_widths)),
                    zi[k] > qm, zo[k] > zmax_out, wt[k] * qm > prm.weight_limit]
        bad += [f_reg == 0, f_reg > prm.max_features]

        pes = []
        for p in range(prm.pes):
            pe = MixedAggregationPE(prm, p)
            m.submodules[f"pe{p}"] = pe
            pes.append(pe)
            m.d.comb += [pe.start.eq(launch), pe.num_nodes.eq(n_reg), pe.features.eq(f_reg)]
            for k in range(kb):
                m.d.comb += [
                    pe.in_sel[k].eq(isel[k]), pe.in_words[k].eq(in_words[k]),
                    pe.weight[k].eq(wt[k]), pe.rz[k].eq(rz[k]), pe.out_sel[k].eq(osel[k]),
                    pe.out_words[k].eq(out_words[k]), pe.z_out[k].eq(zo[k]),
                ]
            for name in mixed_pe_members(prm):
                wiring.connect(m, getattr(pe, name), wiring.flipped(getattr(self, name)[p]))

        any_busy = _or([pe.busy for pe in pes])
        m.d.comb += self.overflow.eq(cfg_err | _or([pe.overflow for pe in pes]))
        m.d.sync += launch.eq(0)
        with m.If(launch & _or(bad)):
            m.d.sync += cfg_err.eq(1)
        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(running & ~any_busy):
            m.d.sync += [running.eq(0), self.busy.eq(0), self.done.eq(1)]
        with m.If(launch):
            m.d.sync += running.eq(1)
        with m.If(self.start & ~self.busy):
            m.d.sync += [
                n_reg.eq(self.num_nodes), f_reg.eq(self.features),
                *[r.eq(s) for r, s in zip(isel, self.in_sel, strict=True)],
                *[r.eq(s) for r, s in zip(zi, self.z_in, strict=True)],
                *[r.eq(s) for r, s in zip(wt, self.weight, strict=True)],
                *[r.eq(s) for r, s in zip(osel, self.out_sel, strict=True)],
                *[r.eq(s) for r, s in zip(zo, self.z_out, strict=True)],
                launch.eq(1), self.busy.eq(1), self.done.eq(0), self.cycles.eq(1),
                cfg_err.eq(0),
            ]
        return m


def _or(bits: list):  # noqa: ANN202
    out = bits[0]
    for b in bits[1:]:
        out = out | b
    return out


__all__ = ["MixedAggregationEngine", "control_members"]
