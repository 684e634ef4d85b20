"""Small test graph shared by the layer tests (imported by tests/model/nn/test_*.py)."""

from __future__ import annotations

import torch

N = 13  # node 12 is isolated


def random_graph(seed: int) -> torch.Tensor:
    """Edges among nodes 0..11 with duplicate edges and (duplicate) self-loops."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, N - 1, (2, 40), generator=g)
    extra = torch.tensor([[3, 3, 5, 0], [3, 3, 5, 1]])
    return torch.cat([ei, ei[:, :6], extra], dim=1)
