"""Free-running RTL bench of the mixed-width engine: the harness of :mod:`hw.freerun` around
``qgnn_mixed_engine``, and the reset check shared by both mixed benches (pure Python).

The harness ``qgnn_mixed_freerun`` is :func:`hw.freerun.harness_text` with the mixed engine's
:class:`~hw.freerun.HarnessSpec` (:func:`mixed_harness_spec`): the same memories loaded with
``$readmemh``, the same per-port memory models (latency, in-order responses, xorshift32 stalls
seeded from ``seed``), output memory, counters, ``tb_cycles`` and ``timeout``; only the widths
and the run-time inputs differ. The descriptor memory holds the packed mixed descriptors, the
index memory the packed ``(feat_offset, src_bucket)`` responses, the feature memory the stage's
input words and the output memory ``sum_i O_i`` words (:class:`hw.mixed_memimage.MixedImage`).
The run-time inputs are the engine's: ``num_nodes``, ``features`` and ``<name>__<k>`` for every
bucket ``k < max_buckets`` and ``name`` in ``in_sel, z_in, weight, out_sel, z_out``. It also
has the output ``any_valid`` (every request and output ``valid`` of the engine, ORed, sampled
at each clock edge) for the reset check.

**Reset check** (both benches, every mixed stage of ``qgnn verify``): the stage is started,
``rst`` is raised in cycle :func:`reset_cycle` (drawn from the seed, in the middle half of the
contract, so the run is still going with or without stalls) and held for
:data:`RESET_HOLD` cycles; then ``busy``, ``done``, ``overflow``, the ``cycles`` register and
every request/output ``valid`` must be 0 (:data:`RESET_STATE_KEYS`, :func:`reset_cleared`).
The stage is then run again from the start and verified in full (every word, cycles equal to
:func:`qgnn.core.timing.mixed_aggregation_cycles`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .freerun import HarnessShape, HarnessSpec, harness_text, queue_log2, write_stage_files
from .mixed_params import BUCKET_INPUTS, MIXED_TOP_NAME, MixedParams
from .params import SHIFT_BITS

#: Verilog module name (and cocotb toplevel) of the mixed free-running harness.
MIXED_HARNESS_NAME = "qgnn_mixed_freerun"
#: File name of the mixed harness Verilog.
MIXED_HARNESS_FILE = f"{MIXED_HARNESS_NAME}.v"
#: Cycles ``rst`` is held in the reset check.
RESET_HOLD = 2
#: Signals the reset check reads with ``rst`` held; each must be 0.
RESET_STATE_KEYS = ("busy", "done", "overflow", "cycles", "any_valid")


def mixed_desc_bits(params: MixedParams) -> int:
    """Width of the mixed descriptor response (bits): ``start``, ``end``, ``multiplier``,
    ``shift``, ``bucket``, ``out_offset`` (:meth:`MixedParams.pack_descriptor`)."""
    return (2 * params.edge_bits + params.mult_bits + SHIFT_BITS + params.bucket_bits
            + params.addr_bits)


def mixed_index_bits(params: MixedParams) -> int:
    """Width of the mixed index response (bits): word address and bucket of the source."""
    return params.addr_bits + params.bucket_bits


def mixed_harness_spec(params: MixedParams) -> HarnessSpec:
    """The :class:`~hw.freerun.HarnessSpec` of ``qgnn_mixed_engine`` for ``params``."""
    widths = {"in_sel": params.in_sel_bits, "z_in": params.z_in_bits, "weight": params.r_bits,
              "out_sel": params.out_sel_bits, "z_out": params.z_out_bits}
    return HarnessSpec(
        name=MIXED_HARNESS_NAME, top=MIXED_TOP_NAME, generator="qgnn.hw.mixed_freerun",
        pes=params.pes, word_width=params.word_width, node_bits=params.node_bits,
        edge_bits=params.edge_bits, addr_bits=params.addr_bits,
        desc_bits=mixed_desc_bits(params), idx_bits=mixed_index_bits(params),
        queue_log2=queue_log2(params),
        controls=((params.node_bits, "num_nodes"), (params.feat_bits, "features"),
                  *[(widths[name], f"{name}__{k}") for name in BUCKET_INPUTS
                    for k in range(params.max_buckets)]),
        valid_status=True)


def mixed_harness_verilog(params: MixedParams, shape: HarnessShape,
                          hdl_clock: bool = False) -> str:
    """Verilog text of ``qgnn_mixed_freerun`` for ``params`` with memories of ``shape``
    (``hdl_clock`` as :func:`hw.freerun.harness_text`)."""
    return harness_text(mixed_harness_spec(params), shape, hdl_clock)


def write_mixed_harness(params: MixedParams, shape: HarnessShape,
                        out_dir: str | os.PathLike[str], hdl_clock: bool = False) -> Path:
    """Write :func:`mixed_harness_verilog` to ``out_dir/qgnn_mixed_freerun.v``; return it."""
    from qgnn.core.atomic import write_text_atomic

    return write_text_atomic(Path(out_dir) / MIXED_HARNESS_FILE,
                             mixed_harness_verilog(params, shape, hdl_clock))


def mixed_shape_for_stages(stages: Sequence[Any]) -> HarnessShape:
    """The smallest :class:`~hw.freerun.HarnessShape` holding every mixed stage
    (``MixedAggregationStage`` or ``GoldenMixedStage``): rows, terms, input words
    ``sum_j W_j`` and output words ``sum_i O_i``."""
    if not stages:
        raise ValueError("no mixed stages for the harness")
    plain = [getattr(g, "stage", g) for g in stages]
    return HarnessShape(
        desc=max(1, *(int(s.num_nodes) for s in plain)),
        idx=max(1, *(int(s.num_terms) for s in plain)),
        feat=max(1, *(int(s.src_words.sum()) for s in plain)),
        out=max(1, *(int(s.out_words.sum()) for s in plain)))


def write_mixed_stage_files(img: Any, shape: HarnessShape,
                            directory: str | os.PathLike[str]) -> None:
    """Write the mixed image ``img`` (:class:`hw.mixed_memimage.MixedImage`) as the hex files
    the harness loads (:func:`hw.freerun.write_stage_files`; ``ValueError`` naming the memory
    when a table exceeds ``shape``)."""
    write_stage_files(SimpleNamespace(name=img.name, desc=img.desc, indices=img.indices,
                                      features=img.feat_words, expected=img.expected),
                      shape, directory)


def reset_cycle(contract: int, seed: int, index: int) -> int:
    """Cycle (counted from the accepted ``start`` = cycle 0) in which the reset check raises
    ``rst`` for stage ``index``: drawn from ``seed`` in ``[contract // 4, 3 contract // 4]``
    (at least 2), i.e. before the run can have finished, stalls or not."""
    lo = max(2, contract // 4)
    hi = max(lo, (3 * contract) // 4)
    return random.Random(f"qgnn-reset:{int(seed)}:{int(index)}").randint(lo, hi)


def reset_cleared(state: dict[str, int]) -> bool:
    """Every signal of :data:`RESET_STATE_KEYS` read 0 with ``rst`` held."""
    return all(int(state[k]) == 0 for k in RESET_STATE_KEYS)


__all__ = [
    "MIXED_HARNESS_FILE",
    "MIXED_HARNESS_NAME",
    "RESET_HOLD",
    "RESET_STATE_KEYS",
    "mixed_desc_bits",
    "mixed_harness_spec",
    "mixed_harness_verilog",
    "mixed_index_bits",
    "mixed_shape_for_stages",
    "reset_cleared",
    "reset_cycle",
    "write_mixed_harness",
    "write_mixed_stage_files",
]
