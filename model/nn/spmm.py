"""Sparse (CSR) × dense products with cheap backward passes.

PyTorch's autograd for ``torch.sparse.mm`` transposes the sparse matrix on every backward pass
and, when the sparse values need a gradient, builds a dense ``[N, F]`` gradient before masking
it. :class:`CSRPattern` precomputes the transpose once, and :func:`csr_matmul` computes the value
gradient as a sampled product (one dot product per stored entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass
class CSRPattern:
    """Sparsity pattern of an ``[R, C]`` CSR matrix and of its transpose.

    Attributes:
        crow, col: CSR row pointers (``[R+1]``) and column indices (``[nnz]``), int64.
        row: row index of every stored entry (``[nnz]``).
        crow_t, col_t: CSR of the transpose.
        perm_t: ``values_t = values[perm_t]`` orders the values for the transpose.
        shape: ``(R, C)``.
    """

    crow: Tensor
    col: Tensor
    row: Tensor
    crow_t: Tensor
    col_t: Tensor
    perm_t: Tensor
    shape: tuple[int, int]

    @classmethod
    def from_csr(cls, crow: Tensor, col: Tensor, shape: tuple[int, int]) -> CSRPattern:
        crow, col = crow.long(), col.long()
        r, c = shape
        row = torch.repeat_interleave(torch.arange(r, device=crow.device), crow[1:] - crow[:-1])
        perm_t = torch.argsort(col * r + row)
        crow_t = torch.zeros(c + 1, dtype=torch.int64, device=crow.device)
        crow_t[1:] = torch.cumsum(torch.bincount(col, minlength=c), 0)
        return cls(crow, col, row, crow_t, row[perm_t], perm_t, (r, c))

    @classmethod
    def from_tensor(cls, x: Tensor) -> CSRPattern:
        """Pattern of a sparse-CSR tensor."""
        return cls.from_csr(x.crow_indices(), x.col_indices(), (x.shape[0], x.shape[1]))

    @property
    def nnz(self) -> int:
        return int(self.col.numel())

    def tensor(self, values: Tensor) -> Tensor:
        return torch.sparse_csr_tensor(self.crow, self.col, values, self.shape)

    def tensor_t(self, values: Tensor) -> Tensor:
        return torch.sparse_csr_tensor(
            self.crow_t, self.col_t, values[self.perm_t], (self.shape[1], self.shape[0])
        )


class _CSRMatmul(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pattern: CSRPattern, values: Tensor, dense: Tensor) -> Tensor:  # type: ignore[override]
        ctx.pattern = pattern
        ctx.save_for_backward(values, dense)
        return torch.sparse.mm(pattern.tensor(values), dense)

    @staticmethod
    def backward(ctx: Any, grad_out: Tensor) -> tuple[None, Tensor | None, Tensor | None]:  # type: ignore[override]
        values, dense = ctx.saved_tensors
        p: CSRPattern = ctx.pattern
        g_values = g_dense = None
        if ctx.needs_input_grad[1]:
            g_values = torch.einsum(
                "ij,ij->i",
                grad_out.contiguous().index_select(0, p.row),
                dense.contiguous().index_select(0, p.col),
            )
        if ctx.needs_input_grad[2]:
            g_dense = torch.sparse.mm(p.tensor_t(values), grad_out)
        return None, g_values, g_dense


def csr_matmul(pattern: CSRPattern, values: Tensor, dense: Tensor) -> Tensor:
    """``S @ dense`` where ``S`` has ``pattern`` and stored ``values`` (both differentiable)."""
    return _CSRMatmul.apply(pattern, values, dense)  # type: ignore[no-any-return]
