"""Fuzzing sweep specs (TOML/YAML) read by ``load_spec`` (``qgnn sweep``): a bad spec gives one
SpecError naming the field or the file (one line at the CLI, exit 2); an accepted one expands
to the points its document defines."""

from __future__ import annotations

import time
from pathlib import Path

import fuzz_cases as fc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.sweeps.cli import main
from qgnn.sweeps.spec import SpecError, load_spec, parse_spec

# "huge" (grids of up to 100,001 values) and "deep" (documents nested up to 100,000 deep) cost
# seconds of parsing each: they run in the benchmark, and their fixes are pinned below
# (test_long_grid_axis_is_fast, the "nested" documents).
FAST_MUTATIONS = [m for m in fc.MUTATIONS["spec"] if m not in ("huge", "deep")]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-spec-cache")


@settings(max_examples=35, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=st.sampled_from(FAST_MUTATIONS), seed=st.integers(0, 2**31 - 1))
def test_fuzz_sweep_spec(cache: Path, mutation: str, seed: int) -> None:
    o = fc.run_case("spec", mutation, seed, cache)
    assert o.status != "failure", f"{o.what}\n{o.detail}"


@pytest.mark.parametrize(("name", "data", "match"), [
    ("s.toml", b'name = "x"\n\xff\xfe\n', "not UTF-8"),
    ("s.yaml", b"name: \xc3\x28\n", "not UTF-8"),
    ("s.toml", b"name = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
    ("s.yaml", b"name: " + b"[" * 1000 + b"]" * 1000, "nested too deeply"),
    ("s.yaml", b"name: " + b"[" * 40 + b"]" * 40, r"name(\[0\])+: nested more than 32"),
    ("s.yaml", b"fixed: {dataset: cora, epochs: 2001-01-01}\ngrid: {bits: [8, 4]}\n",
     r"fixed\.epochs: a date value"),
    ("s.toml", b'fixed = {dataset = "cora"}\ngrid = {epochs = [1979-05-27, 1980-01-01]}\n',
     r"grid\.epochs\[\d\]: a date value"),
    ("s.yaml", b"fixed: {dataset: !!binary aGVsbG8=}\ngrid: {bits: [8]}\n",
     r"fixed\.dataset: a bytes value"),
    ("s.toml", b'fixed = {dataset = "cora"}\ngrid = {lr = [nan, 0.1]}\n',
     r"grid\.lr\[0\]: nan is not a finite number"),
])
def test_documents_that_escaped_as_other_errors(tmp_path: Path, name: str, data: bytes,
                                               match: str) -> None:
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(SpecError, match=match):
        load_spec(p)


def test_long_grid_axis_is_fast() -> None:
    """The duplicate check was quadratic: 60,000 values took minutes; now milliseconds."""
    values = list(range(1, 60_001)) + [7]
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match=r"grid\.epochs: value 7 is listed twice"):
        parse_spec({"fixed": {"dataset": "cora"}, "grid": {"epochs": values}})
    with pytest.raises(SpecError, match=r"grid\.epochs: 100001 values"):
        parse_spec({"fixed": {"dataset": "cora"}, "grid": {"epochs": list(range(100_001))}})
    assert time.perf_counter() - t0 < 5.0


def test_cli_sweep_bad_spec_is_one_line(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "s.toml"
    p.write_bytes(b'[fixed]\ndataset = "cora"\n[grid]\nbits = [8, 3.5]\n')
    assert main(["sweep", str(p), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qgnn: error: ") and "bits" in err[0]
    p.write_bytes(b"\xff\xfe")
    assert main(["sweep", str(p), "--out", str(tmp_path / "out"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(p) in err[0] and "not UTF-8" in err[0]
