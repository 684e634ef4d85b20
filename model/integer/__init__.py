"""Integer-only inference: the arithmetic rules and the integer model."""

from .rules import ROUNDING, AccumulatorOverflowError, acc_width, requantize

__all__ = ["ROUNDING", "AccumulatorOverflowError", "acc_width", "requantize"]
