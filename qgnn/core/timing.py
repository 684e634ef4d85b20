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


# ------------------------------------------------------------------------------------------
# Mixed-width aggregation (degree-aware mixed precision, hw/mixed_engine.py)
#
# Neighbour-major streaming: PE p takes rows i = p, p + P, ... in order; for row i it streams
# every term's source row (W_k(j) words of the source's bucket, its index read once) and then
# emits the row's O_i output words at the row's width, one slot per cycle with no per-row
# overhead. With the same memory conditions as above:
#
#     rtl_cycles = max_p F_p,   S_p = sum_{i mod P = p} (I_i + O_i)
#     F_p = T_fill(L) + S_p     PE p has a row with a term (I_i > 0)
#           T_deg0(L) + S_p     all of PE p's rows are degree-0 (I_i = 0)
#           T_IDLE              PE p has no rows
#
#     I_i = sum_{j in N(i)} W_k(j)     input words of row i (0 for a degree-0 row)
#     O_i = ceil(F * out_bits[k(i)] / word_width)   output words of row i
#
# with the same T_fill(L) = 3 L + 10, T_deg0(L) = L + 10 and T_IDLE = 4 as the uniform engine
# (descriptor, index and feature round trips; the same register stages). That is the serial
# drain (MixedParams.overlap_drain = False: the output words are slots of the stream).
#
# Overlapped drain (overlap_drain = True, the default): a row's sums move to a hold bank with
# its last word and are requantized while the next row accumulates. With A_i = max(I_i, 1) (a
# degree-0 row is one slot) and the rows of PE p in order, r0 its first row with terms:
#
#     S_p = H_p + sum_{i > r0} max(A_i, O_{i-1}) + O_last
#     H_p = A_r0                                            r0 = 0
#           max(1 + sum_{q < r0-1} max(1, O_q) + A_r0,      memory path (walker held by the
#               sum_{q < r0} max(1, O_q) + T_deg0 + 1 - T_fill)   leading degree-0 rows) or
#                                                                  the hold bank, r0 > 0
#     F_p = T_fill(L) + S_p   (a row with terms);  T_deg0(L) + 1 + sum O   (all degree-0)
#
# The functions take per-row arrays (lists or numpy arrays) and evaluate with numpy, so sim/
# can apply them to whole graphs at once.
# ------------------------------------------------------------------------------------------


def _mixed_rows(row_in_words: Sequence[int], row_out_words: Sequence[int]):  # noqa: ANN202
    import numpy as np

    i = np.asarray(row_in_words, dtype=np.int64).reshape(-1)
    o = np.asarray(row_out_words, dtype=np.int64).reshape(-1)
    if i.shape != o.shape:
        raise ValueError(f"row_in_words ({i.size} rows) and row_out_words ({o.size} rows) "
                         "must have one entry per row")
    if i.size and int(i.min()) < 0:
        raise ValueError(f"row {int(np.argmin(i))} has negative input words {int(i.min())}")
    if o.size and int(o.min()) < 1:
        raise ValueError(f"row {int(np.argmin(o))} has {int(o.min())} output words; every row "
                         "has at least 1")
    return i, o


#: Extra fill (cycles) of an overlapped-drain PE whose rows are all degree-0: a degree-0 row's
#: (empty) sums pass through the hold bank, one register stage, before its drain starts.
OVERLAP_DEG0_EXTRA = 1


def _overlap_slots(i, o, latency: int) -> int:  # noqa: ANN001 - one PE's rows (numpy)
    """``S_p`` of one PE of the overlapped-drain engine (rows in order, at least one)."""
    import numpy as np

    a = np.maximum(i, 1)
    terms = np.flatnonzero(i > 0)
    if terms.size == 0:
        return int(o.sum())
    r0 = int(terms[0])
    tail = int(np.maximum(a[r0 + 1:], o[r0:-1]).sum()) if o.size > r0 + 1 else 0
    if r0 == 0:
        return int(a[0]) + tail + int(o[-1])
    # leading degree-0 rows: the walker holds row q for max(1, O_{q-1}) cycles; the first row
    # with terms waits for its memory round trips or for the hold bank, whichever is later
    held = 1 + int(np.maximum(o[:r0 - 1], 1).sum())
    via_memory = held + int(a[r0])
    via_hold = int(np.maximum(o[:r0], 1).sum()) + t_deg0(latency) + OVERLAP_DEG0_EXTRA \
        - t_fill(latency)
    return max(via_memory, via_hold) + tail + int(o[-1])


def mixed_pe_slots(row_in_words: Sequence[int], row_out_words: Sequence[int],
                   pes: int, overlap_drain: bool = True, latency: int = 1) -> list[int]:
    """``S_p`` (cycles) of every PE of the mixed engine: ``sum_{i mod P = p} (I_i + O_i)``, or
    with ``overlap_drain`` the hold-bank form (see the formula above).

    Args:
        row_in_words: ``I_i``, input words streamed for row ``i`` (sum over its terms of the
            source's words per row; 0 for a degree-0 row).
        row_out_words: ``O_i``, output words of row ``i`` (>= 1).
        pes: ``P``.
        overlap_drain: the engine was elaborated with ``MixedParams.overlap_drain``.
        latency: ``L`` (cycles); only the overlapped form's leading degree-0 rows use it.
    """
    import numpy as np

    if pes < 1:
        raise ValueError(f"pes must be >= 1, got {pes}")
    i, o = _mixed_rows(row_in_words, row_out_words)
    if overlap_drain:
        return [_overlap_slots(i[p::pes], o[p::pes], latency) if i[p::pes].size else 0
                for p in range(pes)]
    pe = np.arange(i.size) % pes
    return [int(v) for v in np.bincount(pe, weights=i + o, minlength=pes).astype(np.int64)]


def mixed_pe_finish_cycles(row_in_words: Sequence[int], row_out_words: Sequence[int], pes: int,
                           latency: int, overlap_drain: bool = True) -> list[int]:
    """``F_p`` of every PE of the mixed engine (cycles from start; see the formula above)."""
    import numpy as np

    _check_latency(latency)
    i, o = _mixed_rows(row_in_words, row_out_words)
    slots = np.asarray(mixed_pe_slots(i, o, pes, overlap_drain, latency), dtype=np.int64)
    pe = np.arange(i.size) % pes
    rows = np.bincount(pe, minlength=pes)
    terms = np.bincount(pe, weights=(i > 0), minlength=pes) > 0
    deg0_fill = t_deg0(latency) + (OVERLAP_DEG0_EXTRA if overlap_drain else 0)
    fill = np.where(terms, t_fill(latency), deg0_fill)
    return [int(v) for v in np.where(rows > 0, fill + slots, T_IDLE)]


def mixed_aggregation_cycles(row_in_words: Sequence[int], row_out_words: Sequence[int],
                             pes: int, latency: int, overlap_drain: bool = True) -> int:
    """``rtl_cycles`` of one mixed-width stage with ideal memory of fixed ``latency`` (cycles):
    ``max_p F_p`` (see :func:`mixed_pe_finish_cycles`)."""
    return max(mixed_pe_finish_cycles(row_in_words, row_out_words, pes, latency, overlap_drain))


def mixed_ideal_cycles(row_in_words: Sequence[int], row_out_words: Sequence[int],
                       pes: int, overlap_drain: bool = True, latency: int = 1) -> int:
    """``max_p S_p``: one slot per cycle per PE, no fill."""
    return max(mixed_pe_slots(row_in_words, row_out_words, pes, overlap_drain, latency))


__all__ += [
    "OVERLAP_DEG0_EXTRA",
    "mixed_aggregation_cycles",
    "mixed_ideal_cycles",
    "mixed_pe_finish_cycles",
    "mixed_pe_slots",
]
