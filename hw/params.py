"""Elaboration parameters of the aggregation engine and the bit layouts of its ports.

Pure Python (no Amaranth import): the RTL (:mod:`hw.pe`, :mod:`hw.engine`), the cocotb
testbenches and :mod:`hw.verify` all size themselves from :class:`EngineParams`, so they agree on
every field position. A payload is packed least significant field first (Amaranth
``data.StructLayout`` order).

Port layouts (``P`` processing elements, ``k = 0 .. P-1``; Verilog names ``<port>__<k>__<field>``,
fields ``valid``, ``ready``, ``payload``):

============  =====  ============================================================================
port          dir    payload
============  =====  ============================================================================
desc_req      out    row ``i`` (``node_bits``)
desc_resp     in     ``start`` (``edge_bits``), ``end`` (``edge_bits``), ``multiplier``
                     (``mult_bits``), ``shift`` (6)
idx_req       out    CSR position ``k`` (``edge_bits``)
idx_resp      in     ``indices[k]`` (``node_bits``)
feat_req      out    word address ``j * W + w`` (``addr_bits``)
feat_resp     in     packed word (``word_width``; lane ``l`` at bits ``[l*bits, (l+1)*bits)``)
out           out    ``addr`` = ``i * W + w`` (``addr_bits``), then the packed word
                     (``word_width``)
============  =====  ============================================================================

A bit-truncated engine (``truncated=True``, INT2 only: the BT/BT* codes of
``docs/smp.md`` section 3) has the same ports and words; its run-time zero points ``z_in``,
``z_out`` are 8-bit grid codes and it has three more run-time inputs, the snap thresholds
``thr1``, ``thr2``, ``thr3`` (9 bits each: grid codes 0..256, 256 = never).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from qgnn.model.golden import packing
from qgnn.model.integer import rules

#: Code widths the datapath implements.
SUPPORTED_BITS = rules.HW_BITS
#: Width of the per-row right-shift field (bits): shifts 0..63.
SHIFT_BITS = 6
#: Width of the engine's cycle counter (bits).
CYCLE_BITS = 32
#: Ports of one processing element, in the order the Verilog lists them.
PORTS = ("desc_req", "desc_resp", "idx_req", "idx_resp", "feat_req", "feat_resp", "out")
#: Name of the top-level Verilog module written by :mod:`hw.export`.
TOP_NAME = "qgnn_agg_engine"
#: Grid value of one input code step of a bit-truncated (BT/BT*) engine: code ``c`` stands for
#: the 8-bit grid value ``85 c`` (``85 = 64 + 16 + 4 + 1``).
BT_LEVEL = 85
#: Width of the grid a bit-truncated engine requantizes onto (bits): zero points are 0..255.
BT_GRID_BITS = 8
#: Code width of a bit-truncated engine (bits).
BT_BITS = 2
#: Keys :meth:`EngineParams.to_dict` adds to the constructor's fields (derived widths).
DERIVED_KEYS = ("lanes", "acc_bits", "corrected_bits", "product_bits", "in_level", "grid_bits",
                "addr_bits", "fifo_depth")


def _check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        allowed = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} = {value} not allowed; allowed: {allowed}")
    return value


@dataclass(frozen=True)
class EngineParams:
    """Elaboration-time parameters of the aggregation engine (all widths in bits).

    Attributes:
        bits: input and output code width: 2, 4 or 8.
        word_width: memory word width (bits), default 64; ``lanes = word_width // bits``.
        pes: processing elements P (row ``i`` goes to PE ``i mod P``).
        max_terms: longest CSR row the accumulators sum exactly; longer rows raise ``overflow``.
        acc_width: accumulator width; ``None`` derives ``rules.acc_width(bits, max_terms)``. A
            given width smaller than that is an error (never a silent wraparound).
        mult_bits: requantization multiplier width (unsigned), default 16.
        node_bits: width of a node index (rows ``< 2**node_bits``).
        edge_bits: width of a CSR position (``E < 2**edge_bits``).
        wpr_bits: width of the words-per-row input (``W < 2**wpr_bits``).
        max_latency: largest memory latency (cycles) at which every PE still takes one word per
            cycle; sizes the in-flight buffers (``fifo_depth = max_latency + 2``). Longer
            latencies are correct but slower.
        truncated: bit-truncated (BT/BT*) datapath, ``bits = 2`` only: the correction is
            ``85 acc - n z_in`` with an 8-bit grid ``z_in``, the requantization clamps to the
            8-bit grid (``z_out`` a grid code) and three run-time comparators snap the grid code
            to a 2-bit code (``model/integer/rules.py``). ``False``: the plain datapath.
    """

    bits: int = 4
    word_width: int = 64
    pes: int = 4
    max_terms: int = 255
    acc_width: int | None = None
    mult_bits: int = rules.DEFAULT_MULT_BITS
    node_bits: int = 16
    edge_bits: int = 20
    wpr_bits: int = 8
    max_latency: int = 8
    truncated: bool = False
    _derived_acc: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        if self.bits not in SUPPORTED_BITS:
            raise ValueError(f"bits = {self.bits} not supported; allowed: {SUPPORTED_BITS}")
        if self.word_width not in packing.WORD_WIDTHS:
            raise ValueError(
                f"word_width = {self.word_width} not allowed; allowed: {packing.WORD_WIDTHS}")
        if self.word_width % self.bits:
            raise ValueError(f"word_width {self.word_width} is not a multiple of bits {self.bits}")
        _check_int("pes", self.pes, 1, 64)
        _check_int("max_terms", self.max_terms, 1, 1 << 24)
        _check_int("mult_bits", self.mult_bits, 1, 32)
        _check_int("node_bits", self.node_bits, 1, 32)
        _check_int("edge_bits", self.edge_bits, 1, 40)
        _check_int("wpr_bits", self.wpr_bits, 1, 16)
        _check_int("max_latency", self.max_latency, 1, 256)
        if not isinstance(self.truncated, bool):
            raise TypeError(f"truncated must be a bool, got {type(self.truncated).__name__}")
        if self.truncated and self.bits != BT_BITS:
            raise ValueError(f"truncated = True needs bits = {BT_BITS} (BT/BT* codes are 2-bit), "
                             f"got bits = {self.bits}")
        need = rules.acc_width(self.bits, self.max_terms)
        if self.acc_width is not None:
            _check_int("acc_width", self.acc_width, 1, 64)
            if self.acc_width < need:
                raise ValueError(
                    f"acc_width = {self.acc_width} is too small: {self.max_terms} terms of "
                    f"{self.bits}-bit codes need {need} bits (max_terms = "
                    f"{rules.max_terms_for_width(self.bits, self.acc_width)} fits {self.acc_width})")
        if self.max_terms >= (1 << self.edge_bits):
            raise ValueError(f"max_terms = {self.max_terms} does not fit edge_bits = {self.edge_bits}")
        object.__setattr__(self, "_derived_acc", need)

    # --- derived widths ------------------------------------------------------------------
    @property
    def lanes(self) -> int:
        """Codes per word."""
        return self.word_width // self.bits

    @property
    def acc_bits(self) -> int:
        """Accumulator width used by the RTL (bits)."""
        return self.acc_width if self.acc_width is not None else self._derived_acc

    @property
    def in_level(self) -> int:
        """Grid value of one input code step: 85 when truncated, else 1."""
        return BT_LEVEL if self.truncated else 1

    @property
    def grid_bits(self) -> int:
        """Width of the grid the requantization clamps to (bits): 8 when truncated, else
        ``bits``. The output zero point ``z_out`` is a code of this grid."""
        return BT_GRID_BITS if self.truncated else self.bits

    @property
    def z_in_bits(self) -> int:
        """Width of the run-time input zero point (bits): ``z_in`` is in
        ``0..in_level * (2**bits - 1)`` (8 bits when truncated, else ``bits``)."""
        return (self.in_level * ((1 << self.bits) - 1)).bit_length()

    @property
    def z_out_bits(self) -> int:
        """Width of the run-time output zero point (bits): ``grid_bits``."""
        return self.grid_bits

    @property
    def num_thresholds(self) -> int:
        """Snap thresholds of a truncated engine (``2**bits - 1`` = 3), else 0."""
        return (1 << self.bits) - 1 if self.truncated else 0

    @property
    def threshold_bits(self) -> int:
        """Width of a snap threshold (bits): grid codes ``0..2**grid_bits`` (256 = never)."""
        return self.grid_bits + 1

    @property
    def corrected_bits(self) -> int:
        """Signed width of ``in_level * acc - n * z_in`` (bits): ``acc_bits + 1`` for the plain
        datapath; ``bit_length(85 * max_terms * 3) + 1`` when truncated (Cora, 169 terms: 17),
        the formula of ``AggregationStage.corrected_width``. Rows longer than ``max_terms``
        raise ``overflow``, so the bound holds whenever the flag is clear."""
        if not self.truncated:
            return self.acc_bits + 1
        return (self.in_level * self.max_terms * ((1 << self.bits) - 1)).bit_length() + 1

    @property
    def nz_bits(self) -> int:
        """Unsigned width of a row's ``n * z_in`` (bits): ``corrected_bits - 1``."""
        return self.corrected_bits - 1

    @property
    def product_bits(self) -> int:
        """Signed width of ``(in_level * acc - n z_in) * M`` (bits)."""
        return self.corrected_bits + self.mult_bits

    @property
    def terms_bits(self) -> int:
        """Width of a row's term count as carried to the zero-point correction (bits)."""
        return max(1, self.max_terms.bit_length())

    @property
    def addr_bits(self) -> int:
        """Width of a feature / output word address ``j * W + w`` (bits)."""
        return self.node_bits + self.wpr_bits

    @property
    def fifo_depth(self) -> int:
        """Entries of each in-flight buffer (descriptor, index, feature, tags)."""
        return self.max_latency + 2

    @property
    def desc_bits(self) -> int:
        return 2 * self.edge_bits + self.mult_bits + SHIFT_BITS

    @property
    def out_bits(self) -> int:
        """Width of the output stream payload (address, then word)."""
        return self.addr_bits + self.word_width

    # --- payload packing (for testbenches) -----------------------------------------------
    def pack_descriptor(self, start: int, end: int, multiplier: int, shift: int) -> int:
        """Descriptor response payload as an integer (fields LSB first)."""
        e, mb = self.edge_bits, self.mult_bits
        if not (0 <= start < (1 << e) and 0 <= end < (1 << e)):
            raise ValueError(f"CSR positions {start}, {end} do not fit edge_bits = {e}")
        if not 0 <= multiplier < (1 << mb):
            raise ValueError(f"multiplier {multiplier} does not fit mult_bits = {mb}")
        if not 0 <= shift < (1 << SHIFT_BITS):
            raise ValueError(f"shift {shift} outside 0..{(1 << SHIFT_BITS) - 1}")
        return start | (end << e) | (multiplier << (2 * e)) | (shift << (2 * e + mb))

    def unpack_output(self, payload: int) -> tuple[int, int]:
        """``(address, word)`` from an output stream payload."""
        return payload & ((1 << self.addr_bits) - 1), payload >> self.addr_bits

    def to_dict(self) -> dict:
        """The constructor's fields and the derived widths of :data:`DERIVED_KEYS`."""
        d = asdict(self)
        d.pop("_derived_acc", None)
        d.update({k: getattr(self, k) for k in DERIVED_KEYS})
        return d

    @classmethod
    def from_dict(cls, d: dict) -> EngineParams:
        """Inverse of :meth:`to_dict` (derived keys are dropped; dictionaries written before
        ``truncated`` existed give the plain engine)."""
        return cls(**{k: v for k, v in d.items() if k not in DERIVED_KEYS})


def port_signal(port: str, pe: int, field_name: str) -> str:
    """Verilog name of one signal of a PE port, e.g. ``("out", 0, "valid") -> out__0__valid``."""
    if port not in PORTS:
        raise ValueError(f"unknown port {port!r}; ports: {PORTS}")
    return f"{port}__{pe}__{field_name}"


__all__ = [
    "BT_BITS",
    "BT_GRID_BITS",
    "BT_LEVEL",
    "CYCLE_BITS",
    "DERIVED_KEYS",
    "PORTS",
    "SHIFT_BITS",
    "SUPPORTED_BITS",
    "TOP_NAME",
    "EngineParams",
    "port_signal",
]
