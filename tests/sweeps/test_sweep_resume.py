"""Crash safety: SIGKILL `qgnn sweep` mid-sweep, rerun, and check nothing finished is redone or
lost and the result files are whole."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from qgnn.sweeps.runner import read_events, run_sweep
from qgnn.sweeps.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
N_POINTS = 12


def write_spec(path: Path) -> None:
    # 12 distinct model configurations (no sharing): every point trains once.
    path.write_text(
        '[fixed]\n'
        'dataset = "csbm:n=300,features=16,degree=6"\n'
        'epochs = 30\n'
        'seeds = 1\n'
        '[grid]\n'
        'bits = [8, 4, 3, 2]\n'
        'hidden = [16, 24, 32]\n'
        '[evaluate]\n'
        'simulate = false\n'
    )


def sweep_cmd(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "qgnn.sweeps.cli", "sweep", str(spec), "--out", str(out),
            "--workers", "2", "--quiet"]


def env(tmp_path: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), QGNN_OFFLINE="1", PYTHONUNBUFFERED="1")
    e.pop("QGNN_DEBUG", None)
    return e


def snapshot(out: Path) -> dict[str, tuple[bytes, int]]:
    return {f.stem: (f.read_bytes(), f.stat().st_mtime_ns)
            for f in (out / "points").glob("*.json")}


def test_sigkill_mid_sweep_then_resume(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.toml"
    write_spec(spec_path)
    spec = load_spec(spec_path)
    assert len(spec) == N_POINTS
    out = tmp_path / "out"

    proc = subprocess.Popen(sweep_cmd(spec_path, out), cwd=REPO, env=env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if len(list((out / "points").glob("*.json"))) >= 3:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the sweep ended before it could be killed:\n" + \
            proc.stderr.read().decode()  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)  # the main process only, as a crash would
        proc.wait(timeout=30)
        # Its worker processes notice and exit by themselves.
        orphans_gone = False
        for _ in range(300):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                orphans_gone = True
                break
            time.sleep(0.05)
    finally:
        try:  # cleanup of our own process group, whatever happened
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)
    assert orphans_gone, "worker processes outlived the killed sweep by 15 s"
    assert proc.returncode == -signal.SIGKILL

    before = snapshot(out)
    assert 3 <= len(before) < N_POINTS, f"{len(before)} points finished before the kill"
    for rec in before.values():
        assert json.loads(rec[0])["status"] == "ok"  # complete, parseable files only
    cached_before = {f.stem for f in (out / "cache" / "accuracy").glob("*.json")}

    time.sleep(0.05)  # a rewrite would give a later mtime
    # Rerun in this process (same code path as the command; saves a second start-up).
    res = run_sweep(spec, out, workers=2, progress=False, log=lambda _l: None)
    assert not res.interrupted and res.failed == 0

    # -- nothing lost, nothing finished recomputed
    after = snapshot(out)
    assert set(after) == {p.point_id for p in spec.points}
    for pid, (data, mtime) in before.items():
        assert after[pid] == (data, mtime), f"finished point {pid} was rewritten"
    events = read_events(out)
    runs = [e["run"] for e in events if e["event"] == "run-start"]
    assert len(runs) == 2
    done = Counter(e["point"] for e in events if e["event"] == "point-done")
    for pid in before:
        assert done[pid] == 1, f"point {pid} computed {done[pid]} times"
    second = [e for e in events if e["run"] == runs[1]]
    assert second[0]["reused"] == len(before)
    assert second[-1]["event"] == "run-end"
    assert second[-1]["computed"] == N_POINTS - len(before)
    # trainings redone only for configurations without a cached accuracy
    trained_again = {e["model_hash"] for e in second if e["event"] == "train-done"}
    assert not trained_again & cached_before
    assert len(trained_again) == N_POINTS - len(cached_before)
    assert (res.reused, res.computed) == (len(before), N_POINTS - len(before))

    # -- result files are whole and complete; no temporary files left behind
    df = pd.read_parquet(out / "results.parquet")
    df_csv = pd.read_csv(out / "results.csv")
    assert len(df) == len(df_csv) == N_POINTS
    assert sorted(df["config_hash"]) == sorted(p.point_id for p in spec.points)
    assert (df["status"] == "ok").all()
    run_of = dict(zip(df["config_hash"], df["run_id"], strict=True))
    assert len({run_of[pid] for pid in before}) == 1          # all from the killed run
    assert {run_of[pid] for pid in after if pid not in before} == {runs[1]}
    assert not list(out.rglob(".*.tmp"))


def test_lock_refuses_a_second_sweep_on_the_same_out(tmp_path: Path) -> None:
    import fcntl

    from qgnn.sweeps.spec import parse_spec

    out = tmp_path / "out"
    out.mkdir()
    spec = parse_spec({"fixed": {"dataset": "csbm:n=50"}, "grid": {"bits": [4]},
                       "evaluate": {"simulate": False}}, arch_schema=None)
    with (out / ".sweep.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(OSError, match="another qgnn sweep is writing to"):
            run_sweep(spec, out, progress=False, log=lambda _l: None)
    assert not list((out / "points").glob("*.json"))
