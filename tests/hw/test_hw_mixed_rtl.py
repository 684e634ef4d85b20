"""The mixed-width engine's exported Verilog on Icarus (cocotb, testbench module mixed_tb):
random mixed stages with exact words and cycles, random valid/ready stalls, reset mid-run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from qgnn.hw.mixed_export import build_mixed_rtl, generate_mixed_verilog, run_mixed_cocotb
from qgnn.hw.mixed_memimage import mixed_memory_image
from qgnn.hw.mixed_params import MixedParams
from qgnn.model.golden.mixed_stage import MixedAggregationStage, random_mixed_stage
from sim_markers import needs_icarus

HERE = Path(__file__).resolve().parent


def stages() -> list:
    """Three buckets (INT2 / INT4 / INT8 by in-degree), degree-0 rows, F not a multiple of
    the lanes (1..3 input words per row at 32-bit words), N < P included; INT2-only (K = 1)."""
    shapes = [  # seed, nodes, features, bits, out_bits, degree, isolated
        (1, 17, 13, (2, 4, 8), (4, 8, 2), 3.0, 0.2),
        (2, 12, 9, (2, 8), (2, 8), 2.0, 0.0),
        (3, 2, 11, (4, 2, 8), None, 1.0, 0.5),
        (4, 9, 16, (2,), None, 4.0, 0.1),
    ]
    return [random_mixed_stage(seed, num_nodes=n, features=f, bits=b, out_bits=o, avg_degree=d,
                               isolated_fraction=iso, word_width=32, r_bits=6, name=f"mixed{seed}")
            for seed, n, f, b, o, d, iso in shapes]


@pytest.mark.rtl
@needs_icarus
@pytest.mark.parametrize("overlap", [True, False])
def test_mixed_engine_icarus(overlap: bool, tmp_path: Path) -> None:
    st = stages()
    prm = MixedParams(in_widths=(2, 4, 8), word_width=32, pes=3,
                      max_terms=max(s.max_terms for s in st), max_features=16, r_bits=6,
                      max_latency=4, max_buckets=3, overlap_drain=overlap)
    images = [asdict(mixed_memory_image(s, prm)) for s in st]
    runner = build_mixed_rtl(prm, tmp_path / "build")
    result = tmp_path / "result.json"
    cfg = {"params": prm.to_dict(), "images": images, "latency": 2, "stall": 0.3, "seed": 5,
           "result": str(result)}
    xml = run_mixed_cocotb(runner, "mixed_tb", cfg, tmp_path / "run", extra_paths=[str(HERE)])
    text = Path(xml).read_text()
    assert "<failure" not in text and "<error" not in text, text[-2000:]
    rows = json.loads(result.read_text())
    assert [r["name"] for r in rows] == [s.name for s in st]
    assert all(r["rtl_cycles"] == r["expected_cycles"] for r in rows)


def test_mixed_verilog_is_deterministic_and_path_free() -> None:
    prm = MixedParams(in_widths=(2, 8), word_width=16, pes=1, max_terms=3, max_features=4,
                      r_bits=2, max_buckets=2)
    a, b = generate_mixed_verilog(prm), generate_mixed_verilog(prm)
    assert a == b and "module qgnn_mixed_engine" in a
    assert not any(p in a for p in ("/work", "/tmp", "/home"))
    for port in ("desc_resp__0__payload", "idx_resp__0__payload", "out__0__payload",
                 "weight__1", "in_sel__0", "z_out__1", "features", "overflow"):
        assert port in a


def cora_mixed_stage(root: str | None = None) -> MixedAggregationStage:
    """Cora's layer-0 CSR (2708 rows, 13264 terms with self-loops), 64 features: the nodes of
    the top 10% in-degree at INT8 (R = 1), the rest at INT2 with R = 85 (an INT2 step is 85
    INT8 steps), random codes; outputs at the node's width."""
    from qgnn.hw.stages import cora_stage
    from qgnn.model.integer import rules

    base = cora_stage(2, features=64, root=root)
    n = base.num_nodes
    in_deg = np.bincount(base.indices, minlength=n)
    bucket = np.zeros(n, dtype=np.int64)
    bucket[np.argsort(-in_deg, kind="stable")[:round(0.1 * n)]] = 1
    rng = np.random.default_rng(12)
    codes = rng.integers(0, 256, (n, 64)) % np.where(bucket == 1, 256, 4)[:, None]
    s = MixedAggregationStage(
        name="cora.mixed.int2_int8", indptr=base.indptr, indices=base.indices, codes=codes,
        src_bucket=bucket, bits_in=(2, 8), z_in=(1, 128), weight=(85, 1), dst_bucket=bucket,
        out_bits=(2, 8), z_out=(1, 128), multiplier=np.zeros(n, np.int64),
        shift=np.zeros(n, np.int64), r_bits=7)
    span = np.abs(s.corrected()).max(axis=1) + 1
    factor = rng.uniform(0.5, 1.5, n) * np.where(bucket == 1, 256, 4) / span
    s.multiplier, s.shift = rules.multiplier_shift(factor)
    return s


@pytest.mark.rtl
@pytest.mark.slow
@needs_icarus
def test_cora_mixed_icarus(tmp_path: Path, data_root: str) -> None:
    """Cora, 90% INT2 / 10% INT8 (by in-degree), P = 4, L = 1, overlapped drain: every word
    and the cycle count (qgnn.core.timing) on Icarus."""
    s = cora_mixed_stage(data_root)
    prm = MixedParams(in_widths=(2, 8), word_width=64, pes=4, max_terms=s.max_terms,
                      max_features=64, r_bits=7, max_latency=4, max_buckets=2)
    img = mixed_memory_image(s, prm)
    runner = build_mixed_rtl(prm, tmp_path / "build")
    result = tmp_path / "result.json"
    cfg = {"params": prm.to_dict(), "images": [asdict(img)], "latency": 1, "stall": 0.0,
           "seed": 1, "result": str(result), "ideal_only": True}
    xml = run_mixed_cocotb(runner, "mixed_tb", cfg, tmp_path / "run", extra_paths=[str(HERE)])
    assert "<failure" not in Path(xml).read_text()
    (row,) = json.loads(result.read_text())
    assert row["rtl_cycles"] == row["expected_cycles"]
