"""Training speed of quantization-aware training: INT4 vs FP32 (same code path).

Trains a 2-layer GCN on Cora for 200 epochs at FP32 (``bits=32``: quantizers disabled) and at
INT4 (every role quantized), interleaved (fp32, int4, fp32, int4, ...) after one warm-up run of
each, so that drifting machine load affects both modes alike. Reports, per mode, the median and
the spread (min..max) of

- ``train_s``: the epoch loop only (:attr:`model.train.SeedResult.train_time_s`), and
- ``total_s``: the whole :func:`model.train.train_one` call (model build, calibration, loop),
- ``cpu_s``: process CPU time of that call (less sensitive to other load on the machine),

and the INT4/FP32 ratio of the medians (also of the fastest runs and of the CPU times). Torch's default thread count is left unchanged.

Usage::

    python benchmarks/train_speed.py [--data-root DIR] [--repeats 5] [--epochs 200] [--out FILE]

The exit status is 0 whether or not the ratio meets the target (``<= 2.0``); it is non-zero only
when the benchmark cannot run (e.g. Cora is not available).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # allow running without installing the package
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from qgnn.model.datasets import DatasetError, load_dataset, resolve_root  # noqa: E402
from qgnn.model.nn import ModelConfig  # noqa: E402
from qgnn.model.quant import PrecisionConfig  # noqa: E402
from qgnn.model.train import TrainConfig, train_one  # noqa: E402

from qgnn.core.atomic import write_json_atomic  # noqa: E402

MODES: dict[str, int] = {"fp32": 32, "int4": 4}
TARGET_RATIO = 2.0
DEFAULT_OUT = REPO / "benchmarks" / "results" / "train_speed.json"


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def _run(data: Any, mode: str, train_cfg: TrainConfig, seed: int) -> dict[str, float]:
    model_cfg = ModelConfig(name="gcn", layers=2)
    precision = PrecisionConfig.uniform(MODES[mode])
    c0, t0 = time.process_time(), time.perf_counter()
    r = train_one(data, model_cfg, precision, train_cfg, seed)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"seed": seed, "train_s": r.train_time_s, "total_s": total, "cpu_s": cpu,
            "test_acc": 100.0 * r.test_acc}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None,
                    help="dataset root (default: $QGNN_DATA_ROOT, else the cache root)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per mode (default: 5)")
    ap.add_argument("--epochs", type=int, default=200, help="epochs per run (default: 200)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"JSON output (default: {DEFAULT_OUT.relative_to(REPO)})")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (default: leave torch's default unchanged)")
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        ap.error("--repeats and --epochs must be >= 1")
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)

    try:
        t0 = time.perf_counter()
        data = load_dataset("cora", root=args.data_root)
        load_s = time.perf_counter() - t0
    except DatasetError as exc:
        msg = " ".join(str(exc).split())
        print(f"train_speed: error: {msg}", file=sys.stderr)
        return 2

    train_cfg = TrainConfig(epochs=args.epochs)
    load_before = os.getloadavg()
    print(f"Cora GCN-2, {args.epochs} epochs, {args.repeats} interleaved repeats per mode, "
          f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"load average {load_before[0]:.2f}", file=sys.stderr)

    warmup = {mode: _run(data, mode, train_cfg, seed=0) for mode in MODES}
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    for i in range(args.repeats):
        for mode in MODES:
            r = _run(data, mode, train_cfg, seed=i)
            runs[mode].append(r)
            print(f"  repeat {i + 1}/{args.repeats} {mode}: train {r['train_s']:.2f} s, "
                  f"total {r['total_s']:.2f} s, test {r['test_acc']:.1f}%", file=sys.stderr)
    load_after = os.getloadavg()

    summary: dict[str, Any] = {}
    for mode in MODES:
        summary[mode] = {
            "train_s": _stats([r["train_s"] for r in runs[mode]]),
            "total_s": _stats([r["total_s"] for r in runs[mode]]),
            "cpu_s": _stats([r["cpu_s"] for r in runs[mode]]),
            "ms_per_epoch_median": 1000.0 * statistics.median(
                r["train_s"] for r in runs[mode]) / args.epochs,
        }
    ratio_train = summary["int4"]["train_s"]["median"] / summary["fp32"]["train_s"]["median"]
    ratio_total = summary["int4"]["total_s"]["median"] / summary["fp32"]["total_s"]["median"]
    ratio_train_min = summary["int4"]["train_s"]["min"] / summary["fp32"]["train_s"]["min"]
    ratio_cpu = summary["int4"]["cpu_s"]["median"] / summary["fp32"]["cpu_s"]["median"]
    ratio_paired = statistics.median(
        q["train_s"] / p["train_s"] for p, q in zip(runs["fp32"], runs["int4"], strict=True))
    meets = ratio_train <= TARGET_RATIO

    header = (f"{'mode':<6} {'train median':>12} {'train min..max':>16} "
              f"{'total median':>12} {'total min..max':>16} {'ms/epoch':>9}")
    print(header)
    print("-" * len(header))
    for mode in MODES:
        tr, to = summary[mode]["train_s"], summary[mode]["total_s"]
        print(f"{mode:<6} {tr['median']:>11.2f}s {tr['min']:>7.2f}..{tr['max']:<6.2f}s "
              f"{to['median']:>11.2f}s {to['min']:>7.2f}..{to['max']:<6.2f}s "
              f"{summary[mode]['ms_per_epoch_median']:>9.1f}")
    print(f"ratio int4/fp32 (medians): train {ratio_train:.2f}x, total {ratio_total:.2f}x "
          f"-> {'OK' if meets else 'ABOVE TARGET'} (target <= {TARGET_RATIO:.1f}x on the "
          f"epoch loop)")
    print(f"  (fastest runs: {ratio_train_min:.2f}x; median of per-repeat ratios: "
          f"{ratio_paired:.2f}x; median process CPU time: {ratio_cpu:.2f}x)")
    if max(load_before[0], load_after[0]) > 0.8 * (os.cpu_count() or 1):
        print(f"note: machine was busy (load average {load_before[0]:.2f} -> "
              f"{load_after[0]:.2f} on {os.cpu_count()} CPUs); absolute times are inflated",
              file=sys.stderr)

    result = {
        "benchmark": "train_speed",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "dataset": "cora",
        "data_root": str(resolve_root(args.data_root)),
        "model": "gcn",
        "layers": 2,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "order": "interleaved fp32,int4 after one warm-up run each",
        "torch_version": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "load_average_before": list(load_before),
        "load_average_after": list(load_after),
        "dataset_load_s": load_s,
        "warmup": warmup,
        "runs": runs,
        "summary": summary,
        "ratio_train_median": ratio_train,
        "ratio_total_median": ratio_total,
        "ratio_train_min": ratio_train_min,
        "ratio_cpu_median": ratio_cpu,
        "ratio_train_paired_median": ratio_paired,
        "target_ratio": TARGET_RATIO,
        "meets_target": meets,
    }
    path = write_json_atomic(args.out, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
