"""Uniform fake quantizer with momentum min/max, percentile, QLR and LSQ range estimators.

Quantization (all methods, all granularities)::

    q     = clamp(round(x * (1/s)) + z, qmin, qmax)    # integer code; 1/s in float32,
                                                        # round half to even
    x_hat = (q - z) * s                                 # dequantized value

with a positive float32 step ``s`` and an integer zero point ``z`` in ``[qmin, qmax]`` (so that the
real value 0 is exactly representable). Symmetric specs have ``z = 0`` and signed codes.

Parameters are created on the first forward pass (the *calibration* pass), because activation
shapes (channels, nodes) are only known then; build the optimizer after calibrating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .fixed_point import EXACT_FLOAT32_MULT_BITS, to_multiplier_shift
from .spec import QuantSpec
from .ste import fake_quant, grad_scale, lsq_fake_quant, round_ste

#: Candidate α values for the grid-search range initialisation (fraction of min/max kept).
ALPHA_GRID: tuple[float, ...] = tuple(float(a) for a in np.linspace(0.05, 1.0, 96))
_EPS = 1e-8
_MAX_STAT_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class IntegerQuantParams:
    """A quantizer's parameters in integer form.

    ``scale == scale_mult * 2**-scale_shift`` exactly (float32 scales have 24-bit mantissas).
    Arrays have one entry per group (1 for per-tensor, C for per-channel, N for per-node).

    Attributes:
        bits: code width in bits.
        signed: True for symmetric (two's-complement) codes.
        qmin, qmax: code range.
        zero_point: integer zero points (int64).
        scale: step sizes (float64, exactly the float32 values used in the forward pass).
        scale_mult, scale_shift: ``scale`` as an unsigned integer multiplier and right shift.
        granularity: ``"tensor"``, ``"channel"`` or ``"node"``.
        axis: the tensor axis the groups run along (None for per-tensor).
    """

    bits: int
    signed: bool
    qmin: int
    qmax: int
    zero_point: np.ndarray
    scale: np.ndarray
    scale_mult: np.ndarray
    scale_shift: np.ndarray
    granularity: str
    axis: int | None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Integer codes of ``x`` (same rule as the fake quantizer), as int64."""
        s, z = self._bcast(x.ndim)
        xf = np.asarray(x, dtype=np.float32)
        inv = (np.float32(1.0) / s.astype(np.float32)).astype(np.float32)
        v = np.rint(xf * inv).astype(np.int64) + z
        return np.clip(v, self.qmin, self.qmax)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Exact real values ``(q - z) * M * 2**-shift`` as float64."""
        _, z = self._bcast(q.ndim)
        m = self._expand(self.scale_mult, q.ndim)
        sh = self._expand(self.scale_shift, q.ndim)
        return np.ldexp((np.asarray(q, dtype=np.int64) - z) * m.astype(np.float64), -sh)

    def _expand(self, a: np.ndarray, ndim: int) -> np.ndarray:
        if self.axis is None:
            return a.reshape(())
        shape = [1] * ndim
        shape[self.axis] = -1
        return a.reshape(shape)

    def _bcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        return self._expand(self.scale, ndim), self._expand(self.zero_point, ndim)


class Quantizer(nn.Module):
    """Fake quantizer for one tensor role.

    Args:
        spec: what to do (bits, symmetry, granularity, range method).
        channel_axis: the axis that ``granularity="channel"`` keeps (-1 for activations
            ``[N, F]``, 0 for weights ``[out, in]``).
        name: label used in error messages and traces.
    """

    def __init__(self, spec: QuantSpec, channel_axis: int = -1, name: str = "") -> None:
        super().__init__()
        self.spec = spec
        self.channel_axis = channel_axis
        self.name = name
        self.initialized: Tensor
        self.register_buffer("initialized", torch.tensor(False), persistent=True)
        self.register_buffer("running_lo", None)
        self.register_buffer("running_hi", None)
        self.alpha: nn.Parameter | None
        self.log_step: nn.Parameter | None
        self.offset: nn.Parameter | None
        self.register_parameter("alpha", None)  # QLR: learnable fraction of min/max
        self.register_parameter("log_step", None)  # LSQ: log of the step size
        # LSQ asymmetric: lower end of the range in units of the step (z = round(qmin - offset))
        self.register_parameter("offset", None)

    # ----------------------------------------------------------------------------- helpers
    @property
    def enabled(self) -> bool:
        return self.spec.enabled

    def extra_repr(self) -> str:
        s = self.spec
        if not s.enabled:
            return f"{self.name or 'tensor'}: fp32"
        sym = "sym" if s.symmetric else "asym"
        return f"{self.name or 'tensor'}: int{s.bits} {sym} per-{s.granularity} {s.range}"

    def _axis(self, x: Tensor) -> int | None:
        g = self.spec.granularity
        if g == "tensor":
            return None
        ax = 0 if g == "node" else self.channel_axis
        return ax % x.dim()

    def _groupwise(self, x: Tensor) -> Tensor:
        """``x`` as ``[groups, elements]`` (a view when possible)."""
        ax = self._axis(x)
        if ax is None:
            return x.reshape(1, -1)
        return x.movedim(ax, 0).reshape(x.shape[ax], -1)

    def _shape_for(self, x: Tensor) -> list[int]:
        ax = self._axis(x)
        shape = [1] * x.dim()
        if ax is not None:
            shape[ax] = x.shape[ax]
        return shape

    def _batch_range(self, x: Tensor, zeros: int = 0) -> tuple[Tensor, Tensor]:
        """Per-group (lo, hi) of the current batch, by min/max or percentile. ``zeros`` counts
        implicit zeros that belong to a per-tensor ``x`` (the unstored entries of a sparse
        matrix whose stored values ``x`` holds): they enter the percentile exactly."""
        g = self._groupwise(x.detach())
        if self.spec.range == "percentile" and zeros > 0 and g.shape[0] == 1:
            p = self.spec.percentile / 100.0
            lo, hi = _quantiles_with_zeros(g[0].float(), zeros, (1.0 - p, p))
            lo, hi = lo.reshape(1), hi.reshape(1)
        elif self.spec.range == "percentile":
            p = self.spec.percentile / 100.0
            if g.shape[1] > _MAX_STAT_ELEMENTS:
                idx = torch.randperm(g.shape[1], device=g.device)[:_MAX_STAT_ELEMENTS]
                g = g[:, idx]
            qs = torch.quantile(g.float(), torch.tensor([1.0 - p, p], device=g.device), dim=1)
            lo, hi = qs[0], qs[1]
        else:
            lo, hi = g.amin(dim=1), g.amax(dim=1)
        lo = torch.minimum(lo, torch.zeros_like(lo))
        hi = torch.maximum(hi, torch.zeros_like(hi))
        return lo, hi

    def _scale_zero_from_range(self, lo: Tensor, hi: Tensor) -> tuple[Tensor, Tensor]:
        """Step and zero point (float, pre-rounding) for a real range ``[lo, hi]``."""
        s = self.spec
        if s.symmetric:
            absmax = torch.maximum(lo.abs(), hi.abs())
            scale = absmax / max(s.qmax, 1)
            zero = torch.zeros_like(scale)
        else:
            scale = (hi - lo) / (s.qmax - s.qmin)
            zero = s.qmin - lo / scale.clamp_min(_EPS)
        return scale.clamp_min(_EPS), zero

    def _grid_search_alpha(self, x: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
        """Per-group α in :data:`ALPHA_GRID` minimising the reconstruction MSE of ``x``."""
        g = self._groupwise(x.detach()).float()
        if g.shape[1] > _MAX_STAT_ELEMENTS:
            idx = torch.randperm(g.shape[1], device=g.device)[:_MAX_STAT_ELEMENTS]
            g = g[:, idx]
        best_err = torch.full((g.shape[0],), float("inf"), device=g.device)
        best_alpha = torch.ones(g.shape[0], device=g.device)
        s = self.spec
        for a in ALPHA_GRID:
            scale, zero = self._scale_zero_from_range(lo * a, hi * a)
            z = torch.clamp(torch.round(zero), s.qmin, s.qmax)
            q = torch.clamp(torch.round(g / scale[:, None]) + z[:, None], s.qmin, s.qmax)
            err = ((q - z[:, None]) * scale[:, None] - g).pow(2).mean(dim=1)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_alpha = torch.where(better, torch.full_like(best_alpha, a), best_alpha)
        return best_alpha

    # ------------------------------------------------------------------------ state set-up
    def _initialize(self, x: Tensor, valid: Tensor | None, zeros: int = 0) -> None:
        # Per-node parameters need one entry per row: every row is used (a row's own range is
        # not polluted by the others); shared ranges leave protected rows out.
        xs = x if valid is None or self.spec.granularity == "node" else x[valid]
        if xs.numel() == 0:
            xs = x
        lo, hi = self._batch_range(xs, zeros)
        dev = x.device
        self.running_lo = lo.clone()
        self.running_hi = hi.clone()
        if self.spec.range == "qlr":
            alpha = self._grid_search_alpha(xs, lo, hi)
            self.alpha = nn.Parameter(alpha.to(dev))
        elif self.spec.range == "lsq":
            alpha = self._grid_search_alpha(xs, lo, hi)
            scale, _ = self._scale_zero_from_range(lo * alpha, hi * alpha)
            self.log_step = nn.Parameter(torch.log(scale).to(dev))
            if not self.spec.symmetric:
                self.offset = nn.Parameter((lo * alpha / scale).to(dev))
        self.initialized.fill_(True)

    def _initialize_rows(self, values: Tensor, row: Tensor, lo: Tensor, hi: Tensor) -> None:
        """Per-node set-up from a sparse matrix's stored ``values`` (row ids ``row``) and each
        row's range ``[lo, hi]`` (which includes the implicit zeros). Implicit zeros are exact
        at every α (the zero point is an integer code), so the per-row grid search over the
        stored values alone picks the same α as over the dense row."""
        self.running_lo = lo.clone()
        self.running_hi = hi.clone()
        if self.spec.range == "qlr":
            self.alpha = nn.Parameter(self._grid_search_alpha_rows(values, row, lo, hi))
        self.initialized.fill_(True)

    def _grid_search_alpha_rows(
        self, values: Tensor, row: Tensor, lo: Tensor, hi: Tensor
    ) -> Tensor:
        """Per-row α in :data:`ALPHA_GRID` minimising the reconstruction error of a sparse
        matrix's stored values (the sparse form of :meth:`_grid_search_alpha`)."""
        s = self.spec
        v = values.float()
        best_err = torch.full((lo.shape[0],), float("inf"), device=v.device)
        best_alpha = torch.ones(lo.shape[0], device=v.device)
        for a in ALPHA_GRID:
            scale, zero = self._scale_zero_from_range(lo * a, hi * a)
            z = torch.clamp(torch.round(zero), s.qmin, s.qmax)
            sr, zr = scale[row], z[row]
            q = torch.clamp(torch.round(v / sr) + zr, s.qmin, s.qmax)
            e = ((q - zr) * sr - v).pow(2)
            err = torch.zeros_like(best_err).index_add_(0, row, e)
            better = err < best_err
            best_err = torch.where(better, err, best_err)
            best_alpha = torch.where(better, torch.full_like(best_alpha, a), best_alpha)
        return best_alpha

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Lazily created tensors: create them with the saved shapes before loading.
        for key in ("running_lo", "running_hi"):
            if prefix + key in state_dict and getattr(self, key) is None:
                setattr(self, key, torch.empty_like(state_dict[prefix + key]))
        for key in ("alpha", "log_step", "offset"):
            if prefix + key in state_dict and getattr(self, key) is None:
                setattr(self, key, nn.Parameter(torch.empty_like(state_dict[prefix + key])))
        super()._load_from_state_dict(state_dict, prefix, *args)

    # ----------------------------------------------------------------------- parameters
    def _current_scale_zero(
        self, x: Tensor, update_stats: bool, zeros: int = 0
    ) -> tuple[Tensor, Tensor]:
        """Step ``s`` (float32, >0) and zero point ``z`` (integer-valued float) per group;
        ``zeros`` as in :meth:`_batch_range`."""
        s = self.spec
        node_dynamic = s.granularity == "node" and s.range != "lsq"
        if s.range in ("minmax", "percentile", "qlr"):
            if node_dynamic:
                lo, hi = self._batch_range(x)
            else:
                if update_stats:
                    blo, bhi = self._batch_range(x, zeros)
                    m = s.momentum
                    assert self.running_lo is not None and self.running_hi is not None
                    self.running_lo.mul_(1 - m).add_(blo * m)
                    self.running_hi.mul_(1 - m).add_(bhi * m)
                lo, hi = self.running_lo, self.running_hi
                assert lo is not None and hi is not None
            if s.range == "qlr":
                assert self.alpha is not None
                a = self.alpha if not node_dynamic else self.alpha.mean()
                lo, hi = lo * a, hi * a
            scale, zero = self._scale_zero_from_range(lo, hi)
            zero = torch.clamp(round_ste(zero), s.qmin, s.qmax)
            return scale, zero
        # LSQ: learnable log-step (positive by construction) and lower end in steps
        assert self.log_step is not None
        g = self._lsq_grad_factor(x)
        scale = torch.exp(grad_scale(self.log_step, g))
        if s.symmetric:
            zero = torch.zeros_like(scale)
        else:
            assert self.offset is not None
            lo = grad_scale(self.offset, g)
            zero = torch.clamp(round_ste(s.qmin - lo), s.qmin, s.qmax)
        return scale, zero

    def _lsq_grad_factor(self, x: Tensor, elements: int | None = None) -> float:
        """LSQ's gradient scale ``1 / sqrt(elements per group * Qp)``; ``elements`` is the
        size of the logical tensor when ``x`` holds only a sparse tensor's stored values."""
        assert self.log_step is not None
        n = x.numel() if elements is None else elements
        n_per_group = max(n // max(self.log_step.numel(), 1), 1)
        return 1.0 / math.sqrt(n_per_group * max(self.spec.qmax, 1))

    # --------------------------------------------------------------------------- forward
    def forward(
        self, x: Tensor, protect: Tensor | None = None, *, elements: int | None = None
    ) -> Tensor:
        """Fake-quantize ``x``.

        Args:
            x: tensor to quantize.
            protect: optional bool mask over rows (nodes); protected rows pass through in full
                precision and are left out of range statistics (Degree-Quant). Training only.
            elements: element count of the logical tensor when ``x`` holds the stored values
                of a sparse tensor (per-tensor specs; LSQ's gradient scale uses it).
        """
        if not self.spec.enabled:
            return x
        if protect is not None and not self.training:
            protect = None
        zeros = 0
        if elements is not None and self.spec.granularity == "tensor":
            zeros = max(elements - x.numel(), 0)
        if not bool(self.initialized):
            with torch.no_grad():
                self._initialize(x, None if protect is None else ~protect, zeros)
        ax = self._axis(x)
        if (
            self.spec.granularity == "node"
            and self.spec.range == "lsq"
            and self.log_step is not None
            and self.log_step.numel() != x.shape[0]
        ):
            raise ValueError(
                f"quantizer {self.name!r}: per-node LSQ was calibrated for "
                f"{self.log_step.numel()} nodes but got {x.shape[0]}"
            )
        if ax is not None and self.spec.granularity == "channel" and self.running_lo is not None:
            if self.running_lo.numel() != x.shape[ax]:
                raise ValueError(
                    f"quantizer {self.name!r}: calibrated for {self.running_lo.numel()} channels "
                    f"but got {x.shape[ax]}"
                )
        stats_x = x if protect is None else x[~protect]
        if stats_x.numel() == 0:
            stats_x = x
        shape = self._shape_for(x)
        if self.spec.range == "lsq" and torch.is_grad_enabled():
            assert self.log_step is not None
            y = lsq_fake_quant(
                x, self.log_step, self.offset, shape, self.spec.qmin, self.spec.qmax,
                self._lsq_grad_factor(x, elements),
            )
        elif self.spec.range == "lsq":  # no autograd: plain arithmetic
            scale, zero = self._current_scale_zero(x, False)
            y = fake_quant(
                x, scale.reshape(shape).to(torch.float32), zero.reshape(shape).to(torch.float32),
                self.spec.qmin, self.spec.qmax,
            )
        else:
            update = self.training
            if self.spec.granularity == "node":
                scale, zero = self._current_scale_zero(x, update)
            else:
                scale, zero = self._current_scale_zero(stats_x, update, zeros)
            y = fake_quant(
                x, scale.reshape(shape).to(torch.float32), zero.reshape(shape).to(torch.float32),
                self.spec.qmin, self.spec.qmax,
            )
        if protect is not None:
            y = torch.where(protect.reshape(-1, *([1] * (x.dim() - 1))), x, y)
        return y

    def forward_rows(
        self,
        values: Tensor,
        row: Tensor,
        num_rows: int,
        protect: Tensor | None = None,
        num_cols: int | None = None,
    ) -> Tensor:
        """Fake-quantize the stored values of a sparse matrix whose row ids are ``row``.

        Per-tensor specs treat ``values`` as the tensor (implicit zeros are exact). Per-node
        dynamic ranges (minmax/qlr with ``granularity="node"``) use each row's min/max over its
        stored values and 0; a per-node QLR α is initialised per row, as on the dense path.
        Pass ``num_cols`` to get the dense path's results for the two statistics that count
        the implicit zeros: percentiles (per tensor and per row) and LSQ's gradient scale
        (``num_rows * num_cols`` elements). Without it, percentile ranges ignore the implicit
        zeros (per node: the row's min/max) and LSQ counts the stored values only.
        ``protect`` is per row.
        """
        vp = None if protect is None else protect[row]
        if self.spec.granularity == "tensor" or not self.spec.enabled:
            elements = None if num_cols is None else num_rows * num_cols
            return self(values, vp, elements=elements)
        if self.spec.granularity != "node" or self.spec.range == "lsq":
            raise ValueError(
                f"quantizer {self.name!r}: sparse inputs support per-tensor or per-node "
                f"dynamic ranges, not {self.spec.granularity}/{self.spec.range}"
            )
        with torch.no_grad():
            v = values.detach()
            if self.spec.range == "percentile" and num_cols is not None:
                p = self.spec.percentile / 100.0
                lo, hi = _row_quantiles_with_zeros(v, row, num_rows, num_cols, (1.0 - p, p))
                lo = torch.minimum(lo, torch.zeros_like(lo))
                hi = torch.maximum(hi, torch.zeros_like(hi))
            else:
                zeros = torch.zeros(num_rows, dtype=v.dtype, device=v.device)
                lo = zeros.scatter_reduce(0, row, v, "amin", include_self=True)
                hi = zeros.scatter_reduce(0, row, v, "amax", include_self=True)
            if not bool(self.initialized):
                self._initialize_rows(v, row, lo, hi)
        if self.spec.range == "qlr":
            assert self.alpha is not None
            a = self.alpha.mean()
            lo, hi = lo * a, hi * a
        scale, zero = self._scale_zero_from_range(lo, hi)
        zero = torch.clamp(round_ste(zero), self.spec.qmin, self.spec.qmax)
        y = fake_quant(values, scale[row].to(torch.float32), zero[row].to(torch.float32),
                       self.spec.qmin, self.spec.qmax)
        if vp is not None and self.training:
            y = torch.where(vp, values, y)
        return y

    # ---------------------------------------------------------------------- integer form
    @torch.no_grad()
    def scale_zero(self, x: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Current step (float32) and integer zero point per group, as used in eval mode.

        Per-node dynamic ranges depend on the data: pass ``x`` for them.
        """
        if not self.spec.enabled:
            raise ValueError(f"quantizer {self.name!r} is FP32: it has no integer form")
        if not bool(self.initialized):
            raise RuntimeError(
                f"quantizer {self.name!r} is not calibrated: run a forward pass first"
            )
        if self.spec.granularity == "node" and self.spec.range != "lsq":
            if x is None:
                raise ValueError(
                    f"quantizer {self.name!r} uses per-node dynamic ranges: pass the tensor"
                )
            scale, zero = self._current_scale_zero(x, update_stats=False)
        else:
            dummy = x if x is not None else torch.zeros(1)
            scale, zero = self._current_scale_zero(dummy, update_stats=False)
        return scale.to(torch.float32), torch.round(zero).to(torch.int64)

    @torch.no_grad()
    def integer_params(self, x: Tensor | None = None) -> IntegerQuantParams:
        """The parameters in integer form: zero point, and the step as multiplier + shift."""
        scale, zero = self.scale_zero(x)
        sc = scale.cpu().numpy().astype(np.float32).astype(np.float64).reshape(-1)
        m, sh = to_multiplier_shift(sc, mult_bits=EXACT_FLOAT32_MULT_BITS)
        g = self.spec.granularity
        axis: int | None
        if g == "tensor":
            axis = None
        elif g == "node":
            axis = 0
        else:
            axis = self.channel_axis
        return IntegerQuantParams(
            bits=self.spec.bits,
            signed=self.spec.symmetric,
            qmin=self.spec.qmin,
            qmax=self.spec.qmax,
            zero_point=zero.cpu().numpy().reshape(-1),
            scale=sc,
            scale_mult=m,
            scale_shift=sh,
            granularity=g,
            axis=axis,
        )

    @torch.no_grad()
    def quantize_codes(self, x: Tensor) -> Tensor:
        """Integer codes (int64) of ``x`` with the current (eval-mode) parameters."""
        scale, zero = self.scale_zero(x)
        shape = self._shape_for(x)
        inv = 1.0 / scale.reshape(shape)
        v = torch.round(x.to(torch.float32) * inv) + zero.reshape(shape)
        return torch.clamp(v, self.spec.qmin, self.spec.qmax).to(torch.int64)


def _sorted_with_zeros(v_sorted: Tensor, n_neg: Tensor, zeros: Tensor, k: Tensor) -> Tensor:
    """Element ``k`` of the sorted sequence made of sorted values ``v_sorted`` (negatives
    first, ``n_neg`` of them) and ``zeros`` extra zeros inserted after the negatives.
    Works elementwise on broadcastable index tensors; ``v_sorted`` is indexed by
    ``k`` (before the zeros) or ``k - zeros`` (after)."""
    before = k < n_neg
    after = k >= n_neg + zeros
    idx = torch.where(after, k - zeros, k).clamp(0, max(v_sorted.numel() - 1, 0))
    val = v_sorted[idx] if v_sorted.numel() else torch.zeros_like(k, dtype=torch.float32)
    return torch.where(before | after, val, torch.zeros_like(val))


def _quantiles_with_zeros(v: Tensor, zeros: int, qs: tuple[float, ...]) -> tuple[Tensor, ...]:
    """``torch.quantile`` (linear interpolation) of ``v`` with ``zeros`` extra zeros, without
    building the dense tensor."""
    vs = torch.sort(v).values
    total = vs.numel() + zeros
    n_neg = (vs < 0).sum()
    z = torch.tensor(zeros)
    out = []
    for q in qs:
        pos = torch.tensor(q * (total - 1), dtype=torch.float64)
        k0 = torch.floor(pos).long()
        k1 = torch.ceil(pos).long()
        a0 = _sorted_with_zeros(vs, n_neg, z, k0).double()
        a1 = _sorted_with_zeros(vs, n_neg, z, k1).double()
        out.append((a0 + (a1 - a0) * (pos - k0.double())).to(v.dtype))
    return tuple(out)


def _row_quantiles_with_zeros(
    v: Tensor, row: Tensor, num_rows: int, num_cols: int, qs: tuple[float, ...]
) -> tuple[Tensor, ...]:
    """Per-row ``torch.quantile`` of a sparse ``[num_rows, num_cols]`` matrix (stored values
    ``v`` in rows ``row``), counting its implicit zeros."""
    perm = torch.argsort(v)
    perm = perm[torch.argsort(row[perm], stable=True)]  # by row, then by value
    vs, rs = v[perm].float(), row[perm]
    count = torch.bincount(rs, minlength=num_rows)
    start = torch.cumsum(count, 0) - count
    n_neg = torch.zeros(num_rows, dtype=torch.long).index_add_(0, rs, (vs < 0).long())
    zeros = num_cols - count
    out = []
    for q in qs:
        pos = torch.tensor(q * (num_cols - 1), dtype=torch.float64)
        k0, k1 = int(torch.floor(pos)), int(torch.ceil(pos))
        vals = []
        for k in (k0, k1):
            kk = torch.full((num_rows,), k, dtype=torch.long)
            before = kk < n_neg
            after = kk >= n_neg + zeros
            local = torch.where(after, kk - zeros, kk).clamp(min=0)
            local = torch.minimum(local, (count - 1).clamp(min=0))
            gi = (start + local).clamp(0, max(vs.numel() - 1, 0))
            val = vs[gi] if vs.numel() else torch.zeros(num_rows)
            vals.append(torch.where(before | after, val, torch.zeros_like(val)).double())
        out.append((vals[0] + (vals[1] - vals[0]) * (float(pos) - k0)).to(v.dtype))
    return tuple(out)
