"""Shared fixtures for these tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_intra_op_thread() -> Iterator[None]:
    """Run on one intra-op thread: the tensors here are tiny, and on a loaded machine
    OpenMP's thread hand-off makes every element-wise op cost milliseconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
