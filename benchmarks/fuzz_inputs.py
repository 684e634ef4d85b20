"""Fuzz every file a user hands qgnn and count what goes wrong, per input kind.

Kinds (generators and the pass rule in ``tests/fuzz/fuzz_cases.py``): golden vector sets
(``vectors``), sweep specs (``spec``), accelerator TOML files (``arch``) and dataset raw files
(``datasets``: Cora and Actor, copied from ``../shared/datasets``). Case ``i`` of a kind uses
mutation ``MUTATIONS[kind][i % len]`` with seed ``--seed + i``, so a run is reproducible and
every mutation gets the same share.

Each case runs in a worker process with a watchdog: a case that takes longer than
``--timeout`` seconds is a hang (the worker is killed and restarted), and the worker's address
space is capped (``--mem-gib``) so a memory blow-up is an error in that case, not the machine's.
A case passes when the reader raises its own error naming the file and the field (one line at
the CLI), or accepts an input whose result equals what the mutated data defines. Anything else
(another exception type, a message that names neither, a wrong accepted result, a hang) is a
failure.

    python benchmarks/fuzz_inputs.py                      # 2000 cases per kind
    python benchmarks/fuzz_inputs.py --cases 200 --kinds vectors arch

Writes ``benchmarks/results/fuzz_inputs.{json,md}`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing as mp
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FUZZ_DIR = REPO / "tests" / "fuzz"


def _worker(conn: Any, cache: str, mem_gib: float) -> None:
    import resource

    if mem_gib > 0:
        limit = int(mem_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    os.environ["QGNN_OFFLINE"] = "1"
    os.environ.setdefault("XDG_CACHE_HOME", str(Path(cache) / "xdg"))
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(FUZZ_DIR))
    import fuzz_cases

    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            return
        kind, mutation, seed = msg
        try:
            out = fuzz_cases.run_case(kind, mutation, seed, cache).to_dict()
        except BaseException as exc:  # MemoryError etc. escaping the harness
            out = {"kind": kind, "mutation": mutation, "seed": seed, "status": "failure",
                   "detail": f"{type(exc).__name__}: {exc}", "what": ""}
        conn.send(out)


class Pool:
    """One worker process with a per-case watchdog."""

    def __init__(self, cache: str, mem_gib: float, start_timeout: float = 120.0) -> None:
        self.cache, self.mem_gib, self.start_timeout = cache, mem_gib, start_timeout
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.conn: Any = None
        self.restarts = 0

    def _start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, self.cache, self.mem_gib),
                                     daemon=True)
        self.proc.start()
        self.conn = parent
        if not parent.poll(self.start_timeout) or parent.recv() != "ready":
            raise RuntimeError("fuzz worker did not start")

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join(5)
        self.proc = None
        self.restarts += 1

    def run(self, kind: str, mutation: str, seed: int, timeout: float) -> dict[str, Any]:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send((kind, mutation, seed))
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                self.proc.join(5)
            code = self.proc.exitcode
            sig = f", signal {-code}" if isinstance(code, int) and code < 0 else ""
            detail = f"worker died (exit code {code}{sig})"
        else:
            detail = f"hang: no result within {timeout:g} s"
        self._kill()
        return {"kind": kind, "mutation": mutation, "seed": seed, "status": "failure",
                "detail": detail, "what": "", "hang": detail.startswith("hang")}

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.kill()


def _category(o: dict[str, Any]) -> str:
    if o["status"] != "failure":
        return o["status"]
    d = o["detail"]
    if o.get("hang"):
        return "hang"
    if d.startswith("worker died"):
        return "crash"
    if d.startswith("harness:"):
        return "harness"
    if d.startswith("accepted but") or d.startswith("accepted "):
        return "wrong_result"
    if "Traceback" in d or d.startswith(("MemoryError", "RecursionError")):
        return "traceback"
    return "bad_message"


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(FUZZ_DIR))
    import fuzz_cases

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=2000, help="cases per kind (default 2000)")
    ap.add_argument("--kinds", nargs="+", default=list(fuzz_cases.KINDS),
                    choices=fuzz_cases.KINDS)
    ap.add_argument("--seed", type=int, default=0, help="seed of case 0 (default 0)")
    ap.add_argument("--timeout", type=float, default=30.0,
                    help="seconds per case before it counts as a hang (default 30)")
    ap.add_argument("--mem-gib", type=float, default=6.0,
                    help="address-space cap of the worker (GiB; 0: none; default 6)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "fuzz_inputs"),
                    help="output stem (.json and .md are appended)")
    args = ap.parse_args(argv)

    cache = tempfile.mkdtemp(prefix="qgnn-fuzz-bench-")
    pool = Pool(cache, args.mem_gib)
    results: dict[str, Any] = {}
    try:
        for kind in args.kinds:
            muts = fuzz_cases.MUTATIONS[kind]
            counts: collections.Counter[str] = collections.Counter()
            per_mut: dict[str, collections.Counter[str]] = {
                m: collections.Counter() for m in muts}
            failures: list[dict[str, Any]] = []
            t0 = time.perf_counter()
            slowest = (0.0, "")
            for i in range(args.cases):
                m = muts[i % len(muts)]
                t1 = time.perf_counter()
                o = pool.run(kind, m, args.seed + i, args.timeout)
                dt = time.perf_counter() - t1
                if dt > slowest[0]:
                    slowest = (dt, f"{m} seed {args.seed + i}: {o.get('what', '')[:100]}")
                cat = _category(o)
                counts[cat] += 1
                per_mut[m][cat] += 1
                if o["status"] == "failure":
                    failures.append({**o, "category": cat, "detail": o["detail"][-1500:]})
            wall = time.perf_counter() - t0
            results[kind] = {
                "cases": args.cases, "wall_s": round(wall, 1),
                "errors": counts["error"], "accepted": counts["accepted"],
                "failures": sum(v for k, v in counts.items() if k not in ("error", "accepted")),
                "by_category": dict(counts),
                "by_mutation": {m: dict(c) for m, c in per_mut.items()},
                "slowest_case_s": round(slowest[0], 2), "slowest_case": slowest[1],
                "failure_examples": failures[:20],
            }
            print(f"{kind}: {args.cases} cases, {counts['error']} clean errors, "
                  f"{counts['accepted']} accepted, {results[kind]['failures']} failures "
                  f"({wall:.0f} s)", flush=True)
    finally:
        pool.close()
        shutil.rmtree(cache, ignore_errors=True)
    meta = {"command": "python benchmarks/fuzz_inputs.py " + " ".join(argv or sys.argv[1:]),
            "seed": args.seed, "timeout_s": args.timeout, "mem_gib": args.mem_gib,
            "python": platform.python_version(), "worker_restarts": pool.restarts,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    out = {"meta": meta, "kinds": results}
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    stem.with_suffix(".md").write_text(_markdown(out))
    print(f"wrote {stem.with_suffix('.md')} and .json")
    return 0 if all(r["failures"] == 0 for r in results.values()) else 1


def _markdown(out: dict[str, Any]) -> str:
    m = out["meta"]
    lines = [
        "# Fuzzing the input readers",
        "",
        f"`{m['command']}` ({m['date']}; per-case timeout {m['timeout_s']:g} s, worker "
        f"address space {m['mem_gib']:g} GiB, Python {m['python']}). Generators and the pass "
        "rule: `tests/fuzz/fuzz_cases.py`; log of the bugs found: `docs/hardening.md`.",
        "",
        "| input | cases | clean errors | accepted (checked) | failures | hangs | wall (s) | slowest case (s) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for kind, r in out["kinds"].items():
        lines.append(f"| {kind} | {r['cases']:,} | {r['errors']:,} | {r['accepted']:,} | "
                     f"{r['failures']:,} | {r['by_category'].get('hang', 0)} | {r['wall_s']} | "
                     f"{r['slowest_case_s']} |")
    lines += ["", "Per mutation (clean errors / accepted / failures):", ""]
    for kind, r in out["kinds"].items():
        parts = []
        for mname, c in r["by_mutation"].items():
            fail = sum(v for k, v in c.items() if k not in ("error", "accepted"))
            parts.append(f"{mname} {c.get('error', 0)}/{c.get('accepted', 0)}/{fail}")
        lines.append(f"- **{kind}**: " + ", ".join(parts))
    fails = [(k, f) for k, r in out["kinds"].items() for f in r["failure_examples"]]
    if fails:
        lines += ["", "## Failures (first 20 per kind)", ""]
        for kind, f in fails:
            last = f["detail"].strip().splitlines()[-1] if f["detail"].strip() else ""
            lines.append(f"- {kind} `{f['mutation']}` seed {f['seed']} ({f['category']}): "
                         f"{f['what'][:120]} -> {last[:200]}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
