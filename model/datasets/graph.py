"""Shared graph helpers: canonical edge order, random masks, cheap validation."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops

from .errors import DatasetError

__all__ = [
    "TRAIN_FRACTION",
    "VAL_FRACTION",
    "canonical_edge_index",
    "make_data",
    "random_split_masks",
    "validate_graph",
]

#: Fraction of nodes in the training mask of synthetic datasets.
TRAIN_FRACTION = 0.6
#: Fraction of nodes in the validation mask of synthetic datasets (rest: test).
VAL_FRACTION = 0.2


def canonical_edge_index(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Drop self-loops and duplicates; sort by (target, source).

    Args:
        edge_index: ``[2, E]`` integer tensor, row 0 = source, row 1 = target.
        num_nodes: number of nodes ``N``.

    Returns:
        A contiguous int64 ``[2, E']`` tensor with ``E' <= E``.
    """
    ei = edge_index.to(torch.long)
    ei, _ = remove_self_loops(ei)
    ei = coalesce(ei, num_nodes=num_nodes, sort_by_row=False)
    return ei.contiguous()


def random_split_masks(
    num_nodes: int, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random disjoint 60/20/20 train/val/test node masks.

    ``floor(0.6 N)`` training nodes, ``floor(0.2 N)`` validation nodes and the
    remaining nodes for test, chosen by one permutation drawn from ``rng``.
    """
    perm = rng.permutation(num_nodes)
    n_train = int(np.floor(TRAIN_FRACTION * num_nodes))
    n_val = int(np.floor(VAL_FRACTION * num_nodes))
    masks = []
    for lo, hi in ((0, n_train), (n_train, n_train + n_val), (n_train + n_val, num_nodes)):
        m = np.zeros(num_nodes, dtype=bool)
        m[perm[lo:hi]] = True
        masks.append(torch.from_numpy(m))
    return masks[0], masks[1], masks[2]


def make_data(
    *,
    x: torch.Tensor,
    y: torch.Tensor,
    edge_index: torch.Tensor,
    masks: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    name: str,
    num_classes: int,
    split: int,
) -> Data:
    """Assemble the canonical :class:`~torch_geometric.data.Data` object."""
    data = Data(
        x=x,
        y=y,
        edge_index=edge_index,
        train_mask=masks[0],
        val_mask=masks[1],
        test_mask=masks[2],
    )
    data.name = name
    data.num_classes = int(num_classes)
    data.split = int(split)
    return data


def validate_graph(data: Data, *, check_order: bool = True) -> None:
    """Cheap O(N·F + E) consistency checks; raises :class:`DatasetError`.

    Checks dtypes and shapes of ``x`` (float32 ``[N, F]``), ``y`` (int64
    ``[N]``), ``edge_index`` (int64 ``[2, E]`` with ids in ``[0, N)``, no
    self-loops and, if ``check_order``, strictly increasing (target, source)
    order, i.e. no duplicates), the three masks (bool ``[N]``, pairwise
    disjoint), finite features and labels in ``[0, num_classes)``.
    """
    name = getattr(data, "name", "?")

    def fail(msg: str) -> DatasetError:
        return DatasetError(f"dataset {name!r} failed validation: {msg}")

    x, y, ei = data.x, data.y, data.edge_index
    if x is None or x.dim() != 2 or x.dtype != torch.float32:
        raise fail("x must be a float32 [N, F] tensor")
    n = x.size(0)
    if y is None or y.dtype != torch.long or tuple(y.shape) != (n,):
        raise fail(f"y must be an int64 [{n}] tensor, got {None if y is None else tuple(y.shape)}")
    if ei is None or ei.dtype != torch.long or ei.dim() != 2 or ei.size(0) != 2:
        raise fail("edge_index must be an int64 [2, E] tensor")
    if ei.numel():
        if int(ei.min()) < 0 or int(ei.max()) >= n:
            raise fail(f"edge_index has node ids outside [0, {n})")
        if bool((ei[0] == ei[1]).any()):
            raise fail("edge_index contains self-loops")
        if check_order and ei.size(1) > 1:
            key = ei[1] * n + ei[0]
            if not bool((key[1:] > key[:-1]).all()):
                raise fail("edge_index is not sorted by (target, source) or has duplicates")
    masks = []
    for attr in ("train_mask", "val_mask", "test_mask"):
        m = getattr(data, attr, None)
        if m is None or m.dtype != torch.bool or tuple(m.shape) != (n,):
            raise fail(f"{attr} must be a bool [{n}] tensor")
        masks.append(m)
    overlap = (masks[0] & masks[1]) | (masks[0] & masks[2]) | (masks[1] & masks[2])
    if bool(overlap.any()):
        raise fail("train/val/test masks overlap")
    k = int(data.num_classes)
    if n and (int(y.min()) < 0 or int(y.max()) >= k):
        raise fail(f"labels outside [0, {k})")
    if not bool(torch.isfinite(x).all()):
        raise fail("x contains NaN or inf")
