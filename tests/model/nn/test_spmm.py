"""Tests for model.nn.spmm (CSRPattern and csr_matmul)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.nn.spmm import CSRPattern, csr_matmul


def _random_sparse(r: int, c: int, density: float, seed: int, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(r, c, generator=g) < density
    dense = torch.randn(r, c, generator=g, dtype=dtype) * mask
    return dense, dense.to_sparse_csr()


def test_pattern_hand_made() -> None:
    # [[0, a, 0], [b, 0, c]]  (2 x 3)
    crow = torch.tensor([0, 1, 3])
    col = torch.tensor([1, 0, 2])
    p = CSRPattern.from_csr(crow, col, (2, 3))
    assert p.nnz == 3
    assert p.row.tolist() == [0, 1, 1]
    # transpose [[0, b], [a, 0], [0, c]]: rows 0..2 hold columns [1], [0], [1]
    assert p.crow_t.tolist() == [0, 1, 2, 3]
    assert p.col_t.tolist() == [1, 0, 1]
    vals = torch.tensor([10.0, 20.0, 30.0])
    assert vals[p.perm_t].tolist() == [20.0, 10.0, 30.0]
    assert p.tensor(vals).to_dense().tolist() == [[0.0, 10.0, 0.0], [20.0, 0.0, 30.0]]
    assert p.tensor_t(vals).to_dense().tolist() == [[0.0, 20.0], [10.0, 0.0], [0.0, 30.0]]


@settings(max_examples=25, deadline=None)
@given(
    r=st.integers(1, 12), c=st.integers(1, 12), f=st.integers(1, 5),
    density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31 - 1),
)
def test_forward_and_gradients_equal_dense(r, c, f, density, seed) -> None:
    dense_s, csr = _random_sparse(r, c, density, seed)
    p = CSRPattern.from_tensor(csr)
    torch.testing.assert_close(p.tensor_t(csr.values()).to_dense(), dense_s.t())
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(c, f, generator=g)
    up = torch.randn(r, f, generator=g)

    values = csr.values().clone().requires_grad_()
    xs = x.clone().requires_grad_()
    out = csr_matmul(p, values, xs)
    torch.testing.assert_close(out, dense_s @ x, rtol=1e-5, atol=1e-5)
    (out * up).sum().backward()

    sd = dense_s.clone().requires_grad_()
    xd = x.clone().requires_grad_()
    ((sd @ xd) * up).sum().backward()
    torch.testing.assert_close(xs.grad, xd.grad, rtol=1e-5, atol=1e-5)
    # the value gradient is the dense gradient sampled at the stored entries
    rows = p.row
    torch.testing.assert_close(values.grad, sd.grad[rows, p.col], rtol=1e-5, atol=1e-5)


def test_gradcheck_float64() -> None:
    _, csr = _random_sparse(5, 4, 0.5, seed=3, dtype=torch.float64)
    p = CSRPattern.from_tensor(csr)
    assert p.nnz > 0
    values = csr.values().clone().requires_grad_()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, d: csr_matmul(p, v, d), (values, x))


def test_empty_rows_and_columns() -> None:
    # row 1 and column 2 are empty
    crow = torch.tensor([0, 2, 2, 3])
    col = torch.tensor([0, 1, 0])
    p = CSRPattern.from_csr(crow, col, (3, 3))
    vals = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = torch.tensor([[1.0], [10.0], [100.0]], requires_grad=True)
    out = csr_matmul(p, vals, x)
    assert out.tolist() == [[21.0], [0.0], [3.0]]
    out.sum().backward()
    # d/dvalues = x[col]; d/dx = column sums of S: [1 + 3, 2, 0]
    assert vals.grad.tolist() == [1.0, 10.0, 1.0]
    assert x.grad.tolist() == [[4.0], [2.0], [0.0]]


def test_only_requested_gradients() -> None:
    _, csr = _random_sparse(4, 4, 0.6, seed=1)
    p = CSRPattern.from_tensor(csr)
    x = torch.randn(4, 2, requires_grad=True)
    csr_matmul(p, csr.values(), x).sum().backward()
    assert x.grad is not None
    v = csr.values().clone().requires_grad_()
    csr_matmul(p, v, torch.randn(4, 2)).sum().backward()
    assert v.grad is not None and v.grad.shape == v.shape
