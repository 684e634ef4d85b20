"""Why Icarus stays at thousands of cycles/s on the engine: vvp's cost per operator, the
engine's operator count, and two netlist rewrites tried against the exported netlist.

Part 1 (floor): a chain of ``N`` word-level adders (``assign w_i = w_{i-1} + 1``, 12 bits) fed
by one register, simulated for ``C`` cycles with ``vvp``: wall time / (N * C) is the cost of one
operator evaluation, the unit that bounds an event-driven simulator. The same for ``N``
registers each in its own ``always @(posedge clk)`` process (the form Amaranth/Yosys emit),
which measures one process wake-up plus a non-blocking update.

Part 2 (the engine): the operator count of the exported engine (``assign`` statements and
``always`` processes per width).

Part 3 (netlists, side by side in one run on the Cora layer-0 stage of
``benchmarks/rtl_speed.py``, free-running bench): the exported netlist and the simulation
netlist of :mod:`hw.simnetlist` (Yosys ``proc; flatten; opt``, one clocked process), each run
checked in full (words and cycles) by ``hw.verify``, with the operator evaluations per cycle
that its speed implies at the measured floor.

Usage::

    python benchmarks/icarus_floor.py [--chain 3200] [--cycles 20000] [--skip-rewrites] [--bits 2 4 8]
        [--out benchmarks/results/icarus_floor.json]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from qgnn.core.atomic import write_json_atomic, write_text_atomic  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "icarus_floor.json"


def _vvp_seconds(verilog: str, workdir: Path) -> float:
    src, out = workdir / "t.v", workdir / "t.vvp"
    src.write_text(verilog)
    subprocess.run(["iverilog", "-o", str(out), str(src)], check=True)
    t0 = time.perf_counter()
    subprocess.run(["vvp", "-n", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def chain_verilog(n: int, cycles: int) -> str:
    """``n`` chained 12-bit adders after one register; ``$finish`` after ``cycles`` cycles."""
    lines = ["`timescale 1ns/1ps", "module t;", "reg clk = 0; always #5 clk = ~clk;",
             "integer c = 0; reg [11:0] r = 0;", "wire [11:0] w0 = r + 12'd1;"]
    lines += [f"wire [11:0] w{i} = w{i - 1} + 12'd1;" for i in range(1, n)]
    lines += [f"always @(posedge clk) r <= w{n - 1};",
              f"always @(posedge clk) begin c = c + 1; if (c == {cycles}) $finish; end",
              "endmodule"]
    return "\n".join(lines)


def registers_verilog(n: int, cycles: int) -> str:
    """``n`` 12-bit registers, each incremented in its own ``always @(posedge clk)``."""
    lines = ["`timescale 1ns/1ps", "module t;", "reg clk = 0; always #5 clk = ~clk;",
             "integer c = 0;"]
    for i in range(n):
        lines += [f"reg [11:0] r{i} = 0; wire [11:0] w{i} = r{i} + 12'd1;",
                  f"always @(posedge clk) r{i} <= w{i};"]
    lines += [f"always @(posedge clk) begin c = c + 1; if (c == {cycles}) $finish; end",
              "endmodule"]
    return "\n".join(lines)


def operator_counts(bits: int) -> dict[str, int]:
    from qgnn.hw.export import generate_verilog
    from qgnn.hw.params import EngineParams

    v = generate_verilog(EngineParams(bits=bits))
    return {"assign": v.count("assign "), "always": v.count("always @"),
            "always_comb": v.count("always @*"), "always_posedge": v.count("always @(posedge")}


def _rtl_speed(bits: int, netlist: str, data_root: str | None) -> dict[str, Any]:
    """The Cora layer-0 stage of ``benchmarks/rtl_speed.py`` on Icarus, free-running bench."""
    from qgnn.hw.stages import cora_stage
    from qgnn.hw.verify import verify_stages

    rep = verify_stages([cora_stage(bits, root=data_root)], simulator="icarus", pes=4,
                        latency=1, bench="freerun", netlist=netlist)
    d = rep.to_dict()
    s = rep.stages[0]
    return {"rtl_cycles": s.rtl_cycles, "contract_cycles": s.expected_cycles, "ok": rep.ok,
            "mismatches": s.mismatches, "sim_cycles_per_s": d["sim_cycles_per_s"],
            "sim_cycles_per_cpu_s": d["sim_cycles_per_cpu_s"], "build_s": rep.build_s}


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--chain", type=int, default=3200, help="operators in the floor chain")
    ap.add_argument("--cycles", type=int, default=20000)
    ap.add_argument("--skip-rewrites", action="store_true")
    ap.add_argument("--bits", type=int, nargs="+", default=[2, 4, 8], choices=[2, 4, 8])
    ap.add_argument("--data-root", default=os.environ.get("QGNN_DATA_ROOT") or None)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    a = ap.parse_args()
    res: dict[str, Any] = {"date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                           "load_before": os.getloadavg()[0], "chain": a.chain,
                           "cycles": a.cycles}
    with tempfile.TemporaryDirectory() as d:
        evals = a.chain * a.cycles
        s = _vvp_seconds(chain_verilog(a.chain, a.cycles), Path(d))
        res["ns_per_operator"] = round(s / evals * 1e9, 1)
        s = _vvp_seconds(registers_verilog(a.chain, a.cycles), Path(d))
        res["ns_per_register_and_operator"] = round(s / evals * 1e9, 1)
    print(f"vvp: {res['ns_per_operator']} ns per operator evaluation, "
          f"{res['ns_per_register_and_operator']} ns per register process + its adder")
    res["engine"] = {}
    for bits in (2, 4, 8):
        c = operator_counts(bits)
        res["engine"][f"int{bits}"] = c
        print(f"INT{bits}: exported netlist {c['assign']} assigns, {c['always']} processes")
    if not a.skip_rewrites:
        res["netlists"] = {}
        for bits in a.bits:
            for name in ("exported", "simulation"):
                r = _rtl_speed(bits, name, a.data_root)
                r["evaluations_per_cycle"] = round(1e9 / (r["sim_cycles_per_s"]
                                                          * res["ns_per_operator"]))
                res["netlists"][f"int{bits}-{name}"] = r
                print(f"INT{bits} {name} netlist: {r['sim_cycles_per_s']:.0f} cycles/s "
                      f"(= {r['evaluations_per_cycle']} operator evaluations per cycle at the "
                      f"floor), build {r['build_s']:.1f} s, ok={r['ok']}")
    res["load_after"] = os.getloadavg()[0]
    write_json_atomic(Path(a.out), res)
    budget = round(1e9 / (20000 * res["ns_per_operator"]))
    md = [f"# Icarus floor ({res['date']}, load {res['load_before']:.1f} → "
          f"{res['load_after']:.1f}; `python benchmarks/icarus_floor.py`)", "",
          f"- vvp, one 12-bit adder evaluation: **{res['ns_per_operator']} ns**; a register in "
          f"its own process plus its adder: {res['ns_per_register_and_operator']} ns.",
          f"- At that cost, 20,000 cycles/s leaves **{budget} operator evaluations per cycle** "
          "for 4 elements of 8-32 lanes each.", "",
          "| engine (exported) | assigns | processes |", "|---|---|---|"]
    md += [f"| {k.upper()} | {c['assign']} | {c['always']} |" for k, c in res["engine"].items()]
    if "netlists" in res:
        md += ["", "| Cora stage, Icarus free-running | sim cycles/s | operator evaluations "
               "per cycle at the floor | build s | words and cycles ok |",
               "|---|---|---|---|---|"]
        md += [f"| {k.upper()} | {r['sim_cycles_per_s']:,.0f} | {r['evaluations_per_cycle']:,} | "
               f"{r['build_s']:.1f} | {r['ok']} |" for k, r in res["netlists"].items()]
    write_text_atomic(Path(a.out).with_suffix(".md"), "\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
