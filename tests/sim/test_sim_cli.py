"""``qgnn simulate``: the table, the JSON, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qgnn.sweeps.cli import main


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    monkeypatch.delenv("QGNN_DEBUG", raising=False)


def one_line_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qgnn: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_simulate_cora_table_and_json(data_root: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.json"
    code = main(["simulate", "--dataset", "cora", "--model", "gcn", "--bits", "2",
                 "--data-root", data_root, "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "layer0.combine" in captured.out and "layer1.aggregate" in captured.out
    assert "speedup" in captured.out
    d = json.loads(out.read_text())
    for key in ("cycles", "energy_pj", "fp32_cycles", "fp32_energy_pj", "speedup_vs_fp32",
                "energy_ratio_vs_fp32", "roofline_cycles", "roofline_pct", "dram_bytes",
                "utilization", "energy_breakdown", "layers", "area_mm2"):
        assert key in d
    assert d["bits"] == "int2" and d["command"].startswith("qgnn simulate")
    assert d["dram_bytes"]["indices"] > 0


def test_simulate_synthetic_with_arch_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "chip.toml"
    arch.write_text((Path(__file__).resolve().parents[2] / "sim/configs/default.toml")
                    .read_text().replace('preset = "hbm2"', 'preset = "ddr4"'))
    code = main(["simulate", "--dataset", "csbm:n=300", "--bits", "4", "--arch", str(arch),
                 "--hidden", "16"])
    assert code == 0
    assert "csbm" in capsys.readouterr().out


@pytest.mark.parametrize("argv, contains", [
    (["--bits", "9"], "bit width"),
    (["--bits", "fp32"], "quantized"),
    (["--arch", "no-such-chip"], "no such file or preset"),
    (["--model", "gat"], "invalid choice"),
    (["--hidden", "0"], "--hidden"),
])
def test_simulate_argument_errors(capsys: pytest.CaptureFixture[str], argv: list[str],
                                  contains: str) -> None:
    line = one_line_error(capsys, "simulate", "--dataset", "csbm:n=100", *argv)
    assert contains in line


def test_simulate_bad_arch_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    arch = tmp_path / "chip.toml"
    arch.write_text('name = "x"\n[aggregation]\npes = 8\nlanes = 4\n')
    line = one_line_error(capsys, "simulate", "--dataset", "csbm:n=100", "--arch", str(arch))
    assert "aggregation.lanes" in line and "allowed" in line


def test_simulate_bad_dataset_and_output(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, "simulate", "--dataset", "nosuchgraph")
    assert "unknown dataset" in line
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = one_line_error(capsys, "simulate", "--dataset", "csbm:n=100", "--json",
                          str(blocker / "out.json"))
    assert "qgnn: error:" in line
