"""Degree-aware mixed precision on the simulator: Cora 2-layer GCN and GIN on the default chip.

Rows, per model (hidden 64, untrained: the simulator needs only shapes, widths and the graph):

- FP32: the FP32 counterpart of the chip (uniform engines);
- uniform INT2 / INT4 / INT8 on the uniform aggregation engine (today's chip);
- uniform INT2 / INT4 / INT8 on the mixed-width engine (one bucket, K = 1): the same chip
  as the mixed rows, so "mixed vs uniform" is apples to apples;
- mixed: ``examples/precision/degree-mixed.toml`` (INT2, the nodes above the 0.9 degree
  quantile at INT8) and three more bucket tables: top 20% at INT8, top 10% / 20% at INT4.
  Quantile edges keep ties below, so "top 10%" is at most 10% of the nodes (7.5% on Cora).

Figures: cycles, speedup vs FP32, energy, energy ratio vs FP32, DRAM bytes, avg_feature_bits
(mean stored width of the per-node activations, ``model.quant.node_precision``), the nodes in
the wide bucket, and cycles / energy / bytes relative to uniform INT2 on the same engine.

Writes ``benchmarks/results/sim_mixed.{json,md}``.

Usage::

    python benchmarks/sim_mixed.py [--data-root DIR] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OUT_DIR = REPO / "benchmarks" / "results"
EXAMPLE = REPO / "examples" / "precision" / "degree-mixed.toml"
MODELS = ("gcn", "gin")
#: (label, bucket widths, quantile edge) of the extra bucket tables (INT2 elsewhere).
TABLES = (("top 20% INT8", [2, 8], 0.8), ("top 10% INT4", [2, 4], 0.9),
          ("top 20% INT4", [2, 4], 0.8))


def _row(label: str, engine: str, rep: Any, fp32: dict[str, Any] | None = None) -> dict[str, Any]:
    d = rep.to_dict()
    mx = d.get("mixed")
    wide = None
    if mx and mx["layers"]:
        wide = mx["layers"][0]["buckets"][-1]["nodes"]
    return {
        "label": label, "engine": engine, "bits": d["bits"], "cycles": d["cycles"],
        "speedup_vs_fp32": d["speedup_vs_fp32"], "energy_pj": d["energy_pj"],
        "energy_ratio_vs_fp32": d["energy_ratio_vs_fp32"],
        "dram_bytes": d["dram_bytes_total"], "dram_bytes_by_tensor": d["dram_bytes"],
        "avg_feature_bits": mx["avg_feature_bits"] if mx else None,
        "wide_nodes": wide, "energy_breakdown": d["energy_breakdown"],
        "phases": [{"phase": p["phase"], "tiling": p["tiling"], "cycles": p["cycles"],
                    "exposed": p["exposed_cycles"], "dram_bytes": p["dram_bytes"],
                    "energy_pj": p["energy_pj"],
                    **({"buckets": p["buckets"]} if "buckets" in p else {})}
                   for p in d["layers"]],
        "mixed_layers": mx["layers"] if mx else None,
    }


def run(data_root: str | None) -> dict[str, Any]:
    import torch
    from qgnn.model.datasets import load_dataset
    from qgnn.model.quant import PrecisionConfig
    from qgnn.sim import simulate
    from qgnn.sim.simulation import feature_bits
    from qgnn.sim.workload import _model_from, graph_from_data

    torch.set_num_threads(1)
    data = load_dataset("cora", root=data_root)
    g = graph_from_data(data)
    out: dict[str, Any] = {"dataset": "cora", "num_nodes": g.num_nodes, "models": {}}
    for model in MODELS:
        rows: list[dict[str, Any]] = []
        t0 = time.perf_counter()
        first = simulate(g, model, 2)
        fp32 = {"label": "FP32", "engine": "uniform (FP32 counterpart)", "bits": "fp32",
                "cycles": first.fp32_cycles, "speedup_vs_fp32": 1.0,
                "energy_pj": first.fp32_energy_pj, "energy_ratio_vs_fp32": 1.0,
                "dram_bytes": first.fp32.dram_bytes_total, "avg_feature_bits": 32.0,
                "wide_nodes": None}
        rows.append(fp32)
        for bits in (2, 4, 8):
            rep = first if bits == 2 else simulate(g, model, bits)
            r = _row(f"uniform INT{bits}", "uniform", rep)
            r["avg_feature_bits"] = feature_bits(
                _model_from(model, g.num_features, g.num_classes,
                            PrecisionConfig.uniform(bits), 64, 2), g)
            rows.append(r)
        for bits in (2, 4, 8):
            rows.append(_row(f"uniform INT{bits}", "mixed (K = 1)",
                             simulate(g, model, bits, engine="mixed")))
        example = PrecisionConfig.load(str(EXAMPLE))
        rows.append(_row("degree-mixed.toml (top 10% INT8)", "mixed",
                         simulate(g, model, example)))
        for label, widths, edge in TABLES:
            p = PrecisionConfig.from_dict({"bits": 2, "nodes": {
                "by": "degree_quantile", "bits": widths, "edges": [edge]}})
            rows.append(_row(label, "mixed", simulate(g, model, p)))
        for r in rows:
            r["speedup_vs_fp32"] = fp32["cycles"] / r["cycles"]
            ref = next(x for x in rows if x["label"] == "uniform INT2"
                       and x["engine"] == ("uniform" if r["engine"] == "uniform"
                                           else "mixed (K = 1)")) \
                if r["label"] != "FP32" else None
            if ref is not None:
                r["cycles_vs_int2_same_engine"] = r["cycles"] / ref["cycles"]
                r["energy_vs_int2_same_engine"] = r["energy_pj"] / ref["energy_pj"]
                r["dram_vs_int2_same_engine"] = r["dram_bytes"] / ref["dram_bytes"]
        out["models"][model] = {"rows": rows, "seconds": time.perf_counter() - t0}
    return out


def markdown(res: dict[str, Any]) -> str:
    lines = [f"# Degree-aware mixed precision on the simulator (Cora, {res['num_nodes']} nodes)",
             "", "Generated by `python benchmarks/sim_mixed.py` on "
             f"{res['generated']}; default chip (`sim/configs/default.toml`), 2 layers, "
             "hidden 64. `vs INT2` = relative to uniform INT2 on the same aggregation engine.",
             ""]
    for model, m in res["models"].items():
        lines += [f"## {model.upper()}", "",
                  "| precision | agg. engine | wide nodes | avg_feature_bits | cycles | speedup vs "
                  "FP32 | energy (uJ) | energy ratio vs FP32 | DRAM KiB | cycles vs INT2 | "
                  "energy vs INT2 | DRAM vs INT2 |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in m["rows"]:
            def rel(key: str, r: dict[str, Any] = r) -> str:
                return f"{r[key]:.3f}" if key in r else ""
            wide = "" if r.get("wide_nodes") is None else str(r["wide_nodes"])
            lines.append(
                f"| {r['label']} | {r['engine']} | {wide} | {r['avg_feature_bits']:.3f} | "
                f"{r['cycles']:,} | {r['speedup_vs_fp32']:.2f}x | {r['energy_pj'] / 1e6:.2f} | "
                f"{r['energy_ratio_vs_fp32']:.1f}x | {r['dram_bytes'] / 1024:,.1f} | "
                f"{rel('cycles_vs_int2_same_engine')} | {rel('energy_vs_int2_same_engine')} | "
                f"{rel('dram_vs_int2_same_engine')} |")
        lines += ["", "Per phase (cycles each phase adds after overlap; DRAM KiB):", "",
                  "| precision | agg. engine | " + " | ".join(
                      p["phase"] for p in m["rows"][1]["phases"]) + " |",
                  "|---|---|" + "---|" * len(m["rows"][1]["phases"])]
        for r in m["rows"][1:]:
            lines.append(f"| {r['label']} | {r['engine']} | " + " | ".join(
                f"{p['exposed']:,.0f} ({p['dram_bytes'] / 1024:.1f})" for p in r["phases"])
                + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out-dir", default=str(OUT_DIR))
    args = ap.parse_args(argv)
    res = run(args.data_root)
    res["generated"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sim_mixed.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    (out / "sim_mixed.md").write_text(markdown(res))
    print(markdown(res))
    print(f"wrote {out / 'sim_mixed.json'} and {out / 'sim_mixed.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
