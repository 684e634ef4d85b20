"""Real benchmark graphs loaded through PyG: Planetoid and geom-gcn datasets.

Supported names and on-disk layout under the resolved root (see
:mod:`model.datasets.root`):

- ``cora``, ``citeseer``, ``pubmed``: ``Planetoid(root, "Cora" | "CiteSeer" |
  "PubMed")``, raw files ``<root>/<Cora|CiteSeer|PubMed>/raw/ind.<name>.*``;
  public split only.
- ``actor``: ``Actor(<root>/Actor)``, raw files ``<root>/Actor/raw/``
  (``out1_*.txt``, ``film_split_0.6_0.2_<i>.npz``); 10 splits.
- ``texas``, ``wisconsin``, ``cornell``: ``WebKB(root, "Texas" | ...)``, raw
  files in the *lower-case* folder ``<root>/<name>/raw/`` (PyG's layout); 10
  splits.

Planetoid datasets use the public split (``split`` must be 0); geom-gcn
datasets select one of their 10 fixed splits (``split`` in 0..9).

Missing raw files are downloaded by PyG when the machine is online.  Set
``QGNN_OFFLINE=1`` to never try; ``QGNN_DOWNLOAD_TIMEOUT`` (seconds, default
10) bounds the connectivity probe and socket operations of the download.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch_geometric.data import Data, InMemoryDataset
from torch_geometric.datasets import Actor, Planetoid, WebKB

from . import rawcheck
from .errors import DatasetError
from .graph import canonical_edge_index, make_data, validate_graph
from .root import WorkRoot, prepare_work_root, resolve_root

__all__ = ["REAL_DATASETS", "RealSpec", "load_real"]

ENV_OFFLINE = "QGNN_OFFLINE"
ENV_TIMEOUT = "QGNN_DOWNLOAD_TIMEOUT"
_FINGERPRINT = "qgnn_raw_fingerprint.json"

_PLANETOID_URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
_GEOM_URL = "https://raw.githubusercontent.com/graphdml-uiuc-jlu/geom-gcn/master"
_PLANETOID_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


@dataclass(frozen=True)
class RealSpec:
    """Static description of one real dataset.

    Attributes:
        name: canonical lower-case name (``"cora"``).
        family: ``"planetoid"`` or ``"geom-gcn"`` (selects the raw-file checks).
        pyg_name: name passed to the PyG class (``"Cora"``, ``"Texas"``).
        folder: dataset folder relative to the root (``"Cora"``, ``"texas"``).
        raw_files: expected files inside ``<folder>/raw``.
        num_classes: number of label classes.
        num_splits: 1 (Planetoid public split) or 10 (geom-gcn splits).
        url: download base URL (used for the connectivity probe).
        how_to_obtain: human instructions appended to error messages; the
            placeholder ``{raw_dir}`` is filled in.
        factory: builds the PyG dataset from the (work) root.
    """

    name: str
    family: str
    pyg_name: str
    folder: str
    raw_files: tuple[str, ...]
    num_classes: int
    num_splits: int
    url: str
    how_to_obtain: str
    factory: Callable[[Path], InMemoryDataset]

    def how(self, raw_dir: Path | str) -> str:
        """``how_to_obtain`` with ``{raw_dir}`` substituted."""
        return self.how_to_obtain.replace("{raw_dir}", str(raw_dir))

    @property
    def raw_subdir(self) -> str:
        """Raw folder relative to the root."""
        return f"{self.folder}/raw"

    def check_raw(self, raw_dir: Path) -> None:
        """Raise :class:`rawcheck.CorruptFile` for the first corrupt raw file: the structural
        checks of :mod:`rawcheck`, then the content checks below (types, shapes, ranges and
        cross-file consistency, everything the PyG loader would otherwise trip over without
        naming the file, or accept and turn into a wrong graph)."""
        if self.family == "planetoid":
            rawcheck.check_planetoid_raw(raw_dir, self.name)
            _check_planetoid_content(raw_dir, self.name, self.num_classes)
        else:
            num_nodes = rawcheck.check_geom_gcn_raw(raw_dir, self.raw_files)
            _check_geom_content(raw_dir, self.raw_files, self.num_classes, num_nodes,
                                sparse_features=self.name == "actor")


#: Largest dense feature or label matrix a raw file may imply (elements; float32: 1 GiB).
#: PyG densifies Planetoid matrices and builds Actor's ``[N, max feature + 1]`` matrix.
MAX_DENSE_ELEMENTS = 2**28
#: Validation nodes of the Planetoid public split (PyG: the 500 rows after the training rows).
_PLANETOID_VAL = 500


def _matrix_info(path: Path, obj: object) -> tuple[int, int, np.ndarray]:
    """``(rows, cols, stored values)`` of a pickled Planetoid matrix, or CorruptFile."""
    import scipy.sparse as sp

    if sp.issparse(obj):
        # PyG densifies with scipy's C routines, which trust the index arrays: an index out of
        # range (a damaged file) writes out of bounds (a segfault, or a silently wrong x).
        fmt = getattr(obj, "format", "?")
        try:
            if fmt in ("csr", "csc", "bsr"):
                obj.check_format(full_check=True)  # type: ignore[attr-defined]
            elif fmt == "coo":
                r, c = np.asarray(obj.row), np.asarray(obj.col)  # type: ignore[attr-defined]
                n_r, n_c = obj.shape  # type: ignore[attr-defined]
                if not (r.shape == c.shape == np.shape(obj.data)  # type: ignore[attr-defined]
                        and (r.size == 0 or (0 <= r.min() and r.max() < n_r
                                             and 0 <= c.min() and c.max() < n_c))):
                    raise ValueError("row/col indices out of range or of unequal lengths")
            else:
                raise ValueError(f"unsupported sparse format {fmt!r} (expected csr, csc, "
                                 "bsr or coo)")
        except Exception as exc:  # scipy raises ValueError/TypeError/IndexError/...
            raise rawcheck.CorruptFile(path, f"is not a well-formed sparse matrix "
                                             f"({type(exc).__name__}: {exc})") from exc
        values = np.asarray(obj.data)  # type: ignore[attr-defined]
        shape = obj.shape  # type: ignore[attr-defined]
    elif isinstance(obj, np.ndarray):
        values, shape = obj, obj.shape
    else:
        raise rawcheck.CorruptFile(path, f"expected a sparse or dense matrix, got "
                                         f"{type(obj).__name__}")
    if len(shape) != 2:
        raise rawcheck.CorruptFile(path, f"expected a 2-D matrix, got shape {tuple(shape)}")
    if values.dtype.kind not in "biuf":
        raise rawcheck.CorruptFile(path, f"has non-numeric values (dtype {values.dtype})")
    rows, cols = int(shape[0]), int(shape[1])
    if rows * cols > MAX_DENSE_ELEMENTS:
        raise rawcheck.CorruptFile(path, f"is a {rows} x {cols} matrix; more than "
                                         f"{MAX_DENSE_ELEMENTS} elements when dense")
    if values.dtype.kind == "f" and not bool(np.isfinite(values).all()):
        raise rawcheck.CorruptFile(path, "contains NaN or infinite values")
    return rows, cols, values


def _check_planetoid_content(raw_dir: Path, prefix: str, num_classes: int) -> None:
    """Shapes, values and index ranges of the Planetoid files, as PyG's loader uses them."""
    path = {k: raw_dir / f"ind.{prefix}.{k}" for k in
            ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")}
    info = {k: _matrix_info(path[k], rawcheck._unpickle(path[k]))
            for k in ("x", "tx", "allx", "y", "ty", "ally")}
    cols = {k: info[k][1] for k in ("x", "tx", "allx")}
    if len(set(cols.values())) != 1:  # name the odd one out
        counts = list(cols.values())
        odd = next((k for k, c in cols.items() if counts.count(c) == 1), "x")
        listing = ", ".join(f"{path[k].name} {c}" for k, c in cols.items())
        raise rawcheck.CorruptFile(path[odd], f"feature column counts differ ({listing})")
    for k in ("y", "ty", "ally"):
        if info[k][1] != num_classes:
            raise rawcheck.CorruptFile(path[k], f"has {info[k][1]} label columns, expected "
                                                f"{num_classes} (one per class)")
    n_train, n_all, n_test = info["x"][0], info["allx"][0], info["tx"][0]
    if n_train + _PLANETOID_VAL > n_all:
        raise rawcheck.CorruptFile(path["allx"], f"has {n_all} rows; the public split needs the "
                                   f"{n_train} training rows of {path['x'].name} and "
                                   f"{_PLANETOID_VAL} validation rows")
    test = np.array([int(t) for t in path["test.index"].read_text(encoding="utf-8").split()],
                    dtype=np.int64)
    if test.size:
        if np.unique(test).size != test.size:
            raise rawcheck.CorruptFile(path["test.index"], "repeats a test node")
        lo, hi = int(test.min()), int(test.max())
        n = n_all + (hi - lo + 1 if prefix == "citeseer" else n_test)
        if lo < n_all or hi >= n:
            raise rawcheck.CorruptFile(path["test.index"], f"test nodes must lie in "
                                       f"{n_all}..{n - 1} (after the {n_all} rows of "
                                       f"{path['allx'].name}), got {lo}..{hi}")
    else:
        n = n_all
    graph = rawcheck._unpickle(path["graph"])
    assert isinstance(graph, dict)  # rawcheck.check_planetoid_raw
    for key, nbrs in graph.items():
        if isinstance(key, bool) or not isinstance(key, int | np.integer) or not 0 <= key < n:
            raise rawcheck.CorruptFile(path["graph"], f"node key {key!r} is not a node id in "
                                                      f"0..{n - 1}")
        if not isinstance(nbrs, list | tuple):
            raise rawcheck.CorruptFile(path["graph"], f"node {key}: neighbours must be a list, "
                                                      f"got {type(nbrs).__name__}")
        for v in nbrs:
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or not 0 <= v < n:
                raise rawcheck.CorruptFile(path["graph"], f"node {key}: neighbour {v!r} is "
                                                          f"not a node id in 0..{n - 1}")


def _load_masks(path: Path, num_nodes: int) -> dict[str, np.ndarray]:
    """The three masks of a geom-gcn split file, or CorruptFile naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            masks = {k: np.asarray(z[k]) for k in ("train_mask", "val_mask", "test_mask")}
    except Exception as exc:  # zipfile, zlib, numpy and pickle errors of a damaged archive
        raise rawcheck.CorruptFile(path, f"is not a valid mask archive "
                                         f"({type(exc).__name__}: {exc})") from exc
    for key, arr in masks.items():
        if arr.shape != (num_nodes,):
            raise rawcheck.CorruptFile(path, f"{key} has shape {arr.shape}, expected "
                                             f"({num_nodes},)")
    return masks


def _check_geom_content(raw_dir: Path, files: tuple[str, ...], num_classes: int,
                        num_nodes: int, sparse_features: bool) -> None:
    """Labels, feature fields and split masks of geom-gcn files, as PyG's loaders use them
    (Actor: comma-separated feature indices; WebKB: a dense comma-separated row)."""
    node_path = raw_dir / files[0]
    lines = node_path.read_text(encoding="utf-8").split("\n")[1:-1]
    n = len(lines)
    width = None
    max_index = -1
    for lineno, line in enumerate(lines, start=2):
        _, feats, label = line.split("\t")
        if not 0 <= int(label) < num_classes:
            raise rawcheck.CorruptFile(node_path, f"line {lineno}: label {int(label)} outside "
                                                  f"0..{num_classes - 1}")
        tokens = feats.split(",")
        if sparse_features:
            try:
                idx = [int(t) for t in tokens]
            except ValueError as exc:
                raise rawcheck.CorruptFile(node_path, f"line {lineno}: feature indices must be "
                                                      f"integers ({exc})") from exc
            if min(idx) < 0:
                raise rawcheck.CorruptFile(node_path, f"line {lineno}: negative feature index "
                                                      f"{min(idx)}")
            max_index = max(max_index, *idx)
        else:
            values = np.array([float(t) for t in tokens])
            if not bool(np.isfinite(values).all()):
                raise rawcheck.CorruptFile(node_path, f"line {lineno}: NaN or infinite feature")
            if width is None:
                width = len(tokens)
            elif len(tokens) != width:
                raise rawcheck.CorruptFile(node_path, f"line {lineno}: {len(tokens)} features, "
                                                      f"line 2 has {width}")
    if sparse_features and n * (max_index + 1) > MAX_DENSE_ELEMENTS:
        raise rawcheck.CorruptFile(node_path, f"feature index {max_index} makes a dense "
                                              f"{n} x {max_index + 1} matrix, more than "
                                              f"{MAX_DENSE_ELEMENTS} elements")
    for name in files[2:]:
        mpath = raw_dir / name
        masks = _load_masks(mpath, num_nodes)
        for key, m in masks.items():
            if m.dtype.kind not in "biu" or (m.dtype.kind != "b" and not bool(
                    ((m == 0) | (m == 1)).all())):
                raise rawcheck.CorruptFile(mpath, f"{key} must hold 0/1 or booleans, got dtype "
                                                  f"{m.dtype}")
        b = {k: m.astype(bool) for k, m in masks.items()}
        for k1, k2 in (("train_mask", "val_mask"), ("train_mask", "test_mask"),
                       ("val_mask", "test_mask")):
            both = b[k1] & b[k2]
            if bool(both.any()):
                raise rawcheck.CorruptFile(mpath, f"{k1} and {k2} overlap (node "
                                                  f"{int(np.argmax(both))})")


def _planetoid(pyg_name: str) -> Callable[[Path], InMemoryDataset]:
    def make(root: Path) -> InMemoryDataset:
        return Planetoid(str(root), pyg_name, split="public")

    return make


def _webkb(pyg_name: str) -> Callable[[Path], InMemoryDataset]:
    def make(root: Path) -> InMemoryDataset:
        return WebKB(str(root), pyg_name)

    return make


def _actor(root: Path) -> InMemoryDataset:
    return Actor(str(root / "Actor"))


def _planetoid_spec(name: str, pyg_name: str, num_classes: int) -> RealSpec:
    files = tuple(f"ind.{name}.{p}" for p in _PLANETOID_PARTS)
    how = (
        "run once with internet access (PyG downloads the files automatically), or "
        f"place the Planetoid raw files ind.{name}.{{{','.join(_PLANETOID_PARTS)}}} in "
        "{raw_dir}; source: the Planetoid repository "
        "https://github.com/kimiyoung/planetoid (folder data/)"
    )
    return RealSpec(name, "planetoid", pyg_name, pyg_name, files, num_classes, 1,
                    _PLANETOID_URL, how, _planetoid(pyg_name))


def _geom_spec(name: str, pyg_name: str, folder: str, file_stem: str,
               factory: Callable[[Path], InMemoryDataset]) -> RealSpec:
    files = ("out1_node_feature_label.txt", "out1_graph_edges.txt") + tuple(
        f"{file_stem}_split_0.6_0.2_{i}.npz" for i in range(10))
    how = (
        "run once with internet access (PyG downloads the files automatically), or "
        "place out1_node_feature_label.txt and out1_graph_edges.txt (geom-gcn "
        f"new_data/{file_stem}/) and {file_stem}_split_0.6_0.2_{{0..9}}.npz (geom-gcn "
        "splits/) in {raw_dir}; source: the geom-gcn repository "
        "https://github.com/graphdml-uiuc-jlu/geom-gcn"
    )
    return RealSpec(name, "geom-gcn", pyg_name, folder, files, 5, 10, _GEOM_URL, how, factory)


REAL_DATASETS: dict[str, RealSpec] = {
    "cora": _planetoid_spec("cora", "Cora", 7),
    "citeseer": _planetoid_spec("citeseer", "CiteSeer", 6),
    "pubmed": _planetoid_spec("pubmed", "PubMed", 3),
    "actor": _geom_spec("actor", "Actor", "Actor", "film", _actor),
    **{
        n: _geom_spec(n, n.capitalize(), n, n, _webkb(n.capitalize()))
        for n in ("texas", "wisconsin", "cornell")
    },
}


# ----------------------------------------------------------------------------
# helpers


def _offline() -> bool:
    return os.environ.get(ENV_OFFLINE, "").strip().lower() not in ("", "0", "false", "no")


def _timeout() -> float:
    try:
        return max(0.1, float(os.environ.get(ENV_TIMEOUT, "10")))
    except ValueError:
        return 10.0


def _probe(url: str, timeout: float) -> str | None:
    """Try a TCP connection to the download host; return an error or None."""
    parsed = urlparse(url)
    host, port = parsed.hostname or "", parsed.port or 443
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host}:{port}: {exc}"


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """Exclusive inter-process lock on ``directory/.qgnn.lock`` (POSIX only)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(directory / ".qgnn.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _fingerprint(spec: RealSpec, raw_dir: Path) -> dict[str, list[int]]:
    out = {}
    for name in spec.raw_files:
        st = (raw_dir / name).stat()
        out[name] = [st.st_size, st.st_mtime_ns]
    return out


def _read_fingerprint(processed_dir: Path) -> dict[str, list[int]] | None:
    try:
        return json.loads((processed_dir / _FINGERPRINT).read_text())
    except (OSError, ValueError):
        return None


def _write_fingerprint(processed_dir: Path, fp: dict[str, list[int]]) -> None:
    if _read_fingerprint(processed_dir) == fp or not processed_dir.is_dir():
        return
    tmp = processed_dir / f".{_FINGERPRINT}.{os.getpid()}"
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(fp))
        os.replace(tmp, processed_dir / _FINGERPRINT)


def _corrupt_error(spec: RealSpec, err: rawcheck.CorruptFile, raw_dir: Path) -> DatasetError:
    return DatasetError(
        f"dataset {spec.name!r}: raw file {err.path} is corrupt ({err.reason}). "
        f"Delete it and obtain it again: " + spec.how(raw_dir)
    )


def _check_raw_or_raise(spec: RealSpec, raw_dir: Path) -> None:
    try:
        spec.check_raw(raw_dir)
    except rawcheck.CorruptFile as err:
        raise _corrupt_error(spec, err, raw_dir) from err


def _missing_error(spec: RealSpec, work: WorkRoot, missing: list[Path], why: str) -> DatasetError:
    src_raw = work.source_root / spec.raw_subdir
    listing = "\n".join(f"  {src_raw / p.name}" for p in missing)
    where = str(src_raw)
    if work.mirrored:
        where += f" (or the writable mirror {work.root / spec.raw_subdir})"
    return DatasetError(
        f"dataset {spec.name!r}: {len(missing)} raw file(s) missing and not downloadable "
        f"({why}):\n{listing}\nTo fix: " + spec.how(where)
    )


def _missing(spec: RealSpec, raw_dir: Path) -> list[Path]:
    return [raw_dir / f for f in spec.raw_files if not (raw_dir / f).is_file()]


def _preflight(spec: RealSpec, work: WorkRoot, missing: list[Path]) -> None:
    """Fail fast (before touching the disk) when missing files cannot be downloaded."""
    if _offline():
        raise _missing_error(spec, work, missing, f"downloads disabled by {ENV_OFFLINE}")
    problem = _probe(spec.url, _timeout())
    if problem is not None:
        raise _missing_error(spec, work, missing, problem)


@contextlib.contextmanager
def _quiet_pyg() -> Iterator[None]:
    """Drop PyG's own "Processing..." / "Done!" lines (they ignore the CLI's ``--quiet`` and
    break its progress display); anything else PyG writes to stderr is passed on."""
    buf = io.StringIO()
    try:
        with contextlib.redirect_stderr(buf):
            yield
    finally:
        rest = [ln for ln in buf.getvalue().splitlines(keepends=True)
                if ln.strip() not in ("Processing...", "Done!")]
        if rest:
            sys.stderr.write("".join(rest))


def _download(spec: RealSpec, work: WorkRoot, missing: list[Path]) -> InMemoryDataset:
    """Let PyG download (and process) the dataset, failing fast when offline."""
    _preflight(spec, work, missing)
    raw_dir = work.root / spec.raw_subdir
    try:
        with _socket_timeout(_timeout()), _quiet_pyg():
            return spec.factory(work.root)
    except Exception as exc:
        still = _missing(spec, raw_dir)
        if still:
            for p in missing:  # drop partial downloads
                with contextlib.suppress(OSError):
                    p.unlink()
            raise _missing_error(spec, work, still, f"download failed: {exc}") from exc
        raise _processing_error(spec, raw_dir, exc) from exc


def _processing_error(spec: RealSpec, raw_dir: Path, exc: BaseException) -> DatasetError:
    try:
        spec.check_raw(raw_dir)
    except rawcheck.CorruptFile as err:
        return _corrupt_error(spec, err, raw_dir)
    return DatasetError(
        f"dataset {spec.name!r}: PyG failed to process the raw files in {raw_dir} "
        f"({type(exc).__name__}: {exc}). If a file is damaged, delete it and obtain it "
        f"again: " + spec.how(raw_dir)
    )


def _finalize(ds: InMemoryDataset, spec: RealSpec, split: int) -> Data:
    """Convert the PyG dataset into the canonical Data (see package docs)."""
    raw = ds[0]
    x = raw.x.to(torch.float32).contiguous()
    n = x.size(0)
    masks = []
    for attr in ("train_mask", "val_mask", "test_mask"):
        m = getattr(raw, attr)
        if m.dim() == 2:
            if m.size(1) != spec.num_splits:
                raise DatasetError(f"dataset {spec.name!r}: {attr} has {m.size(1)} split "
                                   f"columns, expected {spec.num_splits}")
            m = m[:, split]
        elif spec.num_splits != 1:
            raise DatasetError(f"dataset {spec.name!r}: {attr} lacks the split dimension")
        masks.append(m.to(torch.bool).contiguous())
    data = make_data(
        x=x,
        y=raw.y.to(torch.long).view(-1),
        edge_index=canonical_edge_index(raw.edge_index, n),
        masks=(masks[0], masks[1], masks[2]),
        name=spec.name,
        num_classes=spec.num_classes,
        split=split,
    )
    validate_graph(data)
    return data


def _load_locked(spec: RealSpec, work: WorkRoot, split: int) -> Data:
    raw_dir = work.root / spec.raw_subdir
    processed_dir = work.root / spec.folder / "processed"
    processed_file = processed_dir / "data.pt"

    ds: InMemoryDataset | None = None
    missing = _missing(spec, raw_dir)
    if missing:
        ds = _download(spec, work, missing)
    else:
        recorded = _read_fingerprint(processed_dir)
        if recorded is not None and recorded != _fingerprint(spec, raw_dir):
            shutil.rmtree(processed_dir, ignore_errors=True)  # raw files changed

    for attempt in (0, 1):
        cached = ds is None and processed_file.is_file()
        if ds is None:
            if not cached:
                _check_raw_or_raise(spec, raw_dir)
            try:
                with warnings.catch_warnings(), _quiet_pyg():
                    warnings.simplefilter("ignore")
                    ds = spec.factory(work.root)
            except Exception as exc:
                if cached and attempt == 0:  # stale/corrupt processed/: rebuild once
                    shutil.rmtree(processed_dir, ignore_errors=True)
                    continue
                raise _processing_error(spec, raw_dir, exc) from exc
        try:
            data = _finalize(ds, spec, split)
        except DatasetError:
            if cached and attempt == 0:
                shutil.rmtree(processed_dir, ignore_errors=True)
                ds = None
                continue
            raise
        _write_fingerprint(processed_dir, _fingerprint(spec, raw_dir))
        return data
    raise AssertionError("unreachable")  # pragma: no cover


def load_real(spec: RealSpec, root: str | os.PathLike[str] | None, split: int) -> Data:
    """Load one real dataset (see the module docstring for layout and rules).

    Args:
        spec: entry of :data:`REAL_DATASETS`.
        root: dataset root, resolved with :func:`~model.datasets.root.resolve_root`.
        split: 0 for Planetoid; 0..9 for geom-gcn datasets.

    Raises:
        DatasetError: bad split, missing/corrupt raw files, failed validation.
    """
    if not 0 <= split < spec.num_splits:
        allowed = "0" if spec.num_splits == 1 else f"0..{spec.num_splits - 1}"
        raise DatasetError(
            f"dataset {spec.name!r}: split={split} is out of range; allowed: {allowed}")
    work = prepare_work_root(resolve_root(root), spec.folder, spec.raw_subdir, spec.raw_files)
    missing = _missing(spec, work.root / spec.raw_subdir)
    if missing:
        _preflight(spec, work, missing)
    ds_dir = work.root / spec.folder
    try:
        ds_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"dataset {spec.name!r}: cannot create {ds_dir}: {exc}") from exc
    with _dir_lock(ds_dir):
        return _load_locked(spec, work, split)
