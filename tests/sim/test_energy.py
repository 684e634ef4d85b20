"""The energy table: every entry sourced; Horowitz points and the scaling rules."""

from __future__ import annotations

import tomllib

import pytest
from qgnn.sim.energy import ENERGY_TABLE, energy_table


def test_every_entry_and_rule_has_value_unit_and_source() -> None:
    with ENERGY_TABLE.open("rb") as f:
        raw = tomllib.load(f)
    assert raw["entry"] and raw["rule"]
    for section in ("entry", "rule"):
        for name, e in raw[section].items():
            for key in ("value", "unit", "source"):
                assert key in e and str(e[key]).strip(), f"{section}.{name} lacks {key}"
    # Measured points cite Horowitz; the DRAM rule points at the presets file.
    for name in ("int8_add", "int32_add", "int8_mult", "int32_mult", "fp32_add", "fp32_mult",
                 "sram_8kib_read64", "sram_32kib_read64", "sram_1mib_read64"):
        assert "Horowitz" in raw["entry"][name]["source"]
    assert "dram_presets" in raw["rule"]["dram"]["source"]


def test_area_table_sourced() -> None:
    from qgnn.sim.area import area_table

    for name, e in area_table().items():
        assert str(e["source"]).strip(), name


def test_horowitz_points_exact() -> None:
    et = energy_table()
    assert et.int_add(8) == pytest.approx(0.03)
    assert et.int_add(32) == pytest.approx(0.1)
    assert et.int_mult(8, 8) == pytest.approx(0.2)
    assert et.fp32_add() == 0.9 and et.fp32_mult() == 3.7
    assert et.sram_access(8, 64) == pytest.approx(10.0)
    assert et.sram_access(32, 64) == pytest.approx(20.0)
    assert et.sram_access(1024, 64) == pytest.approx(100.0)


def test_scaling_rules_hand_values() -> None:
    et = energy_table()
    # adders: linear in width (8 -> 32 bits: 0.07 pJ over 24 bits); proportional below 8.
    assert et.int_add(16) == pytest.approx(0.03 + 8 * 0.07 / 24)
    assert et.int_add(4) == pytest.approx(0.015)
    assert et.int_add(12) == pytest.approx(0.03 + 4 * 0.07 / 24)
    # multipliers: square of the width, 8-bit anchor.
    assert et.int_mult(4, 4) == pytest.approx(0.05)
    assert et.int_mult(2, 2) == pytest.approx(0.0125)
    assert et.int_mult(32, 32) == pytest.approx(3.2)  # Horowitz measured 3.1
    # SRAM: log-log between 8 and 32 KiB is a square root; width scales linearly.
    assert et.sram_access(16, 64) == pytest.approx(10 * 2 ** 0.5)
    assert et.sram_access(8, 32) == pytest.approx(5.0)
    # FP32 MAC = mult + add; INT4 MAC over K = 1024: 4x4 mult + (2*4 + 10 + 1)-bit add.
    assert et.mac(32, 32, 64) == pytest.approx(4.6)
    assert et.mac(4, 4, 1024) == pytest.approx(0.05 + 0.03 + 11 * 0.07 / 24)
    # requantization of a 9-bit accumulator with a 16-bit multiplier:
    # (10 x 16) mult + 2 x 26-bit adds.
    assert et.requant(9, 16, fp32=False) == pytest.approx(0.2 * 160 / 64 + 2 * (0.03 + 18 * 0.07 / 24))
    assert et.requant(9, 16, fp32=True) == pytest.approx(4.6)


def test_energy_monotone_in_width_and_size() -> None:
    et = energy_table()
    adds = [et.int_add(w) for w in range(1, 40)]
    assert all(b > a for a, b in zip(adds, adds[1:], strict=False))
    srams = [et.sram_access(s, 64) for s in (0.5, 1, 2, 8, 20, 32, 100, 1024, 4096)]
    assert all(b > a for a, b in zip(srams, srams[1:], strict=False))
