"""Row scheduler of one mixed-width PE: descriptor prefetch and one index request per term.

PE ``p`` requests the descriptors of rows ``p, p + P, ...`` ahead of use (at most
``fifo_depth`` requested and unconsumed, as :mod:`hw.walker`). A row with terms becomes one
*item* per CSR position, in CSR order, each with one index request (the source's word address
and bucket come back): the index of a neighbour is read **once**, whatever its width. A
degree-0 row becomes one item without a request and then holds the walker for as many cycles
as the accumulator spends on it: its own output words ``O`` when the drain is serial (the
output words are slots), ``max(1, O_prev)`` of the PE's previous row with ``overlap_drain``
(the row waits for the hold bank). The walker thus never falls further behind the rest of the
pipeline than at the start, which keeps the timing contract exact.

Each item's tag goes into a FIFO in the cycle of its request; memory answers in order, so the
PE pairs tags and responses by position; the tag FIFO is the index port's credit counter.
"""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .mixed_params import MixedParams
from .params import SHIFT_BITS


def mixed_descriptor_layout(params: MixedParams) -> data.StructLayout:
    """Row descriptor: CSR range, requantization, output bucket and output word address."""
    return data.StructLayout({
        "start": unsigned(params.edge_bits),
        "end": unsigned(params.edge_bits),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
        "bucket": unsigned(params.bucket_bits),
        "out_offset": unsigned(params.addr_bits),
    })


def mixed_index_layout(params: MixedParams) -> data.StructLayout:
    """Index response: the source row's word address and its input bucket."""
    return data.StructLayout({
        "offset": unsigned(params.addr_bits),
        "bucket": unsigned(params.bucket_bits),
    })


def item_layout(params: MixedParams) -> data.StructLayout:
    """What travels with one item (a term, or a degree-0 row) to the word sequencer."""
    return data.StructLayout({
        "first": unsigned(1),   # first term of its row
        "last": unsigned(1),    # last term of its row (or a degree-0 row)
        "deg0": unsigned(1),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
        "bucket": unsigned(params.bucket_bits),       # the row's output bucket
        "out_offset": unsigned(params.addr_bits),
    })


class MixedRowWalker(wiring.Component):
    """Descriptor prefetch and item generation for PE ``index`` of ``params.pes``.

    Ports:
        start: one-cycle pulse; ``num_nodes`` and ``out_words`` stable until the run ends.
        out_words: output words per row of every output bucket (run time, from F).
        desc_req / desc_resp, idx_req: memory ports.
        items: item tags in issue order.
        overflow: sticky (cleared by ``start``): a row with more than ``max_terms`` terms or
            ``end < start``.
    """

    def __init__(self, params: MixedParams, index: int = 0) -> None:
        if not 0 <= index < params.pes:
            raise ValueError(f"PE index {index} outside 0..{params.pes - 1}")
        self.params = params
        self.index = index
        super().__init__({
            "start": In(1),
            "num_nodes": In(params.node_bits),
            "out_words": In(params.wpr_bits).array(params.max_buckets),
            "desc_req": Out(stream.Signature(unsigned(params.node_bits))),
            "desc_resp": In(stream.Signature(mixed_descriptor_layout(params))),
            "idx_req": Out(stream.Signature(unsigned(params.edge_bits))),
            "items": Out(stream.Signature(item_layout(params))),
            "overflow": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        prm = self.params
        depth = prm.fifo_depth
        dlay = mixed_descriptor_layout(prm)
        ilay = item_layout(prm)

        # ---- descriptor prefetch (as hw.walker) ------------------------------------------
        m.submodules.desc_fifo = dfifo = SyncFIFO(width=dlay.size, depth=depth)
        active = Signal()
        row_req = Signal(prm.node_bits + prm.pes.bit_length())
        outstanding = Signal(range(depth + 1))
        desc_pop = Signal()
        m.d.comb += [
            self.desc_req.valid.eq(active & (row_req < self.num_nodes) & (outstanding < depth)),
            self.desc_req.payload.eq(row_req),
            dfifo.w_data.eq(self.desc_resp.payload),
            dfifo.w_en.eq(self.desc_resp.valid),
            self.desc_resp.ready.eq(dfifo.w_rdy),
            dfifo.r_en.eq(desc_pop),
        ]
        req_fire = self.desc_req.valid & self.desc_req.ready
        with m.If(req_fire):
            m.d.sync += row_req.eq(row_req + prm.pes)
        with m.If(req_fire & ~desc_pop):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(~req_fire & desc_pop):
            m.d.sync += outstanding.eq(outstanding - 1)
        with m.If(self.start):
            m.d.sync += [active.eq(1), row_req.eq(self.index), self.overflow.eq(0)]

        # ---- items ---------------------------------------------------------------------
        head = data.View(dlay, dfifo.r_data)
        hv = dfifo.r_rdy
        fresh = Signal(init=1)               # next item is the row's first term
        pos = Signal(prm.edge_bits)
        cur = Signal(prm.edge_bits)
        deg0 = Signal()
        last_term = Signal()
        n = Signal(prm.edge_bits)
        hold = Signal(prm.wpr_bits)          # degree-0 row: cycles already held
        o_words = Signal(prm.wpr_bits)
        o_prev = Signal(prm.wpr_bits)        # output words of this PE's previous row
        hold_len = Signal(prm.wpr_bits)      # cycles a degree-0 row holds the walker
        m.d.comb += [
            cur.eq(Mux(fresh, head.start, pos)),
            deg0.eq(head.end <= head.start),
            last_term.eq(cur + 1 >= head.end),
            n.eq(head.end - head.start),
            o_words.eq(Array(self.out_words)[head.bucket]),
            hold_len.eq(Mux(o_prev > 1, o_prev, 1) if prm.overlap_drain else o_words),
        ]
        with m.If(hv & ((head.end < head.start) | (n > prm.max_terms))):
            m.d.sync += self.overflow.eq(1)

        m.submodules.item_fifo = tfifo = SyncFIFO(width=ilay.size, depth=depth)
        tag = Signal(ilay)
        m.d.comb += [
            tag.first.eq(fresh),
            tag.last.eq(deg0 | last_term),
            tag.deg0.eq(deg0),
            tag.multiplier.eq(head.multiplier),
            tag.shift.eq(head.shift),
            tag.bucket.eq(head.bucket),
            tag.out_offset.eq(head.out_offset),
            tfifo.w_data.eq(tag),
        ]
        holding = Signal()
        m.d.comb += holding.eq(deg0 & (hold != 0))
        can_issue = Signal()
        m.d.comb += [
            can_issue.eq(hv & (holding | tfifo.w_rdy)),
            self.idx_req.valid.eq(can_issue & ~deg0),
            self.idx_req.payload.eq(cur),
        ]
        fire = Signal()
        m.d.comb += [
            fire.eq(can_issue & (deg0 | self.idx_req.ready)),
            tfifo.w_en.eq(fire & ~holding),
        ]
        with m.If(fire):
            with m.If(deg0):
                with m.If(hold + 1 >= hold_len):
                    m.d.sync += [hold.eq(0), fresh.eq(1)]
                    m.d.comb += desc_pop.eq(1)
                with m.Else():
                    m.d.sync += hold.eq(hold + 1)
            with m.Elif(last_term):
                m.d.sync += fresh.eq(1)
                m.d.comb += desc_pop.eq(1)
            with m.Else():
                m.d.sync += [pos.eq(cur + 1), fresh.eq(0)]
        with m.If(desc_pop):
            m.d.sync += o_prev.eq(o_words)
        with m.If(self.start):
            m.d.sync += [fresh.eq(1), hold.eq(0), o_prev.eq(0)]

        m.d.comb += [
            self.items.payload.eq(tfifo.r_data),
            self.items.valid.eq(tfifo.r_rdy),
            tfifo.r_en.eq(self.items.ready),
        ]
        return m


__all__ = ["MixedRowWalker", "item_layout", "mixed_descriptor_layout", "mixed_index_layout"]
