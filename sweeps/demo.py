"""The ``qgnn demo`` job: accuracy of a 2-layer GCN on Cora across bit widths.

Until the hardware model and simulator land, the demo is the training part only: quantization-
aware training of the default 2-layer GCN at FP32, INT8, INT4 and INT2 over a few seeds, summarised
as a Markdown table (``accuracy.md``) and a JSON file (``summary.json``).
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from model.datasets import load_dataset, resolve_root
from model.nn import ModelConfig
from model.quant import PrecisionConfig
from model.train import TrainConfig, TrainSummary, train_seeds

from .atomic import write_json_atomic, write_text_atomic

__all__ = ["DEMO_BITS", "DEMO_DATASET", "DemoResult", "format_table", "run_demo"]

DEMO_DATASET = "cora"
DEMO_MODEL = "gcn"
#: Bit widths of the demo, widest first (32 = FP32).
DEMO_BITS: tuple[int, ...] = (32, 8, 4, 2)


@dataclass
class DemoResult:
    """Outcome of :func:`run_demo`."""

    summaries: list[dict[str, Any]]
    summary_path: Path
    markdown_path: Path
    table: str
    total_time_s: float


def _bits_label(bits: str) -> str:
    return bits.upper() if bits.startswith(("int", "fp")) else bits


def format_table(summaries: Sequence[dict[str, Any]]) -> str:
    """Markdown table of :meth:`TrainSummary.to_dict` results (accuracies in percent)."""
    lines = [
        "| bits | test acc (%) mean ± std | val acc (%) mean ± std | seeds | train time / seed (s) |",
        "|:-----|------------------------:|-----------------------:|------:|----------------------:|",
    ]
    for s in summaries:
        lines.append(
            f"| {_bits_label(str(s['bits']))} "
            f"| {s['test_acc_mean']:.1f} ± {s['test_acc_std']:.1f} "
            f"| {s['val_acc_mean']:.1f} ± {s['val_acc_std']:.1f} "
            f"| {len(s['seeds'])} "
            f"| {s['train_time_s_mean']:.2f} |"
        )
    return "\n".join(lines)


def _markdown_report(summaries: Sequence[dict[str, Any]], meta: dict[str, Any]) -> str:
    first = summaries[0]
    mc, tc = first["model_config"], first["train_config"]
    seeds = first["seeds"]
    seed_text = f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return "\n".join([
        "# qgnn demo: quantization-aware training accuracy",
        "",
        f"Dataset **{meta['dataset']}** (public split), model **{mc['name'].upper()}** "
        f"({mc['layers']} layers, hidden {mc['hidden']}, dropout {mc['dropout']}), "
        f"{tc['epochs']} epochs, Adam lr {tc['lr']}, weight decay {tc['weight_decay']}; "
        f"seeds {seed_text}. Every role (input, weight, message, aggregate, update, output) "
        "of every layer is quantized to the listed bit width; FP32 runs the same code path "
        "with quantizers disabled. Accuracy is the test accuracy at the epoch of best "
        "validation accuracy; ± is the sample standard deviation over seeds.",
        "",
        format_table(summaries),
        "",
        f"Generated {meta['created']} by qgnn {meta['qgnn_version']} "
        f"(`{meta['command']}`), torch {meta['torch_version']}, "
        f"{meta['torch_threads']} thread(s), total {meta['total_time_s']:.1f} s.",
        "",
    ])


def run_demo(
    out_dir: str | os.PathLike[str],
    data_root: str | os.PathLike[str] | None = None,
    seeds: int = 3,
    epochs: int | None = None,
    progress: bool = True,
    meta: dict[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> DemoResult:
    """Train the demo grid and write ``summary.json`` and ``accuracy.md`` into ``out_dir``.

    Args:
        out_dir: report directory (created).
        data_root: dataset root (``None``: ``$QGNN_DATA_ROOT`` or the default cache root).
        seeds: seeds per bit width (seeds ``0..seeds-1``).
        epochs: training epochs; ``None`` uses the :class:`TrainConfig` default.
        progress: show a progress bar per bit width (stderr).
        meta: extra top-level entries for ``summary.json`` (version, command, ...).
        log: called with one line after each bit width finishes.

    Raises:
        DatasetError: Cora cannot be loaded; ``ValueError`` for bad settings.
    """
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    out = Path(out_dir)
    model_cfg = ModelConfig(name=DEMO_MODEL)
    train_cfg = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    t0 = time.perf_counter()
    data = load_dataset(DEMO_DATASET, root=data_root)
    seed_list = list(range(seeds))
    summaries: list[dict[str, Any]] = []
    for bits in DEMO_BITS:
        summary: TrainSummary = train_seeds(
            data, DEMO_DATASET, model_cfg, PrecisionConfig.uniform(bits), train_cfg, seed_list,
            progress=progress,
        )
        d = summary.to_dict()
        summaries.append(d)
        if log is not None:
            log(f"  {_bits_label(d['bits']):>5}: test {d['test_acc_mean']:.1f} ± "
                f"{d['test_acc_std']:.1f}  ({d['train_time_s_mean']:.1f} s/seed)")
    total = time.perf_counter() - t0
    info: dict[str, Any] = {
        **(meta or {}),
        "dataset": DEMO_DATASET,
        "data_root": str(resolve_root(data_root)),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python_version": platform.python_version(),
        "total_time_s": total,
    }
    info.setdefault("qgnn_version", "unknown")
    info.setdefault("command", "qgnn demo")
    table = format_table(summaries)
    summary_path = write_json_atomic(out / "summary.json", {**info, "runs": summaries})
    markdown_path = write_text_atomic(out / "accuracy.md", _markdown_report(summaries, info))
    return DemoResult(summaries, summary_path, markdown_path, table, total)
