"""Tidy sweep results (one row per point) and the Markdown report.

Columns of ``results.csv`` / ``results.parquet`` (one row per point of the spec, in spec
order):

- identity: ``config_hash`` (the point id; ``points/<config_hash>.json``), ``index``,
  ``status`` (``ok`` or ``error``), ``error`` (one line; empty when ok), ``model_hash`` (the
  accuracy cache key);
- every parameter: ``dataset``, ``split``, ``model``, ``hidden``, ``layers``, ``dropout``, ``k``,
  ``alpha``, ``epochs``, ``lr``, ``weight_decay``, ``degree_quant``, ``row_normalize``,
  ``seeds`` (comma-separated), ``bits`` (label: ``fp32``, ``int4``, ``mixed``), ``precision.*``
  and ``arch.*`` (dotted, as in the spec);
- accuracy (percent, test accuracy at the epoch of best validation accuracy, mean and sample
  std over seeds): ``test_acc_mean``, ``test_acc_std``, ``val_acc_mean``, ``val_acc_std``,
  ``train_wall_time_s`` (seconds of the training run that produced it, wherever it ran),
  ``accuracy_from_cache`` (read from ``cache/accuracy/`` instead of trained in this run);
- simulation (:func:`sweeps.evaluate.simulate`): ``cycles`` (clock cycles, the latency),
  ``time_us``, ``energy_pj`` (pJ), ``fp32_cycles``, ``fp32_energy_pj`` (the same chip with FP32
  arithmetic), ``speedup_vs_fp32``, ``energy_ratio_vs_fp32``, ``memory_ceiling_vs_fp32``
  (ratios, FP32 / quantized), ``roofline_cycles``, ``roofline_pct``, ``dram_bytes_total``
  (bytes), ``area_mm2``, ``fp32_area_mm2`` (mm^2), ``sim_run`` (``quantized`` or
  ``fp32-counterpart``), and flattened tables: ``utilization.<unit>`` (fractions),
  ``dram_bytes.<tensor>`` (bytes) and ``energy.<part>_pj`` (the energy breakdown, pJ);
- Pareto marks: ``pareto_energy`` (accuracy vs energy) and ``pareto_latency`` (accuracy vs
  cycles), per dataset (see :mod:`sweeps.pareto`);
- provenance: ``qgnn_version``, ``git_sha`` (``unknown`` outside a git checkout),
  ``wall_time_s`` (seconds the point's own evaluation took, training excluded), ``run_id``,
  ``finished_at`` (UTC, ISO 8601).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qgnn.core.atomic import write_text_atomic

from .pareto import mark_pareto
from .spec import PARAMS, SweepSpec, flatten

__all__ = [
    "ACCURACY_COLUMNS",
    "SIM_COLUMNS",
    "collect_rows",
    "git_sha",
    "markdown_report",
    "point_row",
    "read_point",
    "results_frame",
    "write_frame_atomic",
]

POINT_FORMAT = "qgnn-sweep-point/1"
ACCURACY_COLUMNS: tuple[str, ...] = (
    "test_acc_mean", "test_acc_std", "val_acc_mean", "val_acc_std", "train_wall_time_s",
)
#: Scalar simulator figures copied into the table.
SIM_COLUMNS: tuple[str, ...] = (
    "cycles", "time_us", "energy_pj", "fp32_cycles", "fp32_energy_pj", "speedup_vs_fp32",
    "energy_ratio_vs_fp32", "memory_ceiling_vs_fp32", "roofline_cycles", "roofline_pct",
    "dram_bytes_total", "area_mm2", "fp32_area_mm2",
)
#: Simulator tables flattened into ``<prefix><key>`` columns.
SIM_TABLES: tuple[tuple[str, str, str], ...] = (
    ("utilization", "utilization.", ""),
    ("dram_bytes", "dram_bytes.", ""),
    ("energy_breakdown", "energy.", "_pj"),
)


# ----------------------------------------------------------------------------- provenance


def git_sha(start: str | os.PathLike[str] | None = None) -> str:
    """Commit of the git checkout holding ``start`` (default: this package), else ``unknown``.

    Reads ``.git`` directly (``HEAD``, loose refs, ``packed-refs``; worktree ``.git`` files);
    no ``git`` executable is needed.
    """
    here = Path(start) if start is not None else Path(__file__).resolve().parent
    for d in [here, *here.parents]:
        dot = d / ".git"
        if dot.is_file():
            text = dot.read_text().strip()
            if not text.startswith("gitdir:"):
                return "unknown"
            gitdir = (d / text.split(":", 1)[1].strip()).resolve()
        elif dot.is_dir():
            gitdir = dot
        else:
            continue
        return _resolve_head(gitdir)
    return "unknown"


def _resolve_head(gitdir: Path) -> str:
    try:
        head = (gitdir / "HEAD").read_text().strip()
    except OSError:
        return "unknown"
    if not head.startswith("ref:"):
        return head if _is_sha(head) else "unknown"
    ref = head.split(":", 1)[1].strip()
    # A linked worktree keeps shared refs in the common directory.
    dirs = [gitdir]
    common = gitdir / "commondir"
    if common.is_file():
        dirs.append((gitdir / common.read_text().strip()).resolve())
    for g in dirs:
        p = g / ref
        if p.is_file():
            sha = p.read_text().strip()
            if _is_sha(sha):
                return sha
        packed = g / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref and _is_sha(parts[0]):
                    return parts[0]
    return "unknown"


def _is_sha(s: str) -> bool:
    return len(s) in (40, 64) and all(c in "0123456789abcdef" for c in s)


# ----------------------------------------------------------------------------- rows


def read_point(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A point file's content, or ``None`` if it is missing, unreadable or not a point file."""
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(d, dict) or d.get("format") != POINT_FORMAT \
            or d.get("status") not in ("ok", "error"):
        return None
    return d


def _num(v: Any) -> float:
    if v is None or isinstance(v, bool):
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def point_row(rec: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """One tidy row from a point record (see the module docstring for the columns)."""
    params = dict(rec["params"])
    row: dict[str, Any] = {
        "config_hash": rec["point_id"],
        "index": rec.get("index") if index is None else index,
        "status": rec["status"],
        "error": rec.get("error") or "",
        "model_hash": rec.get("model_hash", ""),
    }
    for k in PARAMS:
        v = params.get(k)
        row[k] = ",".join(map(str, v)) if k == "seeds" and isinstance(v, list) else v
    row["bits"] = rec.get("bits_label", "")
    for table in ("precision", "arch"):
        for k, v in flatten({table: params.get(table) or {}}).items():
            if not isinstance(v, Mapping):  # an empty table has no column
                row[k] = v
    acc = rec.get("accuracy") or {}
    for k in ACCURACY_COLUMNS:
        row[k] = _num(acc.get(k))
    row["accuracy_from_cache"] = bool(rec.get("accuracy_from_cache", False))
    sim = rec.get("sim") or {}
    for k in SIM_COLUMNS:
        row[k] = _num(sim.get(k))
    if "fp32_area_mm2" not in sim and isinstance(sim.get("fp32"), Mapping):
        row["fp32_area_mm2"] = _num(sim["fp32"].get("area_mm2"))
    for key, prefix, suffix in SIM_TABLES:
        values = sim.get(key)
        if isinstance(values, Mapping):
            for kk, vv in flatten(values).items():
                row[f"{prefix}{kk}{suffix}"] = _num(vv)
    row["sim_run"] = sim.get("sim_run", "")
    row["qgnn_version"] = rec.get("qgnn_version", "unknown")
    row["git_sha"] = rec.get("git_sha", "unknown")
    row["wall_time_s"] = _num(rec.get("wall_time_s"))
    row["run_id"] = rec.get("run_id", "")
    row["finished_at"] = rec.get("finished_at", "")
    return row


def collect_rows(spec: SweepSpec, out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Rows of every finished point of ``spec`` found in ``out/points`` (spec order), with
    the Pareto marks. Unfinished points are left out."""
    points_dir = Path(out) / "points"
    rows = []
    for p in spec.points:
        rec = read_point(points_dir / f"{p.point_id}.json")
        if rec is not None:
            rows.append(point_row(rec, index=p.index))
    add_pareto_columns(rows)
    return rows


def add_pareto_columns(rows: list[dict[str, Any]]) -> None:
    """Set ``pareto_energy`` and ``pareto_latency`` on every row (in place)."""
    for col, cost in (("pareto_energy", "energy_pj"), ("pareto_latency", "cycles")):
        for r, m in zip(rows, mark_pareto(rows, "test_acc_mean", cost, ("dataset",)),
                        strict=True):
            r[col] = m


def results_frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    """A pandas DataFrame of ``rows`` with a stable column order (parameters first)."""
    import pandas as pd

    df = pd.DataFrame(list(rows))
    if df.empty:
        return df
    first = ["config_hash", "index", "status", "error", *PARAMS, "bits"]
    prec = sorted(c for c in df.columns if c.startswith("precision."))
    arch = sorted(c for c in df.columns if c.startswith("arch."))
    acc = [c for c in (*ACCURACY_COLUMNS, "accuracy_from_cache") if c in df.columns]
    sim = [c for c in SIM_COLUMNS if c in df.columns]
    tables = [c for _, prefix, _ in SIM_TABLES for c in df.columns if c.startswith(prefix)]
    energy = ["sim_run", *tables]
    tail = ["pareto_energy", "pareto_latency", "model_hash", "qgnn_version", "git_sha",
            "wall_time_s", "run_id", "finished_at"]
    order = [c for c in [*first, *prec, *arch, *acc, *sim, *energy, *tail] if c in df.columns]
    order += [c for c in df.columns if c not in order]
    df = df[order]
    # Parameter columns can mix types across points (e.g. "fp32" is normalised to 32, but a
    # user-defined arch value may be int in one point, str in another): keep them Parquet-safe.
    for c in df.columns:
        if df[c].dtype == object:
            kinds = {type(v) for v in df[c] if v is not None and v == v}
            if len(kinds) > 1:
                df[c] = df[c].map(lambda v: None if v is None or v != v else str(v))
    return df


def _atomic_via(path: Path, write: Callable[[Path], None]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_frame_atomic(df: Any, csv_path: str | os.PathLike[str],
                       parquet_path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``df`` as CSV and Parquet, each atomically (temporary file, then rename)."""
    c = _atomic_via(Path(csv_path), lambda p: df.to_csv(p, index=False))
    q = _atomic_via(Path(parquet_path), lambda p: df.to_parquet(p, index=False))
    return c, q


# ----------------------------------------------------------------------------- Markdown


def _fmt(v: Any, spec: str = ".3g") -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return format(v, spec)
    return str(v)


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]],
              align: Sequence[str] | None = None) -> str:
    align = align or ["---"] * len(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines)


def varying_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Parameter columns whose value differs between rows (the sweep's axes, in effect)."""
    if not rows:
        return []
    cols = [c for c in rows[0] if c in PARAMS or c.startswith(("precision.", "arch."))]
    for r in rows[1:]:
        cols += [c for c in r if c.startswith(("precision.", "arch.")) and c not in cols]
    out = []
    for c in cols:
        vals = {json.dumps(r.get(c), default=str) for r in rows}
        if len(vals) > 1:
            out.append(c)
    return out


def results_table_md(rows: Sequence[Mapping[str, Any]]) -> str:
    """The Markdown results table: varying parameters, accuracy, simulation, Pareto marks."""
    vary = [c for c in varying_columns(rows) if c not in ("bits",)]
    header = ["hash", "bits", *vary, "test acc %", "cycles", "energy (µJ)", "speedup",
              "energy ratio", "area mm²", "front E", "front T"]
    body = []
    for r in rows:
        if r["status"] != "ok":
            continue
        acc = r["test_acc_mean"]
        acc_s = "–" if math.isnan(acc) else f"{acc:.1f} ± {r['test_acc_std']:.1f}"
        energy = r.get("energy_pj", math.nan)
        body.append([
            str(r["config_hash"])[:8], str(r["bits"]).upper(),
            *[_fmt(r.get(c)) for c in vary],
            acc_s, _fmt(r.get("cycles"), ",.0f"),
            _fmt(energy / 1e6 if isinstance(energy, float) else math.nan, ".4g"),
            _fmt(r.get("speedup_vs_fp32"), ".2f"), _fmt(r.get("energy_ratio_vs_fp32"), ".3f"),
            _fmt(r.get("area_mm2"), ".3g"),
            "★" if r.get("pareto_energy") else "", "★" if r.get("pareto_latency") else "",
        ])
    align = ["---", "---", *["---"] * len(vary), "---:", "---:", "---:", "---:", "---:", "---:",
             ":-:", ":-:"]
    return _md_table(header, body, align)


def markdown_report(
    spec: SweepSpec,
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any],
    plots: Mapping[str, Path | None],
    out: str | os.PathLike[str],
    title: str | None = None,
    intro: str = "",
) -> str:
    """The sweep report as Markdown (plots referenced relative to ``out``)."""
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    lines = [f"# {title or 'qgnn sweep: ' + spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    if intro:
        lines += [intro, ""]
    lines += [
        f"{len(spec)} points: {len(ok)} finished, {len(failed)} failed, "
        f"{len(spec) - len(rows)} not run. Accuracy is the test accuracy (%) at the epoch of "
        "best validation accuracy, mean ± sample std over seeds; cycles are the simulated "
        "latency in clock cycles; energy in µJ; speedup and energy ratio are against the "
        "same architecture running the FP32 model. ★ marks the Pareto front per dataset "
        "(accuracy vs energy: E, accuracy vs cycles: T).",
        "",
        results_table_md(rows),
        "",
    ]
    titles = {
        "pareto_energy": "Accuracy vs energy", "pareto_latency": "Accuracy vs latency",
        "energy_breakdown": "Energy breakdown", "accuracy_vs_bits": "Accuracy vs bits",
    }
    for key, t in titles.items():
        p = plots.get(key)
        if p is not None:
            rel = os.path.relpath(p, out)
            lines += [f"## {t}", "", f"![{t}]({rel})", ""]
    if failed:
        lines += ["## Failed points", "",
                  _md_table(["hash", "index", "error"],
                            [[str(r["config_hash"])[:8], str(r["index"]),
                              str(r["error"])[:300]] for r in failed]), ""]
    lines += [
        "## Provenance", "",
        f"qgnn {meta.get('qgnn_version', 'unknown')}, git {meta.get('git_sha', 'unknown')}, "
        f"generated {meta.get('created', _dt.datetime.now(_dt.UTC).isoformat(timespec='seconds'))}"
        + (f" by `{meta['command']}`" if meta.get("command") else "") + ". "
        "Every parameter of every point is in `results.csv` / `results.parquet`; each point's "
        "full record (per-seed accuracies, the simulator report) is in `points/<hash>.json`.",
        "",
    ]
    return "\n".join(lines)


def write_report(spec: SweepSpec, rows: Sequence[Mapping[str, Any]], meta: Mapping[str, Any],
                 plots: Mapping[str, Path | None], out: str | os.PathLike[str],
                 name: str = "report.md", **kw: Any) -> Path:
    """Write the Markdown report atomically; return its path."""
    return write_text_atomic(Path(out) / name, markdown_report(spec, rows, meta, plots, out, **kw))
