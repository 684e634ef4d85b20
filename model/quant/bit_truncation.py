"""INT2 bit truncation (SMP's BT and BT*): quantize on an 8-bit grid, keep 4 of its levels.

Forward rule, per element (``s``, ``z`` are the 8-bit grid's float32 step and integer zero
point, ``k`` the integer skew shift: 0 for BT, the tensor's rounded skewness for BT*)::

    q8    = clamp(round_half_even(x * (1/s)) + z, 0, 255)    # 8-bit grid code
    c     = clamp(round((q8 + k) / 85), 0, 3)                 # 2-bit code (no ties: 85 is odd)
          = clamp(floor((q8 + k + 42) / 85), 0, 3)            # same, integer-only
    x_hat = (85 * c - z) * s                                  # dequantized value

So a BT tensor is a 2-bit tensor with step ``85 * s`` and the fractional zero point ``z / 85``;
its 8-bit-grid value is ``85 * c`` (levels {0, 85, 170, 255}), and BT* only moves the snapping
thresholds (by ``-k`` grid steps), never the levels. The skew shift is measured once, on the
calibration pass, per group (per tensor, or per channel), and kept in the ``skew_shift`` buffer.

Gradients: a clipped straight-through estimator through both roundings and the snap (the
gradient of ``x`` is 1 where the 8-bit code is not clamped, else 0; the step receives
``(85c - z) - x/s`` inside the range and ``85c - z`` outside, LSQ-style).

Use: a :class:`~model.quant.spec.QuantSpec` with ``truncation="bt"`` or ``"bt_star"`` (bits=2,
asymmetric) built through :func:`make_quantizer`; or wrap a precision configuration with
:class:`TruncatedPrecision` to truncate every INT2 tensor of a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .fixed_point import EXACT_FLOAT32_MULT_BITS, to_multiplier_shift
from .precision import ROLES, PrecisionConfig
from .quantizer import ALPHA_GRID, Quantizer
from .spec import TRUNCATIONS, QuantConfigError, QuantSpec
from .ste import round_ste

#: Bits of the grid BT quantizes on before truncation.
GRID_BITS = 8
#: Largest 8-bit grid code.
GRID_QMAX = (1 << GRID_BITS) - 1
#: Distance between the 4 kept levels on the 8-bit grid: 255 / 3.
LEVEL_STEP = GRID_QMAX // 3
#: ``floor(LEVEL_STEP / 2)``: rounding offset of the integer-only snap.
HALF_STEP = LEVEL_STEP // 2
#: Largest 2-bit code.
CODE_MAX = 3
#: The 8-bit grid values of the 2-bit codes 0..3.
LEVELS: tuple[int, ...] = tuple(LEVEL_STEP * c for c in range(CODE_MAX + 1))

_EPS = 1e-8
_MAX_STAT_ELEMENTS = 1 << 20


# ---------------------------------------------------------------------------- code mapping
def truncate_grid_codes(q8: Tensor, shift: Tensor | int = 0) -> Tensor:
    """2-bit codes ``clamp(floor((q8 + shift + 42) / 85), 0, 3)`` of integer-valued 8-bit
    grid codes ``q8`` (float or integer tensor; the result has ``q8``'s dtype).

    Equals ``clamp(round((q8 + shift) / 85), 0, 3)``: ``(q8 + shift) / 85`` is never a tie.
    """
    v = q8 + shift + HALF_STEP
    if v.is_floating_point():
        c = torch.floor(v / LEVEL_STEP)
    else:
        c = torch.div(v, LEVEL_STEP, rounding_mode="floor")
    return torch.clamp(c, 0, CODE_MAX)


def truncate_grid_codes_np(q8: np.ndarray, shift: np.ndarray | int = 0) -> np.ndarray:
    """Integer-only :func:`truncate_grid_codes` on int64 arrays (floor division)."""
    v = np.asarray(q8, dtype=np.int64) + np.asarray(shift, dtype=np.int64) + HALF_STEP
    return np.clip(np.floor_divide(v, LEVEL_STEP), 0, CODE_MAX)


def grid_values(codes: Tensor) -> Tensor:
    """8-bit grid values ``85 * c`` of 2-bit codes (the levels {0, 85, 170, 255})."""
    return codes * LEVEL_STEP


def skewness_shift(x: Tensor) -> Tensor:
    """Rounded (half to even) Fisher-Pearson skewness ``m3 / m2^1.5`` of each row of ``x``
    (``[groups, elements]``), computed in float64; 0 for constant rows. Returns float64."""
    g = x.detach().to(torch.float64)
    d = g - g.mean(dim=1, keepdim=True)
    m2 = d.pow(2).mean(dim=1)
    m3 = d.pow(3).mean(dim=1)
    ok = m2 > 0
    skew = torch.where(ok, m3 / torch.where(ok, m2, torch.ones_like(m2)).pow(1.5), 0.0)
    return torch.round(skew)


# ------------------------------------------------------------------------- fake quantizer
def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    dims = [i for i, (a, b) in enumerate(zip(t.shape, shape, strict=True)) if b == 1 and a != 1]
    return t.sum(dim=dims, keepdim=True) if dims else t


def _bt_forward(
    x: Tensor, scale: Tensor, zero: Tensor, shift: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    xs = x * torch.reciprocal(scale)
    v = torch.round(xs) + zero
    inside = (v >= 0) & (v <= GRID_QMAX)
    c = truncate_grid_codes(torch.clamp(v, 0, GRID_QMAX), shift)
    qz = c * LEVEL_STEP - zero
    return xs, inside, qz, qz * scale


class _BTFakeQuant(torch.autograd.Function):
    """``(85 * c - z) * s`` with the clipped straight-through gradients of the module doc."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        scale: Tensor,
        zero: Tensor,
        shift: Tensor,
    ) -> Tensor:
        xs, inside, qz, y = _bt_forward(x, scale, zero, shift)
        ctx.save_for_backward(xs, inside, qz, scale)
        return y

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, g: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        xs, inside, qz, scale = ctx.saved_tensors  # type: ignore[attr-defined]
        gx = g * inside
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        gs = _sum_to(g * qz - gx * xs, scale.shape) if needs[1] else None
        gz = _sum_to(gx - g, scale.shape) * scale if needs[2] else None
        return (gx if needs[0] else None, gs, gz, None)


def bt_fake_quant(x: Tensor, scale: Tensor, zero: Tensor, shift: Tensor) -> Tensor:
    """Fake-quantize ``x`` with bit truncation (module doc); ``scale`` (8-bit grid step),
    ``zero`` (8-bit zero point) and ``shift`` (skew shift) broadcast against ``x``."""
    if not torch.is_grad_enabled() or not (
        x.requires_grad or scale.requires_grad or zero.requires_grad
    ):
        return _bt_forward(x, scale, zero, shift)[3]
    return _BTFakeQuant.apply(x, scale, zero, shift)  # type: ignore[no-any-return]


# ------------------------------------------------------------------------- integer form
@dataclass(frozen=True)
class BTIntegerParams:
    """A bit-truncating quantizer in integer form.

    ``grid_scale == grid_scale_mult * 2**-grid_scale_shift`` exactly. Arrays have one entry per
    group (1 per tensor, C per channel).

    Attributes:
        truncation: ``"bt"`` or ``"bt_star"``.
        bits: code width of the stored codes (2).
        qmin, qmax: 2-bit code range (0, 3).
        grid_qmax: largest 8-bit grid code (255).
        level_step: grid distance between levels (85): code ``c`` is grid value ``85 * c``.
        grid_zero_point: 8-bit zero point ``z`` (int64), so ``x_hat = (85 c - z) * s``.
        grid_scale: 8-bit grid step ``s`` (float64, exactly the float32 used in training).
        grid_scale_mult, grid_scale_shift: ``s`` as unsigned multiplier and right shift.
        skew_shift: ``k`` (int64; all 0 for BT).
        granularity: ``"tensor"`` or ``"channel"``.
        axis: the tensor axis groups run along (None per tensor).
    """

    truncation: str
    bits: int
    qmin: int
    qmax: int
    grid_qmax: int
    level_step: int
    grid_zero_point: np.ndarray
    grid_scale: np.ndarray
    grid_scale_mult: np.ndarray
    grid_scale_shift: np.ndarray
    skew_shift: np.ndarray
    granularity: str
    axis: int | None

    def _expand(self, a: np.ndarray, ndim: int) -> np.ndarray:
        if self.axis is None:
            return a.reshape(())
        shape = [1] * ndim
        shape[self.axis] = -1
        return a.reshape(shape)

    def grid_codes(self, x: np.ndarray) -> np.ndarray:
        """8-bit grid codes ``clamp(round(x * (1/s)) + z, 0, 255)`` (int64), float32 math."""
        s = self._expand(self.grid_scale, np.ndim(x)).astype(np.float32)
        z = self._expand(self.grid_zero_point, np.ndim(x))
        inv = (np.float32(1.0) / s).astype(np.float32)
        v = np.rint(np.asarray(x, dtype=np.float32) * inv).astype(np.int64) + z
        return np.clip(v, 0, self.grid_qmax)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """2-bit codes in 0..3 (int64), the same rule as the fake quantizer."""
        k = self._expand(self.skew_shift, np.ndim(x))
        return truncate_grid_codes_np(self.grid_codes(x), k)

    def dequantize(self, c: np.ndarray) -> np.ndarray:
        """Exact real values ``(85 c - z) * M * 2**-shift`` as float64."""
        nd = np.ndim(c)
        z = self._expand(self.grid_zero_point, nd)
        m = self._expand(self.grid_scale_mult, nd).astype(np.float64)
        sh = self._expand(self.grid_scale_shift, nd)
        return np.ldexp((np.asarray(c, dtype=np.int64) * self.level_step - z) * m, -sh)


# ------------------------------------------------------------------------------ quantizer
class BitTruncQuantizer(Quantizer):
    """A :class:`~model.quant.quantizer.Quantizer` whose INT2 codes come from BT or BT*.

    Ranges are estimated as by the base class (momentum min/max, percentile or QLR's learnable
    α), but on the 8-bit grid; the QLR grid search for α minimises the reconstruction error
    *after* truncation. ``spec`` keeps ``bits=2``; :meth:`scale_zero` returns the 8-bit grid's
    step and zero point; :meth:`quantize_codes` returns 2-bit codes.
    """

    skew_shift: Tensor | None

    def __init__(self, spec: QuantSpec, channel_axis: int = -1, name: str = "") -> None:
        if not spec.truncated:
            raise QuantConfigError(
                f"quantizer {name!r}: BitTruncQuantizer needs truncation 'bt' or 'bt_star'"
            )
        super().__init__(spec, channel_axis, name)
        self.register_buffer("skew_shift", None)

    def extra_repr(self) -> str:
        s = self.spec
        t = "bt*" if s.truncation == "bt_star" else "bt"
        return f"{self.name or 'tensor'}: int2-{t} asym per-{s.granularity} {s.range}"

    # ------------------------------------------------------------------ range machinery
    def _scale_zero_from_range(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        scale = (hi - lo) / GRID_QMAX
        zero = -lo / scale.clamp_min(_EPS)
        return scale.clamp_min(_EPS), zero

    def _shift_groups(self, groups: int, device: torch.device) -> Tensor:
        if self.skew_shift is None:
            return torch.zeros(groups, dtype=torch.float32, device=device)
        return self.skew_shift

    def _grid_search_alpha(self, x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        g = self._groupwise(x.detach()).float()
        if g.shape[1] > _MAX_STAT_ELEMENTS:
            idx = torch.randperm(g.shape[1], device=g.device)[:_MAX_STAT_ELEMENTS]
            g = g[:, idx]
        k = self._shift_groups(g.shape[0], g.device)[:, None]
        best_err = torch.full((g.shape[0],), float("inf"), device=g.device)
        best_alpha = torch.ones(g.shape[0], device=g.device)
        for a in ALPHA_GRID:
            scale, zero = self._scale_zero_from_range(lo * a, hi * a)
            z = torch.clamp(torch.round(zero), 0, GRID_QMAX)[:, None]
            y = _bt_forward(g, scale[:, None], z, k)[3]
            err = (y - g).pow(2).mean(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_alpha = torch.where(better, torch.full_like(best_alpha, a), best_alpha)
        return best_alpha

    def _initialize(self, x: Tensor, valid: Tensor | None, zeros: int = 0) -> None:
        xs = x if valid is None else x[valid]
        if xs.numel() == 0:
            xs = x
        g = self._groupwise(xs.detach())
        if self.spec.truncation == "bt_star":
            shift = skewness_shift(g).to(torch.float32)
        else:
            shift = torch.zeros(g.shape[0], dtype=torch.float32)
        self.skew_shift = shift.to(x.device)
        super()._initialize(x, valid, zeros)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "skew_shift"
        if key in state_dict and self.skew_shift is None:
            self.skew_shift = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _current_scale_zero(
        self, x: Tensor, update_stats: bool, zeros: int = 0
    ) -> tuple[Tensor, Tensor]:
        """8-bit grid step ``s`` (float32, > 0) and zero point ``z`` in 0..255 per group;
        ``zeros`` counts implicit zeros of a sparse per-tensor ``x`` (percentile ranges)."""
        s = self.spec
        assert self.running_lo is not None and self.running_hi is not None
        if update_stats:
            blo, bhi = self._batch_range(x, zeros)
            self.running_lo.mul_(1 - s.momentum).add_(blo * s.momentum)
            self.running_hi.mul_(1 - s.momentum).add_(bhi * s.momentum)
        lo, hi = self.running_lo, self.running_hi
        if s.range == "qlr":
            assert self.alpha is not None
            lo, hi = lo * self.alpha, hi * self.alpha
        scale, zero = self._scale_zero_from_range(lo, hi)
        return scale, torch.clamp(round_ste(zero), 0, GRID_QMAX)

    # -------------------------------------------------------------------------- forward
    def forward(
        self, x: Tensor, protect: Tensor | None = None, *, elements: int | None = None
    ) -> Tensor:
        """Fake-quantize ``x`` with BT/BT*; ``protect`` rows pass through (training only);
        ``elements`` as in the base class (implicit zeros of sparse values, per tensor)."""
        if protect is not None and not self.training:
            protect = None
        zeros = 0
        if elements is not None and self.spec.granularity == "tensor":
            zeros = max(elements - x.numel(), 0)
        if not bool(self.initialized):
            with torch.no_grad():
                self._initialize(x, None if protect is None else ~protect, zeros)
        ax = self._axis(x)
        assert self.running_lo is not None and self.skew_shift is not None
        if ax is not None and self.running_lo.numel() != x.shape[ax]:
            raise ValueError(
                f"quantizer {self.name!r}: calibrated for {self.running_lo.numel()} channels "
                f"but got {x.shape[ax]}"
            )
        stats_x = x if protect is None else x[~protect]
        if stats_x.numel() == 0:
            stats_x = x
        shape = self._shape_for(x)
        scale, zero = self._current_scale_zero(stats_x, self.training, zeros)
        y = bt_fake_quant(
            x,
            scale.reshape(shape).to(torch.float32),
            zero.reshape(shape).to(torch.float32),
            self.skew_shift.reshape(shape),
        )
        if protect is not None:
            y = torch.where(protect.reshape(-1, *([1] * (x.dim() - 1))), x, y)
        return y

    def forward_rows(
        self, values: Tensor, row: Tensor, num_rows: int, protect: Tensor | None = None,
        num_cols: int | None = None,
    ) -> Tensor:
        """Fake-quantize a sparse matrix's stored values (per-tensor only). The implicit zeros
        stay zero only if real 0 truncates to itself, which is checked (ValueError if not);
        the skew shift is measured over the stored values."""
        if self.spec.granularity != "tensor":
            raise ValueError(
                f"quantizer {self.name!r}: sparse inputs with bit truncation need "
                f"granularity 'tensor', got {self.spec.granularity!r}"
            )
        vp = None if protect is None else protect[row]
        y = self(values, vp, elements=None if num_cols is None else num_rows * num_cols)
        with torch.no_grad():
            _, zero = self._current_scale_zero(values, False)
            assert self.skew_shift is not None
            z = torch.round(zero)
            c0 = truncate_grid_codes(z, self.skew_shift)
            if bool((c0 * LEVEL_STEP != z).any()):
                raise ValueError(
                    f"quantizer {self.name!r}: real 0 (8-bit code {int(z.reshape(-1)[0])}, skew "
                    f"shift {int(self.skew_shift.reshape(-1)[0])}) truncates to a non-zero "
                    f"level, so a sparse input's implicit zeros would change; use a dense input "
                    f"or truncation 'none' for this role"
                )
        return y

    # --------------------------------------------------------------------- integer form
    @torch.no_grad()
    def integer_params(self, x: Tensor | None = None) -> BTIntegerParams:  # type: ignore[override]
        """The parameters in integer form (8-bit grid step and zero point, skew shift)."""
        scale, zero = self.scale_zero(x)
        assert self.skew_shift is not None
        sc = scale.cpu().numpy().astype(np.float32).astype(np.float64).reshape(-1)
        m, sh = to_multiplier_shift(sc, mult_bits=EXACT_FLOAT32_MULT_BITS)
        axis = None if self.spec.granularity == "tensor" else self.channel_axis
        return BTIntegerParams(
            truncation=self.spec.truncation,
            bits=self.spec.bits,
            qmin=0,
            qmax=CODE_MAX,
            grid_qmax=GRID_QMAX,
            level_step=LEVEL_STEP,
            grid_zero_point=zero.cpu().numpy().reshape(-1).astype(np.int64),
            grid_scale=sc,
            grid_scale_mult=m,
            grid_scale_shift=sh,
            skew_shift=self.skew_shift.cpu().numpy().reshape(-1).astype(np.int64),
            granularity=self.spec.granularity,
            axis=axis,
        )

    @torch.no_grad()
    def quantize_codes(self, x: Tensor) -> Tensor:
        """2-bit codes (int64, 0..3) of ``x`` with the current (eval-mode) parameters."""
        scale, zero = self.scale_zero(x)
        assert self.skew_shift is not None
        shape = self._shape_for(x)
        inv = 1.0 / scale.reshape(shape)
        q8 = torch.clamp(torch.round(x.to(torch.float32) * inv) + zero.reshape(shape), 0, GRID_QMAX)
        return truncate_grid_codes(q8, self.skew_shift.reshape(shape)).to(torch.int64)


def make_quantizer(spec: QuantSpec, channel_axis: int = -1, name: str = "") -> Quantizer:
    """A :class:`BitTruncQuantizer` when ``spec`` truncates, else a plain :class:`Quantizer`."""
    if spec.truncated:
        return BitTruncQuantizer(spec, channel_axis, name)
    return Quantizer(spec, channel_axis, name)


# ------------------------------------------------------------------------ configuration
@dataclass
class TruncatedPrecision(PrecisionConfig):
    """A :class:`~model.quant.precision.PrecisionConfig` that applies ``truncation`` to every
    tensor of the roles ``truncate_roles`` (default: all) it resolves to 2 bits (other widths
    and roles are unchanged).

    Every INT2 tensor must then be asymmetric per tensor or per channel with a
    minmax/percentile/qlr range (e.g. set ``roles.weight.symmetric = false``); a spec that
    cannot be truncated raises :class:`~model.quant.spec.QuantConfigError` naming the layer
    and role.
    """

    truncation: str = "none"
    truncate_roles: tuple[str, ...] = ROLES

    def __post_init__(self) -> None:
        if self.truncation not in TRUNCATIONS:
            raise QuantConfigError(
                f"precision.truncation: invalid value {self.truncation!r}; "
                f"allowed: {', '.join(TRUNCATIONS)}"
            )
        self.truncate_roles = tuple(self.truncate_roles)
        bad = [r for r in self.truncate_roles if r not in ROLES]
        if bad:
            raise QuantConfigError(
                f"precision.truncate_roles: unknown role(s) {bad}; allowed: {', '.join(ROLES)}"
            )
        super().__post_init__()

    @classmethod
    def wrap(
        cls, base: PrecisionConfig, truncation: str, roles: tuple[str, ...] = ROLES
    ) -> TruncatedPrecision:
        """``base`` with ``truncation`` applied to its INT2 tensors of the given ``roles``."""
        return cls(
            common=dict(base.common),
            roles={r: dict(v) for r, v in base.roles.items()},
            layers=dict(base.layers),
            nodes=None if base.nodes is None else dict(base.nodes),
            truncation=truncation,
            truncate_roles=tuple(roles),
        )

    def spec(self, layer: int, role: str) -> QuantSpec:
        s = super().spec(layer, role)
        if self.truncation == "none" or s.bits != 2 or role not in self.truncate_roles:
            return s
        try:
            return s.with_(truncation=self.truncation)
        except QuantConfigError as e:
            raise QuantConfigError(f"layer {layer}, role {role!r}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.truncation != "none":
            d["truncation"] = self.truncation
            if set(self.truncate_roles) != set(ROLES):
                d["truncate_roles"] = list(self.truncate_roles)
        return d

    def label(self) -> str:
        base = super().label()
        if self.truncation == "none":
            return base
        return f"{base}-{'bt*' if self.truncation == 'bt_star' else 'bt'}"


#: Precision keys every BT/BT* INT2 model needs besides the truncation itself: BT estimates
#: ranges on its 8-bit grid (learned ranges, QLR, for every role, inputs included) and
#: needs asymmetric codes, so weights are asymmetric per tensor (as in the SMP paper).
BT_BASE_PRECISION: dict[str, Any] = {
    "bits": 2, "range": "qlr",
    "roles": {"input": {"range": "qlr"},
              "weight": {"symmetric": False, "granularity": "tensor"}},
}


def bt_precision(truncation: str, overrides: dict[str, Any] | None = None) -> TruncatedPrecision:
    """An INT2 BT (``"bt"``) or BT* (``"bt_star"``) precision: :data:`BT_BASE_PRECISION`
    with ``overrides`` (a precision dict) merged over it, every INT2 tensor truncated."""
    d: dict[str, Any] = {**BT_BASE_PRECISION, "roles": {
        r: dict(v) for r, v in BT_BASE_PRECISION["roles"].items()}}
    for k, v in (overrides or {}).items():
        if k == "roles":
            for r, rv in dict(v).items():
                d["roles"][r] = {**d["roles"].get(r, {}), **dict(rv)}
        else:
            d[k] = v
    d.pop("truncation", None)
    return TruncatedPrecision.wrap(PrecisionConfig.from_dict(d), truncation)


__all__ = [
    "BT_BASE_PRECISION",
    "bt_precision",
    "CODE_MAX",
    "GRID_BITS",
    "GRID_QMAX",
    "LEVELS",
    "LEVEL_STEP",
    "BTIntegerParams",
    "BitTruncQuantizer",
    "TruncatedPrecision",
    "bt_fake_quant",
    "grid_values",
    "make_quantizer",
    "skewness_shift",
    "truncate_grid_codes",
    "truncate_grid_codes_np",
]
