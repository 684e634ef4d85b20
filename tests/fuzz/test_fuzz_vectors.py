"""Fuzzing golden vector sets (manifest.json + stage .npz) read by ``read_vectors`` and
``qgnn verify``: every malformed set must give one VectorFormatError naming the file and the
field (one line at the CLI, exit 2); a still-valid set must read back exactly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fuzz_cases as fc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.model.golden import read_vectors
from qgnn.model.golden.format import VectorFormatError
from qgnn.sweeps.cli import main


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-vectors-cache")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=st.sampled_from(fc.MUTATIONS["vectors"]), seed=st.integers(0, 2**31 - 1))
def test_fuzz_vectors(cache: Path, mutation: str, seed: int) -> None:
    o = fc.run_case("vectors", mutation, seed, cache)
    assert o.status != "failure", f"{o.what}\n{o.detail}"


def _copy(cache: Path, tmp_path: Path, base: str = "int4x2") -> Path:
    root = tmp_path / "set"
    shutil.copytree(fc.vector_templates(cache)[base], root)
    return root


@pytest.mark.parametrize("text", [
    b"[" * 100_000 + b"]" * 100_000,                       # RecursionError in json
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b'{"format": "qgnn-golden-vectors", "version": ' + b"9" * 6000 + b"}",  # int digits limit
])
def test_manifest_that_breaks_the_json_parser(cache: Path, tmp_path: Path, text: bytes) -> None:
    root = _copy(cache, tmp_path)
    (root / "manifest.json").write_bytes(text)
    with pytest.raises(VectorFormatError, match=r"manifest\.json: not valid JSON"):
        read_vectors(root)


@pytest.mark.parametrize("in_level", [2**60, 2**70])
def test_in_level_that_would_wrap_int64(cache: Path, tmp_path: Path, in_level: int) -> None:
    root = _copy(cache, tmp_path, "bt")
    m = json.loads((root / "manifest.json").read_text())
    m["stages"][0]["in_level"] = in_level
    (root / "manifest.json").write_text(json.dumps(m))
    for check in (True, False):
        with pytest.raises(VectorFormatError, match=r"stages\[0\]\.in_level: "):
            read_vectors(root, check=check)


def test_valid_mutation_reads_back_exactly(cache: Path, tmp_path: Path) -> None:
    root = _copy(cache, tmp_path)
    npz = root / "stage00.npz"
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["note"] = np.arange(4)  # unknown arrays are ignored
    np.savez(npz, **arrays)
    vs = read_vectors(root)
    assert np.array_equal(vs.stages[0].stage.indices, arrays["indices"])
    assert np.array_equal(vs.stages[0].expected_packed, arrays["expected_packed"])


def test_cli_verify_bad_set_is_one_line(cache: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy(cache, tmp_path)
    with np.load(root / "stage00.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["indptr"] = arrays["indptr"][::-1].copy()
    np.savez(root / "stage00.npz", **arrays)
    assert main(["verify", "--vectors", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qgnn: error: ")
    assert "stage00.npz: indptr: " in err[0]
