"""Repository layout rules that pytest itself would only report as a confusing collection error."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_test_module_basenames_are_unique() -> None:
    """Test folders have no __init__.py, so two test modules with one basename collide."""
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py")
    assert not [n for n, c in names.items() if c > 1]
