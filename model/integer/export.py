"""Golden-vector export: train (or take) a quantized model, convert it to integers, and write
its aggregation stages as a vector set (``docs/golden-vectors.md``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..golden.format import write_vectors
from ..golden.mixed_stage import MixedAggregationStage
from ..golden.stage import AggregationStage
from ..nn.models import QuantGNN
from .convert import IntegerModel, model_input, to_integer


def select_stages(
    stages: Sequence[AggregationStage | MixedAggregationStage],
    layer: int | None = None,
    features: int | None = None,
    word_width: int = 64,
) -> list[AggregationStage | MixedAggregationStage]:
    """Pick one layer's stage (``layer``, by position) and keep the first ``features`` feature
    columns (small cases); set the memory word width. Mixed-width stages (models with node
    buckets) are kept mixed and written as format version 3."""
    chosen = list(stages)
    if layer is not None:
        if not (0 <= layer < len(chosen)):
            raise ValueError(
                f"--layer {layer} out of range: the model has {len(chosen)} aggregation stages "
                f"(0..{len(chosen) - 1})"
            )
        chosen = [chosen[layer]]
    out = []
    for st in chosen:
        codes = st.codes
        if features is not None:
            if features < 1:
                raise ValueError(f"--features must be >= 1, got {features}")
            codes = codes[:, : min(features, codes.shape[1])]
        out.append(replace(st, codes=codes, word_width=word_width, meta=dict(st.meta)))
    return out


def export_vectors(
    model: QuantGNN,
    data: Any,
    out: str | Path,
    source: dict[str, Any] | None = None,
    layer: int | None = None,
    features: int | None = None,
    word_width: int = 64,
    mult_bits: int = 16,
) -> tuple[Path, IntegerModel, list[AggregationStage | MixedAggregationStage]]:
    """Convert ``model`` for ``data``, run the integer path, and write the chosen stages."""
    imodel = to_integer(model, data, mult_bits=mult_bits)
    imodel.forward(model_input(data))
    stages = select_stages(imodel.stages(), layer, features, word_width)
    path = write_vectors(out, stages, source=source or {})
    return path, imodel, stages


__all__ = ["export_vectors", "select_stages"]
