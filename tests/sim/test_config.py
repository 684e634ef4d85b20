"""Arch config: the default chip, the FP32 counterpart rule, validation errors."""

from __future__ import annotations

import copy
import tomllib

import pytest
from qgnn.sim.config import DEFAULT_ARCH, DRAM_PRESETS, ArchConfig, ArchConfigError, load_arch


def raw_default() -> dict:
    with DEFAULT_ARCH.open("rb") as f:
        return tomllib.load(f)


def test_default_chip_loads_with_documented_values() -> None:
    a = load_arch()
    assert a.name == "qgnn-default"
    assert (a.aggregation.pes, a.aggregation.word_width) == (8, 64)
    assert (a.combination.rows, a.combination.cols) == (32, 32)
    assert a.dram.preset == "hbm2" and a.dram.bandwidth_gbps == 256.0
    # 256 GB/s at 1 GHz is 256 bytes per cycle; 100 ns is 100 cycles.
    assert a.bytes_per_cycle == pytest.approx(256.0)
    assert a.dram_latency_cycles == 100


def test_lanes_and_bit_fusion_rates() -> None:
    a = load_arch()
    assert [a.agg_lanes(b) for b in (2, 4, 8)] == [32, 16, 8]
    assert a.agg_lanes(3) == 16  # 3-bit codes run in the 4-bit mode
    # Bit Fusion at base 8: (8/a) * (8/w) MACs per element per cycle.
    assert a.macs_per_pe(8, 8) == 1
    assert a.macs_per_pe(4, 4) == 4
    assert a.macs_per_pe(2, 2) == 16
    assert a.macs_per_pe(2, 8) == 4
    assert a.peak_macs(2, 2) == 32 * 32 * 16


def test_fp32_counterpart_keeps_wires_memory_buffers() -> None:
    a = load_arch()
    f = a.fp32_counterpart()
    assert f.fp32 and f.name.endswith("-fp32")
    assert f.buffers == a.buffers and f.dram == a.dram and f.clock_mhz == a.clock_mhz
    assert f.aggregation == a.aggregation and f.combination == a.combination
    assert f.agg_lanes(32) == 2  # a 64-bit word carries 2 FP32 lanes
    assert f.macs_per_pe(32, 32) == 1.0  # 1/16 of the INT2 rate, 1/4 of INT4
    assert f.fp32_counterpart() is f


def test_dram_presets_each_have_sources() -> None:
    assert set(DRAM_PRESETS) == {"ddr4", "lpddr4", "hbm2"}
    for p in DRAM_PRESETS:
        d = load_arch().with_overrides({"dram.preset": p}).dram
        assert d.preset == p
        for k in ("bandwidth_gbps", "latency_ns", "pj_per_bit", "burst_bytes"):
            assert d.sources[k].strip(), (p, k)
    assert load_arch().with_overrides({"dram.preset": "ddr4"}).dram.pj_per_bit == 20.0
    assert load_arch().with_overrides({"dram.preset": "lpddr4"}).dram.pj_per_bit == 5.0


def test_round_trip_and_overrides() -> None:
    a = load_arch()
    b = ArchConfig.from_dict(a.to_dict())
    assert b.to_dict() == a.to_dict()
    c = a.with_overrides({"aggregation.pes": 16, "buffers.feature.size_kib": 512})
    assert c.aggregation.pes == 16 and c.buffers["feature"].size_kib == 512
    assert a.aggregation.pes == 8  # unchanged


def test_preset_name_and_missing_file() -> None:
    assert load_arch("default").name == "qgnn-default"
    with pytest.raises(ArchConfigError, match="no such file or preset"):
        load_arch("no-such-chip")
    with pytest.raises(ArchConfigError, match="not found"):
        load_arch("/nonexistent/dir/chip.toml")


def _err(mutate) -> str:
    d = copy.deepcopy(raw_default())
    mutate(d)
    with pytest.raises(ArchConfigError) as ei:
        ArchConfig.from_dict(d)
    return str(ei.value)


@pytest.mark.parametrize("mutate, key, allowed", [
    (lambda d: d.update(colour="red"), "colour", "clock_mhz"),
    (lambda d: d["aggregation"].update(lanes=32), "aggregation.lanes", "word_width"),
    (lambda d: d["buffers"]["feature"].update(kb=1), "buffers.feature.kb", "size_kib"),
    (lambda d: d["dram"].update(speed=1), "dram.speed", "bandwidth_gbps"),
])
def test_unknown_keys_name_key_and_allowed(mutate, key: str, allowed: str) -> None:
    msg = _err(mutate)
    assert key in msg and "unknown key" in msg and allowed in msg


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["aggregation"].update(pes=-2), "aggregation.pes"),
    (lambda d: d["combination"].update(rows=0), "combination.rows"),
    (lambda d: d["buffers"]["weight"].update(size_kib=-1), "buffers.weight.size_kib"),
    (lambda d: d["dram"].update(bandwidth_gbps=0), "dram.bandwidth_gbps"),
    (lambda d: d.update(clock_mhz=-5.0), "clock_mhz"),
])
def test_negative_or_zero_sizes(mutate, key: str) -> None:
    msg = _err(mutate)
    assert key in msg and ("must be" in msg)


def test_impossible_lane_counts() -> None:
    # A 16-bit word cannot hold the FP32 counterpart's lane.
    msg = _err(lambda d: d["aggregation"].update(word_width=16, bits=[2, 4, 8]))
    assert "aggregation.word_width" in msg and "FP32" in msg
    # A 16-bit code in an 8-bit word has no lane.
    msg = _err(lambda d: d["aggregation"].update(word_width=8, bits=[16]))
    assert "aggregation" in msg
    # Word widths outside the packing's list.
    msg = _err(lambda d: d["aggregation"].update(word_width=48))
    assert "aggregation.word_width" in msg and "64" in msg
    # Operand wires too narrow for 16 INT2 operands per side.
    msg = _err(lambda d: d["combination"].update(operand_bits=16))
    assert "combination.operand_bits" in msg
    # Bit fusion needs base divisible by the modes.
    msg = _err(lambda d: d["combination"].update(bits=[3, 8]))
    assert "combination.bits" in msg


@pytest.mark.parametrize("mutate, key, allowed", [
    (lambda d: d["dram"].update(preset="gddr6"), "dram.preset", "hbm2"),
    (lambda d: d["dataflow"].update(default="sideways"), "dataflow.default", "combine-first"),
    (lambda d: d["combination"].update(scaling="magic"), "combination.scaling", "bit-fusion"),
    (lambda d: d.update(technology_nm=7), "technology_nm", "45"),
    (lambda d: d["aggregation"].update(bits=[2, 12]), "aggregation.bits", "allowed"),
    (lambda d: d["dataflow"].update(layers={"x": "auto"}), "dataflow.layers.x", "integer"),
])
def test_bad_choices_list_allowed_values(mutate, key: str, allowed: str) -> None:
    msg = _err(mutate)
    assert key in msg and allowed in msg


def test_missing_buffer_and_wrong_type() -> None:
    msg = _err(lambda d: d["buffers"].pop("index"))
    assert "buffers.index" in msg and "missing" in msg
    msg = _err(lambda d: d["aggregation"].update(pes="eight"))
    assert "aggregation.pes" in msg and "integer" in msg
    msg = _err(lambda d: d.update(double_buffering="yes"))
    assert "double_buffering" in msg


def test_invalid_toml_file(tmp_path) -> None:
    p = tmp_path / "chip.toml"
    p.write_text("name = [unclosed\n")
    with pytest.raises(ArchConfigError, match="invalid TOML"):
        load_arch(p)


@pytest.mark.parametrize("preset, dram", [("edge-lpddr4", "lpddr4"), ("ddr4", "ddr4"),
                                          ("large", "hbm2")])
def test_shipped_presets_load(preset: str, dram: str) -> None:
    a = load_arch(preset)
    assert a.dram.preset == dram
    assert set(a.buffers) == set(load_arch().buffers)
