"""Whole-graph RTL verification of a large synthetic graph: export + verify wall times.

Exports layer 0 of a GCN trained briefly on a CSBM graph (default 20,000 nodes, average degree
5: 50,000 undirected edges stored both ways = 100,000 directed edges, 120,000 CSR terms with
self-loops) with ``qgnn export``, then verifies it bit for bit with ``qgnn verify`` on the
free-running bench (Verilator by default), each as its own process the way a user runs them.
Prints and records the wall time of each step, the build and simulation times ``qgnn verify``
reports, and whether the cache of Verilator's run-time objects (hw/vlcache.py) was warm.

Usage::

    python benchmarks/verify_large.py [--nodes 20000] [--degree 5] [--bits 4] [--epochs 2]
        [--simulator verilator|icarus] [--cold-cache] [--work DIR] [--out FILE]

``--cold-cache`` points ``QGNN_CACHE_DIR`` at an empty directory (a first build on a fresh
machine). Exit status 0 when every word and the cycle count matched.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running without installing the package
    sys.path.insert(0, str(REPO))

from qgnn.core.atomic import write_json_atomic  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "verify_large.json"
_CLI = "import sys; from qgnn.sweeps.cli import main; sys.exit(main(sys.argv[1:]))"


def _qgnn(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CLI, *args], env=env, capture_output=True,
                          text=True, check=False)
    return time.perf_counter() - t0, proc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=20_000)
    ap.add_argument("--degree", type=float, default=5.0,
                    help="average degree in directed edges (default: %(default)s)")
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--simulator", default="verilator", choices=["verilator", "icarus"])
    ap.add_argument("--cold-cache", action="store_true",
                    help="empty QGNN_CACHE_DIR: Verilator's run-time objects are compiled too")
    ap.add_argument("--work", default=None, help="keep the vectors and the build here")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="qgnn-large-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.cold_cache:
        env["QGNN_CACHE_DIR"] = str(work / "empty-cache")
        shutil.rmtree(env["QGNN_CACHE_DIR"], ignore_errors=True)
    from qgnn.hw.vlcache import cache_root

    root = Path(env["QGNN_CACHE_DIR"]) if env.get("QGNN_CACHE_DIR") else cache_root()
    rt = root / "verilator-runtime"
    warm = rt.is_dir() and any(p.is_dir() and any(p.iterdir()) for p in rt.iterdir())

    vec = work / "vectors"
    shutil.rmtree(vec, ignore_errors=True)
    dataset = f"csbm:n={args.nodes},degree={args.degree:g}"
    export_s, proc = _qgnn(["export", "--dataset", dataset, "--model", "gcn", "--bits",
                            str(args.bits), "--layer", "0", "--epochs", str(args.epochs),
                            "--threads", "1", "--quiet", "--out", str(vec)], env)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        return 1
    print(f"export {dataset}: {export_s:.1f} s", flush=True)
    report = work / "verify.json"
    verify_s, proc = _qgnn(["verify", "--vectors", str(vec), "--simulator", args.simulator,
                            "--json", str(report), "--work-dir", str(work / "build")], env)
    print(proc.stdout.strip())
    if proc.returncode not in (0, 1) or not report.is_file():
        print(proc.stderr, file=sys.stderr)
        return 1
    d = json.loads(report.read_text())
    (st,) = d["stages"]
    total = export_s + verify_s
    print(f"verify on {args.simulator}: {verify_s:.1f} s (build {d['build_s']:.1f} s, "
          f"simulation {d['sim_s']:.2f} s, {d['sim_cycles_per_s']:.0f} cycles/s); "
          f"export + verify {total:.1f} s; runtime cache {'warm' if warm else 'cold'}; "
          f"{'OK' if d['ok'] else 'FAIL'}", flush=True)
    write_json_atomic(Path(args.out), {
        "benchmark": "verify_large",
        "command": "python benchmarks/verify_large.py " + " ".join(argv or sys.argv[1:]),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2)},
        "dataset": dataset, "bits": args.bits, "epochs": args.epochs,
        "simulator": args.simulator, "bench": d["bench"], "runtime_cache_warm": warm,
        "num_nodes": st["num_nodes"], "num_terms": st["num_terms"],
        "words_per_row": st["words_per_row"], "outputs_checked": d["outputs_checked"],
        "mismatches": d["mismatches"], "rtl_cycles": d["rtl_cycles"],
        "expected_cycles": d["expected_cycles"], "ok": d["ok"],
        "export_wall_s": round(export_s, 2), "verify_wall_s": round(verify_s, 2),
        "total_wall_s": round(total, 2), "build_s": d["build_s"], "sim_s": d["sim_s"],
        "sim_cycles_per_s": d["sim_cycles_per_s"],
    })
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if d["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
