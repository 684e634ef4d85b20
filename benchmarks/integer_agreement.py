"""Agreement between the integer-only model and the fake-quant model it came from, on Cora.

For each model (gcn, gin, sage, decoupled) and width (INT8, INT4, INT2), train with the library
defaults (one seed per run, ``--seeds`` seeds), convert with ``to_integer`` and compare on the
1,000 test nodes: share of equal predictions, and the two test accuracies.

    python benchmarks/integer_agreement.py [--seeds 3] [--out benchmarks/results/integer_agreement.json]

``--suite smp`` does the same for the decoupled model of ``benchmarks/smp.py`` with SMP and
APPNP propagation (K = 10) at INT8, INT4, INT2, INT2-BT and INT2-BT*, with that benchmark's
recipes (default output ``benchmarks/results/integer_agreement_smp.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from qgnn.model.datasets import load_dataset  # noqa: E402
from qgnn.model.integer.compare import agreement  # noqa: E402
from qgnn.model.integer.convert import to_integer  # noqa: E402
from qgnn.model.nn import ModelConfig  # noqa: E402
from qgnn.model.quant import PrecisionConfig  # noqa: E402
from qgnn.model.train import TrainConfig, row_normalized, train_one  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--models", default="gcn,gin,sage,decoupled")
    ap.add_argument("--bits", default="8,4,2")
    ap.add_argument("--data-root", default=os.environ.get("QGNN_DATA_ROOT"))
    ap.add_argument("--suite", choices=("coupled", "smp"), default="coupled")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("cora", root=args.data_root)
    if args.suite == "smp":
        return _smp_suite(data, args.seeds, args.out or str(
            REPO / "benchmarks/results/integer_agreement_smp.json"))
    args.out = args.out or str(REPO / "benchmarks/results/integer_agreement.json")
    cfg = TrainConfig()
    eval_data = row_normalized(data) if cfg.row_normalize else data
    rows = []
    for name in args.models.split(","):
        for bits in map(int, args.bits.split(",")):
            for seed in range(args.seeds):
                r = train_one(data, ModelConfig(name=name), PrecisionConfig.uniform(bits), cfg,
                              seed=seed, keep_model=True)
                ag = agreement(r.model, to_integer(r.model, eval_data), eval_data)
                row = {"model": name, "bits": bits, "seed": seed, **ag.to_dict()}
                rows.append(row)
                print(f"{name:10s} int{bits} seed {seed}: predictions equal "
                      f"{100 * ag.prediction_agreement:6.2f}%  test acc int {100 * ag.integer_test_acc:.1f}"
                      f" / fake {100 * ag.fake_quant_test_acc:.1f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows}, indent=2))
    worst = min(r["prediction_agreement"] for r in rows)
    worst_diff = max(r["acc_diff_points"] for r in rows)
    print(f"worst agreement {100 * worst:.2f}%, largest accuracy difference {worst_diff:.2f} points")
    print(f"wrote {args.out}")
    return 0


def _smp_suite(data: object, seeds: int, out: str) -> int:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import smp  # noqa: PLC0415  (benchmarks/smp.py: the SMP recipes)

    rows = []
    for prec in ("int8", "int4", "int2", "int2-bt", "int2-bt*"):
        r_cfg = smp.RECIPES[prec]
        cfg = TrainConfig(**r_cfg["train"])
        eval_data = row_normalized(data) if cfg.row_normalize else data
        for prop in smp.PROPAGATIONS:
            for seed in range(seeds):
                model_cfg = ModelConfig(name="decoupled", k=10, propagation=prop, **r_cfg["model"])
                r = train_one(data, model_cfg, smp.build_precision(prec, 10), cfg, seed=seed,
                              keep_model=True)
                ag = agreement(r.model, to_integer(r.model, eval_data), eval_data)
                rows.append({"precision": prec, "propagation": prop, "seed": seed,
                             **ag.to_dict()})
                print(f"{prop:6s} {prec:9s} seed {seed}: predictions equal "
                      f"{100 * ag.prediction_agreement:6.2f}%  test acc int "
                      f"{100 * ag.integer_test_acc:.1f} / fake {100 * ag.fake_quant_test_acc:.1f}",
                      flush=True)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps({"rows": rows}, indent=2))
    worst = min(r["prediction_agreement"] for r in rows)
    worst_diff = max(r["acc_diff_points"] for r in rows)
    print(f"worst agreement {100 * worst:.2f}%, largest accuracy difference {worst_diff:.2f} points")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
