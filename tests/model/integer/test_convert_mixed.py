"""to_integer with degree-aware node buckets (per-node widths, issue 12 item 3): a GCN becomes
mixed-width integer layers whose aggregations are MixedAggregationStages; other models are
refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from qgnn.model.golden import GoldenMixedStage, MixedAggregationStage, read_vectors
from qgnn.model.integer.compare import agreement
from qgnn.model.integer.convert import (
    IntMixedGCN,
    model_input,
    to_integer,
)
from qgnn.model.integer.export import export_vectors
from qgnn.model.nn import ModelConfig
from qgnn.model.quant import PrecisionConfig
from qgnn.model.train import TrainConfig, train_one

REPO = Path(__file__).resolve().parents[3]
EPOCHS = 30

PRECISIONS = {
    "example": None,  # examples/precision/degree-mixed.toml: INT2, top ~10% by degree at INT8
    "three-buckets": {"bits": 2, "nodes": {"by": "degree_quantile", "bits": [2, 4, 8],
                                           "edges": [0.7, 0.95]}},
    "layer0-only": {"bits": 4, "nodes": {"by": "degree_threshold", "bits": [4, 8],
                                         "edges": [8]}, "layers": {"1": {"nodes": False}}},
    "message-aggregate": {"bits": 2, "nodes": {"by": "degree_quantile", "bits": [2, 8],
                                               "edges": [0.9], "roles": ["message", "aggregate"]}},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_models: dict[str, Any] = {}


def trained(cora: Any, key: str) -> Any:
    if key not in _models:
        d = PRECISIONS[key]
        prec = (PrecisionConfig.load(str(REPO / "examples/precision/degree-mixed.toml"))
                if d is None else PrecisionConfig.from_dict(d))
        r = train_one(cora, ModelConfig(name="gcn"), prec, TrainConfig(epochs=EPOCHS), seed=0,
                      keep_model=True)
        _models[key] = r.model
    return _models[key]


@pytest.mark.parametrize("key", list(PRECISIONS))
def test_agreement_is_total_on_cora(cora: Any, key: str) -> None:
    model = trained(cora, key)
    im = to_integer(model, cora)
    assert all(isinstance(lay, IntMixedGCN) for lay in im.layers)
    ag = agreement(model, im, cora)
    assert ag.test_nodes == 1000
    assert ag.prediction_agreement == 1.0, ag
    assert ag.fake_quant_test_acc > 0.5, ag  # a trained model, not a collapsed one


def test_stages_follow_the_buckets(cora: Any) -> None:
    model = trained(cora, "example")
    im = to_integer(model, cora)
    im.forward(model_input(cora))
    stages = im.stages()
    assert len(stages) == 2 and all(isinstance(s, MixedAggregationStage) for s in stages)
    for conv, st, lay in zip(model.convs, stages, im.layers, strict=True):
        assert isinstance(lay, IntMixedGCN)
        want_src = conv.q.message.assignment().numpy()
        want_dst = conv.q.aggregate.assignment().numpy()
        assert np.array_equal(st.src_bucket, want_src)
        assert np.array_equal(st.dst_bucket, want_dst)
        assert st.bits_in == (2, 8) and st.out_bits == (2, 8)
        assert 0 < (st.src_bucket == 1).mean() <= 0.1  # the top ~10% by degree
        # R[k] ~ the message steps' ratio, as integers (bucket 0 has the coarsest step)
        steps = [float(q.scale) for q in lay.msg_q.qps]
        assert st.weight[0] == 2**16 - 1
        assert st.weight[1] / st.weight[0] == pytest.approx(steps[1] / steps[0], rel=1e-3)


def test_aggregate_codes_match_the_real_sum(cora: Any) -> None:
    """Independent of the integer arithmetic: the aggregate codes of layer 0 are, within one
    code, the real sum ``dinv_i * sum_j s_k(j) (m_j - z_k(j))`` quantized by row i's bucket."""
    model = trained(cora, "example")
    im = to_integer(model, cora)
    im.forward(model_input(cora))
    st = im.stages()[0]
    lay = im.layers[0]
    assert isinstance(lay, IntMixedGCN)
    s_msg = np.array([float(q.scale) for q in lay.msg_q.qps])
    s_agg = np.array([float(q.scale) for q in lay.agg_nq.qps])
    real = (st.codes - np.asarray(st.z_in)[st.src_bucket][:, None]) * s_msg[st.src_bucket][:, None]
    dinv = lay.dinv.reshape(-1)
    rows = np.arange(0, st.num_nodes, 7)
    y = st.compute()[1]
    for i in rows:
        terms = st.indices[st.indptr[i]:st.indptr[i + 1]]
        x = dinv[i] * real[terms].sum(axis=0) / s_agg[st.dst_bucket[i]]
        b = st.dst_bucket[i]
        want = np.clip(np.rint(x) + st.z_out[b], 0, 2 ** st.out_bits[b] - 1)
        got = y[i]
        assert np.abs(got - want).max() <= 1, (i, got, want)


def test_export_writes_version_3(cora: Any, tmp_path: Path) -> None:
    model = trained(cora, "example")
    path, im, stages = export_vectors(model, cora, tmp_path / "v", features=16, word_width=64)
    m = json.loads((path / "manifest.json").read_text())
    assert m["version"] == 3 and [e["kind"] for e in m["stages"]] == ["mixed", "mixed"]
    assert [st.features for st in stages] == [16, 7]  # 16 of the hidden features, 7 classes
    vs = read_vectors(path)
    for g, st in zip(vs.stages, stages, strict=True):
        assert isinstance(g, GoldenMixedStage)
        assert np.array_equal(g.stage.codes, st.codes)
        assert np.array_equal(g.expected_codes, st.compute()[1])
