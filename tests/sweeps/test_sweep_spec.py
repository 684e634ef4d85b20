"""Sweep spec files: expansion of grids and lists, hashing, and validation errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from qgnn.sweeps.spec import SpecError, load_spec, parse_spec

#: A stand-in architecture schema (dotted key -> default) for specs validated without sim/.
SCHEMA: dict[str, Any] = {
    "aggregation.pes": 8, "aggregation.word_width": 64, "buffers.feature.size_kib": 256.0,
    "dram.preset": "hbm2", "pes": 8, "word_width": 64, "dram": "hbm2", "file": "default",
}


def sim_config_present() -> bool:
    from qgnn.sweeps.evaluate import arch_defaults

    return arch_defaults() is not None


def spec(**raw: Any) -> Any:
    raw.setdefault("evaluate", {"simulate": False})
    return parse_spec(raw, arch_schema=None)


def expect_error(raw: dict[str, Any], *fragments: str, schema: Any = None) -> str:
    with pytest.raises(SpecError) as ei:
        parse_spec(raw, arch_schema=schema)
    msg = str(ei.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in {msg!r}"
    return msg


# --------------------------------------------------------------------------- expansion


def test_grid_is_the_cartesian_product_in_order() -> None:
    s = spec(fixed={"dataset": "csbm:n=100", "epochs": 7},
             grid={"bits": [8, 4, 2], "hidden": [16, 32]})
    got = [(p.params["precision"]["bits"], p.params["hidden"]) for p in s.points]
    assert got == [(8, 16), (8, 32), (4, 16), (4, 32), (2, 16), (2, 32)]
    assert [p.index for p in s.points] == list(range(6))
    assert all(p.params["epochs"] == 7 for p in s.points)
    # defaults are resolved into every point
    p0 = s.points[0].params
    assert (p0["model"], p0["layers"], p0["split"], p0["seeds"]) == ("gcn", 2, 0, [0, 1, 2])
    assert s.axes == ["bits", "hidden"]
    assert len({p.point_id for p in s.points}) == 6


def test_list_form_and_list_times_grid() -> None:
    s = spec(fixed={"dataset": "cora"},
             points=[{"bits": 8}, {"precision": {"bits": 4, "roles": {"weight": {"bits": 8}}}}])
    assert len(s) == 2
    assert s.points[1].params["precision"] == {"bits": 4, "roles": {"weight": {"bits": 8}}}
    assert s.points[1].bits_label == "mixed"
    s2 = spec(fixed={"dataset": "cora"}, points=[{"model": "gcn"}, {"model": "sage"}],
              grid={"bits": [8, 4]})
    assert [(p.params["model"], p.params["precision"]["bits"]) for p in s2.points] == [
        ("gcn", 8), ("gcn", 4), ("sage", 8), ("sage", 4)]


def test_per_layer_and_per_role_axes() -> None:
    s = spec(fixed={"dataset": "cora", "bits": 4},
             grid={"precision": {"layers": {"1": {"bits": [8, 2]}},
                                 "roles": {"aggregate": {"bits": [8, 4]}}}})
    assert len(s) == 4
    from qgnn.model.quant import PrecisionConfig

    pc = PrecisionConfig.from_dict(s.points[1].params["precision"])
    assert pc.spec(0, "weight").bits == 4
    assert pc.spec(0, "aggregate").bits == 4   # second axis value
    assert pc.spec(1, "weight").bits == 8      # layer 1 override
    assert pc.spec(1, "aggregate").bits == 8   # layer-level beats model-level role


def test_seeds_count_and_list() -> None:
    s = spec(fixed={"dataset": "cora"}, grid={"seeds": [2, [5, 7]]})
    assert [p.seeds for p in s.points] == [[0, 1], [5, 7]]


def test_equivalent_spellings_hash_equal_and_arch_shares_the_model_hash() -> None:
    a = spec(fixed={"dataset": "cora"}, points=[{"bits": "int4"}]).points[0]
    b = spec(fixed={"dataset": "Cora"}, points=[{"precision": {"bits": 4}}]).points[0]
    assert a.point_id == b.point_id and a.model_hash == b.model_hash
    c = spec(fixed={"dataset": "cora"}, points=[{"bits": 4, "epochs": 100}]).points[0]
    assert c.model_hash != a.model_hash
    # Same resolved quantization written differently: model-wide vs every role listed.
    roles = {r: {"bits": 4} for r in
             ("input", "weight", "output", "message", "aggregate", "update")}
    d = spec(fixed={"dataset": "cora"}, points=[{"precision": {"roles": roles}}]).points[0]
    assert d.model_hash == a.model_hash


def test_node_buckets_are_part_of_the_model_identity() -> None:
    """Degree buckets change what is trained: points that differ only in their quantile edge or
    bucket widths must not share a cached training (their model hashes differ), and a uniform
    point keeps the hash it had before buckets existed."""
    def nodes(bits: list[int], edges: list[float]) -> dict[str, Any]:
        return {"precision": {"nodes": {"by": "degree_quantile", "bits": bits, "edges": edges}}}

    pts = spec(fixed={"dataset": "cora", "bits": 2},
               points=[{}, nodes([2, 4], [0.9]), nodes([2, 4], [0.8]), nodes([2, 8], [0.9])]
               ).points
    assert len({p.model_hash for p in pts}) == 4
    assert pts[1].params["precision"]["nodes"]["bits"] == [2, 4]
    again = spec(fixed={"dataset": "cora", "bits": 2}, points=[nodes([2, 4], [0.9])]).points[0]
    assert again.model_hash == pts[1].model_hash
    expect_error({"fixed": {"dataset": "cora"}, "evaluate": {"simulate": False},
                  "points": [{"precision": {"nodes": {"by": "degree_quantile", "bits": [2, 4],
                                                      "edges": [0.9, 0.5]}}}]},
                 "precision.nodes.edges")


@pytest.mark.skipif(not sim_config_present(), reason="sim/ (sim.config) is not installed")
def test_arch_points_share_the_model_hash_and_aliases_are_canonical() -> None:
    s = parse_spec({"fixed": {"dataset": "cora"},
                    "grid": {"bits": [4], "arch": {"pes": [4, 16]}}})
    p4, p16 = s.points
    assert p4.model_hash == p16.model_hash and p4.point_id != p16.point_id
    assert p4.params["arch"] == {"aggregation": {"pes": 4}}
    long = parse_spec({"fixed": {"dataset": "cora", "bits": 4},
                       "points": [{"arch": {"aggregation": {"pes": 4}}}]}).points[0]
    assert long.point_id == p4.point_id
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"arch": {"pes": [4, 0]}}},
                 "arch.pes=0", "aggregation.pes", schema=True)
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"arch": {"nope": [1]}}},
                 "arch.nope", "unknown architecture parameter", "aggregation.pes", schema=True)


def test_load_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "s.toml"
    toml.write_text(textwrap.dedent("""
        name = "t"
        [fixed]
        dataset = "csbm:n=100"
        [grid]
        bits = [8, 4]
        precision.layers.1.bits = [8, 2]
        [evaluate]
        simulate = false
    """))
    yaml = tmp_path / "s.yaml"
    yaml.write_text(textwrap.dedent("""
        name: t
        fixed: {dataset: "csbm:n=100"}
        grid:
          bits: [8, 4]
          precision: {layers: {"1": {bits: [8, 2]}}}
        evaluate: {simulate: false}
    """))
    a, b = load_spec(toml), load_spec(yaml)
    assert len(a) == 4 and [p.point_id for p in a] == [p.point_id for p in b]
    assert a.source == toml


# --------------------------------------------------------------------------- errors


def test_unknown_keys_are_named_with_the_allowed_ones() -> None:
    expect_error({"fixed": {"dataset": "cora"}, "grdi": {}}, "'grdi'", "allowed: name, ")
    expect_error({"fixed": {"dataset": "cora", "epoch": 3}, "grid": {"bits": [4]}},
                 "fixed: unknown parameter 'epoch'", "epochs")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bit": [4]}},
                 "grid: unknown parameter 'bit'", "bits")
    expect_error({"fixed": {"dataset": "cora"}, "points": [{"bits": 4}, {"modle": "gcn"}]},
                 "points[1]: unknown parameter 'modle'")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": [4]},
                  "evaluate": {"simulation": True}}, "evaluate: unknown key 'simulation'",
                 "accuracy, simulate")
    expect_error({"fixed": {"dataset": "cora"},
                  "grid": {"precision": {"roles": {"weights": {"bits": [4]}}}},
                  "evaluate": {"simulate": False}}, "unknown role 'weights'", "weight")


def test_bad_bits_name_the_field_and_the_allowed_values() -> None:
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": [4, 9]},
                  "evaluate": {"simulate": False}}, "bits=9", "invalid bit width 9",
                 "2, 3, 4, 5, 6, 7, 8", "32/'fp32'")
    expect_error({"fixed": {"dataset": "cora"},
                  "points": [{"precision": {"layers": {"0": {"bits": "int1"}}}}],
                  "evaluate": {"simulate": False}}, "points[0]", "precision.layers.0.bits",
                 "invalid bit width")
    expect_error({"fixed": {"dataset": "cora", "bits": 4},
                  "points": [{"precision": {"layers": {"2": {"bits": 8}}}}],
                  "evaluate": {"simulate": False}},
                 "precision.layers.2", "layers 0..1")


def test_empty_grids_and_missing_points() -> None:
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": []}},
                 "grid.bits: empty list")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {}}, "grid: empty grid")
    expect_error({"fixed": {"dataset": "cora"}}, "no points", "[grid]", "[[points]]")
    expect_error({"fixed": {"dataset": "cora"}, "points": []}, "points: empty list")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": 4}},
                 "grid.bits: expected a list", "[fixed]")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": [4, 4]}},
                 "grid.bits: value 4 is listed twice")


def test_bad_values_name_the_field() -> None:
    ev = {"simulate": False}
    expect_error({"grid": {"bits": [4]}, "evaluate": ev}, "dataset is not set")
    expect_error({"fixed": {"dataset": "coraa"}, "grid": {"bits": [4]}, "evaluate": ev},
                 "unknown dataset 'coraa'", "cora", "csbm")
    expect_error({"fixed": {"dataset": "csbm:n=1"}, "grid": {"bits": [4]}, "evaluate": ev},
                 "dataset", "n=1")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"model": ["gcn", "gat"]},
                  "evaluate": ev}, "model=", "unknown model 'gat'", "gcn, gin, sage, decoupled")
    expect_error({"fixed": {"dataset": "cora", "epochs": 0}, "grid": {"bits": [4]},
                  "evaluate": ev}, "epochs: expected an integer >= 1, got 0")
    expect_error({"fixed": {"dataset": "cora", "dropout": 1.0}, "grid": {"bits": [4]},
                  "evaluate": ev}, "dropout", "[0, 1)")
    expect_error({"fixed": {"dataset": "cora", "hidden": True}, "grid": {"bits": [4]},
                  "evaluate": ev}, "hidden: expected an integer")
    expect_error({"fixed": {"dataset": "cora", "seeds": [1, 1]}, "grid": {"bits": [4]},
                  "evaluate": ev}, "seeds", "repeat")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": [4]},
                  "evaluate": {"accuracy": False, "simulate": False}}, "nothing to compute")
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"bits": [4]},
                  "evaluate": {"simulate": "yes"}}, "evaluate.simulate", "true or false")


def test_conflicts_and_duplicates() -> None:
    ev = {"simulate": False}
    expect_error({"fixed": {"dataset": "cora"}, "points": [{"bits": 4}], "grid": {"bits": [8]},
                  "evaluate": ev}, "points[0].bits: also a grid axis (grid.bits)")
    expect_error({"fixed": {"dataset": "cora"}, "points": [{"bits": 4}, {"bits": "int4"}],
                  "evaluate": ev}, "points[1]", "the same point as points[0]")
    expect_error({"fixed": {"dataset": "cora", "bits": 4}, "grid": {"precision": {"bits": [8]}},
                  "evaluate": ev}, "both bits and precision.bits")


def test_arch_needs_the_simulator_and_simulation() -> None:
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"arch": {"pes": [4, 8]}},
                  "evaluate": {"simulate": True}}, "arch.pes", "sim/", schema=None)
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"arch": {"pes": [4, 8]}},
                  "evaluate": {"simulate": False}}, "arch.",
                 "need evaluate.simulate = true", schema=SCHEMA)
    expect_error({"fixed": {"dataset": "cora"}, "grid": {"arch": {"pez": [4, 8]}},
                  "evaluate": {"simulate": True}}, "arch.pez: unknown architecture parameter",
                 "aggregation.pes", schema=SCHEMA)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[grid\nbits = [4]\n")
    with pytest.raises(SpecError, match="invalid TOML"):
        load_spec(bad)
    other = tmp_path / "spec.json"
    other.write_text("{}")
    with pytest.raises(SpecError, match=r"unknown spec format '\.json'; allowed: \.toml"):
        load_spec(other)


def test_cli_reports_spec_errors_in_one_line(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from qgnn.sweeps.cli import main

    f = tmp_path / "s.toml"
    f.write_text('[fixed]\ndataset = "cora"\n[grid]\nbits = [4, 12]\n'
                 '[evaluate]\nsimulate = false\n')
    assert main(["sweep", str(f), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qgnn: error: ") and "12" in err[0]
    assert not (tmp_path / "o").exists()


def test_defaults_are_the_library_defaults() -> None:
    """A sweep point that sets nothing trains exactly what `qgnn train` trains."""
    from qgnn.model.nn import ModelConfig
    from qgnn.model.train import TrainConfig
    from qgnn.sweeps.spec import DEFAULTS

    m, t = ModelConfig(), TrainConfig()
    for k in ("hidden", "layers", "dropout", "k", "alpha", "propagation"):
        assert DEFAULTS[k] == getattr(m, k), k
    for k in ("epochs", "lr", "weight_decay", "quant_lr", "distill", "row_normalize"):
        assert DEFAULTS[k] == getattr(t, k), k
    assert DEFAULTS["degree_quant"] == (t.degree_quant is not None)
    assert DEFAULTS["model"] == m.name
