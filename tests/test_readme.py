"""The README's Python API example runs as written (under the ``qgnn`` names)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _api_block() -> str:
    text = README.read_text()
    section = text[text.index("## Python API and layering"):]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m, "no python block in the README's API section"
    return m.group(1)


def test_readme_api_example_runs(data_root: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    monkeypatch.setenv("QGNN_DATA_ROOT", data_root)
    threads = torch.get_num_threads()
    try:
        exec(compile(_api_block(), str(README), "exec"), {})  # noqa: S102 - our own README
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.split("\n")
    acc, speedup = (float(v) for v in lines[0].split())
    assert 50.0 < acc <= 100.0 and speedup > 1.0
    assert int(lines[1]) == 3 * 1 + 10 + 2 * (3 + 2)  # T_fill(1) + W * (n_0 + n_2)
