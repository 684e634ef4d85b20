"""``qgnn sweep``: the design-space sweep subcommand (a :mod:`sweeps.cli` plugin)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["cmd_sweep", "register"]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers: Any) -> None:
    """Add ``qgnn sweep`` to the ``qgnn`` subcommands."""
    p = subparsers.add_parser(
        "sweep",
        help="design-space sweep (bits x model x dataset x architecture) on Dask",
        description="Evaluate every point of a sweep spec (TOML or YAML; see docs/sweeps.md): "
                    "accuracy from quantization-aware training (cached per model "
                    "configuration), cycles, energy, speedup and area from the simulator. Each "
                    "finished point is written to OUT/points/ as it completes; rerunning the "
                    "same command resumes without recomputing finished points. Writes "
                    "OUT/results.csv, OUT/results.parquet (one row per point, Pareto fronts "
                    "marked), PNG plots and OUT/report.md.",
        allow_abbrev=False,
    )
    p.add_argument("spec", metavar="SPEC", help="sweep spec file (.toml, .yaml or .yml)")
    p.add_argument("--out", metavar="DIR", required=True, help="output directory")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on an existing Dask cluster (e.g. tcp://host:8786); default: a "
                        "local cluster with one single-threaded worker process per core")
    p.add_argument("--workers", type=_positive_int, default=None,
                   help="worker processes of the local cluster (default: available cores)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="dataset root for the workers (default: $QGNN_DATA_ROOT, else "
                        "$XDG_CACHE_HOME/qgnn/datasets)")
    p.add_argument("--retry-failed", action="store_true",
                   help="recompute points that failed in an earlier run")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the spec and list its points, compute nothing")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    """Handler of ``qgnn sweep``; returns 0 when every point finished ok, 1 if some failed."""
    import sys
    from pathlib import Path

    from qgnn.core.atomic import check_writable_target

    from .runner import run_sweep
    from .spec import load_spec

    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers sizes the local cluster; it cannot be used with --scheduler")
    spec = load_spec(args.spec)
    if args.dry_run:
        print(f"{args.spec}: {len(spec)} point(s), evaluate "
              f"{', '.join(k for k, v in spec.evaluate.to_dict().items() if v)}")
        for pt in spec.points:
            print(f"  {pt.index:4d}  {pt.point_id}  {pt.describe()}")
        return 0
    out = Path(args.out)
    check_writable_target(out / "results.csv")
    result = run_sweep(
        spec, out, scheduler=args.scheduler, workers=args.workers, data_root=args.data_root,
        progress=not args.quiet, retry_failed=args.retry_failed,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        meta={"command": getattr(args, "command_line", "qgnn sweep")},
    )
    print(f"{result.ok} ok, {result.failed} failed of {result.total} point(s) "
          f"({result.computed} computed now, {result.reused} reused, "
          f"{result.trainings} training run(s)); {result.wall_time_s:.1f} s")
    for key in ("results_csv", "results_parquet", "report"):
        path = result.paths.get(key)
        if path is not None:
            print(f"{key.replace('_', ' ')}: {path}")
    return 0 if result.failed == 0 else 1
