"""Fuzzing precision configurations (issue 14, item 3): random and mutated precision dicts,
JSON strings, TOML/JSON files and garbage bytes must each load, or raise exactly one
:class:`QuantConfigError` whose one-line message names the field (it starts with
``precision``); never another exception. At the CLI: exit status 2 and one line.

Cases generated per run (``max_examples``): dicts 300, mutations of valid configs 300, JSON
strings 150, files 150, CLI 25: 925 in all.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from qgnn.model.quant import PrecisionConfig, QuantConfigError

EXAMPLES = {
    "dicts": 300, "mutations": 300, "json": 150, "files": 150, "cli": 25,
}
#: Total number of generated cases (reported to benchmarks/fuzz_inputs.py's author).
TOTAL_CASES = sum(EXAMPLES.values())

SETTINGS = dict(deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

KEYS = ["bits", "symmetric", "granularity", "range", "momentum", "percentile", "roles",
        "layers", "nodes", "by", "edges", "target", "penalty", "init", "truncation",
        "input", "weight", "output", "message", "aggregate", "update", "0", "1", "-1", "x",
        "01", "1.5", ""]
WORDS = ["int2", "int4", "int8", "fp32", "lsq", "minmax", "percentile", "qlr", "tensor",
         "channel", "node", "degree_quantile", "degree_threshold", "learned", "weight",
         "message", "aggregate", "input", "garbage", "", "2", "∞"]

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=40), st.integers(), st.floats(allow_nan=True),
    st.sampled_from(WORDS), st.text(max_size=6),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=5),
    ),
    max_leaves=20,
)

VALID: list[dict[str, Any]] = [
    {"bits": 4},
    {"bits": 2, "range": "lsq", "roles": {"weight": {"granularity": "channel"}},
     "layers": {"1": {"bits": 8, "roles": {"update": {"bits": 32}}}}},
    {"bits": 2, "nodes": {"by": "degree_quantile", "bits": [2, 4, 8], "edges": [0.9, 0.99],
                          "roles": ["input", "output", "message", "aggregate", "update"]}},
    {"bits": 2, "nodes": {"by": "degree_threshold", "bits": [2, 8], "edges": [10]},
     "layers": {"1": {"nodes": False}, "0": {"nodes": {"bits": [2, 4]}}}},
    {"bits": 2, "nodes": {"by": "learned", "bits": [2, 4, 8], "target": 2.5, "penalty": 0.5}},
]


def check_loads_or_one_error(fn: Any, *args: Any) -> PrecisionConfig | None:
    """``fn(*args)`` returns a config, or raises one QuantConfigError naming a field."""
    try:
        cfg = fn(*args)
    except QuantConfigError as e:
        msg = str(e)
        assert msg.startswith("precision"), msg
        assert "\n" not in msg and msg.strip() == msg, msg
        return None
    assert isinstance(cfg, PrecisionConfig)
    # a loaded config is usable: its label, dict form and round trip work
    cfg.label()
    again = PrecisionConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), default=str)))
    assert again.label() == cfg.label()
    return cfg


@settings(max_examples=EXAMPLES["dicts"], **SETTINGS)
@given(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6) | json_values)
def test_random_dicts(d: Any) -> None:
    check_loads_or_one_error(PrecisionConfig.from_dict, d)


PATH_KEYS = st.lists(st.sampled_from(KEYS), min_size=1, max_size=4)


def _mutate(d: dict[str, Any], path: list[str], op: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(d)
    node: Any = out
    for k in path[:-1]:
        if isinstance(node, dict) and isinstance(node.get(k), dict | list):
            node = node[k]
        else:
            break
    last = path[-1]
    if isinstance(node, list):
        if node:
            i = hash(last) % len(node)
            if op == "delete":
                del node[i]
            else:
                node[i] = value
        return out
    if op == "delete":
        node.pop(last, None)
    else:
        node[last] = value
    return out


@settings(max_examples=EXAMPLES["mutations"], **SETTINGS)
@given(st.sampled_from(VALID), PATH_KEYS, st.sampled_from(["set", "delete"]), json_values)
def test_mutated_valid_configs(base: dict[str, Any], path: list[str], op: str,
                               value: Any) -> None:
    check_loads_or_one_error(PrecisionConfig.from_dict, _mutate(base, path, op, value))


def test_valid_seeds_load() -> None:
    for d in VALID:
        assert check_loads_or_one_error(PrecisionConfig.from_dict, d) is not None


@settings(max_examples=EXAMPLES["json"], **SETTINGS)
@given(st.one_of(json_values.map(lambda v: json.dumps({"bits": 2, "nodes": v})),
                 st.text(max_size=40).map(lambda t: "{" + t)))
def test_json_strings(text: str) -> None:
    check_loads_or_one_error(PrecisionConfig.load, text)


def _toml_value(v: Any) -> str | None:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return None if not math.isfinite(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        parts = [_toml_value(x) for x in v]
        return None if any(p is None for p in parts) else "[" + ", ".join(parts) + "]"  # type: ignore[arg-type]
    return None


file_texts = st.one_of(
    st.binary(max_size=60).map(lambda b: ("raw", b)),
    st.text(max_size=80).map(lambda t: ("text", t.encode())),
    st.dictionaries(st.sampled_from(["by", "bits", "edges", "roles", "target", "penalty",
                                     "init", "bogus"]), json_values, max_size=5).map(
        lambda d: ("toml", ("bits = 2\n[nodes]\n" + "\n".join(
            f"{k} = {v}" for k, v in ((k, _toml_value(x)) for k, x in d.items())
            if v is not None) + "\n").encode())),
    json_values.map(lambda v: ("json", json.dumps(v).encode())),
)


@settings(max_examples=EXAMPLES["files"], **SETTINGS)
@given(file_texts, st.sampled_from([".toml", ".json", ".txt"]))
def test_files(tmp_path_factory: pytest.TempPathFactory, content: tuple[str, bytes],
               suffix: str) -> None:
    path = tmp_path_factory.mktemp("prec") / f"p{suffix}"
    path.write_bytes(content[1])
    check_loads_or_one_error(PrecisionConfig.load, str(path))


def test_missing_and_directory_paths(tmp_path: Path) -> None:
    for p in (tmp_path / "nope.toml", tmp_path, "", "a\x00b.toml"):
        check_loads_or_one_error(PrecisionConfig.load, str(p))


@settings(max_examples=EXAMPLES["cli"], **SETTINGS)
@given(st.sampled_from(VALID[2:]), PATH_KEYS, json_values)
def test_cli_one_line_exit_2(capsys: pytest.CaptureFixture[str], base: dict[str, Any],
                             path: list[str], value: Any) -> None:
    d = _mutate(base, ["nodes", *path], "set", value)
    try:
        PrecisionConfig.from_dict(d)
    except QuantConfigError:
        pass
    else:
        assume(False)  # only invalid configs here: a valid one would start training
    from qgnn.sweeps.cli import main

    capsys.readouterr()
    assert main(["train", "--dataset", "cora", "--precision", json.dumps(d)]) == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("qgnn: error: precision"), cap.err
    assert cap.out == ""
