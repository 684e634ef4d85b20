"""A real sweep of 8 points on a Dask LocalCluster (2 worker processes)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from qgnn.sweeps.evaluate import sim_available
from qgnn.sweeps.runner import read_events, run_sweep
from qgnn.sweeps.spec import PARAMS, parse_spec

DATASET = "csbm:n=200,features=16,degree=6"
FIXED = {"dataset": DATASET, "epochs": 8, "seeds": 1, "hidden": 16}
BAD_DATASET = "csbm:n=10,degree=20"  # valid name, impossible graph: fails when generated


@pytest.fixture(autouse=True)
def isolated_env(tmp_path_factory: pytest.TempPathFactory,
                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg")))
    monkeypatch.setenv("QGNN_OFFLINE", "1")


def make_spec() -> Any:
    if sim_available():
        # 4 bit widths x 2 chips; INT8 on a chip without an 8-bit mode fails in simulation.
        return parse_spec({
            "name": "run-test", "fixed": FIXED,
            "grid": {"bits": [32, 8, 4, 2], "arch": {"aggregation": {"bits": [[2, 4, 8], [2, 4]]}}},
        })
    return parse_spec({  # without sim/: accuracy only; the impossible graph fails in training
        "name": "run-test", "fixed": FIXED, "evaluate": {"simulate": False},
        "grid": {"dataset": [DATASET, BAD_DATASET], "bits": [32, 8, 4, 2]},
    }, arch_schema=None)


def dominated(r: dict[str, Any], rows: list[dict[str, Any]], cost: str) -> bool:
    return any(q is not r and q["test_acc_mean"] >= r["test_acc_mean"] and q[cost] <= r[cost]
               and (q["test_acc_mean"] > r["test_acc_mean"] or q[cost] < r[cost])
               for q in rows)


def test_sweep_of_8_points_on_a_local_cluster(tmp_path: Path) -> None:
    import torch
    from qgnn.model.datasets import load_dataset
    from qgnn.model.train import train_seeds

    spec = make_spec()
    assert len(spec) == 8
    out = tmp_path / "out"
    res = run_sweep(spec, out, workers=2, progress=False, log=lambda _l: None,
                    meta={"command": "test"})

    # -- every point finished; the failing one is recorded and the sweep went on
    files = sorted((out / "points").glob("*.json"))
    assert sorted(f.stem for f in files) == sorted(p.point_id for p in spec.points)
    recs = {f.stem: json.loads(f.read_text()) for f in files}
    failed = [r for r in recs.values() if r["status"] == "error"]
    if sim_available():
        assert (res.ok, res.failed) == (7, 1)
        assert failed[0]["params"]["precision"]["bits"] == 8
        assert failed[0]["params"]["arch"] == {"aggregation": {"bits": [2, 4]}}
        assert failed[0]["error"].startswith("simulate: ")
        assert "aggregation.bits" in failed[0]["error"]
        # architecture variations do not retrain: one training per bit width
        assert res.trainings == 4
        assert len(list((out / "cache" / "accuracy").glob("*.json"))) == 4
    else:
        assert (res.ok, res.failed) == (4, 4)
        assert all(r["params"]["dataset"] == BAD_DATASET and "DatasetError" in r["error"]
                   for r in failed)
        assert res.trainings == 8
    assert res.computed == 8 and res.reused == 0 and not res.interrupted

    # -- tidy results: one row per point with every parameter and the provenance
    df_csv = pd.read_csv(out / "results.csv")
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == len(df_csv) == 8
    assert list(df["config_hash"]) == [p.point_id for p in spec.points]
    for col in (*PARAMS, "bits", "precision.bits", "status", "error", "model_hash",
                "qgnn_version", "git_sha", "wall_time_s", "test_acc_mean", "test_acc_std",
                "pareto_energy", "pareto_latency"):
        assert col in df.columns, col
    assert (df["qgnn_version"] != "").all() and df["git_sha"].notna().all()
    ok = df[df["status"] == "ok"]
    assert ((ok["test_acc_mean"] >= 0) & (ok["test_acc_mean"] <= 100)).all()
    assert (ok["wall_time_s"] >= 0).all()

    # -- accuracy equals training the same configuration directly (same seed, 1 thread)
    p = next(p for p in spec.points if p.params["precision"]["bits"] == 4
             and p.params["dataset"] == DATASET)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = train_seeds(load_dataset(DATASET), DATASET, p.model_config(),
                             p.precision_config(), p.train_config(), p.seeds).to_dict()
    finally:
        torch.set_num_threads(threads)
    row = df[df["config_hash"] == p.point_id].iloc[0]
    assert row["test_acc_mean"] == pytest.approx(direct["test_acc_mean"], abs=1e-9)

    if sim_available():
        from qgnn import sim

        # -- simulator figures equal a direct call
        rep = sim.simulate(DATASET, model="gcn", bits=4, hidden=16, layers=2).to_dict()
        row = df[(df["precision.bits"] == 4)
                 & (df["arch.aggregation.bits"].astype(str).str.contains("8"))].iloc[0]
        assert row["cycles"] == rep["cycles"]
        assert row["energy_pj"] == pytest.approx(rep["energy_pj"], rel=1e-12)
        assert row["speedup_vs_fp32"] == pytest.approx(rep["speedup_vs_fp32"], rel=1e-12)
        # the FP32 point on the same chip is the FP32 counterpart
        fp = df[(df["precision.bits"] == 32)
                & (df["arch.aggregation.bits"].astype(str).str.contains("8"))].iloc[0]
        assert fp["cycles"] == rep["fp32_cycles"] and fp["speedup_vs_fp32"] == 1.0

        # -- Pareto marks follow the definition (checked against every other ok row)
        rows = ok.to_dict("records")
        for col, cost in (("pareto_energy", "energy_pj"), ("pareto_latency", "cycles")):
            for r in rows:
                assert bool(r[col]) == (not dominated(r, rows, cost)), (col, r["config_hash"])
            assert ok[col].any()
        assert not df[df["status"] == "error"][["pareto_energy", "pareto_latency"]].any().any()
        for name in ("pareto_energy", "pareto_latency", "energy_breakdown", "accuracy_vs_bits"):
            assert (out / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert res.paths[name] == out / f"{name}.png"
    report = (out / "report.md").read_text()
    assert "## Failed points" in report and failed[0]["point_id"][:8] in report

    # -- a second run reuses everything
    again = run_sweep(spec, out, workers=2, progress=False, log=lambda _l: None)
    assert (again.reused, again.computed, again.trainings) == (8, 0, 0)
    assert [f.read_text() for f in files] == [json.dumps(recs[f.stem], indent=2) + "\n"
                                              for f in files]
    starts = [e for e in read_events(out) if e["event"] == "run-start"]
    assert [e["reused"] for e in starts] == [0, 8]
    assert not any(math.isnan(v) for v in ok["test_acc_mean"])
