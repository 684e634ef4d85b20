"""The simulator's headline: Cora 2-layer GCN at INT2 and INT4 on the default chip vs FP32.

Writes, under ``benchmarks/results/``:

- ``sim_headline.json``: every figure below (and the full reports);
- ``sim_headline.md``: the tables quoted in ``docs/sim.md``;
- ``sim_energy_breakdown.png``: where the energy goes (FP32, INT4, INT2).

Figures: cycles, speedup and energy ratio against the FP32 counterpart; the memory-bound
ceiling of ``../shared/docs/anchors.md`` recomputed from Cora (aggregation of the raw features
at 256 GB/s with 32-bit indices) and the same ceiling for this workload (compulsory DRAM bytes
of the FP32 run / of the quantized run); per phase, whether it is bound by compute or by
DRAM; the sensitivity of the speedups to the DRAM preset and the array size.

Cora's input X (2708 x 1433, 1.27% non-zeros) is combined as CSR by default
(``[combination] sparse_input = "auto"``); the same figures with the dense product
(``"dense"``, the simulator's earlier model) and with the ``per-row`` weight-port what-if are
reported beside them, with the FP32 chip's layer-0 plan alternatives (cycles, bytes, energy)
and a check of every speedup against this workload's memory-bound ceiling.

Usage::

    python benchmarks/sim_headline.py [--data-root DIR] [--arch FILE] [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

OUT_DIR = REPO / "benchmarks" / "results"
GROUPS = {
    "DRAM": ("dram",),
    "SRAM buffers": ("sram.feature", "sram.index", "sram.accumulator", "sram.weight",
                     "sram.input", "sram.output"),
    "combination (MACs, index merge)": ("combination.mac", "combination.index"),
    "aggregation adds": ("aggregation.add",),
    "requantization": ("requantization",),
}


def anchor_ceiling(n: int, features: int, terms: int, bits: int, gbps: float = 256.0,
                   index_bytes: int = 4) -> dict[str, float]:
    """The anchors' memory-bound ceiling: aggregate ``features``-wide rows once (read every
    row once, write every row once, read every 32-bit index once) at ``gbps``."""
    fp32 = n * features * 4 * 2 + terms * index_bytes
    q = n * features * bits / 8 * 2 + terms * index_bytes
    return {"fp32_floor_us": fp32 / (gbps * 1e9) * 1e6, "quant_floor_us": q / (gbps * 1e9) * 1e6,
            "ceiling": fp32 / q}


def phase_bounds(run: Any) -> list[dict[str, Any]]:
    out = []
    bpc = run.arch.bytes_per_cycle
    for p in run.phases:
        mem = p.dram_bytes / bpc
        busy = p.compute + p.imbalance
        out.append({"phase": p.name, "tiling": p.mode, "cycles": round(p.cycles),
                    "exposed": round(p.exposed), "compute_cycles": round(busy),
                    "dram_cycles": round(mem),
                    "bound": "compute" if busy >= mem else "DRAM"})
    return out


def grouped(breakdown: dict[str, float]) -> dict[str, float]:
    return {g: sum(breakdown.get(k, 0.0) for k in keys) for g, keys in GROUPS.items()}


def plot(path: Path, rows: list[tuple[str, dict[str, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [r[0] for r in rows]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = ["#4c72b0", "#55a868", "#c44e52", "#8172b2", "#ccb974"]
    for ax, share in ((ax1, False), (ax2, True)):
        left = [0.0] * len(rows)
        for (g, color) in zip(GROUPS, colors, strict=True):
            vals = []
            for _, e in rows:
                tot = sum(e.values())
                vals.append(e[g] / tot * 100 if share else e[g] / 1e6)
            ax.barh(labels, vals, left=left, color=color, label=g)
            left = [a + b for a, b in zip(left, vals, strict=True)]
        if not share:
            for i, v in enumerate(left):
                ax.text(v, i, f" {v:.0f} uJ", va="center", fontsize=8)
            ax.set_xlabel("energy (uJ)")
            ax.set_xlim(0, max(left) * 1.18)
        else:
            ax.set_xlabel("share of energy (%)")
            ax.set_xlim(0, 100)
    ax1.invert_yaxis()
    ax2.invert_yaxis()
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8)
    fig.suptitle("Cora 2-layer GCN on the default chip: where the energy goes "
                 "(sim/, Horowitz 45 nm table)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def headline(r: Any, anchor: float) -> dict[str, Any]:
    """The headline figures of one report (``anchor``: the anchors' ceiling for its width)."""
    d = r.to_dict()
    bpc = r.run.arch.bytes_per_cycle
    return {
        "cycles": d["cycles"], "time_us": d["time_us"], "fp32_cycles": d["fp32_cycles"],
        "fp32_time_us": d["fp32_time_us"], "speedup_vs_fp32": d["speedup_vs_fp32"],
        "energy_uj": d["energy_pj"] / 1e6, "fp32_energy_uj": d["fp32_energy_pj"] / 1e6,
        "energy_ratio_vs_fp32": d["energy_ratio_vs_fp32"],
        "workload_memory_ceiling": d["memory_ceiling_vs_fp32"],
        "under_workload_ceiling": d["speedup_vs_fp32"] <= d["memory_ceiling_vs_fp32"],
        "moved_bytes_ratio": d["dram_bytes_ratio_vs_fp32"],
        "anchor_ceiling": anchor,
        "roofline_cycles": d["roofline_cycles"], "roofline_pct": d["roofline_pct"],
        "fp32_roofline_pct": d["fp32"]["roofline_pct"],
        "dram_bytes": d["dram_bytes_total"], "fp32_dram_bytes": d["fp32"]["dram_bytes_total"],
        # share of each run's cycles that its DRAM traffic needs at peak bandwidth
        "dram_time_share": d["dram_bytes_total"] / bpc / d["cycles"],
        "fp32_dram_time_share": d["fp32"]["dram_bytes_total"] / bpc / d["fp32_cycles"],
        "area_mm2": d["area_mm2"], "fp32_area_mm2": d["fp32"]["area_mm2"],
        "phases": phase_bounds(r.run), "fp32_phases": phase_bounds(r.fp32),
        "energy_groups_uj": {k: v / 1e6 for k, v in grouped(d["energy_breakdown"]).items()},
        "fp32_energy_groups_uj": {k: v / 1e6 for k, v in
                                  grouped(d["fp32"]["energy_breakdown"]).items()},
    }


def fp32_layer0_plans(rep: Any, quant: dict[int, Any]) -> list[dict[str, Any]]:
    """Every sparse plan of the FP32 chip's layer-0 combination (forced one at a time): the
    chosen one (fewest cycles) against the others (cycles, DRAM bytes, energy), and the whole
    FP32 run and the INT2/INT4 ratios had the FP32 chip used that plan (layer 0 runs first and
    overlaps nothing, so its cycles and energy add to the rest of the run)."""
    from qgnn.sim.energy import energy_table
    from qgnn.sim.engines import SimulationError, simulate_gemm
    from qgnn.sim.workload import build_phases, fp32_phases, model_layers

    g = rep.graph
    shapes = model_layers("gcn", g.num_features, g.num_classes, rep.precision)
    orders = {int(k): v for k, v in rep.fp32.orders.items()}
    ph = fp32_phases(build_phases(shapes, rep.precision, g.num_nodes, orders, g.input))[0]
    chosen = rep.fp32.phases[0]
    out = []
    for t in ("fit", "m", "k", "row"):
        try:
            r = simulate_gemm(ph, rep.fp32.arch, energy_table(), input_src="dram",
                              output_dst=chosen.info["output"], tiling=t)
        except SimulationError:
            continue
        if r.info.get("input_format") != "csr":
            continue
        run_cycles = rep.fp32.cycles - chosen.exposed + r.cycles
        run_energy = rep.fp32.energy_pj - chosen.energy_pj + r.energy_pj
        row = {"tiling": r.mode, "cycles": round(r.cycles), "dram_bytes": r.dram_bytes,
               "energy_uj": r.energy_pj / 1e6, "chosen": r.mode == chosen.mode,
               "fp32_run_cycles": math.ceil(run_cycles), "fp32_run_energy_uj": run_energy / 1e6}
        for b, q in quant.items():
            row[f"int{b}_speedup"] = math.ceil(run_cycles) / q.cycles
            row[f"int{b}_energy_ratio"] = run_energy / q.energy_pj
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--arch", default=None, help="arch TOML (default: sim/configs/default.toml)")
    ap.add_argument("--out-dir", default=str(OUT_DIR))
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from qgnn.model.datasets import load_dataset
    from qgnn.sim import load_arch, simulate

    arch = load_arch(args.arch)
    data = load_dataset("cora", root=args.data_root)
    variants = {
        "csr": arch,  # the chip as configured (default: sparse_input = auto -> CSR for Cora)
        "dense": arch.with_overrides({"combination.sparse_input": "dense"}),
        "csr-per-row": arch.with_overrides({"combination.sparse_weights": "per-row"}),
    }
    reps_by = {v: {b: simulate(data, "gcn", b, arch=a) for b in (2, 4)}
               for v, a in variants.items()}
    reps = reps_by["csr"]
    g = reps[4].graph
    terms = g.num_terms(True)
    anchors = {b: anchor_ceiling(g.num_nodes, g.num_features, terms, b) for b in (2, 4)}
    heads = {v: {f"int{b}": headline(r, anchors[b]["ceiling"]) for b, r in rs.items()}
             for v, rs in reps_by.items()}
    head = heads["csr"]
    plans = fp32_layer0_plans(reps[4], reps)
    x_format = reps[4].run.phases[0].info.get("input_format")

    sens = []
    for preset in ("hbm2", "lpddr4", "ddr4"):
        for size in (16, 32, 64):
            a = arch.with_overrides({"dram.preset": preset, "combination.rows": size,
                                     "combination.cols": size, "combination.requant_units": size})
            ad = a.with_overrides({"combination.sparse_input": "dense"})
            row: dict[str, Any] = {"dram": preset, "array": f"{size}x{size}"}
            for b in (2, 4):
                rr = simulate(data, "gcn", b, arch=a)
                row[f"int{b}_speedup"] = rr.speedup_vs_fp32
                row[f"int{b}_energy_ratio"] = rr.energy_ratio_vs_fp32
                row[f"int{b}_ceiling"] = rr.memory_ceiling
                row[f"int{b}_moved_ratio"] = rr.fp32.dram_bytes_total / rr.run.dram_bytes_total
                row[f"int{b}_dense_speedup"] = simulate(data, "gcn", b,
                                                        arch=ad).speedup_vs_fp32
                row[f"int{b}_phases"] = phase_bounds(rr.run)
                row["fp32_phases"] = phase_bounds(rr.fp32)
            row["fp32_layer0_tiling"] = row["fp32_phases"][0]["tiling"]
            sens.append(row)

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "sim_energy_breakdown.png"
    plot(png, [("FP32", grouped(reps[4].fp32.energy_breakdown)),
               ("INT4", grouped(reps[4].run.energy_breakdown)),
               ("INT2", grouped(reps[2].run.energy_breakdown))])

    md = []
    md.append(f"Cora 2-layer GCN (hidden 64) on `{arch.name}` "
              f"({arch.dram.preset.upper()} {arch.dram.bandwidth_gbps:g} GB/s) against its FP32 "
              f"counterpart (`python benchmarks/sim_headline.py`); layer 0's input X "
              f"({g.num_nodes} x {g.num_features}, density {g.input.density:.2%}) is combined "
              f"as `{x_format}` on both chips (`sparse_input = "
              f"\"{arch.combination.sparse_input}\"`):\n")
    md.append("| | FP32 | INT4 | INT2 |")
    md.append("|---|---|---|---|")
    h4, h2 = head["int4"], head["int2"]
    md.append(f"| cycles (1 GHz) | {h4['fp32_cycles']:,} | {h4['cycles']:,} | {h2['cycles']:,} |")
    md.append(f"| speedup vs FP32 | 1 | **{h4['speedup_vs_fp32']:.2f}x** | "
              f"**{h2['speedup_vs_fp32']:.2f}x** |")
    md.append(f"| memory-bound ceiling, anchors.md (Cora aggregation, 256 GB/s, 32-bit indices) "
              f"| | {h4['anchor_ceiling']:.1f}x | {h2['anchor_ceiling']:.1f}x |")
    md.append(f"| memory-bound ceiling, this workload (compulsory DRAM bytes FP32 / quantized) | "
              f"| {h4['workload_memory_ceiling']:.2f}x | {h2['workload_memory_ceiling']:.2f}x |")
    md.append(f"| DRAM bytes actually moved, FP32 / quantized | | {h4['moved_bytes_ratio']:.2f}x | "
              f"{h2['moved_bytes_ratio']:.2f}x |")
    md.append("| SMP's claim (anchors.md) | | 4.70x | 5.11x |")
    md.append(f"| energy (uJ) | {h4['fp32_energy_uj']:.0f} | {h4['energy_uj']:.1f} | "
              f"{h2['energy_uj']:.1f} |")
    md.append(f"| energy ratio vs FP32 | 1 | **{h4['energy_ratio_vs_fp32']:.1f}x less** | "
              f"**{h2['energy_ratio_vs_fp32']:.1f}x less** |")
    md.append(f"| DRAM traffic (KiB) | {h4['fp32_dram_bytes'] / 1024:,.0f} | "
              f"{h4['dram_bytes'] / 1024:,.0f} | {h2['dram_bytes'] / 1024:,.0f} |")
    md.append(f"| DRAM time at peak bandwidth / cycles | {h4['fp32_dram_time_share']:.0%} | "
              f"{h4['dram_time_share']:.0%} | {h2['dram_time_share']:.0%} |")
    md.append(f"| simulated / roofline bound | {h4['fp32_roofline_pct']:.0f}% | "
              f"{h4['roofline_pct']:.0f}% | {h2['roofline_pct']:.0f}% |")
    md.append(f"| area (mm^2, 45 nm) | {h4['fp32_area_mm2']:.1f} | {h4['area_mm2']:.1f} | "
              f"{h2['area_mm2']:.1f} |")
    md.append("")
    md.append("Input format (same chip; `dense` = `sparse_input = \"dense\"`, the earlier model; "
              "`csr-per-row` = the what-if with one weight port per array row):\n")
    md.append("| X combined as | FP32 cycles | INT4 speedup | INT4 ceiling | INT4 energy | "
              "INT2 speedup | INT2 ceiling | INT2 energy |")
    md.append("|---|---|---|---|---|---|---|---|")
    for v, hv in heads.items():
        a4, a2 = hv["int4"], hv["int2"]
        md.append(f"| {v} | {a4['fp32_cycles']:,} | {a4['speedup_vs_fp32']:.2f}x | "
                  f"{a4['workload_memory_ceiling']:.2f}x | "
                  f"{a4['energy_ratio_vs_fp32']:.1f}x less | {a2['speedup_vs_fp32']:.2f}x | "
                  f"{a2['workload_memory_ceiling']:.2f}x | {a2['energy_ratio_vs_fp32']:.1f}x less |")
    md.append("")
    md.append("Per phase (cycles; `bound` compares busy compute cycles with DRAM bytes / "
              "bandwidth):\n")
    md.append("| phase | FP32 tiling | FP32 cycles | FP32 bound | INT4 tiling | INT4 cycles | "
              "INT4 bound | INT2 cycles | INT2 bound |")
    md.append("|---|---|---|---|---|---|---|---|---|")
    for pf, p4, p2 in zip(h4["fp32_phases"], h4["phases"], h2["phases"], strict=True):
        md.append(f"| {pf['phase']} | {pf['tiling']} | {pf['exposed']:,} | {pf['bound']} | "
                  f"{p4['tiling']} | {p4['exposed']:,} | {p4['bound']} | {p2['exposed']:,} | "
                  f"{p2['bound']} |")
    md.append("")
    md.append("FP32 chip, layer-0 combination: every sparse plan (its weights, "
              f"{g.num_features} x 64 x 4 B, do not fit the "
              f"{arch.buffers['weight'].size_kib:g} KiB weight buffer); the simulator takes the "
              "fewest cycles:\n")
    md.append("| plan | cycles | DRAM KiB | energy (uJ) | chosen | FP32 run cycles | "
              "FP32 run energy (uJ) | INT4 speedup | INT4 energy ratio | INT2 speedup | "
              "INT2 energy ratio |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for q in plans:
        md.append(f"| {q['tiling']} | {q['cycles']:,} | {q['dram_bytes'] / 1024:,.0f} | "
                  f"{q['energy_uj']:.1f} | {'yes' if q['chosen'] else ''} | "
                  f"{q['fp32_run_cycles']:,} | {q['fp32_run_energy_uj']:.0f} | "
                  f"{q['int4_speedup']:.2f}x | {q['int4_energy_ratio']:.1f}x | "
                  f"{q['int2_speedup']:.2f}x | {q['int2_energy_ratio']:.1f}x |")
    md.append("")
    md.append("Sensitivity (same model; `ceiling` = this workload's memory-bound ceiling; "
              "`dense X` = the speedup with `sparse_input = \"dense\"`):\n")
    md.append("| DRAM | array | INT4 speedup | INT4 ceiling | INT4 moved-bytes ratio | "
              "INT4 energy | INT4 dense X | INT2 speedup | INT2 ceiling | "
              "INT2 moved-bytes ratio | INT2 energy | INT2 dense X | FP32 layer-0 plan | "
              "FP32 / INT2 layer-0 busy cycles |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in sens:
        md.append(f"| {r['dram']} | {r['array']} | {r['int4_speedup']:.2f}x | "
                  f"{r['int4_ceiling']:.2f}x | {r['int4_moved_ratio']:.2f}x | "
                  f"{r['int4_energy_ratio']:.1f}x less | {r['int4_dense_speedup']:.2f}x | "
                  f"{r['int2_speedup']:.2f}x | {r['int2_ceiling']:.2f}x | "
                  f"{r['int2_moved_ratio']:.2f}x | {r['int2_energy_ratio']:.1f}x less | "
                  f"{r['int2_dense_speedup']:.2f}x | {r['fp32_layer0_tiling']} | "
                  f"{r['fp32_phases'][0]['compute_cycles']:,} / "
                  f"{r['int2_phases'][0]['compute_cycles']:,} |")
    md.append("")
    over = [f"{v} INT{b[3:]}" for v, hv in heads.items() for b, h in hv.items()
            if not h["under_workload_ceiling"]]
    md.append("Ceiling check (default chip): "
              + ("every speedup is under this workload's memory-bound ceiling."
                 if not over else
                 f"above this workload's memory-bound ceiling: {', '.join(over)}; the FP32 "
                 f"chip's DRAM traffic needs {h4['fp32_dram_time_share']:.0%} of its cycles at "
                 "peak bandwidth, so it is compute-bound and the ceiling (a bound for a "
                 "memory-bound FP32 chip) does not apply; see docs/sim.md."))
    text = "\n".join(md) + "\n"
    (out_dir / "sim_headline.md").write_text(text)
    result = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/sim_headline.py " + " ".join(argv or sys.argv[1:]),
        "arch": arch.to_dict(), "input_format": x_format,
        "input_density": g.input.density, "input_nnz": g.input.nnz,
        "headline": head, "by_input_format": heads, "anchor_ceiling": anchors,
        "fp32_layer0_plans": plans, "sensitivity": sens,
        "png": str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png),
        "reports": {f"int{b}": r.to_dict() for b, r in reps.items()},
        "dense_reports": {f"int{b}": r.to_dict() for b, r in reps_by["dense"].items()},
    }
    (out_dir / "sim_headline.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    print(f"wrote {out_dir / 'sim_headline.json'}, {out_dir / 'sim_headline.md'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
