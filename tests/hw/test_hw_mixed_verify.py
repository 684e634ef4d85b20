"""`qgnn export` of a degree-mixed GCN (version-3 set: mixed stages) then `qgnn verify` on the
mixed-width engine (Icarus; free-running bench by default, `--bench driven`): every word equal,
cycles equal to the timing contract, a reset in mid-run at a seeded cycle (state cleared, then
the full stage verified), random stalls (slower, words still equal), a corrupted expected word
reported; a reset placed after the run's end fails the check."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from qgnn.hw.verify import verify_vectors
from qgnn.model.golden.format import GoldenMixedStage, read_vectors, write_vectors
from qgnn.model.golden.mixed_stage import MixedAggregationStage, random_mixed_stage
from qgnn.sweeps.cli import main

from qgnn.core.timing import mixed_aggregation_cycles

REPO = Path(__file__).resolve().parents[2]
PRECISION = str(REPO / "examples" / "precision" / "degree-mixed.toml")
PES, LATENCY = 4, 1   # qgnn verify's defaults

pytestmark = [pytest.mark.rtl,
              pytest.mark.skipif(shutil.which("iverilog") is None,
                                 reason="iverilog not installed")]


def _export(dataset: str, out: Path, data_root: str) -> None:
    """`qgnn export ... --precision degree-mixed.toml --epochs 20`."""
    torch.set_num_threads(1)
    argv = ["export", "--dataset", dataset, "--model", "gcn", "--precision", PRECISION,
            "--epochs", "20", "--out", str(out), "--data-root", data_root, "--quiet"]
    assert main(argv) == 0


def _contract(g: GoldenMixedStage) -> int:
    s = g.stage
    return mixed_aggregation_cycles([int(v) for v in s.row_in_words],
                                    [int(v) for v in s.out_words], PES, LATENCY)


def _check_reset(s: dict, contract: int, seed: int) -> None:
    """The stage's reset check ran in the middle half of the contract and found every status
    signal and valid cleared under reset."""
    assert s["reset_ok"] is True
    assert contract // 4 <= s["reset_at"] <= 3 * contract // 4
    assert s["reset_state"] == {"busy": 0, "done": 0, "overflow": 0, "cycles": 0,
                                "any_valid": 0}
    assert s["seed"] == seed


def _check_ok(vec: Path, report: Path, bench: str = "freerun",
              capsys: pytest.CaptureFixture[str] | None = None) -> list[GoldenMixedStage]:
    assert main(["verify", "--vectors", str(vec), "--json", str(report), "--bench", bench]) == 0
    vs = read_vectors(vec)
    assert vs.manifest["version"] == 3
    golden = list(vs.stages)
    assert golden and all(isinstance(g, GoldenMixedStage) for g in golden)
    d = json.loads(report.read_text())
    assert d["ok"] is True and d["mismatches"] == 0 and d["first_mismatch"] is None
    assert [s["name"] for s in d["stages"]] == [g.name for g in golden]
    assert [dz["kind"] for dz in d["designs"]] == ["mixed"]
    assert d["designs"][0]["bench"] == bench
    for s, g in zip(d["stages"], golden, strict=True):
        assert s["kind"] == "mixed" and s["bench"] == bench and s["ok"] is True
        assert s["outputs_checked"] == s["writes"] == len(g.expected_words()) > 0
        assert s["mismatches"] == 0 and not s["overflow"] and s["completed"]
        want = _contract(g)
        assert s["rtl_cycles"] == s["expected_cycles"] == s["dut_cycles"] == want
        assert s["sim_cycles_per_s"] > 0
        _check_reset(s, want, 1)
    # the seeded reset cycles differ between the stages (draws per stage index)
    assert len({s["reset_at"] for s in d["stages"]}) == len(golden)
    assert d["resets_checked"] == len(golden) and d["reset_ok"] is True
    assert d["outputs_checked"] == sum(len(g.expected_words()) for g in golden)
    if capsys is not None:
        out = capsys.readouterr().out
        assert out.count(": cleared") == len(golden)
        assert f"{len(golden)} reset checks passed" in out
    return golden


def _corrupt(vec: Path, golden: list[GoldenMixedStage], stage: int, node: int,
             feature: int) -> None:
    """Change one expected output code of ``stage`` (repacked consistently, so the reader
    accepts the set with check=False)."""
    g = golden[stage]
    f = vec / json.loads((vec / "manifest.json").read_text())["stages"][stage]["file"]
    arrays = dict(np.load(f))
    codes = arrays["expected_codes"].astype(np.int64)
    bits = int(g.stage.out_bits[int(g.stage.dst_bucket[node])])
    codes[node, feature] = (codes[node, feature] + 1) % (1 << bits)
    arrays["expected_codes"] = codes.astype(np.uint8)
    arrays["expected_packed"] = g.stage.packed_output(codes)
    np.savez_compressed(f, **arrays)


def _check_mismatch(vec: Path, golden: list[GoldenMixedStage], report: Path,
                    extra: list[str]) -> dict:
    """Corrupt stage 1, node 5 (feature 3) and verify: exactly that word is reported."""
    node, feature = 5, 3
    _corrupt(vec, golden, 1, node, feature)
    assert main(["verify", "--vectors", str(vec), "--json", str(report), *extra]) == 1
    d = json.loads(report.read_text())
    assert d["ok"] is False and d["mismatches"] == 1
    assert [s["mismatches"] for s in d["stages"]] == [0, 1]
    assert [s["ok"] for s in d["stages"]] == [True, False]
    st = golden[1].stage
    lanes = st.word_width // int(st.out_bits[int(st.dst_bucket[node])])
    fm = d["first_mismatch"]
    assert (fm["stage"], fm["node"], fm["word"], fm["lane"], fm["feature"]) == (
        golden[1].name, node, feature // lanes, feature % lanes, feature)
    assert fm["got"] is not None and fm["got"] != fm["expected"]
    return d


def test_csbm_mixed_export_verify(tmp_path: Path, data_root: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    """csbm:n=300 (two mixed stages, F = 64 and 5) on the free-running bench: exact words,
    contract cycles, reset check passed; then one corrupted expected word, verified with
    random stalls (seed 3): only that word differs (located at its row width), every stage
    slower than the contract, the reset checks (under stalls) still pass."""
    vec = tmp_path / "vec"
    _export("csbm:n=300", vec, data_root)
    golden = _check_ok(vec, tmp_path / "ok.json", capsys=capsys)
    d = _check_mismatch(vec, golden, tmp_path / "bad.json",
                        ["--stalls", "0.3", "--seed", "3"])
    assert (d["stalls"], d["seed"], d["bench"]) == (0.3, 3, "freerun")
    assert all(s["stalled"] and s["completed"] and s["rtl_cycles"] > s["expected_cycles"]
               == _contract(g) for s, g in zip(d["stages"], golden, strict=True))
    for s, g in zip(d["stages"], golden, strict=True):
        _check_reset(s, _contract(g), 3)


@pytest.mark.slow  # ~70 s on Icarus (driven bench); the csbm test above covers the same path
def test_cora_mixed_export_verify(tmp_path: Path, data_root: str) -> None:
    """Cora (2708 rows, 13264 terms; F = 64 and 7): exact words and contract cycles, then a
    corrupted expected word is reported (~1.5 min on Icarus: two verify runs of ~36 s)."""
    vec = tmp_path / "vec"
    _export("cora", vec, data_root)
    golden = _check_ok(vec, tmp_path / "ok.json")
    _check_mismatch(vec, golden, tmp_path / "bad.json", ["--bench", "driven"])


def _small_mixed(seed: int = 3, name: str = "m1") -> MixedAggregationStage:
    return random_mixed_stage(seed, num_nodes=10, features=9, bits=(2, 8), word_width=16,
                              r_bits=6, name=name)


def _small_contract(mix: MixedAggregationStage, pes: int, latency: int) -> int:
    return mixed_aggregation_cycles([int(v) for v in mix.row_in_words],
                                    [int(v) for v in mix.out_words], pes, latency)


def test_uniform_and_mixed_stages_in_one_set(tmp_path: Path) -> None:
    """A version-3 set with a uniform INT4 stage and a mixed INT2/INT8 stage: the uniform one
    runs on today's engine, the mixed one on the mixed engine, both on the free-running bench;
    both exact, cycles equal to their contracts; only the mixed stage gets a reset check."""
    from qgnn.model.golden.stage import random_stage

    from qgnn.core.timing import aggregation_cycles

    uni = random_stage(np.random.default_rng(5), num_nodes=12, features=7, bits=4,
                       word_width=16, name="u0")
    mix = _small_mixed()
    vec = write_vectors(tmp_path / "vec", [uni, mix], {"test": "uniform + mixed"})
    rep = verify_vectors(vec, pes=2, latency=2, work_dir=tmp_path / "work")
    assert rep.ok and rep.mismatches == 0
    assert [(s.name, s.kind, s.bench) for s in rep.stages] == [
        ("u0", "uniform", "freerun"), ("m1", "mixed", "freerun")]
    assert [d.get("kind", "uniform") for d in rep.designs] == ["uniform", "mixed"]
    u, m = rep.stages
    assert u.rtl_cycles == aggregation_cycles(np.diff(uni.indptr).tolist(), uni.words_per_row,
                                              2, 2)
    want = _small_contract(mix, 2, 2)
    assert m.rtl_cycles == m.dut_cycles == want
    assert m.outputs_checked == m.writes == len(mix.output_words())
    assert (u.reset_at, u.reset_ok) == (None, None)
    assert m.reset_ok is True and want // 4 <= m.reset_at <= 3 * want // 4
    d = rep.to_dict()
    assert d["resets_checked"] == 1 and d["reset_ok"] is True


@pytest.mark.parametrize("bench", ["freerun", "driven"])
def test_reset_after_the_run_fails_the_check(tmp_path: Path, bench: str) -> None:
    """A reset placed after the mixed run has finished (``reset_at``) fails the stage's reset
    check on either bench (the run was not going any more), although words and cycles are
    exact; ``reset_at < 2`` is refused."""
    mix = _small_mixed()
    vec = write_vectors(tmp_path / "vec", [mix], {"test": "mixed"})
    want = _small_contract(mix, 2, 1)
    rep = verify_vectors(vec, pes=2, latency=1, bench=bench, reset_at=want + 40)
    (m,) = rep.stages
    assert m.bench == bench and m.mismatches == 0 and m.rtl_cycles == want and m.cycles_ok
    assert m.reset_at == want + 40 and m.reset_ok is False
    assert m.reset_state["done"] == 0          # reset clears done even after the run
    assert not m.ok and not rep.ok
    d = rep.to_dict()
    assert d["ok"] is False and d["reset_ok"] is False and d["resets_checked"] == 1
    with pytest.raises(ValueError, match="reset_at must be an integer >= 2"):
        verify_vectors(vec, reset_at=1)


def test_driven_bench_reset_check_with_stalls(tmp_path: Path) -> None:
    """The driven bench with random stalls: the reset check (drawn from seed 9) passes, the
    stage is exact and slower than the contract."""
    mix = _small_mixed(4, "m2")
    vec = write_vectors(tmp_path / "vec", [mix], {"test": "mixed"})
    want = _small_contract(mix, 3, 2)
    rep = verify_vectors(vec, pes=3, latency=2, bench="driven", stalls=0.3, seed=9)
    (m,) = rep.stages
    assert rep.ok and m.bench == "driven" and m.stalled and m.mismatches == 0
    assert m.writes == m.outputs_checked == len(mix.output_words())
    assert m.rtl_cycles == m.dut_cycles > want == m.expected_cycles
    assert m.reset_ok is True and want // 4 <= m.reset_at <= 3 * want // 4
    assert m.reset_state == {"busy": 0, "done": 0, "overflow": 0, "cycles": 0, "any_valid": 0}
