"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> str:
    """Root with the real raw datasets: $QGNN_DATA_ROOT, else ../shared/datasets, else skip.
    (The loaders mirror a read-only root into a writable cache.)"""
    env = os.environ.get("QGNN_DATA_ROOT")
    root = Path(env) if env else REPO.parent / "shared" / "datasets"
    if not (root / "Cora" / "raw").is_dir():
        pytest.skip(f"no Cora raw files under {root}: set QGNN_DATA_ROOT")
    return str(root)


@pytest.fixture(scope="session")
def cora(data_root: str) -> Any:
    """The Cora graph (public split)."""
    from qgnn.model.datasets import load_dataset

    return load_dataset("cora", root=data_root)
