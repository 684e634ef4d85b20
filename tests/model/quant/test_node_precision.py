"""Degree-aware mixed precision: the ``nodes`` schema, bucket tables, bucketed quantizers,
``avg_feature_bits`` and training (``model/quant/node_precision.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from qgnn.model.nn import ModelConfig, build_model
from qgnn.model.nn.graph_ops import GraphOps
from qgnn.model.quant import (
    DegreeQuantConfig,
    NodeBucketQuantizer,
    PrecisionConfig,
    QuantConfigError,
    Quantizer,
    QuantSpec,
)
from qgnn.model.quant.node_precision import NodePrecision, degree_buckets, degree_thresholds
from qgnn.model.train import TrainConfig, train_one

REPO = Path(__file__).resolve().parents[3]

# A hand-made graph: node 0 receives from 1..6, node 1 from 2 and 3, node 2 from 3.
# In-degree + self-loop: [7, 3, 2, 1, 1, 1, 1, 1].
EDGES = [(s, 0) for s in range(1, 7)] + [(2, 1), (3, 1), (3, 2)]
DEG_HAT = [7, 3, 2, 1, 1, 1, 1, 1]
N = 8


def graph() -> GraphOps:
    ei = torch.tensor(EDGES, dtype=torch.int64).t()
    return GraphOps.from_edge_index(ei, N)


def q_nodes(**kw: Any) -> dict[str, Any]:
    return {"by": "degree_quantile", "bits": [2, 4], "edges": [0.9], **kw}


# --------------------------------------------------------------------------- schema
def test_graph_degrees_as_the_model_counts_them() -> None:
    assert graph().deg_hat.tolist() == DEG_HAT


def test_round_trip_and_label() -> None:
    d = {"bits": 2, "nodes": {"by": "degree_threshold", "bits": [2, 4, 8], "edges": [2, 4],
                              "roles": ["message", "aggregate"]},
         "layers": {"1": {"nodes": {"bits": [2, 2, 4]}}}}
    p = PrecisionConfig.from_dict(d)
    assert p.label() == "mixed"
    again = PrecisionConfig.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again.to_dict() == p.to_dict()
    assert p.node_precision(0) == NodePrecision("degree_threshold", (2, 4, 8), (2, 4),
                                                ("message", "aggregate"))
    assert p.node_precision(1).bits == (2, 2, 4)  # merged over the model-level table
    assert p.node_precision(1).edges == (2, 4)
    # buckets set the width only; the rest of the role's spec is kept
    specs = p.node_specs(0, "message")
    assert [s.bits for s in specs] == [2, 4, 8]
    assert all(s.range == "lsq" and not s.symmetric for s in specs)
    assert p.node_specs(0, "update") is None and p.node_specs(0, "weight") is None
    assert p.spec(0, "weight").bits == 2


def test_layer_override_off_and_replace() -> None:
    p = PrecisionConfig.from_dict({"bits": 2, "nodes": q_nodes(), "layers": {
        "1": {"nodes": False}, "2": {"nodes": {"by": "degree_threshold", "bits": [2, 8],
                                               "edges": [5]}}}})
    assert p.node_precision(1) is None and p.node_specs(1, "message") is None
    assert p.node_precision(2).by == "degree_threshold"
    assert p.node_precision(0).by == "degree_quantile"


def test_uniform_bucket_widths_keep_the_uniform_label() -> None:
    p = PrecisionConfig.from_dict({"bits": 4, "nodes": q_nodes(bits=[4, 4])})
    assert p.label() == "int4"


def test_learned_defaults() -> None:
    n = NodePrecision.from_dict({"by": "learned", "bits": [2, 4, 8], "target": 2.5})
    assert (n.target, n.penalty, n.init, n.edges) == (2.5, 1.0, 2.5, ())


@pytest.mark.parametrize(
    ("nodes", "field"),
    [
        ({"by": "degree_quantile", "bits": [2, 4], "edgs": [0.9]}, "precision.nodes.edgs:"),
        (q_nodes(edges=[0.9, 0.8], bits=[2, 4, 8]), "precision.nodes.edges:"),
        (q_nodes(edges=[0.5, 0.5], bits=[2, 4, 8]), "precision.nodes.edges:"),
        (q_nodes(edges=[1.0]), "precision.nodes.edges:"),
        (q_nodes(edges=[0.0]), "precision.nodes.edges:"),
        (q_nodes(edges="0.9"), "precision.nodes.edges:"),
        (q_nodes(edges=[0.5, 0.9]), "precision.nodes.edges:"),  # len(bits) != len(edges) + 1
        (q_nodes(bits=[2, 9]), "precision.nodes.bits:"),
        (q_nodes(bits=[1, 4]), "precision.nodes.bits:"),
        (q_nodes(bits=[2, 32]), "precision.nodes.bits:"),
        (q_nodes(bits=[2, True]), "precision.nodes.bits:"),
        (q_nodes(bits=[]), "precision.nodes.bits:"),
        ({"by": "degree_threshold", "bits": [2, 4], "edges": [2.5]}, "precision.nodes.edges:"),
        ({"by": "degree_threshold", "bits": [2, 4, 8], "edges": [5, 3]},
         "precision.nodes.edges:"),
        ({"by": "degree_threshold", "bits": [2, 4], "edges": [0]}, "precision.nodes.edges:"),
        ({"by": "degree", "bits": [2, 4], "edges": [3]}, "precision.nodes.by:"),
        ({"bits": [2, 4], "edges": [3]}, "precision.nodes.by:"),
        (q_nodes(roles=["weight"]), "precision.nodes.roles:"),
        (q_nodes(roles=["messages"]), "precision.nodes.roles:"),
        (q_nodes(roles=["message", "message"]), "precision.nodes.roles:"),
        (q_nodes(target=2.5), "precision.nodes.target:"),
        ({"by": "learned", "bits": [2, 8], "target": 3, "penalty": -1.0},
         "precision.nodes.penalty:"),
        ({"by": "learned", "bits": [2, 8], "target": 3, "penalty": "big"},
         "precision.nodes.penalty:"),
        ({"by": "learned", "bits": [2, 8], "target": 3, "penalty": float("nan")},
         "precision.nodes.penalty:"),
        ({"by": "learned", "bits": [2, 8], "target": 9}, "precision.nodes.target:"),
        ({"by": "learned", "bits": [2, 8]}, "precision.nodes.target:"),
        ({"by": "learned", "bits": [8, 2], "target": 3}, "precision.nodes.bits:"),
        ({"by": "learned", "bits": [2, 8], "target": 3, "edges": [0.5]},
         "precision.nodes.edges:"),
        ({"by": "learned", "bits": [2, 8], "target": 3, "init": 1}, "precision.nodes.init:"),
        ([2, 4], "precision.nodes:"),
    ],
)
def test_bad_nodes_tables_name_the_field(nodes: Any, field: str) -> None:
    with pytest.raises(QuantConfigError) as e:
        PrecisionConfig.from_dict({"bits": 2, "nodes": nodes})
    msg = str(e.value)
    assert msg.startswith(field), msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ({"bits": 2, "layers": {"1": {"nodes": {"bits": [2, 4, 8]}}}, "nodes": q_nodes()},
         "precision.layers.1.nodes.edges:"),
        ({"bits": 2, "layers": {"1": {"nodes": True}}}, "precision.layers.1.nodes:"),
        ({"bits": 2, "layers": {"0": {"nodes": 3}}}, "precision.layers.0.nodes:"),
        ({"bits": 2, "roles": {"aggregate": {"granularity": "node", "range": "minmax"}},
          "nodes": q_nodes()}, "precision.nodes.roles:"),
    ],
)
def test_bad_layer_nodes_and_combinations(d: dict[str, Any], field: str) -> None:
    with pytest.raises(QuantConfigError) as e:
        PrecisionConfig.from_dict(d)
    assert str(e.value).startswith(field), str(e.value)


def test_cli_bad_nodes_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from qgnn.sweeps.cli import main

    bad = json.dumps({"bits": 2, "nodes": q_nodes(edges=[0.9, 0.5], bits=[2, 4, 8])})
    assert main(["train", "--dataset", "cora", "--precision", bad]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qgnn: error: precision.nodes.edges: "), err


def test_example_file_loads() -> None:
    p = PrecisionConfig.load(str(REPO / "examples/precision/degree-mixed.toml"))
    assert p.label() == "mixed" and p.node_precision(0) is not None
    assert p.node_precision(0).by == "degree_quantile"


# --------------------------------------------------------------------------- bucket tables
def test_threshold_buckets_on_known_degrees() -> None:
    n = NodePrecision.from_dict({"by": "degree_threshold", "bits": [2, 4, 8], "edges": [2, 4]})
    assert degree_buckets(graph().deg_hat, n).tolist() == [2, 1, 1, 0, 0, 0, 0, 0]
    n = NodePrecision.from_dict({"by": "degree_threshold", "bits": [2, 8], "edges": [3]})
    assert degree_buckets(graph().deg_hat, n).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


def test_quantile_buckets_on_known_degrees() -> None:
    deg = graph().deg_hat  # sorted: [1, 1, 1, 1, 1, 2, 3, 7]
    n = NodePrecision.from_dict(q_nodes(bits=[2, 4, 8], edges=[0.5, 0.8]))
    # q=0.5: 4th smallest degree is 1 -> threshold 2; q=0.8: 7th smallest is 3 -> threshold 4
    assert degree_thresholds(deg, n) == [2, 4]
    assert degree_buckets(deg, n).tolist() == [2, 1, 1, 0, 0, 0, 0, 0]
    # top 10% of 8 nodes is 0.8 of a node: at most that many go up, so none
    n = NodePrecision.from_dict(q_nodes(edges=[0.9]))
    assert degree_buckets(deg, n).tolist() == [0] * 8
    # q=0.75: 6th smallest is 2 -> nodes with degree > 2 (2 of 8 = 25%) go up
    n = NodePrecision.from_dict(q_nodes(edges=[0.75]))
    assert degree_buckets(deg, n).tolist() == [1, 1, 0, 0, 0, 0, 0, 0]


# --------------------------------------------------------------------------- quantizer
def _bucket_quantizer(spec: QuantSpec, node: dict[str, Any]) -> NodeBucketQuantizer:
    n = NodePrecision.from_dict(node)
    return NodeBucketQuantizer(n.bucket_specs(spec), n, name="t")


def test_bucketed_rows_use_their_buckets_quantizer() -> None:
    torch.manual_seed(0)
    spec = QuantSpec(bits=2, range="minmax")
    node = {"by": "degree_threshold", "bits": [2, 4, 8], "edges": [2, 4]}
    q = _bucket_quantizer(spec, node)
    g = graph()
    q.bind(g)
    x = torch.randn(N, 5) * torch.arange(1, N + 1)[:, None]
    y = q(x)
    buckets = [[3, 4, 5, 6, 7], [1, 2], [0]]
    for k, rows in enumerate(buckets):
        ref = Quantizer(spec.with_(bits=[2, 4, 8][k]))
        assert torch.equal(y[rows], ref(x[rows]))
    assert q.bits_per_node().tolist() == [8, 4, 4, 2, 2, 2, 2, 2]
    # the INT2 rows take at most 4 distinct values per tensor, the INT8 row is near exact
    assert torch.unique(y[buckets[0]]).numel() <= 4
    assert (y[0] - x[0]).abs().max() < (x[0].abs().max() / 100)


def test_protected_rows_pass_through() -> None:
    q = _bucket_quantizer(QuantSpec(bits=2), {"by": "degree_threshold", "bits": [2, 4],
                                              "edges": [3]})
    q.bind(graph())
    q.train()
    x = torch.randn(N, 4)
    protect = torch.zeros(N, dtype=torch.bool)
    protect[[0, 5]] = True
    y = q(x, protect)
    assert torch.equal(y[[0, 5]], x[[0, 5]]) and not torch.equal(y[3], x[3])


def test_sparse_rows_match_dense() -> None:
    torch.manual_seed(1)
    spec = QuantSpec(bits=2, range="minmax")
    node = {"by": "degree_threshold", "bits": [2, 4], "edges": [3]}
    x = (torch.rand(N, 6) < 0.4).float() * torch.rand(N, 6)
    dense, sparse = _bucket_quantizer(spec, node), _bucket_quantizer(spec, node)
    g = graph()
    dense.bind(g)
    sparse.bind(g)
    yd = dense(x)
    csr = x.to_sparse_csr()
    row = torch.repeat_interleave(torch.arange(N), csr.crow_indices().diff())
    ys = sparse.forward_rows(csr.values(), row, N, num_cols=6)
    assert torch.allclose(torch.sparse_csr_tensor(csr.crow_indices(), csr.col_indices(), ys,
                                                  (N, 6)).to_dense(), yd)


def test_no_integer_form_yet() -> None:
    q = _bucket_quantizer(QuantSpec(bits=2), q_nodes())
    with pytest.raises(QuantConfigError, match="no integer-only form"):
        q.integer_params()


# --------------------------------------------------------------------------- avg bits
def _model(name: str, precision: PrecisionConfig, layers: int = 2) -> Any:
    return build_model(ModelConfig(name=name, hidden=8, layers=layers, k=2), 4, 3, precision)


@pytest.mark.parametrize("name", ["gcn", "gin", "sage", "decoupled"])
def test_uniform_avg_bits(name: str) -> None:
    g = graph()
    assert _model(name, PrecisionConfig.uniform(2)).avg_feature_bits(g) == 2.0
    assert _model(name, PrecisionConfig.uniform(32)).avg_feature_bits(g) == 32.0


def test_avg_bits_hand_computed() -> None:
    p = PrecisionConfig.from_dict({"bits": 2, "nodes": {
        "by": "degree_threshold", "bits": [2, 4, 8], "edges": [2, 4],
        "roles": ["message", "aggregate"]}})
    # per layer, 5 activation tensors: input, output, update at 2 bits; message and aggregate
    # at [8, 4, 4, 2, 2, 2, 2, 2] (mean 26/8 = 3.25): (3 * 2 + 2 * 3.25) / 5 = 2.5
    for layers in (1, 2):
        assert _model("gcn", p, layers).avg_feature_bits(graph()) == pytest.approx(2.5, abs=1e-12)
    # FP32 update counts 32: (2 + 2 + 32 + 3.25 + 3.25) / 5 = 8.5
    p = PrecisionConfig.from_dict({**p.to_dict(), "roles": {"update": 32}})
    assert _model("gcn", p, 1).avg_feature_bits(graph()) == pytest.approx(8.5, abs=1e-12)


def test_bucketed_model_forward_matches_bucket_layout() -> None:
    p = PrecisionConfig.from_dict({"bits": 2, "nodes": q_nodes(edges=[0.75])})
    m = _model("gcn", p)
    names = [n for n, q in m.named_modules() if isinstance(q, NodeBucketQuantizer)]
    # 2 layers x 5 activation roles; weights stay plain quantizers
    assert len(names) == 10 and not any(n.endswith("weight") for n in names)
    out = m(torch.randn(N, 4), graph())
    assert out.shape == (N, 3) and torch.isfinite(out).all()


# --------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def csbm() -> Any:
    from qgnn.model.datasets import load_dataset

    return load_dataset("csbm:n=300,features=16,classes=3,degree=5", seed=0)


def test_short_training_with_mixed_precision(csbm: Any) -> None:
    p = PrecisionConfig.from_dict({"bits": 2, "nodes": q_nodes(bits=[2, 8], edges=[0.8])})
    r = train_one(csbm, ModelConfig(name="gcn", hidden=16), p, TrainConfig(epochs=15), 0,
                  keep_model=True)
    assert r.model is not None and 0.0 <= r.test_acc <= 1.0
    frac_up = float((r.model.convs[0].q.message.bits_per_node() == 8).double().mean())
    assert 0.0 < frac_up <= 0.2
    # every activation tensor follows the buckets: avg = 2 + 6 * frac_up
    assert r.avg_feature_bits == pytest.approx(2 + 6 * frac_up, abs=1e-9)
    assert r.to_dict()["avg_feature_bits"] == r.avg_feature_bits
    # the integer path converts a bucketed GCN (mixed-width aggregation stages) and agrees
    from qgnn.model.integer.compare import agreement
    from qgnn.model.integer.convert import to_integer

    assert agreement(r.model, to_integer(r.model, csbm), csbm).prediction_agreement >= 0.99


def test_mixed_precision_composes_with_degree_quant(csbm: Any) -> None:
    p = PrecisionConfig.from_dict({"bits": 2, "nodes": q_nodes(bits=[2, 4], edges=[0.8])})
    r = train_one(csbm, ModelConfig(name="gin", hidden=16), p,
                  TrainConfig(epochs=5, degree_quant=DegreeQuantConfig(0.0, 0.5)), 0)
    assert 0.0 <= r.test_acc <= 1.0 and 2.0 < r.avg_feature_bits < 4.0


def test_learned_widths_fall_under_the_penalty(csbm: Any) -> None:
    node = {"by": "learned", "bits": [2, 4, 8], "target": 2.0, "init": 8.0, "penalty": 5.0}
    p = PrecisionConfig.from_dict({"bits": 2, "nodes": node})
    mcfg = ModelConfig(name="gcn", hidden=16)
    start = build_model(mcfg, csbm.num_features, 3, p).avg_feature_bits(csbm)
    assert start == 8.0
    r = train_one(csbm, mcfg, p, TrainConfig(epochs=60, distill=0.0), 0, keep_model=True)
    final = r.model.avg_feature_bits(csbm)
    assert final < 4.0, final
    # snapped: every node of every learned tensor sits in one of the allowed buckets
    for q in r.model.modules():
        if isinstance(q, NodeBucketQuantizer):
            assert q.fixed_assign is not None
            assert set(q.bits_per_node().tolist()) <= {2.0, 4.0, 8.0}
    # without the penalty the widths do not fall that far
    free = PrecisionConfig.from_dict({"bits": 2, "nodes": {**node, "penalty": 0.0}})
    r0 = train_one(csbm, mcfg, free, TrainConfig(epochs=60, distill=0.0), 0, keep_model=True)
    assert r0.model.avg_feature_bits(csbm) > final


def test_learned_width_gets_a_gradient() -> None:
    n = NodePrecision.from_dict({"by": "learned", "bits": [2, 8], "target": 4.0})
    q = NodeBucketQuantizer(n.bucket_specs(QuantSpec(bits=2, range="minmax")), n)
    q.bind(graph())
    q.train()
    x = torch.randn(N, 3)
    q(x)  # calibrates every bucket
    y = q(x)
    (y * torch.randn_like(y)).sum().backward()
    assert q.width is not None and q.width.grad is not None
    assert q.width.grad.abs().sum() > 0
