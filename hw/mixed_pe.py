"""One mixed-width aggregation processing element (Amaranth 0.5).

PE ``p`` of ``P`` aggregates rows ``p, p + P, ...`` neighbour by neighbour::

    walker --idx_req--> [index memory: (word address, bucket) of indices[k]]
      | items (FIFO)                       |
      v                                    v
    word sequencer <------------------ [idx FIFO]
      |  slots (FIFO): W_k word slots per term, then O_i drain slots per row
      +--feat_req (offset + w)--> [feature memory] --feat_resp--> [feat FIFO]
      v                                                               |
    accumulate: route the word's lanes (width of the source's bucket, word w) to the
    feature accumulators acc[f] += R[k] * q  <-------------------------+
    drain: requantize the row's features, O_i output words at the row's width --> out

- **Word sequencer.** For each term (an item with its index response) it issues the feature
  requests ``offset + w``, ``w = 0 .. W_k - 1`` (``W_k`` words of the source's bucket), one per
  cycle; a degree-0 row is one slot without a request. With the serial drain
  (``overlap_drain = False``) it also emits, after a row's last word, ``O_i`` *drain slots*
  (the row's output words). Every slot's tag goes into a FIFO in the cycle it is issued (the
  credit counter of the feature port, as :mod:`hw.pe`).
- **Accumulate** (one slot per cycle). The word's lanes are split at every input width of
  ``in_widths``; each lane's code is multiplied by ``R[k]`` (one ``b x r_bits`` product per lane
  and width, shared by all features); accumulator ``f`` (``max_features`` of them,
  ``acc_bits`` wide) takes lane ``f mod lanes_b`` when the word is word ``f // lanes_b`` of a
  source of width ``b``. The row's first term replaces the sums, later terms add; the row's
  correction ``corr = sum R[k] z_in[k]`` grows by ``R z_in`` of each term's bucket.
- **Drain.** Output word ``w`` of a row with output width ``b`` takes features ``w lanes_b ..
  (w + 1) lanes_b - 1`` (``rq_lanes = word_width // min(out_widths)`` requantization lanes),
  ``C = acc - corr`` (0 for pad features ``f >= F`` and degree-0 rows), then three register
  stages as :mod:`hw.requant`: product, rounding shift, clamp to ``2**b - 1`` and pack at width
  ``b``; the word goes out with address ``out_offset + w``.

  - ``overlap_drain = True`` (default): with its last word (or its degree-0 slot) a row's sums,
    correction and parameters move into a *hold bank* (``max_features`` registers of
    ``acc_bits``); the drain reads the bank, one output word per cycle, while the accumulators
    take the next row. A row's last word waits only if the previous row is still draining, so
    row ``i`` costs ``max(A_i, O_{i-1})`` cycles.
  - ``overlap_drain = False``: the drain slots read the accumulators themselves (the next
    row's first word comes after them): no hold bank, ``I_i + O_i`` cycles per row.

Timing: ``qgnn.core.timing.mixed_aggregation_cycles`` (both forms). Every lane and feature has
its own registers (no multi-lane processes in the Verilog, as :mod:`hw.pe`).
"""

from __future__ import annotations

from typing import cast

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .mixed_params import MixedParams
from .mixed_walker import (
    MixedRowWalker,
    mixed_descriptor_layout,
    mixed_index_layout,
)
from .params import SHIFT_BITS


def mixed_output_layout(params: MixedParams) -> data.StructLayout:
    return data.StructLayout({"addr": unsigned(params.addr_bits),
                              "word": unsigned(params.word_width)})


def slot_layout(params: MixedParams) -> data.StructLayout:
    """One slot from the word sequencer to the accumulator / drain."""
    return data.StructLayout({
        "drain": unsigned(1),
        "w": unsigned(params.wpr_bits),          # word of the source, or output word
        "bucket": unsigned(params.bucket_bits),  # source bucket (accumulate) / row's (drain)
        "first": unsigned(1),                    # a word of the row's first term
        "nbfirst": unsigned(1),                  # first word of a term
        "deg0": unsigned(1),
        "rowend": unsigned(1),                   # the row's last slot
        "obucket": unsigned(params.bucket_bits), # the row's output bucket
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
        "addr": unsigned(params.addr_bits),      # output word address (drain)
    })


def mixed_pe_members(params: MixedParams) -> dict:
    """Memory ports and output stream of one PE (the engine repeats them per PE)."""
    return {
        "desc_req": Out(stream.Signature(unsigned(params.node_bits))),
        "desc_resp": In(stream.Signature(mixed_descriptor_layout(params))),
        "idx_req": Out(stream.Signature(unsigned(params.edge_bits))),
        "idx_resp": In(stream.Signature(mixed_index_layout(params))),
        "feat_req": Out(stream.Signature(unsigned(params.addr_bits))),
        "feat_resp": In(stream.Signature(unsigned(params.word_width))),
        "out": Out(stream.Signature(mixed_output_layout(params))),
    }


def run_members(params: MixedParams) -> dict:
    """Per-bucket run-time values a PE needs (derived by the engine from its inputs)."""
    kb = params.max_buckets
    return {
        "features": In(params.feat_bits),
        "in_sel": In(params.in_sel_bits).array(kb),
        "in_words": In(params.wpr_bits).array(kb),
        "weight": In(params.r_bits).array(kb),
        "rz": In(params.rz_bits).array(kb),
        "out_sel": In(params.out_sel_bits).array(kb),
        "out_words": In(params.wpr_bits).array(kb),
        "z_out": In(params.z_out_bits).array(kb),
    }


class MixedAggregationPE(wiring.Component):
    """Mixed-width processing element ``index`` of ``params.pes`` (see the module docstring).

    Control: ``start`` (one-cycle pulse) begins a run; ``num_nodes`` and the run members
    (:func:`run_members`) must stay stable until ``busy`` falls. ``overflow`` is sticky until
    the next ``start``.
    """

    def __init__(self, params: MixedParams, index: int = 0) -> None:
        if not 0 <= index < params.pes:
            raise ValueError(f"PE index {index} outside 0..{params.pes - 1}")
        self.params = params
        self.index = index
        super().__init__({
            "start": In(1),
            "num_nodes": In(params.node_bits),
            **run_members(params),
            "busy": Out(1),
            "overflow": Out(1),
            **mixed_pe_members(params),
        })

    def elaborate(self, platform: object) -> Module:  # noqa: C901 - one datapath
        m = Module()
        prm = self.params
        depth = prm.fifo_depth
        slay = slot_layout(prm)
        ilay = mixed_index_layout(prm)

        # ---- walker ----------------------------------------------------------------------
        m.submodules.walker = walker = MixedRowWalker(prm, self.index)
        m.d.comb += [
            walker.start.eq(self.start),
            walker.num_nodes.eq(self.num_nodes),
            *[a.eq(b) for a, b in zip(walker.out_words, self.out_words, strict=True)],
            self.overflow.eq(walker.overflow),
        ]
        wiring.connect(m, walker.desc_req, wiring.flipped(self.desc_req))
        wiring.connect(m, walker.desc_resp, wiring.flipped(self.desc_resp))
        wiring.connect(m, walker.idx_req, wiring.flipped(self.idx_req))

        # ---- word sequencer ---------------------------------------------------------------
        m.submodules.idx_fifo = ififo = SyncFIFO(width=ilay.size, depth=depth)
        m.submodules.slot_fifo = sfifo = SyncFIFO(width=slay.size, depth=depth)
        m.d.comb += [
            ififo.w_data.eq(self.idx_resp.payload),
            ififo.w_en.eq(self.idx_resp.valid),
            self.idx_resp.ready.eq(ififo.w_rdy),
        ]
        it = walker.items.payload
        ix = data.View(ilay, ififo.r_data)
        w = Signal(prm.wpr_bits)
        d = Signal(prm.wpr_bits)
        draining = Signal()          # the current item's words are done, drain slots now
        in_w = Signal(prm.wpr_bits)
        out_w = Signal(prm.wpr_bits)
        drain_now = Signal()
        ready_item = Signal()
        ok = Signal()
        fire2 = Signal()
        done_item = Signal()
        ov = prm.overlap_drain  # drains run beside the accumulator (hold bank), not as slots
        m.d.comb += [
            in_w.eq(Array(self.in_words)[ix.bucket]),
            out_w.eq(1 if ov else Array(self.out_words)[it.bucket]),
            drain_now.eq(it.deg0 | draining),
            ready_item.eq(walker.items.valid & (it.deg0 | ififo.r_rdy)),
            ok.eq(ready_item & sfifo.w_rdy),
            self.feat_req.valid.eq(ok & ~drain_now),
            self.feat_req.payload.eq(ix.offset + w),
            fire2.eq(ok & (drain_now | self.feat_req.ready)),
        ]
        slot = Signal(slay)
        m.d.comb += [
            slot.drain.eq(drain_now),
            slot.w.eq(Mux(drain_now, d, w)),
            slot.bucket.eq(Mux(drain_now, it.bucket, ix.bucket)),
            slot.first.eq(it.first),
            slot.nbfirst.eq(w == 0),
            slot.deg0.eq(it.deg0),
            slot.rowend.eq((it.deg0 | (it.last & (w + 1 >= in_w))) if ov
                           else drain_now & (d + 1 >= out_w)),
            slot.obucket.eq(it.bucket),
            slot.multiplier.eq(it.multiplier),
            slot.shift.eq(it.shift),
            slot.addr.eq(it.out_offset + d),
            sfifo.w_data.eq(slot),
            sfifo.w_en.eq(fire2),
        ]
        with m.If(fire2):
            with m.If(drain_now):
                with m.If(d + 1 >= out_w):
                    m.d.sync += [d.eq(0), draining.eq(0)]
                    m.d.comb += done_item.eq(1)
                with m.Else():
                    m.d.sync += d.eq(d + 1)
            with m.Elif(w + 1 >= in_w):
                m.d.sync += w.eq(0)
                with m.If(it.last & (not ov)):
                    m.d.sync += draining.eq(1)
                with m.Else():
                    m.d.comb += done_item.eq(1)
            with m.Else():
                m.d.sync += w.eq(w + 1)
        m.d.comb += [
            walker.items.ready.eq(done_item),
            ififo.r_en.eq(done_item & ~it.deg0),
        ]
        with m.If(self.start):
            m.d.sync += [w.eq(0), d.eq(0), draining.eq(0)]

        # ---- accumulate / drain -----------------------------------------------------------
        m.submodules.feat_fifo = ffifo = SyncFIFO(width=prm.word_width, depth=depth)
        m.d.comb += [
            ffifo.w_data.eq(self.feat_resp.payload),
            ffifo.w_en.eq(self.feat_resp.valid),
            self.feat_resp.ready.eq(ffifo.w_rdy),
        ]
        t = data.View(slay, sfifo.r_data)
        have = Signal()
        fire3 = Signal()
        en = Signal()
        acc_fire = Signal()
        drain_fire = Signal()
        hold_free = Signal()
        m.d.comb += [
            have.eq(sfifo.r_rdy & (t.drain | ffifo.r_rdy)),
            fire3.eq(have & (~t.rowend | hold_free) if ov else have & (~t.drain | en)),
            sfifo.r_en.eq(fire3),
            ffifo.r_en.eq(fire3 & ~t.drain),
            acc_fire.eq(fire3 & ~t.drain),
            drain_fire.eq(fire3 & t.drain),
        ]
        word = ffifo.r_data
        r_sel = Signal(prm.r_bits)
        isel = Signal(prm.in_sel_bits)
        m.d.comb += [r_sel.eq(Array(self.weight)[t.bucket]), isel.eq(Array(self.in_sel)[t.bucket])]
        # lane products R * q at every input width (shared by all features)
        prods: dict[int, list[Signal]] = {}
        for bi, b in enumerate(prm.in_widths):
            lanes = []
            for lane in range(min(prm.lanes(b), prm.max_features)):
                p = Signal(b + prm.r_bits, name=f"rq{b}_{lane}")
                m.d.comb += p.eq(word[lane * b:(lane + 1) * b] * r_sel)
                lanes.append(p)
            prods[bi] = lanes
        accs = []
        for f in range(prm.max_features):
            acc = Signal(prm.acc_bits, name=f"acc{f}", reset_less=True)
            hit = Signal(name=f"hit{f}")
            val = Signal(prm.r_bits + max(prm.in_widths), name=f"val{f}")
            hits = []
            vals = []
            for bi, b in enumerate(prm.in_widths):
                lb = prm.lanes(b)
                hits.append((isel == bi) & (t.w == f // lb))
                vals.append(prods[bi][f % lb])
            sel_val = Const(0, val.shape())
            for h, v in zip(reversed(hits), reversed(vals), strict=True):
                sel_val = Mux(h, v, sel_val)
            any_hit = hits[0]
            for h in hits[1:]:
                any_hit = any_hit | h
            m.d.comb += [hit.eq(any_hit), val.eq(sel_val)]
            nxt = Signal(prm.acc_bits, name=f"nxt{f}")
            m.d.comb += nxt.eq(Mux(t.first, 0, acc) + val)
            with m.If(acc_fire & hit):
                m.d.sync += acc.eq(nxt)
            if ov:  # the row's sums move to the hold bank with its last slot
                hold = Signal(prm.acc_bits, name=f"hold{f}", reset_less=True)
                with m.If(fire3 & t.rowend):
                    m.d.sync += hold.eq(Mux(hit & ~t.drain, nxt, acc))
                accs.append(hold)
            else:
                accs.append(acc)
        corr = Signal(prm.acc_bits, reset_less=True)
        corr_nxt = Signal(prm.acc_bits)
        m.d.comb += corr_nxt.eq(Mux(t.first, 0, corr) + Array(self.rz)[t.bucket])
        with m.If(acc_fire & t.nbfirst):
            m.d.sync += corr.eq(corr_nxt)

        # ---- the drain's source: the slot (serial) or the hold bank (overlapped) ---------
        d_fire = Signal()
        d_w = Signal(prm.wpr_bits)
        d_osel = Signal(prm.out_sel_bits)
        d_zo = Signal(prm.z_out_bits)
        d_m = Signal(prm.mult_bits)
        d_s = Signal(SHIFT_BITS)
        d_addr = Signal(prm.addr_bits)
        d_deg0 = Signal()
        d_end = Signal()
        d_corr = Signal(prm.acc_bits)
        if not ov:
            m.d.comb += [
                d_fire.eq(drain_fire), d_w.eq(t.w), d_osel.eq(Array(self.out_sel)[t.bucket]),
                d_zo.eq(Array(self.z_out)[t.bucket]), d_m.eq(t.multiplier), d_s.eq(t.shift),
                d_addr.eq(t.addr), d_deg0.eq(t.deg0), d_end.eq(t.rowend), d_corr.eq(corr),
                hold_free.eq(0),
            ]
        else:
            h_valid = Signal()
            h_o = Signal(prm.wpr_bits, reset_less=True)
            h_b = Signal(prm.bucket_bits, reset_less=True)
            h_m = Signal(prm.mult_bits, reset_less=True)
            h_s = Signal(SHIFT_BITS, reset_less=True)
            h_a = Signal(prm.addr_bits, reset_less=True)
            h_deg0 = Signal(reset_less=True)
            h_corr = Signal(prm.acc_bits, reset_less=True)
            dd = Signal(prm.wpr_bits)
            last_d = Signal()
            m.d.comb += [
                last_d.eq(dd + 1 >= h_o),
                d_fire.eq(h_valid & en),
                hold_free.eq(~h_valid | (d_fire & last_d)),
                d_w.eq(dd), d_osel.eq(Array(self.out_sel)[h_b]), d_zo.eq(Array(self.z_out)[h_b]),
                d_m.eq(h_m), d_s.eq(h_s), d_addr.eq(h_a + dd), d_deg0.eq(h_deg0),
                d_end.eq(last_d), d_corr.eq(h_corr),
            ]
            with m.If(d_fire):
                with m.If(last_d):
                    m.d.sync += [dd.eq(0), h_valid.eq(0)]
                with m.Else():
                    m.d.sync += dd.eq(dd + 1)
            with m.If(fire3 & t.rowend):
                m.d.sync += [
                    h_valid.eq(1), h_o.eq(Array(self.out_words)[t.obucket]), h_b.eq(t.obucket),
                    h_m.eq(t.multiplier), h_s.eq(t.shift), h_a.eq(t.addr), h_deg0.eq(t.deg0),
                    h_corr.eq(Mux(t.drain, 0, Mux(t.nbfirst, corr_nxt, corr))),
                ]
            with m.If(self.start):
                m.d.sync += [h_valid.eq(0), dd.eq(0)]

        # ---- requantization: three register stages under en (as hw.requant) --------------
        cw, pw = prm.corrected_bits, prm.product_bits
        sh_bits = max(1, (pw - 1).bit_length())
        osel = d_osel
        v1, v2, v3 = Signal(), Signal(), Signal()
        e1, e2, e3 = Signal(), Signal(), Signal()     # row end flags
        m1 = Signal(prm.mult_bits, reset_less=True)
        s1 = Signal(SHIFT_BITS, reset_less=True)
        s2 = Signal(SHIFT_BITS, reset_less=True)
        ob1 = Signal(prm.out_sel_bits, reset_less=True)
        ob2 = Signal(prm.out_sel_bits, reset_less=True)
        ob3 = Signal(prm.out_sel_bits, reset_less=True)
        zo1 = Signal(prm.z_out_bits, reset_less=True)
        zo2 = Signal(prm.z_out_bits, reset_less=True)
        a1 = Signal(prm.addr_bits, reset_less=True)
        a2 = Signal(prm.addr_bits, reset_less=True)
        a3 = Signal(prm.addr_bits, reset_less=True)
        with m.If(en):
            m.d.sync += [v1.eq(d_fire), v2.eq(v1), v3.eq(v2),
                         e1.eq(d_fire & d_end), e2.eq(e1), e3.eq(e2)]
        with m.If(en & d_fire):
            m.d.sync += [m1.eq(d_m), s1.eq(d_s), ob1.eq(osel), zo1.eq(d_zo), a1.eq(d_addr)]
        with m.If(en & v1):
            m.d.sync += [s2.eq(s1), ob2.eq(ob1), zo2.eq(zo1), a2.eq(a1)]
        with m.If(en & v2):
            m.d.sync += [ob3.eq(ob2), a3.eq(a2)]
        big = Signal()
        sm1 = Signal(sh_bits)
        qmax2 = Signal(prm.z_out_bits)
        qmax_sel = Const(0, prm.z_out_bits)
        for oi, b in reversed(list(enumerate(cast(tuple[int, ...], prm.out_widths)))):
            qmax_sel = Mux(ob2 == oi, (1 << b) - 1, qmax_sel)
        m.d.comb += [big.eq(s2 >= pw), sm1.eq(s2 - 1), qmax2.eq(qmax_sel)]
        qs = []
        for lane in range(prm.rq_lanes):
            # the accumulator drained into this lane, per output width
            cand = Const(0, prm.acc_bits)
            fidx = Const(prm.max_features, prm.feat_bits + prm.wpr_bits + 1)
            for oi, b in reversed(list(enumerate(cast(tuple[int, ...], prm.out_widths)))):
                lb = prm.lanes(b)
                if lane >= lb:
                    continue
                feats = [accs[f] for f in range(lane, prm.max_features, lb)]
                pick = Array(feats)[d_w] if len(feats) > 1 else feats[0] if feats else Const(0, 1)
                cand = Mux(osel == oi, pick, cand)
                fidx = Mux(osel == oi, d_w * lb + lane, fidx)
            pad = Signal(name=f"pad{lane}")
            m.d.comb += pad.eq((fidx >= self.features) | d_deg0)
            c1 = Signal(signed(cw), name=f"c{lane}", reset_less=True)
            p2 = Signal(signed(pw), name=f"p{lane}", reset_less=True)
            tt = Signal(signed(pw + 1), name=f"t{lane}")
            r = Signal(signed(pw), name=f"r{lane}")
            y = Signal(signed(pw + 2), name=f"y{lane}")
            q = Signal(prm.z_out_bits, name=f"q{lane}", reset_less=True)
            with m.If(en & d_fire):
                m.d.sync += c1.eq(Mux(pad, 0, cand - d_corr))
            with m.If(en & v1):
                m.d.sync += p2.eq(c1 * m1)
            m.d.comb += [
                tt.eq(Mux(s2 == 0, p2 << 1, p2 >> sm1)),
                r.eq(Mux(big, 0, (tt + 1) >> 1)),
                y.eq(r + zo2),
            ]
            with m.If(en & v2):
                with m.If(y < 0):
                    m.d.sync += q.eq(0)
                with m.Elif(y > qmax2):
                    m.d.sync += q.eq(qmax2)
                with m.Else():
                    m.d.sync += q.eq(y[:prm.z_out_bits])
            qs.append(q)
        packed = Const(0, prm.word_width)
        for oi, b in reversed(list(enumerate(cast(tuple[int, ...], prm.out_widths)))):
            lb = prm.lanes(b)
            wv = Cat(*[qs[lane][:b] for lane in range(lb)])
            packed = Mux(ob3 == oi, wv, packed)
        m.d.comb += [
            en.eq(~v3 | self.out.ready),
            self.out.valid.eq(v3),
            self.out.payload.addr.eq(a3),
            self.out.payload.word.eq(packed),
        ]

        # ---- run control: busy until the last row's last word is taken ---------------------
        out_row = Signal(prm.node_bits + prm.pes.bit_length())
        with m.If(self.out.valid & self.out.ready & e3):
            m.d.sync += out_row.eq(out_row + prm.pes)
        with m.If(self.busy & (out_row >= self.num_nodes)):
            m.d.sync += self.busy.eq(0)
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), out_row.eq(self.index)]
        return m


__all__ = ["MixedAggregationPE", "mixed_output_layout", "mixed_pe_members", "run_members",
           "slot_layout"]
