"""``qgnn simulate``: the cycle-level simulator from the command line (a sweeps.cli plugin)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["cmd_simulate", "register"]


def register(subparsers: Any) -> None:
    """Add ``simulate`` to the ``qgnn`` subcommands."""
    from qgnn.model.names import MODEL_NAMES

    p = subparsers.add_parser(
        "simulate",
        help="cycle-level simulation of a quantized GNN on an accelerator vs its FP32 twin",
        description="Simulate a model on a graph on an accelerator described by a TOML file "
                    "(default: sim/configs/default.toml) and on its FP32 counterpart; print a "
                    "per-layer table (cycles split into compute, DRAM stall and imbalance) and "
                    "the speedup and energy ratio, and optionally write the full JSON report.",
        allow_abbrev=False,
    )
    p.add_argument("--dataset", required=True,
                   help="dataset name (`qgnn datasets`), e.g. cora or "
                        "rmat:edges=1000000,scale=17")
    p.add_argument("--model", default="gcn", type=str.lower, choices=MODEL_NAMES,
                   help="architecture (default: %(default)s)")
    p.add_argument("--bits", default="4",
                   help="model-wide bit width 2..8 or int2..int8 (default: %(default)s)")
    p.add_argument("--precision", metavar="JSON_OR_FILE", default=None,
                   help="per-layer/per-role precision (JSON or .json/.toml file); overrides --bits "
                        "where it sets bits")
    p.add_argument("--engine", default="auto", choices=("auto", "uniform", "mixed"),
                   help="aggregation engine: auto = the mixed-width engine when the precision "
                        "has node buckets (a [nodes] table), else the uniform one; mixed runs "
                        "a uniform model on the mixed engine (default: %(default)s)")
    p.add_argument("--arch", metavar="FILE", default=None,
                   help="accelerator TOML file or preset name in sim/configs "
                        "(default: sim/configs/default.toml)")
    p.add_argument("--hidden", type=int, default=64, help="hidden width (default: %(default)s)")
    p.add_argument("--layers", type=int, default=2,
                   help="message-passing layers (decoupled: MLP layers; default: %(default)s)")
    p.add_argument("--split", type=int, default=0, help="dataset split (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of synthetic graphs (default: 0)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="dataset root (default: $QGNN_DATA_ROOT, else the cache)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the full report as JSON")
    p.set_defaults(func=cmd_simulate)


def _precision(bits: str, precision: str | None) -> Any:
    from qgnn.model.quant import PrecisionConfig, check_bits

    b = check_bits(bits, "--bits")
    if b == 32:
        raise ValueError("--bits: the simulated chip is quantized (2..8); its FP32 counterpart "
                         "is simulated alongside it")
    if precision is None:
        return PrecisionConfig.uniform(b)
    loaded = PrecisionConfig.load(precision).to_dict()
    return PrecisionConfig.from_dict({"bits": b, **loaded})


def cmd_simulate(args: argparse.Namespace) -> int:
    from qgnn.core.atomic import check_writable_target, write_json_atomic

    from .config import load_arch
    from .simulation import simulate

    if args.hidden < 1 or args.layers < 1:
        raise ValueError(f"--hidden and --layers must be >= 1 (got {args.hidden}, {args.layers})")
    precision = _precision(args.bits, args.precision)
    arch = load_arch(args.arch)
    if args.json is not None:
        check_writable_target(args.json)
    rep = simulate(args.dataset, model=args.model, bits=precision, arch=arch,
                   data_root=args.data_root, hidden=args.hidden, layers=args.layers,
                   split=args.split, seed=args.seed, engine=args.engine)
    print(rep.table(), flush=True)
    if args.json is not None:
        out = {**rep.to_dict(), "command": getattr(args, "command_line", None)}
        path = write_json_atomic(args.json, out)
        print(f"wrote {path}", file=sys.stderr)
    return 0
