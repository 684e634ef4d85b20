"""Graph datasets for qgnn: real benchmarks (via PyG) and synthetic generators.

Public API::

    from qgnn.model.datasets import load_dataset, resolve_root, DatasetError, available_datasets

    data = load_dataset("cora")                       # Planetoid public split
    data = load_dataset("actor", split=3)             # geom-gcn split 3 of 0..9
    data = load_dataset("csbm:n=2000,homophily=0.9", seed=1)
    data = load_dataset("rmat:edges=1e7,scale=20")
    csr = generate_rmat_csr(edges=10**7, scale=20)    # structure only, numpy CSR

Every loader returns a :class:`torch_geometric.data.Data` with

- ``x``: float32 ``[N, F]``; ``y``: int64 ``[N]``;
- ``edge_index``: int64 ``[2, E]``, row 0 = source, row 1 = target, directed
  edges as the source provides them (csbm: both directions), self-loops and
  duplicates removed, sorted by (target, source);
- ``train_mask``/``val_mask``/``test_mask``: disjoint bool ``[N]``;
- python attributes ``name`` (canonical lower-case name; for synthetic
  datasets the full ``family:key=value,...`` spec with every parameter),
  ``num_classes`` (int) and ``split`` (int).

Real datasets: see :mod:`model.datasets.real` (names, layout, downloads) and
:mod:`model.datasets.root` (root resolution, read-only mirror).  Environment
variables: ``QGNN_DATA_ROOT`` (default root), ``XDG_CACHE_HOME`` (cache and
mirror location), ``QGNN_OFFLINE=1`` (never download), ``QGNN_DOWNLOAD_TIMEOUT``
(seconds, default 10).  Synthetic
datasets: :mod:`model.datasets.csbm` and :mod:`model.datasets.rmat` document
every parameter.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from torch_geometric.data import Data

from .csbm import CSBM_PARAMS, make_csbm
from .errors import DatasetError
from .graph import validate_graph
from .params import Param, Value, parse_params, split_name
from .real import REAL_DATASETS, load_real
from .rmat import RMAT_PARAMS, RMATCSR, generate_rmat_csr, make_rmat
from .root import resolve_root

__all__ = [
    "NUM_SYNTHETIC_SPLITS",
    "RMATCSR",
    "DatasetError",
    "available_datasets",
    "generate_rmat_csr",
    "load_dataset",
    "resolve_root",
    "validate_graph",
]

#: Synthetic datasets accept ``split`` in ``0..NUM_SYNTHETIC_SPLITS-1``; each
#: value is an independent random 60/20/20 mask draw.
NUM_SYNTHETIC_SPLITS = 10

_Maker = Callable[[dict[str, Value | None], int, int], Data]
_SYNTHETIC: dict[str, tuple[tuple[Param, ...], _Maker]] = {
    "csbm": (CSBM_PARAMS, make_csbm),
    "rmat": (RMAT_PARAMS, make_rmat),
}


def available_datasets() -> list[str]:
    """Sorted list of dataset names accepted by :func:`load_dataset`.

    Synthetic families (``csbm``, ``rmat``) also accept ``family:key=value,...``.
    """
    return sorted([*REAL_DATASETS, *_SYNTHETIC])


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    split: int = 0,
    seed: int = 0,
) -> Data:
    """Load a dataset by (case-insensitive) name.

    Args:
        name: one of :func:`available_datasets`, optionally with parameters for
            synthetic families (``"csbm:n=500,degree=8"``).
        root: dataset root for real datasets (see :func:`resolve_root`);
            ignored by synthetic datasets.
        split: real geom-gcn datasets: split column 0..9; Planetoid: must be 0;
            synthetic: independent mask draw 0..9.
        seed: non-negative seed of synthetic generators (ignored by real
            datasets, whose splits are fixed).

    Returns:
        A validated :class:`~torch_geometric.data.Data` (see module docstring).

    Raises:
        DatasetError: unknown name/parameter, bad split or seed, missing or
            corrupt files, failed validation.
    """
    family, params = split_name(name)
    if isinstance(split, bool) or not isinstance(split, int):
        raise DatasetError(f"split must be an int, got {split!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DatasetError(f"seed must be a non-negative int, got {seed!r}")
    if family in REAL_DATASETS:
        if params is not None:
            raise DatasetError(f"dataset {family!r} takes no parameters (got {name!r})")
        return load_real(REAL_DATASETS[family], root, split)
    if family in _SYNTHETIC:
        specs, make = _SYNTHETIC[family]
        values = parse_params(family, params, specs)
        if not 0 <= split < NUM_SYNTHETIC_SPLITS:
            raise DatasetError(f"{family}: split={split} is out of range; allowed: "
                               f"0..{NUM_SYNTHETIC_SPLITS - 1}")
        return make(values, seed, split)
    raise DatasetError(
        f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
