"""Straight-through estimators used by the fake quantizers."""

from __future__ import annotations

import torch
from torch import Tensor


def round_ste(x: Tensor) -> Tensor:
    """Round half to even in the forward pass; identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def grad_scale(x: Tensor, scale: float) -> Tensor:
    """Identity in the forward pass; multiplies the gradient by ``scale`` (LSQ's g)."""
    y = x * scale
    return x.detach() + (y - y.detach())  # forward value is exactly x


def clipped_ste_fake_quant(
    x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int
) -> Tensor:
    """Reference fake quantizer: ``(clamp(round(x * (1/s)) + z, qmin, qmax) - z) * s``.

    Gradients (clipped straight-through estimator):

    * ``d/dx = 1`` where ``qmin <= round(x/s) + z <= qmax`` (inside the range), else 0;
    * ``d/ds = round(x/s) - x/s`` inside the range, ``qmin - z`` or ``qmax - z`` when clipped
      (LSQ's step-size gradient);
    * ``z`` receives gradient only through its own straight-through rounding.
    """
    v = round_ste(x * torch.reciprocal(scale)) + zero_point
    q = torch.clamp(v, qmin, qmax)
    return (q - zero_point) * scale


def _reduce_to(g: Tensor, shape: torch.Size) -> Tensor:
    """Sum a broadcast gradient back to ``shape`` (which may have fewer dimensions than ``g``,
    as in broadcasting: missing leading axes are summed away)."""
    if g.shape == shape:
        return g
    lead = g.dim() - len(shape)
    if lead > 0:
        g = g.sum(dim=tuple(range(lead)))
    dims = [i for i, (a, b) in enumerate(zip(g.shape, shape, strict=True)) if b == 1 and a != 1]
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g.reshape(shape)


def _sum_to(t: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``t`` over the axes where ``shape`` is 1 (a broadcast parameter's gradient)."""
    if len(shape) == 0 or all(d == 1 for d in shape):
        return t.sum().reshape(shape)
    return _reduce_to(t, shape)


def _dot_to(a: Tensor, b: Tensor, shape: torch.Size) -> Tensor:
    """``sum(a * b)`` reduced to ``shape`` (one fused pass for a per-tensor parameter)."""
    if len(shape) == 0 or all(d == 1 for d in shape):
        return torch.dot(a.reshape(-1), b.reshape(-1)).reshape(shape)
    return _reduce_to(a * b, shape)


def _clamp_codes(r: Tensor, z: Tensor, qmin: int, qmax: int) -> Tensor:
    """``clamp(r, qmin - z, qmax - z)`` (a new tensor), fast for scalar zero points."""
    if z.numel() == 1:
        zf = float(z)
        return r.clamp(qmin - zf, qmax - zf)
    return (r + z).clamp_(qmin, qmax).sub_(z)


def _fq_forward(x: Tensor, s: Tensor, z: Tensor, qmin: int, qmax: int) -> tuple[Tensor, ...]:
    """``x/s``, ``round(x/s)``, the clamped code minus zero point, and the output."""
    xs = x * torch.reciprocal(s)
    r = torch.round(xs)
    qz = _clamp_codes(r, z, qmin, qmax)
    return xs, r, qz, qz * s


def _fq_backward(
    g: Tensor, xs: Tensor, r: Tensor, qz: Tensor, s: Tensor, z_shape: torch.Size | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients w.r.t. ``x``, ``s`` and ``z`` (see :class:`_FakeQuant`); ``z_shape`` is the
    zero point's shape when it differs from the step's."""
    inside = (r - qz).abs_().clamp_(max=1.0).neg_().add_(1.0)  # 1 inside the range, 0 clipped
    gx = g * inside
    gs = _dot_to(g, qz, s.shape) - _dot_to(gx, xs, s.shape)
    if z_shape is None or z_shape == s.shape:
        gz = (_sum_to(gx, s.shape) - _sum_to(g, s.shape)) * s
    else:  # z shared differently from s: reduce the per-element terms to z's shape
        gz = _sum_to((gx - g) * s, z_shape)
    return gx, gs, gz


class _FakeQuant(torch.autograd.Function):
    """Fused :func:`clipped_ste_fake_quant` with the same gradients and fewer passes.

    With ``r = round(x/s)`` and ``qz = clamp(r, qmin - z, qmax - z)`` (the code minus the zero
    point), ``inside`` is ``qz == r`` and::

        dL/dx = g * inside
        dL/ds = sum(g * qz) - sum(g * inside * x/s)
        dL/dz = -s * (sum(g) - sum(g * inside))
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        scale: Tensor,
        zero: Tensor,
        qmin: int,
        qmax: int,
    ) -> Tensor:
        xs, r, qz, y = _fq_forward(x, scale, zero, qmin, qmax)
        ctx.save_for_backward(xs, r, qz, scale)
        ctx.z_shape = zero.shape  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, g: Tensor
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None, None, None]:
        xs, r, qz, scale = ctx.saved_tensors  # type: ignore[attr-defined]
        gx, gs, gz = _fq_backward(g, xs, r, qz, scale, ctx.z_shape)  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        return (
            gx if needs[0] else None,
            gs if needs[1] else None,
            gz if needs[2] else None,
            None,
            None,
        )


def fake_quant(x: Tensor, scale: Tensor, zero_point: Tensor, qmin: int, qmax: int) -> Tensor:
    """Fake-quantize ``x``: ``(clamp(round(x * (1/s)) + z, qmin, qmax) - z) * s``.

    ``scale`` and ``zero_point`` broadcast against ``x``; ``1/s`` is computed in the input's
    dtype (float32) and rounding is half to even. Values and gradients equal
    :func:`clipped_ste_fake_quant` (up to the reciprocal's rounding); a single fused
    autograd node, and no autograd state at all under ``torch.no_grad()``.
    """
    if not torch.is_grad_enabled() or not (
        x.requires_grad or scale.requires_grad or zero_point.requires_grad
    ):
        r = torch.round(x * torch.reciprocal(scale))
        return _clamp_codes(r, zero_point, qmin, qmax).mul_(scale)
    return _FakeQuant.apply(x, scale, zero_point, qmin, qmax)  # type: ignore[no-any-return]


class _LSQFakeQuant(torch.autograd.Function):
    """LSQ/LSQ+ fake quantizer fused with its parameterisation.

    Parameters: ``log_step`` (so ``s = exp(log_step) > 0``) and, for asymmetric codes, the
    lower end of the range in units of the step, ``offset`` (the range is
    ``[offset * s, (offset + qmax - qmin) * s]`` and ``z = clamp(round(qmin - offset), qmin,
    qmax)``). Both parameters are scale-free, so one learning rate suits every tensor whatever
    its magnitude; an offset in real units moves by the optimiser's step (Adam: about ``lr``)
    per update, which on small activations (row-normalised features, early training) is
    many quantization steps and can push the whole tensor outside the range.
    Backward applies the chain rule of :func:`clipped_ste_fake_quant` through that
    parameterisation (straight-through rounding of ``z``, zero gradient where ``z`` is
    clamped) and multiplies the parameter gradients by LSQ's ``grad_factor``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        x: Tensor,
        log_step: Tensor,
        offset: Tensor | None,
        shape: list[int],
        qmin: int,
        qmax: int,
        grad_factor: float,
    ) -> Tensor:
        s = torch.exp(log_step).reshape(shape)
        if offset is None:
            zr = torch.zeros_like(s)
            z = zr
        else:
            zr = qmin - offset.reshape(shape)
            z = torch.clamp(torch.round(zr), qmin, qmax)
        xs, r, qz, y = _fq_forward(x, s, z, qmin, qmax)
        ctx.save_for_backward(xs, r, qz, s, zr)
        ctx.meta = (qmin, qmax, grad_factor, offset is not None, log_step.shape)  # type: ignore[attr-defined]
        return y

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, g: Tensor
    ) -> tuple[Tensor | None, ...]:
        xs, r, qz, s, zr = ctx.saved_tensors  # type: ignore[attr-defined]
        qmin, qmax, gf, has_offset, pshape = ctx.meta  # type: ignore[attr-defined]
        gx, g_s, g_z = _fq_backward(g, xs, r, qz, s)
        g_log = g_off = None
        if has_offset:
            # z = clamp(round(zr)): straight-through round, zero gradient where clamped
            zround = torch.round(zr)
            g_zr = g_z * ((zround >= qmin) & (zround <= qmax))
            # zr = qmin - offset
            g_off = (-g_zr).reshape(pshape) * gf
        g_log = (g_s * s).reshape(pshape) * gf
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        return (
            gx if needs[0] else None,
            g_log if needs[1] else None,
            g_off if (has_offset and needs[2]) else None,
            None,
            None,
            None,
            None,
        )


def lsq_fake_quant(
    x: Tensor,
    log_step: Tensor,
    offset: Tensor | None,
    shape: list[int],
    qmin: int,
    qmax: int,
    grad_factor: float,
) -> Tensor:
    """Fake-quantize with LSQ parameters (see :class:`_LSQFakeQuant`); ``shape`` broadcasts the
    per-group parameters against ``x``."""
    return _LSQFakeQuant.apply(x, log_step, offset, shape, qmin, qmax, grad_factor)  # type: ignore[no-any-return]
