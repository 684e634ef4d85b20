"""Area model (mm^2, 45 nm) from ``sim/data/area_table.toml``.

- SRAM: ``bits x bit-cell area / array efficiency`` for every buffer.
- Aggregation logic: from ``qgnn hw synth --flow generic --json`` output when the arch names
  one (``[area] synth_json``): the Yosys gate counts of the engine synthesized at the run's
  code width, each gate priced with its NanGate 45 nm cell, divided by the placement
  utilisation and scaled linearly from the synthesized element count to ``pes``. Otherwise
  a gate-level estimate: per element, every lane's accumulator adder and register and a
  requantization multiplier per output lane.
- Combination logic (not in the RTL): always the gate-level estimate: per element an 8 x 8
  multiplier with the Bit Fusion overhead, a 32-bit accumulator and operand registers; the
  FP32 counterpart a 24 x 24 mantissa multiplier with the FMA overhead.

Every logic figure says whether it is ``synth ...`` or ``estimate``.
"""

from __future__ import annotations

import json
import math
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any

from qgnn.model.integer import rules

from .config import FP32_BITS, ArchConfig

__all__ = ["area_breakdown", "area_table", "synth_cells"]

AREA_TABLE = Path(__file__).resolve().parent / "data" / "area_table.toml"
UM2_PER_MM2 = 1e6


@lru_cache(maxsize=2)
def area_table(path: str | None = None) -> dict[str, dict[str, Any]]:
    """Entries of the area table (each with value, unit, source)."""
    with Path(path or AREA_TABLE).open("rb") as f:
        raw = tomllib.load(f)
    entries = raw.get("entry", {})
    for name, e in entries.items():
        for key in ("value", "unit", "source"):
            if key not in e:
                raise ValueError(f"{AREA_TABLE}: entry.{name}: missing {key!r}")
    return entries


def _v(name: str) -> float:
    return float(area_table()[name]["value"])


def _adder_um2(width: int) -> float:
    return width * _v("fa_um2")


def _reg_um2(width: int) -> float:
    return width * _v("dff_um2")


def _mult_um2(a: int, b: int) -> float:
    """Array multiplier: a*b AND partial products and about a*(b-1) full adders."""
    return a * b * _v("and2_um2") + a * max(b - 1, 0) * _v("fa_um2")


def _fp32_adder_um2() -> float:
    # alignment shifter and normaliser (2 x 24 x 5 mux levels), 3 x 24-bit adders.
    return 2 * 24 * 5 * _v("mux2_um2") + 3 * _adder_um2(24)


def _fp32_mult_um2() -> float:
    return _mult_um2(24, 24) * _v("fp32_fma_overhead")


# Generic Yosys cell names ($_AND_, $_ANDNOT_, $_DFFE_PP_, ...) -> table entries; the first
# matching pattern wins.
_CELL_MAP = (("DFF", "dff_um2"), ("DLATCH", "dff_um2"), ("ANDNOT", "and2_um2"),
             ("ORNOT", "and2_um2"), ("AOI3", "aoi21_um2"), ("OAI3", "aoi21_um2"),
             ("AOI4", "aoi22_um2"), ("OAI4", "aoi22_um2"), ("XNOR", "xor2_um2"),
             ("XOR", "xor2_um2"), ("MUX", "mux2_um2"), ("NAND", "nand2_um2"),
             ("NOR", "nand2_um2"), ("NOT", "inv_um2"), ("BUF", "inv_um2"), ("AND", "and2_um2"),
             ("OR", "and2_um2"))
#: Flows whose cells are standard gates (priced per cell); LUT flows cannot be priced.
GATE_FLOWS = ("generic", "generic-noabc")


def _cell_um2(cell: str) -> float:
    up = cell.upper()
    for pat, entry in _CELL_MAP:
        if pat in up:
            return _v(entry)
    return _v("nand2_um2") * 2  # unknown cell: two NAND2 equivalents


def synth_cells(path: str | Path, bits: int, pes: int, word_width: int
                ) -> tuple[dict[str, int], int] | None:
    """Gate counts of the matching engine in a ``qgnn hw synth --json`` file, or None.

    The file holds ``{"results": [{"bits", "word_width", "pes", "flow", "cells_by_type"}]}``;
    a result matches on ``bits`` and ``word_width`` (bit-truncated entries are skipped) and must
    come from a gate-level flow
    (:data:`GATE_FLOWS`, ``generic`` preferred). Returns ``(cells, pes_synthesized)``."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    items = raw.get("results", []) if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        return None
    found: dict[str, tuple[dict[str, int], int]] = {}
    for it in items:
        if not isinstance(it, dict) or it.get("flow") not in GATE_FLOWS:
            continue
        if it.get("bits") != bits or it.get("word_width") != word_width:
            continue
        if it.get("truncated"):  # the BT/BT* element is a different (larger) design
            continue
        cells = it.get("cells_by_type")
        if not isinstance(cells, dict):
            continue
        counts = {str(k): int(v) for k, v in cells.items()
                  if isinstance(v, int | float) and not str(k).startswith("$scope")}
        p = int(it.get("pes", 1)) or 1
        prev = found.get(it["flow"])
        if prev is None or abs(p - pes) < abs(prev[1] - pes):
            found[it["flow"]] = (counts, p)
    for flow in GATE_FLOWS:
        if flow in found:
            return found[flow]
    return None


def area_breakdown(arch: ArchConfig, bits: int, max_terms: int) -> dict[str, Any]:
    """Area (mm^2) by block for ``arch`` running ``bits``-bit aggregation codes.

    ``max_terms`` sizes the accumulators (``rules.acc_width``). Returns ``{"total_mm2",
    "blocks": {name: mm^2}, "sources": {name: "synth"|"estimate"|"model"}}``."""
    util = _v("placement_utilisation")
    blocks: dict[str, float] = {}
    sources: dict[str, str] = {}
    cell = _v("sram_bitcell_um2") / _v("sram_array_efficiency")
    for name, b in arch.buffers.items():
        blocks[f"sram.{name}"] = b.bytes * 8 * cell / UM2_PER_MM2
        sources[f"sram.{name}"] = "model"
    a = arch.aggregation
    ww = a.word_width
    P = a.pes
    if arch.fp32:
        lanes = ww // FP32_BITS
        pe = lanes * (_fp32_adder_um2() + _reg_um2(32) + _fp32_mult_um2())
        blocks["aggregation.logic"] = P * pe / util / UM2_PER_MM2
        sources["aggregation.logic"] = "estimate"
    else:
        found = synth_cells(arch.synth_json, bits, P, ww) if arch.synth_json else None
        if found:
            cells, p_syn = found
            um2 = sum(n * _cell_um2(c) for c, n in cells.items()) * P / p_syn
            blocks["aggregation.logic"] = um2 / util / UM2_PER_MM2
            sources["aggregation.logic"] = (
                f"synth ({Path(arch.synth_json or '').name}: INT{bits} engine, P={p_syn}"
                f"{f', scaled x{P / p_syn:g}' if p_syn != P else ''})")
        else:
            worst = 0.0
            for mb in a.bits:
                acc = rules.acc_width(mb, max(max_terms, 1))
                lanes = ww // mb
                pe = lanes * (_adder_um2(acc) + _reg_um2(acc) + _mult_um2(acc + 1, a.mult_bits))
                worst = max(worst, pe)
            blocks["aggregation.logic"] = P * worst / util / UM2_PER_MM2
            sources["aggregation.logic"] = "estimate"
    c = arch.combination
    npe = c.rows * c.cols
    if arch.fp32:
        pe = _fp32_mult_um2() + _fp32_adder_um2() + _reg_um2(32) + _reg_um2(2 * c.operand_bits)
        rq = c.requant_units * _fp32_mult_um2()
    else:
        base = c.base_bits
        pe = (_mult_um2(base, base) * _v("fusion_overhead") + _adder_um2(32) + _reg_um2(32)
              + _reg_um2(2 * c.operand_bits))
        rq = c.requant_units * _mult_um2(33, 24)
    blocks["combination.array"] = npe * pe / util / UM2_PER_MM2
    blocks["combination.requant"] = rq / util / UM2_PER_MM2
    sources["combination.array"] = "estimate"
    sources["combination.requant"] = "estimate"
    total = math.fsum(blocks.values())
    return {"total_mm2": total, "blocks": blocks, "sources": sources}
