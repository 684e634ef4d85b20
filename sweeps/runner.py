"""Run a sweep on Dask distributed, writing each finished point as it completes.

Output directory layout (``OUT``)::

    OUT/points/<config_hash>.json        one file per finished point (ok or error), atomic
    OUT/cache/accuracy/<model_hash>.json accuracy per model configuration (shared by points
                                         that differ only in architecture), atomic
    OUT/events.jsonl                     append-only log: run start/end, trainings, points
    OUT/spec.json                        the expanded spec of the last run
    OUT/results.csv, results.parquet     tidy table, one row per finished point (atomic)
    OUT/report.md, *.png                 Markdown report and plots

Crash safety: a point file is written (temporary file + rename) by the client as soon as the
point's result arrives, so a point is either completely on disk or not at all. Rerunning the
same command skips every point whose file exists (failed points too, unless
``retry_failed``) and every training whose accuracy is cached; nothing finished is recomputed
and nothing finished is lost. Only points in flight when the process died are computed again.

Execution: by default a :class:`distributed.LocalCluster` with one single-threaded worker
process per available core (torch set to one thread per task); ``scheduler`` connects to an
existing cluster instead (its workers need qgnn installed and the datasets readable).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qgnn.core.atomic import write_json_atomic

from .evaluate import sim_available
from .report import POINT_FORMAT, read_point
from .spec import SweepPoint, SweepSpec

__all__ = ["SweepResult", "dask_client", "default_workers", "read_events", "run_sweep",
           "task_accuracy", "task_point", "write_outputs"]

ACC_FORMAT = "qgnn-accuracy-cache/1"


@dataclass
class SweepResult:
    """Outcome of :func:`run_sweep`.

    Attributes:
        out: output directory.
        total: points in the spec.
        ok, failed: finished points on disk with status ok / error (all runs).
        reused: points found finished on disk at the start (not recomputed).
        computed: points computed in this run.
        trainings: QAT runs done in this run (the others came from the accuracy cache).
        interrupted: the run was stopped (Ctrl-C) before every point finished.
        paths: report files written (``results_csv``, ``results_parquet``, ``report``, plots).
        wall_time_s: seconds for the whole run.
    """

    out: Path
    total: int
    ok: int = 0
    failed: int = 0
    reused: int = 0
    computed: int = 0
    trainings: int = 0
    interrupted: bool = False
    paths: dict[str, Path | None] = field(default_factory=dict)
    wall_time_s: float = 0.0
    run_id: str = ""


def default_workers() -> int:
    """Worker processes of the default local cluster: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover (not Linux)
        return max(1, os.cpu_count() or 1)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _error_text(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}")


# ----------------------------------------------------------------------------- worker tasks


def task_accuracy(params: Mapping[str, Any], data_root: str | None,
                  threads: int = 1) -> dict[str, Any]:
    """Dask task: train one model configuration. Never raises: errors are returned."""
    from .evaluate import limit_threads, train_accuracy

    t0 = time.perf_counter()
    try:
        limit_threads(threads)
        acc = train_accuracy(params, data_root)
        return {"status": "ok", "accuracy": acc, "wall_time_s": time.perf_counter() - t0,
                "worker": f"{socket.gethostname()}:{os.getpid()}"}
    except Exception as exc:
        return {"status": "error", "error": _error_text(exc), "traceback": traceback.format_exc(),
                "wall_time_s": time.perf_counter() - t0}


def task_point(point: Mapping[str, Any], accuracy: Mapping[str, Any] | None,
               data_root: str | None, threads: int = 1) -> dict[str, Any]:
    """Dask task: evaluate one point given its accuracy result (from :func:`task_accuracy` or
    the cache; ``None`` when accuracy is not evaluated). Never raises: errors are returned.

    The result carries the accuracy it was evaluated with (``accuracy_result``), so the client
    never needs the training's own future again: that future's data may have been lost with a
    dead worker after this point ran."""
    from .evaluate import limit_threads, simulate

    t0 = time.perf_counter()
    started = _now()
    out: dict[str, Any] = {"status": "ok", "error": None, "traceback": None, "sim": None,
                           "started_at": started,
                           "accuracy_result": None if accuracy is None else dict(accuracy),
                           "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        limit_threads(threads)
        if accuracy is not None and accuracy.get("status") != "ok":
            out.update(status="error", error=f"accuracy: {accuracy.get('error')}",
                       traceback=accuracy.get("traceback"))
        elif point["evaluate"]["simulate"]:
            out["sim"] = _jsonable(simulate(point["params"], data_root))
    except Exception as exc:
        out.update(status="error", error=f"simulate: {_error_text(exc)}",
                   traceback=traceback.format_exc())
    out["wall_time_s"] = time.perf_counter() - t0
    return out


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars and arrays converted; NaN/inf kept as floats)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    return str(obj)


# ----------------------------------------------------------------------------- files


class _Events:
    """Append-only JSON-lines log (one ``write`` per line; a torn last line is ignored by
    :func:`read_events`)."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = path
        self.run_id = run_id
        self.fh = path.open("a", encoding="utf-8")

    def __call__(self, event: str, **kw: Any) -> None:
        self.fh.write(json.dumps({"t": _now(), "run": self.run_id, "event": event, **kw}) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def read_events(out: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Entries of ``OUT/events.jsonl`` (unparseable lines, e.g. one torn by a crash, skipped)."""
    path = Path(out) / "events.jsonl"
    events = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


@contextlib.contextmanager
def _out_lock(out: Path) -> Iterator[None]:
    fh = (out / ".sweep.lock").open("a")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OSError(f"another qgnn sweep is writing to {out}; wait for it or use "
                          "another --out") from None
        yield
    finally:
        fh.close()


def _read_cached_accuracy(path: Path, model_hash: str) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if d.get("format") != ACC_FORMAT or d.get("model_hash") != model_hash:
        return None
    return d


# ----------------------------------------------------------------------------- cluster


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None, log: Callable[[str], None],
                n_tasks: int) -> Iterator[Any]:
    """A :class:`distributed.Client`: connected to ``scheduler``, or to a new local cluster of
    ``workers`` (default: the available cores, at most ``n_tasks``) single-threaded worker
    processes, closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        if workers is not None:
            raise ValueError("--workers sizes the local cluster; it cannot be used with "
                             "--scheduler")
        try:
            client = Client(scheduler, timeout="20s")
        except (OSError, TimeoutError) as e:
            raise OSError(f"cannot connect to the Dask scheduler at {scheduler}: "
                          f"{_one_line(str(e))}") from None
        log(f"dask: scheduler {scheduler}, "
            f"{len(client.scheduler_info().get('workers', {}))} worker(s)")
        try:
            yield client
        finally:
            client.close()
        return
    import dask

    n = workers if workers is not None else default_workers()
    n = max(1, min(n, n_tasks))
    # Workers start from a fork server that has imported torch, PyG and qgnn once, instead of
    # every spawned worker importing them again (several seconds each on a busy machine).
    with dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"}):
        _set_forkserver_preload()
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"},
        )
        client = Client(cluster)
        log(f"dask: local cluster, {n} worker process(es) x 1 thread")
        try:
            yield client
        finally:
            _close_quietly(client, cluster)


#: Modules the local cluster's fork server imports before forking workers.
FORKSERVER_PRELOAD: tuple[str, ...] = (
    "distributed", "dask", "msgpack", "cloudpickle", "tornado", "toolz", "numpy", "pandas",
    "torch", "torch_geometric", "qgnn.model.train", "qgnn.sweeps.evaluate", "qgnn.sweeps.runner",
)


def _set_forkserver_preload() -> None:
    from distributed.utils import get_mp_context

    ctx = get_mp_context()  # lets distributed set its own preload list first
    mods = list(FORKSERVER_PRELOAD)
    if sim_available():
        mods.append("qgnn.sim")
    if not hasattr(ctx, "set_forkserver_preload"):
        return
    ctx.set_forkserver_preload(mods)
    # Start the server with SIGINT ignored: workers forked from it inherit that, so Ctrl-C in a
    # terminal (sent to the whole process group) stops only `qgnn sweep`, which then shuts the
    # cluster down, instead of printing a traceback from every worker.
    if threading.current_thread() is threading.main_thread():
        from multiprocessing import forkserver

        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            forkserver.ensure_running()
        finally:
            signal.signal(signal.SIGINT, old)


def _close_quietly(client: Any, cluster: Any) -> None:
    """Close the client and the local cluster without logging cancelled-task noise."""
    loggers = [logging.getLogger(n) for n in ("distributed", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.suppress(Exception):
            client.close(timeout=5)
        with contextlib.suppress(Exception):
            cluster.close(timeout=5)
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


# ----------------------------------------------------------------------------- run


def run_sweep(
    spec: SweepSpec,
    out: str | os.PathLike[str],
    scheduler: str | None = None,
    workers: int | None = None,
    data_root: str | os.PathLike[str] | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    log: Callable[[str], None] | None = None,
    meta: Mapping[str, Any] | None = None,
    report: bool = True,
    client: Any | None = None,
) -> SweepResult:
    """Evaluate every point of ``spec`` not already finished in ``out``; write the results.

    Args:
        spec: validated sweep (:func:`sweeps.spec.load_spec`).
        out: output directory (created; see the module docstring for its layout).
        scheduler: address of an existing Dask scheduler; ``None`` starts a local cluster.
        workers: local cluster size (default :func:`default_workers`).
        data_root: dataset root passed to the workers (``None``: their ``$QGNN_DATA_ROOT``).
        progress: show a progress bar (stderr).
        retry_failed: recompute points whose file records an error.
        log: receives one-line messages (default: stderr).
        meta: extra provenance for the report (``command``).
        report: write results.csv/parquet, plots and report.md at the end (also after Ctrl-C).
        client: an existing :class:`distributed.Client` to run on (left open); overrides
            ``scheduler`` and ``workers``.

    Raises:
        OSError: ``out`` is not writable or is used by another running sweep; the scheduler
            cannot be reached.
        KeyboardInterrupt: after writing what finished, when interrupted.
    """
    from qgnn.core.version import qgnn_version

    from .report import git_sha

    t_start = time.perf_counter()
    say = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if spec.evaluate.simulate and not sim_available():
        raise ValueError("evaluate.simulate = true but the simulator (sim.simulate) is not "
                         "installed; set evaluate.simulate = false in the spec")
    out_dir = Path(out)
    (out_dir / "points").mkdir(parents=True, exist_ok=True)
    (out_dir / "cache" / "accuracy").mkdir(parents=True, exist_ok=True)
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PermissionError(13, "output directory is not writable", str(out_dir))
    root = None if data_root is None else str(data_root)
    run_id = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    version, sha = qgnn_version(), git_sha()
    result = SweepResult(out=out_dir, total=len(spec), run_id=run_id)

    with _out_lock(out_dir):
        events = _Events(out_dir / "events.jsonl", run_id)
        try:
            # Temporary files of atomic writes interrupted by a crash are garbage.
            for d in (out_dir, out_dir / "points", out_dir / "cache" / "accuracy"):
                for tmp in d.glob(".*.tmp"):
                    tmp.unlink(missing_ok=True)
            write_json_atomic(out_dir / "spec.json", {
                "name": spec.name, "description": spec.description,
                "source": str(spec.source) if spec.source else None, "raw": _jsonable(spec.raw),
                "points": [p.to_dict() for p in spec.points]})
            # ---- what is already done
            pending: list[SweepPoint] = []
            for p in spec.points:
                rec = read_point(out_dir / "points" / f"{p.point_id}.json")
                if rec is not None and rec.get("point_id") == p.point_id and not (
                        retry_failed and rec["status"] == "error"):
                    result.reused += 1
                else:
                    pending.append(p)
            events("run-start", points=len(spec), reused=result.reused, pending=len(pending),
                   qgnn_version=version, git_sha=sha)
            say(f"sweep {spec.name!r}: {len(spec)} point(s), {result.reused} already "
                f"finished in {out_dir}, {len(pending)} to run")
            if pending:
                _execute(spec, pending, out_dir, root, scheduler, workers, progress, say,
                         events, result, version, sha, client)
        except KeyboardInterrupt:
            result.interrupted = True
            events("run-interrupted", reused=result.reused, computed=result.computed)
            raise
        finally:
            result.wall_time_s = time.perf_counter() - t_start
            if report:
                result.paths = write_outputs(spec, out_dir, {
                    **(meta or {}), "qgnn_version": version, "git_sha": sha,
                    "run_id": run_id})
            recs = [read_point(out_dir / "points" / f"{p.point_id}.json") for p in spec.points]
            result.ok = sum(1 for r in recs if r is not None and r["status"] == "ok")
            result.failed = sum(1 for r in recs if r is not None and r["status"] == "error")
            if not result.interrupted:
                events("run-end", reused=result.reused, computed=result.computed,
                       trainings=result.trainings, ok=result.ok, failed=result.failed,
                       wall_time_s=result.wall_time_s)
            events.close()
    return result


def _execute(spec: SweepSpec, pending: list[SweepPoint], out_dir: Path, root: str | None,
             scheduler: str | None, workers: int | None, progress: bool,
             say: Callable[[str], None], events: _Events, result: SweepResult,
             version: str, sha: str, client: Any | None = None) -> None:
    from distributed import as_completed
    from tqdm.auto import tqdm

    cache_dir = out_dir / "cache" / "accuracy"
    # Accuracy: one training per model configuration, unless cached on disk.
    acc_cached: dict[str, dict[str, Any]] = {}
    to_train: dict[str, SweepPoint] = {}
    if spec.evaluate.accuracy:
        for p in pending:
            if p.model_hash in acc_cached or p.model_hash in to_train:
                continue
            c = _read_cached_accuracy(cache_dir / f"{p.model_hash}.json", p.model_hash)
            if c is not None:
                acc_cached[p.model_hash] = {"status": "ok", "accuracy": c["accuracy"]}
            else:
                to_train[p.model_hash] = p
    n_tasks = max(len(to_train), len(pending))
    ctx = contextlib.nullcontext(client) if client is not None else dask_client(
        scheduler, workers, say, n_tasks)
    with ctx as client:
        acc_futs: dict[str, Any] = {}
        for i, (mh, p) in enumerate(to_train.items()):
            acc_futs[mh] = client.submit(task_accuracy, p.params, root, 1,
                                         key=f"acc-{mh}-{result.run_id}", priority=-i)
        point_futs: dict[Any, SweepPoint] = {}
        for p in pending:
            acc = None
            if spec.evaluate.accuracy:
                acc = acc_futs.get(p.model_hash, acc_cached.get(p.model_hash))
            fut = client.submit(task_point, p.to_dict(), acc, root, 1,
                                key=f"point-{p.point_id}-{result.run_id}", priority=-p.index)
            point_futs[fut] = p
        del acc, fut  # no stray reference keeps a training's future alive
        acc_by_key = {f.key: mh for mh, f in acc_futs.items()}
        # A training's future is released once it has arrived and no pending point needs it:
        # held to the end, its data would be recomputed (a wasted training) whenever the worker
        # keeping it dies, although every point using it is finished.
        needed = {mh: sum(1 for p in pending if p.model_hash == mh) for mh in acc_futs}
        arrived: set[str] = set()
        bar = tqdm(total=len(spec), initial=result.reused, desc="sweep", unit="pt",
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        n_ok = n_err = 0
        # distributed logs a spurious tornado callback error when Ctrl-C interrupts a wait;
        # task errors reach us through the futures, so that logger stays quiet meanwhile.
        tornado_log = logging.getLogger("tornado.application")
        tornado_level = tornado_log.level
        tornado_log.setLevel(logging.CRITICAL)
        try:
            for fut in as_completed([*acc_futs.values(), *point_futs]):
                if fut.key in acc_by_key:
                    mh = acc_by_key[fut.key]
                    _on_accuracy(fut, mh, cache_dir, events, result, version, sha)
                    arrived.add(mh)
                    if needed[mh] == 0:
                        acc_futs.pop(mh, None)
                    continue
                p = point_futs.pop(fut)
                rec = _on_point(fut, p, spec, out_dir, events, result, version, sha,
                                from_cache=p.model_hash in acc_cached,
                                acc_futs=acc_futs, acc_cached=acc_cached)
                if p.model_hash in needed:
                    needed[p.model_hash] -= 1
                    if needed[p.model_hash] == 0 and p.model_hash in arrived:
                        acc_futs.pop(p.model_hash, None)
                if rec["status"] == "ok":
                    n_ok += 1
                else:
                    n_err += 1
                    bar.write(f"point {p.index} ({p.describe()}) failed: {rec['error']}",
                              file=sys.stderr)
                bar.set_postfix(ok=n_ok, failed=n_err, refresh=False)
                bar.update(1)
        except BaseException:
            for f in [*acc_futs.values(), *point_futs]:
                with contextlib.suppress(Exception):
                    f.cancel()
            raise
        finally:
            bar.close()
            tornado_log.setLevel(tornado_level)


def _accuracy_of_failed(p: SweepPoint, acc_futs: Mapping[str, Any],
                        acc_cached: Mapping[str, Any]) -> dict[str, Any] | None:
    """For a point whose task failed: the cached or already computed training, if any."""
    if p.model_hash in acc_cached:
        return dict(acc_cached[p.model_hash])
    f = acc_futs.get(p.model_hash)
    if f is None or f.status != "finished":
        return None
    with contextlib.suppress(Exception):  # its data may be gone with a dead worker
        return dict(f.result(timeout=30))
    return None


def _on_accuracy(fut: Any, model_hash: str, cache_dir: Path, events: _Events,
                 result: SweepResult, version: str, sha: str) -> None:
    if fut.status != "finished":
        events("train-error", model_hash=model_hash, error=_error_text(fut.exception()))
        return
    r = fut.result()
    result.trainings += 1
    if r["status"] == "ok":
        write_json_atomic(cache_dir / f"{model_hash}.json", {
            "format": ACC_FORMAT, "model_hash": model_hash, "accuracy": r["accuracy"],
            "wall_time_s": r["wall_time_s"], "worker": r.get("worker"),
            "finished_at": _now(), "qgnn_version": version, "git_sha": sha})
        events("train-done", model_hash=model_hash, wall_time_s=r["wall_time_s"])
    else:
        events("train-error", model_hash=model_hash, error=r["error"])


def _on_point(fut: Any, p: SweepPoint, spec: SweepSpec, out_dir: Path, events: _Events,
              result: SweepResult, version: str, sha: str, from_cache: bool,
              acc_futs: Mapping[str, Any], acc_cached: Mapping[str, Any]) -> dict[str, Any]:
    accuracy: dict[str, Any] | None
    if fut.status == "finished":
        r = dict(fut.result())
        # the accuracy this point was evaluated with, carried in its own result
        accuracy = r.pop("accuracy_result", None)
    else:  # the task itself failed (worker died too often, dependency lost, ...)
        exc = fut.exception()
        r = {"status": "error", "error": f"task: {_error_text(exc)}", "traceback": None,
             "sim": None, "wall_time_s": float("nan")}
        accuracy = _accuracy_of_failed(p, acc_futs, acc_cached)
    acc = None
    if accuracy is not None and accuracy.get("status") == "ok":
        acc = accuracy["accuracy"]
    rec = {
        "format": POINT_FORMAT,
        "point_id": p.point_id,
        "index": p.index,
        "model_hash": p.model_hash,
        "status": r["status"],
        "error": r.get("error"),
        "traceback": r.get("traceback"),
        "bits_label": p.bits_label,
        "params": p.params,
        "evaluate": p.evaluate.to_dict(),
        "accuracy": acc,
        "accuracy_from_cache": from_cache,
        "sim": r.get("sim"),
        "wall_time_s": r.get("wall_time_s"),
        "started_at": r.get("started_at"),
        "finished_at": _now(),
        "worker": r.get("worker"),
        "run_id": result.run_id,
        "qgnn_version": version,
        "git_sha": sha,
    }
    write_json_atomic(out_dir / "points" / f"{p.point_id}.json", _jsonable(rec))
    result.computed += 1
    events("point-done", point=p.point_id, index=p.index, status=rec["status"])
    return rec


# ----------------------------------------------------------------------------- outputs


def write_outputs(spec: SweepSpec, out: str | os.PathLike[str],
                  meta: Mapping[str, Any]) -> dict[str, Path | None]:
    """Tidy table (CSV + Parquet), plots and ``report.md`` from the finished points."""
    from .plots import write_plots
    from .report import collect_rows, results_frame, write_frame_atomic, write_report

    out_dir = Path(out)
    rows = collect_rows(spec, out_dir)
    paths: dict[str, Path | None] = {}
    if rows:
        df = results_frame(rows)
        csv, pq = write_frame_atomic(df, out_dir / "results.csv", out_dir / "results.parquet")
        paths.update(results_csv=csv, results_parquet=pq)
    from .report import varying_columns

    labels = [c for c in varying_columns(rows) if c not in ("bits", "precision.bits")]
    plots = write_plots(rows, out_dir, label_columns=labels)
    for name, path in plots.items():  # a plot with nothing to show: no stale file either
        if path is None:
            (out_dir / f"{name}.png").unlink(missing_ok=True)
    paths.update(plots)
    full_meta = {**meta, "created": _now()}
    paths["report"] = write_report(spec, rows, full_meta, paths, out_dir)
    return paths
