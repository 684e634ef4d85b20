"""Cycle counts of the aggregation engine with ideal memory: the timing contract.

Pure Python (no Amaranth import): ``sim/`` imports it, and the RTL testbenches assert that the
engine's measured ``rtl_cycles`` equal :func:`aggregation_cycles` exactly.

Conditions: every memory port answers each request exactly ``latency`` cycles after accepting it
(a request accepted in cycle ``t`` is answered in cycle ``t + L``), in order, and never stalls;
output streams are always ready; ``1 <= L <= max_latency`` of the engine (deeper latencies are
correct but slower). ``rtl_cycles`` counts from the cycle in which ``start`` is accepted (cycle
0) to the first cycle with ``done = 1``.

With ``S_p = sum_{i mod P = p} W * max(n_i, 1)`` (the slots of PE ``p``: one word per cycle,
no per-row overhead, ``W`` cycles for a degree-0 row)::

    rtl_cycles = max_p F_p,   F_p = T_fill(L) + S_p    if PE p has a row with n_i >= 1
                                    T_deg0(L) + S_p    if all of PE p's rows have n_i = 0
                                    T_IDLE             if PE p has no rows (N <= p)

    T_fill(L) = 3 L + 10      descriptor, index and feature round trips (3 L); start latch 1,
                              descriptor request 1, the three response FIFOs 3, requantizer 3,
                              last output -> PE idle -> done 3, less 1 (slot S ends at S - 1)
    T_deg0(L) = L + 10        a degree-0 row reads only its descriptor (its 2 FIFO stages
                              are the tag FIFOs, which are passed without waiting)
    T_IDLE    = 4

When every PE that has rows has at least one row with a term (a GCN layer: self-loops), this is
the contract of ``docs/aggregation-engine.md``: ``T_fill(L) + max_p S_p``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: Cycles from start to done when a PE has no rows (and for N = 0).
T_IDLE = 4
#: Register stages on the path of a slot that reads memory, besides the 3 L of the round trips.
FILL_STAGES = 10
#: Memory round trips on the path of a slot with terms (descriptor, index, feature).
FILL_ROUND_TRIPS = 3


def _check_latency(latency: int) -> None:
    if not isinstance(latency, int) or isinstance(latency, bool) or latency < 1:
        raise ValueError(f"latency must be an integer >= 1 (cycles), got {latency!r}")


def t_fill(latency: int) -> int:
    """Pipeline fill and drain of a PE whose rows have terms: ``3 L + 10`` (cycles)."""
    _check_latency(latency)
    return FILL_ROUND_TRIPS * latency + FILL_STAGES


def t_deg0(latency: int) -> int:
    """Fill and drain of a PE whose rows all have no terms: ``L + 10`` (cycles)."""
    _check_latency(latency)
    return latency + FILL_STAGES


def pe_slots(row_lengths: Iterable[int], words_per_row: int, pes: int) -> list[int]:
    """``S_p``: cycles of work (one word per cycle) of every PE ``p`` (row ``i`` -> ``i mod P``)."""
    if words_per_row < 1:
        raise ValueError(f"words_per_row must be >= 1, got {words_per_row}")
    if pes < 1:
        raise ValueError(f"pes must be >= 1, got {pes}")
    slots = [0] * pes
    for i, n in enumerate(row_lengths):
        n = int(n)
        if n < 0:
            raise ValueError(f"row {i} has a negative length {n}")
        slots[i % pes] += words_per_row * max(n, 1)
    return slots


def pe_finish_cycles(row_lengths: Sequence[int], words_per_row: int, pes: int,
                     latency: int) -> list[int]:
    """``F_p``: the cycle (from start) after which PE ``p`` has emitted its last word, +done."""
    _check_latency(latency)
    lengths = [int(n) for n in row_lengths]
    slots = pe_slots(lengths, words_per_row, pes)
    out = []
    for p in range(pes):
        rows = lengths[p::pes]
        if not rows:
            out.append(T_IDLE)
        elif any(n > 0 for n in rows):
            out.append(t_fill(latency) + slots[p])
        else:
            out.append(t_deg0(latency) + slots[p])
    return out


def aggregation_cycles(row_lengths: Sequence[int], words_per_row: int, pes: int,
                       latency: int) -> int:
    """``rtl_cycles`` of one aggregation stage with ideal memory of fixed ``latency`` (cycles).

    Args:
        row_lengths: ``n_i`` for every destination row (CSR row lengths, self-loops included).
        words_per_row: ``W``, words per feature row.
        pes: ``P``, processing elements.
        latency: ``L``, memory latency in cycles (``>= 1``).
    """
    return max(pe_finish_cycles(row_lengths, words_per_row, pes, latency))


def ideal_cycles(row_lengths: Sequence[int], words_per_row: int, pes: int) -> int:
    """``max_p S_p``: one word per cycle per PE with no fill (the ideal the figures compare to)."""
    return max(pe_slots(row_lengths, words_per_row, pes))


__all__ = [
    "FILL_ROUND_TRIPS",
    "FILL_STAGES",
    "T_IDLE",
    "aggregation_cycles",
    "ideal_cycles",
    "pe_finish_cycles",
    "pe_slots",
    "t_deg0",
    "t_fill",
]
