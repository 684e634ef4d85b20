"""Integer-only inference against FP32 inference on the CPU, side by side in one run.

For each graph (Cora, and a synthetic R-MAT graph with 10^6 edges) and each model, the same
architecture is built at FP32 and at INT8/INT4/INT2, calibrated on the graph (inference speed
does not depend on training), and timed: FP32 = the PyTorch model in eval mode; integer = the
integer-only model (vectorised int64 kernels, ``model/integer/kernels.py``) of the quantized
one; reference = the same integer model on its straightforward reference path
(``kernels.reference_path()``: the implementation before vectorisation). Timings are
interleaved (FP32, INT8, INT4, INT2, reference INT8, ... , FP32, ...) so machine load hits all
alike; the median of ``--repeats`` runs is reported, as wall time and as the process's CPU time
(``time.process_time``; one thread, so it is the time the work itself took, less sensitive to
other processes on a shared machine). Before timing, every integer model's output and trace are
checked equal on both paths (``--no-check`` skips it).

This CPU path is the golden reference, not the product's speed claim.

    python benchmarks/integer_inference.py [--repeats 5] [--threads 1] [--no-reference]
        [--no-check] [--out FILE.json]   (also writes FILE.md)
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

import numpy as np  # noqa: E402
from qgnn.model.datasets import load_dataset  # noqa: E402
from qgnn.model.integer.convert import model_input, to_integer  # noqa: E402
from qgnn.model.integer.kernels import reference_path  # noqa: E402
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


def check_equal(im: Any, x: Any) -> None:
    """The vectorised forward pass equals the reference path (output and every trace)."""
    with reference_path():
        want = im.forward(x)
        want_trace = {k: v[0] for k, v in im.trace.items()}
    got = im.forward(x)
    bad = [k for k, v in want_trace.items() if not np.array_equal(im.trace[k][0], v)]
    if not np.array_equal(got, want) or bad or im.trace.keys() != want_trace.keys():
        raise SystemExit(f"vectorised and reference integer paths differ: {bad or 'output'}")


def _timed(fn: Any, *args: Any) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of ``fn(*args)``."""
    w, c = time.perf_counter(), time.process_time()
    fn(*args)
    return time.perf_counter() - w, time.process_time() - c


def _run_fp32(model: Any, x: Any, g: Any) -> None:
    with torch.no_grad():
        model(x, g)


def write_markdown(out: dict[str, Any], path: Path) -> None:
    """The timing table: one row per graph and model, FP32 and each integer width."""
    rows = out["rows"]
    precs = [p for p in ("fp32", "int8", "int4", "int2") if any(r["precision"] == p for r in rows)]
    refs = [p for p in ("ref_int8", "ref_int4", "ref_int2") if any(r["precision"] == p for r in rows)]
    command = out.get("command", f"python benchmarks/integer_inference.py --repeats {out['repeats']}")
    start = out.get("load_average_start")
    load = (f"load average at the start {', '.join(f'{v:.1f}' for v in start)}, at the end "
            if start else "load average at the end ")
    lines = [
        "# Integer-only inference vs FP32 (CPU)",
        "",
        f"`{command}` "
        f"({out['threads']} thread, median of {out['repeats']}; {load}"
        f"{', '.join(f'{v:.1f}' for v in out['load_average'])}). Each cell: median wall time, "
        "then in brackets the ratio to FP32 by wall time / by CPU time. `ref` = the same "
        "integer model on its reference path (the implementation before vectorisation).",
        "",
        "| graph | model | " + " | ".join(p.upper().replace("_", " ") for p in precs + refs) + " |",
        "|---|---|" + "---|" * (len(precs) + len(refs)),
    ]
    keys = list(dict.fromkeys((r["graph"], r["model"]) for r in rows))
    for g, m in keys:
        cells = []
        for p in precs + refs:
            r = next((r for r in rows if (r["graph"], r["model"], r["precision"]) == (g, m, p)), None)
            if r is None:
                cells.append("")
            elif p == "fp32":
                cells.append(f"{r['median_ms']:.1f} ms (cpu {r['cpu_median_ms']:.1f} ms)")
            else:
                cells.append(f"{r['median_ms']:.1f} ms ({r['vs_fp32']:.2f}× / {r['cpu_vs_fp32']:.2f}×)")
        e = next(r["edges"] for r in rows if (r["graph"], r["model"]) == (g, m))
        lines.append(f"| {g} ({e:,} edges) | {m} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--models", default="gcn,sage,decoupled")
    ap.add_argument("--graphs", default=",".join(GRAPHS))
    ap.add_argument("--data-root", default=os.environ.get("QGNN_DATA_ROOT"))
    ap.add_argument("--no-reference", action="store_true",
                    help="do not time the reference (pre-vectorisation) integer path")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the equality check of the vectorised and reference paths")
    ap.add_argument("--out", default=str(REPO / "benchmarks/results/integer_inference.json"))
    args = ap.parse_args(argv)
    command = "python benchmarks/integer_inference.py " + " ".join(
        sys.argv[1:] if argv is None else argv)
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    rows = []
    for gname in args.graphs.split(","):
        data = load_dataset(GRAPHS[gname], root=args.data_root)
        g = graph_ops(data)
        x = model_input(data)
        for name in args.models.split(","):
            fp32 = build(data, name, 32)
            ints = {b: to_integer(build(data, name, b), data) for b in (8, 4, 2)}
            if not args.no_check:
                for im in ints.values():
                    check_equal(im, x)
            kinds = ["fp32", *(f"int{b}" for b in ints)]
            if not args.no_reference:
                kinds += [f"ref_int{b}" for b in ints]
            wall: dict[str, list[float]] = {k: [] for k in kinds}
            cpu: dict[str, list[float]] = {k: [] for k in kinds}

            for _ in range(args.repeats):
                for k in kinds:
                    if k == "fp32":
                        w, c = _timed(_run_fp32, fp32, x, g)
                    elif k.startswith("ref_"):
                        with reference_path():
                            w, c = _timed(ints[int(k[7:])].forward, x)
                    else:
                        w, c = _timed(ints[int(k[3:])].forward, x)
                    wall[k].append(w)
                    cpu[k].append(c)
            med = {k: statistics.median(v) for k, v in wall.items()}
            cmed = {k: statistics.median(v) for k, v in cpu.items()}
            for k in kinds:
                row = {"graph": gname, "nodes": int(data.num_nodes), "edges": int(data.edge_index.shape[1]),
                       "model": name, "precision": k, "median_ms": 1e3 * med[k],
                       "min_ms": 1e3 * min(wall[k]), "max_ms": 1e3 * max(wall[k]),
                       "vs_fp32": med[k] / med["fp32"], "cpu_median_ms": 1e3 * cmed[k],
                       "cpu_vs_fp32": cmed[k] / cmed["fp32"]}
                rows.append(row)
                print(f"{gname:9s} {name:10s} {k:8s} {1e3 * med[k]:9.1f} ms  ({med[k] / med['fp32']:.2f}x FP32 "
                      f"wall, {cmed[k] / cmed['fp32']:.2f}x FP32 cpu)", flush=True)
    out = {"command": command.strip(), "threads": args.threads, "repeats": args.repeats,
           "rows": rows, "load_average_start": load_start, "load_average": os.getloadavg(),
           "checked_equal": not args.no_check}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    write_markdown(out, path.with_suffix(".md"))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
