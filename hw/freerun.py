"""Free-running RTL bench: memories, latency and stalls in Verilog, for whole-graph verification.

The driven bench (:mod:`hw.cocotb_bench`) answers every memory request from Python through
cocotb, one cycle at a time (a few thousand cycles/s on Verilator for Cora). This
bench moves all of that into a small Verilog harness around the exported engine
(``qgnn_freerun``, written by :func:`harness_verilog`):

- the descriptor, index and feature tables are ``reg`` arrays loaded with ``$readmemh`` from hex
  files (:func:`write_stage_files`) when the ``load`` input is high at a clock edge; every PE's
  three memory ports read them;
- each port has a memory model (its state lives in the harness's one clocked process) with the
  semantics of the driven bench: a request
  accepted in cycle ``t`` is offered as a response from cycle ``t + latency`` on, in request
  order; once offered a response stays valid until taken. With stalls on, request ``ready`` is
  dropped in a cycle with probability ``p_req / 65536`` and the first offer of a due response is
  postponed with probability ``p_resp / 65536``; output ``ready`` is dropped with probability
  ``p_out / 65536``. The draws come from a xorshift32 generator per port, seeded at reset from
  the ``seed`` input and a fixed per-port constant, so a run is a deterministic function of the
  seed; ``p_* = 0`` gives ideal memory (never a stall), the condition of the timing contract;
- output words go into an output memory of ``word_width + 1`` bits (bit ``word_width`` marks a
  written word; ``load`` clears it), with counters of writes, duplicate writes and writes
  outside ``[0, n_out)``; ``dump`` high at an edge writes it with ``$writememh``;
- ``tb_cycles`` counts cycles from the cycle ``start`` is accepted (cycle 0) to the first cycle
  with ``done`` (the definition of ``rtl_cycles``), next to the engine's own ``cycles``;
- ``mem_err`` is sticky until reset: some port got a request outside its table (``n_desc``,
  ``n_idx``, ``n_feat``) or a request while its response queue was full. Either is a failure;
- ``timeout`` rises when ``tb_cycles`` reaches ``max_cycles`` without ``done``.

The cocotb module :mod:`hw.cocotb_freerun` only writes the hex files, resets, sets the inputs,
pulses ``start``, awaits ``RisingEdge(done)`` (or ``timeout``), reads the counters and reads the
dumped output memory once, comparing it word by word with the golden words in Python
(:func:`compare_outputs`).

This module is pure Python (no cocotb, no Amaranth): :mod:`hw.verify` uses it to write the
harness before the build.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .params import PORTS, TOP_NAME, EngineParams, port_signal

#: Verilog module name of the harness (the cocotb toplevel of the free-running bench).
HARNESS_NAME = "qgnn_freerun"
#: File name of the harness Verilog.
HARNESS_FILE = f"{HARNESS_NAME}.v"
#: Hex files the harness reads (``load``) and writes (``dump``), relative to the simulator's
#: working directory.
HEX_FILES = {"desc": "qgnn_fr_desc.hex", "idx": "qgnn_fr_idx.hex", "feat": "qgnn_fr_feat.hex",
             "out": "qgnn_fr_out.hex"}
#: Stall probabilities are given to the harness in units of 1/65536.
STALL_SCALE = 1 << 16
#: Clock period of the harness (ns; even); only relevant for waveforms.
CLOCK_NS = 10
#: Width of the latency input (cycles 1..255).
LATENCY_BITS = 8
_MEM_KINDS = ("desc", "idx", "feat")


@dataclass(frozen=True)
class HarnessShape:
    """Depths (entries) of the harness memories; one build serves every stage that fits.

    ``desc``: rows N; ``idx``: CSR positions E; ``feat``: input words ``N_src * W``;
    ``out``: output words ``N * W``. Each is at least 1.
    """

    desc: int
    idx: int
    feat: int
    out: int

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"harness depth {k} must be an int >= 1, got {v!r}")

    @classmethod
    def for_stages(cls, stages: Sequence[Any]) -> HarnessShape:
        """The smallest shape holding every stage (AggregationStages or GoldenStages)."""
        if not stages:
            raise ValueError("no stages for the harness")
        d = {"desc": 1, "idx": 1, "feat": 1, "out": 1}
        for g in stages:
            st = getattr(g, "stage", g)
            W = int(st.words_per_row)
            d["desc"] = max(d["desc"], int(st.num_nodes))
            d["idx"] = max(d["idx"], int(st.num_terms))
            d["feat"] = max(d["feat"], int(st.codes.shape[0]) * W)
            d["out"] = max(d["out"], int(st.num_nodes) * W)
        return cls(**d)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def fits(self, img: Any) -> None:
        """Raise ``ValueError`` naming the memory when ``img`` (a MemoryImage) does not fit."""
        sizes = {"desc": len(img.desc), "idx": len(img.indices), "feat": len(img.features),
                 "out": len(img.expected)}
        for k, n in sizes.items():
            if n > getattr(self, k):
                raise ValueError(f"stage {img.name!r}: {n} {k} entries exceed the harness depth "
                                 f"{getattr(self, k)}; rebuild the harness for this set")


def _log2ceil(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _salt(k: int) -> int:
    """Per-port xorshift seed constant (odd multiples of the golden ratio, 32 bits)."""
    return (0x9E3779B9 * (2 * k + 1)) & 0xFFFFFFFF


def queue_log2(params: Any) -> int:
    """log2 of each port model's response-queue entries for an engine's ``params``
    (``EngineParams`` or ``MixedParams``: anything with ``fifo_depth``). The engine never has more than
    ``fifo_depth`` requests outstanding on a port (its credits), so ``fifo_depth + 1`` entries
    suffice; a push into a full queue would still set ``mem_err``."""
    return _log2ceil(params.fifo_depth + 2)


def _xorshift(v: str) -> list[str]:
    """Blocking statements that advance the xorshift32 generator held in ``v``."""
    return [f"{v} = {v} ^ ({v} << 13);", f"{v} = {v} ^ ({v} >> 17);", f"{v} = {v} ^ ({v} << 5);"]


def _seed_expr(salt: int) -> str:
    return (f"(((seed ^ 32'h{salt:08x}) == 32'd0) ? 32'd1 : (seed ^ 32'h{salt:08x}))")


@dataclass(frozen=True)
class HarnessSpec:
    """What the harness text depends on in the engine it wraps (widths in bits).

    ``controls``: the engine's run-time inputs, ``(width, name)``, passed through as harness
    inputs of the same name and width; ``desc_bits`` / ``idx_bits``: the descriptor and index
    response payloads; ``queue_log2``: log2 of each port model's response-queue entries;
    ``valid_status``: add the output ``any_valid``, sampled at every clock edge (reset
    included) as the OR of every request and output ``valid`` of the engine in the ending
    cycle (the reset check of the mixed bench reads it).
    """

    name: str
    top: str
    generator: str
    pes: int
    word_width: int
    node_bits: int
    edge_bits: int
    addr_bits: int
    desc_bits: int
    idx_bits: int
    queue_log2: int
    controls: tuple[tuple[int, str], ...]
    valid_status: bool = False


def harness_spec(params: EngineParams) -> HarnessSpec:
    """The :class:`HarnessSpec` of the uniform engine ``qgnn_agg_engine`` for ``params``."""
    return HarnessSpec(
        name=HARNESS_NAME, top=TOP_NAME, generator="qgnn.hw.freerun", pes=params.pes,
        word_width=params.word_width, node_bits=params.node_bits, edge_bits=params.edge_bits,
        addr_bits=params.addr_bits, desc_bits=params.desc_bits, idx_bits=params.node_bits,
        queue_log2=queue_log2(params),
        controls=((params.node_bits, "num_nodes"), (params.wpr_bits, "words_per_row"),
                  (params.z_in_bits, "z_in"), (params.z_out_bits, "z_out"),
                  *[(params.threshold_bits, f"thr{k + 1}")
                    for k in range(params.num_thresholds)]))


def harness_verilog(params: EngineParams, shape: HarnessShape, hdl_clock: bool = False) -> str:
    """Verilog text of the ``qgnn_freerun`` harness around ``qgnn_agg_engine`` for ``params``
    with memories of ``shape`` (see the module docstring for its ports and behaviour):
    :func:`harness_text` of :func:`harness_spec`."""
    return harness_text(harness_spec(params), shape, hdl_clock)


def harness_text(spec: HarnessSpec, shape: HarnessShape, hdl_clock: bool = False) -> str:
    """Verilog text of the free-running harness ``spec.name`` around the engine ``spec.top``
    with memories of ``shape``.

    ``hdl_clock``: the harness makes its own clock (``always #5 clk = ~clk``, period
    :data:`CLOCK_NS`) instead of taking it as an input driven by cocotb; on Icarus this saves
    the two VPI callbacks per cycle. (Verilator would need ``--timing`` for it.)

    All memory models, counters and the output memory are one ``always @(posedge clk)``
    process (no per-port processes or continuous assignments): it reads the engine's outputs as
    they were in the ending cycle and drives the next cycle's ``ready``/``valid``/``payload``
    with non-blocking assignments, which keeps the event-driven simulators' work per cycle
    small. Its state variables are private to the process and updated with blocking
    assignments, in the order of the driven bench: responses taken, requests accepted (answer
    due ``latency`` cycles later), then the next cycle's stall draws and offers.
    """
    if spec.addr_bits > 32 or spec.edge_bits > 32:
        raise ValueError(f"addresses of {spec.addr_bits} bits / CSR positions of "
                         f"{spec.edge_bits} bits exceed the harness's 32-bit limits")
    P = spec.pes
    ww = spec.word_width
    ab = spec.addr_bits
    widths = {  # (request payload, response payload) bits
        "desc": (spec.node_bits, spec.desc_bits),
        "idx": (spec.edge_bits, spec.idx_bits),
        "feat": (ab, ww),
    }
    limit = {"desc": "n_desc", "idx": "n_idx", "feat": "n_feat"}
    ql = spec.queue_log2
    qn = 1 << ql
    pub = " /*verilator public_flat_rw*/"
    L: list[str] = [
        f"// {spec.name}: free-running bench of {spec.top} (generated by {spec.generator}).",
        f"// P = {P}, word {ww} bits, depths desc {shape.desc}, idx {shape.idx}, "
        f"feat {shape.feat}, out {shape.out}; response queues of {qn} entries.",
        "`timescale 1ns/1ps",
        f"module {spec.name} (",
    ]
    ports = [
        *([] if hdl_clock else [("input", 1, "clk")]), ("input", 1, "rst"), ("input", 1, "start"), ("input", 1, "load"),
        ("input", 1, "dump"),
        *[("input", w, n) for w, n in spec.controls],
        ("input", LATENCY_BITS, "latency"), ("input", 32, "seed"),
        ("input", 16, "p_req"), ("input", 16, "p_resp"), ("input", 16, "p_out"),
        ("input", 32, "max_cycles"),
        ("input", 32, "n_desc"), ("input", 32, "n_idx"), ("input", 32, "n_feat"),
        ("input", 32, "n_out"),
        ("output", 1, "busy"), ("output", 1, "done"), ("output", 1, "overflow"),
        ("output", 32, "cycles"), ("output", 32, "tb_cycles"), ("output", 1, "timeout"),
        ("output", 32, "writes"), ("output", 32, "dups"), ("output", 32, "out_oob"),
        ("output", 1, "mem_err"),
        *([("output", 1, "any_valid")] if spec.valid_status else []),
    ]
    regs = {"tb_cycles", "writes", "dups", "out_oob", "mem_err", "timeout", "any_valid"}
    decl = []
    for d, w, n in ports:
        kind = "reg " if n in regs else ""
        rng = f"[{w - 1}:0] " if w > 1 else ""
        decl.append(f"  {d} {kind}{rng}{n}{pub}")
    L.append(",\n".join(decl))
    L.append(");")
    if hdl_clock:
        L.append(f"  reg clk = 1'b0;\n  always #{CLOCK_NS // 2} clk = ~clk;")
    L.append(f"  reg [{spec.desc_bits - 1}:0] desc_mem [0:{shape.desc - 1}];")
    L.append(f"  reg [{spec.idx_bits - 1}:0] idx_mem [0:{shape.idx - 1}];")
    L.append(f"  reg [{ww - 1}:0] feat_mem [0:{shape.feat - 1}];")
    L.append(f"  reg [{ww}:0] out_mem [0:{shape.out - 1}];")
    L.append("  reg [31:0] now;")
    L.append("  reg measuring;")
    L.append("  reg stall_en;")
    L.append("  integer i;")
    for k in range(P):
        for kind in _MEM_KINDS:
            aw, dw = widths[kind]
            q = f"{kind}{k}"
            L += [
                f"  wire {q}_req_v, {q}_resp_r;",
                f"  wire [{aw - 1}:0] {q}_req_p;",
                f"  reg {q}_req_r, {q}_resp_v;",
                f"  reg [{dw - 1}:0] {q}_resp_p;",
                f"  reg [{dw - 1}:0] {q}_dq [0:{qn - 1}];",
                f"  reg [31:0] {q}_tq [0:{qn - 1}];",
                f"  reg [{ql - 1}:0] {q}_rp, {q}_wp;",
                f"  reg [{ql}:0] {q}_n;",
                f"  reg {q}_h;",
                f"  reg [31:0] {q}_x;",
            ]
        L += [f"  wire out{k}_v;", f"  wire [{ab + ww - 1}:0] out{k}_p;", f"  reg out{k}_r;",
              f"  reg [31:0] out{k}_x;", f"  reg [{ab - 1}:0] out{k}_a;"]
    conns = [".clk(clk)", ".rst(rst)", ".start(start)",
             *[f".{n}({n})" for _, n in spec.controls],
             ".busy(busy)", ".done(done)", ".overflow(overflow)", ".cycles(cycles)"]
    for k in range(P):
        for kind in _MEM_KINDS:
            q = f"{kind}{k}"
            conns += [
                f".{port_signal(f'{kind}_req', k, 'valid')}({q}_req_v)",
                f".{port_signal(f'{kind}_req', k, 'ready')}({q}_req_r)",
                f".{port_signal(f'{kind}_req', k, 'payload')}({q}_req_p)",
                f".{port_signal(f'{kind}_resp', k, 'valid')}({q}_resp_v)",
                f".{port_signal(f'{kind}_resp', k, 'ready')}({q}_resp_r)",
                f".{port_signal(f'{kind}_resp', k, 'payload')}({q}_resp_p)",
            ]
        conns += [f".{port_signal('out', k, 'valid')}(out{k}_v)",
                  f".{port_signal('out', k, 'ready')}(out{k}_r)",
                  f".{port_signal('out', k, 'payload')}(out{k}_p)"]
    assert set(PORTS) == {f"{k}_{d}" for k in _MEM_KINDS for d in ("req", "resp")} | {"out"}
    L.append(f"  {spec.top} engine (\n    " + ",\n    ".join(conns) + "\n  );")
    B: list[str] = []   # body of the one process (indented later)
    if spec.valid_status:
        B.append("any_valid = " + " | ".join(
            [f"{kind}{k}_req_v" for k in range(P) for kind in _MEM_KINDS]
            + [f"out{k}_v" for k in range(P)]) + ";")
    B += [
        "if (load) begin",
        f"  $readmemh(\"{HEX_FILES['desc']}\", desc_mem);",
        f"  $readmemh(\"{HEX_FILES['idx']}\", idx_mem);",
        f"  $readmemh(\"{HEX_FILES['feat']}\", feat_mem);",
        f"  for (i = 0; i < {shape.out}; i = i + 1) out_mem[i] = {ww + 1}'d0;",
        "  writes = 32'd0; dups = 32'd0; out_oob = 32'd0;",
        "end",
        f"if (dump) $writememh(\"{HEX_FILES['out']}\", out_mem);",
        "if (rst) begin",
        "  now = 32'd0; measuring = 1'b0; tb_cycles = 32'd0; mem_err = 1'b0; timeout = 1'b0;",
        "  stall_en = (p_req != 16'd0) | (p_resp != 16'd0) | (p_out != 16'd0);",
    ]
    salt_k = 0
    for k in range(P):
        for kind in _MEM_KINDS:
            q = f"{kind}{k}"
            B += [f"  {q}_rp = 0; {q}_wp = 0; {q}_n = 0; {q}_h = 1'b0; "
                  f"{q}_x = {_seed_expr(_salt(salt_k))};",
                  f"  {q}_req_r <= 1'b0; {q}_resp_v <= 1'b0;"]
            salt_k += 1
    for k in range(P):
        B += [f"  out{k}_x = {_seed_expr(_salt(salt_k + k))}; out{k}_r <= 1'b0;"]
    B += ["end else begin", "  // ---- the ending cycle: output words, run counter"]
    for k in range(P):
        B += [
            f"  if (out{k}_v & out{k}_r) begin",
            "    writes = writes + 32'd1;",
            f"    out{k}_a = out{k}_p[{ab - 1}:0];",
            f"    if ({{{32 - ab}'d0, out{k}_a}} >= n_out) out_oob = out_oob + 32'd1;",
            "    else begin",
            f"      if (out_mem[out{k}_a][{ww}]) dups = dups + 32'd1;",
            f"      out_mem[out{k}_a] = {{1'b1, out{k}_p[{ab + ww - 1}:{ab}]}};",
            "    end",
            "  end",
        ]
    B += [
        "  if (start & ~busy) begin measuring = 1'b1; tb_cycles = 32'd1; end",
        "  else if (measuring & ~done) tb_cycles = tb_cycles + 32'd1;",
        "  timeout = measuring & ~done & (tb_cycles >= max_cycles);",
        "  // ---- memory ports: take responses, accept requests, draw the next cycle",
    ]
    for k in range(P):
        for kind in _MEM_KINDS:
            aw, _ = widths[kind]
            q = f"{kind}{k}"
            B += [
                f"  if ({q}_resp_v & {q}_resp_r) begin {q}_rp = {q}_rp + 1'b1; "
                f"{q}_n = {q}_n - 1'b1; {q}_h = 1'b0; end",
                f"  else {q}_h = {q}_resp_v;",
                f"  if ({q}_req_v & {q}_req_r) begin",
                f"    if ({q}_n == {qn} || {{{32 - aw}'d0, {q}_req_p}} >= {limit[kind]}) "
                "mem_err = 1'b1;",
                f"    {q}_dq[{q}_wp] = {kind}_mem[{q}_req_p];",
                f"    {q}_tq[{q}_wp] = now + {{24'd0, latency}};",
                f"    {q}_wp = {q}_wp + 1'b1; {q}_n = {q}_n + 1'b1;",
                "  end",
                f"  if (stall_en) begin {' '.join(_xorshift(f'{q}_x'))} end",
                f"  {q}_req_r <= ~({q}_x[15:0] < p_req);",
                f"  {q}_resp_v <= ({q}_n != 0) & ({q}_h | ((now + 32'd1 >= {q}_tq[{q}_rp]) "
                f"& ~({q}_x[31:16] < p_resp)));",
                f"  {q}_resp_p <= {q}_dq[{q}_rp];",
            ]
    for k in range(P):
        B += [f"  if (stall_en) begin {' '.join(_xorshift(f'out{k}_x'))} end",
              f"  out{k}_r <= ~(out{k}_x[15:0] < p_out);"]
    B += ["  now = now + 32'd1;", "end"]
    L.append("  always @(posedge clk) begin")
    L += ["    " + ln for ln in B]
    L += ["  end", "endmodule", ""]
    return "\n".join(L)


def write_harness(params: EngineParams, shape: HarnessShape,
                  out_dir: str | os.PathLike[str], hdl_clock: bool = False) -> Path:
    """Write :func:`harness_verilog` to ``out_dir/qgnn_freerun.v``; return the path."""
    from qgnn.core.atomic import write_text_atomic

    return write_text_atomic(Path(out_dir) / HARNESS_FILE,
                             harness_verilog(params, shape, hdl_clock))


def _hex_lines(values: Sequence[int], depth: int) -> str:
    body = "\n".join(format(int(v), "x") for v in values)
    pad = depth - len(values)
    if pad < 0:
        raise ValueError(f"{len(values)} words exceed the memory depth {depth}")
    return body + ("\n" if values else "") + "0\n" * pad


def write_stage_files(img: Any, shape: HarnessShape, directory: str | os.PathLike[str]) -> None:
    """Write the memory image ``img`` (a :class:`hw.memimage.MemoryImage`) as the hex files the
    harness loads, each padded with zeros to its depth; remove a stale output dump."""
    shape.fits(img)
    d = Path(directory)
    (d / HEX_FILES["desc"]).write_text(_hex_lines(img.desc, shape.desc), encoding="ascii")
    (d / HEX_FILES["idx"]).write_text(_hex_lines(img.indices, shape.idx), encoding="ascii")
    (d / HEX_FILES["feat"]).write_text(_hex_lines(img.features, shape.feat), encoding="ascii")
    out = d / HEX_FILES["out"]
    if out.exists():
        out.unlink()


def read_dump(path: str | os.PathLike[str], word_width: int, count: int
              ) -> list[int | None]:
    """The first ``count`` words of a ``$writememh`` output dump: the word, or ``None`` where
    it was never written (or holds unknown bits)."""
    vals: list[int | None] = [None] * count
    mask = (1 << word_width) - 1
    pos = 0
    seen = 0
    for line in Path(path).read_text(encoding="ascii").splitlines():
        for tok in line.split("//", 1)[0].split():
            if tok.startswith("@"):
                pos = int(tok[1:], 16)
                continue
            if pos < count:
                try:
                    v = int(tok, 16)
                except ValueError:        # x / z bits
                    v = None
                vals[pos] = None if v is None or not v >> word_width else v & mask
                seen = max(seen, pos + 1)
            pos += 1
    if seen < count:
        raise ValueError(f"output dump {path} has {seen} words, expected {count}")
    return vals


def compare_outputs(expected: Sequence[int], got: Sequence[int | None]) -> tuple[int, int | None]:
    """``(mismatching words, first mismatching address)``; a word never written counts."""
    bad = 0
    first = None
    for a, want in enumerate(expected):
        if got[a] != want:
            bad += 1
            if first is None:
                first = a
    return bad, first


def stall_threshold(p: float) -> int:
    """A stall probability ``0 <= p < 1`` as the harness's threshold (units of 1/65536)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"stall probability must be in [0, 1), got {p}")
    return min(STALL_SCALE - 1, round(p * STALL_SCALE))


__all__ = [
    "HARNESS_FILE",
    "HARNESS_NAME",
    "CLOCK_NS",
    "HEX_FILES",
    "STALL_SCALE",
    "HarnessShape",
    "HarnessSpec",
    "compare_outputs",
    "harness_spec",
    "harness_text",
    "harness_verilog",
    "queue_log2",
    "read_dump",
    "stall_threshold",
    "write_harness",
    "write_stage_files",
]
