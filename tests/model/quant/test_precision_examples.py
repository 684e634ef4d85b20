"""The precision files in examples/precision/ load, and the GIN example is exactly the
configuration of the README's GIN mixed row (benchmarks/accuracy.py's choice)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from qgnn.model.quant import PrecisionConfig

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "examples/precision").glob("*.toml")))
def test_example_loads_with_node_buckets(name: str) -> None:
    prec = PrecisionConfig.load(str(REPO / "examples/precision" / name))
    assert prec.to_dict()["nodes"]["by"] in ("degree_quantile", "degree_threshold", "learned")


def test_gin_example_is_the_benchmarks_choice() -> None:
    spec = importlib.util.spec_from_file_location("qgnn_bench_accuracy",
                                                  REPO / "benchmarks/accuracy.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        chosen = bench.CHOSEN["gin"]
        want = bench.precision_of(f"mixed:{chosen}")
        recipe = bench.MIXED_TRAIN.get(chosen, {})
    finally:
        del sys.modules[spec.name]
    got = PrecisionConfig.load(str(REPO / "examples/precision/gin-degree-mixed.toml"))
    assert got == want
    text = (REPO / "examples/precision/gin-degree-mixed.toml").read_text()
    assert f"--lr {recipe['lr']}" in text and f"--epochs {recipe['epochs']}" in text
