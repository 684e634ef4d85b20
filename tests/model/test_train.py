"""Tests for model.train: optimizer groups, the FP32 teacher and distillation, selection."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from qgnn.model.nn import ModelConfig
from qgnn.model.nn.models import build_model
from qgnn.model.quant import PrecisionConfig
from qgnn.model.quant.quantizer import Quantizer
from qgnn.model.quant.spec import QuantSpec
from qgnn.model.train import (
    QUANT_ADAM_EPS,
    TrainConfig,
    calibrate,
    distillation_loss,
    is_quantized,
    make_optimizer,
    teacher_logits,
    train_one,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def csbm() -> Any:
    from qgnn.model.datasets import load_dataset

    return load_dataset("csbm:n=300,features=16,classes=3,degree=5", seed=0)


MCFG = ModelConfig(name="gcn", hidden=16)


def test_defaults_are_the_documented_recipe() -> None:
    c = TrainConfig()
    assert (c.epochs, c.lr, c.weight_decay, c.quant_lr) == (200, 0.01, 5e-3, 0.03)
    assert (c.distill, c.distill_temperature, c.row_normalize, c.degree_quant) == (
        1.0, 1.0, False, None)
    t = TrainConfig(distill=0.5, degree_quant=None).teacher()
    assert t.distill == 0.0 and t.degree_quant is None and t.lr == c.lr


@pytest.mark.parametrize(
    ("kw", "field"),
    [({"distill": -1.0}, "distill"), ({"distill_temperature": 0.0}, "distill_temperature"),
     ({"epochs": 0}, "epochs"), ({"weight_decay": -1.0}, "weight_decay")],
)
def test_invalid_settings_name_the_field(kw: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_is_quantized() -> None:
    assert not is_quantized(PrecisionConfig.uniform(32))
    assert is_quantized(PrecisionConfig.uniform(4))
    assert is_quantized(PrecisionConfig.from_dict({"bits": 32, "roles": {"weight": 8}}))


def test_optimizer_groups(csbm) -> None:
    model = build_model(MCFG, csbm.num_features, 3, PrecisionConfig.uniform(4))
    calibrate(model, csbm)
    opt = make_optimizer(model, TrainConfig(weight_decay=0.01, quant_lr=0.003))
    w, q = opt.param_groups
    assert w["weight_decay"] == 0.01 and w["lr"] == 0.01
    assert q["weight_decay"] == 0.0 and q["lr"] == 0.003 and q["eps"] == QUANT_ADAM_EPS
    assert {id(p) for p in q["params"]} == {id(p) for p in model.quant_parameters()}
    assert {id(p) for p in w["params"]} == {id(p) for p in model.weight_parameters()}


def test_tiny_lsq_gradients_still_move_the_step() -> None:
    """LSQ's gradient scale on a large tensor of small activations gives gradients far below
    Adam's default eps (1e-8); the quantizer group's eps keeps the first Adam step at about
    lr, as for any gradient magnitude."""
    torch.manual_seed(0)
    q = Quantizer(QuantSpec(bits=4, range="lsq"), name="a")
    x = torch.rand(4000, 50) * 1e-8  # 200k small activations
    q.eval()
    with torch.no_grad():
        q(x)
    q.train()
    up = torch.randn_like(x)
    (q(x) * up).sum().backward()
    assert q.log_step is not None and q.log_step.grad is not None
    assert 0 < float(q.log_step.grad.abs()) < 1e-9  # below Adam's default eps
    before = q.log_step.detach().clone()
    torch.optim.Adam(q.parameters(), lr=0.01, eps=QUANT_ADAM_EPS).step()
    moved = float((q.log_step.detach() - before).abs())
    assert moved == pytest.approx(0.01, rel=1e-3)  # Adam's first step is lr * sign(grad)


def test_distillation_loss_hand_computed() -> None:
    s = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0]])
    t = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    # node 0: p_t = [3/4, 1/4], p_s = [1/4, 3/4]: KL = 3/4 ln 3 + 1/4 ln(1/3) = 1/2 ln 3
    # node 1: identical distributions: KL = 0; batch mean = 1/4 ln 3
    assert float(distillation_loss(s, t, 1.0)) == pytest.approx(0.25 * math.log(3.0), rel=1e-6)
    # T = 2: p_t = [sqrt3, 1]/(sqrt3 + 1), p_s reversed; KL = (sqrt3 - 1)/(sqrt3 + 1) * ln sqrt3
    r3 = math.sqrt(3.0)
    kl = (r3 - 1) / (r3 + 1) * math.log(r3)
    assert float(distillation_loss(s, t, 2.0)) == pytest.approx(4 * kl / 2, rel=1e-6)


def test_teacher_is_the_fp32_model_of_the_same_seed(csbm) -> None:
    tcfg = TrainConfig(epochs=15)
    fp = train_one(csbm, MCFG, PrecisionConfig.uniform(32), tcfg, seed=2, keep_model=True)
    assert fp.teacher_val_acc is None  # FP32 models never distil
    t = teacher_logits(csbm, MCFG, tcfg, seed=2)
    assert (t.val_acc, t.test_acc) == (fp.val_acc, fp.test_acc)
    with torch.no_grad():
        out = fp.model(csbm.x, csbm)
    torch.testing.assert_close(t.logits, out)
    assert teacher_logits(csbm, MCFG, tcfg, seed=2) is t  # cached
    # distillation and masking settings do not change the teacher
    assert teacher_logits(csbm, MCFG, TrainConfig(epochs=15, distill=0.3), seed=2) is t


def test_quantized_training_distils_and_records_the_teacher(csbm) -> None:
    prec = PrecisionConfig.uniform(4)
    on = train_one(csbm, MCFG, prec, TrainConfig(epochs=15), seed=1, keep_model=True)
    off = train_one(csbm, MCFG, prec, TrainConfig(epochs=15, distill=0.0), seed=1,
                    keep_model=True)
    t = teacher_logits(csbm, MCFG, TrainConfig(epochs=15), seed=1)
    assert on.teacher_val_acc == t.val_acc and on.teacher_test_acc == t.test_acc
    assert off.teacher_val_acc is None and "teacher_val_acc" not in off.to_dict()
    assert "teacher_test_acc" in on.to_dict()
    # the distillation term changes training
    assert any(not torch.equal(a, b) for a, b in zip(
        on.model.state_dict().values(), off.model.state_dict().values(), strict=True))


def test_selected_epoch_has_the_best_validation_accuracy(csbm) -> None:
    """Re-run the loop by hand, recording every epoch's validation accuracy: the reported
    epoch has the maximum (first of the ties with the lowest validation loss)."""
    prec = PrecisionConfig.uniform(8)
    cfg = TrainConfig(epochs=12, distill=0.0)
    r = train_one(csbm, MCFG, prec, cfg, seed=0)
    torch.manual_seed(0)
    model = build_model(MCFG, csbm.num_features, 3, prec)
    calibrate(model, csbm)
    opt = make_optimizer(model, cfg)
    hist = []
    for _ in range(cfg.epochs):
        model.train()
        opt.zero_grad()
        F.cross_entropy(model(csbm.x, csbm)[csbm.train_mask], csbm.y[csbm.train_mask]).backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            o = model(csbm.x, csbm)
        va = float((o[csbm.val_mask].argmax(-1) == csbm.y[csbm.val_mask]).float().mean())
        vl = float(F.cross_entropy(o[csbm.val_mask], csbm.y[csbm.val_mask]))
        ta = float((o[csbm.test_mask].argmax(-1) == csbm.y[csbm.test_mask]).float().mean())
        hist.append((va, -vl, ta))
    best = max(range(len(hist)), key=lambda i: (hist[i][0], hist[i][1], -i))
    assert r.best_epoch == best
    assert r.val_acc == pytest.approx(hist[best][0])
    assert r.test_acc == pytest.approx(hist[best][2])


def test_teacher_trained_on_demand_equals_the_fp32_run() -> None:
    from qgnn.model.datasets import load_dataset

    data = load_dataset("csbm:n=300,features=16,classes=3,degree=5", seed=0)  # fresh cache
    tcfg = TrainConfig(epochs=10)
    t = teacher_logits(data, MCFG, tcfg, seed=5)  # trains the teacher
    other = load_dataset("csbm:n=300,features=16,classes=3,degree=5", seed=0)
    fp = train_one(other, MCFG, PrecisionConfig.uniform(32), tcfg, seed=5, keep_model=True)
    with torch.no_grad():
        out = fp.model(other.x, other)
    torch.testing.assert_close(t.logits, out)
    assert (t.val_acc, t.test_acc) == (fp.val_acc, fp.test_acc)
