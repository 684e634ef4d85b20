"""RTL cycle counts on Cora and RTL simulation speed (Icarus, Verilator; driven and
free-running benches) through cocotb.

For each code width it runs one full Cora aggregation stage (2708 rows, 13264 terms with
self-loops, 64 features; random codes by default, or a golden vector set from ``qgnn export``)
on the exported engine with ``qgnn verify``'s machinery (ideal memory of latency ``L``, outputs
always ready), checks every output word, and records:

- ``rtl_cycles`` (measured) and the contract value (``qgnn.core.timing.aggregation_cycles``);
- the ideal of one word per cycle per PE: ``ideal_max`` = ``max_p S_p`` (the busiest PE, the
  engine's bound without fill) and ``ideal_balanced`` = ``W * sum_i max(n_i, 1) / P`` (perfect
  balance);
- cycles per edge (term) and per row, and the efficiency ``ideal_balanced / rtl_cycles``;
- simulation speed per simulator and bench (also per CPU second of the simulator process,
  which cocotb shares, a figure less sensitive to other jobs on a shared machine), as ``qgnn verify --json`` reports it
  (``sim_cycles_per_s``): simulated cycles per wall-clock second of the simulation alone (from
  ``start`` to ``done``; build, memory-image preparation and the Python word comparison
  excluded). ``driven``: the Python memory models of hw/cocotb_bench.py answer every request
  through cocotb, one step per cycle; ``freerun``: memories, latency and stalls in the Verilog
  harness of hw/freerun.py, cocotb only starts the run and reads the output memory once.
  Both benches run in the same invocation, one after the other, on the same stage. The
  free-running bench runs the stage ``--repeat`` times on its one build (each run checked in
  full, all required to agree) and reports the shortest; the driven bench runs once.

``--mixed DIR`` measures a mixed-precision vector set instead (version 3, e.g. from ``qgnn
export --precision examples/precision/degree-mixed.toml``): ``qgnn verify``'s run of every
mixed stage on the mixed-width engine per simulator and bench (each with its reset check, which
is not part of the timed run), one row per stage, written to
``benchmarks/results/rtl_speed_mixed.{json,md}`` unless ``--out`` says otherwise.

Usage::

    python benchmarks/rtl_speed.py [--bits 2 4 8] [--simulators icarus verilator]
        [--benches driven freerun] [--pes 4] [--latency 1] [--vectors BITS=DIR ...]
        [--data-root DIR] [--out FILE]
    python benchmarks/rtl_speed.py --mixed DIR [--simulators ...] [--benches ...]
        [--repeat N] [--out FILE]

Exit status 0 when every run matched (words and cycles), 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running without installing the package
    sys.path.insert(0, str(REPO))

from qgnn.hw.verify import verify_stages, verify_vectors  # noqa: E402

from qgnn.core.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from qgnn.core.timing import pe_slots  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "rtl_speed.json"
DEFAULT_MIXED_OUT = REPO / "benchmarks" / "results" / "rtl_speed_mixed.json"


def _row_lengths(stage: Any) -> list[int]:
    return [int(x) for x in (stage.indptr[1:] - stage.indptr[:-1])]


def run_one(bits: int, simulator: str, pes: int, latency: int, vectors: str | None,
            data_root: str | None, bench: str = "freerun", repeat: int = 1) -> dict:
    if vectors:
        from qgnn.model.golden.format import read_vectors

        vs = read_vectors(vectors, check=False)
        stage = vs.stages[0].stage
        rep = verify_vectors(vectors, simulator=simulator, pes=pes, latency=latency,
                             bench=bench, repeat=repeat if bench == "freerun" else 1)
        source = f"golden vectors {vectors} (stage {stage.name})"
    else:
        from qgnn.hw.stages import cora_stage

        stage = cora_stage(bits, root=data_root)
        rep = verify_stages([stage], simulator=simulator, pes=pes, latency=latency,
                            bench=bench, repeat=repeat if bench == "freerun" else 1)
        source = "Cora graph + self-loops, random codes (hw.stages.cora_stage)"
    d = rep.to_dict()
    s = rep.stages[0]
    lengths = _row_lengths(stage)
    W = stage.words_per_row
    slots = sum(W * max(n, 1) for n in lengths)
    balanced = slots / pes
    return {
        "bits": bits, "simulator": simulator, "bench": bench, "pes": pes, "latency": latency,
        "source": source,
        "num_nodes": s.num_nodes, "num_terms": s.num_terms, "words_per_row": W,
        "mismatches": s.mismatches, "outputs_checked": s.outputs_checked,
        "rtl_cycles": s.rtl_cycles, "contract_cycles": s.expected_cycles,
        "ideal_max": max(pe_slots(lengths, W, pes)), "ideal_balanced": balanced,
        "cycles_per_edge": s.rtl_cycles / s.num_terms,
        "cycles_per_row": s.rtl_cycles / s.num_nodes,
        "ideal_cycles_per_edge": balanced / s.num_terms,
        "efficiency": balanced / s.rtl_cycles,
        "sim_wall_s": s.wall_s, "sim_cycles_per_s": d["sim_cycles_per_s"],
        "sim_cpu_s": d["sim_cpu_s"], "sim_cycles_per_cpu_s": d["sim_cycles_per_cpu_s"],
        "build_s": rep.build_s,
        "repeats": s.repeats, "sim_wall_s_runs": s.wall_s_runs,
        "ok": rep.ok,
    }


def run_mixed(vectors: str, simulator: str, pes: int, latency: int, bench: str,
              repeat: int) -> list[dict]:
    """One ``qgnn verify`` of the mixed set ``vectors``; one row per mixed stage."""
    rep = verify_vectors(vectors, simulator=simulator, pes=pes, latency=latency, bench=bench,
                         repeat=repeat if bench == "freerun" else 1)
    d = rep.to_dict()
    rows = []
    for s, sd in zip(rep.stages, d["stages"], strict=True):
        if s.kind != "mixed":
            continue
        rows.append({
            "stage": s.name, "simulator": simulator, "bench": bench, "pes": pes,
            "latency": latency, "source": f"mixed golden vectors {vectors}",
            "num_nodes": s.num_nodes, "num_terms": s.num_terms,
            "mismatches": s.mismatches, "outputs_checked": s.outputs_checked,
            "rtl_cycles": s.rtl_cycles, "contract_cycles": s.expected_cycles,
            "sim_wall_s": s.wall_s, "sim_cycles_per_s": sd["sim_cycles_per_s"],
            "sim_cpu_s": s.cpu_s,
            "sim_cycles_per_cpu_s": (s.rtl_cycles / s.cpu_s if s.cpu_s else None),
            "reset_at": s.reset_at, "reset_ok": s.reset_ok,
            "build_s": rep.build_s, "repeats": s.repeats, "sim_wall_s_runs": s.wall_s_runs,
            "params": next(x["params"] for x in rep.designs if x.get("kind") == "mixed"),
            "ok": s.ok,
        })
    return rows


def markdown_mixed(rows: list[dict]) -> str:
    out = ["| stage | sim | bench | rtl cycles | contract | reset at | sim cycles/s | "
           "sim cycles/CPU-s | build s | ok |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['stage']} | {r['simulator']} | {r['bench']} | {r['rtl_cycles']} | "
                   f"{r['contract_cycles']} | {r['reset_at']} | {r['sim_cycles_per_s']:.0f} | "
                   f"{r['sim_cycles_per_cpu_s'] or 0:.0f} | {r['build_s']:.1f} | "
                   f"{'yes' if r['ok'] else 'NO'} |")
    return "\n".join(out) + "\n"


def markdown(rows: list[dict]) -> str:
    out = ["| bits | W | sim | bench | rtl cycles | contract | ideal (max S_p) | "
           "ideal (balanced) | cycles/edge | cycles/row | efficiency | sim cycles/s | "
           "sim cycles/CPU-s | build s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(
            f"| INT{r['bits']} | {r['words_per_row']} | {r['simulator']} | {r['bench']} | "
            f"{r['rtl_cycles']} | {r['contract_cycles']} | {r['ideal_max']} | "
            f"{r['ideal_balanced']:.0f} | {r['cycles_per_edge']:.3f} | "
            f"{r['cycles_per_row']:.2f} | {100 * r['efficiency']:.1f}% | "
            f"{r['sim_cycles_per_s']:.0f} | {r['sim_cycles_per_cpu_s'] or 0:.0f} | "
            f"{r['build_s']:.1f} |")
    speed = {(r["bits"], r["simulator"], r["bench"]): r["sim_cycles_per_s"] for r in rows}
    pairs = sorted({(b, sim) for b, sim, _ in speed})
    if any((b, sim, "driven") in speed and (b, sim, "freerun") in speed for b, sim in pairs):
        out += ["", "| bits | sim | driven cycles/s | freerun cycles/s | speed-up |",
                "|---|---|---|---|---|"]
        for b, sim in pairs:
            old, new = speed.get((b, sim, "driven")), speed.get((b, sim, "freerun"))
            if old and new:
                out.append(f"| INT{b} | {sim} | {old:.0f} | {new:.0f} | {new / old:.1f}x |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8], choices=[2, 4, 8])
    ap.add_argument("--simulators", nargs="+", default=["icarus", "verilator"],
                    choices=["icarus", "verilator"])
    ap.add_argument("--benches", nargs="+", default=["driven", "freerun"],
                    choices=["driven", "freerun"])
    ap.add_argument("--repeat", type=int, default=5,
                    help="free-running bench: runs per stage on one build, each checked; the "
                         "speed uses the shortest (the driven bench runs once)")
    ap.add_argument("--pes", type=int, default=4)
    ap.add_argument("--latency", type=int, default=1)
    ap.add_argument("--vectors", nargs="*", default=[], metavar="BITS=DIR",
                    help="use a golden vector set (e.g. from qgnn export) for these bits")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--mixed", default=None, metavar="DIR",
                    help="measure the mixed stages of this version-3 vector set instead")
    ap.add_argument("--out", default=None,
                    help=f"results JSON (default {DEFAULT_OUT.name}, with --mixed "
                         f"{DEFAULT_MIXED_OUT.name}, in benchmarks/results/)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(DEFAULT_MIXED_OUT if args.mixed else DEFAULT_OUT)
    if args.mixed:
        return _main_mixed(args, argv)
    vec = {}
    for item in args.vectors:
        b, _, d = item.partition("=")
        vec[int(b)] = d
    rows = []
    for bits in args.bits:
        for sim in args.simulators:
            for bench in args.benches:
                r = run_one(bits, sim, args.pes, args.latency, vec.get(bits), args.data_root,
                            bench, args.repeat)
                print(f"INT{bits} {sim} {bench}: {r['rtl_cycles']} cycles (contract "
                      f"{r['contract_cycles']}, ideal {r['ideal_balanced']:.0f}), "
                      f"{r['mismatches']} mismatches, {r['sim_cycles_per_s']:.0f} cycles/s, "
                      f"build {r['build_s']:.1f} s", flush=True)
                rows.append(r)
    table = markdown(rows)
    print(table)
    out = Path(args.out)
    write_json_atomic(out, {
        "benchmark": "rtl_speed",
        "command": "python benchmarks/rtl_speed.py " + " ".join(argv or sys.argv[1:]),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2)},
        "results": rows,
    })
    write_text_atomic(out.with_suffix(".md"), table)
    return 0 if all(r["ok"] for r in rows) else 1


def _machine() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2)}


def _main_mixed(args: argparse.Namespace, argv: list[str] | None) -> int:
    rows = []
    for sim in args.simulators:
        for bench in args.benches:
            load = round(os.getloadavg()[0], 2)
            got = run_mixed(args.mixed, sim, args.pes, args.latency, bench, args.repeat)
            for r in got:
                r["loadavg_1min_before"] = load
                print(f"{r['stage']} {sim} {bench}: {r['rtl_cycles']} cycles (contract "
                      f"{r['contract_cycles']}), {r['mismatches']} mismatches, reset at "
                      f"{r['reset_at']} {'ok' if r['reset_ok'] else 'FAILED'}, "
                      f"{r['sim_cycles_per_s']:.0f} cycles/s, build {r['build_s']:.1f} s",
                      flush=True)
            rows += got
    import json

    manifest = json.loads((Path(args.mixed) / "manifest.json").read_text(encoding="utf-8"))
    made_by = (manifest.get("source") or {}).get("command")
    command = "python benchmarks/rtl_speed.py " + " ".join(argv or sys.argv[1:])
    table = markdown_mixed(rows)
    print(table)
    table = (f"Vector set: `{made_by}`\n\nMeasured with `{command}` (1-minute load average "
             f"{round(os.getloadavg()[0], 2)} at the end, "
             f"{os.cpu_count()} CPUs).\n\n" + table)
    out = Path(args.out)
    write_json_atomic(out, {
        "benchmark": "rtl_speed --mixed",
        "command": command, "vectors_command": made_by,
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": _machine(), "results": rows,
    })
    write_text_atomic(out.with_suffix(".md"), table)
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
