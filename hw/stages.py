"""Aggregation stages built from real graphs with random codes (for RTL tests and figures).

:func:`graph_stage` makes the stage a GCN layer's aggregation has on a graph: CSR rows are
destination nodes, self-loops added, sources in increasing order, ``features`` random codes per
node and per-node requantization factors near ``1 / n_i`` (so outputs spread over the code range
instead of saturating). :func:`cora_stage` is that stage on Cora: 2708 rows, 13264 terms
(10556 edges + 2708 self-loops), the shape of a Cora GCN layer-0 aggregation with 64 hidden
features.
"""

from __future__ import annotations

import numpy as np
from qgnn.model.golden.stage import AggregationStage
from qgnn.model.integer import rules


def graph_stage(edge_index: np.ndarray, num_nodes: int, bits: int, features: int = 64,
                word_width: int = 64, seed: int = 0, self_loops: bool = True,
                name: str = "graph.aggregate") -> AggregationStage:
    """Stage on the graph ``edge_index`` (``[2, E]``: source row 0, destination row 1)."""
    ei = np.asarray(edge_index, dtype=np.int64)
    if ei.ndim != 2 or ei.shape[0] != 2:
        raise ValueError(f"edge_index must have shape [2, E], got {ei.shape}")
    src, dst = ei[0], ei[1]
    if self_loops:
        loops = np.arange(num_nodes, dtype=np.int64)
        keep = src != dst
        src = np.concatenate([src[keep], loops])
        dst = np.concatenate([dst[keep], loops])
    order = np.lexsort((src, dst))
    src, dst = src[order], dst[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(dst, minlength=num_nodes))])
    rng = np.random.default_rng(seed)
    qmax = (1 << bits) - 1
    codes = rng.integers(0, qmax + 1, size=(num_nodes, features))
    z_in = int(rng.integers(0, qmax + 1))
    z_out = int(rng.integers(0, qmax + 1))
    n = np.maximum(np.diff(indptr), 1)
    factor = rng.uniform(0.5, 1.5, size=num_nodes) / n
    m, s = rules.multiplier_shift(factor)
    return AggregationStage(
        name=name, indptr=indptr, indices=src, codes=codes, bits=bits, out_bits=bits,
        zero_point_in=z_in, zero_point_out=z_out, multiplier=m, shift=s,
        word_width=word_width, meta={"graph": name, "features": features, "seed": seed,
                                     "codes": "random"},
    )


def cora_stage(bits: int, features: int = 64, word_width: int = 64, seed: int = 0,
               root: str | None = None) -> AggregationStage:
    """The Cora-sized stage (2708 rows, 13264 terms) with random ``bits``-bit codes."""
    from qgnn.model.datasets import load_dataset

    data = load_dataset("cora", root=root)
    return graph_stage(data.edge_index.numpy(), int(data.num_nodes), bits, features,
                       word_width, seed, name=f"cora.int{bits}.aggregate")


__all__ = ["cora_stage", "graph_stage"]
