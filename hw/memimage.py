"""Memory images of one aggregation stage as the engine's ports see them (pure Python).

:func:`memory_image` turns an :class:`~model.golden.stage.AggregationStage` (or a
:class:`~model.golden.format.GoldenStage`) into flat lists of Python integers: descriptor
payloads by row, CSR indices by position, input words by address ``j * W + w`` and expected
output words by address ``i * W + w``. Testbenches (amaranth.sim and cocotb) serve requests from
these lists and compare the output stream with ``expected`` word by word.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.golden import packing

from .params import EngineParams


@dataclass
class MemoryImage:
    """One stage as memory contents (Python ints).

    Attributes:
        name: stage name.
        num_nodes: N (destination rows).
        words_per_row: W (words per feature row).
        z_in, z_out: zero points.
        row_lengths: terms per row (list of ints).
        desc: descriptor payload of every row (``EngineParams.pack_descriptor``).
        indices: CSR source row of every position.
        features: input words, address ``j * W + w``.
        expected: expected output words, address ``i * W + w``.
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


def required_params(stage: Any) -> dict[str, int]:
    """The smallest engine widths that hold ``stage`` (an AggregationStage)."""
    n_src = int(stage.codes.shape[0])
    return {
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
    if stage.bits != params.bits:
        raise ValueError(f"stage {stage.name!r}: bits {stage.bits} != engine bits {params.bits}")
    if stage.out_bits != stage.bits:
        raise ValueError(f"stage {stage.name!r}: out_bits {stage.out_bits} != bits {stage.bits}; "
                         "the datapath writes outputs at the input code width")
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
    )


__all__ = ["MemoryImage", "check_fits", "memory_image", "required_params"]
