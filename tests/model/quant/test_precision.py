"""Tests for model.quant.precision (PrecisionConfig resolution, validation, I/O)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qgnn.model.quant.precision import ROLES, PrecisionConfig
from qgnn.model.quant.spec import QuantConfigError, QuantSpec

ALL_ROLES_TEXT = "input, weight, output, message, aggregate, update"

NESTED = {
    "bits": 4,
    "momentum": 0.2,
    "roles": {"weight": {"bits": 6, "range": "minmax"}, "output": 5},
    "layers": {
        "1": {"bits": 8, "range": "qlr", "roles": {"weight": {"bits": 3}, "update": 32}},
        "3": 2,
    },
}


def test_roles_constant() -> None:
    assert ROLES == ("input", "weight", "output", "message", "aggregate", "update")


def test_resolution_order_model_role_layer_layerrole() -> None:
    p = PrecisionConfig.from_dict(NESTED)
    # layer 0 has no override: model common, then model role
    i0 = p.spec(0, "input")
    assert (i0.bits, i0.symmetric, i0.range, i0.momentum) == (4, False, "minmax", 0.2)
    assert p.spec(0, "message") == QuantSpec(bits=4, range="lsq", momentum=0.2)
    w0 = p.spec(0, "weight")
    assert (w0.bits, w0.range, w0.symmetric, w0.granularity, w0.momentum) == (
        6, "minmax", True, "channel", 0.2)  # model role beats model common; role defaults kept
    assert p.spec(0, "output").bits == 5  # bare bit width as a role override
    # layer 1: layer common beats model common and model role
    assert p.spec(1, "input").bits == 8
    assert p.spec(1, "input").range == "qlr"
    assert p.spec(1, "output").bits == 8  # layer common (8) beats model role (5)
    w1 = p.spec(1, "weight")
    assert (w1.bits, w1.range) == (3, "qlr")  # layer role beats layer common beats model role
    assert p.spec(1, "update").bits == 32 and not p.spec(1, "update").enabled
    # layer 2 has no override
    assert p.spec(2, "weight").bits == 6
    assert p.spec(2, "output").bits == 5
    # layer 3: bare bit width as a layer override beats the model role
    assert p.spec(3, "weight").bits == 2
    assert p.spec(3, "output").bits == 2
    assert p.spec(3, "weight").range == "minmax"  # model role kept for other keys


def test_role_defaults_apply_and_model_common_overrides_them() -> None:
    p = PrecisionConfig.uniform(4)
    # layer inputs: asymmetric per tensor with momentum min/max (documented ROLE_DEFAULTS)
    i = p.spec(0, "input")
    assert (i.symmetric, i.granularity, i.range) == (False, "tensor", "minmax")
    # weights: symmetric per output channel
    w = p.spec(0, "weight")
    assert (w.symmetric, w.granularity, w.range) == (True, "channel", "lsq")
    # other activations: asymmetric per tensor, QuantSpec's default range
    for r in ("output", "message", "aggregate", "update"):
        s = p.spec(0, r)
        assert (s.symmetric, s.granularity, s.range) == (False, "tensor", "lsq")
    q = PrecisionConfig.uniform(4, symmetric=True, range="percentile", granularity="node")
    for r in ROLES:
        s = q.spec(0, r)
        assert (s.symmetric, s.range, s.granularity) == (True, "percentile", "node")


def test_default_config_is_fp32() -> None:
    p = PrecisionConfig()
    for r in ROLES:
        assert p.spec(0, r).bits == 32
    assert p.label() == "fp32"


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 7, 8])
def test_label_uniform(bits: int) -> None:
    assert PrecisionConfig.uniform(bits).label() == f"int{bits}"
    assert PrecisionConfig.uniform(f"int{bits}").label() == f"int{bits}"


def test_label_fp32_and_mixed() -> None:
    assert PrecisionConfig.uniform(32).label() == "fp32"
    assert PrecisionConfig.uniform("fp32").label() == "fp32"
    assert PrecisionConfig.from_dict(NESTED).label() == "mixed"
    assert PrecisionConfig.from_dict({"bits": 4, "roles": {"update": 8}}).label() == "mixed"
    # an override equal to the model-wide width keeps the label uniform
    assert PrecisionConfig.from_dict({"bits": 4, "layers": {"2": {"bits": 4}}}).label() == "int4"
    assert PrecisionConfig.from_dict({"bits": 4, "layers": {"2": {"bits": 8}}}).label() == "mixed"


def test_from_dict_to_dict_round_trip() -> None:
    p = PrecisionConfig.from_dict(NESTED)
    d = p.to_dict()
    assert d == {
        "bits": 4,
        "momentum": 0.2,
        "roles": {"weight": {"bits": 6, "range": "minmax"}, "output": {"bits": 5}},
        "layers": {
            "1": {"bits": 8, "range": "qlr",
                  "roles": {"weight": {"bits": 3}, "update": {"bits": 32}}},
            "3": {"bits": 2},
        },
    }
    p2 = PrecisionConfig.from_dict(d)
    assert p2.to_dict() == d
    for layer in range(5):
        for r in ROLES:
            assert p2.spec(layer, r) == p.spec(layer, r)
    # to_dict is JSON-serialisable
    assert PrecisionConfig.from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_from_dict_does_not_mutate_input() -> None:
    d = json.loads(json.dumps(NESTED))
    PrecisionConfig.from_dict(d)
    assert d == NESTED


def test_unknown_role_raises_naming_allowed_roles() -> None:
    with pytest.raises(QuantConfigError) as ei:
        PrecisionConfig.from_dict({"roles": {"activation": {"bits": 4}}})
    assert "'activation'" in str(ei.value) and ALL_ROLES_TEXT in str(ei.value)
    with pytest.raises(QuantConfigError) as ei:
        PrecisionConfig.from_dict({"layers": {"0": {"roles": {"bias": 8}}}})
    assert "'bias'" in str(ei.value) and ALL_ROLES_TEXT in str(ei.value)
    with pytest.raises(QuantConfigError, match=ALL_ROLES_TEXT):
        PrecisionConfig.uniform(4).spec(0, "hidden")


@pytest.mark.parametrize(
    "d",
    [
        {"bitz": 4},
        {"roles": {"weight": {"bitz": 4}}},
        {"layers": {"1": {"bitz": 4}}},
        {"layers": {"1": {"roles": {"update": {"bitz": 4}}}}},
    ],
)
def test_unknown_key_raises_naming_allowed_keys(d: dict) -> None:
    with pytest.raises(QuantConfigError) as ei:
        PrecisionConfig.from_dict(d)
    msg = str(ei.value)
    assert "bitz" in msg
    assert "bits, granularity, momentum, percentile, range, symmetric" in msg


@pytest.mark.parametrize(
    "d",
    [
        {"bits": 9},
        {"bits": "int9"},
        {"bits": 16},
        {"bits": 1},
        {"bits": True},
        {"roles": {"weight": 9}},
        {"roles": {"weight": {"bits": "int16"}}},
        {"layers": {"0": 9}},
        {"layers": {"2": {"roles": {"message": {"bits": 1}}}}},
    ],
)
def test_invalid_bits_anywhere_raise(d: dict) -> None:
    with pytest.raises(QuantConfigError, match="2, 3, 4, 5, 6, 7, 8"):
        PrecisionConfig.from_dict(d)


@pytest.mark.parametrize(
    "d",
    [
        {"layers": {"first": 4}},
        {"layers": {"-1": 4}},
        {"layers": {"0": [4]}},
        {"roles": {"weight": True}},
        {"granularity": "row"},
        {"layers": {"1": {"roles": {"weight": {"range": "max"}}}}},
    ],
)
def test_other_invalid_configs_raise(d: dict) -> None:
    with pytest.raises(QuantConfigError):
        PrecisionConfig.from_dict(d)


def test_from_dict_rejects_non_mapping() -> None:
    with pytest.raises(QuantConfigError, match="expected a table"):
        PrecisionConfig.from_dict([("bits", 4)])  # type: ignore[arg-type]


def test_direct_constructor_validates() -> None:
    with pytest.raises(QuantConfigError):
        PrecisionConfig(common={"bits": 11})
    with pytest.raises(QuantConfigError):
        PrecisionConfig(roles={"nope": {}})


def test_invalid_error_names_layer_and_role() -> None:
    # a value only checked when the spec is built (momentum out of range at layer 2)
    with pytest.raises(QuantConfigError, match=r"layer 2, role 'aggregate'"):
        PrecisionConfig.from_dict({"layers": {"2": {"roles": {"aggregate": {"momentum": 2.0}}}}})


def test_load_json_string_json_file_and_toml_file(tmp_path: Path) -> None:
    text = json.dumps(NESTED)
    p1 = PrecisionConfig.load(text)
    jf = tmp_path / "p.json"
    jf.write_text(text)
    p2 = PrecisionConfig.load(str(jf))
    tf = tmp_path / "p.toml"
    tf.write_text(
        'bits = 4\nmomentum = 0.2\n'
        '[roles]\noutput = 5\n[roles.weight]\nbits = 6\nrange = "minmax"\n'
        '[layers."1"]\nbits = 8\nrange = "qlr"\n'
        '[layers."1".roles]\nupdate = 32\n[layers."1".roles.weight]\nbits = 3\n'
        '[layers]\n"3" = 2\n'
    )
    p3 = PrecisionConfig.load(str(tf))
    ref = PrecisionConfig.from_dict(NESTED).to_dict()
    assert p1.to_dict() == ref
    assert p2.to_dict() == ref
    assert p3.to_dict() == ref


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(QuantConfigError, match="invalid JSON"):
        PrecisionConfig.load("{bits: 4")
    with pytest.raises(QuantConfigError, match="not found"):
        PrecisionConfig.load(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(QuantConfigError, match="invalid JSON"):
        PrecisionConfig.load(str(bad))
