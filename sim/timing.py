"""Timing primitives: the aggregation engine's timing contract and the DRAM/compute pipeline.

The contract (docs/aggregation-engine.md): with memories that answer after a fixed latency
``L`` and never stall, the engine takes ::

    T_fill(L) + max_p  sum_{i mod P = p}  W * max(n_i, 1)

cycles. ``T_fill`` belongs to the RTL and is defined in ``hw/timing.py``; this module uses that
file whenever it is importable and otherwise a stand-in with the same signature (reported by
:func:`timing_source`), so the simulator and the RTL share one definition.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

import numpy as np
import numpy.typing as npt

__all__ = [
    "T_fill",
    "aggregation_cycles",
    "pe_loads",
    "pipeline",
    "timing_source",
]

#: Stand-in pipeline fill and drain (cycles) used only while ``hw/timing.py`` does not exist.
FALLBACK_FILL_BASE = 2


def _hw_timing() -> ModuleType | None:
    try:
        if importlib.util.find_spec("hw.timing") is None:
            return None
        mod = importlib.import_module("hw.timing")
    except ImportError:
        return None
    return mod if hasattr(mod, "T_fill") else None


def timing_source() -> str:
    """``"hw.timing"`` when the RTL's timing module is used, else ``"sim.timing (fallback)"``."""
    return "hw.timing" if _hw_timing() is not None else "sim.timing (fallback)"


def T_fill(latency: int) -> int:  # noqa: N802 - the contract's name
    """Pipeline fill and drain of the aggregation engine (cycles) for memory latency ``latency``
    (cycles): ``hw.timing.T_fill`` when available, else ``latency + 2`` (stand-in)."""
    hw = _hw_timing()
    if hw is not None:
        return int(hw.T_fill(latency))
    if latency < 0:
        raise ValueError(f"latency must be >= 0 cycles, got {latency}")
    return int(latency) + FALLBACK_FILL_BASE


def pe_loads(row_lengths: npt.ArrayLike, words_per_row: int, pes: int) -> np.ndarray:
    """Cycles of work per element: ``sum_{i mod P = p} W * max(n_i, 1)`` (int64 ``[P]``).

    Exact integer arithmetic, vectorised (no loop over rows)."""
    n = np.asarray(row_lengths, dtype=np.int64)
    if pes < 1:
        raise ValueError(f"pes must be >= 1, got {pes}")
    if words_per_row < 0:
        raise ValueError(f"words_per_row must be >= 0, got {words_per_row}")
    m = np.maximum(n, 1)
    pad = (-m.size) % pes
    if pad:
        m = np.concatenate([m, np.zeros(pad, dtype=np.int64)])
    return m.reshape(-1, pes).sum(axis=0, dtype=np.int64) * np.int64(words_per_row)


def aggregation_cycles(row_lengths: npt.ArrayLike, words_per_row: int, pes: int,
                       latency: int) -> int:
    """The timing contract: ``T_fill(L) + max_p sum_{i mod P = p} W * max(n_i, 1)`` (cycles).

    Uses ``hw.timing.aggregation_cycles`` when it exists (so both sides run the same code);
    otherwise the same formula here."""
    hw = _hw_timing()
    if hw is not None and hasattr(hw, "aggregation_cycles"):
        return int(hw.aggregation_cycles(np.asarray(row_lengths, dtype=np.int64), words_per_row,
                                         pes, latency))
    loads = pe_loads(row_lengths, words_per_row, pes)
    return T_fill(latency) + int(loads.max(initial=0))


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
