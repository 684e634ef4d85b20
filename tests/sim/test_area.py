"""Area model: SRAM by size, logic from `qgnn hw synth` JSON or a labelled estimate."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from qgnn.sim.area import area_breakdown, synth_cells
from qgnn.sim.config import load_arch

CELL_SRAM_UM2 = 0.346 / 0.6  # bit cell / array efficiency (area table)


def test_sram_area_by_size() -> None:
    a = load_arch()
    area = area_breakdown(replace(a, synth_json=None), 4, 169)
    for name, buf in a.buffers.items():
        assert area["blocks"][f"sram.{name}"] == pytest.approx(
            buf.size_kib * 1024 * 8 * CELL_SRAM_UM2 / 1e6)
        assert area["sources"][f"sram.{name}"] == "model"
    assert area["sources"]["aggregation.logic"] == "estimate"
    assert area["sources"]["combination.array"] == "estimate"


def test_synth_json_priced_per_cell(tmp_path) -> None:
    p = tmp_path / "synth.json"
    p.write_text(json.dumps({"results": [
        {"bits": 4, "word_width": 64, "pes": 1, "flow": "ice40",
         "cells_by_type": {"SB_LUT4": 999}},
        {"bits": 4, "word_width": 64, "pes": 1, "flow": "generic",
         "cells_by_type": {"$_AND_": 10, "$_DFFE_PP_": 2, "$_ANDNOT_": 3, "$_XOR_": 1,
                           "$scopeinfo": 5}},
    ]}))
    assert synth_cells(p, 4, 8, 64) == ({"$_AND_": 10, "$_DFFE_PP_": 2, "$_ANDNOT_": 3,
                                         "$_XOR_": 1}, 1)
    assert synth_cells(p, 2, 8, 64) is None  # no INT2 result
    bt = tmp_path / "bt.json"
    bt.write_text(json.dumps({"results": [
        {"bits": 2, "word_width": 64, "pes": 1, "flow": "generic", "truncated": True,
         "cells_by_type": {"$_AND_": 50}}]}))
    assert synth_cells(bt, 2, 8, 64) is None  # the BT element is not the plain INT2 one
    a = replace(load_arch(), synth_json=str(p))
    area = area_breakdown(a, 4, 169)
    # NanGate: AND2 1.064, DFF 4.522, XOR2 1.596 um^2; utilisation 0.7; 8 elements.
    per_pe = 13 * 1.064 + 2 * 4.522 + 1.596
    assert area["blocks"]["aggregation.logic"] == pytest.approx(8 * per_pe / 0.7 / 1e6)
    assert area["sources"]["aggregation.logic"].startswith("synth")


def test_default_chip_uses_the_rtl_synthesis() -> None:
    a = load_arch()
    assert a.synth_json and a.synth_json.endswith("hw_synth_generic.json")
    area = area_breakdown(a, 2, 169)
    assert area["sources"]["aggregation.logic"].startswith("synth")
    fp = area_breakdown(a.fp32_counterpart(), 32, 169)
    assert fp["sources"]["aggregation.logic"] == "estimate"
    assert fp["total_mm2"] > area["total_mm2"]  # FP32 multipliers and adders are larger
