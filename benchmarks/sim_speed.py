"""Speed of the simulator: against RTL simulation on the same Cora workload, and at scale.

Part 1 (side by side, one run): the aggregation stage of a Cora 2-layer GCN's first layer at
INT4 on the default chip (hidden 64 -> 4 words per row, 8 elements, memory latency 1; Cora's
A + I CSR with random codes: the cycles depend only on the CSR and the shape). The RTL
simulates it on Icarus through ``hw.verify`` (build time reported apart); the simulator
evaluates the same stage with :func:`sim.simulate_stage`, and the whole 2-layer model on the
chip and its FP32 counterpart with :func:`sim.simulate`. Both report the same cycle count;
the ratio is RTL wall time / simulator wall time. Without ``hw/verify.py`` or ``iverilog`` the
RTL part is reported as unavailable.

Part 2: a 2-layer GCN (INT4, hidden 64) on an R-MAT graph with >= 10^7 distinct edges
(10.4M samples at scale 20; duplicates and self-loops are removed), in a child
process so that its peak memory (``ru_maxrss``) is its own: graph generation time, simulation
time (both chips, dataflow search included) and peak RSS. Targets: simulation < 10 s, peak
< 4 GB.

Usage::

    python benchmarks/sim_speed.py [--data-root DIR] [--skip-rtl] [--skip-rmat]
                                   [--rmat-edges 10400000] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_OUT = REPO / "benchmarks" / "results" / "sim_speed.json"


def cora_stage(data: Any, bits: int, features: int, seed: int = 0) -> Any:
    import numpy as np
    from qgnn.model.golden.stage import AggregationStage
    from qgnn.model.integer import rules
    from qgnn.model.nn import graph_ops

    g = graph_ops(data)
    rng = np.random.default_rng(seed)
    n = int(data.num_nodes)
    m, s = rules.multiplier_shift(rng.uniform(0.0, 0.2, size=n))
    qmax = (1 << bits) - 1
    return AggregationStage(
        name=f"cora-layer0-int{bits}", indptr=g.indptr.numpy(), indices=g.indices.numpy(),
        codes=rng.integers(0, qmax + 1, size=(n, features)), bits=bits, out_bits=bits,
        zero_point_in=1, zero_point_out=2, multiplier=m, shift=s)


def median_time(fn: Any, repeats: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def part_cora(data_root: str | None, skip_rtl: bool) -> dict[str, Any]:
    from qgnn.model.datasets import load_dataset
    from qgnn.sim import load_arch, simulate, simulate_stage

    arch = load_arch()
    pes, latency, bits, hidden = arch.aggregation.pes, arch.aggregation.sram_latency, 4, 64
    data = load_dataset("cora", root=data_root)
    stage = cora_stage(data, bits, hidden)
    sim_stage_s, st = median_time(lambda: simulate_stage(stage, pes=pes, latency=latency), 20)
    sim_model_s, rep = median_time(lambda: simulate(data, "gcn", bits, arch=arch), 5)
    out: dict[str, Any] = {
        "workload": f"Cora GCN layer-0 aggregation, INT{bits}, {hidden} features "
                    f"({stage.words_per_row} words/row), {stage.num_terms} terms, P={pes}, "
                    f"L={latency}",
        "cycles": st.cycles,
        "simulator_stage_s": sim_stage_s,
        "simulator_stage_cycles_per_s": st.cycles / sim_stage_s,
        "simulator_full_model_s": sim_model_s,
        "full_model_cycles": rep.cycles,
        "full_model_fp32_cycles": rep.fp32_cycles,
    }
    have_rtl = (importlib.util.find_spec("qgnn.hw.verify") is not None
                and shutil.which("iverilog") is not None)
    if skip_rtl or not have_rtl:
        out["rtl"] = "unavailable" if not have_rtl else "skipped"
        return out
    from qgnn.hw.verify import verify_stages

    t0 = time.perf_counter()
    vr = verify_stages([stage], pes=pes, latency=latency, simulator="icarus")
    total = time.perf_counter() - t0
    s = vr.stages[0]
    out.update({
        "rtl": "icarus",
        "rtl_cycles": s.rtl_cycles,
        "rtl_mismatches": s.mismatches,
        "rtl_stage_s": s.wall_s,
        "rtl_build_s": vr.build_s,
        "rtl_total_s": total,
        "rtl_cycles_per_s": s.rtl_cycles / s.wall_s if s.wall_s else None,
        "cycles_equal": s.rtl_cycles == st.cycles,
        "speed_ratio_stage": s.wall_s / sim_stage_s,
        "speed_ratio_stage_vs_full_model": s.wall_s / sim_model_s,
    })
    return out


def rmat_child(edges: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from qgnn.model.datasets import load_dataset
    from qgnn.sim import simulate

    t0 = time.perf_counter()
    data = load_dataset(f"rmat:edges={edges},scale=20")
    t1 = time.perf_counter()
    rep = simulate(data, "gcn", 4)
    t2 = time.perf_counter()
    return {
        "graph": data.name, "num_nodes": int(data.num_nodes), "num_edges": int(data.num_edges),
        "generate_s": t1 - t0, "simulate_s": t2 - t1,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cycles": rep.cycles, "fp32_cycles": rep.fp32_cycles,
        "speedup_vs_fp32": rep.speedup_vs_fp32, "dataflow": rep.run.orders,
    }


def part_rmat(edges: int) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--rmat-child", "--rmat-edges", str(edges)],
                          capture_output=True, text=True, cwd=REPO, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"R-MAT child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--skip-rtl", action="store_true")
    ap.add_argument("--skip-rmat", action="store_true")
    ap.add_argument("--rmat-edges", type=int, default=10_400_000,
                    help="R-MAT edge samples (10.4M samples keep >= 10^7 distinct edges)")
    ap.add_argument("--rmat-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    if args.rmat_child:
        print(json.dumps(rmat_child(args.rmat_edges)))
        return 0
    import torch

    torch.set_num_threads(1)
    result: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg": os.getloadavg()},
        "command": "python benchmarks/sim_speed.py " + " ".join(argv or sys.argv[1:]),
    }
    cora = part_cora(args.data_root, args.skip_rtl)
    result["cora"] = cora
    print(f"Cora: {cora['workload']}")
    print(f"  simulator: {cora['cycles']} cycles in {cora['simulator_stage_s'] * 1e3:.2f} ms "
          f"(stage); whole 2-layer model, quantized + FP32 chips: "
          f"{cora['simulator_full_model_s'] * 1e3:.1f} ms")
    if isinstance(cora.get("rtl_stage_s"), float):
        print(f"  RTL (Icarus): {cora['rtl_cycles']} cycles in {cora['rtl_stage_s']:.2f} s "
              f"(+ {cora['rtl_build_s']:.1f} s build); {cora['rtl_cycles_per_s']:.0f} cycles/s")
        print(f"  cycles equal: {cora['cycles_equal']}; simulator is "
              f"{cora['speed_ratio_stage']:.0f}x faster on the stage, "
              f"{cora['speed_ratio_stage_vs_full_model']:.0f}x faster simulating the whole "
              f"model (both chips) than the RTL simulates one stage")
    else:
        print(f"  RTL: {cora['rtl']}")
    if not args.skip_rmat:
        rm = part_rmat(args.rmat_edges)
        result["rmat"] = rm
        print(f"R-MAT {rm['num_edges']} edges, {rm['num_nodes']} nodes: generate "
              f"{rm['generate_s']:.1f} s, simulate {rm['simulate_s']:.2f} s (target < 10 s), "
              f"peak RSS {rm['peak_rss_mb']:.0f} MB (target < 4096 MB)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
