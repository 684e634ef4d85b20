"""Integer-only inference against FP32 inference on the CPU, side by side in one run.

For each graph (Cora, and a synthetic R-MAT graph with 10^6 edges) and each model, the same
architecture is built at FP32 and at INT8/INT4/INT2, calibrated on the graph (inference speed
does not depend on training), and timed: FP32 = the PyTorch model in eval mode; integer = the
integer-only model (numpy int64 codes and accumulators) of the quantized one. Timings are
interleaved (FP32, INT8, INT4, INT2, FP32, ...) so machine load hits all alike; the median of
``--repeats`` runs is reported.

This CPU path is the golden reference, not the product's speed claim.

    python benchmarks/integer_inference.py [--repeats 5] [--threads 1] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qgnn.model.datasets import load_dataset  # noqa: E402
from qgnn.model.integer.convert import model_input, to_integer  # noqa: E402
from qgnn.model.nn import ModelConfig, build_model  # noqa: E402
from qgnn.model.nn.graph_ops import graph_ops  # noqa: E402
from qgnn.model.quant import PrecisionConfig  # noqa: E402
from qgnn.model.train import calibrate  # noqa: E402

GRAPHS = {
    "cora": "cora",
    "rmat-1e6": "rmat:edges=1000000,scale=16,features=64,classes=8",
}


def build(data: Any, name: str, bits: int) -> Any:
    torch.manual_seed(0)
    n_cls = int(getattr(data, "num_classes", int(data.y.max()) + 1))
    m = build_model(ModelConfig(name=name), data.num_features, n_cls, PrecisionConfig.uniform(bits))
    calibrate(m, data)
    m.eval()
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--models", default="gcn,sage,decoupled")
    ap.add_argument("--graphs", default=",".join(GRAPHS))
    ap.add_argument("--data-root", default=os.environ.get("QGNN_DATA_ROOT"))
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/integer_inference.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for gname in args.graphs.split(","):
        data = load_dataset(GRAPHS[gname], root=args.data_root)
        g = graph_ops(data)
        x = model_input(data)
        for name in args.models.split(","):
            fp32 = build(data, name, 32)
            ints = {b: to_integer(build(data, name, b), data) for b in (8, 4, 2)}
            times: dict[str, list[float]] = {"fp32": [], **{f"int{b}": [] for b in ints}}
            for _ in range(args.repeats):
                t = time.perf_counter()
                with torch.no_grad():
                    fp32(x, g)
                times["fp32"].append(time.perf_counter() - t)
                for b, im in ints.items():
                    t = time.perf_counter()
                    im.forward(x)
                    times[f"int{b}"].append(time.perf_counter() - t)
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, v in med.items():
                row = {"graph": gname, "nodes": int(data.num_nodes), "edges": int(data.edge_index.shape[1]),
                       "model": name, "precision": k, "median_ms": 1e3 * v,
                       "min_ms": 1e3 * min(times[k]), "max_ms": 1e3 * max(times[k]),
                       "vs_fp32": v / med["fp32"]}
                rows.append(row)
                print(f"{gname:9s} {name:10s} {k:5s} {1e3 * v:9.1f} ms  ({v / med['fp32']:.2f}x FP32 time)",
                      flush=True)
    out = {"threads": args.threads, "repeats": args.repeats, "rows": rows,
           "load_average": os.getloadavg()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
