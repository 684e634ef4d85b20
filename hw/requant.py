"""Per-lane zero-point correction and requantization, pipelined (Amaranth 0.5).

For every lane of an accumulator word (``model/integer/rules.py``)::

    c = acc - n * z_in                               # signed, acc_bits + 1
    p = c * M                                        # signed, acc_bits + 1 + mult_bits
    r = floor(p / 2**s + 1/2)                        # round half up
    y = clamp(r + z_out, 0, 2**bits - 1)

The rounding shift is computed as ``r = (t + 1) >> 1`` with ``t = p >> (s - 1)`` (``s >= 1``) or
``t = 2 p`` (``s = 0``), which equals ``(p + 2**(s-1)) >> s`` without a 64-bit half constant;
shifts ``s >= product_bits`` give ``r = 0`` exactly. ``n * z_in`` arrives precomputed (``nz``).

Three register stages (correction, product, shift/round/saturate) under one enable ``en``: a
word enters every cycle the output is empty or being taken, so the unit keeps one word per cycle
and applies full backpressure. :func:`build_requant` emits the lanes into a module (the PE feeds
it its lane sums directly); :class:`Requantizer` wraps it as a stream component.

Every lane has its own registers (no lane arrays packed into one wide signal): that keeps the
exported Verilog free of processes that assign many lanes, which event-driven simulators such
as Icarus would re-run once per lane change.
"""

from __future__ import annotations

from collections.abc import Sequence

from amaranth import Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .params import SHIFT_BITS, EngineParams

#: Register stages from an accepted input to a valid output (cycles).
REQUANT_LATENCY = 3


def word_layout(bits: int, lanes: int) -> data.ArrayLayout:
    """A packed word: ``lanes`` unsigned ``bits``-bit codes, lane 0 in the low bits."""
    return data.ArrayLayout(unsigned(bits), lanes)


def requant_in_layout(params: EngineParams) -> data.StructLayout:
    """Input of the :class:`Requantizer`: one accumulator word and its row's parameters."""
    return data.StructLayout({
        "acc": data.ArrayLayout(unsigned(params.acc_bits), params.lanes),
        "nz": unsigned(params.acc_bits),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
    })


def build_requant(m: Module, params: EngineParams, en: Value, valid: Value,
                  acc: Sequence[Value], nz: Value, multiplier: Value, shift: Value,
                  z_out: Value, prefix: str = "rq") -> tuple[Signal, Value]:
    """Add the three-stage requantization of ``acc`` (one value per lane) to ``m``.

    Stages advance when ``en`` is 1; a word enters when ``valid`` is also 1. Returns the output
    ``(valid, packed word)``; the word is the lanes' registers concatenated, lane 0 lowest.
    """
    prm = params
    lanes, cw, pw = prm.lanes, prm.corrected_bits, prm.product_bits
    if len(acc) != lanes:
        raise ValueError(f"expected {lanes} accumulator lanes, got {len(acc)}")
    qmax = (1 << prm.bits) - 1
    sh_bits = max(1, (pw - 1).bit_length())  # shifts below pw; larger shifts give 0

    v1 = Signal(name=f"{prefix}_v1")
    v2 = Signal(name=f"{prefix}_v2")
    v3 = Signal(name=f"{prefix}_v3")
    # data registers need no reset (only the valid bits do)
    m1 = Signal(prm.mult_bits, name=f"{prefix}_m1", reset_less=True)
    s1 = Signal(SHIFT_BITS, name=f"{prefix}_s1", reset_less=True)
    s2 = Signal(SHIFT_BITS, name=f"{prefix}_s2", reset_less=True)
    with m.If(en):
        m.d.sync += [v1.eq(valid), v2.eq(v1), v3.eq(v2)]
    # data registers load only with a valid word (fewer toggles in simulation and silicon)
    with m.If(en & valid):
        m.d.sync += [m1.eq(multiplier), s1.eq(shift)]
    with m.If(en & v1):
        m.d.sync += s2.eq(s1)
    big = Signal(name=f"{prefix}_big")
    sm1 = Signal(sh_bits, name=f"{prefix}_sm1")
    m.d.comb += [big.eq(s2 >= pw), sm1.eq(s2 - 1)]

    outs = []
    for lane in range(lanes):
        c1 = Signal(signed(cw), name=f"{prefix}_c{lane}", reset_less=True)
        p2 = Signal(signed(pw), name=f"{prefix}_p{lane}", reset_less=True)
        t = Signal(signed(pw + 1), name=f"{prefix}_t{lane}")
        r = Signal(signed(pw), name=f"{prefix}_r{lane}")
        y = Signal(signed(pw + 2), name=f"{prefix}_y{lane}")
        q = Signal(prm.bits, name=f"{prefix}_q{lane}", reset_less=True)
        with m.If(en & valid):
            m.d.sync += c1.eq(acc[lane] - nz)
        with m.If(en & v1):
            m.d.sync += p2.eq(c1 * m1)
        m.d.comb += [
            t.eq(Mux(s2 == 0, p2 << 1, p2 >> sm1)),
            r.eq(Mux(big, 0, (t + 1) >> 1)),
            y.eq(r + z_out),
        ]
        with m.If(en & v2):
            with m.If(y < 0):
                m.d.sync += q.eq(0)
            with m.Elif(y > qmax):
                m.d.sync += q.eq(qmax)
            with m.Else():
                m.d.sync += q.eq(y[: prm.bits])
        outs.append(q)
    return v3, Cat(*outs)


class Requantizer(wiring.Component):
    """Requantizes one accumulator word (all lanes) per cycle (stream wrapper of
    :func:`build_requant`).

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
        en = Signal()
        valid, word = build_requant(
            m, self.params, en, self.i.valid,
            [self.i.payload.acc[k] for k in range(self.params.lanes)],
            self.i.payload.nz, self.i.payload.multiplier, self.i.payload.shift, self.z_out)
        m.d.comb += [
            en.eq(~valid | self.o.ready),
            self.i.ready.eq(en),
            self.o.valid.eq(valid),
            self.o.payload.eq(word),
        ]
        return m


__all__ = ["REQUANT_LATENCY", "Requantizer", "build_requant", "requant_in_layout", "word_layout"]
