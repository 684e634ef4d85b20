"""Per-lane zero-point correction and requantization, pipelined (Amaranth 0.5).

For every lane of an accumulator word (``model/integer/rules.py``)::

    c = acc - n * z_in                               # signed, acc_bits + 1
    p = c * M                                        # signed, acc_bits + 1 + mult_bits
    r = floor(p / 2**s + 1/2)                        # round half up
    y = clamp(r + z_out, 0, 2**bits - 1)

The rounding shift is computed as ``r = (t + 1) >> 1`` with ``t = p >> (s - 1)`` (``s >= 1``) or
``t = 2 p`` (``s = 0``), which equals ``(p + 2**(s-1)) >> s`` without a 64-bit half constant;
shifts ``s >= product_bits`` give ``r = 0`` exactly. ``n * z_in`` arrives precomputed (``nz``).

Three register stages (correction, product, shift/round/saturate) under one enable: a word
enters every cycle the output is empty or being taken, so the unit keeps one word per cycle and
applies full backpressure (``i.ready`` is the enable).
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import SHIFT_BITS, EngineParams

#: Register stages from an accepted input to a valid output (cycles).
REQUANT_LATENCY = 3


def word_layout(bits: int, lanes: int) -> data.ArrayLayout:
    """A packed word: ``lanes`` unsigned ``bits``-bit codes, lane 0 in the low bits."""
    return data.ArrayLayout(unsigned(bits), lanes)


def requant_in_layout(params: EngineParams) -> data.StructLayout:
    """Input of the requantizer: one accumulator word and its row's parameters."""
    return data.StructLayout({
        "acc": data.ArrayLayout(unsigned(params.acc_bits), params.lanes),
        "nz": unsigned(params.acc_bits),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
    })


class Requantizer(wiring.Component):
    """Requantizes one accumulator word (all lanes) per cycle.

    Ports:
        i: accumulator word stream (:func:`requant_in_layout`).
        o: packed output word stream (``bits``-bit codes, :func:`word_layout`).
        z_out: output zero point (run time, held stable while words are in flight).
    """

    def __init__(self, params: EngineParams) -> None:
        self.params = params
        super().__init__({
            "i": In(stream.Signature(requant_in_layout(params))),
            "o": Out(stream.Signature(word_layout(params.bits, params.lanes))),
            "z_out": In(params.bits),
        })

    def elaborate(self, platform: object) -> Module:
        m = Module()
        prm = self.params
        lanes, cw, pw = prm.lanes, prm.corrected_bits, prm.product_bits
        qmax = (1 << prm.bits) - 1
        # shifts below pw need only this many bits; larger shifts give 0
        sh_bits = max(1, (pw - 1).bit_length())

        en = Signal()
        m.d.comb += [en.eq(~self.o.valid | self.o.ready), self.i.ready.eq(en)]

        # stage 1: zero-point correction
        v1 = Signal()
        c1 = Signal(data.ArrayLayout(signed(cw), lanes))
        m1 = Signal(prm.mult_bits)
        s1 = Signal(SHIFT_BITS)
        # stage 2: product
        v2 = Signal()
        p2 = Signal(data.ArrayLayout(signed(pw), lanes))
        s2 = Signal(SHIFT_BITS)

        # Data registers load only with a valid word (fewer toggles: faster RTL simulation,
        # less switching power); the valid bits move on every enabled cycle.
        with m.If(en):
            m.d.sync += [v1.eq(self.i.valid), v2.eq(v1), self.o.valid.eq(v2)]
        with m.If(en & self.i.valid):
            m.d.sync += [m1.eq(self.i.payload.multiplier), s1.eq(self.i.payload.shift)]
            for lane in range(lanes):
                m.d.sync += c1[lane].eq(self.i.payload.acc[lane] - self.i.payload.nz)
        with m.If(en & v1):
            m.d.sync += s2.eq(s1)
            for lane in range(lanes):
                m.d.sync += p2[lane].eq(c1[lane] * m1)

        # stage 3: round-half-up shift, add z_out, saturate
        big = Signal()
        m.d.comb += big.eq(s2 >= pw)
        sm1 = Signal(sh_bits)
        m.d.comb += sm1.eq(s2 - 1)
        for lane in range(lanes):
            p = p2[lane]
            t = Signal(signed(pw + 1), name=f"t{lane}")
            r = Signal(signed(pw), name=f"r{lane}")
            y = Signal(signed(pw + 2), name=f"y{lane}")
            m.d.comb += [
                t.eq(Mux(s2 == 0, p << 1, p >> sm1)),
                r.eq(Mux(big, 0, (t + 1) >> 1)),
                y.eq(r + self.z_out),
            ]
            with m.If(en & v2):
                with m.If(y < 0):
                    m.d.sync += self.o.payload[lane].eq(0)
                with m.Elif(y > qmax):
                    m.d.sync += self.o.payload[lane].eq(qmax)
                with m.Else():
                    m.d.sync += self.o.payload[lane].eq(y[: prm.bits])
        return m


__all__ = ["REQUANT_LATENCY", "Requantizer", "requant_in_layout", "word_layout"]
