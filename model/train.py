"""Quantization-aware training with per-seed model selection on validation accuracy.

The default recipe (what ``qgnn train`` and ``benchmarks/accuracy.py`` run):

* Adam, learning rate 0.01, weight decay 5e-3 on weights and biases (none on quantizer
  parameters), 200 full-batch epochs, raw (not row-normalised) features;
* every quantizer calibrated by one evaluation-mode forward pass before training
  (:func:`calibrate`);
* quantizer parameters (LSQ log-steps and offsets, QLR α) in their own Adam group, learning
  rate 0.03, no weight decay and a tiny ``eps``: Adam is invariant to a constant gradient
  scale except through ``eps``, and LSQ's gradient scale ``1/sqrt(n Qp)`` times small
  activations gives gradients of 1e-9..1e-13, below Adam's default ``eps`` of 1e-8, which
  then froze those step sizes. Learned ranges must grow as fast as the activations do while
  the weights grow: with the weights' rate (0.01, i.e. 1 % per step for a log-step) they
  lagged and clipped (0.03 was chosen on mean validation accuracy over GCN and the decoupled
  model at INT8/INT4/INT2 among 0.01, 0.03 and 0.05);
* quantized models are distilled from an FP32 teacher (:func:`teacher_logits`): the same
  architecture and recipe trained in FP32 from the same seed on the same training labels,
  its epoch chosen on validation accuracy. The student minimises cross-entropy on the
  training labels plus ``distill * T^2 * KL(teacher_T || student_T)`` over all nodes
  (temperature ``T``). No validation or test label is used for training; the teacher of seed
  ``s`` is exactly the FP32 model of seed ``s`` (the FP32 column of the accuracy table).

Each seed's reported epoch is the one with the best validation accuracy (ties: lower
validation loss); test accuracy is only read at that epoch.

Degree-aware mixed precision (a precision ``nodes`` table, :mod:`model.quant.node_precision`)
needs nothing here except for learned widths: their memory penalty is added to the loss, the
widths are clamped after every step, and a kept model has its widths snapped into fixed bucket
tables. Every result reports ``avg_feature_bits`` (mean stored width of the per-node
activations, bits) at its selected epoch.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .nn.features import cached_model_input
from .nn.graph_ops import graph_ops
from .nn.models import ModelConfig, QuantGNN, build_model
from .quant.degree_quant import DegreeQuantConfig
from .quant.precision import PrecisionConfig

#: Adam ``eps`` of the quantizer-parameter group (see the module docstring).
QUANT_ADAM_EPS = 1e-20


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: the documented recipe above).

    Attributes:
        epochs: training epochs (full-batch steps).
        lr: Adam learning rate for weights.
        weight_decay: L2 penalty on weights and biases (never on quantizer parameters).
        quant_lr: learning rate of quantizer parameters (LSQ log-steps and offsets, QLR α);
            ``None`` means ``lr``.
        degree_quant: Degree-Quant protective masking, or ``None``.
        row_normalize: divide each node's features by their sum (Kipf & Welling's
            preprocessing) before training; rows summing to 0 are left unchanged.
        distill: weight of the distillation term for quantized models (0 disables it; FP32
            models never distil).
        distill_temperature: softmax temperature ``T`` of the distillation term.
    """

    epochs: int = 200
    lr: float = 0.01
    weight_decay: float = 5e-3
    quant_lr: float | None = 0.03
    degree_quant: DegreeQuantConfig | None = None
    row_normalize: bool = False
    distill: float = 1.0
    distill_temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.lr <= 0 or (self.quant_lr is not None and self.quant_lr <= 0):
            raise ValueError("learning rates must be > 0")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be >= 0")
        if self.distill < 0:
            raise ValueError(f"distill must be >= 0, got {self.distill}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, got {self.distill_temperature}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return d

    def teacher(self) -> TrainConfig:
        """The teacher's settings: the same recipe without distillation or masking."""
        return replace(self, distill=0.0, degree_quant=None)


@dataclass
class SeedResult:
    """One seed's outcome; accuracies in [0, 1], times in seconds."""

    seed: int
    best_epoch: int
    val_acc: float
    test_acc: float
    train_acc: float
    train_time_s: float
    model: QuantGNN | None = field(default=None, repr=False)
    teacher_val_acc: float | None = None
    teacher_test_acc: float | None = None
    avg_feature_bits: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "seed": self.seed,
            "best_epoch": self.best_epoch,
            "val_acc": self.val_acc,
            "test_acc": self.test_acc,
            "train_acc": self.train_acc,
            "train_time_s": self.train_time_s,
        }
        if self.teacher_val_acc is not None:
            d["teacher_val_acc"] = self.teacher_val_acc
            d["teacher_test_acc"] = self.teacher_test_acc
        if self.avg_feature_bits is not None:
            d["avg_feature_bits"] = self.avg_feature_bits
        return d


def accuracy(logits: Tensor, y: Tensor, mask: Tensor) -> float:
    """Fraction of ``mask`` nodes whose argmax (first index on ties) equals the label."""
    n = int(mask.sum())
    if n == 0:
        return float("nan")
    return float((logits[mask].argmax(dim=-1) == y[mask]).sum()) / n


def row_normalized(data: Any) -> Any:
    """A shallow copy of ``data`` whose non-negative features are divided by their row sums
    (cached on ``data``). Features with negative entries are returned unchanged."""
    cached = data.__dict__.get("_qgnn_row_normalized")
    if cached is not None and cached[0] is data.x:
        return cached[1]
    x = data.x
    out = data
    if x.numel() and bool((x >= 0).all()):
        out = copy.copy(data)
        out.__dict__.pop("_qgnn_model_input", None)
        out.__dict__.pop("_qgnn_row_normalized", None)
        s = x.sum(dim=1, keepdim=True)
        out.x = torch.where(s > 0, x / torch.where(s > 0, s, torch.ones_like(s)), x)
    data.__dict__["_qgnn_row_normalized"] = (x, out)
    return out


def calibrate(model: QuantGNN, data: Any) -> None:
    """Initialise every quantizer from one evaluation-mode forward pass (no dropout)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(cached_model_input(data), data)
    model.train(was_training)


def make_optimizer(model: QuantGNN, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with weight decay on weights only; quantizer parameters in their own group, without
    weight decay and with ``eps`` = :data:`QUANT_ADAM_EPS` (LSQ's gradient scale then does not
    freeze them; see the module docstring)."""
    groups: list[dict[str, Any]] = [
        {"params": model.weight_parameters(), "weight_decay": cfg.weight_decay, "lr": cfg.lr}
    ]
    qp = model.quant_parameters()
    if qp:
        groups.append({"params": qp, "weight_decay": 0.0, "lr": cfg.quant_lr or cfg.lr,
                       "eps": QUANT_ADAM_EPS})
    return torch.optim.Adam(groups, foreach=True)


def is_quantized(precision: PrecisionConfig) -> bool:
    """True when any role of any configured layer is quantized (bits < 32)."""
    return precision.label() != "fp32"


@dataclass(frozen=True)
class TeacherOutput:
    """An FP32 teacher's logits on every node, and its accuracies (in [0, 1])."""

    logits: Tensor
    val_acc: float
    test_acc: float


def _teacher_cache(data: Any) -> dict[Any, TeacherOutput]:
    cache: dict[Any, TeacherOutput] = data.__dict__.setdefault("_qgnn_teachers", {})
    return cache


def teacher_logits(
    data: Any, model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int
) -> TeacherOutput:
    """The FP32 teacher of ``seed``: :func:`train_one` at FP32 with
    :meth:`TrainConfig.teacher` settings and the same seed, its eval-mode logits at its
    validation-selected epoch. Cached on ``data`` per (model, settings, seed); an FP32
    :func:`train_one` run with those settings fills the cache too (it is the same model)."""
    tcfg = train_cfg.teacher()
    key = (model_cfg, tcfg, seed)
    hit = _teacher_cache(data).get(key)
    if hit is None:
        train_one(data, model_cfg, PrecisionConfig.uniform(32), tcfg, seed)
        hit = _teacher_cache(data)[key]
    return hit


def distillation_loss(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, averaged over nodes."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
        reduction="batchmean", log_target=True,
    ) * (t * t)


def train_one(
    data: Any,
    model_cfg: ModelConfig,
    precision: PrecisionConfig,
    train_cfg: TrainConfig,
    seed: int,
    keep_model: bool = False,
    on_epoch: Callable[[int], None] | None = None,
) -> SeedResult:
    """Train one model from ``seed``; return the metrics of the epoch with the best validation
    accuracy (ties broken by lower validation loss). With ``keep_model``, the returned result
    holds the model with that epoch's weights (in eval mode). Quantized models with
    ``train_cfg.distill > 0`` first get their FP32 teacher (:func:`teacher_logits`)."""
    teacher: TeacherOutput | None = None
    quantized = is_quantized(precision)
    if train_cfg.distill > 0 and quantized:
        teacher = teacher_logits(data, model_cfg, train_cfg, seed)
    # an FP32 run with the teacher's settings is that seed's teacher: cache its logits
    teacher_key = None
    if not quantized and train_cfg.degree_quant is None:
        teacher_key = (model_cfg, train_cfg.teacher(), seed)
    cache_on = data
    best_logits: Tensor | None = None
    torch.manual_seed(seed)
    if train_cfg.row_normalize:
        data = row_normalized(data)
    g = graph_ops(data)
    num_classes = int(getattr(data, "num_classes", int(data.y.max()) + 1))
    model = build_model(model_cfg, data.num_features, num_classes, precision, train_cfg.degree_quant)
    calibrate(model, data)
    opt = make_optimizer(model, train_cfg)
    node_buckets = model.has_node_buckets()
    x, y = cached_model_input(data), data.y
    train_mask, val_mask, test_mask = data.train_mask, data.val_mask, data.test_mask
    best: tuple[float, float] = (-1.0, float("inf"))
    best_state: dict[str, Tensor] | None = None
    result = SeedResult(seed, -1, 0.0, 0.0, 0.0, 0.0)
    if teacher is not None:
        result.teacher_val_acc, result.teacher_test_acc = teacher.val_acc, teacher.test_acc
    t0 = time.perf_counter()
    for epoch in range(train_cfg.epochs):
        model.train()
        opt.zero_grad(set_to_none=True)
        out = model(x, g)
        loss = F.cross_entropy(out[train_mask], y[train_mask])
        if teacher is not None:
            loss = loss + train_cfg.distill * distillation_loss(
                out, teacher.logits, train_cfg.distill_temperature)
        penalty = model.memory_penalty() if node_buckets else None
        if penalty is not None:
            loss = loss + penalty
        loss.backward()
        opt.step()
        if node_buckets:
            model.project_node_widths()
        model.eval()
        with torch.no_grad():
            out = model(x, g)
            val_loss = float(F.cross_entropy(out[val_mask], y[val_mask]))
            val_acc = accuracy(out, y, val_mask)
            if val_acc > best[0] or (val_acc == best[0] and val_loss < best[1]):
                best = (val_acc, val_loss)
                result.best_epoch = epoch
                result.val_acc = val_acc
                result.test_acc = accuracy(out, y, test_mask)
                result.train_acc = accuracy(out, y, train_mask)
                if node_buckets or result.avg_feature_bits is None:
                    result.avg_feature_bits = model.avg_feature_bits(g)
                if teacher_key is not None:
                    best_logits = out
                if keep_model:
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if on_epoch is not None:
            on_epoch(epoch)
    result.train_time_s = time.perf_counter() - t0
    if teacher_key is not None and best_logits is not None:
        _teacher_cache(cache_on)[teacher_key] = TeacherOutput(
            best_logits.detach(), result.val_acc, result.test_acc)
    if keep_model:
        assert best_state is not None
        model.load_state_dict(best_state)
        model.snap_node_widths()
        model.eval()
        result.model = model
    return result


@dataclass
class TrainSummary:
    """Mean and sample standard deviation over seeds (accuracies in percent)."""

    dataset: str
    model: str
    bits: str
    seeds: list[int]
    per_seed: list[SeedResult]
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    precision: dict[str, Any]

    @property
    def test_accs(self) -> list[float]:
        return [100.0 * r.test_acc for r in self.per_seed]

    @property
    def val_accs(self) -> list[float]:
        return [100.0 * r.val_acc for r in self.per_seed]

    @property
    def avg_feature_bits(self) -> float | None:
        """Mean over seeds of each seed's ``avg_feature_bits`` (bits)."""
        b = [r.avg_feature_bits for r in self.per_seed if r.avg_feature_bits is not None]
        return statistics.fmean(b) if b else None

    def to_dict(self) -> dict[str, Any]:
        t, v = self.test_accs, self.val_accs
        return {
            "dataset": self.dataset,
            "model": self.model,
            "bits": self.bits,
            "seeds": self.seeds,
            "test_acc_mean": statistics.fmean(t),
            "test_acc_std": statistics.stdev(t) if len(t) > 1 else 0.0,
            "val_acc_mean": statistics.fmean(v),
            "val_acc_std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "train_time_s_mean": statistics.fmean(r.train_time_s for r in self.per_seed),
            "avg_feature_bits": self.avg_feature_bits,
            "per_seed": [r.to_dict() for r in self.per_seed],
            "model_config": self.model_config,
            "train_config": self.train_config,
            "precision": self.precision,
        }


def train_seeds(
    data: Any,
    dataset: str,
    model_cfg: ModelConfig,
    precision: PrecisionConfig,
    train_cfg: TrainConfig,
    seeds: Sequence[int],
    progress: bool = False,
) -> TrainSummary:
    """Train once per seed; optionally show a progress bar over seeds × epochs."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(seeds) * train_cfg.epochs,
            desc=f"{dataset}/{model_cfg.name}/{precision.label()}",
            unit="ep",
            leave=False,
        )
    results = []
    try:
        for s in seeds:
            results.append(
                train_one(data, model_cfg, precision, train_cfg, s,
                          on_epoch=(lambda _e: bar.update(1)) if bar is not None else None)
            )
            if bar is not None:
                bar.set_postfix(test=f"{100 * results[-1].test_acc:.1f}")
    finally:
        if bar is not None:
            bar.close()
    tc = train_cfg.to_dict()
    return TrainSummary(
        dataset=dataset,
        model=model_cfg.name,
        bits=precision.label(),
        seeds=list(seeds),
        per_seed=results,
        model_config=model_cfg.to_dict(),
        train_config=tc,
        precision=precision.to_dict(),
    )
