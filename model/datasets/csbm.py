"""Contextual stochastic block model (CSBM) generator.

Name: ``csbm[:key=value,...]``, e.g. ``csbm:n=2000,classes=5,homophily=0.8``.
Parameters (all optional):

- ``n`` (int, >= 2, default 2000): number of nodes.
- ``classes`` (int in [2, 1000], <= n, default 5): planted classes; labels are
  balanced (class sizes differ by at most one) and randomly assigned.
- ``homophily`` (float in [0, 1], default 0.8): edge homophily, the fraction
  of (undirected) edges whose endpoints share a class.  Exact up to rounding:
  ``round(homophily * m)`` of the ``m`` undirected edges are intra-class.
- ``signal`` (float >= 0, default 1.0): Euclidean distance between any two
  class means, in units of the per-feature noise standard deviation (noise is
  N(0, 1) per feature).  Exact when ``classes <= features`` (means lie on
  orthogonal directions); otherwise means are random unit directions and
  the root-mean-square distance equals ``signal``.
- ``features`` (int in [1, 100000], default 64): feature dimension ``F``.
- ``degree`` (float > 0, default 10): average node degree counted in directed
  edges, i.e. ``m = round(n * degree / 2)`` distinct undirected edges, each
  stored in both directions (``E = 2m``).  Uniform random pairs within / across
  classes; no self-loops, no multi-edges.

Masks: one random permutation gives disjoint 60/20/20 train/val/test masks
(``floor(0.6 n)`` / ``floor(0.2 n)`` / rest); ``split`` selects an independent
mask draw.  Everything is a deterministic function of ``(seed, parameters)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from .errors import DatasetError
from .graph import make_data, random_split_masks, validate_graph
from .params import Param, Value, canonical_name, get_float, get_int

__all__ = ["CSBM_PARAMS", "make_csbm"]

CSBM_PARAMS: tuple[Param, ...] = (
    Param("n", int, 2000, 2, 10**8, doc="number of nodes"),
    Param("classes", int, 5, 2, 1000, doc="number of planted classes (balanced)"),
    Param("homophily", float, 0.8, 0.0, 1.0, doc="fraction of edges inside a class"),
    Param("signal", float, 1.0, 0.0, None,
          doc="distance between class means in noise standard deviations"),
    Param("features", int, 64, 1, 100_000, doc="feature dimension"),
    Param("degree", float, 10.0, 0.0, None, lo_open=True,
          doc="average degree in directed edges per node (m = round(n*degree/2) undirected)"),
)

_STREAM_LABELS, _STREAM_EDGES, _STREAM_FEATURES, _STREAM_MASKS = 11, 12, 13, 14
_MAX_ROUNDS = 200
_DENSE_MAX_NODES = 8192  # enumerate all pairs (<= 33.5M) for dense requests


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def _all_pairs(y: np.ndarray, same_class: bool) -> np.ndarray:
    """Every undirected pair (``lo * n + hi``, sorted) inside / across classes."""
    n = y.size
    lo, hi = np.triu_indices(n, 1)
    keep = (y[lo] == y[hi]) if same_class else (y[lo] != y[hi])
    return lo[keep].astype(np.int64) * n + hi[keep]


def _sample_pairs(
    rng: np.random.Generator,
    count: int,
    capacity: int,
    y: np.ndarray,
    order: np.ndarray,
    starts: np.ndarray,
    sizes: np.ndarray,
    same_class: bool,
) -> np.ndarray:
    """``count`` distinct undirected pairs as keys ``lo * n + hi`` (sorted).

    Sparse requests: draw endpoint ``u`` uniformly, then ``v`` uniformly from
    ``u``'s class (``same_class``) or from a uniformly chosen other class;
    reject self-pairs and repeats and redraw until ``count`` distinct pairs
    exist.  Dense requests (more than half of the ``capacity`` eligible
    pairs, small graphs only) choose uniformly among all eligible pairs.
    """
    n, k = y.size, sizes.size
    if count == 0:
        return np.empty(0, dtype=np.int64)
    if 2 * count > capacity and n <= _DENSE_MAX_NODES:
        return np.sort(rng.choice(_all_pairs(y, same_class), size=count, replace=False))
    keys = np.empty(0, dtype=np.int64)
    for _ in range(_MAX_ROUNDS):
        need = count - keys.size
        if need <= 0:
            break
        draw = need + need // 8 + 16
        u = rng.integers(0, n, draw)
        cu = y[u]
        cv = cu if same_class else (cu + rng.integers(1, k, draw)) % k
        v = order[starts[cv] + (rng.random(draw) * sizes[cv]).astype(np.int64)]
        ok = u != v
        lo, hi = np.minimum(u, v)[ok], np.maximum(u, v)[ok]
        keys = np.unique(np.concatenate([keys, lo * n + hi]))
    else:
        raise DatasetError(
            f"csbm: could not sample {count} distinct edges out of {capacity} eligible "
            f"node pairs; lower degree")
    if keys.size > count:
        keys = np.sort(rng.choice(keys, size=count, replace=False))
    return keys


def make_csbm(values: dict[str, Value | None], seed: int, split: int) -> Data:
    """Generate a CSBM graph (see module docstring for every parameter).

    Args:
        values: parsed parameters (:data:`CSBM_PARAMS`).
        seed: non-negative RNG seed; identical seeds give identical tensors.
        split: mask draw index.
    """
    n, k, f = get_int(values, "n"), get_int(values, "classes"), get_int(values, "features")
    h, signal = get_float(values, "homophily"), get_float(values, "signal")
    degree = get_float(values, "degree")
    name = canonical_name("csbm", CSBM_PARAMS, values)
    if k > n:
        raise DatasetError(f"csbm: classes={k} exceeds n={n}")
    if n * f > 2**31:
        raise DatasetError(f"csbm: n*features={n * f} floats is too large (max 2**31)")

    y = _rng(seed, _STREAM_LABELS).permutation(np.arange(n, dtype=np.int64) % k)
    sizes = np.bincount(y, minlength=k).astype(np.int64)
    order = np.argsort(y, kind="stable")
    starts = np.cumsum(sizes) - sizes

    m = int(round(n * degree / 2))
    m_in = int(round(h * m))
    m_out = m - m_in
    cap_in = int((sizes * (sizes - 1) // 2).sum())
    cap_out = n * (n - 1) // 2 - cap_in
    if m_in > cap_in or m_out > cap_out:
        raise DatasetError(
            f"csbm: degree={degree} with homophily={h} needs {m_in} intra-class and {m_out} "
            f"inter-class edges but only {cap_in} / {cap_out} node pairs exist; lower degree")
    g = _rng(seed, _STREAM_EDGES)
    keys = np.concatenate([
        _sample_pairs(g, m_in, cap_in, y, order, starts, sizes, True),
        _sample_pairs(g, m_out, cap_out, y, order, starts, sizes, False),
    ])
    lo, hi = keys // n, keys % n
    src, dst = np.concatenate([lo, hi]), np.concatenate([hi, lo])
    perm = np.argsort(dst * n + src, kind="stable")
    edge_index = torch.from_numpy(np.stack([src[perm], dst[perm]]))

    fr = _rng(seed, _STREAM_FEATURES)
    if k <= f:
        q, _ = np.linalg.qr(fr.standard_normal((f, k)))
        directions = q.T
    else:
        d = fr.standard_normal((k, f))
        directions = d / np.linalg.norm(d, axis=1, keepdims=True)
    means = (signal / np.sqrt(2.0)) * directions
    x = fr.standard_normal((n, f), dtype=np.float32)
    x += means.astype(np.float32)[y]

    data = make_data(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        edge_index=edge_index,
        masks=random_split_masks(n, _rng(seed, _STREAM_MASKS, split)),
        name=name,
        num_classes=k,
        split=split,
    )
    validate_graph(data)
    return data
