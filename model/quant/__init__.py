"""Uniform quantizers, precision configuration and Degree-Quant masking."""

from .degree_quant import DegreeQuantConfig, protection_probability, sample_protect_mask
from .fixed_point import to_multiplier_shift
from .node_precision import NodeBucketQuantizer, NodePrecision, avg_feature_bits
from .precision import ROLES, PrecisionConfig
from .quantizer import IntegerQuantParams, Quantizer
from .spec import ALLOWED_BITS, QuantConfigError, QuantSpec, check_bits

__all__ = [
    "ALLOWED_BITS",
    "ROLES",
    "DegreeQuantConfig",
    "IntegerQuantParams",
    "NodeBucketQuantizer",
    "NodePrecision",
    "PrecisionConfig",
    "QuantConfigError",
    "QuantSpec",
    "Quantizer",
    "avg_feature_bits",
    "check_bits",
    "protection_probability",
    "sample_protect_mask",
    "to_multiplier_shift",
]
