"""Memory images of one aggregation stage as the engine's ports see them (pure Python).

:func:`memory_image` turns an :class:`~model.golden.stage.AggregationStage` (or a
:class:`~model.golden.format.GoldenStage`) into flat lists of Python integers: descriptor
payloads by row, CSR indices by position, input words by address ``j * W + w`` and expected
output words by address ``i * W + w``. Testbenches (amaranth.sim and cocotb) serve requests from
these lists and compare the output stream with ``expected`` word by word.

A bit-truncated stage (``stage.truncated``: ``in_level`` 85, output snapped from an 8-bit grid)
runs only on a truncated engine (``EngineParams.truncated``) and a plain stage only on a plain
one; :func:`check_fits` rejects anything else, naming the field. The image then also carries
the engine's run-time snap thresholds (:func:`engine_thresholds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from qgnn.model.golden import packing

from .params import BT_GRID_BITS, BT_LEVEL, EngineParams


@dataclass
class MemoryImage:
    """One stage as memory contents (Python ints).

    Attributes:
        name: stage name.
        num_nodes: N (destination rows).
        words_per_row: W (words per feature row).
        z_in, z_out: zero points (8-bit grid codes for a truncated stage).
        row_lengths: terms per row (list of ints).
        desc: descriptor payload of every row (``EngineParams.pack_descriptor``).
        indices: CSR source row of every position.
        features: input words, address ``j * W + w``.
        expected: expected output words, address ``i * W + w``.
        thresholds: run-time snap thresholds ``(thr1, thr2, thr3)`` of a truncated engine
            (grid codes 0..256), ``None`` for a plain stage.
    """

    name: str
    num_nodes: int
    words_per_row: int
    z_in: int
    z_out: int
    row_lengths: list[int]
    desc: list[int]
    indices: list[int]
    features: list[int]
    expected: list[int]
    thresholds: tuple[int, ...] | None = None


def stage_truncated(stage: Any) -> bool:
    """True for a bit-truncated (BT/BT*) stage: ``in_level != 1`` or output thresholds."""
    return int(getattr(stage, "in_level", 1)) != 1 or getattr(stage, "out_thresholds",
                                                                None) is not None


def engine_thresholds(stage: Any) -> tuple[int, ...]:
    """The snap thresholds a truncated engine needs for ``stage`` (grid codes 0..256).

    The engine clamps to the 8-bit grid and snaps with ``[g >= t]`` comparators. A stage whose
    output grid has ``G <= 8`` bits gives the same codes with its thresholds, the value
    ``2**G`` ("never" on its grid) becoming 256; a stage with a plain 2-bit output
    (``out_thresholds`` None, ``out_grid_bits = out_bits = 2``) is the snap with thresholds
    1, 2, 3 (``min(g, 3)`` of a grid code ``g >= 0`` is ``clamp(r + z_out, 0, 3)``).
    """
    grid = int(stage.out_grid_bits or stage.out_bits)
    if grid > BT_GRID_BITS:
        raise ValueError(f"stage {stage.name!r}: out_grid_bits {grid} > {BT_GRID_BITS}; the "
                         f"truncated datapath requantizes onto an {BT_GRID_BITS}-bit grid")
    t = stage.out_thresholds
    if t is None:
        t = tuple(range(1, 1 << int(stage.out_bits)))
    top = 1 << grid
    return tuple(1 << BT_GRID_BITS if int(v) >= top else int(v) for v in t)


def required_params(stage: Any) -> dict[str, int]:
    """The smallest engine widths that hold ``stage`` (an AggregationStage), and whether it
    needs the truncated engine (``truncated``, 0 or 1)."""
    n_src = int(stage.codes.shape[0])
    return {
        "truncated": int(stage_truncated(stage)),
        "bits": int(stage.bits),
        "word_width": int(stage.word_width),
        "max_terms": max(1, int(stage.max_terms)),
        "node_bits": max(1, (max(stage.num_nodes, n_src) - 1).bit_length(),
                         stage.num_nodes.bit_length()),
        "edge_bits": max(1, stage.num_terms.bit_length()),
        "wpr_bits": max(1, stage.words_per_row.bit_length()),
        "mult_bits": int(stage.mult_bits),
    }


def check_fits(stage: Any, params: EngineParams) -> None:
    """Raise ``ValueError`` naming the field if the engine cannot run ``stage`` exactly."""
    need = required_params(stage)
    name = stage.name
    if bool(need["truncated"]) != params.truncated:
        if params.truncated:
            raise ValueError(
                f"stage {name!r} is plain (in_level 1, out_thresholds None) but the engine is "
                f"bit-truncated (truncated = True: in_level {BT_LEVEL}, snapped output); "
                "build a plain engine (truncated = False) for it")
        raise ValueError(
            f"stage {name!r} is bit-truncated (in_level {stage.in_level}, out_thresholds "
            f"{None if stage.out_thresholds is None else list(stage.out_thresholds)}) but the "
            "engine is plain; build it with truncated = True (qgnn hw export --truncated)")
    if stage.bits != params.bits:
        raise ValueError(f"stage {name!r}: bits {stage.bits} != engine bits {params.bits}")
    if stage.out_bits != stage.bits:
        raise ValueError(f"stage {name!r}: out_bits {stage.out_bits} != bits {stage.bits}; "
                         "the datapath writes outputs at the input code width")
    if params.truncated:
        if int(stage.in_level) != params.in_level:
            raise ValueError(f"stage {name!r}: in_level {stage.in_level} != {params.in_level}; "
                             f"the truncated datapath multiplies the sum by {params.in_level} "
                             "(BT/BT* inputs) and implements no other level step")
        engine_thresholds(stage)  # out_grid_bits must fit the 8-bit grid
    if stage.word_width != params.word_width:
        raise ValueError(f"stage {stage.name!r}: word_width {stage.word_width} != engine "
                         f"word_width {params.word_width}")
    for key in ("max_terms", "node_bits", "edge_bits", "wpr_bits"):
        if need[key] > getattr(params, key):
            raise ValueError(f"stage {stage.name!r} needs {key} >= {need[key]}; the engine has "
                             f"{getattr(params, key)}")
    if need["mult_bits"] > params.mult_bits:
        raise ValueError(f"stage {stage.name!r}: mult_bits {need['mult_bits']} > engine "
                         f"mult_bits {params.mult_bits}")
    if int(np.max(stage.multiplier, initial=0)) >= (1 << params.mult_bits):
        raise ValueError(f"stage {stage.name!r}: a multiplier does not fit {params.mult_bits} bits")


def memory_image(stage: Any, params: EngineParams, expected_packed: np.ndarray | None = None
                 ) -> MemoryImage:
    """Memory contents of ``stage`` for an engine with ``params``.

    ``stage`` is an AggregationStage or a GoldenStage; for a GoldenStage the expected output is
    its stored ``expected_packed``, otherwise ``expected_packed`` or, when ``None``, the
    reference :meth:`AggregationStage.compute`.
    """
    if hasattr(stage, "expected_packed") and hasattr(stage, "stage"):
        expected_packed = stage.expected_packed if expected_packed is None else expected_packed
        stage = stage.stage
    check_fits(stage, params)
    if expected_packed is None:
        _, out = stage.compute()
        expected_packed = stage.packed_output(out)
    ww = stage.word_width
    W = stage.words_per_row
    feats = [w for row in packing.words_as_ints(stage.packed_input(), ww) for w in row]
    exp = [w for row in packing.words_as_ints(expected_packed, ww) for w in row]
    if len(exp) != stage.num_nodes * W:
        raise ValueError(f"stage {stage.name!r}: expected output has {len(exp)} words, "
                         f"not N * W = {stage.num_nodes * W}")
    ip = [int(x) for x in stage.indptr]
    mult = [int(x) for x in stage.multiplier]
    sh = [int(x) for x in stage.shift]
    desc = [params.pack_descriptor(ip[i], ip[i + 1], mult[i], sh[i]) for i in range(stage.num_nodes)]
    return MemoryImage(
        name=stage.name, num_nodes=stage.num_nodes, words_per_row=W,
        z_in=int(stage.zero_point_in), z_out=int(stage.zero_point_out),
        row_lengths=[ip[i + 1] - ip[i] for i in range(stage.num_nodes)],
        desc=desc, indices=[int(x) for x in stage.indices], features=feats, expected=exp,
        thresholds=engine_thresholds(stage) if params.truncated else None,
    )


__all__ = ["MemoryImage", "check_fits", "engine_thresholds", "memory_image", "required_params",
           "stage_truncated"]
