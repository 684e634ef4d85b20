"""Integer-only model: agreement with the fake-quant model on Cora, integer-only dataflow,
conversion errors, and the exported stages."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from qgnn.model.golden.format import read_vectors
from qgnn.model.integer.compare import agreement, format_trace, trace
from qgnn.model.integer.convert import IntegerConversionError, model_input, to_integer
from qgnn.model.integer.export import export_vectors
from qgnn.model.nn import ModelConfig
from qgnn.model.quant import PrecisionConfig
from qgnn.model.train import TrainConfig, train_one

# Enough epochs for trained (not random) weights and calibrated ranges; agreement is a
# property of the conversion, not of the accuracy reached.
EPOCHS = 30


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_models: dict[tuple[str, int], Any] = {}


def trained(cora: Any, name: str, bits: int) -> Any:
    key = (name, bits)
    if key not in _models:
        r = train_one(cora, ModelConfig(name=name), PrecisionConfig.uniform(bits),
                      TrainConfig(epochs=EPOCHS), seed=0, keep_model=True)
        _models[key] = r.model
    return _models[key]


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("name", ["gcn", "gin", "sage", "decoupled"])
def test_agreement_on_cora(cora: Any, name: str, bits: int) -> None:
    model = trained(cora, name, bits)
    im = to_integer(model, cora)
    ag = agreement(model, im, cora)
    assert ag.test_nodes == 1000
    assert ag.prediction_agreement >= 0.995, ag
    assert ag.acc_diff_points <= 0.3, ag
    # the integer path computed something non-trivial (a collapsed model, e.g. GIN at INT2
    # after few epochs, can still predict one class everywhere: agreement is then trivial at
    # the output, so also check the aggregation saw varying codes)
    im.forward(model_input(cora))
    agg = next(codes for name, (codes, _) in im.trace.items() if name.endswith("aggregate"))
    assert len(np.unique(agg)) > 1


@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_forward_is_integer_only(cora: Any, name: str) -> None:
    im = to_integer(trained(cora, name, 4), cora)
    out = im.forward(model_input(cora))
    assert out.dtype == np.int64
    for tensor, (codes, qp) in im.trace.items():
        assert codes.dtype == np.int64, tensor
        assert codes.min() >= qp.qmin and codes.max() <= qp.qmax, tensor
    for st in im.stages():
        assert st.codes.min() >= 0 and st.codes.max() < (1 << st.bits)


def test_trace_lists_every_role_in_dataflow_order(cora: Any) -> None:
    model = trained(cora, "gcn", 4)
    rows = trace(model, to_integer(model, cora), cora)
    names = [r.tensor for r in rows]
    assert names.index("convs.0.q.output") < names.index("convs.0.q.message") \
        < names.index("convs.0.q.aggregate") < names.index("convs.1.q.update")
    # float32 fake quant and exact integers may round a near-tie differently: rare, and then
    # by one step (which a coarser downstream step can turn into two)
    assert all(r.frac_differing < 1e-3 and r.max_diff_steps <= 3 for r in rows), format_trace(rows)
    assert "max |int-fake| (steps)" in format_trace(rows)


def test_aggregation_is_sum_of_codes_with_per_node_factors(cora: Any) -> None:
    """The exported layer-0 stage of GCN: CSR of A + I, codes of the message quantizer, and the
    aggregate codes the integer model uses downstream."""
    model = trained(cora, "gcn", 4)
    im = to_integer(model, cora)
    im.forward(model_input(cora))
    st = im.stages()[0]
    assert st.num_terms == cora.edge_index.shape[1] + cora.num_nodes  # self-loops
    assert st.acc_width == 12  # 169 terms of 4-bit codes (anchors.md)
    acc, out = st.compute()
    naive = np.zeros_like(acc)
    for i in range(0, st.num_nodes, 97):  # a sample of rows, summed by hand
        naive[i] = st.codes[st.indices[st.indptr[i]:st.indptr[i + 1]]].sum(axis=0)
        assert np.array_equal(naive[i], acc[i])
    agg_codes, _ = im.trace["convs.0.q.aggregate"]
    assert np.array_equal(agg_codes, out - (-im.layers[0].agg_q.qmin))


def test_fp32_role_is_rejected(cora: Any) -> None:
    prec = PrecisionConfig.from_dict({"bits": 4, "roles": {"update": {"bits": 32}}})
    r = train_one(cora, ModelConfig(name="gcn"), prec, TrainConfig(epochs=2), seed=0,
                  keep_model=True)
    with pytest.raises(IntegerConversionError, match="update.*FP32"):
        to_integer(r.model, cora)


def test_export_round_trip(cora: Any, tmp_path: Any) -> None:
    model = trained(cora, "gcn", 2)
    path, im, stages = export_vectors(model, cora, tmp_path / "v", source={"dataset": "cora"},
                                      features=10, word_width=32)
    vs = read_vectors(path)
    assert [g.stage.name for g in vs.stages] == ["layer0.aggregate", "layer1.aggregate"]
    g0 = vs.stages[0]
    assert g0.stage.features == 10 and g0.stage.word_width == 32
    assert g0.stage.words_per_row == 1  # 10 2-bit codes in one 32-bit word
    full_codes, _ = im.trace["convs.0.q.aggregate"]
    assert np.array_equal(g0.expected_codes, full_codes[:, :10])


# --- bit truncation (BT / BT*) -------------------------------------------------------------
_bt_models: dict[tuple[str, str], Any] = {}


def trained_bt(cora: Any, name: str, truncation: str) -> Any:
    from qgnn.model.quant.bit_truncation import bt_precision

    key = (name, truncation)
    if key not in _bt_models:
        r = train_one(cora, ModelConfig(name=name), bt_precision(truncation),
                      TrainConfig(epochs=EPOCHS, distill=0.0), seed=0, keep_model=True)
        _bt_models[key] = r.model
    return _bt_models[key]


@pytest.mark.parametrize(("name", "truncation"), [
    ("gcn", "bt_star"), ("gin", "bt_star"), ("sage", "bt"), ("decoupled", "bt"),
    ("decoupled", "bt_star"),
])
def test_bt_agreement_and_zero_trace(cora: Any, name: str, truncation: str) -> None:
    """Every tensor of a BT/BT* model, integer vs fake-quant: no code differs (the real values
    differ only by the fake-quant model's float32 rounding, far below a step)."""
    model = trained_bt(cora, name, truncation)
    im = to_integer(model, cora)
    ag = agreement(model, im, cora)
    assert ag.prediction_agreement == 1.0, ag
    rows = trace(model, im, cora)
    assert rows and all(r.frac_differing == 0.0 for r in rows), format_trace(rows)
    assert max(r.max_diff_steps for r in rows) < 1e-4, format_trace(rows)
    stages = im.stages()
    assert stages and all(st.truncated and st.in_level == 85 for st in stages)
    assert all(st.out_thresholds is not None for st in stages)
    if truncation == "bt":  # BT* thresholds move with each tensor's skewness
        assert all(st.out_thresholds == (43, 128, 213) for st in stages)
    agg = next(codes for n, (codes, _) in im.trace.items() if n.endswith("aggregate"))
    assert set(np.unique(agg)) <= {0, 1, 2, 3} and len(np.unique(agg)) > 1


def test_bt_codes_mean_grid_levels(cora: Any) -> None:
    """A BT tensor's 2-bit code c is the grid value 85 c: dequantizing the integer path's
    aggregate codes gives exactly the fake quantizer's output."""
    from qgnn.model.integer.compare import fake_quant_outputs

    model = trained_bt(cora, "gcn", "bt_star")
    im = to_integer(model, cora)
    im.forward(model_input(cora))
    codes, qp = im.trace["convs.0.q.aggregate"]
    _, fake = fake_quant_outputs(model, cora)
    real = (85 * codes - int(qp.zero)) * float(qp.scale)
    assert np.allclose(real, fake["convs.0.q.aggregate"].numpy(), rtol=0, atol=1e-6)


def test_bt_export_round_trip(cora: Any, tmp_path: Any) -> None:
    model = trained_bt(cora, "gcn", "bt_star")
    path, im, _ = export_vectors(model, cora, tmp_path / "bt", source={"dataset": "cora"},
                                 features=12, word_width=16)
    g0 = read_vectors(path).stages[0]
    assert g0.stage.truncated and g0.stage.words_per_row == 2  # 12 codes, 8 lanes per word
    full_codes, _ = im.trace["convs.0.q.aggregate"]
    assert np.array_equal(g0.expected_codes, full_codes[:, :12])


@pytest.mark.parametrize("truncation", ["none", "bt_star"])
def test_smp_integer_path(cora: Any, truncation: str) -> None:
    """SMP steps in integers: two aggregation stages per step, the multiplier trace of the
    fake-quant model reproduced from the exact integer T, predictions equal."""
    from qgnn.model.quant.bit_truncation import bt_precision

    prec = (PrecisionConfig.from_dict({"bits": 8, "range": "qlr"}) if truncation == "none"
            else bt_precision(truncation))
    r = train_one(cora, ModelConfig(name="decoupled", propagation="smp", k=3), prec,
                  TrainConfig(epochs=EPOCHS, distill=0.0, weight_decay=5e-4), seed=0,
                  keep_model=True)
    im = to_integer(r.model, cora)
    ag = agreement(r.model, im, cora)  # runs both models
    assert ag.prediction_agreement >= 0.995, ag
    names = [st.name for st in im.stages()]
    assert names == [f"layer{2 + k}.{s}" for k in range(3) for s in ("aggregate", "gap_aggregate")]
    assert len(im.smp_trace) == 3
    for (lam_i, s_i), (lam_f, s_f) in zip(im.smp_trace, r.model.smp_trace, strict=True):
        assert lam_i == pytest.approx(lam_f, rel=1e-4) and s_i == pytest.approx(s_f, rel=1e-6)
    assert im.smp_trace[-1][0] != pytest.approx(im.smp_trace[0][0])  # λ moved
    if truncation != "none":
        assert all(st.truncated for st in im.stages())


def test_smp_trace_term_is_the_laplacian_form(cora: Any) -> None:
    """The integer T times the gap step squared is tr(Δ^T L~ Δ) of the dequantized gap
    messages (float64 reference through the model's own laplacian_form)."""
    from qgnn.model.integer.convert import IntSMPPropagation
    from qgnn.model.nn.graph_ops import graph_ops
    from qgnn.model.nn.smp_propagation import laplacian_form

    r = train_one(cora, ModelConfig(name="decoupled", propagation="smp", k=1),
                  PrecisionConfig.from_dict({"bits": 4, "range": "qlr"}),
                  TrainConfig(epochs=5, distill=0.0), seed=0, keep_model=True)
    im = to_integer(r.model, cora)
    im.forward(model_input(cora))
    lay = im.layers[-1]
    assert isinstance(lay, IntSMPPropagation)
    gm, qp = im.trace["props.0.q_gap.message"]
    m = torch.from_numpy(qp.dequantize(gm))
    g = graph_ops(cora)
    want = float(laplacian_form(m, g.sum_neighbors(m.float()).double(), g))
    c = lay.c
    lam0, s0 = c.lambda0, c.slack0
    s1 = s0 + 2 * c.eta_slack * lam0 * s0
    t = (lay.lam - lam0) / c.eta_lambda  # = bound * nnz - s1^2 - T
    assert c.bound * lay.nnz - s1 * s1 - t == pytest.approx(want, rel=1e-6)


def test_aggregation_factor_beyond_the_multiplier_is_capped_exactly() -> None:
    """An aggregate range far narrower than one message step (factor >= 2**16): outputs are
    saturated for every non-zero corrected sum and z_out otherwise, exactly as the real
    factor gives."""
    from qgnn.model.integer.convert import AggregationSpec
    from qgnn.model.integer.fixed import QParams

    msg = QParams("m", 4, 0, 15, np.array(1.0), np.array(3))
    agg = QParams("a", 4, 0, 15, np.array(1e-7), np.array(5))
    indptr, indices = torch.tensor([0, 2, 3, 3]), torch.tensor([0, 1, 2])
    spec = AggregationSpec.build("s", indptr, indices, msg, agg, np.ones(3), 16)
    codes = np.array([[3, 4, 0], [3, 2, 15], [3, 3, 3]])
    out, _ = spec.run(codes)
    c = np.zeros((3, 3), dtype=np.int64)  # corrected sums: row sum - n * z_in (z_in = 3)
    c[0] = codes[0] + codes[1] - 6
    c[1] = codes[2] - 3
    want = np.clip(np.sign(c) * 10**9 + 5, 0, 15)  # real factor 1e7: saturate unless c = 0
    assert np.array_equal(out, want)
