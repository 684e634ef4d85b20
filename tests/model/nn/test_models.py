"""Tests for model.nn.models (model construction, parameters, Degree-Quant) and the
determinism of model.train.train_one."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from qgnn.model.nn.graph_ops import GraphOps, graph_ops
from qgnn.model.nn.models import MODEL_NAMES, ModelConfig, QConvStack, QDecoupled, build_model
from qgnn.model.quant.degree_quant import DegreeQuantConfig
from qgnn.model.quant.precision import PrecisionConfig
from qgnn.model.quant.quantizer import Quantizer
from qgnn.model.train import TrainConfig, train_one
from torch_geometric.data import Data
from torch_geometric.nn import APPNP, GCNConv
from torch_geometric.utils import coalesce

N, FEAT, C = 24, 7, 3
QUANT_PARAM_NAMES = {"alpha", "log_step", "offset"}


def small_graph(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, N, (2, 80), generator=g)
    x = torch.randn(N, FEAT, generator=g)
    return x, ei


def test_model_names() -> None:
    assert MODEL_NAMES == ("gcn", "gin", "sage", "decoupled")


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("bits", [2, 4, 8, 32])
def test_shapes_calibration_and_parameter_partition(name: str, bits: int) -> None:
    torch.manual_seed(0)
    x, ei = small_graph()
    data = Data(x=x, edge_index=ei, num_nodes=N)
    cfg = ModelConfig(name=name, hidden=8, layers=2, k=3, dropout=0.5)
    model = build_model(cfg, FEAT, C, PrecisionConfig.uniform(bits))
    assert isinstance(model, QDecoupled if name == "decoupled" else QConvStack)
    model.train()
    out = model(x, data)  # a Data object or GraphOps both work
    assert out.shape == (N, C)
    assert torch.isfinite(out).all()
    qs = model.quantizers()
    assert len(qs) > 0
    for path, q in qs:
        assert isinstance(q, Quantizer)
        assert q.spec.bits == bits
        assert bool(q.initialized) == (bits != 32), path
    model.eval()
    with torch.no_grad():
        out_e = model(x, graph_ops(data))
    assert out_e.shape == (N, C) and torch.isfinite(out_e).all()

    allp = list(model.parameters())
    qp, wp = model.quant_parameters(), model.weight_parameters()
    assert len(qp) + len(wp) == len(allp)
    assert {id(p) for p in qp} | {id(p) for p in wp} == {id(p) for p in allp}
    assert not ({id(p) for p in qp} & {id(p) for p in wp})
    names = {id(p): n.rsplit(".", 1)[-1] for n, p in model.named_parameters()}
    assert all(names[id(p)] in QUANT_PARAM_NAMES for p in qp)
    assert not any(names[id(p)] in QUANT_PARAM_NAMES for p in wp)
    if bits == 32:
        assert qp == []
    else:
        assert len(qp) > 0  # LSQ steps of the weight/activation quantizers
    # weights are the only thing trained by weight_parameters: every nn.Linear weight is there
    lin_weights = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Linear)}
    assert lin_weights <= {id(p) for p in wp}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_quantizer_calibrated_and_used(name: str) -> None:
    """After one forward every quantizer is calibrated; their gradients reach the
    learnable quantizer parameters."""
    torch.manual_seed(1)
    x, ei = small_graph(1)
    g = GraphOps.from_edge_index(ei, N)
    model = build_model(ModelConfig(name=name, hidden=8, k=2, dropout=0.0), FEAT, C,
                        PrecisionConfig.uniform(4))
    model.eval()
    with torch.no_grad():
        model(x, g)
    model.train()
    F.cross_entropy(model(x, g), torch.arange(N) % C).backward()
    for p in model.quant_parameters():
        assert p.grad is not None
    for p in model.weight_parameters():
        assert p.grad is not None


def test_layer_indices_follow_precision_config() -> None:
    prec = PrecisionConfig.from_dict(
        {"bits": 4, "layers": {"1": {"bits": 8}, "2": {"roles": {"update": 32}}, "3": 6}})
    gcn = build_model(ModelConfig(name="gcn", layers=3, hidden=4), FEAT, C, prec)
    assert gcn.convs[0].q.input.spec.bits == 4
    assert gcn.convs[1].q.input.spec.bits == 8
    assert gcn.convs[2].q.update.spec.bits == 32
    assert gcn.convs[2].q.output.spec.bits == 4
    # decoupled: MLP layers 0..L-1, propagation steps L..L+K-1
    dec = build_model(ModelConfig(name="decoupled", layers=2, k=3, hidden=4), FEAT, C, prec)
    assert [lin.q.input.spec.bits for lin in dec.mlp] == [4, 8]
    assert [p.q.update.spec.bits for p in dec.props] == [32, 6, 4]
    assert [p.q.message.spec.bits for p in dec.props] == [4, 6, 4]
    sage = build_model(ModelConfig(name="sage", layers=2, hidden=4), FEAT, C, prec)
    assert sage.convs[1].q_root_weight.spec.bits == 8


def test_layer_dimensions() -> None:
    m = build_model(ModelConfig(name="gcn", layers=3, hidden=5), FEAT, C, PrecisionConfig())
    assert [(c.lin.in_features, c.lin.out_features) for c in m.convs] == [(7, 5), (5, 5), (5, 3)]
    assert [c.act for c in m.convs] == [F.relu, F.relu, None]
    one = build_model(ModelConfig(name="sage", layers=1, hidden=5), FEAT, C, PrecisionConfig())
    assert len(one.convs) == 1 and one.convs[0].lin_l.out_features == C
    d = build_model(ModelConfig(name="decoupled", layers=1, k=0), FEAT, C, PrecisionConfig())
    assert len(d.props) == 0 and d.mlp[0].lin.out_features == C


def test_fp32_gcn_stack_equals_pyg() -> None:
    torch.manual_seed(2)
    x, ei = small_graph(2)
    model = build_model(ModelConfig(name="gcn", layers=2, hidden=6, dropout=0.0), FEAT, C,
                        PrecisionConfig.uniform(32))
    with torch.no_grad():
        for c in model.convs:
            c.bias.normal_()
    refs = [GCNConv(FEAT, 6), GCNConv(6, C)]
    for r, c in zip(refs, model.convs, strict=True):
        r.lin.weight.data.copy_(c.lin.weight.data)
        r.bias.data.copy_(c.bias.data)
    eic = coalesce(ei, num_nodes=N)
    exp = refs[1](F.relu(refs[0](x, eic)), eic)
    model.eval()
    torch.testing.assert_close(model(x, GraphOps.from_edge_index(ei, N)), exp,
                               rtol=1e-5, atol=1e-5)


def test_fp32_decoupled_equals_mlp_then_appnp() -> None:
    torch.manual_seed(3)
    x, ei = small_graph(3)
    model = build_model(ModelConfig(name="decoupled", layers=2, hidden=6, k=4, alpha=0.15,
                                    dropout=0.0), FEAT, C, PrecisionConfig.uniform(32))
    model.eval()
    l0, l1 = model.mlp[0].lin, model.mlp[1].lin
    h = F.relu(x @ l0.weight.t() + l0.bias) @ l1.weight.t() + l1.bias
    exp = APPNP(K=4, alpha=0.15)(h, coalesce(ei, num_nodes=N))
    torch.testing.assert_close(model(x, GraphOps.from_edge_index(ei, N)), exp,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [{"name": "gat"}, {"hidden": 0}, {"layers": 0}, {"k": -1}, {"dropout": 1.0},
     {"dropout": -0.1}, {"alpha": 1.5}],
)
def test_model_config_validation(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        ModelConfig(**kwargs)


# ----------------------------------------------------------------------- Degree-Quant


def test_protect_mask_only_in_training() -> None:
    x, ei = small_graph(4)
    g = GraphOps.from_edge_index(ei, N)
    m = build_model(ModelConfig(name="gcn", hidden=4), FEAT, C, PrecisionConfig.uniform(4),
                    DegreeQuantConfig(1.0, 1.0))
    m.train()
    mask = m.protect_mask(g)
    assert mask is not None and mask.dtype == torch.bool and mask.all()
    m.eval()
    assert m.protect_mask(g) is None
    m0 = build_model(ModelConfig(name="gcn", hidden=4), FEAT, C, PrecisionConfig.uniform(4))
    m0.train()
    assert m0.protect_mask(g) is None
    mz = build_model(ModelConfig(name="gcn", hidden=4), FEAT, C, PrecisionConfig.uniform(4),
                     DegreeQuantConfig(0.0, 0.0))
    mz.train()
    assert not mz.protect_mask(g).any()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_all_nodes_protected_leaves_only_weights_quantized(name: str) -> None:
    """With p_min = p_max = 1 every activation passes through in training; the output equals a
    model whose only quantized role is the weight."""
    torch.manual_seed(5)
    x, ei = small_graph(5)
    g = GraphOps.from_edge_index(ei, N)
    cfg = ModelConfig(name=name, hidden=6, k=2, dropout=0.0)
    torch.manual_seed(7)
    a = build_model(cfg, FEAT, C, PrecisionConfig.uniform(4), DegreeQuantConfig(1.0, 1.0))
    torch.manual_seed(7)
    b = build_model(cfg, FEAT, C, PrecisionConfig.from_dict({"bits": 32, "roles": {"weight": 4}}))
    for m in (a, b):
        m.eval()
        with torch.no_grad():
            m(x, g)
        m.train()
    ya, yb = a(x, g), b(x, g)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    a.eval()
    with torch.no_grad():
        assert not torch.equal(a(x, g), yb.detach())  # in eval every role is quantized


# ------------------------------------------------------------------------ determinism


@pytest.fixture(scope="module")
def csbm():
    from qgnn.model.datasets import load_dataset

    return load_dataset("csbm:n=300,features=16,classes=3,degree=5", seed=0)


@pytest.mark.parametrize("name", ["gcn", "decoupled"])
def test_train_one_is_deterministic(csbm, name: str) -> None:
    mcfg = ModelConfig(name=name, hidden=16, layers=2, k=3, dropout=0.5)
    prec = PrecisionConfig.uniform(4)
    tcfg = TrainConfig(epochs=5, degree_quant=DegreeQuantConfig(0.0, 0.2))
    r1 = train_one(csbm, mcfg, prec, tcfg, seed=3, keep_model=True)
    r2 = train_one(csbm, mcfg, prec, tcfg, seed=3, keep_model=True)
    assert (r1.test_acc, r1.val_acc, r1.train_acc, r1.best_epoch) == (
        r2.test_acc, r2.val_acc, r2.train_acc, r2.best_epoch)
    assert 0.0 <= r1.test_acc <= 1.0 and 0 <= r1.best_epoch < 5
    s1, s2 = r1.model.state_dict(), r2.model.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k], s2[k]), k
    assert not r1.model.training
    # the seed matters: another seed gives other weights
    r3 = train_one(csbm, mcfg, prec, tcfg, seed=4, keep_model=True)
    s3 = r3.model.state_dict()
    assert any(not torch.equal(s1[k], s3[k]) for k in s1 if s1[k].is_floating_point())
    # the kept model reproduces the reported test accuracy
    with torch.no_grad():
        out = r1.model(csbm.x, csbm)
    acc = float((out[csbm.test_mask].argmax(-1) == csbm.y[csbm.test_mask]).float().mean())
    assert acc == pytest.approx(r1.test_acc)
