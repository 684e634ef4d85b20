"""cocotb test module of the mixed free-running bench (``qgnn verify`` of mixed stages).

The toplevel is the ``qgnn_mixed_freerun`` harness (:mod:`hw.mixed_freerun`): memories, latency
and stalls in the HDL. For each selected mixed stage this module writes the hex files, sets the
engine's run-time inputs (``num_nodes``, ``features``, the per-bucket ``in_sel``, ``z_in``,
``weight``, ``out_sel``, ``z_out``) and the harness's, then

1. **reset check** (``reset_check``, default on): resets and loads the harness, pulses
   ``start``, lets the engine run until cycle :func:`hw.mixed_freerun.reset_cycle` (one
   ``Timer``, no Python per cycle), raises ``rst`` for :data:`hw.mixed_freerun.RESET_HOLD`
   cycles and reads ``busy``, ``done``, ``overflow``, ``cycles`` and ``any_valid``: all must be
   0, and the run must not have finished before the reset;
2. **verified runs** (``repeat`` of them, each checked in full): the run of
   :mod:`hw.cocotb_freerun` (reset with ``load``: memories reloaded, output memory cleared;
   ``start``; ``RisingEdge(done)`` or ``RisingEdge(timeout)``; counters; one ``$writememh``
   dump), every word compared with the set's ``expected_packed`` words and the cycles with
   :func:`qgnn.core.timing.mixed_aggregation_cycles`.

Configuration (JSON named by ``$QGNN_HW_BENCH_CONFIG``, written by :func:`hw.verify.run_cocotb`):
``vectors``, ``params`` (``MixedParams.to_dict``), ``latency``, ``result``, ``stages``
(indices), ``shape`` (:class:`hw.freerun.HarnessShape`), ``stalls`` (probability on every
request, response and output handshake), ``seed``, ``max_cycles`` (``None``: the uniform
bench's :func:`hw.cocotb_freerun.timeout_cycles`), ``repeat``, ``hdl_clock``,
``reset_check``, ``reset_cycle`` (``None``: drawn from the seed). Mismatches are reported,
not raised.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge, Timer
from qgnn.hw.cocotb_freerun import _one_run, init_harness, timeout_cycles
from qgnn.hw.cocotb_mixed import mixed_first_mismatch
from qgnn.hw.cocotb_verify import load_config
from qgnn.hw.freerun import CLOCK_NS, HEX_FILES, HarnessShape, read_dump
from qgnn.hw.mixed_freerun import (
    RESET_HOLD,
    RESET_STATE_KEYS,
    reset_cleared,
    reset_cycle,
    write_mixed_stage_files,
)
from qgnn.hw.mixed_memimage import MixedImage, mixed_memory_image
from qgnn.hw.mixed_params import BUCKET_INPUTS, MixedParams

from qgnn.core.timing import mixed_aggregation_cycles, mixed_ideal_cycles


def _set_inputs(dut: Any, img: MixedImage) -> None:
    """The engine's run-time inputs and the harness's table sizes for ``img``."""
    dut.num_nodes.value = img.num_nodes
    dut.features.value = img.features
    for name in BUCKET_INPUTS:
        for k, v in enumerate(getattr(img, name)):
            getattr(dut, f"{name}__{k}").value = v
    dut.n_desc.value = len(img.desc)
    dut.n_idx.value = len(img.indices)
    dut.n_feat.value = len(img.feat_words)
    dut.n_out.value = len(img.expected)


async def reset_in_mid_run(dut: Any, clk: Any, cut: int) -> dict:
    """Reset and load the harness, start, raise ``rst`` in cycle ``cut`` (0 = the cycle
    ``start`` is accepted), hold it :data:`RESET_HOLD` cycles and read the engine's state.

    Returns ``reset_at`` (``cut``), ``running`` (``busy`` and not ``done`` just before),
    ``state`` (the signals of :data:`RESET_STATE_KEYS` under reset) and ``ok`` (running,
    the harness's ``tb_cycles`` equal to ``cut`` when ``rst`` rose, every state signal 0)."""
    dut.rst.value = 1
    dut.load.value = 1
    await RisingEdge(clk)
    dut.load.value = 0
    await RisingEdge(clk)
    dut.rst.value = 0
    await RisingEdge(clk)
    dut.start.value = 1
    await RisingEdge(clk)              # start accepted at the end of cycle 0
    dut.start.value = 0
    if cut > 2:                        # one timer to half a period before the edge of cycle cut
        await Timer((cut - 2) * CLOCK_NS + CLOCK_NS // 2, unit="ns")
    await RisingEdge(clk)
    dut.rst.value = 1                  # sampled at the edge ending cycle `cut`
    await ReadOnly()
    at = int(dut.tb_cycles.value)
    running = bool(int(dut.busy.value)) and not bool(int(dut.done.value))
    for _ in range(RESET_HOLD):
        await RisingEdge(clk)
    await ReadOnly()
    state = {k: int(getattr(dut, k).value) for k in RESET_STATE_KEYS}
    await RisingEdge(clk)
    dut.rst.value = 0
    # tb_cycles counts the run's cycles (it stops at done): it must show the cycle `cut`
    return {"reset_at": cut, "running": running, "state": state,
            "ok": running and at == cut and reset_cleared(state)}


@cocotb.test()
async def mixed_freerun_stages(dut: Any) -> None:
    """Every selected mixed stage of the vector set: reset check, then the verified runs."""
    from qgnn.model.golden.format import read_vectors

    cfg = load_config()
    prm = MixedParams.from_dict(cfg["params"])
    shape = HarnessShape(**cfg["shape"])
    latency = int(cfg["latency"])
    p = float(cfg.get("stalls", 0.0))
    seed = int(cfg.get("seed", 1)) & 0xFFFFFFFF
    repeat = max(1, int(cfg.get("repeat", 1)))
    max_cycles_cfg = cfg.get("max_cycles")
    vs = read_vectors(cfg["vectors"], check=False)
    here = Path(os.getcwd())
    clk = init_harness(dut, cfg, latency, seed, dict.fromkeys(("p_req", "p_resp", "p_out"), p))
    # _one_run (the uniform bench's run) needs only the word width and the expected words;
    # its first mismatch is replaced by the mixed one (row widths) below
    run_prm = SimpleNamespace(word_width=prm.word_width, bits=prm.word_width, lanes=1)
    reports = []
    for k in cfg["stages"]:
        g: Any = vs.stages[int(k)]               # a GoldenMixedStage (hw.verify selects them)
        st = g.stage
        img = mixed_memory_image(st, prm)
        img.expected = g.expected_words()          # the set's words, not recomputed
        write_mixed_stage_files(img, shape, here)
        _set_inputs(dut, img)
        contract = mixed_aggregation_cycles(img.row_in_words, img.row_out_words, prm.pes,
                                            latency, overlap_drain=prm.overlap_drain)
        dut.max_cycles.value = (int(max_cycles_cfg) if max_cycles_cfg is not None
                                else timeout_cycles(contract, p))
        reset = None
        if cfg.get("reset_check", True):
            cut = (int(cfg["reset_cycle"]) if cfg.get("reset_cycle") is not None
                   else reset_cycle(contract, seed, int(k)))
            reset = await reset_in_mid_run(dut, clk, cut)
        runs = []
        for _ in range(repeat):
            r = await _one_run(dut, clk, SimpleNamespace(expected=img.expected,
                                                         words_per_row=1), run_prm, here)
            got = read_dump(here / HEX_FILES["out"], prm.word_width, len(img.expected))
            r["first"] = mixed_first_mismatch(
                img.expected, {a: w for a, w in enumerate(got) if w is not None},
                [int(v) for v in st.out_offset], [int(st.out_bits[b]) for b in st.dst_bucket],
                st.word_width)
            runs.append(r)
        first = runs[0]
        consistent = all((r["tb_cycles"], r["dut_cycles"], r["writes"]) ==
                         (first["tb_cycles"], first["dut_cycles"], first["writes"])
                         for r in runs)
        worst = max(runs, key=lambda r: r["bad"])
        reports.append({
            "name": g.name, "kind": "mixed", "truncated": False,
            "num_nodes": st.num_nodes, "num_terms": st.num_terms,
            "words_per_row": max(img.row_out_words) if img.row_out_words else 0,
            "outputs_checked": len(img.expected), "mismatches": worst["bad"],
            "first_mismatch": worst["first"], "rtl_cycles": first["tb_cycles"],
            "dut_cycles": first["dut_cycles"], "expected_cycles": contract,
            "ideal_cycles": mixed_ideal_cycles(img.row_in_words, img.row_out_words, prm.pes,
                                               overlap_drain=prm.overlap_drain,
                                               latency=latency),
            "overflow": any(r["overflow"] for r in runs),
            "wall_s": min(r["wall"] for r in runs), "cpu_s": min(r["cpu"] for r in runs),
            "bench": "freerun", "stalled": p > 0, "seed": seed, "writes": first["writes"],
            "mem_error": any(r["mem_err"] for r in runs),
            "completed": all(r["completed"] for r in runs), "repeats": repeat,
            "consistent": consistent, "wall_s_runs": [r["wall"] for r in runs],
            "reset_at": None if reset is None else reset["reset_at"],
            "reset_ok": None if reset is None else reset["ok"],
            "reset_state": None if reset is None else reset["state"],
        })
    Path(cfg["result"]).write_text(json.dumps({"stages": reports}, indent=1), encoding="utf-8")


__all__ = ["mixed_freerun_stages", "reset_in_mid_run"]
