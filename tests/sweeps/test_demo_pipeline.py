"""The demo pipeline (sweeps/demo_pipeline.py): its spec, its failure detection, and (slow, rtl)
one end-to-end run with few epochs."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from qgnn.sweeps.demo_pipeline import DEMO_BITS, HW_BITS, demo_spec, golden_failures
from qgnn.sweeps.evaluate import arch_defaults, export_available, hw_available, sim_available

REPO = Path(__file__).resolve().parents[2]


def test_demo_spec_is_the_example_file() -> None:
    if arch_defaults() is None:
        pytest.skip("sim/ is not installed")
    from qgnn.sweeps.spec import load_spec

    spec = demo_spec()
    example = load_spec(REPO / "examples" / "sweeps" / "demo.toml")
    assert [p.point_id for p in spec] == [p.point_id for p in example]
    assert [p.params["precision"]["bits"] for p in spec] == list(DEMO_BITS)
    assert all(p.params["dataset"] == "cora" and p.params["model"] == "gcn"
               and p.params["layers"] == 2 and p.seeds == [0, 1, 2] for p in spec)
    assert len({p.model_hash for p in spec}) == 4
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        demo_spec(seeds=0)


def good_record() -> dict[str, Any]:
    stages = [{"name": "layer0.aggregate", "sim_cycles": 14185},
              {"name": "layer1.aggregate", "sim_cycles": 3556}]
    vstages = [{"name": s["name"], "rtl_cycles": s["sim_cycles"],
                "expected_cycles": s["sim_cycles"], "mismatches": 0, "overflow": False,
                "cycles_ok": True} for s in stages]
    return {"status": "ok", "bits": 4, "stages": stages,
            "verify": {"ok": True, "mismatches": 0, "outputs_checked": 13540,
                       "first_mismatch": None, "stages": vstages}}


def test_golden_failures_detects_every_kind_of_failure() -> None:
    assert golden_failures(good_record()) == []

    r = good_record()
    r["verify"].update(ok=False, mismatches=3, first_mismatch={
        "stage": "layer0.aggregate", "node": 7, "word": 1, "expected": 5, "got": 4})
    r["verify"]["stages"][0]["mismatches"] = 3
    (msg,) = golden_failures(r)
    assert msg.startswith("INT4: RTL output differs") and "3 of 13540 words" in msg
    assert "node 7" in msg

    r = good_record()
    r["stages"][1]["sim_cycles"] = 3555  # the simulator disagrees with the RTL by one cycle
    (msg,) = golden_failures(r)
    assert "layer1.aggregate" in msg and "3556" in msg and "simulator says 3555" in msg

    r = good_record()
    r["verify"]["ok"] = False
    r["verify"]["stages"][0].update(cycles_ok=False, expected_cycles=14000)
    (msg,) = golden_failures(r)
    assert "timing contract says 14000" in msg

    r = good_record()
    r["verify"]["stages"][0]["overflow"] = True
    assert any("overflow" in m for m in golden_failures(r))

    r = good_record()
    r["verify"]["stages"].pop()
    assert any("2 stages exported but 1 verified" in m for m in golden_failures(r))

    assert golden_failures({"status": "error", "bits": 2, "error": "boom"}) == ["INT2: boom"]

    r = good_record()
    r["verify"]["ok"] = False  # hw says not ok for a reason not broken out above
    assert golden_failures(copy.deepcopy(r)) == ["INT4: RTL verification failed"]


@pytest.fixture()
def data_root() -> Path:
    env = os.environ.get("QGNN_DATA_ROOT")
    root = Path(env) if env else REPO.parent / "shared" / "datasets"
    if not (root / "Cora" / "raw" / "ind.cora.graph").is_file():
        pytest.skip(f"no Cora raw files under {root}: set QGNN_DATA_ROOT")
    return root


@pytest.mark.slow
@pytest.mark.rtl
def test_demo_end_to_end(tmp_path: Path, data_root: Path,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    if not (sim_available() and hw_available() and export_available()
            and shutil.which("iverilog")):
        pytest.skip("needs sim/, hw.verify, the golden export and Icarus Verilog")
    from qgnn.sweeps.demo_pipeline import run_demo_pipeline

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    out = tmp_path / "demo"
    res = run_demo_pipeline(out, data_root=data_root, seeds=1, epochs=10, workers=2,
                            progress=False, log=lambda _l: None)
    assert res.ok and res.failures == []
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True and [r["bits"] for r in summary["runs"]] == [
        "fp32", "int8", "int4", "int2"]
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == 4 and (df["status"] == "ok").all()
    hw_rows = df[df["precision.bits"].isin(HW_BITS)]
    assert (hw_rows["rtl_mismatches"] == 0).all() and (hw_rows["rtl_outputs_checked"] > 0).all()
    assert (hw_rows["rtl_cycles"] == hw_rows["sim_stage_cycles"]).all()
    fp = df[df["precision.bits"] == 32].iloc[0]
    assert fp["speedup_vs_fp32"] == 1.0
    assert (hw_rows["speedup_vs_fp32"] > 1.0).all()  # every integer model beats FP32 here
    for b in HW_BITS:
        assert (out / "vectors" / f"int{b}" / "manifest.json").is_file()
        assert json.loads((out / "verify" / f"int{b}.json").read_text())["mismatches"] == 0
    report = (out / "report.md").read_text()
    assert "All steps passed" in report
    for png in ("pareto_energy", "pareto_latency", "energy_breakdown", "accuracy_vs_bits"):
        assert f"({png}.png)" in report and (out / f"{png}.png").is_file()
