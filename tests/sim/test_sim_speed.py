"""The simulator at scale: a 2-layer GCN on a 10^7-edge R-MAT graph in < 10 s and < 4 GB."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_rmat_10m_edges_under_10s_and_4gb() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "sim_speed.py"), "--rmat-child",
         "--rmat-edges", "10400000"],
        capture_output=True, text=True, cwd=REPO, timeout=900)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    assert r["num_edges"] >= 10_000_000
    assert r["simulate_s"] < 10.0, r
    assert r["peak_rss_mb"] < 4096, r  # generation included
    assert r["cycles"] > 0 and r["fp32_cycles"] > r["cycles"]
