"""Quantized smoothness-aware message propagation (SMP, Wang et al., CIKM 2023).

One step is a gradient step on ``||x - h||^2 + mu * tr(x^T L~ x)`` (``L~ = I - Â``,
``Â = D^-1/2 (A + I) D^-1/2``) plus a correction that keeps the change between consecutive
steps smooth: the constraint ``tr(Δ^T L~ Δ) + s^2 <= bound * |E|`` (``|E|`` = non-zeros of
``A + I``) is handled by the differential multiplier method, with a Lagrange multiplier
``λ`` and a slack ``s`` updated by gradient ascent, step after step, as in the authors' code.

Per step ``k`` (``z = x_k``, ``h`` the MLP output, ``η`` the step size)::

    Δ      = η (h - z) - η mu (z - Â z)              # = -η/2 * gradient of the objective
    y      = z + Δ + 2 η λ_k Â Δ                     # the constraint's correction
    s_k+1  = s_k + 2 η_s λ_k s_k
    λ_k+1  = λ_k + η_λ (bound * |E| - s_k+1^2 - tr(Δ^T L~ Δ))

With the defaults (``mu = 9``, ``η = 0.1``) the first two terms are APPNP's step with teleport
0.1, ``y = 0.9 Â z + 0.1 h``; ``λ_0 = s_0 = 0.001``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from ..quant.precision import PrecisionConfig
from .graph_ops import GraphOps
from .roles import RoleQuantizers


@dataclass(frozen=True)
class SMPConstants:
    """SMP's constants (defaults: the authors' Cora settings).

    Attributes:
        mu: weight of the smoothness term ``tr(x^T L~ x)`` (the paper's λ1).
        step: gradient step size ``η`` (the code's ``eta_H``).
        eta_lambda: ascent rate of the multiplier (``--lambda_threshold``).
        eta_slack: ascent rate of the slack (``eta_s1``).
        bound: allowed smoothness of the change per edge, ``tr(Δ^T L~ Δ) + s^2 <= bound * |E|``
            (``--alpha_threshold``).
        lambda0: initial multiplier.
        slack0: initial slack.
    """

    mu: float = 9.0
    step: float = 0.1
    eta_lambda: float = 1e-5
    eta_slack: float = 1e-5
    bound: float = 0.1
    lambda0: float = 1e-3
    slack0: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("mu", "step", "eta_lambda", "eta_slack", "bound"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not v >= 0.0:
                raise ValueError(f"smp {name} must be a number >= 0, got {v!r}")
        if self.step <= 0.0:
            raise ValueError(f"smp step must be > 0, got {self.step!r}")
        for name in ("lambda0", "slack0"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or v != v:
                raise ValueError(f"smp {name} must be a number, got {v!r}")


@dataclass
class SMPState:
    """Multiplier and slack carried from one SMP step to the next (0-d float32 tensors)."""

    lam: Tensor
    slack: Tensor

    @classmethod
    def initial(cls, c: SMPConstants, like: Tensor) -> SMPState:
        """``(λ_0, s_0)`` on ``like``'s device."""
        return cls(like.new_tensor(c.lambda0), like.new_tensor(c.slack0))


def laplacian_form(m: Tensor, s: Tensor, g: GraphOps) -> Tensor:
    """``tr(Δ^T L~ Δ)`` for ``Δ = D^1/2 m``, from the messages ``m`` and their neighbour sum
    ``s = (A + I) m``: ``sum_i m_i · (deg_i m_i - s_i)`` (``deg_i`` counts the self-loop)."""
    return (m * (g.deg_hat[:, None] * m - s)).sum()


class QSMPPropagation(nn.Module):
    """One SMP step, every stage quantized with QPropagation's roles.

    Dataflow (``d = deg_hat^-1/2`` per node; ``q`` and ``q_gap`` hold separate quantizers with
    the specs of roles ``message``/``aggregate``(/``update``) of layer ``layer``)::

        m_j  = q.message(d_j z_j)                    S_i  = sum_{j in N(i)+i} m_j
        a_i  = q.aggregate(d_i S_i)                  # Â z
        Δ_i  = η h_i - η (1 + mu) z_i + η mu a_i
        g_j  = q_gap.message(d_j Δ_j)                G_i  = sum_{j in N(i)+i} g_j
        b_i  = q_gap.aggregate(d_i G_i)              # Â Δ
        y_i  = q.update(z_i + Δ_i + 2 η λ b_i)
        T    = sum_i g_i · (deg_i g_i - G_i)         # tr(Δ^T L~ Δ) of the quantized change
        s'   = s + 2 η_s λ s
        λ'   = λ + η_λ (bound * nnz(A + I) - s'^2 - T)

    Both neighbour sums are pure sums of quantized messages (``GraphOps.sum_neighbors``).
    """

    def __init__(
        self, precision: PrecisionConfig, layer: int, constants: SMPConstants | None = None
    ) -> None:
        super().__init__()
        self.c = constants or SMPConstants()
        self.q = RoleQuantizers(precision, layer, roles=("message", "aggregate", "update"))
        self.q_gap = RoleQuantizers(precision, layer, roles=("message", "aggregate"), prefix="gap.")

    def extra_repr(self) -> str:
        c = self.c
        return (f"mu={c.mu}, step={c.step}, eta_lambda={c.eta_lambda}, eta_slack={c.eta_slack}, "
                f"bound={c.bound}")

    def forward(
        self,
        z: Tensor,
        h: Tensor,
        g: GraphOps,
        state: SMPState,
        protect: Tensor | None = None,
    ) -> tuple[Tensor, SMPState]:
        """One step from ``z`` (``[N, F]``) with teleport ``h``; returns ``(y, next state)``."""
        c, q, qg = self.c, self.q, self.q_gap
        d = g.dinv_sqrt[:, None]
        m = q.message(z * d, protect)
        a = q.aggregate(g.sum_neighbors(m) * d, protect)
        delta = c.step * h - (c.step * (1.0 + c.mu)) * z + (c.step * c.mu) * a
        gm = qg.message(delta * d, protect)
        gs = g.sum_neighbors(gm)
        b = qg.aggregate(gs * d, protect)
        y = q.update(z + delta + (2.0 * c.step) * state.lam * b, protect)
        slack = state.slack + (2.0 * c.eta_slack) * state.lam * state.slack
        trace = laplacian_form(gm, gs, g)
        nnz = float(g.indices.numel())
        lam = state.lam + c.eta_lambda * (c.bound * nnz - slack * slack - trace)
        return y, SMPState(lam, slack)


__all__ = ["QSMPPropagation", "SMPConstants", "SMPState", "laplacian_form"]
