"""A mixed stage as the mixed engine's memory contents and run-time inputs (pure Python).

:func:`mixed_memory_image` turns a :class:`~model.golden.mixed_stage.MixedAggregationStage`
into flat lists of Python ints, as the ports of :mod:`hw.mixed_engine` see them:

- ``desc[i]``: row descriptor (CSR range, ``M_i``, ``s_i``, output bucket, ``out_offset[i]``);
- ``indices[k]``: index response of CSR position ``k``: ``(feat_offset[j], src_bucket[j])`` of
  the source ``j = indices[k]`` (the host resolves node ids to word addresses once);
- ``features[a]``: input word at address ``a`` (``stage.input_words()``);
- ``expected[a]``: expected output word at address ``a`` (``stage.output_words()``);

plus the run-time inputs (``in_sel``, ``z_in``, ``weight``, ``out_sel``, ``z_out`` for every
bucket of the engine; unused buckets 0) and the contract's per-row quantities
(``row_in_words``, ``row_out_words``). :func:`check_mixed_fits` rejects a stage the engine
cannot run, naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np
from qgnn.model.golden.mixed_stage import MixedAggregationStage

from .mixed_params import MixedParams


@dataclass
class MixedImage:
    """One mixed stage as memory contents and run-time inputs (Python ints)."""

    name: str
    num_nodes: int
    features: int
    in_sel: list[int]
    z_in: list[int]
    weight: list[int]
    out_sel: list[int]
    z_out: list[int]
    desc: list[int]
    indices: list[int]
    feat_words: list[int]
    expected: list[int]
    row_in_words: list[int]
    row_out_words: list[int]
    row_lengths: list[int]


def check_mixed_fits(stage: MixedAggregationStage, params: MixedParams) -> None:
    """Raise ``ValueError`` naming the field when ``params``' engine cannot run ``stage``."""
    n = stage.name
    if stage.word_width != params.word_width:
        raise ValueError(f"{n}: word_width {stage.word_width} != engine word_width "
                         f"{params.word_width}")
    if stage.num_buckets > params.max_buckets or len(stage.out_bits) > params.max_buckets:
        raise ValueError(f"{n}: {stage.num_buckets} input / {len(stage.out_bits)} output buckets;"
                         f" the engine has max_buckets = {params.max_buckets}")
    for what, widths, allowed in (("bits_in", stage.bits_in, params.in_widths),
                                  ("out_bits", stage.out_bits,
                                   cast(tuple[int, ...], params.out_widths))):
        bad = [b for b in widths if b not in allowed]
        if bad:
            raise ValueError(f"{n}: {what} {list(widths)} has {bad}; the engine routes "
                             f"{list(allowed or ())}")
    if not 1 <= stage.features <= params.max_features:
        raise ValueError(f"{n}: features = {stage.features}; the engine has max_features = "
                         f"{params.max_features}")
    if stage.max_terms > params.max_terms:
        raise ValueError(f"{n}: max_terms = {stage.max_terms} > engine max_terms = "
                         f"{params.max_terms}")
    if max(stage.weight) >= (1 << params.r_bits):
        raise ValueError(f"{n}: weight {max(stage.weight)} does not fit r_bits = "
                         f"{params.r_bits}")
    if stage.max_weight > params.weight_limit:
        raise ValueError(f"{n}: max_weight {stage.max_weight} > engine max_weight "
                         f"{params.weight_limit}")
    if stage.mult_bits > params.mult_bits:
        raise ValueError(f"{n}: mult_bits {stage.mult_bits} > engine mult_bits "
                         f"{params.mult_bits}")
    if stage.num_nodes >= (1 << params.node_bits) or stage.num_terms >= (1 << params.edge_bits):
        raise ValueError(f"{n}: {stage.num_nodes} rows / {stage.num_terms} terms do not fit "
                         f"node_bits = {params.node_bits} / edge_bits = {params.edge_bits}")
    words = max(int(stage.src_words.sum()), int(stage.out_words.sum()))
    if words > (1 << params.addr_bits):
        raise ValueError(f"{n}: {words} words do not fit addr_bits = {params.addr_bits}")


def mixed_memory_image(stage: MixedAggregationStage, params: MixedParams) -> MixedImage:
    """The memory image of ``stage`` for the engine ``params`` (checked first)."""
    check_mixed_fits(stage, params)
    kb = params.max_buckets

    def padded(values: list[int]) -> list[int]:
        return list(values) + [0] * (kb - len(values))

    foff = stage.feat_offset
    ooff = stage.out_offset
    desc = [params.pack_descriptor(int(stage.indptr[i]), int(stage.indptr[i + 1]),
                                   int(stage.multiplier[i]), int(stage.shift[i]),
                                   int(stage.dst_bucket[i]), int(ooff[i]))
            for i in range(stage.num_nodes)]
    idx = [params.pack_index(int(foff[j]), int(stage.src_bucket[j])) for j in stage.indices]
    return MixedImage(
        name=stage.name, num_nodes=stage.num_nodes, features=stage.features,
        in_sel=padded([params.in_widths.index(b) for b in stage.bits_in]),
        z_in=padded(list(stage.z_in)), weight=padded(list(stage.weight)),
        out_sel=padded([params.out_widths.index(b) for b in stage.out_bits]),  # type: ignore[union-attr]
        z_out=padded(list(stage.z_out)), desc=desc, indices=idx,
        feat_words=stage.input_words(), expected=stage.output_words(),
        row_in_words=[int(v) for v in stage.row_in_words],
        row_out_words=[int(v) for v in stage.out_words],
        row_lengths=[int(v) for v in np.diff(stage.indptr)])


__all__ = ["MixedImage", "check_mixed_fits", "mixed_memory_image"]
