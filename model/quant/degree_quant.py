"""Degree-Quant protective masking (Tailor et al., ICLR 2021).

During training only, each node is kept in full precision with a probability that rises with
its in-degree, so the high-degree nodes whose aggregates have the widest ranges do not dominate
the quantization error. At evaluation time no node is protected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class DegreeQuantConfig:
    """Protection probabilities.

    Node ``i`` is protected with probability ``p_min + (p_max - p_min) * r_i`` where ``r_i`` in
    ``[0, 1]`` is the rank of its in-degree among all nodes (ties share the highest rank).
    """

    p_min: float = 0.0
    p_max: float = 0.1

    def __post_init__(self) -> None:
        if not (0.0 <= self.p_min <= self.p_max <= 1.0):
            raise ValueError(
                f"Degree-Quant needs 0 <= p_min <= p_max <= 1, got p_min={self.p_min}, "
                f"p_max={self.p_max}"
            )


def protection_probability(in_degree: Tensor, cfg: DegreeQuantConfig) -> Tensor:
    """Per-node protection probability from in-degrees (float32, shape ``[N]``)."""
    deg = in_degree.to(torch.float32)
    n = deg.numel()
    if n == 0:
        return deg
    sorted_deg, _ = torch.sort(deg)
    # rank = fraction of nodes with degree <= d (ties share the highest rank)
    rank = torch.searchsorted(sorted_deg, deg, right=True).to(torch.float32) / n
    return cfg.p_min + (cfg.p_max - cfg.p_min) * rank


def sample_protect_mask(
    prob: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Bernoulli draw of protected nodes (bool ``[N]``)."""
    return torch.rand(prob.shape, generator=generator, device=prob.device) < prob
