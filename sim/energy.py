"""Per-action energies (pJ) from the data file ``sim/data/energy_table.toml``.

Every measured point and every derivation rule in that file has a ``source``; this module is the
only code that turns them into numbers (see the ``[rule.*]`` entries for the formulas).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["ENERGY_TABLE", "EnergyTable", "energy_table"]

ENERGY_TABLE = Path(__file__).resolve().parent / "data" / "energy_table.toml"


class EnergyTableError(ValueError):
    """The energy table is malformed (a missing value, unit or source)."""


@dataclass(frozen=True)
class EnergyTable:
    """The loaded table; methods give the energy of one action in pJ."""

    entries: dict[str, dict[str, Any]]
    rules: dict[str, dict[str, Any]]
    meta: dict[str, Any]
    path: str

    def value(self, name: str) -> float:
        return float(self.entries[name]["value"])

    # ------------------------------------------------------------------ arithmetic
    def int_add(self, width: float) -> float:
        """A ``width``-bit integer add (pJ): linear through Horowitz's 8- and 32-bit points."""
        if width <= 0:
            return 0.0
        e8, e32 = self.value("int8_add"), self.value("int32_add")
        if width <= 8:
            return e8 * width / 8.0
        return e8 + (width - 8.0) * (e32 - e8) / 24.0

    def int_mult(self, a_bits: float, b_bits: float) -> float:
        """An ``a`` x ``b``-bit integer multiply (pJ): 8-bit energy x (a*b)/64."""
        if a_bits <= 0 or b_bits <= 0:
            return 0.0
        return self.value("int8_mult") * a_bits * b_bits / 64.0

    def fp32_add(self) -> float:
        return self.value("fp32_add")

    def fp32_mult(self) -> float:
        return self.value("fp32_mult")

    def mac(self, act_bits: int, weight_bits: int, k: int) -> float:
        """One multiply-accumulate (pJ) of the combination array (rule ``mac_int``/``mac_fp32``)."""
        if act_bits >= 32 or weight_bits >= 32:
            return self.fp32_mult() + self.fp32_add()
        acc = 2 * max(act_bits, weight_bits) + math.ceil(math.log2(max(k, 2))) + 1
        return self.int_mult(act_bits, weight_bits) + self.int_add(acc)

    def index_compare(self, width: int) -> float:
        """One ``width``-bit index comparison (pJ) of the sparse combination's merge (rule
        ``index_compare``: a comparison is a subtraction, priced as an add of that width)."""
        return self.int_add(width)

    def requant(self, in_width: int, mult_bits: int, fp32: bool) -> float:
        """One requantized output value (pJ) (rule ``requant_int``/``requant_fp32``)."""
        if fp32:
            return self.fp32_mult() + self.fp32_add()
        return (self.int_mult(in_width + 1, mult_bits)
                + 2 * self.int_add(in_width + 1 + mult_bits))

    # ------------------------------------------------------------------ memories
    def sram_access(self, bank_kib: float, width_bits: float) -> float:
        """One ``width_bits``-bit access to an SRAM bank of ``bank_kib`` KiB (pJ)."""
        pts = sorted((float(e["size_kib"]), float(e["value"]))
                     for e in self.entries.values() if "size_kib" in e)
        xs = [math.log(s) for s, _ in pts]
        ys = [math.log(v) for _, v in pts]
        x = math.log(max(bank_kib, 1e-6))
        if x <= xs[0]:
            i = 0
        elif x >= xs[-1]:
            i = len(xs) - 2
        else:
            i = max(j for j in range(len(xs) - 1) if xs[j] <= x)
        slope = (ys[i + 1] - ys[i]) / (xs[i + 1] - xs[i])
        e64 = math.exp(ys[i] + slope * (x - xs[i]))
        return e64 * width_bits / 64.0

    def sources(self) -> dict[str, str]:
        """Every entry and rule with its source."""
        out = {f"entry.{k}": str(v["source"]) for k, v in self.entries.items()}
        out.update({f"rule.{k}": str(v["source"]) for k, v in self.rules.items()})
        return out


def _check(section: dict[str, Any], kind: str, path: Path) -> None:
    for name, e in section.items():
        for key in ("value", "unit", "source"):
            if key not in e or e[key] in ("", None):
                raise EnergyTableError(f"{path}: {kind}.{name}: missing {key!r}")


@lru_cache(maxsize=4)
def energy_table(path: str | None = None) -> EnergyTable:
    """Load and check the table (default ``sim/data/energy_table.toml``)."""
    p = Path(path) if path else ENERGY_TABLE
    with p.open("rb") as f:
        raw = tomllib.load(f)
    entries = raw.get("entry", {})
    rules = raw.get("rule", {})
    _check(entries, "entry", p)
    _check(rules, "rule", p)
    for need in ("int8_add", "int32_add", "int8_mult", "fp32_add", "fp32_mult"):
        if need not in entries:
            raise EnergyTableError(f"{p}: entry.{need}: missing")
    if sum(1 for e in entries.values() if "size_kib" in e) < 2:
        raise EnergyTableError(f"{p}: need at least two SRAM points with size_kib")
    return EnergyTable(entries=entries, rules=rules, meta=raw.get("meta", {}), path=str(p))
