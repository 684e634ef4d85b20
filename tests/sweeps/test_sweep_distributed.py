"""Distributed for real: a `dask scheduler` and two `dask worker` processes on 127.0.0.1 run
`qgnn sweep --scheduler`.

1. The `qgnn sweep` client itself is killed with SIGKILL mid-sweep: rerunning the same command
   recomputes no finished point (and retrains no cached configuration), and the results equal
   a local run of the same spec (`qgnn sweep` on a LocalCluster).
2. One worker is killed with SIGKILL mid-sweep: the scheduler reschedules its tasks on the
   survivor, the sweep finishes, and every point again equals the local run.

Both run on one scheduler (workers stay warm; a killed worker is replaced for a later test).

Every process is started in its own process group and killed (the whole group) in a
``finally``; every wait has a timeout.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from qgnn.sweeps.runner import read_events
from qgnn.sweeps.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "examples" / "sweeps" / "tiny.toml"
BIN = Path(sys.executable).parent
DASK = BIN / "dask"
N_POINTS = 8
#: Columns that legitimately differ between runs (timings, provenance of the run); every other
#: column of the tidy table must be equal, value for value.
RUN_COLUMNS = {"wall_time_s", "train_wall_time_s", "run_id", "finished_at",
               "accuracy_from_cache"}

needs_cluster = [
    # ~45 s of CPU (4 `qgnn sweep` runs, 7 processes importing torch): over a minute of wall
    # time on 2 shared cores
    pytest.mark.slow,
    pytest.mark.skipif(not DASK.exists(), reason=f"no dask CLI at {DASK}"),
    pytest.mark.skipif(importlib.util.find_spec("qgnn.sim") is None,
                       reason="the tiny spec simulates: needs qgnn.sim"),
]


def with_cluster(test: Callable[..., None]) -> Callable[..., None]:
    for mark in reversed(needs_cluster):
        test = mark(test)
    return test


# ----------------------------------------------------------------------------- helpers


def env(tmp: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(XDG_CACHE_HOME=str(tmp / "xdg"), QGNN_OFFLINE="1", PYTHONUNBUFFERED="1",
             OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
             # the scheduler's transition log counts task executions (Cluster.executions)
             DASK_DISTRIBUTED__ADMIN__LOW_LEVEL_LOG_LENGTH="100000")
    e.pop("QGNN_DEBUG", None)
    return e


def start(cmd: list[str], log: Path, tmp: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a new process group (its pid is the group id), output to ``log``."""
    with log.open("wb") as fh:
        return subprocess.Popen(cmd, cwd=REPO, env=env(tmp), stdout=fh, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``proc`` (started by :func:`start`) and reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)


def wait_for(cond: Callable[[], bool], timeout: float, what: str,
             alive: subprocess.Popen[bytes] | None = None, log: Path | None = None) -> None:
    """Poll ``cond`` every 20 ms for at most ``timeout`` s; fail naming ``what`` (with the tail
    of ``log``) on timeout or when ``alive`` exits first."""
    deadline = time.monotonic() + timeout
    while not cond():
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"process exited ({alive.returncode}) before {what}:\n{tail}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}:\n{tail}")
        time.sleep(0.02)


def point_files(out: Path) -> list[Path]:
    return sorted((out / "points").glob("*.json"))


def snapshot(out: Path) -> dict[str, tuple[bytes, int, int]]:
    """Per finished point: file bytes, mtime (ns) and inode (a rewrite changes the inode)."""
    snap = {}
    for f in point_files(out):
        st = f.stat()
        snap[f.stem] = (f.read_bytes(), st.st_mtime_ns, st.st_ino)
    return snap


def sweep_cmd(out: Path, scheduler: str | None) -> list[str]:
    qgnn = BIN / "qgnn"
    head = [str(qgnn)] if qgnn.exists() else [sys.executable, "-m", "qgnn.sweeps.cli"]
    cmd = [*head, "sweep", str(SPEC), "--out", str(out), "--quiet"]
    return cmd + (["--scheduler", scheduler] if scheduler else ["--workers", "2"])


def deterministic(df: pd.DataFrame) -> pd.DataFrame:
    """The tidy table indexed by config hash, without the per-run columns."""
    return (df.drop(columns=[c for c in df.columns if c in RUN_COLUMNS])
            .set_index("config_hash").sort_index())


def assert_same_results(out: Path, ref: pd.DataFrame) -> None:
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == N_POINTS and (df["status"] == "ok").all()
    got, want = deterministic(df), deterministic(ref)
    assert list(got.columns) == list(want.columns)
    for col in ("test_acc_mean", "cycles", "energy_pj", "speedup_vs_fp32", "dram_bytes_total",
                "area_mm2", "pareto_energy", "pareto_latency"):
        assert col in got.columns, col
    # row by row, exactly (NaN equals NaN): accuracy, cycles, energy, ... of every point
    pd.testing.assert_frame_equal(got, want, check_exact=True)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The tidy results of a local run (`qgnn sweep SPEC --out DIR --workers 2`)."""
    tmp = tmp_path_factory.mktemp("local")
    out, log = tmp / "out", tmp / "sweep.log"
    proc = start(sweep_cmd(out, None), log, tmp)
    try:
        proc.wait(timeout=180)
    finally:
        kill_group(proc)  # with its local cluster, should it hang
    assert proc.returncode == 0, log.read_text()[-3000:]
    df = pd.read_parquet(out / "results.parquet")
    assert len(df) == N_POINTS and (df["status"] == "ok").all()
    return df


@dataclass
class Cluster:
    """A `dask scheduler` and its `dask worker` processes on 127.0.0.1 (random ports)."""

    tmp: Path
    address: str = ""
    monitor: Any = None                            # a distributed.Client holding no futures
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)  # by address
    worker_pids: dict[str, int] = field(default_factory=dict)  # address -> worker process pid

    def start_scheduler(self) -> None:
        from distributed import Client

        sched_file = self.tmp / "scheduler.json"
        log = self.tmp / "scheduler.log"
        # --idle-timeout / --death-timeout (workers): should this test process die without
        # running its finally, the scheduler stops after 5 idle minutes and the workers follow.
        proc = start([str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0",
                      "--no-dashboard", "--dashboard-address", "127.0.0.1:0",
                      "--scheduler-file", str(sched_file), "--idle-timeout", "300"],
                     log, self.tmp)
        self.procs.append(proc)
        wait_for(lambda: sched_file.exists() and sched_file.stat().st_size > 0, 60,
                 "the scheduler file", proc, log)
        time.sleep(0.1)  # written in one go; let it be closed
        self.address = json.loads(sched_file.read_text())["address"]
        assert self.address.startswith("tcp://127.0.0.1:"), self.address
        self.monitor = Client(self.address, timeout="30s")

    def live_workers(self) -> list[str]:
        return sorted(self.monitor.scheduler_info()["workers"])

    def ensure_workers(self, n: int) -> None:
        """Start `dask worker` processes until ``n`` are connected."""
        new = {}
        for _ in range(n - len(self.live_workers())):
            i = len(self.procs)
            wp = start([str(DASK), "worker", self.address, "--host", "127.0.0.1",
                        "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
                        "--name", f"w{i}", "--local-directory", str(self.tmp / f"w{i}"),
                        "--death-timeout", "60"], self.tmp / f"worker{i}.log", self.tmp)
            self.procs.append(wp)
            new[wp.pid] = wp
        self.monitor.wait_for_workers(n, timeout=90)
        # both keyed by worker address; the nanny runs in the `dask worker` process
        nanny_pids = self.monitor.run(os.getpid, nanny=True)
        self.worker_pids = dict(self.monitor.run(os.getpid))
        known = {p.pid: p for p in self.workers.values()} | new
        self.workers = {addr: known[pid] for addr, pid in nanny_pids.items()}
        assert len(self.workers) == n

    def executions(self, prefix: str, run_id: str) -> Counter[str]:
        """Per task key ``<prefix><hash>-<run_id>``: how many times it finished on a worker
        (the scheduler's processing -> memory transitions)."""
        log = self.monitor.run_on_scheduler(lambda dask_scheduler: [
            (t[0], t[1], t[2]) for t in dask_scheduler.transition_log])
        return Counter(key.split("-")[1] for key, a, b in log
                       if isinstance(key, str) and key.startswith(prefix)
                       and key.endswith(run_id) and (a, b) == ("processing", "memory"))

    def tasks_on_scheduler(self) -> int:
        """Tasks the scheduler knows (of any client)."""
        # a lambda is pickled by value: the scheduler cannot import this test module
        return int(self.monitor.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)))

    def close(self) -> None:
        if self.monitor is not None:
            with contextlib.suppress(Exception):
                self.monitor.close(timeout=10)
        for p in reversed(self.procs):
            kill_group(p)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One scheduler for the module (its workers stay warm between the tests)."""
    cl = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        cl.start_scheduler()
        yield cl
    finally:
        cl.close()


@pytest.fixture
def cluster(dask_cluster: Cluster) -> Cluster:
    """The module's cluster with 2 workers (a worker killed by a test is replaced)."""
    dask_cluster.ensure_workers(2)
    return dask_cluster


# ----------------------------------------------------------------------------- tests


@pytest.mark.skipif(importlib.util.find_spec("qgnn.sim") is None, reason="needs qgnn.sim")
def test_the_sweep_sees_the_simulator_outside_the_repository(tmp_path: Path) -> None:
    # The installed `qgnn` (and `--scheduler` clients anywhere) run with no `sim/` folder on
    # sys.path; only the package `qgnn.sim` exists there.
    code = ("import sys; from qgnn.sweeps.evaluate import sim_available; "
            "sys.exit(0 if sim_available() else 3)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env(tmp_path),
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]


@with_cluster
def test_a_killed_client_resumes_without_recomputing(tmp_path: Path, cluster: Cluster,
                                                      reference: pd.DataFrame) -> None:
    out = tmp_path / "out"
    log1, log2 = tmp_path / "sweep1.log", tmp_path / "sweep2.log"
    proc = start(sweep_cmd(out, cluster.address), log1, tmp_path)
    try:
        wait_for(lambda: len(point_files(out)) >= 2, 120, "2 finished points", proc, log1)
        os.kill(proc.pid, signal.SIGKILL)  # the `qgnn sweep` process itself
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    finally:
        kill_group(proc)
    before = snapshot(out)
    k = len(before)
    assert 2 <= k < N_POINTS, f"{k} points finished before the kill"
    for data, _, _ in before.values():
        assert json.loads(data)["status"] == "ok"  # whole files only
    cached_before = {f.stem for f in (out / "cache" / "accuracy").glob("*.json")}
    # The scheduler forgets the dead client's tasks (the workers stay up for the next client).
    wait_for(lambda: cluster.tasks_on_scheduler() == 0, 30,
             "the scheduler to release the killed client's tasks")
    assert len(cluster.monitor.scheduler_info()["workers"]) == 2

    time.sleep(0.05)  # a rewrite would show a later mtime
    t0 = time.monotonic()
    proc2 = start(sweep_cmd(out, cluster.address), log2, tmp_path)
    try:
        proc2.wait(timeout=150)
    finally:
        kill_group(proc2)
    rerun_s = time.monotonic() - t0
    output = log2.read_text()
    assert proc2.returncode == 0, output[-3000:]

    # -- the rerun's own count: k finished points reused, N - k run
    m = re.search(r"(\d+) point\(s\), (\d+) already finished in .*, (\d+) to run", output)
    assert m and tuple(map(int, m.groups())) == (N_POINTS, k, N_POINTS - k), output
    m = re.search(r"(\d+) ok, (\d+) failed of (\d+) point\(s\) \((\d+) computed now, "
                  r"(\d+) reused, (\d+) training run\(s\)\)", output)
    assert m, output
    ok, failed, total, computed, reused, trainings = map(int, m.groups())
    assert (ok, failed, total, computed, reused) == (N_POINTS, 0, N_POINTS, N_POINTS - k, k)
    assert trainings == N_POINTS - len(cached_before)

    # -- no finished point recomputed or rewritten; no cached training redone
    after = snapshot(out)
    assert set(after) == {p.point_id for p in load_spec(SPEC).points}
    for pid, rec in before.items():
        assert after[pid] == rec, f"finished point {pid} was rewritten"
    events = read_events(out)
    runs = [e["run"] for e in events if e["event"] == "run-start"]
    assert len(runs) == 2
    second = [e for e in events if e["run"] == runs[1]]
    assert second[0]["reused"] == k and second[0]["pending"] == N_POINTS - k
    assert second[-1]["event"] == "run-end"
    assert (second[-1]["reused"], second[-1]["computed"]) == (k, N_POINTS - k)
    redone = {e["point"] for e in second if e["event"] == "point-done"}
    assert redone == set(after) - set(before)
    retrained = {e["model_hash"] for e in second if e["event"] == "train-done"}
    assert not retrained & cached_before
    print(f"\nclient kill: {k}/{N_POINTS} points and {len(cached_before)} trainings finished "
          f"at the kill; rerun: {k} reused, {computed} computed, {trainings} trainings, "
          f"0 finished points rewritten ({rerun_s:.1f} s)")

    # -- results whole and equal to the local run
    assert not list(out.rglob(".*.tmp"))
    assert_same_results(out, reference)


@with_cluster
def test_a_worker_killed_mid_sweep_is_rescheduled(tmp_path: Path, cluster: Cluster,
                                                   reference: pd.DataFrame) -> None:
    out = tmp_path / "out"
    log = tmp_path / "sweep.log"
    host = socket.gethostname()
    proc = start(sweep_cmd(out, cluster.address), log, tmp_path)
    try:
        wait_for(lambda: len(point_files(out)) >= 3, 120, "3 finished points", proc, log)
        processing = {w: list(keys) for w, keys in cluster.monitor.processing().items()}
        # The victim: busy, and holding the most finished work (trainings of finished points,
        # which a sweep must not redo when their worker dies).
        by_worker = Counter(json.loads(f.read_text())["worker"] for f in point_files(out))
        victim = max(cluster.workers, key=lambda w: (
            bool(processing.get(w)), by_worker[f"{host}:{cluster.worker_pids[w]}"]))
        survivor = next(w for w in cluster.workers if w != victim)
        in_flight = processing.get(victim, [])
        done_before = {f.stem for f in point_files(out)}
        kill_group(cluster.workers[victim])  # the nanny and its worker process: a lost node
        t_kill = time.time()
        assert in_flight, f"the killed worker had no task in flight: {processing}"
        assert 3 <= len(done_before) < N_POINTS, done_before  # some, not all

        proc.wait(timeout=150)
        output = log.read_text()
        assert proc.returncode == 0, output[-3000:]
        wait_for(lambda: list(cluster.monitor.scheduler_info()["workers"]) == [survivor], 30,
                 "the scheduler to drop the killed worker")
    finally:
        kill_group(proc)

    # -- the sweep finished: every point ok, each written once
    recs = {f.stem: json.loads(f.read_text()) for f in point_files(out)}
    spec = load_spec(SPEC)
    assert set(recs) == {p.point_id for p in spec.points}
    assert all(r["status"] == "ok" for r in recs.values())
    assert f"{N_POINTS} ok, 0 failed of {N_POINTS} point(s) ({N_POINTS} computed now, 0 reused" \
        in output
    done = Counter(e["point"] for e in read_events(out) if e["event"] == "point-done")
    assert set(done.values()) == {1}

    # -- what the killed worker was doing was redone on the survivor
    points_of = {p.model_hash: {q.point_id for q in spec.points if q.model_hash == p.model_hash}
                 for p in spec.points}
    model_of = {p.point_id: p.model_hash for p in spec.points}
    hit: set[str] = set()  # points whose task (or training) was on the victim at the kill
    for key in in_flight:  # keys: point-<config_hash>-<run>, acc-<model_hash>-<run>
        kind, h = key.split("-")[:2]
        hit |= {h} if kind == "point" else points_of[h]
    survivor_id = f"{host}:{cluster.worker_pids[survivor]}"
    victim_id = f"{host}:{cluster.worker_pids[victim]}"
    started = {pid: datetime.fromisoformat(r["started_at"]).timestamp()
               for pid, r in recs.items()}
    from_victim = {pid for pid, r in recs.items() if r["worker"] == victim_id}
    for pid, r in recs.items():  # nothing ran on the victim after its death
        assert r["worker"] in (victim_id, survivor_id), r["worker"]
        assert r["worker"] == survivor_id or started[pid] < t_kill, pid
    # (a task on the victim could still finish in the ms between the snapshot and the kill)
    rescheduled = {pid for pid in hit if recs[pid]["worker"] == survivor_id}
    assert rescheduled, (in_flight, {pid: recs[pid]["worker"] for pid in hit})
    assert all(started[pid] > t_kill for pid in rescheduled)

    # -- trainings: each ran once, except those a pending point still needed (their result
    #    died with the victim) and those in flight on it; none of a point already finished
    run_id = next(e["run"] for e in read_events(out) if e["event"] == "run-start")
    runs = cluster.executions("acc-", run_id)
    assert set(runs) == set(points_of)
    redone = {mh for mh, n in runs.items() if n > 1}
    settled = {pid for pid in from_victim  # written 0.2 s before the kill: long released
               if datetime.fromisoformat(recs[pid]["finished_at"]).timestamp() < t_kill - 0.2}
    assert not redone & {model_of[pid] for pid in settled}, (redone, settled)
    assert redone <= {model_of[pid] for pid in recs if pid not in done_before}
    assert all(n <= 2 for n in runs.values())
    print(f"\nworker kill: {len(done_before)}/{N_POINTS} points finished at the kill "
          f"({len(from_victim & done_before)} by the killed worker), {len(in_flight)} task(s) "
          f"in flight on it, {len(rescheduled)} point(s) rescheduled, "
          f"{N_POINTS - len(done_before)} finished after the kill "
          f"({len(set(recs) - done_before - from_victim)} computed on the survivor); "
          f"{sum(runs.values())} training executions for {len(runs)} trainings "
          f"({len(redone)} redone, none of a finished point)")

    # -- and every point equals the local run
    assert_same_results(out, reference)
