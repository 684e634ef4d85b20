"""Tests for model.quant.spec (QuantSpec, check_bits)."""

from __future__ import annotations

import pytest
from qgnn.model.quant.spec import (
    ALLOWED_BITS,
    FP32_BITS,
    QuantConfigError,
    QuantSpec,
    check_bits,
)

ALLOWED_TEXT = "2, 3, 4, 5, 6, 7, 8"


@pytest.mark.parametrize("bad", [1, 9, 16, 0, -4, 64, "int9", "int1", "9", "four", "", True, False, 4.0, None])
def test_check_bits_rejects_invalid_and_names_allowed_values(bad: object) -> None:
    with pytest.raises(QuantConfigError) as ei:
        check_bits(bad, where="layer3.bits")
    msg = str(ei.value)
    assert "layer3.bits" in msg
    assert ALLOWED_TEXT in msg
    assert "32" in msg and "fp32" in msg


def test_quant_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        check_bits(9)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (2, 2), (5, 5), (8, 8), (32, 32),
        ("4", 4), ("int4", 4), ("INT8", 8), (" int3 ", 3),
        ("fp32", 32), ("FP32", 32), ("float", 32), ("float32", 32), ("32", 32), ("int32", 32),
    ],
)
def test_check_bits_accepts_allowed(given: object, expected: int) -> None:
    out = check_bits(given)
    assert out == expected
    assert type(out) is int


def test_allowed_bits_constant() -> None:
    assert ALLOWED_BITS == (2, 3, 4, 5, 6, 7, 8, 32)
    assert FP32_BITS == 32


@pytest.mark.parametrize(
    ("bits", "symmetric", "qmin", "qmax"),
    [
        (2, False, 0, 3), (2, True, -2, 1),
        (3, False, 0, 7), (3, True, -4, 3),
        (4, False, 0, 15), (4, True, -8, 7),
        (8, False, 0, 255), (8, True, -128, 127),
    ],
)
def test_code_range(bits: int, symmetric: bool, qmin: int, qmax: int) -> None:
    s = QuantSpec(bits=bits, symmetric=symmetric)
    assert (s.qmin, s.qmax) == (qmin, qmax)
    assert s.enabled


def test_defaults_and_fp32_disabled() -> None:
    s = QuantSpec()
    assert s.bits == 32 and not s.enabled
    assert s.range == "lsq" and s.granularity == "tensor" and s.symmetric is False
    assert QuantSpec(bits="int4").bits == 4
    assert QuantSpec(bits="fp32").enabled is False


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"granularity": "row"}, "tensor, channel, node"),
        ({"range": "mse"}, "minmax, percentile, qlr, lsq"),
        ({"momentum": 0.0}, "momentum"),
        ({"momentum": 1.5}, "momentum"),
        ({"percentile": 50.0}, "percentile"),
        ({"percentile": 100.5}, "percentile"),
        ({"symmetric": 1}, "symmetric"),
        ({"symmetric": "yes"}, "symmetric"),
        ({"bits": 16}, ALLOWED_TEXT),
    ],
)
def test_invalid_spec_fields_raise(kwargs: dict, needle: str) -> None:
    with pytest.raises(QuantConfigError, match=needle):
        QuantSpec(**kwargs)


def test_boundary_values_accepted() -> None:
    QuantSpec(momentum=1.0)
    QuantSpec(percentile=100.0)
    QuantSpec(percentile=50.0001)


def test_with_validates_and_copies() -> None:
    s = QuantSpec(bits=4)
    t = s.with_(bits=8, symmetric=True)
    assert (s.bits, s.symmetric) == (4, False)
    assert (t.bits, t.symmetric) == (8, True)
    with pytest.raises(QuantConfigError):
        s.with_(bits=9)


def test_from_dict_to_dict_round_trip() -> None:
    s = QuantSpec(bits=6, symmetric=True, granularity="node", range="percentile",
                  momentum=0.3, percentile=97.5)
    d = s.to_dict()
    assert d == {"bits": 6, "symmetric": True, "granularity": "node", "range": "percentile",
                 "momentum": 0.3, "percentile": 97.5}
    assert QuantSpec.from_dict(d) == s


def test_from_dict_unknown_key_names_allowed() -> None:
    with pytest.raises(QuantConfigError) as ei:
        QuantSpec.from_dict({"bits": 4, "bitz": 3}, where="cfg")
    msg = str(ei.value)
    assert "cfg" in msg and "bitz" in msg
    for k in ("bits", "symmetric", "granularity", "range", "momentum", "percentile"):
        assert k in msg


def test_spec_is_frozen_and_hashable() -> None:
    s = QuantSpec(bits=4)
    with pytest.raises(AttributeError):
        s.bits = 8  # type: ignore[misc]
    assert hash(s) == hash(QuantSpec(bits="int4"))
