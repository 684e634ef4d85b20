"""Vectorised R-MAT power-law graph generator (Chakrabarti et al., 2004).

Name: ``rmat[:key=value,...]``, e.g.
``rmat:edges=10000000,scale=20,a=0.57,b=0.19,c=0.19,features=16,classes=4``.
Parameters (all optional):

- ``scale`` (int in [1, 31], default 16): ``N = 2**scale`` nodes.
- ``edges`` (int in [1, 2**34], default ``16 * 2**scale``, the Graph500 edge
  factor): number of directed edge *samples*.  Self-loops and duplicates are
  removed afterwards, so the graph keeps ``E <= edges`` edges (the kept count
  is ``data.num_edges`` / :attr:`RMATCSR.num_edges`; the requested count is
  ``data.requested_edges``).
- ``a``, ``b``, ``c`` (floats in [0, 1], defaults 0.57/0.19/0.19, the
  Graph500 values): probabilities of recursing into the top-left, top-right
  and bottom-left quadrant of the adjacency matrix (row = source, column =
  target); ``d = 1 - a - b - c`` (must be >= 0) is the bottom-right one.
- ``features`` (int in [1, 4096], default 16): random N(0, 1) float32 features.
- ``classes`` (int in [2, 1000], default 4): uniformly random labels.
- ``permute`` (bool, default 1): relabel node ids with a seeded bijection of
  ``[0, N)`` (multiply-xorshift) so high degree is not concentrated at small
  ids, as Graph500 does.

Edges are directed as generated.  Masks are random 60/20/20 as for ``csbm``.

Implementation: edges are drawn in fixed chunks of 2**16; per chunk the loop
runs over the ``scale`` bit levels only, each level drawing one float32 per
edge and appending one source and one target bit.  Keys ``target * N +
source`` are collected in one int64 array, sorted in place and deduplicated,
which directly yields (target, source) order and the in-neighbour CSR.
Memory is about 24 bytes per requested edge plus 16 bytes per kept edge for
``edge_index``; ``10**7`` edges at scale 20 take a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch_geometric.data import Data

from .errors import DatasetError
from .graph import make_data, random_split_masks, validate_graph
from .params import Param, Value, canonical_name, get_bool, get_float, get_int

__all__ = ["RMATCSR", "RMAT_PARAMS", "generate_rmat_csr", "make_rmat", "resolve_rmat_values"]

RMAT_PARAMS: tuple[Param, ...] = (
    Param("edges", int, None, 1, 2**34,
          doc="directed edge samples before dedup (default 16 * 2**scale)"),
    Param("scale", int, 16, 1, 31, doc="log2 of the number of nodes"),
    Param("a", float, 0.57, 0.0, 1.0, doc="top-left quadrant probability"),
    Param("b", float, 0.19, 0.0, 1.0, doc="top-right quadrant probability"),
    Param("c", float, 0.19, 0.0, 1.0, doc="bottom-left quadrant probability (d = 1-a-b-c)"),
    Param("features", int, 16, 1, 4096, doc="random feature dimension"),
    Param("classes", int, 4, 2, 1000, doc="number of random label classes"),
    Param("permute", bool, True, doc="randomly relabel node ids"),
)

_CHUNK = 1 << 16  # fixed: part of the definition of the random stream
_STREAM_EDGES, _STREAM_PERMUTE, _STREAM_FEATURES, _STREAM_LABELS, _STREAM_MASKS = (
    21, 22, 23, 24, 25)
_MAX_FEATURE_FLOATS = 2**31


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


@dataclass(frozen=True)
class RMATCSR:
    """R-MAT graph as an in-neighbour CSR (no features).

    Row ``v`` lists the *sources* of the edges whose target is ``v``:
    ``indices[indptr[v]:indptr[v+1]]`` are sorted, distinct and never ``v``.
    This is exactly ``edge_index`` of :func:`~model.datasets.load_dataset`
    (``indices == edge_index[0]``, row ids == ``edge_index[1]``).

    Attributes:
        indptr: int64 ``[num_nodes + 1]``.
        indices: ``[num_edges]`` source ids (int64 or the requested dtype).
        num_nodes: ``2**scale``.
        num_edges: edges kept after removing self-loops and duplicates.
        requested_edges: edge samples drawn.
    """

    indptr: npt.NDArray[np.int64]
    indices: npt.NDArray[np.integer]
    num_nodes: int
    num_edges: int
    requested_edges: int


def resolve_rmat_values(values: dict[str, Value | None]) -> dict[str, Value | None]:
    """Fill the derived default of ``edges`` and check ``a + b + c <= 1``."""
    out = dict(values)
    if out["edges"] is None:
        out["edges"] = 16 * (1 << get_int(out, "scale"))
    a, b, c = get_float(out, "a"), get_float(out, "b"), get_float(out, "c")
    if a + b + c > 1.0 + 1e-9:
        raise DatasetError(f"rmat: a+b+c={a + b + c:g} must be <= 1 (d = 1-a-b-c >= 0)")
    return out


def _scramble(ids: np.ndarray, scale: int, k1: int, k2: int) -> None:
    """In-place seeded bijection of ``[0, 2**scale)`` (odd multiply + xorshift)."""
    mask = (1 << scale) - 1
    shift = max(1, (scale + 1) // 2)
    for k in (k1, k2):
        ids *= k  # ids < 2**31 and k < 2**32: no int64 overflow
        ids &= mask
        ids ^= ids >> shift


def _sorted_keys(edges: int, scale: int, a: float, b: float, c: float,
                 seed: int, permute: bool) -> np.ndarray:
    """Sorted distinct keys ``target << scale | source`` without self-loops."""
    g = _rng(seed, _STREAM_EDGES)
    t_a, t_ab, t_abc = (np.float32(t) for t in (a, a + b, a + b + c))
    if permute:
        k1, k2 = (int(v) | 1 for v in _rng(seed, _STREAM_PERMUTE).integers(1, 2**32, 2))
    keys = np.empty(edges, dtype=np.int64)
    filled = 0
    r = np.empty(_CHUNK, dtype=np.float32)
    bit = np.empty(_CHUNK, dtype=bool)
    tmp = np.empty(_CHUNK, dtype=bool)
    for start in range(0, edges, _CHUNK):
        m = min(_CHUNK, edges - start)
        rr, sb, db = r[:m], bit[:m], tmp[:m]
        src = np.zeros(m, dtype=np.int64)
        dst = np.zeros(m, dtype=np.int64)
        for _ in range(scale):
            g.random(out=rr, dtype=np.float32)
            # quadrant: [0,a) -> (0,0); [a,a+b) -> (0,1); [a+b,a+b+c) -> (1,0); else (1,1)
            np.greater_equal(rr, t_ab, out=sb)
            np.greater_equal(rr, t_a, out=db)
            db ^= sb
            db ^= rr >= t_abc
            src <<= 1
            src |= sb
            dst <<= 1
            dst |= db
        if permute:
            _scramble(src, scale, k1, k2)
            _scramble(dst, scale, k1, k2)
        keep = src != dst
        kept = int(np.count_nonzero(keep))
        out = keys[filled:filled + kept]
        np.left_shift(dst[keep], scale, out=out)
        out |= src[keep]
        filled += kept
    keys = keys[:filled]
    keys.sort()
    if filled > 1:
        first = np.empty(filled, dtype=bool)
        first[0] = True
        np.not_equal(keys[1:], keys[:-1], out=first[1:])
        keys = keys[first]
    return keys


def _keys_for(values: dict[str, Value | None], seed: int) -> np.ndarray:
    return _sorted_keys(
        get_int(values, "edges"), get_int(values, "scale"), get_float(values, "a"),
        get_float(values, "b"), get_float(values, "c"), seed, get_bool(values, "permute"))


def generate_rmat_csr(
    edges: int | None = None,
    scale: int = 16,
    a: float = 0.57,
    b: float = 0.19,
    c: float = 0.19,
    *,
    seed: int = 0,
    permute: bool = True,
    index_dtype: npt.DTypeLike = np.int64,
) -> RMATCSR:
    """Fast path: R-MAT structure only, as an in-neighbour CSR (see :class:`RMATCSR`).

    Same parameters, defaults and random stream as ``load_dataset("rmat:...")``
    (the CSR equals that dataset's ``edge_index``), but no features, labels or
    masks and no torch tensors.

    Args:
        edges: directed edge samples before dedup (default ``16 * 2**scale``).
        scale: ``log2`` of the node count, 1..31.
        a, b, c: quadrant probabilities, ``a + b + c <= 1``.
        seed: non-negative RNG seed.
        permute: relabel node ids with a seeded bijection.
        index_dtype: dtype of ``indices`` (e.g. ``np.int32`` halves memory
            when ``scale <= 31``).
    """
    values = _checked({"edges": edges, "scale": scale, "a": a, "b": b, "c": c,
                       "features": 1, "classes": 2, "permute": permute})
    if seed < 0:
        raise DatasetError(f"rmat: seed must be >= 0, got {seed}")
    s = get_int(values, "scale")
    n = 1 << s
    keys = _keys_for(values, seed)
    indptr = np.searchsorted(keys, np.arange(n + 1, dtype=np.int64) << s).astype(np.int64)
    indices = (keys & (n - 1)).astype(index_dtype, copy=False)
    return RMATCSR(indptr=indptr, indices=indices, num_nodes=n, num_edges=int(keys.size),
                   requested_edges=get_int(values, "edges"))


def _checked(values: dict[str, Value | None]) -> dict[str, Value | None]:
    """Range-check programmatic arguments exactly like name parameters."""
    out: dict[str, Value | None] = {}
    for p in RMAT_PARAMS:
        v = values[p.name]
        out[p.name] = None if v is None else p.convert("rmat", str(v))
    return resolve_rmat_values(out)


def make_rmat(values: dict[str, Value | None], seed: int, split: int) -> Data:
    """Generate an R-MAT dataset (see module docstring for every parameter).

    Args:
        values: parsed parameters (:data:`RMAT_PARAMS`); ``edges`` may be None.
        seed: non-negative RNG seed; identical seeds give identical tensors.
        split: mask draw index.
    """
    values = resolve_rmat_values(values)
    s = get_int(values, "scale")
    feats, k = get_int(values, "features"), get_int(values, "classes")
    n = 1 << s
    if n * feats > _MAX_FEATURE_FLOATS:
        raise DatasetError(
            f"rmat: 2**scale * features = {n * feats} floats is too large for a feature "
            f"matrix (max 2**31); lower scale/features or use generate_rmat_csr()")
    keys = _keys_for(values, seed)
    ei = np.empty((2, keys.size), dtype=np.int64)
    np.bitwise_and(keys, n - 1, out=ei[0])
    np.right_shift(keys, s, out=ei[1])
    del keys
    x = _rng(seed, _STREAM_FEATURES).standard_normal((n, feats), dtype=np.float32)
    y = _rng(seed, _STREAM_LABELS).integers(0, k, n, dtype=np.int64)
    data = make_data(
        x=torch.from_numpy(x),
        y=torch.from_numpy(y),
        edge_index=torch.from_numpy(ei),
        masks=random_split_masks(n, _rng(seed, _STREAM_MASKS, split)),
        name=canonical_name("rmat", RMAT_PARAMS, values),
        num_classes=k,
        split=split,
    )
    data.requested_edges = get_int(values, "edges")
    validate_graph(data)
    return data
