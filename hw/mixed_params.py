"""Elaboration parameters of the mixed-width aggregation engine and its port layouts.

Pure Python (no Amaranth import). The engine (:mod:`hw.mixed_engine`) runs the stages of
:class:`~model.golden.mixed_stage.MixedAggregationStage`: source rows of several code widths
summed with per-bucket weights ``R[k]``, outputs requantized per row at the row's own width
(``docs/hw.md``, "Mixed-width aggregation").

Ports of PE ``p`` (Verilog ``<port>__<p>__{valid,ready,payload}``; payload fields least
significant first):

============  =====  ============================================================================
port          dir    payload
============  =====  ============================================================================
desc_req      out    row ``i`` (``node_bits``)
desc_resp     in     ``start``, ``end`` (``edge_bits`` each), ``multiplier`` (``mult_bits``),
                     ``shift`` (6), ``bucket`` (``bucket_bits``: the row's output bucket),
                     ``out_offset`` (``addr_bits``: word address of the row's output)
idx_req       out    CSR position ``k`` (``edge_bits``)
idx_resp      in     ``offset`` (``addr_bits``: ``feat_offset[j]`` of the source ``j =
                     indices[k]``), ``bucket`` (``bucket_bits``: ``src_bucket[j]``)
feat_req      out    word address (``addr_bits``)
feat_resp     in     one packed word (``word_width``)
out           out    ``addr`` (``addr_bits``), then the packed output word (``word_width``)
============  =====  ============================================================================

Run-time inputs (latched with ``start``), per bucket ``k < max_buckets``: ``in_sel__k`` (index
of the bucket's input width in ``in_widths``), ``z_in__k``, ``weight__k`` (``R[k]``),
``out_sel__k`` (index in ``out_widths``), ``z_out__k``; and ``num_nodes``, ``features`` (F).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, cast

from qgnn.model.golden import packing
from qgnn.model.golden.mixed_stage import weighted_acc_width
from qgnn.model.integer import rules

from .params import SHIFT_BITS

#: Name of the top-level Verilog module of the mixed engine.
MIXED_TOP_NAME = "qgnn_mixed_engine"
#: Ports of one PE, in the order the Verilog lists them.
MIXED_PORTS = ("desc_req", "desc_resp", "idx_req", "idx_resp", "feat_req", "feat_resp", "out")
#: Per-bucket run-time inputs (Verilog ``<name>__<k>``).
BUCKET_INPUTS = ("in_sel", "z_in", "weight", "out_sel", "z_out")
#: Keys :meth:`MixedParams.to_dict` adds (derived widths).
MIXED_DERIVED_KEYS = ("acc_bits", "corrected_bits", "product_bits", "rq_lanes", "bucket_bits",
                      "wpr_bits", "fifo_depth", "max_weight_bound")


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} = {value} not allowed; allowed: {lo}..{hi}")
    return value


def _widths(name: str, value: Iterable[Any]) -> tuple[int, ...]:
    w = tuple(int(b) for b in value)
    if not w or len(set(w)) != len(w) or any(b not in rules.HW_BITS for b in w):
        raise ValueError(f"{name} = {w} not allowed: distinct widths from {rules.HW_BITS}, "
                         "at least one")
    return w


@dataclass(frozen=True)
class MixedParams:
    """Elaboration-time parameters of the mixed-width engine (widths in bits).

    Attributes:
        in_widths: input code widths the datapath routes (distinct, from 2, 4, 8).
        out_widths: output code widths it packs (``None``: ``in_widths``).
        word_width: memory word width (bits).
        pes: processing elements P (row ``i`` on PE ``i mod P``).
        max_terms: longest CSR row summed exactly (longer rows raise ``overflow``).
        max_features: feature accumulators per PE: the largest run-time F.
        max_buckets: buckets with run-time registers (input and output buckets).
        r_bits: width of the bucket weights ``R[k]`` (unsigned).
        max_weight: bound on ``R[k] * (2**bits_in[k] - 1)`` the accumulators are sized for
            (``None``: ``(2**r_bits - 1) * (2**max(in_widths) - 1)``); a run with a larger
            weighted code raises ``overflow``.
        acc_width: accumulator width; ``None`` derives ``bit_length(max_terms * max_weight)``;
            a smaller given width is a ``ValueError``.
        mult_bits: requantization multiplier width.
        node_bits, edge_bits, addr_bits: widths of a row index, a CSR position, a word address.
        max_latency: largest memory latency at full throughput (``fifo_depth = max_latency + 2``).
        overlap_drain: ``True`` adds a hold bank (``max_features`` more ``acc_bits`` registers):
            a row's sums move there with its last word and are requantized while the next row
            accumulates, so a row's output words cost no accumulator cycles (the timing
            contract's ``overlap_drain`` form); ``False``: the output words are slots of the
            stream (``+ O_i`` cycles per row).
    """

    in_widths: tuple[int, ...] = (2, 8)
    out_widths: tuple[int, ...] | None = None
    word_width: int = 64
    pes: int = 2
    max_terms: int = 255
    max_features: int = 64
    max_buckets: int = 3
    r_bits: int = 8
    max_weight: int | None = None
    acc_width: int | None = None
    mult_bits: int = rules.DEFAULT_MULT_BITS
    node_bits: int = 16
    edge_bits: int = 20
    addr_bits: int = 20
    max_latency: int = 8
    overlap_drain: bool = True
    _acc: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "in_widths", _widths("in_widths", self.in_widths))
        outs = self.in_widths if self.out_widths is None else self.out_widths
        object.__setattr__(self, "out_widths", _widths("out_widths", outs))
        if self.word_width not in packing.WORD_WIDTHS or self.word_width < 8:
            raise ValueError(f"word_width = {self.word_width} not allowed; allowed: "
                             f"{tuple(w for w in packing.WORD_WIDTHS if w >= 8)}")
        _check_int("pes", self.pes, 1, 64)
        _check_int("max_terms", self.max_terms, 1, 1 << 24)
        _check_int("max_features", self.max_features, 1, 4096)
        _check_int("max_buckets", self.max_buckets, 1, 16)
        _check_int("r_bits", self.r_bits, 1, 32)
        _check_int("mult_bits", self.mult_bits, 1, 32)
        _check_int("node_bits", self.node_bits, 1, 32)
        _check_int("edge_bits", self.edge_bits, 1, 40)
        _check_int("addr_bits", self.addr_bits, 1, 40)
        _check_int("max_latency", self.max_latency, 1, 256)
        if not isinstance(self.overlap_drain, bool):
            raise TypeError(f"overlap_drain must be a bool, got {type(self.overlap_drain).__name__}")
        if self.max_terms >= (1 << self.edge_bits):
            raise ValueError(f"max_terms = {self.max_terms} does not fit edge_bits = "
                             f"{self.edge_bits}")
        bound = self.max_weight_bound
        if self.max_weight is not None:
            _check_int("max_weight", self.max_weight, 1, bound)
        need = weighted_acc_width(self.max_terms, self.weight_limit)
        if self.acc_width is not None:
            _check_int("acc_width", self.acc_width, 1, 64)
            if self.acc_width < need:
                raise ValueError(
                    f"acc_width = {self.acc_width} is too small: {self.max_terms} terms of "
                    f"weighted codes up to {self.weight_limit} need {need} bits")
        object.__setattr__(self, "_acc", need)
        if self.product_bits > rules.MAX_PRODUCT_WIDTH:
            raise ValueError(f"product width {self.product_bits} bits exceeds "
                             f"{rules.MAX_PRODUCT_WIDTH} (lower r_bits, max_weight or max_terms)")

    # --- derived widths -------------------------------------------------------------------
    @property
    def max_weight_bound(self) -> int:
        """``(2**r_bits - 1) * (2**max(in_widths) - 1)``: the largest weighted code possible."""
        return ((1 << self.r_bits) - 1) * ((1 << max(self.in_widths)) - 1)

    @property
    def weight_limit(self) -> int:
        """The weighted-code bound the accumulators are sized for."""
        return self.max_weight if self.max_weight is not None else self.max_weight_bound

    @property
    def acc_bits(self) -> int:
        """Unsigned width of a feature accumulator and of the row correction (bits)."""
        return self.acc_width if self.acc_width is not None else self._acc

    @property
    def corrected_bits(self) -> int:
        return self.acc_bits + 1

    @property
    def product_bits(self) -> int:
        return self.corrected_bits + self.mult_bits

    def lanes(self, bits: int) -> int:
        """Codes of width ``bits`` per word."""
        return self.word_width // bits

    def words(self, bits: int, features: int | None = None) -> int:
        """Words of one row of ``features`` (default ``max_features``) ``bits``-bit codes."""
        f = self.max_features if features is None else features
        return packing.words_per_row(f, bits, self.word_width)

    @property
    def rq_lanes(self) -> int:
        """Requantization lanes: codes of the narrowest output width per word."""
        return self.word_width // min(cast(tuple[int, ...], self.out_widths))

    @property
    def wpr_bits(self) -> int:
        """Width of a word counter within a row (input or output)."""
        most = max(self.words(b)
                   for b in (*self.in_widths, *cast(tuple[int, ...], self.out_widths)))
        return max(1, most.bit_length())

    @property
    def feat_bits(self) -> int:
        """Width of the run-time feature count F (``0..max_features``)."""
        return self.max_features.bit_length()

    @property
    def bucket_bits(self) -> int:
        return max(1, (self.max_buckets - 1).bit_length())

    @property
    def in_sel_bits(self) -> int:
        return max(1, (len(self.in_widths) - 1).bit_length())

    @property
    def out_sel_bits(self) -> int:
        return max(1, (len(cast(tuple[int, ...], self.out_widths)) - 1).bit_length())

    @property
    def z_in_bits(self) -> int:
        return max(self.in_widths)

    @property
    def z_out_bits(self) -> int:
        return max(cast(tuple[int, ...], self.out_widths))

    @property
    def rz_bits(self) -> int:
        """Width of ``R[k] * z_in[k]``."""
        return self.r_bits + self.z_in_bits

    @property
    def terms_bits(self) -> int:
        return max(1, self.max_terms.bit_length())

    @property
    def fifo_depth(self) -> int:
        return self.max_latency + 2

    # --- payload packing (testbenches) ----------------------------------------------------
    def pack_descriptor(self, start: int, end: int, multiplier: int, shift: int, bucket: int,
                        out_offset: int) -> int:
        """Descriptor response payload (fields LSB first)."""
        e, mb, bb, ab = self.edge_bits, self.mult_bits, self.bucket_bits, self.addr_bits
        for what, v, width in (("start", start, e), ("end", end, e),
                               ("multiplier", multiplier, mb), ("shift", shift, SHIFT_BITS),
                               ("bucket", bucket, bb), ("out_offset", out_offset, ab)):
            if not 0 <= v < (1 << width):
                raise ValueError(f"descriptor {what} = {v} does not fit {width} bits")
        return (start | end << e | multiplier << 2 * e | shift << (2 * e + mb)
                | bucket << (2 * e + mb + SHIFT_BITS) | out_offset << (2 * e + mb + SHIFT_BITS + bb))

    def pack_index(self, offset: int, bucket: int) -> int:
        """Index response payload: the source's word address and bucket."""
        if not 0 <= offset < (1 << self.addr_bits):
            raise ValueError(f"source word address {offset} does not fit addr_bits = "
                             f"{self.addr_bits}")
        if not 0 <= bucket < (1 << self.bucket_bits):
            raise ValueError(f"bucket {bucket} does not fit {self.bucket_bits} bits")
        return offset | bucket << self.addr_bits

    def unpack_output(self, payload: int) -> tuple[int, int]:
        return payload & ((1 << self.addr_bits) - 1), payload >> self.addr_bits

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("_acc", None)
        d["in_widths"] = list(self.in_widths)
        d["out_widths"] = list(self.out_widths or ())
        d.update({k: getattr(self, k) for k in MIXED_DERIVED_KEYS})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MixedParams:
        kw = {k: v for k, v in d.items() if k not in MIXED_DERIVED_KEYS}
        kw["in_widths"] = tuple(kw["in_widths"])
        if kw.get("out_widths") is not None:
            kw["out_widths"] = tuple(kw["out_widths"])
        return cls(**kw)


__all__ = ["BUCKET_INPUTS", "MIXED_DERIVED_KEYS", "MIXED_PORTS", "MIXED_TOP_NAME", "MixedParams"]
