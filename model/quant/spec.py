"""Typed, validated quantization specifications.

A :class:`QuantSpec` says how one tensor is quantized: bit width, signedness, granularity and
range estimator. Bit width 32 means an FP32 passthrough (no quantization).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, get_args

Granularity = Literal["tensor", "channel", "node"]
RangeMethod = Literal["minmax", "percentile", "qlr", "lsq"]
Truncation = Literal["none", "bt", "bt_star"]

#: Integer bit widths a quantizer accepts; 32 selects the FP32 passthrough.
INT_BITS: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8)
FP32_BITS = 32
ALLOWED_BITS: tuple[int, ...] = (*INT_BITS, FP32_BITS)
GRANULARITIES: tuple[str, ...] = get_args(Granularity)
RANGE_METHODS: tuple[str, ...] = get_args(RangeMethod)
TRUNCATIONS: tuple[str, ...] = get_args(Truncation)
#: Range methods that bit truncation accepts (LSQ learns a step on the code grid itself).
TRUNCATION_RANGES: tuple[str, ...] = ("minmax", "percentile", "qlr")


class QuantConfigError(ValueError):
    """An invalid quantization configuration (bit width, role, granularity, ...)."""


def check_bits(bits: Any, where: str = "bits") -> int:
    """Validate a bit width; return it as ``int``. Accepts 2..8 or 32 (FP32)."""
    if isinstance(bits, str):
        text = bits.strip().lower()
        if text in ("fp32", "float", "float32"):
            return FP32_BITS
        if text.startswith("int"):
            text = text[3:]
        try:
            bits = int(text)
        except ValueError:
            raise QuantConfigError(
                f"{where}: invalid bit width {bits!r}; allowed: {', '.join(map(str, INT_BITS))} "
                f"or 32/'fp32'"
            ) from None
    if isinstance(bits, bool) or not isinstance(bits, int) or bits not in ALLOWED_BITS:
        raise QuantConfigError(
            f"{where}: invalid bit width {bits!r}; allowed: {', '.join(map(str, INT_BITS))} "
            f"or 32/'fp32'"
        )
    return bits


@dataclass(frozen=True)
class QuantSpec:
    """How to quantize one tensor.

    Attributes:
        bits: code width in bits (2..8), or 32 for an FP32 passthrough.
        symmetric: signed codes in ``[-2^(b-1), 2^(b-1)-1]`` with zero point 0 when True;
            unsigned codes in ``[0, 2^b-1]`` plus an integer zero point when False.
        granularity: one scale for the whole ``"tensor"``, one per ``"channel"`` (feature column
            of an activation, output channel of a weight), or one per ``"node"`` (row).
        range: range estimator: ``"minmax"`` (momentum min/max), ``"percentile"`` (momentum
            percentile), ``"qlr"`` (learnable α times the tracked min/max, grid-search
            initialised, as in SMP's QLR) or ``"lsq"`` (learnable step size and offset).
        momentum: weight of the newest batch in running statistics (0 < m <= 1).
        percentile: upper percentile (50 < p <= 100) for ``range="percentile"``; the lower
            one is ``100 - p``.
        truncation: INT2 bit truncation (SMP): ``"none"``; ``"bt"`` quantizes on an 8-bit grid
            and snaps the 8-bit code to the 4 levels {0, 85, 170, 255}; ``"bt_star"`` shifts the
            snap by the tensor's rounded skewness (see :mod:`model.quant.bit_truncation`).
            Valid only with ``bits=2``, asymmetric codes, per-tensor or per-channel
            granularity and a ``minmax``/``percentile``/``qlr`` range.
    """

    bits: int = FP32_BITS
    symmetric: bool = False
    granularity: Granularity = "tensor"
    range: RangeMethod = "lsq"
    momentum: float = 0.1
    percentile: float = 99.9
    truncation: Truncation = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bits", check_bits(self.bits))
        for name in ("granularity", "range", "truncation"):
            if not isinstance(getattr(self, name), str):
                raise QuantConfigError(f"{name} must be a string, got {getattr(self, name)!r}")
        if self.granularity not in GRANULARITIES:
            raise QuantConfigError(
                f"invalid granularity {self.granularity!r}; allowed: {', '.join(GRANULARITIES)}"
            )
        if self.range not in RANGE_METHODS:
            raise QuantConfigError(
                f"invalid range method {self.range!r}; allowed: {', '.join(RANGE_METHODS)}"
            )
        for name in ("momentum", "percentile"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise QuantConfigError(f"{name} must be a number, got {v!r}")
        if not (0.0 < self.momentum <= 1.0):
            raise QuantConfigError(f"momentum must be in (0, 1], got {self.momentum!r}")
        if not (50.0 < self.percentile <= 100.0):
            raise QuantConfigError(f"percentile must be in (50, 100], got {self.percentile!r}")
        if not isinstance(self.symmetric, bool):
            raise QuantConfigError(f"symmetric must be true or false, got {self.symmetric!r}")
        self._check_truncation()

    def _check_truncation(self) -> None:
        t = self.truncation
        if t not in TRUNCATIONS:
            raise QuantConfigError(
                f"invalid truncation {t!r}; allowed: {', '.join(TRUNCATIONS)}"
            )
        if t == "none":
            return
        if self.bits != 2:
            raise QuantConfigError(
                f"truncation {t!r} needs bits=2 (it snaps an 8-bit grid to 4 levels), "
                f"got bits={self.bits}"
            )
        if self.symmetric:
            raise QuantConfigError(
                f"truncation {t!r} needs asymmetric codes (symmetric=false), got symmetric=true"
            )
        if self.granularity not in ("tensor", "channel"):
            raise QuantConfigError(
                f"truncation {t!r} needs granularity 'tensor' or 'channel', "
                f"got {self.granularity!r}"
            )
        if self.range not in TRUNCATION_RANGES:
            raise QuantConfigError(
                f"truncation {t!r} needs range {', '.join(TRUNCATION_RANGES)}, got {self.range!r}"
            )

    @property
    def enabled(self) -> bool:
        """True when this spec quantizes (bits < 32)."""
        return self.bits != FP32_BITS

    @property
    def qmin(self) -> int:
        """Smallest integer code."""
        return -(1 << (self.bits - 1)) if self.symmetric else 0

    @property
    def qmax(self) -> int:
        """Largest integer code."""
        return (1 << (self.bits - 1)) - 1 if self.symmetric else (1 << self.bits) - 1

    def with_(self, **changes: Any) -> QuantSpec:
        """A copy with some fields changed (validated)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Fields as a dict; ``truncation`` is left out when it is ``"none"``."""
        d = asdict(self)
        if d["truncation"] == "none":
            del d["truncation"]
        return d

    @property
    def truncated(self) -> bool:
        """True when this spec uses INT2 bit truncation (BT or BT*)."""
        return self.truncation != "none"

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "quant spec") -> QuantSpec:
        allowed = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - allowed
        if unknown:
            raise QuantConfigError(
                f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        return cls(**d)
