"""The ``qgnn`` command line.

Subcommands::

    qgnn train     quantization-aware training of one model at one precision over several seeds
    qgnn datasets  list dataset names and the resolved data root
    qgnn demo      the demo job (Cora, 2-layer GCN at FP32/INT8/INT4/INT2)

Errors in the user's input (bad arguments, unknown dataset, missing data files, invalid
precision) end the program with exit status 2 and one line ``qgnn: error: <reason>`` on stderr;
Ctrl-C ends it with status 130. Set ``QGNN_DEBUG=1`` to get the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shlex
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from qgnn.core.errors import CLIError
from qgnn.core.version import qgnn_version

__all__ = ["CLIError", "build_parser", "main"]

PROG = "qgnn"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: Modules that add subcommands: each has ``register(subparsers)``, which calls
#: ``subparsers.add_parser(...)`` and ``set_defaults(func=handler)``; ``handler(args) -> int``.
#: A handler reports user errors by raising CLIError, ValueError or OSError (one line, status 2).
PLUGIN_MODULES: tuple[str, ...] = (
    "qgnn.sweeps.export_cmd",
    "qgnn.hw.cli",
    "qgnn.sim.cli",
    "qgnn.sweeps.sweep_cmd",
)


class _ArgumentParser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (raised as :class:`CLIError`, not printed).

    ``--help`` and ``--version`` still print and exit normally. Subparsers inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        raise CLIError(message)


# ----------------------------------------------------------------------------- arg types


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


# ----------------------------------------------------------------------------- parser


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments that choose a dataset, a model, its precision and training hyper-parameters
    (shared by ``train``, ``export`` and other commands that train)."""
    from qgnn.model.names import MODEL_NAMES

    data_root_help = ("dataset root (default: $QGNN_DATA_ROOT, else "
                      "$XDG_CACHE_HOME/qgnn/datasets); see `qgnn datasets`")
    p.add_argument("--dataset", required=True,
                   help="dataset name (`qgnn datasets` lists them); synthetic families take "
                        "parameters, e.g. csbm:n=2000,homophily=0.9")
    p.add_argument("--model", default="gcn", type=str.lower, choices=MODEL_NAMES,
                   help="architecture (default: %(default)s)")
    p.add_argument("--bits", default=None,
                   help="model-wide bit width: 2..8, 32 / fp32, or int2..int8 "
                        "(default: fp32 unless --precision sets it)")
    p.add_argument("--precision", metavar="JSON_OR_FILE", default=None,
                   help="precision config as a JSON string or a .json/.toml file; its keys "
                        "override --bits (per-role / per-layer overrides)")
    p.add_argument("--truncation", default=None, choices=("bt", "bt_star"),
                   help="INT2 bit truncation (SMP's BT / BT*): 2-bit codes snapped from an 8-bit "
                        "grid; implies --bits 2, learned ranges (QLR) and asymmetric per-tensor "
                        "weights unless --precision says otherwise")
    p.add_argument("--split", type=_non_negative_int, default=0,
                   help="dataset split (geom-gcn and synthetic datasets: 0..9; default: 0)")
    p.add_argument("--data-root", metavar="DIR", default=None, help=data_root_help)
    hp = p.add_argument_group("hyper-parameters (default: library defaults)")
    hp.add_argument("--epochs", type=_positive_int, default=None)
    hp.add_argument("--lr", type=_positive_float, default=None, help="learning rate")
    hp.add_argument("--hidden", type=_positive_int, default=None, help="hidden width")
    hp.add_argument("--layers", type=_positive_int, default=None,
                    help="message-passing layers (decoupled: MLP layers)")
    hp.add_argument("--dropout", type=_float, default=None, help="dropout in [0, 1)")
    hp.add_argument("--k", type=_non_negative_int, default=None,
                    help="propagation steps (decoupled model)")
    hp.add_argument("--alpha", type=_float, default=None,
                    help="teleport probability in [0, 1] (decoupled model)")
    hp.add_argument("--propagation", default=None, choices=("appnp", "smp"),
                    help="decoupled model's step: appnp (default) or smp (smoothness-aware "
                         "message propagation, docs/smp.md)")
    hp.add_argument("--distill", type=_float, default=None, metavar="W",
                    help="weight of distillation from an FP32 teacher of the same seed "
                         "(default 1.0; 0 turns it off)")
    hp.add_argument("--weight-decay", type=_float, default=None, metavar="WD",
                    help="Adam weight decay (default 5e-3)")
    hp.add_argument("--degree-quant", action="store_true",
                    help="Degree-Quant protective masking during training")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default: torch's default); 1 is often faster "
                        "for small graphs on a busy machine")


def build_parser() -> argparse.ArgumentParser:
    """The ``qgnn`` argument parser (all subcommands)."""

    parser = _ArgumentParser(
        prog=PROG,
        description="Co-design simulator for low-bit GNN accelerators.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {qgnn_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    data_root_help = ("dataset root (default: $QGNN_DATA_ROOT, else "
                      "$XDG_CACHE_HOME/qgnn/datasets); see `qgnn datasets`")

    # -- subcommands that live beside the part they drive (export, hw, verify, simulate, sweep)
    for name in PLUGIN_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name).register(sub)

    # -- train
    p = sub.add_parser(
        "train",
        help="quantization-aware training over several seeds",
        description="Train one model at one precision over several seeds and report the test "
                    "accuracy (mean ± sample std over seeds) at the epoch of best validation "
                    "accuracy. Unset hyper-parameters use the library defaults.",
        allow_abbrev=False,
    )
    p.add_argument("--seeds", type=_positive_int, default=10,
                   help="number of seeds (default: %(default)s)")
    p.add_argument("--seed-start", type=_non_negative_int, default=0,
                   help="first seed; seeds are consecutive (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", default=None,
                   help="write the result (summary, per-seed metrics, configs) as JSON")
    add_model_arguments(p)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)

    # -- datasets
    p = sub.add_parser(
        "datasets",
        help="list available datasets and the resolved data root",
        description="List dataset names accepted by --dataset, the resolved data root and "
                    "whether each real dataset's raw files are present there.",
        allow_abbrev=False,
    )
    p.add_argument("--data-root", metavar="DIR", default=None, help=data_root_help)
    p.set_defaults(func=cmd_datasets)

    # -- demo
    from .demo_pipeline import add_demo_arguments

    p = sub.add_parser(
        "demo",
        help="main job: Cora GCN at FP32/INT8/INT4/INT2: train, export, verify RTL, simulate, report",
        description="The main job, end to end on Cora with a 2-layer GCN at FP32, INT8, INT4 and "
                    "INT2: quantization-aware training (a few seeds), golden-vector export, "
                    "bit-exact RTL verification on Icarus (with cycles), cycle-level simulation "
                    "against the FP32 chip, and a report folder (Markdown, PNG plots, CSV, "
                    "Parquet, JSON). Fails loudly if any verification mismatches.",
        allow_abbrev=False,
    )
    add_demo_arguments(p)
    p.set_defaults(func=cmd_demo)
    return parser


# ----------------------------------------------------------------------------- helpers


def _data_root(args: argparse.Namespace) -> str | None:
    """--data-root, else None (load_dataset then uses $QGNN_DATA_ROOT or the default)."""
    return args.data_root


def _precision(bits: str | None, precision: str | None, truncation: str | None = None) -> Any:
    """Merge ``--bits`` (model-wide default) with ``--precision`` (overrides); with
    ``--truncation``, an INT2 BT/BT* precision (``model.quant.bit_truncation.bt_precision``)."""
    from qgnn.model.quant import PrecisionConfig, check_bits

    b = check_bits(bits, "--bits") if bits is not None else None
    if truncation is not None:
        from qgnn.model.quant.bit_truncation import bt_precision

        if b not in (None, 2):
            raise CLIError(f"--truncation {truncation} needs --bits 2 (or no --bits), got {bits}")
        over = PrecisionConfig.load(precision).to_dict() if precision is not None else None
        return bt_precision(truncation, over)
    if precision is None:
        return PrecisionConfig.uniform(32 if b is None else b)
    loaded = PrecisionConfig.load(precision).to_dict()
    merged = loaded if b is None else {"bits": b, **loaded}
    return PrecisionConfig.from_dict(merged)


def _model_config(args: argparse.Namespace) -> Any:
    from qgnn.model.nn import ModelConfig

    given = {k: getattr(args, k)
             for k in ("hidden", "layers", "dropout", "k", "alpha", "propagation")
             if getattr(args, k, None) is not None}
    return ModelConfig(name=args.model, **given)


def _train_config(args: argparse.Namespace) -> Any:
    from qgnn.model.quant import DegreeQuantConfig
    from qgnn.model.train import TrainConfig

    given: dict[str, Any] = {k: getattr(args, k)
                             for k in ("epochs", "lr", "distill", "weight_decay")
                             if getattr(args, k, None) is not None}
    for k in ("distill", "weight_decay"):
        if given.get(k, 0.0) < 0:
            raise CLIError(f"--{k.replace('_', '-')} must be >= 0, got {given[k]}")
    if args.degree_quant:
        given["degree_quant"] = DegreeQuantConfig()
    return TrainConfig(**given)


def _set_threads(args: argparse.Namespace) -> None:
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)


def _fmt_pm(mean: float, std: float) -> str:
    return f"{mean:.1f} ± {std:.1f}"


def result_line(d: dict[str, Any]) -> str:
    """``cora gcn int4: test 81.2 ± 0.6 (val 80.1 ± 0.5) over 10 seeds``."""
    n = len(d["seeds"])
    return (f"{d['dataset']} {d['model']} {d['bits']}: "
            f"test {_fmt_pm(d['test_acc_mean'], d['test_acc_std'])} "
            f"(val {_fmt_pm(d['val_acc_mean'], d['val_acc_std'])}) "
            f"over {n} seed{'s' if n != 1 else ''}")


# ----------------------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    import torch
    from qgnn.model.datasets import load_dataset, resolve_root
    from qgnn.model.train import train_seeds

    from qgnn.core.atomic import check_writable_target, write_json_atomic

    # Validate everything cheap before loading data or training.
    precision = _precision(args.bits, args.precision, args.truncation)
    model_cfg = _model_config(args)
    train_cfg = _train_config(args)
    if args.json is not None:
        check_writable_target(args.json)
    data = load_dataset(args.dataset, root=_data_root(args), split=args.split)
    _set_threads(args)
    seeds = list(range(args.seed_start, args.seed_start + args.seeds))
    summary = train_seeds(data, str(data.name), model_cfg, precision, train_cfg, seeds,
                          progress=not args.quiet)
    d = summary.to_dict()
    line = result_line(d)
    if d.get("avg_feature_bits") is not None:  # mean stored width of node features (bits)
        cut = line.rfind(" over ")
        line = f"{line[:cut]} at {d['avg_feature_bits']:.2f} avg feature bits{line[cut:]}"
    print(line, flush=True)
    if args.json is not None:
        out = {
            **d,
            "split": args.split,
            "data_root": str(resolve_root(_data_root(args))),
            "torch_threads": torch.get_num_threads(),
            "qgnn_version": qgnn_version(),
            "command": args.command_line,
        }
        path = write_json_atomic(args.json, out)
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from qgnn.model.datasets import available_datasets, resolve_root
    from qgnn.model.datasets.real import REAL_DATASETS

    root = resolve_root(_data_root(args))
    if args.data_root is not None:
        source = "--data-root"
    elif os.environ.get("QGNN_DATA_ROOT"):
        source = "$QGNN_DATA_ROOT"
    else:
        source = "default"
    print(f"data root: {root} ({source})")
    names = available_datasets()
    width = max(len(n) for n in names)
    for name in names:
        spec = REAL_DATASETS.get(name)
        if spec is None:
            info = f"synthetic  parameters: {name}:key=value,..."
        else:
            raw = root / spec.raw_subdir
            present = all((raw / f).is_file() for f in spec.raw_files)
            info = "real       " + ("raw files present" if present
                                    else f"raw files missing in {raw}")
        print(f"  {name:<{width}}  {info}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo_pipeline import cmd_demo as run

    return run(args)


# ----------------------------------------------------------------------------- entry point


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    text = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return text or type(exc).__name__


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``qgnn`` command line; return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("QGNN_DEBUG", "").strip() not in ("", "0")
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(args_list)
        except SystemExit as exc:  # --help / --version
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            commands = next(a.choices for a in parser._actions
                            if isinstance(a, argparse._SubParsersAction))
            raise CLIError(f"missing command; choose from {', '.join(commands)} "
                           f"(see `{PROG} --help`)")
        args.command_line = shlex.join([PROG, *args_list])
        return int(args.func(args))
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except (CLIError, ValueError, OSError) as exc:
        # QuantConfigError is a ValueError; DatasetError is handled below.
        if debug:
            raise
        return _fail(_one_line(exc))
    except Exception as exc:
        from qgnn.model.datasets import DatasetError

        if isinstance(exc, DatasetError) and not debug:
            return _fail(_one_line(exc))
        raise


if __name__ == "__main__":
    sys.exit(main())
