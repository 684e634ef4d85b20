"""GIN at INT2 on Cora: the library recipe and two remedies for its collapse, side by side.

GIN-0 aggregates an unnormalised sum over up to 169 neighbours (Cora), and at 2 bits four
levels must cover a range that grows with the degree. Variants (seeds 0..S-1, every role at
INT2, the library's training recipe otherwise):

- ``plain``: ``PrecisionConfig.uniform(2)`` (the row of ``benchmarks/accuracy.py``);
- ``dq``: the same with Degree-Quant protective masking (``TrainConfig.degree_quant``);
- ``node``: per-node (row) min/max ranges for the ``aggregate`` role.

    python benchmarks/gin_int2_variants.py [--variants plain,dq,node] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from qgnn.model.datasets import load_dataset  # noqa: E402
from qgnn.model.nn import ModelConfig  # noqa: E402
from qgnn.model.quant import DegreeQuantConfig, PrecisionConfig  # noqa: E402
from qgnn.model.train import TrainConfig, train_seeds  # noqa: E402


def variant(name: str) -> tuple[PrecisionConfig, TrainConfig]:
    """Precision and training configuration of one variant."""
    if name == "plain":
        return PrecisionConfig.uniform(2), TrainConfig()
    if name == "dq":
        return PrecisionConfig.uniform(2), TrainConfig(degree_quant=DegreeQuantConfig())
    if name == "node":
        return PrecisionConfig.from_dict({"bits": 2, "roles": {
            "aggregate": {"granularity": "node", "range": "minmax"}}}), TrainConfig()
    raise SystemExit(f"unknown variant {name!r}; allowed: plain, dq, node")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", default="plain,dq,node")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--data-root", default=os.environ.get("QGNN_DATA_ROOT") or None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("cora", root=a.data_root)
    for name in a.variants.split(","):
        prec, tc = variant(name)
        d = train_seeds(data, "cora", ModelConfig(name="gin"), prec, tc,
                        list(range(a.seeds))).to_dict()
        per_seed = ", ".join(f"{100 * s['test_acc']:.1f}" for s in d["per_seed"])
        print(f"gin int2 {name}: test {d['test_acc_mean']:.2f} ± {d['test_acc_std']:.2f} "
              f"(val {d['val_acc_mean']:.2f}); per seed {per_seed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
