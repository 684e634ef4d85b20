"""Tests for model.datasets (real loaders, root/mirror handling, synthetic generators)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.datasets import (
    DatasetError,
    available_datasets,
    generate_rmat_csr,
    load_dataset,
    resolve_root,
)
from qgnn.model.datasets import real as real_mod
from qgnn.model.datasets.root import mirror_root_for

REPO = Path(__file__).resolve().parents[2]

CORA_RAW = ["x", "tx", "allx", "y", "ty", "ally", "graph", "test.index"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root with real raw data: $QGNN_DATA_ROOT, else <repo>/../shared/datasets, else skip."""
    env = os.environ.get("QGNN_DATA_ROOT")
    if env:
        return Path(env)
    shared = REPO.parent / "shared" / "datasets"
    if shared.is_dir():
        return shared
    pytest.skip("no dataset root: set QGNN_DATA_ROOT or provide ../shared/datasets")


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def isolated_cache(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep mirrors out of the real ~/.cache (shared by the session for speed)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(session_cache))
    return session_cache


def _require(data_root: Path, folder: str) -> Path:
    raw = data_root / folder / "raw"
    if not raw.is_dir():
        pytest.skip(f"{raw} not available")
    return raw


def _copy_dataset(data_root: Path, folder: str, dest_root: Path) -> Path:
    """Writable copy of <data_root>/<folder>/raw under dest_root; returns the raw dir."""
    src = _require(data_root, folder)
    dst = dest_root / folder / "raw"
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copyfile(f, dst / f.name)
    return dst


def _chmod_tree(path: Path, writable: bool) -> None:
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755 if writable else 0o555)
        else:
            p.chmod(0o644 if writable else 0o444)


def _check_canonical(data, n: int) -> None:
    ei = data.edge_index
    assert ei.dtype == torch.long and ei.shape[0] == 2
    assert data.x.dtype == torch.float32 and data.x.shape[0] == n
    assert data.y.dtype == torch.long and data.y.shape == (n,)
    assert not bool((ei[0] == ei[1]).any())
    key = ei[1] * n + ei[0]
    assert bool((key[1:] > key[:-1]).all()), "not sorted by (target, source) / duplicates"
    masks = [data.train_mask, data.val_mask, data.test_mask]
    for m in masks:
        assert m.dtype == torch.bool and m.shape == (n,)
    assert not bool((masks[0] & masks[1]).any() | (masks[0] & masks[2]).any()
                    | (masks[1] & masks[2]).any())
    assert 0 <= int(data.y.min()) and int(data.y.max()) < data.num_classes


# --------------------------------------------------------------------------- real datasets


def test_cora(data_root: Path) -> None:
    _require(data_root, "Cora")
    data = load_dataset("CoRa", root=data_root)
    assert (data.name, data.num_classes, data.split) == ("cora", 7, 0)
    assert data.num_nodes == 2708 and data.num_edges == 10556
    assert data.x.shape == (2708, 1433)
    _check_canonical(data, 2708)
    assert [int(m.sum()) for m in (data.train_mask, data.val_mask, data.test_mask)] == [
        140, 500, 1000]
    in_deg = torch.bincount(data.edge_index[1], minlength=2708)
    assert int(in_deg.max()) == 168


def test_bad_split_is_error(data_root: Path) -> None:
    with pytest.raises(DatasetError, match=r"allowed: 0\b"):
        load_dataset("cora", root=data_root, split=1)
    with pytest.raises(DatasetError, match=r"0\.\.9"):
        load_dataset("actor", root=data_root, split=10)
    with pytest.raises(DatasetError, match=r"0\.\.9"):
        load_dataset("texas", root=data_root, split=-1)


def _actor_edges_from_raw(raw: Path) -> set[tuple[int, int]]:
    """Independent parse of out1_graph_edges.txt: distinct directed non-loop edges."""
    edges = set()
    with open(raw / "out1_graph_edges.txt") as f:
        next(f)  # header
        for line in f:
            if line.strip():
                u, v = map(int, line.split())
                if u != v:
                    edges.add((u, v))
    return edges


def test_actor(data_root: Path) -> None:
    raw = _require(data_root, "Actor")
    expected_edges = _actor_edges_from_raw(raw)
    d0 = load_dataset("actor", root=data_root, split=0)
    d7 = load_dataset("ACTOR", root=data_root, split=7)
    for d in (d0, d7):
        assert (d.name, d.num_classes) == ("actor", 5)
        assert d.num_nodes == 7600 and d.x.shape == (7600, 932)
        _check_canonical(d, 7600)
        assert d.num_edges == len(expected_edges)
    assert set(map(tuple, d0.edge_index.t().tolist())) == expected_edges
    assert torch.equal(d0.edge_index, d7.edge_index)
    for d, s in ((d0, 0), (d7, 7)):
        assert d.split == s
        with np.load(raw / f"film_split_0.6_0.2_{s}.npz") as z:
            for key in ("train_mask", "val_mask", "test_mask"):
                assert np.array_equal(getattr(d, key).numpy(), z[key].astype(bool))
    assert not torch.equal(d0.train_mask, d7.train_mask)


@pytest.mark.parametrize("how", ["chmod", "os_access"])
def test_read_only_root_goes_to_mirror(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    ro_root = tmp_path / "ro"
    _copy_dataset(data_root, "Cora", ro_root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if how == "chmod":
        _chmod_tree(ro_root, writable=False)
    else:  # simulate a read-only mount
        real_access = os.access

        def fake_access(path, mode, *args, **kwargs):  # type: ignore[no-untyped-def]
            if mode & os.W_OK and str(path).startswith(str(ro_root)):
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", fake_access)
    before = sorted(str(p) for p in ro_root.rglob("*"))
    try:
        data = load_dataset("cora", root=ro_root)
    finally:
        _chmod_tree(ro_root, writable=True)
    assert data.num_nodes == 2708 and data.num_edges == 10556
    assert sorted(str(p) for p in ro_root.rglob("*")) == before  # nothing written
    mirror = mirror_root_for(resolve_root(ro_root))
    assert mirror.is_relative_to(tmp_path / "cache" / "qgnn" / "datasets-mirror")
    assert (mirror / "Cora" / "processed" / "data.pt").is_file()
    assert (mirror / "Cora" / "raw" / "ind.cora.x").is_file()


def test_missing_file_offline_names_file(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _copy_dataset(data_root, "Cora", tmp_path)
    (raw / "ind.cora.tx").unlink()
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    with pytest.raises(DatasetError) as info:
        load_dataset("cora", root=tmp_path)
    msg = str(info.value)
    assert str(raw / "ind.cora.tx") in msg
    assert "'cora'" in msg and "Planetoid" in msg and "internet" in msg
    assert "ind.cora.x\n" not in msg  # only the missing file is listed


def test_missing_file_failed_download_is_fast(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _copy_dataset(data_root, "Actor", tmp_path)
    (raw / "film_split_0.6_0.2_4.npz").unlink()
    monkeypatch.delenv("QGNN_OFFLINE", raising=False)
    monkeypatch.setattr(real_mod, "_probe", lambda url, timeout: None)  # pretend online

    def no_network(self):  # type: ignore[no-untyped-def]
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(real_mod.Actor, "download", no_network)
    t0 = time.perf_counter()
    with pytest.raises(DatasetError, match="film_split_0.6_0.2_4.npz") as info:
        load_dataset("actor", root=tmp_path)
    assert time.perf_counter() - t0 < 10
    assert "no network in tests" in str(info.value) and "geom-gcn" in str(info.value)


def test_unreachable_host_fails_fast(
    data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _copy_dataset(data_root, "Cora", tmp_path)
    (raw / "ind.cora.graph").unlink()
    monkeypatch.delenv("QGNN_OFFLINE", raising=False)

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("connection refused (test)")

    monkeypatch.setattr(real_mod.socket, "create_connection", refuse)
    with pytest.raises(DatasetError, match="ind.cora.graph") as info:
        load_dataset("cora", root=tmp_path)
    assert "connection refused (test)" in str(info.value)


@pytest.mark.parametrize(
    ("folder", "name", "victim", "damage"),
    [
        ("Cora", "cora", "ind.cora.x", "truncate"),
        ("Cora", "cora", "ind.cora.test.index", "garbage"),
        ("Actor", "actor", "out1_graph_edges.txt", "garbage"),
        ("Actor", "actor", "out1_node_feature_label.txt", "truncate"),
        ("Actor", "actor", "film_split_0.6_0.2_3.npz", "truncate"),
    ],
)
def test_corrupt_raw_file_is_named(
    data_root: Path, tmp_path: Path, folder: str, name: str, victim: str, damage: str
) -> None:
    raw = _copy_dataset(data_root, folder, tmp_path)
    path = raw / victim
    good = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(good[: len(good) // 2 - 3])
    else:
        path.write_bytes(b"\x00\xffnot a dataset file\x89PNG\n" * 10 + b"hello\tworld\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(name, root=tmp_path)
    msg = str(info.value)
    assert str(path) in msg and "corrupt" in msg and "Delete it" in msg


def test_corrupt_processed_is_rebuilt(data_root: Path, tmp_path: Path) -> None:
    _copy_dataset(data_root, "Cora", tmp_path)
    first = load_dataset("cora", root=tmp_path)
    processed = tmp_path / "Cora" / "processed" / "data.pt"
    assert processed.is_file()
    processed.write_bytes(b"garbage")
    again = load_dataset("cora", root=tmp_path)
    assert torch.equal(first.edge_index, again.edge_index)
    assert torch.equal(first.x, again.x)


def test_processing_prints_nothing(data_root: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch,
                                   capfd: pytest.CaptureFixture[str]) -> None:
    """PyG's own "Processing..." / "Done!" lines would break `--quiet` and progress bars."""
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)  # PyG is silent under pytest
    _copy_dataset(data_root, "Cora", tmp_path)
    load_dataset("cora", root=tmp_path)
    assert (tmp_path / "Cora" / "processed" / "data.pt").is_file()  # it did process
    out, err = capfd.readouterr()
    assert "Processing" not in out + err and "Done!" not in out + err


def test_changed_raw_file_triggers_reprocess(data_root: Path, tmp_path: Path) -> None:
    raw = _copy_dataset(data_root, "Cora", tmp_path)
    load_dataset("cora", root=tmp_path)
    path = raw / "ind.cora.x"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match="ind.cora.x"):
        load_dataset("cora", root=tmp_path)


# --------------------------------------------------------------------------- root / names


def test_resolve_root_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QGNN_DATA_ROOT", str(tmp_path / "env"))
    assert resolve_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert resolve_root() == tmp_path / "env"
    monkeypatch.delenv("QGNN_DATA_ROOT")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_root() == tmp_path / "xdg" / "qgnn" / "datasets"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_root() == tmp_path / "home" / ".cache" / "qgnn" / "datasets"


def test_available_and_unknown_names() -> None:
    names = available_datasets()
    for n in ("cora", "citeseer", "pubmed", "actor", "texas", "wisconsin", "cornell",
              "csbm", "rmat"):
        assert n in names
    with pytest.raises(DatasetError, match="available"):
        load_dataset("imagenet")
    with pytest.raises(DatasetError, match="takes no parameters"):
        load_dataset("cora:n=5")
    with pytest.raises(DatasetError, match="seed"):
        load_dataset("csbm", seed=-1)


# --------------------------------------------------------------------------- csbm


def _same(a, b) -> bool:  # type: ignore[no-untyped-def]
    keys = ("x", "y", "edge_index", "train_mask", "val_mask", "test_mask")
    return all(torch.equal(getattr(a, k), getattr(b, k)) for k in keys)


def test_csbm_determinism() -> None:
    spec = "csbm:n=600,classes=4,degree=6,features=8"
    a, b = load_dataset(spec, seed=5), load_dataset(spec.upper(), seed=5)
    c = load_dataset(spec, seed=6)
    assert _same(a, b)
    assert not torch.equal(a.edge_index, c.edge_index) and not torch.equal(a.x, c.x)
    s1 = load_dataset(spec, seed=5, split=1)
    assert torch.equal(a.edge_index, s1.edge_index) and not torch.equal(a.train_mask, s1.train_mask)
    assert a.name == "csbm:n=600,classes=4,homophily=0.8,signal=1.0,features=8,degree=6.0"
    _check_canonical(a, 600)
    assert [int(m.sum()) for m in (a.train_mask, a.val_mask, a.test_mask)] == [360, 120, 120]


@pytest.mark.parametrize("h", [0.1, 0.5, 0.9])
def test_csbm_homophily_and_degree(h: float) -> None:
    d = load_dataset(f"csbm:n=2000,classes=5,homophily={h},degree=10", seed=1)
    src, dst = d.edge_index
    assert abs(float((d.y[src] == d.y[dst]).float().mean()) - h) < 0.05
    assert abs(d.num_edges / d.num_nodes - 10) < 0.01
    fwd = set(map(tuple, d.edge_index.t().tolist()))
    assert fwd == {(v, u) for u, v in fwd}  # undirected


def test_csbm_signal() -> None:
    d = load_dataset("csbm:n=6000,classes=3,signal=4,features=16,degree=2", seed=2)
    means = torch.stack([d.x[d.y == c].mean(0) for c in range(3)])
    dist = torch.cdist(means, means)[torch.triu_indices(3, 3, 1).unbind()]
    assert torch.allclose(dist, torch.full_like(dist, 4.0), atol=0.25)


def test_csbm_parameter_errors() -> None:
    with pytest.raises(DatasetError, match="unknown parameter 'foo'") as info:
        load_dataset("csbm:foo=3")
    for p in ("n", "classes", "homophily", "signal", "features", "degree"):
        assert p in str(info.value)
    with pytest.raises(DatasetError, match=r"homophily.*\[0\.0, 1\.0\]"):
        load_dataset("csbm:homophily=1.5")
    with pytest.raises(DatasetError, match="bad value"):
        load_dataset("csbm:n=abc")
    with pytest.raises(DatasetError, match="key=value"):
        load_dataset("csbm:n")
    with pytest.raises(DatasetError, match="given twice"):
        load_dataset("csbm:n=10,n=20")
    with pytest.raises(DatasetError, match="node pairs"):
        load_dataset("csbm:n=20,classes=2,degree=15")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 80),
    classes=st.integers(2, 6),
    homophily=st.floats(0, 1),
    degree=st.floats(0.1, 6),
    seed=st.integers(0, 2**32),
)
def test_csbm_always_valid_or_clean_error(
    n: int, classes: int, homophily: float, degree: float, seed: int
) -> None:
    try:
        d = load_dataset(
            f"csbm:n={n},classes={classes},homophily={homophily!r},degree={degree!r},features=3",
            seed=seed)
    except DatasetError:
        return
    _check_canonical(d, n)


# --------------------------------------------------------------------------- rmat


def test_rmat_small_determinism_and_skew() -> None:
    spec = "rmat:edges=1e5,scale=14"
    a, b, c = load_dataset(spec, seed=3), load_dataset(spec, seed=3), load_dataset(spec, seed=4)
    assert _same(a, b) and not torch.equal(a.edge_index, c.edge_index)
    n = 2**14
    _check_canonical(a, n)
    assert a.x.shape == (n, 16) and a.num_classes == 4
    assert a.requested_edges == 100_000 and 0.8 * 100_000 < a.num_edges <= 100_000
    deg = torch.bincount(a.edge_index[1], minlength=n).float()
    assert float(deg.max()) > 20 * float(deg.mean())  # power-law-ish skew
    csr = generate_rmat_csr(edges=100_000, scale=14, seed=3, index_dtype=np.int32)
    assert csr.num_edges == a.num_edges and csr.indices.dtype == np.int32
    assert np.array_equal(csr.indices, a.edge_index[0].numpy())
    assert np.array_equal(np.diff(csr.indptr), deg.long().numpy())


def test_rmat_permute_and_params() -> None:
    d = load_dataset("rmat:edges=20000,scale=12,permute=0,features=2,classes=3")
    deg = torch.bincount(d.edge_index[1], minlength=2**12)
    assert int(deg.argmax()) == 0  # unpermuted R-MAT: node 0 is the hub
    assert d.x.shape == (4096, 2) and int(d.y.max()) <= 2
    with pytest.raises(DatasetError, match=r"a\+b\+c"):
        load_dataset("rmat:a=0.6,b=0.3,c=0.3")
    with pytest.raises(DatasetError, match="unknown parameter 'nodes'.*scale"):
        load_dataset("rmat:nodes=5")
    with pytest.raises(DatasetError, match="scale"):
        load_dataset("rmat:scale=40")
    with pytest.raises(DatasetError, match="scale"):
        generate_rmat_csr(scale=0)


_BENCH = textwrap.dedent(
    """
    import json, resource, time
    from qgnn.model.datasets import load_dataset
    t0 = time.perf_counter()
    d = load_dataset("rmat:edges=10000000,scale=20,a=0.57,b=0.19,c=0.19,features=16,classes=4")
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak_bytes": peak, "edges": d.num_edges}))
    """
)


@pytest.mark.slow
def test_rmat_1e7_edges_time_and_memory() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-c", _BENCH], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    assert result["seconds"] < 30
    assert result["peak_bytes"] < 2 * 1024**3  # whole process, torch import included
    assert 9_000_000 < result["edges"] <= 10_000_000


def test_stat_helper_sanity(tmp_path: Path) -> None:
    """Guard for the read-only test: chmod really clears every write bit."""
    (tmp_path / "d").mkdir()
    _chmod_tree(tmp_path / "d", writable=False)
    assert not (tmp_path / "d").stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    _chmod_tree(tmp_path / "d", writable=True)
