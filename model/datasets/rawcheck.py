"""Cheap structural checks of raw dataset files, used to name a corrupt file.

Each checker reads one family's raw folder and raises :class:`CorruptFile`
(path + reason) at the first file that cannot be parsed or is inconsistent
with its siblings.  The checks mirror what the PyG loaders parse, so a file
that passes is very likely to process; they cost about as much as reading the
files once (milliseconds for Cora/WebKB, well under a second for Actor).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["CorruptFile", "check_geom_gcn_raw", "check_planetoid_raw"]


class CorruptFile(Exception):
    """Internal: ``path`` is corrupt; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _read_text(path: Path) -> list[str]:
    """Data lines of a geom-gcn text file (header dropped, like PyG does)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorruptFile(path, f"cannot be read ({exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptFile(path, f"is not UTF-8 text ({exc})") from exc
    if not text.endswith("\n"):
        raise CorruptFile(path, "does not end with a newline (truncated?)")
    lines = text.split("\n")[1:-1]
    if not lines:
        raise CorruptFile(path, "has no data lines")
    return lines


def _node_file(path: Path) -> int:
    """Check ``out1_node_feature_label.txt``; return the number of nodes."""
    lines = _read_text(path)
    seen = np.zeros(len(lines), dtype=bool)
    for lineno, line in enumerate(lines, start=2):
        parts = line.split("\t")
        try:
            if len(parts) != 3:
                raise ValueError(f"expected 3 tab-separated fields, got {len(parts)}")
            node, label = int(parts[0]), int(parts[2])
            [float(v) for v in parts[1].split(",")]
        except ValueError as exc:
            raise CorruptFile(path, f"line {lineno}: {exc}") from exc
        if not 0 <= node < len(lines) or seen[node]:
            raise CorruptFile(path, f"line {lineno}: node id {node} out of range or repeated")
        if label < 0:
            raise CorruptFile(path, f"line {lineno}: negative label {label}")
        seen[node] = True
    return len(lines)


def _edge_file(path: Path, num_nodes: int) -> None:
    """Check ``out1_graph_edges.txt`` (two tab-separated node ids a line)."""
    for lineno, line in enumerate(_read_text(path), start=2):
        parts = line.split("\t")
        try:
            if len(parts) != 2:
                raise ValueError(f"expected 2 tab-separated fields, got {len(parts)}")
            u, v = int(parts[0]), int(parts[1])
        except ValueError as exc:
            raise CorruptFile(path, f"line {lineno}: {exc}") from exc
        if not (0 <= u < num_nodes and 0 <= v < num_nodes):
            raise CorruptFile(path, f"line {lineno}: node id outside [0, {num_nodes})")


def _split_file(path: Path, num_nodes: int) -> None:
    """Check a ``*_split_0.6_0.2_<i>.npz`` mask file."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("train_mask", "val_mask", "test_mask")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        reason = f"is not a valid mask archive ({type(exc).__name__}: {exc})"
        raise CorruptFile(path, reason) from exc
    for key, arr in arrays.items():
        if arr.shape != (num_nodes,):
            raise CorruptFile(path, f"{key} has shape {arr.shape}, expected ({num_nodes},)")


def check_geom_gcn_raw(raw_dir: Path, files: Sequence[str]) -> int:
    """Check Actor/WebKB raw files: node file, edge file, then split files; returns the
    number of nodes."""
    num_nodes = _node_file(raw_dir / files[0])
    _edge_file(raw_dir / files[1], num_nodes)
    for name in files[2:]:
        _split_file(raw_dir / name, num_nodes)
    return num_nodes


def _unpickle(path: Path) -> object:
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pickle.load(f, encoding="latin1")
    except Exception as exc:  # pickle raises many types on garbage input
        raise CorruptFile(path, f"is not a valid pickle ({type(exc).__name__}: {exc})") from exc


def check_planetoid_raw(raw_dir: Path, prefix: str) -> None:
    """Check the 8 Planetoid files ``ind.<prefix>.*`` and their row counts."""
    path = {k: raw_dir / f"ind.{prefix}.{k}" for k in
            ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")}
    rows: dict[str, int] = {}
    for key in ("x", "tx", "allx", "y", "ty", "ally"):
        obj = _unpickle(path[key])
        shape = getattr(obj, "shape", None)
        if shape is None or len(shape) != 2:
            raise CorruptFile(path[key], f"expected a 2-D matrix, got {type(obj).__name__}")
        rows[key] = int(shape[0])
    graph = _unpickle(path["graph"])
    if not isinstance(graph, dict) or not graph:
        raise CorruptFile(path["graph"], f"expected a non-empty dict, got {type(graph).__name__}")
    try:
        tokens = path["test.index"].read_text(encoding="utf-8").split()
        test_index = [int(t) for t in tokens]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorruptFile(path["test.index"], f"is not a list of integers ({exc})") from exc
    for a, b in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        if rows[a] != rows[b]:
            raise CorruptFile(path[b], f"has {rows[b]} rows but {path[a].name} has {rows[a]}")
    if len(test_index) != rows["ty"]:
        raise CorruptFile(path["test.index"], f"lists {len(test_index)} test nodes but "
                          f"{path['ty'].name} has {rows['ty']} rows")
