"""Model inputs: sparse node features are kept as CSR and only their stored values are
quantized (zero is always exactly representable, because every zero point lies inside the
code range, so quantizing the implicit zeros would change nothing)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..quant.quantizer import Quantizer
from .spmm import CSRPattern, csr_matmul

#: Inputs at or below this density (fraction of non-zeros) are kept sparse.
SPARSE_DENSITY = 0.1


@dataclass
class SparseFeatures:
    """A sparse ``[N, F]`` feature matrix: a CSR pattern and its stored values."""

    pattern: CSRPattern
    values: Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.pattern.shape

    def to_dense(self) -> Tensor:
        return self.pattern.tensor(self.values).to_dense()


Features = Tensor | SparseFeatures


def as_model_input(x: Tensor) -> Features:
    """``x`` as :class:`SparseFeatures` when it is 2-D and sparse enough, else unchanged."""
    if x.layout != torch.strided or x.dim() != 2 or x.numel() == 0:
        return x
    density = float((x != 0).sum()) / x.numel()
    if density > SPARSE_DENSITY:
        return x
    csr = x.to_sparse_csr()
    return SparseFeatures(CSRPattern.from_tensor(csr), csr.values())


def cached_model_input(data: Any) -> Features:
    """:func:`as_model_input` of ``data.x``, cached on the data object."""
    cached = data.__dict__.get("_qgnn_model_input")
    if cached is None or cached[0] is not data.x:
        cached = (data.x, as_model_input(data.x))
        data.__dict__["_qgnn_model_input"] = cached
    return cached[1]


def quantize_input(
    q: Quantizer, dropout: nn.Dropout, x: Features, protect: Tensor | None
) -> Features:
    """``dropout(q(x))``. Sparse inputs need a per-tensor quantizer (else they are densified)."""
    if isinstance(x, SparseFeatures):
        sparse_ok = q.spec.granularity == "tensor" or (
            q.spec.granularity == "node" and q.spec.range != "lsq"
        )
        if not sparse_ok:
            return dropout(q(x.to_dense(), protect))
        v = q.forward_rows(x.values, x.pattern.row, x.shape[0], protect, num_cols=x.shape[1])
        return SparseFeatures(x.pattern, dropout(v))
    return dropout(q(x, protect))


def matmul(x: Features, w_t: Tensor) -> Tensor:
    """``x @ w_t`` for dense or sparse ``x``."""
    if isinstance(x, SparseFeatures):
        return csr_matmul(x.pattern, x.values, w_t)
    return x @ w_t


def densify(x: Features) -> Tensor:
    """Dense copy of a sparse input (for layers that aggregate their input first)."""
    return x.to_dense() if isinstance(x, SparseFeatures) else x
