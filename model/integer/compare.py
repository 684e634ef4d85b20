"""Compare the integer-only model with the fake-quant model it came from.

:func:`trace` runs both on the same graph and reports, for every quantized tensor in dataflow
order, the largest difference between the two paths in units of that tensor's quantization
step, so a user sees where they first disagree. :func:`agreement` gives the prediction and
accuracy agreement figures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..nn.graph_ops import graph_ops
from ..nn.models import QuantGNN
from ..quant.quantizer import Quantizer
from .convert import IntegerModel, model_input


@dataclass
class TraceRow:
    """One quantized tensor: largest |int - fake| in steps and the fraction of values differing."""

    tensor: str
    shape: tuple[int, ...]
    max_diff_steps: float
    frac_differing: float


@torch.no_grad()
def fake_quant_outputs(model: QuantGNN, data: Any) -> tuple[Tensor, dict[str, Tensor]]:
    """The fake-quant model's logits and the output of every quantizer (by module path)."""
    model.eval()
    captured: dict[str, Tensor] = {}
    handles = []
    for name, mod in model.named_modules():
        if isinstance(mod, Quantizer):
            def hook(_m: Any, _inp: Any, out: Tensor, name: str = name) -> None:
                captured[name] = out.detach().clone()
            handles.append(mod.register_forward_hook(hook))
    try:
        logits = model(model_input(data), graph_ops(data))
    finally:
        for h in handles:
            h.remove()
    return logits, captured


def trace(model: QuantGNN, imodel: IntegerModel, data: Any) -> list[TraceRow]:
    """Per-tensor differences between the integer and fake-quant paths (dataflow order)."""
    _, fake = fake_quant_outputs(model, data)
    imodel.forward(model_input(data))
    rows = []
    for name, (codes, qp) in imodel.trace.items():
        if name not in fake:
            continue
        f = fake[name].to(torch.float64).numpy()
        if f.shape != codes.shape:  # weights are [out, in] in both; activations [N, C]
            continue
        diff = np.abs(qp.dequantize(codes) - f) / qp.step(codes.ndim)
        rows.append(TraceRow(name, tuple(codes.shape), float(diff.max(initial=0.0)),
                             float((diff > 0.5).mean()) if diff.size else 0.0))
    return rows


def format_trace(rows: list[TraceRow]) -> str:
    """A table: tensor, shape, max |Δ| in steps, share of values off by at least one step."""
    lines = [f"{'tensor':<28} {'shape':<14} {'max |int-fake| (steps)':>22} {'values differing':>17}"]
    for r in rows:
        lines.append(f"{r.tensor:<28} {'x'.join(map(str, r.shape)):<14} "
                     f"{r.max_diff_steps:>22.3f} {100 * r.frac_differing:>16.3f}%")
    return "\n".join(lines)


@dataclass
class Agreement:
    """Prediction agreement on the test nodes, and the two test accuracies (in [0, 1])."""

    test_nodes: int
    prediction_agreement: float
    fake_quant_test_acc: float
    integer_test_acc: float

    @property
    def acc_diff_points(self) -> float:
        """|integer - fake-quant| test accuracy, in percentage points."""
        return 100.0 * abs(self.integer_test_acc - self.fake_quant_test_acc)

    def to_dict(self) -> dict[str, float]:
        return {**asdict(self), "acc_diff_points": self.acc_diff_points}


def agreement(model: QuantGNN, imodel: IntegerModel, data: Any) -> Agreement:
    """Compare predictions of both paths on ``data.test_mask``."""
    logits, _ = fake_quant_outputs(model, data)
    fq = logits.argmax(1).numpy()
    ip = imodel.predict(model_input(data))
    mask = data.test_mask.numpy()
    y = data.y.numpy()
    return Agreement(
        test_nodes=int(mask.sum()),
        prediction_agreement=float((fq[mask] == ip[mask]).mean()),
        fake_quant_test_acc=float((fq[mask] == y[mask]).mean()),
        integer_test_acc=float((ip[mask] == y[mask]).mean()),
    )


__all__ = ["Agreement", "TraceRow", "agreement", "fake_quant_outputs", "format_trace", "trace"]
