"""Accuracy table: Cora x {gcn, gin, sage, decoupled} x {fp32, int8, int4, int2}.

Every stage quantized (the default PrecisionConfig), 10 seeds per cell, each seed's epoch chosen
on validation accuracy; reports test accuracy mean ± sample std.

    python benchmarks/accuracy.py [--data-root DIR] [--seeds 10] [--jobs 2] [--out DIR]

Cells are cached as JSON under OUT/cells/ (written atomically), so an interrupted run resumes.
Writes OUT/accuracy.md and OUT/accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MODELS = ("gcn", "gin", "sage", "decoupled")
BITS = ("fp32", "int8", "int4", "int2")


def _cell(args: tuple[str, str, str, int, str]) -> dict:
    dataset, model_name, bits, seeds, root = args
    import torch

    torch.set_num_threads(1)
    from model.datasets import load_dataset
    from model.nn import ModelConfig
    from model.quant import PrecisionConfig
    from model.train import TrainConfig, train_seeds

    data = load_dataset(dataset, root=root or None)
    t0 = time.perf_counter()
    summary = train_seeds(
        data, dataset, ModelConfig(name=model_name), PrecisionConfig.uniform(bits),
        TrainConfig(), list(range(seeds)),
    )
    d = summary.to_dict()
    d["wall_time_s"] = time.perf_counter() - t0
    return d


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cora")
    ap.add_argument("--data-root", default=os.environ.get("QGNN_DATA_ROOT", ""))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--bits", default=",".join(BITS))
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    a = ap.parse_args()
    out = Path(a.out)
    (out / "cells").mkdir(parents=True, exist_ok=True)
    models, bits = a.models.split(","), a.bits.split(",")
    todo, results = [], {}
    for m in models:
        for b in bits:
            f = out / "cells" / f"{a.dataset}-{m}-{b}-s{a.seeds}.json"
            if f.exists():
                results[(m, b)] = json.loads(f.read_text())
            else:
                todo.append((a.dataset, m, b, a.seeds, a.data_root))
    print(f"{len(results)} cells cached, {len(todo)} to run with {a.jobs} jobs", flush=True)
    with ProcessPoolExecutor(max_workers=a.jobs) as ex:
        futs = {ex.submit(_cell, t): t for t in todo}
        for i, fut in enumerate(as_completed(futs), 1):
            _, m, b, _, _ = futs[fut]
            d = fut.result()
            results[(m, b)] = d
            f = out / "cells" / f"{a.dataset}-{m}-{b}-s{a.seeds}.json"
            _atomic_write(f, json.dumps(d, indent=1))
            print(f"[{i}/{len(todo)}] {m} {b}: test {d['test_acc_mean']:.2f} ± "
                  f"{d['test_acc_std']:.2f} (val {d['val_acc_mean']:.2f}) "
                  f"in {d['wall_time_s']:.0f} s", flush=True)
    lines = [
        f"| {a.dataset} (test %, mean ± std over {a.seeds} seeds, epoch by val) | "
        + " | ".join(bits) + " |",
        "|---|" + "---|" * len(bits),
    ]
    for m in models:
        cells = [f"{results[(m, b)]['test_acc_mean']:.1f} ± {results[(m, b)]['test_acc_std']:.1f}"
                 for b in bits]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    _atomic_write(out / "accuracy.md", table)
    _atomic_write(out / "accuracy.json", json.dumps(
        [results[(m, b)] for m in models for b in bits], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
