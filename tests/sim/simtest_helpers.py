"""Helpers shared by the sim/ tests (imported by name: pytest puts this directory on sys.path)."""

from __future__ import annotations

from typing import Any

import numpy as np
from qgnn.sim.config import ArchConfig, load_arch
from qgnn.sim.workload import Graph, graph_from_arrays


def arch_with(**overrides: Any) -> ArchConfig:
    """The default chip with dotted-key overrides; ``__`` in a keyword stands for ``.``
    (``arch_with(dram__preset="ddr4")``)."""
    return load_arch().with_overrides({k.replace("__", "."): v for k, v in overrides.items()})


def tiny_graph(features: int = 20) -> Graph:
    """N = 4; edges 1->0, 2->0, 0->2, 3->2, 1->2; with self-loops the rows have 3, 1, 4, 1 terms."""
    src = np.array([1, 2, 0, 3, 1])
    dst = np.array([0, 0, 2, 2, 2])
    return graph_from_arrays("tiny", 4, src, dst, num_features=features, num_classes=3)


def random_graph(seed: int, n: int, avg_degree: float, features: int, classes: int = 4) -> Graph:
    """A random directed graph (duplicates and self-loops removed)."""
    rng = np.random.default_rng(seed)
    e = int(n * avg_degree)
    src = rng.integers(0, n, size=e)
    dst = rng.integers(0, n, size=e)
    return graph_from_arrays(f"random{seed}", n, src, dst, num_features=features,
                             num_classes=classes)
