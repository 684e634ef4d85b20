"""Timing primitives: the aggregation engine's timing contract, vectorised, and the DRAM/compute
pipeline.

The contract (docs/aggregation-engine.md, ``qgnn/core/timing.py``): with memories that answer
after a fixed latency ``L`` and never stall, the engine takes ``max_p F_p`` cycles with
``S_p = sum_{i mod P = p} W * max(n_i, 1)`` and ::

    F_p = T_fill(L) + S_p    if element p has a row with a term
          T_deg0(L) + S_p    if all of element p's rows have no terms
          T_IDLE             if element p has no rows

The constants live in :mod:`qgnn.core.timing`, the layer that the RTL (``hw/``) and this
simulator both stand on; the RTL testbenches assert that the engine's measured cycles equal it.
The formula is evaluated here with numpy (no loop over rows), and the tests check it against
``qgnn.core.timing.aggregation_cycles``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qgnn.core import timing as _contract
from qgnn.core.timing import T_IDLE

__all__ = [
    "T_IDLE",
    "T_fill",
    "T_deg0",
    "aggregation_cycles",
    "pe_finish",
    "pe_loads",
    "pipeline",
    "timing_source",
]


def timing_source() -> str:
    """The module that owns the timing contract's constants (reported in simulation outputs)."""
    return _contract.__name__


def _check_latency(latency: int) -> None:
    if isinstance(latency, bool) or not isinstance(latency, int | np.integer) or latency < 1:
        raise ValueError(f"latency must be an integer >= 1 (cycles), got {latency!r}")


def T_fill(latency: int) -> int:  # noqa: N802 - the contract's name
    """Fill and drain of an element whose rows have terms (cycles), ``qgnn.core.timing.t_fill``."""
    _check_latency(latency)
    return _contract.t_fill(int(latency))


def T_deg0(latency: int) -> int:  # noqa: N802
    """Fill and drain of an element whose rows all have no terms (cycles),
    ``qgnn.core.timing.t_deg0``."""
    _check_latency(latency)
    return _contract.t_deg0(int(latency))


def _by_pe(values: np.ndarray, pes: int) -> np.ndarray:
    pad = (-values.size) % pes
    if pad:
        values = np.concatenate([values, np.zeros(pad, dtype=values.dtype)])
    return values.reshape(-1, pes)


def pe_loads(row_lengths: npt.ArrayLike, words_per_row: int, pes: int) -> np.ndarray:
    """``S_p = sum_{i mod P = p} W * max(n_i, 1)``: cycles of work per element (int64 ``[P]``)."""
    n = np.asarray(row_lengths, dtype=np.int64)
    if pes < 1:
        raise ValueError(f"pes must be >= 1, got {pes}")
    if words_per_row < 0:
        raise ValueError(f"words_per_row must be >= 0, got {words_per_row}")
    return _by_pe(np.maximum(n, 1), pes).sum(axis=0, dtype=np.int64) * np.int64(words_per_row)


def pe_kinds(row_lengths: npt.ArrayLike, pes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(has_rows, has_terms)`` per element (bool ``[P]``)."""
    n = np.asarray(row_lengths, dtype=np.int64)
    has_rows = np.arange(pes) < n.size
    has_terms = (np.asarray(_by_pe(n > 0, pes).any(axis=0)) if n.size
                 else np.zeros(pes, dtype=bool))
    return has_rows, has_terms


def pe_finish(loads: np.ndarray, has_rows: np.ndarray, has_terms: np.ndarray,
              words_per_row: int, latency: int) -> np.ndarray:
    """``F_p`` (cycles) from per-element loads at one word per row (``pe_loads(n, 1, P)``)."""
    s = np.asarray(loads, dtype=np.int64) * np.int64(words_per_row)
    return np.where(has_terms, T_fill(latency) + s,
                    np.where(has_rows, T_deg0(latency) + s, T_IDLE)).astype(np.int64)


def aggregation_cycles(row_lengths: npt.ArrayLike, words_per_row: int, pes: int,
                       latency: int) -> int:
    """The timing contract ``max_p F_p`` (cycles), vectorised; equals
    ``qgnn.core.timing.aggregation_cycles`` (checked by tests/sim)."""
    _check_latency(latency)
    if words_per_row < 1:
        raise ValueError(f"words_per_row must be >= 1, got {words_per_row}")
    n = np.asarray(row_lengths, dtype=np.int64)
    if n.size and n.min() < 0:
        raise ValueError("row lengths must be >= 0")
    has_rows, has_terms = pe_kinds(n, pes)
    f = pe_finish(pe_loads(n, 1, pes), has_rows, has_terms, words_per_row, latency)
    return int(f.max(initial=T_IDLE))


def pipeline(
    compute: npt.ArrayLike,
    prefetch: npt.ArrayLike,
    stream: npt.ArrayLike,
    bytes_per_cycle: float,
    latency: float,
    double_buffering: bool,
) -> float:
    """Cycles of a phase made of passes that compute while DRAM moves data.

    Pass ``k`` computes for ``compute[k]`` cycles; ``prefetch[k]`` bytes must be on chip before
    it starts (a tile of source rows, weights); ``stream[k]`` bytes move while it runs (indices,
    row descriptors, input rows, outputs). With double buffering the next pass's prefetch
    overlaps the current pass::

        latency + prefetch[0]/B + sum_k max(compute[k], (stream[k] + prefetch[k+1]) / B)

    and without it nothing overlaps: ``sum_k latency + (prefetch[k] + stream[k]) / B + compute[k]``
    (``B`` = bytes per cycle; latency only where bytes move). Monotone: more bandwidth never
    adds cycles."""
    c = np.asarray(compute, dtype=np.float64)
    pre = np.asarray(prefetch, dtype=np.float64)
    st = np.asarray(stream, dtype=np.float64)
    if not (c.shape == pre.shape == st.shape):
        raise ValueError("compute, prefetch and stream need one entry per pass")
    if c.size == 0:
        return 0.0
    inv = 1.0 / bytes_per_cycle
    moves = (pre + st) > 0
    if double_buffering:
        nxt = np.concatenate([pre[1:], [0.0]])
        body = np.maximum(c, (st + nxt) * inv).sum()
        lat = latency if moves.any() else 0.0
        return float(lat + pre[0] * inv + body)
    return float((latency * moves + (pre + st) * inv + c).sum())
