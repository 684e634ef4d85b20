"""Fuzzing dataset raw files (Planetoid ``ind.cora.*`` pickles, geom-gcn Actor text/npz files)
read by ``load_dataset``: a damaged file gives one DatasetError naming it; an accepted set of
files gives exactly the graph an independent reader computes from them."""

from __future__ import annotations

import os
import pickle
import shutil
from pathlib import Path

import fuzz_cases as fc
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.model.datasets import DatasetError, load_dataset
from qgnn.sweeps.cli import main

pytestmark = pytest.mark.skipif(fc.dataset_source() is None,
                                reason="no Cora/Actor raw files (set QGNN_DATA_ROOT)")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-datasets-cache")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg"))


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=st.sampled_from(fc.MUTATIONS["datasets"]), seed=st.integers(0, 2**31 - 1))
def test_fuzz_datasets(cache: Path, mutation: str, seed: int) -> None:
    o = fc.run_case("datasets", mutation, seed, cache)
    assert o.status != "failure", f"{o.what}\n{o.detail}"


def _root(cache: Path, tmp_path: Path, folder: str) -> Path:
    raw = tmp_path / "root" / folder / "raw"
    shutil.copytree(fc.dataset_template(cache) / folder / "raw", raw)
    return raw


def _repickle(path: Path, change) -> None:  # noqa: ANN001
    obj = fc._pkl_load(path)
    path.write_bytes(pickle.dumps(change(obj), protocol=2))


CORA_CASES = [
    ("ind.cora.tx", lambda m: sp.csr_matrix(m.toarray()[:, :-1])),          # columns differ
    ("ind.cora.allx", lambda m: sp.csr_matrix(m.toarray()[:, :100])),
    ("ind.cora.ally", lambda a: a[:, :6]),                                   # label columns
    ("ind.cora.ty", lambda a: np.concatenate([a, a[:, :1]], axis=1)),
    ("ind.cora.tx", lambda m: sp.csr_matrix(np.where(m.toarray() > 0, np.nan, 0.0))),
    ("ind.cora.allx", lambda m: m.toarray().astype(object)),                  # not numeric
    ("ind.cora.x", lambda m: sp.csr_matrix((m.shape[0], 10**9), dtype=np.float32)),
    ("ind.cora.graph", lambda g: {**g, "x": [1]}),                           # bad key
    ("ind.cora.graph", lambda g: {**g, 0: [2708]}),                          # id out of range
    ("ind.cora.graph", lambda g: {**g, 0: 5}),                               # not a list
]


@pytest.mark.parametrize(("victim", "change"), CORA_CASES)
def test_cora_content_errors_name_the_file(cache: Path, tmp_path: Path, victim: str,
                                           change) -> None:  # noqa: ANN001
    raw = _root(cache, tmp_path, "Cora")
    _repickle(raw / victim, change)
    with pytest.raises(DatasetError) as info:
        load_dataset("cora", root=raw.parents[1])
    assert str(raw / victim) in str(info.value) and "corrupt" in str(info.value)


def _bad_csr_index(m):  # noqa: ANN001, ANN202
    m = m.tocsr().copy()
    m.indices[3] = 10**6  # out of range, set behind scipy's back (as a damaged file does)
    return m


def _bad_csr_indptr(m):  # noqa: ANN001, ANN202
    m = m.tocsr().copy()
    m.indptr[5] = m.indptr[-1] + 1000
    return m


@pytest.mark.parametrize("victim", ["ind.cora.x", "ind.cora.tx", "ind.cora.allx"])
@pytest.mark.parametrize("change", [_bad_csr_index, _bad_csr_indptr])
def test_cora_malformed_csr_is_an_error_not_a_segfault(cache: Path, tmp_path: Path,
                                                       victim: str, change) -> None:  # noqa: ANN001
    """scipy's todense trusts the index arrays: this crashed the process (SIGSEGV) or gave a
    silently wrong x before the loader checked the CSR structure."""
    raw = _root(cache, tmp_path, "Cora")
    _repickle(raw / victim, change)
    with pytest.raises(DatasetError, match="not a well-formed sparse matrix") as info:
        load_dataset("cora", root=raw.parents[1])
    assert str(raw / victim) in str(info.value)


@pytest.mark.parametrize("change", ["out_of_range", "duplicate"])
def test_cora_test_index_errors_name_the_file(cache: Path, tmp_path: Path, change: str) -> None:
    raw = _root(cache, tmp_path, "Cora")
    p = raw / "ind.cora.test.index"
    idx = p.read_text().split()
    idx[3] = "2708" if change == "out_of_range" else idx[4]
    p.write_text("\n".join(idx) + "\n")
    with pytest.raises(DatasetError, match="ind.cora.test.index"):
        load_dataset("cora", root=raw.parents[1])


def _edit_line(path: Path, lineno: int, field: int, value: str) -> None:
    lines = path.read_text().split("\n")
    parts = lines[lineno - 1].split("\t")
    parts[field] = value
    lines[lineno - 1] = "\t".join(parts)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize(("field", "value", "match"), [
    (2, "5", "label 5 outside 0..4"),
    (1, "92,1.5", "feature indices must be integers"),
    (1, "92,-1", "negative feature index"),
    (1, "92,1000000000000", "dense"),
])
def test_actor_node_file_errors_name_the_file(cache: Path, tmp_path: Path, field: int,
                                              value: str, match: str) -> None:
    raw = _root(cache, tmp_path, "Actor")
    _edit_line(raw / "out1_node_feature_label.txt", 5, field, value)
    with pytest.raises(DatasetError, match=match) as info:
        load_dataset("actor", root=raw.parents[1])
    assert str(raw / "out1_node_feature_label.txt") in str(info.value)


@pytest.mark.parametrize("change", ["overlap", "twos", "strings"])
def test_actor_split_errors_name_the_file(cache: Path, tmp_path: Path, change: str) -> None:
    raw = _root(cache, tmp_path, "Actor")
    p = raw / "film_split_0.6_0.2_0.npz"
    z = fc._load_npz(p)
    if change == "overlap":
        z["train_mask"] = z["val_mask"].copy()
    elif change == "twos":
        z["test_mask"] = z["test_mask"].astype(np.int64) * 2
    else:
        z["val_mask"] = z["val_mask"].astype("U1")
    os.unlink(p)
    np.savez(p, **z)
    with pytest.raises(DatasetError, match="film_split_0.6_0.2_0.npz"):
        load_dataset("actor", root=raw.parents[1])


def test_valid_change_matches_independent_reader(cache: Path, tmp_path: Path) -> None:
    raw = _root(cache, tmp_path, "Cora")
    _repickle(raw / "ind.cora.graph", lambda g: {**g, 5: list(g[5]) + [5, 7, 7]})
    data = load_dataset("cora", root=raw.parents[1])
    ref = fc.reference_planetoid(raw, "cora")
    assert np.array_equal(data.edge_index.numpy(), ref["edge_index"])
    assert np.array_equal(data.x.numpy(), ref["x"]) and np.array_equal(data.y.numpy(), ref["y"])


def test_cli_train_corrupt_file_is_one_line(cache: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    raw = _root(cache, tmp_path, "Cora")
    _repickle(raw / "ind.cora.ally", lambda a: a[:, :6])
    code = main(["train", "--dataset", "cora", "--data-root", str(raw.parents[1]),
                 "--epochs", "1", "--seeds", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("qgnn: error: ")
    assert "ind.cora.ally" in err[0]
