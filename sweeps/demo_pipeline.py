"""The main job (``qgnn demo``, what ``make demo`` runs): Cora, 2-layer GCN at FP32, INT8, INT4 and
INT2, end to end.

1. **Train** with quantization-aware training over a few seeds (the accuracy of each bit width).
2. **Export golden vectors**: seed 0 of each integer bit width is converted to the integer-only
   model; its aggregation stages are written as a golden vector set (``vectors/int<b>/``).
3. **Verify the RTL** on Icarus Verilog: every output word must equal the golden vectors
   bit for bit, and the RTL's cycles must equal the timing contract and the simulator's
   aggregation model for the same stage (``verify/int<b>.json``; the simulator's log in
   ``verify/int<b>.log``).
4. **Simulate** the default chip (``sim/configs/default.toml``) running each model: cycles,
   energy, speedup and energy ratio against the same chip with FP32 arithmetic, area.
5. **Report** in the output folder: ``report.md`` (tables and plots), ``results.csv`` and
   ``results.parquet`` (one row per bit width, every parameter), ``summary.json``, PNG plots
   (Pareto fronts, energy breakdown, accuracy against bits).

Steps 1 and 4 are a sweep (:mod:`sweeps.runner`, 4 points); steps 2-3 run as three more tasks on
the same Dask cluster, so training, export and Icarus runs share the cores.

Any RTL mismatch, cycle disagreement or failed step raises :class:`DemoFailed` *after* the
report is written (the report says what failed); :func:`cmd_demo` turns it into exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import math
import os
import platform
import shutil
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgnn.core.atomic import write_json_atomic, write_text_atomic

from .spec import SweepPoint, SweepSpec, parse_spec

__all__ = [
    "DEMO_BITS",
    "DEMO_DATASET",
    "HW_BITS",
    "DemoFailed",
    "DemoPipelineResult",
    "add_demo_arguments",
    "cmd_demo",
    "demo_spec",
    "run_demo_pipeline",
    "task_golden",
]

DEMO_DATASET = "cora"
DEMO_MODEL = "gcn"
#: Bit widths of the demo, widest first (32 = FP32).
DEMO_BITS: tuple[int, ...] = (32, 8, 4, 2)
#: Bit widths whose golden vectors are verified on the RTL (the datapath's code widths).
HW_BITS: tuple[int, ...] = (8, 4, 2)
#: Default report folder.
DEFAULT_OUT = os.path.join("reports", "demo")
#: Seed whose trained model is exported and verified.
EXPORT_SEED = 0
#: Files and folders of a previous demo run removed before a fresh one (never anything else).
OWNED = ("points", "cache", "vectors", "verify", "events.jsonl", "spec.json", "results.csv",
         "results.parquet", "report.md", "summary.json", "pareto_energy.png",
         "pareto_latency.png", "energy_breakdown.png", "accuracy_vs_bits.png")


class DemoFailed(RuntimeError):
    """A step of the demo failed (an RTL mismatch, a cycle disagreement, a failed point).

    Attributes:
        failures: one line per failure.
        result: the :class:`DemoPipelineResult` (the report was written).
    """

    def __init__(self, failures: Sequence[str], result: DemoPipelineResult) -> None:
        super().__init__("; ".join(failures))
        self.failures = list(failures)
        self.result = result


@dataclass
class DemoPipelineResult:
    """Outcome of :func:`run_demo_pipeline` (paths are inside ``out``)."""

    out: Path
    report_path: Path
    summary_path: Path
    results_csv: Path | None
    results_parquet: Path | None
    plots: dict[str, Path | None]
    rows: list[dict[str, Any]]
    golden: dict[int, dict[str, Any]]
    failures: list[str]
    total_time_s: float
    table: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures


def _label(bits: int) -> str:
    return "FP32" if bits == 32 else f"INT{bits}"


def demo_spec(seeds: int = 3, epochs: int | None = None) -> SweepSpec:
    """The demo's sweep: Cora, 2-layer GCN (hidden 64), :data:`DEMO_BITS`, ``seeds`` seeds
    (``0..seeds-1``), ``epochs`` (default: the training default), the default chip.
    ``examples/sweeps/demo.toml`` is the same spec as a file (``qgnn sweep`` runs it)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    fixed: dict[str, Any] = {"dataset": DEMO_DATASET, "model": DEMO_MODEL, "seeds": seeds}
    if epochs is not None:
        fixed["epochs"] = epochs
    return parse_spec({
        "name": "demo",
        "description": "Cora, 2-layer GCN at FP32, INT8, INT4 and INT2 on the default chip.",
        "fixed": fixed,
        "grid": {"bits": list(DEMO_BITS)},
    })


# ----------------------------------------------------------------------------- worker task


@contextlib.contextmanager
def _fds_to(path: Path) -> Iterator[None]:
    """Send this process's stdout and stderr (file descriptors 1 and 2, so subprocesses too)
    to ``path`` for the duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with path.open("ab") as fh:
            os.dup2(fh.fileno(), 1)
            os.dup2(fh.fileno(), 2)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        os.close(saved[0])
        os.close(saved[1])


def task_golden(point: Mapping[str, Any], vectors_dir: str, log_path: str,
                data_root: str | None = None, simulator: str = "icarus", pes: int = 4,
                latency: int = 1, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Dask task: train seed :data:`EXPORT_SEED` of ``point``, export its golden vectors to
    ``vectors_dir``, verify them on the RTL (simulator output to ``log_path``) and compute the
    simulator's cycles for each stage. Never raises: errors are returned with their traceback.

    Returns a JSON-able dict: ``status``, ``bits``, ``vectors``, ``seed_test_acc`` (fraction),
    ``agreement`` (integer vs fake-quant), ``stages`` (per stage: rows, terms, features,
    words per row, accumulator bits, ``sim_cycles``), ``verify`` (``VerifyReport.to_dict()``),
    and ``train_s``/``export_s``/``verify_s`` (seconds).
    """
    from qgnn.model.train import row_normalized, train_one

    from .evaluate import (
        configs_of,
        export_golden,
        limit_threads,
        load_data,
        stage_cycles,
        verify_rtl,
    )

    p = point["params"]
    bits = int(p["precision"]["bits"])
    out: dict[str, Any] = {"status": "ok", "bits": bits, "error": None}
    try:
        limit_threads(1)
        data = load_data(p["dataset"], data_root, int(p["split"]))
        model_cfg, train_cfg, precision = configs_of(p)
        t0 = time.perf_counter()
        res = train_one(data, model_cfg, precision, train_cfg, EXPORT_SEED, keep_model=True)
        out["train_s"] = time.perf_counter() - t0
        out.update(seed=EXPORT_SEED, seed_test_acc=res.test_acc, seed_val_acc=res.val_acc,
                   best_epoch=res.best_epoch)
        if train_cfg.row_normalize:
            data = row_normalized(data)
        t0 = time.perf_counter()
        source = {"dataset": str(p["dataset"]), "model": model_cfg.to_dict(),
                  "precision": precision.to_dict(), "seed": EXPORT_SEED,
                  "split": int(p["split"]), "epochs": train_cfg.epochs,
                  "best_epoch": res.best_epoch, "val_acc": res.val_acc,
                  "test_acc": res.test_acc, **dict(meta or {})}
        exp = export_golden(res.model, data, vectors_dir, source)
        out["export_s"] = time.perf_counter() - t0
        out["vectors"] = str(exp["path"])
        out["agreement"] = exp["agreement"]
        out["stages"] = [{
            "name": st.name, "rows": st.num_nodes, "terms": st.num_terms,
            "features": st.features, "bits": st.bits, "words_per_row": st.words_per_row,
            "acc_width": st.acc_width, "sim_cycles": stage_cycles(st, pes=pes, latency=latency),
        } for st in exp["stages"]]
        t0 = time.perf_counter()
        with _fds_to(Path(log_path)):
            out["verify"] = verify_rtl(exp["path"], simulator=simulator, pes=pes,
                                       latency=latency)
        out["verify_s"] = time.perf_counter() - t0
    except Exception as exc:
        out.update(status="error", error=" ".join(f"{type(exc).__name__}: {exc}".split()),
                   traceback=traceback.format_exc())
    return out


def golden_failures(g: Mapping[str, Any]) -> list[str]:
    """What is wrong with one bit width's export and verification (empty when all is well)."""
    name = _label(int(g["bits"]))
    if g.get("status") != "ok":
        return [f"{name}: {g.get('error')}"]
    v = g["verify"]
    fails = []
    if v["mismatches"]:
        fm = v.get("first_mismatch") or {}
        fails.append(f"{name}: RTL output differs from the golden vectors in {v['mismatches']} "
                     f"of {v['outputs_checked']} words (first: stage {fm.get('stage')}, node "
                     f"{fm.get('node')}, word {fm.get('word')}, expected {fm.get('expected')}, "
                     f"got {fm.get('got')})")
    for st, vs in zip(g["stages"], v["stages"], strict=False):
        if vs.get("overflow"):
            fails.append(f"{name}: {st['name']}: accumulator overflow flagged by the RTL")
        if not vs.get("cycles_ok", False):
            fails.append(f"{name}: {st['name']}: RTL took {vs['rtl_cycles']} cycles, the "
                         f"timing contract says {vs['expected_cycles']}")
        if vs["rtl_cycles"] != st["sim_cycles"]:
            fails.append(f"{name}: {st['name']}: RTL took {vs['rtl_cycles']} cycles, the "
                         f"simulator says {st['sim_cycles']}")
    if len(v["stages"]) != len(g["stages"]):
        fails.append(f"{name}: {len(g['stages'])} stages exported but {len(v['stages'])} "
                     "verified")
    if not v.get("ok", False) and not fails:
        fails.append(f"{name}: RTL verification failed")
    return fails


# ----------------------------------------------------------------------------- pipeline


def _check_prerequisites(simulator: str) -> None:
    from .evaluate import export_available, hw_available, sim_available

    missing = []
    if not sim_available():
        missing.append("the simulator (sim.simulate)")
    if not hw_available():
        missing.append("RTL verification (hw.verify.verify_vectors)")
    if not export_available():
        # TODO(lead): golden-vector export API (model.integer.export.export_vectors) missing.
        missing.append("golden-vector export (model.integer.export.export_vectors)")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        missing.append("Icarus Verilog (iverilog on PATH; `make demo` installs it)")
    if missing:
        raise RuntimeError("qgnn demo needs " + ", ".join(missing))


def _clean(out: Path) -> None:
    for name in OWNED:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()


def run_demo_pipeline(
    out_dir: str | os.PathLike[str] = DEFAULT_OUT,
    data_root: str | os.PathLike[str] | None = None,
    seeds: int = 3,
    epochs: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    simulator: str = "icarus",
    pes: int = 4,
    latency: int = 1,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> DemoPipelineResult:
    """Run the demo end to end and write the report folder ``out_dir`` (see the module doc).

    Args:
        out_dir: report folder (created).
        data_root: dataset root (``None``: ``$QGNN_DATA_ROOT`` or the default cache root).
        seeds: training seeds per bit width (``0..seeds-1``).
        epochs: training epochs (``None``: the training default, 200).
        workers, scheduler: Dask cluster, as for ``qgnn sweep``.
        simulator: HDL simulator for verification (``icarus``).
        pes: aggregation elements of the verified engine; latency: its memory latency (cycles).
        resume: keep finished points and cached accuracies of an interrupted earlier run in
            ``out_dir`` (default: start fresh; the demo's own files there are removed first).
        progress: progress bar on stderr.
        log: one-line messages (default: stderr).
        meta: provenance for the report (``command``).

    Returns:
        The result; ``report_path`` is the Markdown report.

    Raises:
        DemoFailed: after writing the report, when any step failed or any verification
            mismatched.
        RuntimeError: a prerequisite (simulator, RTL verification, Icarus) is missing.
    """
    from distributed import as_completed

    from qgnn.core.version import qgnn_version

    from .report import collect_rows, git_sha, results_frame, write_frame_atomic
    from .runner import dask_client, run_sweep

    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    _check_prerequisites(simulator)
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        _clean(out)
    spec = demo_spec(seeds, epochs)
    root = None if data_root is None else str(data_root)
    by_bits = {int(p.params["precision"]["bits"]): p for p in spec.points}
    version, sha = qgnn_version(), git_sha()
    prov = {"qgnn_version": version, "git_sha": sha}
    golden: dict[int, dict[str, Any]] = {}
    with dask_client(scheduler, workers, say, len(spec) + len(HW_BITS)) as client:
        run = uuid.uuid4().hex[:6]
        futs = {}
        for b in HW_BITS:  # the longest tasks: submitted first, highest priority
            futs[client.submit(
                task_golden, by_bits[b].to_dict(), str(out / "vectors" / f"int{b}"),
                str(out / "verify" / f"int{b}.log"), root, simulator, pes, latency, prov,
                key=f"golden-int{b}-{run}", priority=100)] = b
        say(f"training {len(spec)} bit widths x {seeds} seed(s); exporting and verifying "
            f"{', '.join(_label(b) for b in HW_BITS)} on {simulator}")
        sweep = run_sweep(spec, out, client=client, report=False, progress=progress, log=say,
                          meta=meta)
        for fut in as_completed(list(futs)):
            b = futs[fut]
            if fut.status == "finished":
                g = fut.result()
            else:
                g = {"status": "error", "bits": b,
                     "error": " ".join(f"task: {fut.exception()!r}".split())}
            golden[b] = g
            if g["status"] == "ok":
                write_json_atomic(out / "verify" / f"int{b}.json", g["verify"])
                v = g["verify"]
                say(f"  {_label(b)}: RTL {'bit-exact' if v['mismatches'] == 0 else 'MISMATCH'}"
                    f" on {v['outputs_checked']} words, {v['rtl_cycles']} cycles "
                    f"(export {g['export_s']:.1f} s, {simulator} {g['verify_s']:.1f} s)")
            else:
                say(f"  {_label(b)}: export/verification FAILED: {g['error']}")

    rows = collect_rows(spec, out)
    _add_golden_columns(rows, golden)
    failures = [f"{_label(int(r['precision.bits']))}: {r['error']}" for r in rows
                if r["status"] != "ok"]
    if len(rows) != len(spec):
        failures.append(f"{len(spec) - len(rows)} point(s) did not finish")
    for b in HW_BITS:
        failures += golden_failures(golden[b]) if b in golden else [f"{_label(b)}: not run"]

    csv_path = pq_path = None
    if rows:
        csv_path, pq_path = write_frame_atomic(results_frame(rows), out / "results.csv",
                                               out / "results.parquet")
    from .plots import write_plots

    plots = write_plots(rows, out)
    total = time.perf_counter() - t_start
    info = {
        **dict(meta or {}), **prov,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "dataset": DEMO_DATASET, "model": DEMO_MODEL, "bits": list(DEMO_BITS),
        "seeds": spec.points[0].seeds, "epochs": spec.points[0].params["epochs"],
        "simulator": simulator, "pes": pes, "latency": latency,
        "python_version": platform.python_version(), "total_time_s": total,
        "sweep": {"computed": sweep.computed, "reused": sweep.reused,
                  "trainings": sweep.trainings},
    }
    result = DemoPipelineResult(
        out=out, report_path=out / "report.md", summary_path=out / "summary.json",
        results_csv=csv_path, results_parquet=pq_path, plots=plots, rows=rows, golden=golden,
        failures=failures, total_time_s=total)
    result.table = _summary_table(rows, spec)
    write_json_atomic(result.summary_path, _summary_json(info, rows, golden, failures, spec,
                                                         by_bits))
    write_text_atomic(result.report_path, _markdown(info, rows, golden, failures, plots, out,
                                                    spec))
    if failures:
        raise DemoFailed(failures, result)
    return result


def _add_golden_columns(rows: list[dict[str, Any]], golden: Mapping[int, Mapping[str, Any]]) -> None:
    """RTL verification columns on each row (NaN / empty for FP32 and failed exports)."""
    for r in rows:
        g = golden.get(int(r["precision.bits"])) or {}
        v = g.get("verify") or {}
        ok = g.get("status") == "ok" and not golden_failures(g)
        ag = g.get("agreement") or {}
        r["rtl_verified"] = ok if g else None
        r["rtl_outputs_checked"] = v.get("outputs_checked", math.nan)
        r["rtl_mismatches"] = v.get("mismatches", math.nan)
        r["rtl_cycles"] = v.get("rtl_cycles", math.nan)
        r["rtl_contract_cycles"] = v.get("expected_cycles", math.nan)
        r["sim_stage_cycles"] = (sum(s["sim_cycles"] for s in g["stages"])
                                 if g.get("stages") else math.nan)
        r["integer_test_acc"] = (100.0 * ag["integer_test_acc"]
                                 if "integer_test_acc" in ag else math.nan)
        r["integer_prediction_agreement"] = (100.0 * ag["prediction_agreement"]
                                             if "prediction_agreement" in ag else math.nan)


# ----------------------------------------------------------------------------- report


def _f(v: Any, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, spec)


def _rows_by_bits(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(rows, key=lambda r: -int(r["precision.bits"]))


def _summary_table(rows: Sequence[Mapping[str, Any]], spec: SweepSpec) -> str:
    lines = ["| bits | test acc (%) | RTL (Icarus) | speedup vs FP32 | energy ratio vs FP32 |",
             "|:--|--:|:--|--:|--:|"]
    for r in _rows_by_bits(rows):
        b = int(r["precision.bits"])
        rtl = "–" if b not in HW_BITS else (
            f"bit-exact, {int(r['rtl_outputs_checked'])} words" if r.get("rtl_verified")
            else "FAILED")
        acc = (f"{r['test_acc_mean']:.1f} ± {r['test_acc_std']:.1f}"
               if not math.isnan(r["test_acc_mean"]) else "–")
        lines.append(f"| {_label(b)} | {acc} | {rtl} | {_f(r.get('speedup_vs_fp32'), '.2f')}× | "
                     f"{_f(r.get('energy_ratio_vs_fp32'), '.2f')}× |")
    return "\n".join(lines)


def _markdown(info: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
              golden: Mapping[int, Mapping[str, Any]], failures: Sequence[str],
              plots: Mapping[str, Path | None], out: Path, spec: SweepSpec) -> str:
    p0 = spec.points[0].params
    seeds = info["seeds"]
    seed_text = f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    ordered = _rows_by_bits(rows)
    md = [
        "# qgnn demo: Cora, 2-layer GCN at FP32, INT8, INT4 and INT2",
        "",
        ("**FAILED**: " + "; ".join(failures)) if failures else
        "**All steps passed**: every integer model's aggregation stages ran bit-exact on the RTL, "
        "with the cycles the simulator predicts.",
        "",
        f"Dataset **Cora** (public split); GCN, {p0['layers']} layers, hidden {p0['hidden']}, "
        f"dropout {p0['dropout']}; quantization-aware training for {p0['epochs']} epochs "
        f"(Adam, lr {p0['lr']}, weight decay {p0['weight_decay']}), seeds {seed_text}. Every "
        "tensor role of every layer is quantized to the listed width; FP32 runs the same code "
        "with quantizers off.",
        "",
        _summary_table(rows, spec),
        "",
        "## 1. Accuracy",
        "",
        "Test accuracy at the epoch of best validation accuracy, mean ± sample std over seeds. "
        f"The integer-only column runs seed {EXPORT_SEED}'s exported integer model (integer "
        "arithmetic only) on the test nodes; agreement is the share of test nodes where its "
        "prediction equals the fake-quantized model's.",
        "",
        "| bits | test acc (%) | val acc (%) | seed 0 integer-only test acc (%) | "
        "agreement (%) | train time (s, all seeds) |",
        "|:--|--:|--:|--:|--:|--:|",
    ]
    for r in ordered:
        md.append(
            f"| {_label(int(r['precision.bits']))} "
            f"| {_f(r['test_acc_mean'], '.1f')} ± {_f(r['test_acc_std'], '.1f')} "
            f"| {_f(r['val_acc_mean'], '.1f')} ± {_f(r['val_acc_std'], '.1f')} "
            f"| {_f(r.get('integer_test_acc'), '.1f')} "
            f"| {_f(r.get('integer_prediction_agreement'), '.2f')} "
            f"| {_f(r['train_wall_time_s'], '.1f')} |")
    md += [
        "",
        f"## 2-3. Golden vectors and RTL verification ({info['simulator']})",
        "",
        f"Each aggregation stage runs on the RTL engine ({info['pes']} elements, memory latency "
        f"{info['latency']} cycle(s)); every output word is compared with the golden vectors. "
        "Contract cycles come from the timing contract (`docs/aggregation-engine.md`); "
        "simulator cycles from `sim` for the same stage with ideal memory. All three must be "
        "equal.",
        "",
        "| bits | stage | rows | terms | features | words/row | acc bits | words checked | "
        "mismatches | RTL cycles | contract cycles | sim cycles | ok |",
        "|:--|:--|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
    ]
    for b in HW_BITS:
        g = golden.get(b) or {}
        if g.get("status") != "ok":
            md.append(f"| {_label(b)} | – | | | | | | | | | | | FAILED: "
                      f"{str(g.get('error', 'not run'))[:200]} |")
            continue
        for st, vs in zip(g["stages"], g["verify"]["stages"], strict=False):
            ok = (vs["mismatches"] == 0 and vs.get("cycles_ok") and not vs.get("overflow")
                  and vs["rtl_cycles"] == st["sim_cycles"])
            md.append(
                f"| {_label(b)} | {st['name']} | {st['rows']} | {st['terms']} | "
                f"{st['features']} | {st['words_per_row']} | {st['acc_width']} | "
                f"{vs['outputs_checked']} | {vs['mismatches']} | {vs['rtl_cycles']} | "
                f"{vs['expected_cycles']} | {st['sim_cycles']} | {'✓' if ok else '✗'} |")
    md += [
        "",
        "## 4. Simulated accelerator",
        "",
        "The default chip (`sim/configs/default.toml`) running the whole model (both layers, "
        "aggregation and combination, DRAM traffic); FP32 is the same chip with FP32 adders and "
        "multipliers. Speedup and energy ratio are FP32 / quantized. ★: Pareto front (accuracy "
        "against energy: E, against cycles: T).",
        "",
        "| bits | cycles | time (µs) | energy (µJ) | speedup | energy ratio | DRAM (KiB) | "
        "area (mm²) | front E | front T |",
        "|:--|--:|--:|--:|--:|--:|--:|--:|:-:|:-:|",
    ]
    for r in ordered:
        md.append(
            f"| {_label(int(r['precision.bits']))} | {_f(r.get('cycles'), ',.0f')} "
            f"| {_f(r.get('time_us'), '.1f')} | {_f(r.get('energy_pj', math.nan) / 1e6, '.2f')} "
            f"| {_f(r.get('speedup_vs_fp32'), '.2f')}× | {_f(r.get('energy_ratio_vs_fp32'), '.2f')}× "
            f"| {_f(r.get('dram_bytes_total', math.nan) / 1024, ',.0f')} "
            f"| {_f(r.get('area_mm2'), '.2f')} "
            f"| {'★' if r.get('pareto_energy') else ''} | {'★' if r.get('pareto_latency') else ''} |")
    titles = {"pareto_energy": "Accuracy against energy (Pareto front)",
              "pareto_latency": "Accuracy against latency (Pareto front)",
              "energy_breakdown": "Energy breakdown",
              "accuracy_vs_bits": "Accuracy against bits"}
    md += ["", "## Plots", ""]
    for key, title in titles.items():
        path = plots.get(key)
        if path is not None:
            md += [f"### {title}", "", f"![{title}]({os.path.relpath(path, out)})", ""]
    md += [
        "## Files",
        "",
        "- `results.csv`, `results.parquet`: one row per bit width with every parameter, the "
        "accuracy, the simulator's figures, the RTL verification and provenance.",
        "- `summary.json`: everything in this report as JSON.",
        "- `vectors/int<b>/`: golden vector sets (`docs/golden-vectors.md`); "
        "`verify/int<b>.json` and `.log`: RTL verification reports and simulator output.",
        "- `points/`, `cache/`: the sweep's per-point records and accuracy cache "
        "(`qgnn sweep examples/sweeps/demo.toml --out DIR` recomputes the same points).",
        "",
        "## Provenance",
        "",
        f"qgnn {info['qgnn_version']}, git {info['git_sha']}, generated {info['created']}"
        + (f" by `{info['command']}`" if info.get("command") else "")
        + f", Python {info['python_version']}; total {info['total_time_s']:.0f} s.",
        "",
    ]
    return "\n".join(md)


def _summary_json(info: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                  golden: Mapping[int, Mapping[str, Any]], failures: Sequence[str],
                  spec: SweepSpec, by_bits: Mapping[int, SweepPoint]) -> dict[str, Any]:
    from .runner import _jsonable

    runs = []
    for r in _rows_by_bits(rows):
        b = int(r["precision.bits"])
        g = dict(golden.get(b) or {})
        g.pop("traceback", None)
        runs.append({"bits": _label(b).lower(), "row": r, "golden": g or None,
                     "point_id": by_bits[b].point_id})
    clean = _jsonable({**info, "ok": not failures, "failures": list(failures), "runs": runs})
    return _nan_to_none(clean)


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_nan_to_none(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ----------------------------------------------------------------------------- CLI glue


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``qgnn demo`` (for ``sweeps.cli``: ``add_demo_arguments(p);
    p.set_defaults(func=cmd_demo)``)."""
    def positive(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
        return v

    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                   help="report folder (default: %(default)s)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="dataset root (default: $QGNN_DATA_ROOT, else $XDG_CACHE_HOME/qgnn/"
                        "datasets)")
    p.add_argument("--seeds", type=positive, default=3,
                   help="training seeds per bit width (default: %(default)s)")
    p.add_argument("--epochs", type=positive, default=None,
                   help="training epochs (default: the library default, 200)")
    p.add_argument("--workers", type=positive, default=None,
                   help="local Dask worker processes (default: available cores)")
    p.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="run on an existing Dask cluster instead of a local one")
    p.add_argument("--resume", action="store_true",
                   help="reuse finished points and cached accuracies of an interrupted run in "
                        "--out (default: start fresh)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def cmd_demo(args: argparse.Namespace) -> int:
    """Handler of ``qgnn demo``: 0 when every step passed, 1 when a step failed (the report
    is written either way and says what failed)."""
    from qgnn.core.atomic import check_writable_target

    check_writable_target(Path(args.out) / "summary.json")
    print(f"qgnn demo: {DEMO_DATASET}, 2-layer GCN at "
          f"{', '.join(_label(b) for b in DEMO_BITS)}: train ({args.seeds} seed(s)), export "
          "golden vectors, verify the RTL on Icarus, simulate, report", flush=True)
    try:
        result = run_demo_pipeline(
            args.out, data_root=args.data_root, seeds=args.seeds, epochs=args.epochs,
            workers=args.workers, scheduler=args.scheduler, resume=args.resume,
            progress=not args.quiet, log=lambda line: print(line, flush=True),
            meta={"command": getattr(args, "command_line", "qgnn demo")})
    except DemoFailed as e:
        print()
        print(e.result.table)
        print()
        for f in e.failures:
            print(f"qgnn demo: FAILED: {f}", file=sys.stderr, flush=True)
        print(f"report (with the failures): {e.result.report_path}", flush=True)
        return 1
    print()
    print(result.table)
    print()
    print(f"report: {result.report_path} (Markdown, plots beside it); results: "
          f"{result.results_csv}, {result.results_parquet}; summary: {result.summary_path}; "
          f"total {result.total_time_s:.0f} s")
    return 0
