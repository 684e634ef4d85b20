"""PNG plots of sweep results (matplotlib, Agg backend: no display needed).

Each function takes the tidy rows of :mod:`sweeps.report`, writes one PNG atomically and
returns its path, or ``None`` when the rows hold nothing to plot (e.g. simulation disabled).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from .report import _atomic_via  # noqa: E402

__all__ = ["plot_accuracy_vs_bits", "plot_energy_breakdown", "plot_pareto", "write_plots"]

_BITS_ORDER = ("fp32", "int8", "int7", "int6", "int5", "int4", "int3", "int2", "mixed")
_DPI = 120


def _ok(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(float(v))


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    _atomic_via(path, lambda p: fig.savefig(p, dpi=_DPI, format="png"))
    plt.close(fig)
    return path


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    ordered = sorted(set(labels), key=lambda b: (_BITS_ORDER.index(b) if b in _BITS_ORDER
                                                 else len(_BITS_ORDER), b))
    return {b: cmap(i % 10) for i, b in enumerate(ordered)}


def plot_pareto(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    cost: str = "energy_pj",
    front: str = "pareto_energy",
    xlabel: str = "energy per inference (µJ)",
    scale: float = 1e-6,
) -> Path | None:
    """Accuracy (y) against ``cost`` (x, times ``scale``), one panel per dataset; points
    coloured by bit width; the Pareto front drawn as a step line through the marked points."""
    pts = [r for r in rows if r.get("status") == "ok" and _ok(r.get("test_acc_mean"))
           and _ok(r.get(cost))]
    if not pts:
        return None
    datasets = sorted({str(r["dataset"]) for r in pts})
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets), 4.2), squeeze=False)
    colors = _colors([str(r["bits"]) for r in pts])
    for ax, ds in zip(axes[0], datasets, strict=True):
        sub = [r for r in pts if str(r["dataset"]) == ds]
        for b, c in colors.items():
            xs = [float(r[cost]) * scale for r in sub if r["bits"] == b]
            ys = [float(r["test_acc_mean"]) for r in sub if r["bits"] == b]
            if xs:
                ax.scatter(xs, ys, color=c, label=b.upper(), s=36, alpha=0.85, zorder=3)
        fr = sorted((float(r[cost]) * scale, float(r["test_acc_mean"]))
                    for r in sub if r.get(front))
        if fr:
            ax.step([x for x, _ in fr], [y for _, y in fr], where="post", color="black",
                    lw=1.2, zorder=2, label="Pareto front")
            ax.scatter([x for x, _ in fr], [y for _, y in fr], facecolors="none",
                       edgecolors="black", s=110, lw=1.2, zorder=4)
        xs_all = [float(r[cost]) * scale for r in sub]
        if min(xs_all) > 0 and max(xs_all) / min(xs_all) > 30:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(ds)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_energy_breakdown(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    max_points: int = 30,
    label_columns: Sequence[str] = (),
) -> Path | None:
    """Stacked horizontal bars of the energy parts (``energy.<part>_pj`` columns, in µJ) per
    point; at most ``max_points`` bars (Pareto points first, then by total energy)."""
    parts = sorted({c for r in rows for c in r if c.startswith("energy.") and c.endswith("_pj")})
    pts = [r for r in rows if r.get("status") == "ok"
           and any(_ok(r.get(c)) for c in parts)]
    if not parts or not pts:
        return None
    pts.sort(key=lambda r: (not r.get("pareto_energy"), _energy(r)))
    pts = pts[:max_points]
    pts.sort(key=lambda r: _energy(r), reverse=True)
    labels = []
    for r in pts:
        extra = " ".join(f"{c.split('.')[-1]}={_short(r.get(c))}" for c in label_columns)
        labels.append(f"{str(r['bits']).upper()} {r['config_hash'][:6]}" + (f" {extra}" if extra else ""))
    fig, ax = plt.subplots(figsize=(10, 1.6 + 0.35 * len(pts)))
    cmap = plt.get_cmap("tab20")
    left = [0.0] * len(pts)
    for i, c in enumerate(parts):
        vals = [float(r[c]) * 1e-6 if _ok(r.get(c)) else 0.0 for r in pts]
        ax.barh(range(len(pts)), vals, left=left, color=cmap(i % 20),
                label=c[len("energy."):-len("_pj")])
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_yticks(range(len(pts)), labels, fontsize=8)
    ax.set_xlabel("energy per inference (µJ)")
    ax.set_title("energy breakdown")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    return _save(fig, Path(path))


def _short(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    text = str(v)
    return text if len(text) <= 24 else text[:21] + "..."


def _energy(r: Mapping[str, Any]) -> float:
    v: Any = r.get("energy_pj")
    return float(v) if _ok(v) else math.inf


def plot_accuracy_vs_bits(rows: Sequence[Mapping[str, Any]],
                          path: str | os.PathLike[str]) -> Path | None:
    """Test accuracy (mean ± std over seeds) against the uniform bit width, one line per
    (dataset, model); points sharing a model configuration are drawn once."""
    seen: set[str] = set()
    series: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        b = str(r.get("bits", ""))
        if r.get("status") != "ok" or not _ok(r.get("test_acc_mean")) or b == "mixed":
            continue
        if r.get("model_hash") in seen:
            continue
        seen.add(str(r.get("model_hash")))
        bits = 32 if b == "fp32" else int(b[3:])
        key = f"{r['dataset']} {r['model']}"
        series.setdefault(key, []).append(
            (bits, float(r["test_acc_mean"]), float(r.get("test_acc_std") or 0.0)))
    if not series:
        return None
    all_bits = sorted({b for s in series.values() for b, _, _ in s}, reverse=True)
    xpos = {b: i for i, b in enumerate(all_bits)}
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, s in sorted(series.items()):
        s.sort(key=lambda t: -t[0])
        ax.errorbar([xpos[b] for b, _, _ in s], [m for _, m, _ in s], yerr=[d for _, _, d in s],
                    marker="o", capsize=4, label=key)
    ax.set_xticks(range(len(all_bits)),
                  ["FP32" if b == 32 else f"INT{b}" for b in all_bits])
    ax.set_xlabel("bit width (every tensor role)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def write_plots(rows: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str],
                label_columns: Sequence[str] = ()) -> dict[str, Path | None]:
    """All plots into ``out_dir`` (``pareto_energy.png``, ``pareto_latency.png``,
    ``energy_breakdown.png``, ``accuracy_vs_bits.png``); absent ones map to ``None``."""
    d = Path(out_dir)
    return {
        "pareto_energy": plot_pareto(rows, d / "pareto_energy.png"),
        "pareto_latency": plot_pareto(rows, d / "pareto_latency.png", cost="cycles",
                                      front="pareto_latency", xlabel="latency (cycles)",
                                      scale=1.0),
        "energy_breakdown": plot_energy_breakdown(rows, d / "energy_breakdown.png",
                                                  label_columns=label_columns),
        "accuracy_vs_bits": plot_accuracy_vs_bits(rows, d / "accuracy_vs_bits.png"),
    }
