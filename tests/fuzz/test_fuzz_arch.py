"""Fuzzing accelerator TOML files read by ``load_arch`` (``qgnn simulate --arch``): a bad file
gives one ArchConfigError naming the file and the key; an accepted one equals its file and
simulates a tiny graph to finite cycles and energy."""

from __future__ import annotations

from pathlib import Path

import fuzz_cases as fc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.sim.config import ArchConfigError, load_arch
from qgnn.sweeps.cli import main

DEFAULT = (fc.REPO / "sim" / "configs" / "default.toml").read_text().replace(
    'synth_json = "../data/hw_synth_generic.json"', "")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-arch-cache")


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutation=st.sampled_from(fc.MUTATIONS["arch"]), seed=st.integers(0, 2**31 - 1))
def test_fuzz_arch(cache: Path, mutation: str, seed: int) -> None:
    o = fc.run_case("arch", mutation, seed, cache)
    assert o.status != "failure", f"{o.what}\n{o.detail}"


def _write(tmp_path: Path, text: str | bytes) -> Path:
    p = tmp_path / "chip.toml"
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


@pytest.mark.parametrize(("old", "new", "field"), [
    ("size_kib = 256", "size_kib = 1e308", "buffers.feature.size_kib"),   # inf bytes
    ("clock_mhz = 1000.0", "clock_mhz = 1e-308", "clock_mhz"),          # inf bytes/cycle
    ("clock_mhz = 1000.0", "clock_mhz = inf", "clock_mhz"),
    ("requant_units = 32", "requant_units = 9223372036854775807", "combination.requant_units"),
    ('default = "auto"', 'default = "auto"\nlayers = {"0" = "auto", "00" = "combine-first"}',
     "dataflow.layers.00"),                                              # same layer twice
    ('default = "auto"', 'default = "auto"\nlayers = {" 1" = "auto"}', "dataflow.layers. 1"),
])
def test_values_that_were_accepted(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in DEFAULT
    p = _write(tmp_path, DEFAULT.replace(old, new, 1))
    with pytest.raises(ArchConfigError) as info:
        load_arch(str(p))
    assert str(p) in str(info.value) and f": {field}: " in str(info.value)


@pytest.mark.parametrize("data", [b"\xff\xfe garbage", b"x = " + b"[" * 5000 + b"]" * 5000])
def test_undecodable_or_deep_file(tmp_path: Path, data: bytes) -> None:
    p = _write(tmp_path, data)
    with pytest.raises(ArchConfigError, match="not UTF-8|nested too deeply"):
        load_arch(str(p))


def test_directory_is_an_arch_error(tmp_path: Path) -> None:
    d = tmp_path / "dir.toml"
    d.mkdir()
    with pytest.raises(ArchConfigError, match="cannot read"):
        load_arch(str(d))


def test_cli_simulate_bad_arch_is_one_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    p = _write(tmp_path, DEFAULT.replace("size_kib = 256", "size_kib = 1e308"))
    code = main(["simulate", "--dataset", "csbm:n=50", "--bits", "4", "--arch", str(p)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("qgnn: error: ")
    assert "buffers.feature.size_kib" in err[0]
