"""``qgnn export``: train a quantized model, convert it to integers and write golden vectors."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .cli import (
    _data_root,
    _model_config,
    _non_negative_int,
    _positive_int,
    _precision,
    _set_threads,
    _train_config,
    add_model_arguments,
    qgnn_version,
)


def register(sub: Any) -> None:
    """Add ``export`` to the ``qgnn`` subcommands."""
    p = sub.add_parser(
        "export",
        help="train, convert to integers, and write golden test vectors",
        description="Train a quantized model (one seed), convert it to the integer-only model, "
                    "check it against the fake-quant model, and write its aggregation stages "
                    "as golden test vectors (manifest.json + .npz; see docs/golden-vectors.md).",
        allow_abbrev=False,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_model_arguments(p)
    p.add_argument("--seed", type=_non_negative_int, default=0, help="training seed (default: 0)")
    p.add_argument("--layer", type=_non_negative_int, default=None,
                   help="export only this aggregation stage (0-based; default: all)")
    p.add_argument("--features", type=_positive_int, default=None,
                   help="keep only the first N feature columns of each stage (small cases)")
    p.add_argument("--word-width", type=_positive_int, default=64,
                   help="memory word width in bits (default: %(default)s)")
    p.add_argument("--mult-bits", type=_positive_int, default=16,
                   help="per-node requantization multiplier width (default: %(default)s)")
    p.add_argument("--trace", action="store_true",
                   help="print, tensor by tensor, the largest integer vs fake-quant difference "
                        "in quantization steps")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from qgnn.model.datasets import load_dataset
    from qgnn.model.golden.packing import check_layout
    from qgnn.model.integer.compare import agreement, format_trace, trace
    from qgnn.model.integer.export import export_vectors
    from qgnn.model.train import row_normalized, train_one

    precision = _precision(args.bits, args.precision, getattr(args, "truncation", None))
    if precision.label() in ("fp32",):
        raise ValueError("export needs a quantized model: give --bits 2..8 (or --precision)")
    check_layout(8, args.word_width)
    if not (8 <= args.mult_bits <= 32):
        raise ValueError(f"--mult-bits must be in 8..32, got {args.mult_bits}")
    model_cfg = _model_config(args)
    train_cfg = _train_config(args)
    n_stages = model_cfg.k if model_cfg.name == "decoupled" else model_cfg.layers
    if model_cfg.name == "decoupled" and model_cfg.propagation == "smp":
        n_stages *= 2  # each SMP step aggregates twice: Â z and the gap Â Δ
    if args.layer is not None and args.layer >= n_stages:
        raise ValueError(f"--layer {args.layer} out of range: a {model_cfg.name} model with these "
                         f"settings has {n_stages} aggregation stages (0..{n_stages - 1})")
    data = load_dataset(args.dataset, root=_data_root(args), split=args.split)
    _set_threads(args)
    log = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    log(f"training {model_cfg.name} on {data.name} at {precision.label()} (seed {args.seed})")
    res = train_one(data, model_cfg, precision, train_cfg, args.seed, keep_model=True)
    assert res.model is not None
    if train_cfg.row_normalize:
        data = row_normalized(data)
    source = {
        "dataset": str(data.name), "model": model_cfg.to_dict(), "precision": precision.to_dict(),
        "seed": args.seed, "split": args.split, "epochs": train_cfg.epochs,
        "best_epoch": res.best_epoch, "val_acc": res.val_acc, "test_acc": res.test_acc,
        "layer": args.layer, "features": args.features, "qgnn_version": qgnn_version(),
        "command": getattr(args, "command_line", ""),
    }
    path, imodel, stages = export_vectors(
        res.model, data, args.out, source=source, layer=args.layer, features=args.features,
        word_width=args.word_width, mult_bits=args.mult_bits,
    )
    ag = agreement(res.model, imodel, data)
    print(f"integer vs fake-quant: predictions equal on {100 * ag.prediction_agreement:.2f}% of "
          f"{ag.test_nodes} test nodes; test accuracy {100 * ag.integer_test_acc:.2f} vs "
          f"{100 * ag.fake_quant_test_acc:.2f}")
    if args.trace:
        print(format_trace(trace(res.model, imodel, data)))
    st: Any                             # told apart by hasattr below, not by type
    for st in stages:
        if hasattr(st, "bits_in"):  # a mixed-width stage (node buckets)
            widths = (f"mixed {'/'.join(map(str, st.bits_in))}-bit sources -> "
                      f"{'/'.join(map(str, st.out_bits))}-bit outputs, R = {list(st.weight)}, "
                      f"{int(st.row_in_words.sum())} input words")
        else:
            widths = (f"{st.bits}-bit{' BT' if st.truncated else ''}, {st.words_per_row} "
                      "words/row")
        print(f"  {st.name}: {st.num_nodes} rows, {st.num_terms} terms, {st.features} features, "
              f"{widths}, acc {st.acc_width} bits")
    print(f"wrote {len(stages)} stage(s) to {path}")
    return 0
