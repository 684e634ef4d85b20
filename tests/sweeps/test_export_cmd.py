"""``qgnn export``: end to end on a synthetic graph and on Cora; argument errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qgnn.model.golden.format import read_vectors
from qgnn.sweeps.cli import main


def test_export_synthetic_small_case(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "vec"
    rc = main(["export", "--dataset", "csbm:n=200,classes=3,features=16", "--model", "gcn",
               "--bits", "4", "--epochs", "5", "--out", str(out), "--layer", "1",
               "--features", "3", "--word-width", "16", "--quiet", "--trace", "--threads", "1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "predictions equal on" in text and "max |int-fake| (steps)" in text
    vs = read_vectors(out)
    assert len(vs.stages) == 1
    st = vs.stages[0].stage
    assert st.name == "layer1.aggregate" and st.features == 3 and st.word_width == 16
    assert st.num_nodes == 200 and st.bits == 4
    assert vs.manifest["source"]["model"]["name"] == "gcn"
    assert np.all(np.diff(st.indptr) >= 1)  # GCN rows include the self-loop


def test_export_cora_int2(tmp_path: Path, data_root: str) -> None:
    out = tmp_path / "cora2"
    rc = main(["export", "--dataset", "cora", "--data-root", data_root, "--model", "gcn",
               "--bits", "2", "--epochs", "3", "--out", str(out), "--quiet", "--threads", "1"])
    assert rc == 0
    vs = read_vectors(out)
    assert [g.stage.acc_width for g in vs.stages] == [9, 9]  # 169 terms of 2-bit codes
    assert vs.stages[0].stage.features == 64 and vs.stages[1].stage.features == 7


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--bits", "32"], "export needs a quantized model"),
        (["--bits", "4", "--layer", "2"], "--layer 2 out of range"),
        (["--bits", "4", "--word-width", "48"], "word width 48 not allowed"),
        (["--bits", "4", "--mult-bits", "4"], "--mult-bits must be in 8..32"),
        (["--bits", "4", "--truncation", "bt"], "--truncation bt needs --bits 2"),
    ],
)
def test_export_argument_errors(tmp_path: Path, capsys: Any, extra: list[str], message: str) -> None:
    rc = main(["export", "--dataset", "csbm:n=50", "--out", str(tmp_path / "x"), *extra])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_export_bit_truncated(tmp_path: Path, capsys: Any) -> None:
    """``--truncation bt_star`` alone gives an INT2 BT* model whose stages carry the BT fields."""
    out = tmp_path / "bt"
    rc = main(["export", "--dataset", "csbm:n=200,classes=3,features=16", "--model", "gcn",
               "--truncation", "bt_star", "--epochs", "5", "--out", str(out), "--quiet",
               "--threads", "1"])
    assert rc == 0
    assert "2-bit BT" in capsys.readouterr().out
    vs = read_vectors(out)
    assert vs.manifest["source"]["precision"]["truncation"] == "bt_star"
    for g in vs.stages:
        assert (g.stage.bits, g.stage.in_level, g.stage.out_grid_bits) == (2, 85, 8)
        assert g.stage.out_thresholds is not None and len(g.stage.out_thresholds) == 3


def test_export_smp_has_two_stages_per_step(tmp_path: Path) -> None:
    out = tmp_path / "smp"
    rc = main(["export", "--dataset", "csbm:n=200,classes=3,features=16", "--model", "decoupled",
               "--propagation", "smp", "--k", "2", "--bits", "8", "--epochs", "5",
               "--out", str(out), "--quiet", "--threads", "1"])
    assert rc == 0
    names = [g.stage.name for g in read_vectors(out).stages]
    assert names == ["layer2.aggregate", "layer2.gap_aggregate", "layer3.aggregate",
                     "layer3.gap_aggregate"]
