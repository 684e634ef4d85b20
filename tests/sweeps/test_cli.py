"""Tests for the ``qgnn`` command line (sweeps.cli)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from qgnn.sweeps import cli
from qgnn.sweeps.cli import main

REPO = Path(__file__).resolve().parents[2]
TINY = "csbm:n=300"
REQUIRED_KEYS = {
    "dataset", "model", "bits", "seeds", "test_acc_mean", "test_acc_std", "val_acc_mean",
    "per_seed", "qgnn_version", "command",
}


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def isolated_env(session_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No writes to ~/.cache (mirrors of read-only roots go here) and no download attempts."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(session_cache))
    monkeypatch.setenv("QGNN_OFFLINE", "1")
    monkeypatch.delenv("QGNN_DEBUG", raising=False)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """Root with the Cora raw files: $QGNN_DATA_ROOT, else <repo>/../shared/datasets."""
    env = os.environ.get("QGNN_DATA_ROOT")
    root = Path(env) if env else REPO.parent / "shared" / "datasets"
    if not (root / "Cora" / "raw" / "ind.cora.graph").is_file():
        pytest.skip(f"no Cora raw files under {root}: set QGNN_DATA_ROOT")
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qgnn.sweeps.cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )


def assert_one_line_error(code: int, err: str, contains: str = "") -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("qgnn: error: "), err
    assert contains.lower() in lines[0].lower(), err


def error_of(capsys: pytest.CaptureFixture[str], *argv: str, contains: str = "") -> str:
    code = main(list(argv))
    err = capsys.readouterr().err
    assert_one_line_error(code, err, contains)
    return err


# --------------------------------------------------------------------------- help / version


def test_help_lists_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: qgnn")
    for command in ("train", "datasets", "demo"):
        assert command in out


def test_subcommand_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--dataset", "--bits", "--precision", "--seeds", "--json", "--degree-quant"):
        assert flag in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("qgnn ")


def test_missing_command(capsys: pytest.CaptureFixture[str]) -> None:
    error_of(capsys, contains="missing command")


# --------------------------------------------------------------------------- errors


def test_subprocess_bad_bits_is_one_line() -> None:
    proc = run_cli("train", "--dataset", TINY, "--bits", "9")
    assert_one_line_error(proc.returncode, proc.stderr, "invalid bit width 9")
    assert proc.stdout == ""


def test_subprocess_unknown_dataset_is_one_line() -> None:
    proc = run_cli("train", "--dataset", "no-such-graph", "--bits", "4")
    assert_one_line_error(proc.returncode, proc.stderr, "unknown dataset")


@pytest.mark.parametrize(
    ("argv", "contains"),
    [
        (["--bits", "9"], "invalid bit width"),
        (["--bits", "int1"], "invalid bit width"),
        (["--bits", "float16"], "invalid bit width"),
        (["--model", "transformer"], "invalid choice"),
        (["--seeds", "0"], "--seeds"),
        (["--epochs", "-1"], "--epochs"),
        (["--lr", "0"], "--lr"),
        (["--dropout", "1.5"], "dropout"),
        (["--precision", "{not json"], "invalid JSON"),
        (["--precision", '{"roles": {"gradient": 4}}'], "unknown role"),
        (["--precision", '{"layers": {"0": {"bits": 9}}}'], "invalid bit width"),
        (["--precision", "does-not-exist.json"], "not found"),
        (["--split", "10"], "split"),
        (["--threads", "0"], "--threads"),
        (["--distill", "-1"], "--distill must be >= 0"),
        (["--weight-decay", "-0.1"], "--weight-decay must be >= 0"),
        (["--truncation", "bt", "--bits", "4"], "--truncation bt needs --bits 2"),
        (["--propagation", "gat"], "invalid choice"),
        (["--unknown-flag"], "unrecognized arguments"),
    ],
)
def test_train_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], contains: str
) -> None:
    error_of(capsys, "train", "--dataset", TINY, *argv, contains=contains)


def test_train_requires_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    error_of(capsys, "train", "--bits", "4", contains="--dataset")


def test_unknown_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    error_of(capsys, "train", "--dataset", "imagenet", contains="unknown dataset")


def test_missing_data_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A root without Cora's raw files: one line naming what is missing (offline: no probe)."""
    error_of(capsys, "train", "--dataset", "cora", "--data-root", str(tmp_path / "empty"),
             contains="raw file(s) missing")


def test_json_target_is_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    error_of(capsys, "train", "--dataset", TINY, "--json", str(tmp_path), contains="directory")


def test_keyboard_interrupt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import qgnn.model.train

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(qgnn.model.train, "train_seeds", interrupted)
    assert main(["train", "--dataset", TINY, "--quiet"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["qgnn: error: interrupted"]


# --------------------------------------------------------------------------- precision merge


def test_bits_and_precision_merge() -> None:
    p = cli._precision("4", '{"layers": {"1": 8}}')
    assert p.to_dict() == {"bits": 4, "layers": {"1": {"bits": 8}}}
    assert p.label() == "mixed"
    assert cli._precision("4", '{"bits": "int8"}').label() == "int8"  # the file wins
    assert cli._precision("fp32", None).label() == "fp32"
    assert cli._precision(None, None).label() == "fp32"
    assert cli._precision(None, '{"bits": 2}').label() == "int2"


def test_precision_toml_file(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('bits = 4\n[roles.weight]\nbits = 8\n')
    p = cli._precision("2", str(f))
    assert p.spec(0, "weight").bits == 8
    assert p.spec(0, "input").bits == 4


# --------------------------------------------------------------------------- real runs


def test_train_tiny_json_and_determinism(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "sub" / "out.json"
    argv = ["train", "--dataset", TINY, "--bits", "int4", "--epochs", "5", "--seeds", "2",
            "--quiet", "--json", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    line = captured.out.strip()
    assert line.startswith("csbm:") and " gcn int4: test " in line
    assert line.endswith("over 2 seeds")
    d = json.loads(out.read_text())
    assert REQUIRED_KEYS <= d.keys()
    assert d["bits"] == "int4" and d["model"] == "gcn" and d["seeds"] == [0, 1]
    assert len(d["per_seed"]) == 2
    assert d["train_config"]["epochs"] == 5
    assert d["command"].startswith("qgnn train --dataset")
    assert [p.name for p in out.parent.iterdir()] == ["out.json"]  # no temp files left

    # the same seed gives the same result: rerun everything, and seed 1 alone
    out2 = tmp_path / "again.json"
    assert main([*argv[:-1], str(out2)]) == 0
    out3 = tmp_path / "seed1.json"
    assert main(["train", "--dataset", TINY, "--bits", "4", "--epochs", "5", "--seeds", "1",
                 "--seed-start", "1", "--quiet", "--json", str(out3)]) == 0
    capsys.readouterr()
    d2, d3 = json.loads(out2.read_text()), json.loads(out3.read_text())
    assert [r["test_acc"] for r in d2["per_seed"]] == [r["test_acc"] for r in d["per_seed"]]
    assert d3["seeds"] == [1]
    assert d3["per_seed"][0]["test_acc"] == d["per_seed"][1]["test_acc"]


def test_train_hyperparameters_passed(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import torch

    out = tmp_path / "out.json"
    threads = torch.get_num_threads()
    try:
        assert main(["train", "--dataset", TINY, "--model", "decoupled", "--bits", "8",
                     "--epochs", "2", "--seeds", "1", "--hidden", "16", "--layers", "1",
                     "--k", "3", "--alpha", "0.2", "--dropout", "0.1", "--lr", "0.05",
                     "--degree-quant", "--split", "2", "--threads", "1", "--quiet",
                     "--propagation", "smp", "--distill", "0", "--weight-decay", "1e-4",
                     "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    d = json.loads(out.read_text())
    assert d["model_config"] == {**d["model_config"], "name": "decoupled", "hidden": 16,
                                 "layers": 1, "k": 3, "alpha": 0.2, "dropout": 0.1,
                                 "propagation": "smp"}
    assert d["train_config"]["lr"] == 0.05 and d["train_config"]["epochs"] == 2
    assert d["train_config"]["distill"] == 0.0 and d["train_config"]["weight_decay"] == 1e-4
    assert d["train_config"]["degree_quant"] is not None
    assert d["split"] == 2 and d["seeds"] == [0] and d["torch_threads"] == 1


def test_train_cora(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data_root: Path
) -> None:
    out = tmp_path / "cora.json"
    assert main(["train", "--dataset", "cora", "--model", "gcn", "--bits", "4",
                 "--epochs", "5", "--seeds", "1", "--data-root", str(data_root),
                 "--quiet", "--json", str(out)]) == 0
    assert capsys.readouterr().out.startswith("cora gcn int4: test ")
    d = json.loads(out.read_text())
    assert REQUIRED_KEYS <= d.keys()
    assert d["dataset"] == "cora" and len(d["per_seed"]) == 1
    assert 0.0 <= d["test_acc_mean"] <= 100.0


def test_train_data_root_from_env(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QGNN_DATA_ROOT", str(tmp_path / "env-root"))
    error_of(capsys, "train", "--dataset", "cora", contains=str(tmp_path / "env-root"))


# --------------------------------------------------------------------------- datasets / demo


def test_datasets_lists_names_and_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"data root: {tmp_path} (--data-root)"
    for name in ("cora", "actor", "csbm", "rmat"):
        assert f"  {name} " in out
    assert "raw files missing" in out


def test_cli_model_names_match_the_models() -> None:
    from qgnn.model.names import MODEL_NAMES as cli_names
    from qgnn.model.nn import MODEL_NAMES

    assert cli_names == MODEL_NAMES
