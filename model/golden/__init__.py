"""Golden test vectors: packed integer inputs and expected outputs of aggregation stages."""

from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    GoldenMixedStage,
    GoldenStage,
    VectorFormatError,
    VectorSet,
    read_vectors,
    write_vectors,
)
from .mixed_stage import MixedAggregationStage
from .packing import pack_codes, unpack_codes, words_per_row
from .stage import AggregationStage, random_stage

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "AggregationStage",
    "GoldenMixedStage",
    "GoldenStage",
    "MixedAggregationStage",
    "VectorFormatError",
    "VectorSet",
    "pack_codes",
    "random_stage",
    "read_vectors",
    "unpack_codes",
    "words_per_row",
    "write_vectors",
]
