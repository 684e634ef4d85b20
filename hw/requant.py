"""Per-lane zero-point correction and requantization, pipelined (Amaranth 0.5).

For every lane of an accumulator word (``model/integer/rules.py``)::

    c = acc - n * z_in                               # signed, acc_bits + 1
    p = c * M                                        # signed, acc_bits + 1 + mult_bits
    r = floor(p / 2**s + 1/2)                        # round half up
    y = clamp(r + z_out, 0, 2**bits - 1)

A bit-truncated engine (``params.truncated``: BT/BT* INT2 codes, ``docs/smp.md`` section 3)
corrects with the input level step 85, requantizes onto the 8-bit grid and snaps the grid code
with three comparators::

    p = (85 acc - n * z_in) * M                      # signed, corrected_bits + mult_bits
      = 85 (acc * M) - (n * z_in) * M                #   as computed: see below
    g = clamp(r + z_out, 0, 255)                     # z_in, z_out: 8-bit grid codes
    y = [g >= t1] + [g >= t2] + [g >= t3]            # thresholds 0..256 (256: never)

The product is formed as ``85 (acc M) - (n z_in) M``: an unsigned ``acc_bits x mult_bits``
product per lane (as small as the plain INT2 multiplier), ``85 x = (x << 6) + (x << 4) +
(x << 2) + x`` (three adders, no multiplier), and one ``(n z_in) M`` per word shared by all
lanes; it equals ``(85 acc - n z_in) M`` exactly and needs less logic than a signed
``corrected_bits x mult_bits`` multiplier per lane.

The rounding shift is computed as ``r = (t + 1) >> 1`` with ``t = p >> (s - 1)`` (``s >= 1``) or
``t = 2 p`` (``s = 0``), which equals ``(p + 2**(s-1)) >> s`` without a 64-bit half constant;
shifts ``s >= product_bits`` give ``r = 0`` exactly. ``n * z_in`` arrives precomputed (``nz``).

Three register stages (correction, product, shift/round/saturate; truncated: lane sums and
``n z_in M``, product, shift/round/clamp/snap) under one enable ``en``: a
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
        "nz": unsigned(params.nz_bits),
        "multiplier": unsigned(params.mult_bits),
        "shift": unsigned(SHIFT_BITS),
    })


def times_level(acc: Value, level: int) -> Value:
    """``level * acc`` as a sum of shifted copies of ``acc`` (one per set bit of ``level``:
    85 = 64 + 16 + 4 + 1 gives three adders, no multiplier)."""
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    terms = [acc if k == 0 else acc << k for k in range(level.bit_length()) if (level >> k) & 1]
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


def build_requant(m: Module, params: EngineParams, en: Value, valid: Value,
                  acc: Sequence[Value], nz: Value, multiplier: Value, shift: Value,
                  z_out: Value, prefix: str = "rq",
                  thresholds: Sequence[Value] = ()) -> tuple[Signal, Value]:
    """Add the three-stage requantization of ``acc`` (one value per lane) to ``m``.

    Stages advance when ``en`` is 1; a word enters when ``valid`` is also 1. Returns the output
    ``(valid, packed word)``; the word is the lanes' registers concatenated, lane 0 lowest.
    A truncated engine needs its ``params.num_thresholds`` snap ``thresholds`` (grid codes,
    ascending; the plain one none).
    """
    prm = params
    lanes, cw, pw = prm.lanes, prm.corrected_bits, prm.product_bits
    if len(acc) != lanes:
        raise ValueError(f"expected {lanes} accumulator lanes, got {len(acc)}")
    if len(thresholds) != prm.num_thresholds:
        raise ValueError(f"expected {prm.num_thresholds} snap thresholds, got {len(thresholds)}")
    qmax = (1 << prm.grid_bits) - 1
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
    if prm.truncated:  # n z_in M: one product per word, shared by the lanes
        nzm1 = Signal(prm.nz_bits + prm.mult_bits, name=f"{prefix}_nzm1", reset_less=True)
        with m.If(en & valid):
            m.d.sync += nzm1.eq(nz * multiplier)
    big = Signal(name=f"{prefix}_big")
    sm1 = Signal(sh_bits, name=f"{prefix}_sm1")
    m.d.comb += [big.eq(s2 >= pw), sm1.eq(s2 - 1)]

    outs = []
    for lane in range(lanes):
        p2 = Signal(signed(pw), name=f"{prefix}_p{lane}", reset_less=True)
        t = Signal(signed(pw + 1), name=f"{prefix}_t{lane}")
        r = Signal(signed(pw), name=f"{prefix}_r{lane}")
        y = Signal(signed(pw + 2), name=f"{prefix}_y{lane}")
        q = Signal(prm.bits, name=f"{prefix}_q{lane}", reset_less=True)
        if not prm.truncated:
            c1 = Signal(signed(cw), name=f"{prefix}_c{lane}", reset_less=True)
            with m.If(en & valid):
                m.d.sync += c1.eq(acc[lane] - nz)
            with m.If(en & v1):
                m.d.sync += p2.eq(c1 * m1)
        else:  # p = 85 (acc M) - n z_in M: an acc_bits x mult_bits unsigned product per lane
            a1 = Signal(prm.acc_bits, name=f"{prefix}_a{lane}", reset_less=True)
            with m.If(en & valid):
                m.d.sync += a1.eq(acc[lane])
            with m.If(en & v1):
                m.d.sync += p2.eq(times_level(a1 * m1, prm.in_level) - nzm1)
        m.d.comb += [
            t.eq(Mux(s2 == 0, p2 << 1, p2 >> sm1)),
            r.eq(Mux(big, 0, (t + 1) >> 1)),
            y.eq(r + z_out),
        ]
        if not prm.truncated:
            with m.If(en & v2):
                with m.If(y < 0):
                    m.d.sync += q.eq(0)
                with m.Elif(y > qmax):
                    m.d.sync += q.eq(qmax)
                with m.Else():
                    m.d.sync += q.eq(y[: prm.bits])
        else:
            g = Signal(prm.grid_bits, name=f"{prefix}_g{lane}")
            with m.If(y < 0):
                m.d.comb += g.eq(0)
            with m.Elif(y > qmax):
                m.d.comb += g.eq(qmax)
            with m.Else():
                m.d.comb += g.eq(y[: prm.grid_bits])
            snap = 0
            for thr in thresholds:
                snap = snap + (g >= thr)
            with m.If(en & v2):
                m.d.sync += q.eq(snap)
        outs.append(q)
    return v3, Cat(*outs)


def threshold_ports(component: object, params: EngineParams) -> list[Value]:
    """The ``thr1 .. thrK`` members of a component (empty for the plain datapath)."""
    return [getattr(component, f"thr{k + 1}") for k in range(params.num_thresholds)]


class Requantizer(wiring.Component):
    """Requantizes one accumulator word (all lanes) per cycle (stream wrapper of
    :func:`build_requant`).

    Ports:
        i: accumulator word stream (:func:`requant_in_layout`).
        o: packed output word stream (``bits``-bit codes, :func:`word_layout`).
        z_out: output zero point (run time, held stable while words are in flight; an 8-bit
            grid code when truncated).
        thr1, thr2, thr3: snap thresholds (truncated only; 9-bit grid codes, run time).
    """

    def __init__(self, params: EngineParams) -> None:
        self.params = params
        members: dict = {
            "i": In(stream.Signature(requant_in_layout(params))),
            "o": Out(stream.Signature(word_layout(params.bits, params.lanes))),
            "z_out": In(params.z_out_bits),
        }
        for k in range(params.num_thresholds):
            members[f"thr{k + 1}"] = In(params.threshold_bits)
        super().__init__(members)

    def elaborate(self, platform: object) -> Module:
        m = Module()
        en = Signal()
        valid, word = build_requant(
            m, self.params, en, self.i.valid,
            [self.i.payload.acc[k] for k in range(self.params.lanes)],
            self.i.payload.nz, self.i.payload.multiplier, self.i.payload.shift, self.z_out,
            thresholds=threshold_ports(self, self.params))
        m.d.comb += [
            en.eq(~valid | self.o.ready),
            self.i.ready.eq(en),
            self.o.valid.eq(valid),
            self.o.payload.eq(word),
        ]
        return m


__all__ = ["REQUANT_LATENCY", "Requantizer", "build_requant", "requant_in_layout",
           "threshold_ports", "times_level", "word_layout"]
