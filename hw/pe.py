"""One aggregation processing element (Amaranth 0.5).

PE ``p`` of ``P`` aggregates rows ``p, p + P, ...`` of a CSR graph over packed ``bits``-bit
feature words, one word per cycle::

    walker --idx_req--> [index memory] --idx_resp--> FIFO --+
      |  tags (FIFO)                                        +--> feat_req --> [feature memory]
      +-----------------------------------------------------+         |
                                tags (FIFO)                        feat_resp --> FIFO
                                     +-------------------------------------------+
                                     v
                          accumulate lanes --last term--> requantize --> out (addr, word)

Every buffer between a request and its response is a FIFO of ``fifo_depth`` entries, and a
request is issued only when the tag FIFO that pairs with it has room; so responses always have
somewhere to go, every stream has full backpressure, and with a memory of latency ``L <=
max_latency`` that never stalls the PE takes one word per cycle with no gap between rows.

Accumulation: the word of the first term of a column replaces the lane sums, later terms add to
them (``acc_bits``-wide, exact for rows of up to ``max_terms`` terms); the last term's sums go
to the requantization pipeline (:func:`~hw.requant.build_requant`). A degree-0 row sends sums of
0 with ``n = 0`` and so emits ``clamp(z_out)`` in every lane without reading memory (in a
truncated engine: the snap of the grid code ``z_out``).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .params import EngineParams
from .requant import build_requant, threshold_ports, word_layout
from .walker import RowWalker, descriptor_layout, tag_layout


def output_layout(params: EngineParams) -> data.StructLayout:
    """Output stream payload: word address ``i * W + w`` (low bits), then the packed word."""
    return data.StructLayout({
        "addr": unsigned(params.addr_bits),
        "word": word_layout(params.bits, params.lanes),
    })


def pe_members(params: EngineParams) -> dict:
    """Memory ports and output stream of one PE (the engine repeats them per PE)."""
    return {
        "desc_req": Out(stream.Signature(unsigned(params.node_bits))),
        "desc_resp": In(stream.Signature(descriptor_layout(params))),
        "idx_req": Out(stream.Signature(unsigned(params.edge_bits))),
        "idx_resp": In(stream.Signature(unsigned(params.node_bits))),
        "feat_req": Out(stream.Signature(unsigned(params.addr_bits))),
        "feat_resp": In(stream.Signature(word_layout(params.bits, params.lanes))),
        "out": Out(stream.Signature(output_layout(params))),
    }


def threshold_members(params: EngineParams) -> dict:
    """Run-time snap thresholds ``thr1 .. thr3`` of a truncated engine (none when plain)."""
    return {f"thr{k + 1}": In(params.threshold_bits) for k in range(params.num_thresholds)}


class AggregationPE(wiring.Component):
    """Processing element ``index`` of ``params.pes``.

    Control: ``start`` (one-cycle pulse) begins a run; ``num_nodes``, ``words_per_row``,
    ``z_in`` and ``z_out`` (and, in a truncated engine, the snap thresholds ``thr1 .. thr3``)
    must then stay stable until ``busy`` falls, which happens after the PE's last output word
    has been taken. ``overflow`` is sticky until the next ``start``.
    """

    def __init__(self, params: EngineParams, index: int = 0) -> None:
        if not 0 <= index < params.pes:
            raise ValueError(f"PE index {index} outside 0..{params.pes - 1}")
        self.params = params
        self.index = index
        super().__init__({
            "start": In(1),
            "num_nodes": In(params.node_bits),
            "words_per_row": In(params.wpr_bits),
            "z_in": In(params.z_in_bits),
            "z_out": In(params.z_out_bits),
            **threshold_members(params),
            "busy": Out(1),
            "overflow": Out(1),
            **pe_members(params),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        prm = self.params
        depth = prm.fifo_depth
        tlay = tag_layout(prm)
        W = self.words_per_row

        # ---- walker: descriptors, slots, index requests ----------------------------------
        m.submodules.walker = walker = RowWalker(prm, self.index)
        m.d.comb += [
            walker.start.eq(self.start),
            walker.num_nodes.eq(self.num_nodes),
            walker.words_per_row.eq(W),
            walker.z_in.eq(self.z_in),
            self.overflow.eq(walker.overflow),
        ]
        wiring.connect(m, walker.desc_req, wiring.flipped(self.desc_req))
        wiring.connect(m, walker.desc_resp, wiring.flipped(self.desc_resp))
        wiring.connect(m, walker.idx_req, wiring.flipped(self.idx_req))

        # ---- index responses -> feature requests -----------------------------------------
        m.submodules.idx_fifo = ififo = SyncFIFO(width=prm.node_bits, depth=depth)
        m.submodules.tag2_fifo = t2fifo = SyncFIFO(width=tlay.size, depth=depth)
        m.d.comb += [
            ififo.w_data.eq(self.idx_resp.payload),
            ififo.w_en.eq(self.idx_resp.valid),
            self.idx_resp.ready.eq(ififo.w_rdy),
        ]
        t1 = walker.tags.payload
        ok2 = Signal()
        fire2 = Signal()
        m.d.comb += [
            ok2.eq(walker.tags.valid & (t1.deg0 | ififo.r_rdy) & t2fifo.w_rdy),
            self.feat_req.valid.eq(ok2 & ~t1.deg0),
            self.feat_req.payload.eq(ififo.r_data * W + t1.w),
            fire2.eq(ok2 & (t1.deg0 | self.feat_req.ready)),
            walker.tags.ready.eq(fire2),
            ififo.r_en.eq(fire2 & ~t1.deg0),
            t2fifo.w_en.eq(fire2),
            t2fifo.w_data.eq(t1),
        ]

        # ---- feature responses -> accumulate -> requantize -------------------------------
        m.submodules.feat_fifo = ffifo = SyncFIFO(width=prm.word_width, depth=depth)
        m.d.comb += [
            ffifo.w_data.eq(self.feat_resp.payload),
            ffifo.w_en.eq(self.feat_resp.valid),
            self.feat_resp.ready.eq(ffifo.w_rdy),
        ]
        t2 = data.View(tlay, t2fifo.r_data)
        have = Signal()
        fire3 = Signal()
        en = Signal()      # requantizer advances
        rq_valid = Signal()
        m.d.comb += [
            have.eq(t2fifo.r_rdy & (t2.deg0 | ffifo.r_rdy)),
            fire3.eq(have & (~t2.last | en)),
            t2fifo.r_en.eq(fire3),
            ffifo.r_en.eq(fire3 & ~t2.deg0),
        ]
        # one register per lane (see hw.requant: no multi-lane processes in the Verilog)
        sums = []
        for lane in range(prm.lanes):
            acc = Signal(prm.acc_bits, name=f"acc{lane}", reset_less=True)  # reloaded by `first`
            s = Signal(prm.acc_bits, name=f"sum{lane}")
            word = ffifo.r_data[lane * prm.bits:(lane + 1) * prm.bits]
            m.d.comb += s.eq(Mux(t2.first, 0, acc) + Mux(t2.deg0, 0, word))
            with m.If(fire3):
                m.d.sync += acc.eq(s)
            sums.append(s)
        m.d.comb += rq_valid.eq(have & t2.last)
        out_valid, out_word = build_requant(m, prm, en, rq_valid, sums, t2.nz, t2.multiplier,
                                            t2.shift, self.z_out,
                                            thresholds=threshold_ports(self, prm))
        m.d.comb += en.eq(~out_valid | self.out.ready)

        # ---- output stream with addresses ------------------------------------------------
        out_w = Signal(prm.wpr_bits)
        out_row = Signal(prm.node_bits + prm.pes.bit_length())
        out_addr = Signal(prm.addr_bits + 1)
        row_step = Signal(prm.addr_bits + prm.pes.bit_length())  # (P - 1) * W + 1
        m.d.comb += [
            self.out.valid.eq(out_valid),
            self.out.payload.word.eq(out_word),
            self.out.payload.addr.eq(out_addr),
        ]
        with m.If(self.out.valid & self.out.ready):
            with m.If(out_w + 1 >= W):
                m.d.sync += [
                    out_w.eq(0),
                    out_row.eq(out_row + prm.pes),
                    out_addr.eq(out_addr + row_step),
                ]
            with m.Else():
                m.d.sync += [out_w.eq(out_w + 1), out_addr.eq(out_addr + 1)]
        with m.If(self.busy & (out_row >= self.num_nodes)):
            m.d.sync += self.busy.eq(0)
        with m.If(self.start):
            m.d.sync += [
                self.busy.eq(1),
                out_w.eq(0),
                out_row.eq(self.index),
                out_addr.eq(W * self.index),
                row_step.eq(W * (prm.pes - 1) + 1),
            ]
        return m


__all__ = ["AggregationPE", "output_layout", "pe_members", "threshold_members"]
