"""Golden test vectors: packed integer inputs and expected outputs of aggregation stages."""

from .packing import pack_codes, unpack_codes, words_per_row
from .stage import AggregationStage, random_stage

__all__ = ["AggregationStage", "pack_codes", "random_stage", "unpack_codes", "words_per_row"]
