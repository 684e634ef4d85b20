"""Parsing of parameterised synthetic dataset names (``"csbm:n=500,degree=8"``).

Grammar: ``<family>[:<key>=<value>[,<key>=<value>]...]``, case-insensitive,
whitespace around tokens ignored.  Integers accept ``10000000``,
``10_000_000`` and integral scientific notation ``1e7``; booleans accept
``1/0/true/false/yes/no``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import DatasetError

__all__ = [
    "Param",
    "Value",
    "canonical_name",
    "get_bool",
    "get_float",
    "get_int",
    "parse_params",
    "split_name",
]

Value = int | float | bool


@dataclass(frozen=True)
class Param:
    """One named parameter of a synthetic generator.

    Attributes:
        name: key used in the dataset name.
        kind: ``int``, ``float`` or ``bool``.
        default: value when omitted (``None``: computed by the generator).
        lo, hi: inclusive bounds (``None``: unbounded).
        lo_open: if true the lower bound is exclusive.
        doc: one-line description including units.
    """

    name: str
    kind: type
    default: Value | None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    doc: str = ""

    def allowed(self) -> str:
        """Human description of the allowed values, e.g. ``float in [0, 1]``."""
        if self.kind is bool:
            return "bool (0/1)"
        lo = "-inf" if self.lo is None else _fmt(self.kind(self.lo))
        hi = "inf" if self.hi is None else _fmt(self.kind(self.hi))
        return f"{self.kind.__name__} in {'(' if self.lo_open else '['}{lo}, {hi}]"

    def describe(self) -> str:
        default = "derived" if self.default is None else _fmt(self.default)
        return f"{self.name}: {self.allowed()}, default {default} -- {self.doc}"

    def convert(self, family: str, text: str) -> Value:
        """Parse and range-check ``text``; raise :class:`DatasetError`."""
        try:
            value = _parse_value(self.kind, text)
        except ValueError:
            raise DatasetError(
                f"{family}: bad value {self.name}={text!r}; expected {self.allowed()}"
            ) from None
        if self.kind is not bool:
            num = float(value)
            too_low = self.lo is not None and (num <= self.lo if self.lo_open else num < self.lo)
            too_high = self.hi is not None and num > self.hi
            if too_low or too_high or not math.isfinite(num):
                raise DatasetError(
                    f"{family}: {self.name}={text} is out of range; allowed: {self.allowed()}"
                )
        return value


def _fmt(v: Value) -> str:
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _parse_value(kind: type, text: str) -> Value:
    if kind is bool:
        t = text.lower()
        if t in ("1", "true", "yes"):
            return True
        if t in ("0", "false", "no"):
            return False
        raise ValueError(text)
    if kind is int:
        try:
            return int(text)
        except ValueError:
            f = float(text)
            if not f.is_integer():
                raise ValueError(text) from None
            return int(f)
    return float(text)


def split_name(name: str) -> tuple[str, str | None]:
    """``"CSBM:n=5"`` -> ``("csbm", "n=5")``; no colon -> ``(family, None)``."""
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, got {type(name).__name__}")
    base, sep, rest = name.strip().lower().partition(":")
    return base.strip(), (rest if sep else None)


def parse_params(family: str, text: str | None, specs: Sequence[Param]) -> dict[str, Value | None]:
    """Parse ``key=value`` pairs against ``specs``; fill in defaults.

    Raises:
        DatasetError: unknown or repeated key, malformed pair, bad value; the
            message lists every allowed parameter with its range and default.
    """
    by_name = {p.name: p for p in specs}
    values: dict[str, Value | None] = {p.name: p.default for p in specs}
    seen: set[str] = set()
    allowed = "; ".join(p.describe() for p in specs)
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        if not eq or not key or not raw:
            raise DatasetError(f"{family}: malformed parameter {item!r}; use key=value. "
                               f"Allowed parameters: {allowed}")
        if key not in by_name:
            raise DatasetError(
                f"{family}: unknown parameter {key!r}. Allowed parameters: {allowed}")
        if key in seen:
            raise DatasetError(f"{family}: parameter {key!r} given twice")
        seen.add(key)
        values[key] = by_name[key].convert(family, raw)
    return values


def canonical_name(family: str, specs: Sequence[Param], values: dict[str, Value | None]) -> str:
    """Canonical name with every parameter, in declaration order."""
    parts = []
    for p in specs:
        v = values[p.name]
        assert v is not None, p.name
        parts.append(f"{p.name}={_fmt(p.kind(v))}")
    return f"{family}:{','.join(parts)}"


def _get(values: dict[str, Value | None], key: str) -> Value:
    v = values[key]
    if v is None:
        raise DatasetError(f"parameter {key!r} has no value")
    return v


def get_int(values: dict[str, Value | None], key: str) -> int:
    """Typed accessor for a resolved integer parameter."""
    return int(_get(values, key))


def get_float(values: dict[str, Value | None], key: str) -> float:
    """Typed accessor for a resolved float parameter."""
    return float(_get(values, key))


def get_bool(values: dict[str, Value | None], key: str) -> bool:
    """Typed accessor for a resolved boolean parameter."""
    return bool(_get(values, key))
