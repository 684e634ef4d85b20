"""Row scheduler and CSR address generator of one processing element (Amaranth 0.5).

The walker of PE ``p`` (of ``P``) requests the row descriptors of rows ``p, p + P, p + 2P, ...
< N`` ahead of use (up to ``fifo_depth`` in flight or buffered), and turns each row into
*slots*, one per cycle, in the order of ``docs/aggregation-engine.md``: for each word column
``w = 0 .. W-1`` and each CSR position ``k = start .. end-1`` one slot that requests
``indices[k]``; a degree-0 row gives ``W`` slots that request nothing. Consecutive rows follow
each other without a gap (the next descriptor is already buffered), so the walker issues exactly
``W * max(n_i, 1)`` slots for row ``i`` in as many cycles when nothing stalls.

Each slot's tag (word column, first/last term of the column, degree-0 flag and the row's
requantization parameters) goes into a FIFO in the same cycle as its index request; memory
answers in request order, so the PE pairs tags with responses by position. The tag FIFO is also
the credit counter of the index port: a request is issued only when its tag fits, so the index
response buffer (same depth) can never overflow.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .params import SHIFT_BITS, EngineParams


def descriptor_layout(params: EngineParams) -> data.StructLayout:
    """Row descriptor: CSR range ``[start, end)`` and the row's requantization M, s."""
    return data.StructLayout({
        "start": unsigned(params.edge_bits),
        "end": unsigned(params.edge_bits),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
    })


def tag_layout(params: EngineParams) -> data.StructLayout:
    """What travels with one slot from the walker to the accumulator."""
    return data.StructLayout({
        "w": unsigned(params.wpr_bits),
        "first": unsigned(1),
        "last": unsigned(1),
        "deg0": unsigned(1),
        "nz": unsigned(params.nz_bits),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
    })


class RowWalker(wiring.Component):
    """Descriptor prefetch and slot generation for PE ``index`` of ``params.pes``.

    Ports:
        start: one-cycle pulse; ``num_nodes``, ``words_per_row``, ``z_in`` must be stable from
            then until the run ends (``z_in`` is an 8-bit grid code in a truncated engine; the
            tag carries ``n * z_in``, ``nz_bits`` wide).
        desc_req / desc_resp: row-descriptor memory port (request row ``i``).
        idx_req: index memory port request (CSR position ``k``).
        tags: slot tags, in issue order.
        overflow: sticky (cleared by ``start``): a row had more than ``max_terms`` terms or
            ``end < start``.
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
            "desc_req": Out(stream.Signature(unsigned(params.node_bits))),
            "desc_resp": In(stream.Signature(descriptor_layout(params))),
            "idx_req": Out(stream.Signature(unsigned(params.edge_bits))),
            "tags": Out(stream.Signature(tag_layout(params))),
            "overflow": Out(1),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        prm = self.params
        depth = prm.fifo_depth
        dlay = descriptor_layout(prm)
        tlay = tag_layout(prm)

        # ---- descriptor prefetch -------------------------------------------------------
        m.submodules.desc_fifo = dfifo = SyncFIFO(width=dlay.size, depth=depth)
        active = Signal()
        row_req = Signal(prm.node_bits + prm.pes.bit_length())
        outstanding = Signal(range(depth + 1))  # requested and not yet consumed
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

        # ---- slot generation -----------------------------------------------------------
        head = data.View(dlay, dfifo.r_data)
        hv = dfifo.r_rdy
        fresh = Signal(init=1)           # next slot is the first of a word column
        pos = Signal(prm.edge_bits)      # CSR position of the next slot when not fresh
        w = Signal(prm.wpr_bits)         # word column of the next slot
        cur = Signal(prm.edge_bits)
        deg0 = Signal()
        last_term = Signal()
        last_col = Signal()
        n = Signal(prm.edge_bits)
        m.d.comb += [
            cur.eq(Mux(fresh, head.start, pos)),
            deg0.eq(head.end <= head.start),
            last_term.eq(cur + 1 >= head.end),
            last_col.eq(w + 1 >= self.words_per_row),
            n.eq(head.end - head.start),
        ]
        with m.If(hv & ((head.end < head.start) | (n > prm.max_terms))):
            m.d.sync += self.overflow.eq(1)

        m.submodules.tag_fifo = tfifo = SyncFIFO(width=tlay.size, depth=depth)
        tag = Signal(tlay)
        m.d.comb += [
            tag.w.eq(w),
            tag.first.eq(fresh),
            tag.last.eq(deg0 | last_term),
            tag.deg0.eq(deg0),
            tag.nz.eq(Mux(deg0, 0, n[: prm.terms_bits] * self.z_in)),
            tag.multiplier.eq(head.multiplier),
            tag.shift.eq(head.shift),
            tfifo.w_data.eq(tag),
        ]
        can_issue = hv & tfifo.w_rdy
        m.d.comb += [
            self.idx_req.valid.eq(can_issue & ~deg0),
            self.idx_req.payload.eq(cur),
        ]
        fire = Signal()
        m.d.comb += [
            fire.eq(can_issue & (deg0 | self.idx_req.ready)),
            tfifo.w_en.eq(fire),
        ]
        with m.If(fire):
            with m.If(deg0 | last_term):
                m.d.sync += fresh.eq(1)
                with m.If(last_col):
                    m.d.sync += w.eq(0)
                    m.d.comb += desc_pop.eq(1)
                with m.Else():
                    m.d.sync += w.eq(w + 1)
            with m.Else():
                m.d.sync += [pos.eq(cur + 1), fresh.eq(0)]
        with m.If(self.start):
            m.d.sync += [fresh.eq(1), w.eq(0)]

        m.d.comb += [
            self.tags.payload.eq(tfifo.r_data),
            self.tags.valid.eq(tfifo.r_rdy),
            tfifo.r_en.eq(self.tags.ready),
        ]
        return m


__all__ = ["RowWalker", "descriptor_layout", "tag_layout"]
