"""Declarative accelerator description (TOML), validated on load, and its FP32 counterpart.

An arch file looks like ``sim/configs/default.toml``; every key is documented there and in
``docs/sim.md``. :func:`load_arch` reads and validates one; an unknown key, a wrong type, a
negative or zero size, an unsupported bit width or an impossible lane count raises
:class:`ArchConfigError` naming the key and the allowed values.

The FP32 counterpart (:meth:`ArchConfig.fp32_counterpart`) keeps the clock, the DRAM, every
buffer, the memory word width, the number of aggregation elements and the R x C array, and
replaces the integer adders and multipliers by FP32 ones:

- aggregation: a ``word_width``-bit word carries ``word_width // 32`` FP32 lanes, each with an
  FP32 adder (64-bit words: 2 lanes against 16 INT4 or 32 INT2 lanes);
- combination: each array element does ``fp32_macs_per_pe`` FP32 MACs per cycle (default 1).
  Its operand wires are ``operand_bits`` wide per side (32 by default: one FP32 operand, or the
  16 INT2 / 4 INT4 / 1 INT8 operands a Bit Fusion element consumes per cycle), so the FP32 chip
  has the same wires; its multiply rate is 1/16 of the INT2 rate and 1/4 of the INT4 rate;
- requantization becomes one FP32 multiply and one FP32 add per output value.

Sparse input features (``[combination] sparse_input``, ``sparse_weights``) are handled by the
same rule on both chips: the choice depends on the input's density, never on the bit width
(``auto`` only falls back to the dense product when that one is faster on the chip at hand).
"""

from __future__ import annotations

import copy
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qgnn.model.golden.packing import WORD_WIDTHS

__all__ = [
    "ArchConfig",
    "ArchConfigError",
    "AggregationConfig",
    "BufferConfig",
    "CombinationConfig",
    "DATAFLOWS",
    "DEFAULT_ARCH",
    "DRAM_PRESETS",
    "DramConfig",
    "FP32_BITS",
    "SCALINGS",
    "SPARSE_INPUT_MODES",
    "SPARSE_WEIGHT_MODES",
    "BUFFER_NAMES",
    "dram_presets",
    "load_arch",
]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DATA_DIR = Path(__file__).resolve().parent / "data"
#: The documented default chip.
DEFAULT_ARCH = CONFIG_DIR / "default.toml"
#: Bit width that selects FP32 arithmetic.
FP32_BITS = 32
#: Layer dataflows: ``auto`` picks the cheaper of the two orders (cycles) per layer.
DATAFLOWS = ("aggregate-first", "combine-first", "auto")
#: Combination-array throughput scaling rules.
SCALINGS = ("bit-fusion", "bit-serial")
#: How the first combination treats a sparse dataset input X: ``auto`` = as CSR when its density
#: is at most ``model.nn.features.SPARSE_DENSITY`` (0.1) and that is not slower than the dense
#: product; ``dense`` = always dense (the original model); ``sparse`` = always as CSR.
SPARSE_INPUT_MODES = ("auto", "dense", "sparse")
#: Where a sparse combination's weight rows come from: ``broadcast`` = the dense array's wires
#: (one weight stream per column, shared by the R rows of a tile); ``per-row`` = a what-if with a
#: weight port per array row (R times the weight wires; the extra ports are not priced).
SPARSE_WEIGHT_MODES = ("broadcast", "per-row")
#: On-chip buffers every chip has (sizes in KiB).
BUFFER_NAMES = ("feature", "accumulator", "weight", "input", "index", "output")
#: Energy and area tables are 45 nm.
TECHNOLOGIES = (45,)
#: Integer code widths an engine may support.
INT_MODES = (2, 3, 4, 5, 6, 7, 8, 16)


class ArchConfigError(ValueError):
    """An invalid accelerator description: names the key and the allowed values."""


# ----------------------------------------------------------------------------- DRAM presets


def dram_presets() -> dict[str, dict[str, Any]]:
    """The presets of ``sim/data/dram_presets.toml`` (each field with its source)."""
    with (DATA_DIR / "dram_presets.toml").open("rb") as f:
        return tomllib.load(f)


DRAM_PRESETS: tuple[str, ...] = tuple(dram_presets())


# ----------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class DramConfig:
    """Off-chip memory.

    Attributes:
        preset: ``ddr4``, ``lpddr4`` or ``hbm2`` (the source of every default).
        bandwidth_gbps: peak bandwidth (GB/s, 10^9 bytes per second).
        latency_ns: access latency (ns), exposed once at the start of each phase and of each
            non-overlapped transfer.
        pj_per_bit: access energy (pJ per bit moved).
        burst_bytes: access granularity (bytes); random gathers are rounded up to it.
        sources: the source of each figure.
    """

    preset: str
    bandwidth_gbps: float
    latency_ns: float
    pj_per_bit: float
    burst_bytes: int
    sources: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BufferConfig:
    """One on-chip SRAM buffer: ``size_kib`` KiB in ``banks`` equal banks."""

    size_kib: float
    banks: int = 1

    @property
    def bytes(self) -> int:
        return int(self.size_kib * 1024)

    @property
    def bank_kib(self) -> float:
        return self.size_kib / self.banks


@dataclass(frozen=True)
class AggregationConfig:
    """The aggregation engine (docs/aggregation-engine.md).

    Attributes:
        pes: processing elements P; row ``i`` goes to element ``i mod P``.
        word_width: memory word width (bits); ``lanes = word_width // bits``.
        bits: code widths (bits) the elements support for input and output codes; a tensor
            of another integer width runs in the next wider supported mode.
        mult_bits: requantization multiplier width (bits).
        sram_latency: latency ``L`` (cycles) of the on-chip buffers that answer the elements'
            requests; the pipeline fill is ``T_fill(L)`` of the timing contract.
        index_bits: width of a CSR index (bits).
        pointer_bits: width of a CSR row pointer (bits).
    """

    pes: int = 8
    word_width: int = 64
    bits: tuple[int, ...] = (2, 4, 8)
    mult_bits: int = 16
    sram_latency: int = 1
    index_bits: int = 32
    pointer_bits: int = 32


@dataclass(frozen=True)
class CombinationConfig:
    """The combination engine: an R x C output-stationary MAC array.

    Attributes:
        rows: R (nodes per tile).
        cols: C (output channels per tile).
        scaling: ``bit-fusion``: an element built from ``(base_bits/2)^2`` 2-bit bricks does
            ``(base_bits/a) * (base_bits/w)`` MACs per cycle for a-bit activations and w-bit
            weights (Sharma et al., ISCA 2018: 1 INT8, 4 INT4 or 16 INT2 MACs at base 8);
            ``bit-serial``: activations are fed bit-serially, ``base_bits / a`` MACs per cycle.
        base_bits: the element's native operand width (bits).
        bits: supported operand widths (bits); other integer widths use the next wider one.
        operand_bits: operand wire width per side (bits); must carry every mode's operands.
        requant_units: requantizers at the array output (output values per cycle).
        fp32_macs_per_pe: FP32 MACs per element per cycle on the FP32 counterpart.
        sparse_input: :data:`SPARSE_INPUT_MODES` (how a sparse dataset input is combined).
        sparse_weights: :data:`SPARSE_WEIGHT_MODES` (weight supply of the sparse combination).
    """

    rows: int = 32
    cols: int = 32
    scaling: str = "bit-fusion"
    base_bits: int = 8
    bits: tuple[int, ...] = (2, 4, 8)
    operand_bits: int = 32
    requant_units: int = 32
    fp32_macs_per_pe: float = 1.0
    sparse_input: str = "auto"
    sparse_weights: str = "broadcast"


@dataclass(frozen=True)
class ArchConfig:
    """A whole accelerator. Load with :func:`load_arch`; see the module docstring.

    Attributes:
        name, description: labels.
        clock_mhz: clock (MHz); both engines and the buffers run on it.
        technology_nm: 45 (the energy and area tables are 45 nm).
        aggregation, combination: the two engines.
        buffers: the on-chip buffers by name (:data:`BUFFER_NAMES`).
        double_buffering: buffers holding streamed tiles are split in two halves so that the
            next tile loads while the current one is used (usable capacity is then half).
        engine_overlap: an aggregation whose output rows feed a combination in row order
            runs concurrently with it (the two share DRAM bandwidth).
        dram: the off-chip memory.
        dataflow_default, dataflow_layers: per-layer order (:data:`DATAFLOWS`).
        synth_json: optional ``qgnn hw synth`` JSON used for the aggregation logic area.
        fp32: True for an FP32 counterpart.
        source: file it was loaded from (informational).
    """

    name: str = "qgnn-default"
    description: str = ""
    clock_mhz: float = 1000.0
    technology_nm: int = 45
    aggregation: AggregationConfig = field(default_factory=AggregationConfig)
    combination: CombinationConfig = field(default_factory=CombinationConfig)
    buffers: dict[str, BufferConfig] = field(default_factory=dict)
    double_buffering: bool = True
    engine_overlap: bool = True
    dram: DramConfig = field(default_factory=lambda: _dram_from({"preset": "hbm2"}, "dram"))
    dataflow_default: str = "auto"
    dataflow_layers: dict[int, str] = field(default_factory=dict)
    synth_json: str | None = None
    fp32: bool = False
    source: str | None = None

    # ---------------------------------------------------------------- derived quantities
    @property
    def bytes_per_cycle(self) -> float:
        """DRAM bandwidth in bytes per clock cycle."""
        return self.dram.bandwidth_gbps * 1e9 / (self.clock_mhz * 1e6)

    @property
    def dram_latency_cycles(self) -> int:
        """DRAM latency (cycles, rounded up)."""
        return int(math.ceil(self.dram.latency_ns * self.clock_mhz * 1e-3))

    def buffer(self, name: str) -> BufferConfig:
        return self.buffers[name]

    def usable_bytes(self, name: str, streamed: bool = True) -> int:
        """Capacity available to one tile of a streamed tensor (half when double-buffered)."""
        b = self.buffers[name].bytes
        return b // 2 if (streamed and self.double_buffering) else b

    def dataflow(self, layer: int) -> str:
        """The dataflow of ``layer`` (override, else the default)."""
        return self.dataflow_layers.get(layer, self.dataflow_default)

    def agg_mode_bits(self, bits: int) -> int:
        """Width the aggregation elements use for ``bits``-bit codes (32 = FP32)."""
        if bits == FP32_BITS:
            return FP32_BITS
        ok = [b for b in self.aggregation.bits if b >= bits]
        if not ok:
            raise ArchConfigError(
                f"aggregation.bits: no supported mode for {bits}-bit codes; supported: "
                f"{list(self.aggregation.bits)}")
        return min(ok)

    def agg_lanes(self, bits: int) -> int:
        """Lanes per word for ``bits``-bit codes (FP32: ``word_width // 32``)."""
        return self.aggregation.word_width // self.agg_mode_bits(bits)

    def comb_mode_bits(self, bits: int) -> int:
        if bits == FP32_BITS:
            return FP32_BITS
        ok = [b for b in self.combination.bits if b >= bits]
        if not ok:
            raise ArchConfigError(
                f"combination.bits: no supported mode for {bits}-bit operands; supported: "
                f"{list(self.combination.bits)}")
        return min(ok)

    def macs_per_pe(self, act_bits: int, weight_bits: int) -> float:
        """MACs per array element per cycle for the given operand widths (the scaling rule)."""
        c = self.combination
        if act_bits == FP32_BITS or weight_bits == FP32_BITS:
            return float(c.fp32_macs_per_pe)
        a, w = self.comb_mode_bits(act_bits), self.comb_mode_bits(weight_bits)
        if c.scaling == "bit-fusion":
            return float(max(1, c.base_bits // a) * max(1, c.base_bits // w))
        return float(max(1, c.base_bits // a))  # bit-serial activations

    def peak_macs(self, act_bits: int, weight_bits: int) -> float:
        """Array peak (MACs per cycle)."""
        return self.combination.rows * self.combination.cols * self.macs_per_pe(act_bits, weight_bits)

    # ---------------------------------------------------------------- transforms
    def fp32_counterpart(self) -> ArchConfig:
        """The same chip with FP32 adders and multipliers (see the module docstring)."""
        if self.fp32:
            return self
        return replace(self, name=f"{self.name}-fp32", fp32=True)

    def to_dict(self) -> dict[str, Any]:
        """The TOML-shaped dictionary (round-trips through :meth:`from_dict`)."""
        a, c, d = self.aggregation, self.combination, self.dram
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "clock_mhz": self.clock_mhz,
            "technology_nm": self.technology_nm,
            "double_buffering": self.double_buffering,
            "engine_overlap": self.engine_overlap,
            "aggregation": {
                "pes": a.pes, "word_width": a.word_width, "bits": list(a.bits),
                "mult_bits": a.mult_bits, "sram_latency": a.sram_latency,
                "index_bits": a.index_bits, "pointer_bits": a.pointer_bits,
            },
            "combination": {
                "rows": c.rows, "cols": c.cols, "scaling": c.scaling, "base_bits": c.base_bits,
                "bits": list(c.bits), "operand_bits": c.operand_bits,
                "requant_units": c.requant_units, "fp32_macs_per_pe": c.fp32_macs_per_pe,
                "sparse_input": c.sparse_input, "sparse_weights": c.sparse_weights,
            },
            "buffers": {n: {"size_kib": b.size_kib, "banks": b.banks}
                        for n, b in self.buffers.items()},
            "dram": {"preset": d.preset, "bandwidth_gbps": d.bandwidth_gbps,
                     "latency_ns": d.latency_ns, "pj_per_bit": d.pj_per_bit,
                     "burst_bytes": d.burst_bytes},
            "dataflow": {"default": self.dataflow_default,
                         "layers": {str(k): v for k, v in sorted(self.dataflow_layers.items())}},
        }
        if self.synth_json:
            out["area"] = {"synth_json": self.synth_json}
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "arch") -> ArchConfig:
        """Validate a TOML-shaped dictionary (see ``sim/configs/default.toml``)."""
        return _parse(d, where)

    def with_overrides(self, overrides: Mapping[str, Any]) -> ArchConfig:
        """A validated copy with dotted-key overrides, e.g. ``{"dram.preset": "ddr4",
        "aggregation.pes": 16, "buffers.feature.size_kib": 512}``.

        Setting ``dram.preset`` re-derives the preset's bandwidth, latency and energy unless
        those keys are overridden too."""
        d = self.to_dict()
        if "dram.preset" in overrides:
            d["dram"] = {"preset": overrides["dram.preset"]}
        for key, value in overrides.items():
            if key == "dram.preset":
                continue
            parts = key.split(".")
            node = d
            for p in parts[:-1]:
                if p not in node or not isinstance(node[p], dict):
                    node[p] = {}
                node = node[p]
            node[parts[-1]] = value
        arch = _parse(d, "overrides")
        return replace(arch, fp32=self.fp32, source=self.source)


# ----------------------------------------------------------------------------- validation

_TOP_KEYS = ("name", "description", "clock_mhz", "technology_nm", "double_buffering",
             "engine_overlap", "aggregation", "combination", "buffers", "dram", "dataflow",
             "area")
_AGG_KEYS = ("pes", "word_width", "bits", "mult_bits", "sram_latency", "index_bits",
             "pointer_bits")
_COMB_KEYS = ("rows", "cols", "scaling", "base_bits", "bits", "operand_bits", "requant_units",
              "fp32_macs_per_pe", "sparse_input", "sparse_weights")
_BUF_KEYS = ("size_kib", "banks")
_DRAM_KEYS = ("preset", "bandwidth_gbps", "latency_ns", "pj_per_bit", "burst_bytes")
_DATAFLOW_KEYS = ("default", "layers")
_AREA_KEYS = ("synth_json",)


def _fail(where: str, key: str, msg: str) -> ArchConfigError:
    return ArchConfigError(f"{where}: {key}: {msg}")


def _check_keys(d: Any, allowed: tuple[str, ...], where: str, section: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise _fail(where, section or "<top>", f"expected a table, got {type(d).__name__}")
    unknown = [k for k in d if k not in allowed]
    if unknown:
        prefix = f"{section}." if section else ""
        raise _fail(where, prefix + str(unknown[0]),
                    f"unknown key; allowed keys{(' in [' + section + ']') if section else ''}: "
                    f"{', '.join(allowed)}")
    return dict(d)


def _int(d: Mapping[str, Any], key: str, default: int, where: str, section: str,
         lo: int = 1, hi: int | None = None) -> int:
    v = d.get(key, default)
    name = f"{section}.{key}" if section else key
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(where, name, f"expected an integer, got {v!r}")
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise _fail(where, name, f"must be {rng}, got {v}")
    return v


def _num(d: Mapping[str, Any], key: str, default: float, where: str, section: str,
         positive: bool = True, allow_zero: bool = False,
         limits: tuple[float, float] | None = None) -> float:
    """A finite number; ``limits = (lo, hi)`` bounds a positive value to ``lo..hi`` (the
    range within which every derived figure stays finite; ``lo`` is ignored for 0 when
    ``allow_zero``)."""
    v = d.get(key, default)
    name = f"{section}.{key}" if section else key
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _fail(where, name, f"expected a finite number, got {v!r}")
    if positive and (v < 0 or (v == 0 and not allow_zero)):
        raise _fail(where, name, f"must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    if limits is not None and not (limits[0] <= v <= limits[1] or (v == 0 and allow_zero)):
        raise _fail(where, name, f"must be in {limits[0]:g}..{limits[1]:g}, got {v!r}")
    return float(v)


#: Ranges of the physical figures (units as in the key names): wide enough for any chip, narrow
#: enough that cycles, bytes and energies derived from them stay finite floats.
LIMITS: dict[str, tuple[float, float]] = {
    "clock_mhz": (1e-3, 1e6),
    "bandwidth_gbps": (1e-6, 1e6),
    "latency_ns": (1e-6, 1e9),
    "pj_per_bit": (1e-9, 1e9),
    "size_kib": (1 / 128, 2.0**30),
    "fp32_macs_per_pe": (1e-6, 1e6),
}
#: Upper bound of the integer counts without a natural one (requantizers, burst bytes).
MAX_COUNT = 2**20


def _choice(d: Mapping[str, Any], key: str, default: str, allowed: tuple[str, ...], where: str,
            section: str) -> str:
    v = d.get(key, default)
    name = f"{section}.{key}" if section else key
    if not isinstance(v, str) or v.lower() not in allowed:
        raise _fail(where, name, f"invalid value {v!r}; allowed: {', '.join(allowed)}")
    return v.lower()


def _bool(d: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise _fail(where, key, f"expected true or false, got {v!r}")
    return v


def _bits_list(d: Mapping[str, Any], key: str, default: tuple[int, ...], where: str,
               section: str) -> tuple[int, ...]:
    v = d.get(key, list(default))
    name = f"{section}.{key}"
    if not isinstance(v, list) or not v:
        raise _fail(where, name, f"expected a non-empty list of bit widths, got {v!r}")
    for b in v:
        if isinstance(b, bool) or not isinstance(b, int) or b not in INT_MODES:
            raise _fail(where, name, f"invalid bit width {b!r}; allowed: "
                        f"{', '.join(map(str, INT_MODES))}")
    return tuple(sorted(set(v)))


def _dram_from(d: Mapping[str, Any], where: str) -> DramConfig:
    d = _check_keys(d, _DRAM_KEYS, where, "dram")
    presets = dram_presets()
    preset = _choice(d, "preset", "hbm2", tuple(presets), where, "dram")
    p = presets[preset]
    sources = {
        "bandwidth_gbps": p["bandwidth_source"], "latency_ns": p["latency_source"],
        "pj_per_bit": p["energy_source"], "burst_bytes": p["burst_source"],
    }
    for k in ("bandwidth_gbps", "latency_ns", "pj_per_bit", "burst_bytes"):
        if k in d and d[k] != p[k]:
            sources[k] = f"overridden in {where} (preset {preset}: {p[k]})"
    return DramConfig(
        preset=preset,
        bandwidth_gbps=_num(d, "bandwidth_gbps", p["bandwidth_gbps"], where, "dram",
                            limits=LIMITS["bandwidth_gbps"]),
        latency_ns=_num(d, "latency_ns", p["latency_ns"], where, "dram", allow_zero=True,
                        limits=LIMITS["latency_ns"]),
        pj_per_bit=_num(d, "pj_per_bit", p["pj_per_bit"], where, "dram", allow_zero=True,
                        limits=LIMITS["pj_per_bit"]),
        burst_bytes=_int(d, "burst_bytes", p["burst_bytes"], where, "dram", lo=1,
                         hi=MAX_COUNT),
        sources=sources,
    )


def _parse(raw: Mapping[str, Any], where: str) -> ArchConfig:
    d = _check_keys(raw, _TOP_KEYS, where, "")
    name = d.get("name", "unnamed")
    if not isinstance(name, str) or not name:
        raise _fail(where, "name", f"expected a non-empty string, got {name!r}")
    desc = d.get("description", "")
    if not isinstance(desc, str):
        raise _fail(where, "description", f"expected a string, got {desc!r}")
    clock = _num(d, "clock_mhz", 1000.0, where, "", limits=LIMITS["clock_mhz"])
    tech = d.get("technology_nm", 45)
    if tech not in TECHNOLOGIES:
        raise _fail(where, "technology_nm", f"invalid value {tech!r}; allowed: "
                    f"{', '.join(map(str, TECHNOLOGIES))} (the energy and area tables are 45 nm)")

    # -- aggregation
    a = _check_keys(d.get("aggregation", {}), _AGG_KEYS, where, "aggregation")
    ww = a.get("word_width", 64)
    if ww not in WORD_WIDTHS:
        raise _fail(where, "aggregation.word_width",
                    f"invalid value {ww!r}; allowed: {', '.join(map(str, WORD_WIDTHS))}")
    abits = _bits_list(a, "bits", (2, 4, 8), where, "aggregation")
    for b in abits:
        if ww // b < 1:
            raise _fail(where, "aggregation.bits",
                        f"{b}-bit codes give {ww // b} lanes in a {ww}-bit word; every supported "
                        f"width must fit the word (bits <= word_width)")
    if ww // FP32_BITS < 1:
        raise _fail(where, "aggregation.word_width",
                    f"a {ww}-bit word has no FP32 lane (the FP32 counterpart needs "
                    f"word_width >= 32); allowed: {', '.join(str(w) for w in WORD_WIDTHS if w >= 32)}")
    agg = AggregationConfig(
        pes=_int(a, "pes", 8, where, "aggregation", lo=1, hi=4096),
        word_width=ww,
        bits=abits,
        mult_bits=_int(a, "mult_bits", 16, where, "aggregation", lo=1, hi=32),
        sram_latency=_int(a, "sram_latency", 1, where, "aggregation", lo=1, hi=64),
        index_bits=_int(a, "index_bits", 32, where, "aggregation", lo=8, hi=64),
        pointer_bits=_int(a, "pointer_bits", 32, where, "aggregation", lo=8, hi=64),
    )

    # -- combination
    c = _check_keys(d.get("combination", {}), _COMB_KEYS, where, "combination")
    base = _int(c, "base_bits", 8, where, "combination", lo=1, hi=32)
    cbits = _bits_list(c, "bits", (2, 4, 8), where, "combination")
    scaling = _choice(c, "scaling", "bit-fusion", SCALINGS, where, "combination")
    if max(cbits) > base:
        raise _fail(where, "combination.bits",
                    f"mode {max(cbits)} is wider than base_bits {base}; allowed: widths <= {base}")
    if scaling == "bit-fusion":
        for b in cbits:
            if base % b:
                raise _fail(where, "combination.bits",
                            f"bit-fusion needs base_bits ({base}) divisible by every mode; {b} is "
                            f"not; allowed: {[x for x in INT_MODES if x <= base and base % x == 0]}")
    opbits = _int(c, "operand_bits", 32, where, "combination", lo=1, hi=1024)
    for b in cbits:
        per_side = (base // b if scaling == "bit-fusion" else 1) * b
        if per_side > opbits:
            raise _fail(where, "combination.operand_bits",
                        f"{opbits}-bit operand wires cannot carry the {per_side} bits per side "
                        f"that {b}-bit mode consumes per cycle; need >= {per_side}")
    if opbits < FP32_BITS:
        raise _fail(where, "combination.operand_bits",
                    f"{opbits}-bit wires cannot carry an FP32 operand (FP32 counterpart); need >= 32")
    comb = CombinationConfig(
        rows=_int(c, "rows", 32, where, "combination", lo=1, hi=4096),
        cols=_int(c, "cols", 32, where, "combination", lo=1, hi=4096),
        scaling=scaling, base_bits=base, bits=cbits, operand_bits=opbits,
        requant_units=_int(c, "requant_units", 32, where, "combination", lo=1, hi=MAX_COUNT),
        fp32_macs_per_pe=_num(c, "fp32_macs_per_pe", 1.0, where, "combination",
                              limits=LIMITS["fp32_macs_per_pe"]),
        sparse_input=_choice(c, "sparse_input", "auto", SPARSE_INPUT_MODES, where,
                             "combination"),
        sparse_weights=_choice(c, "sparse_weights", "broadcast", SPARSE_WEIGHT_MODES, where,
                               "combination"),
    )

    # -- buffers
    bufs = _check_keys(d.get("buffers", {}), BUFFER_NAMES, where, "buffers")
    missing = [name for name in BUFFER_NAMES if name not in bufs]
    if missing:
        raise _fail(where, f"buffers.{missing[0]}",
                    f"missing; every chip needs the buffers {', '.join(BUFFER_NAMES)}")
    buffers: dict[str, BufferConfig] = {}
    for bname in BUFFER_NAMES:
        sec = f"buffers.{bname}"
        bd = _check_keys(bufs[bname], _BUF_KEYS, where, sec)
        if "size_kib" not in bd:
            raise _fail(where, f"{sec}.size_kib", "missing (buffer size in KiB)")
        size = _num(bd, "size_kib", 0, where, sec, limits=LIMITS["size_kib"])
        banks = _int(bd, "banks", 1, where, sec, lo=1, hi=1024)
        if size * 1024 < banks * 8:
            raise _fail(where, sec, f"{size} KiB cannot be split into {banks} banks of >= 8 bytes")
        buffers[bname] = BufferConfig(size_kib=size, banks=banks)

    # -- dram, dataflow, area
    dram = _dram_from(d.get("dram", {"preset": "hbm2"}), where)
    df = _check_keys(d.get("dataflow", {}), _DATAFLOW_KEYS, where, "dataflow")
    default_df = _choice(df, "default", "auto", DATAFLOWS, where, "dataflow")
    layers_raw = df.get("layers", {})
    if not isinstance(layers_raw, Mapping):
        raise _fail(where, "dataflow.layers", "expected a table {layer index = dataflow}")
    layers: dict[int, str] = {}
    for k, v in layers_raw.items():
        # decimal digits only: int() would also take " 2", "1_0", "-1" or "02" (a second
        # spelling of layer 2 that would silently replace the first)
        text = str(k) if isinstance(k, int) and not isinstance(k, bool) else k
        if not isinstance(text, str) or not re.fullmatch(r"0|[1-9][0-9]{0,5}", text):
            raise _fail(where, f"dataflow.layers.{k}",
                        "layer keys must be integer indices 0..999999 (decimal, no sign, "
                        "no leading zeros)")
        idx = int(text)
        if idx in layers:
            raise _fail(where, f"dataflow.layers.{k}", f"layer {idx} is given twice")
        layers[idx] = _choice({"v": v}, "v", "auto", DATAFLOWS, where, f"dataflow.layers.{k}")
    area = _check_keys(d.get("area", {}), _AREA_KEYS, where, "area")
    synth = area.get("synth_json")
    if synth is not None and not isinstance(synth, str):
        raise _fail(where, "area.synth_json", f"expected a path string, got {synth!r}")

    return ArchConfig(
        name=name, description=desc, clock_mhz=clock, technology_nm=int(tech),
        aggregation=agg, combination=comb, buffers=buffers,
        double_buffering=_bool(d, "double_buffering", True, where),
        engine_overlap=_bool(d, "engine_overlap", True, where),
        dram=dram, dataflow_default=default_df, dataflow_layers=layers,
        synth_json=synth or None,
    )


def load_arch(arch: ArchConfig | str | Path | Mapping[str, Any] | None = None) -> ArchConfig:
    """An :class:`ArchConfig` from a config, a TOML path, a preset name in ``sim/configs``
    (``"default"``), a dictionary, or ``None`` (the default chip)."""
    if isinstance(arch, ArchConfig):
        return arch
    if isinstance(arch, Mapping):
        return _parse(copy.deepcopy(dict(arch)), "arch")
    if arch is not None and not isinstance(arch, str | os.PathLike):
        raise ArchConfigError(f"arch {arch!r}: expected a file path or a preset name "
                              f"(a string), got {type(arch).__name__}")
    path = DEFAULT_ARCH if arch is None else Path(arch)
    if arch is not None and not path.exists() and isinstance(arch, str) and "/" not in arch:
        cand = CONFIG_DIR / (arch if arch.endswith(".toml") else f"{arch}.toml")
        if cand.exists():
            path = cand
        else:
            names = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
            raise ArchConfigError(f"arch {arch!r}: no such file or preset; presets: {', '.join(names)}")
    if not path.exists():
        raise ArchConfigError(f"arch file not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArchConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ArchConfigError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise ArchConfigError(f"{path}: invalid TOML: {e}") from None
    except RecursionError:
        raise ArchConfigError(f"{path}: invalid TOML: nested too deeply") from None
    cfg = _parse(raw, str(path))
    synth = cfg.synth_json
    if synth and not Path(synth).is_absolute():
        synth = str((path.parent / synth).resolve())
    return replace(cfg, source=str(path), synth_json=synth)
