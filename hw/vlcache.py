"""Faster Verilator builds of the free-running bench: a cache of Verilator's run-time objects
and no precompiled headers.

A cocotb Verilator build compiles, besides the model, five objects that do not depend on the
design: ``verilated.o``, ``verilated_dpi.o``, ``verilated_vpi.o``, ``verilated_threads.o`` and
cocotb's ``verilator.o`` (about two thirds of the C++ compile time of a Cora-sized engine).
:func:`prepare` copies them from a cache directory into the build directory before ``make``
(make then sees them up to date), and :func:`store` saves them after a successful build. The
cache key (:func:`runtime_key`) covers the Verilator installation, cocotb's version, the C++
compiler and the optimisation flags, so a stale object is never reused.

Precompiled headers: Verilator's makefile builds two (``Vtop__pch.h.fast.gch`` and
``.slow.gch``), each a full compile of the design's headers, which costs more than it saves
for a model of a handful of files. :data:`MAKE_ARGS` makes the ``.gch`` rule only preprocess
(``-E``), GCC ignores a ``.gch`` that is not a valid precompiled header, and :func:`prepare`
writes the headers ``Vtop__pch.h.fast`` / ``.slow`` that the compile rules ``-include``.

Run as ``python -m qgnn.hw.vlcache prepare|store BUILD_DIR KEY`` (the build's commands).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

#: Design-independent objects of a cocotb Verilator build.
RUNTIME_OBJECTS = ("verilated.o", "verilated_dpi.o", "verilated_vpi.o", "verilated_threads.o",
                   "verilator.o")
#: Optimisation of the model's C++ (``OPT_FAST``): ``-O1`` compiles about as fast as ``-O0``
#: relative to ``-Os`` and runs about as fast as ``-Os``.
OPT_FAST = "-O1"
#: Extra ``make`` variables of the free-running Verilator build (see the module docstring).
MAKE_ARGS = (f"OPT_FAST={OPT_FAST}", "CFG_CXXFLAGS_PCH=-E")


def cache_root() -> Path:
    """``$QGNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/qgnn``, else ``~/.cache/qgnn``."""
    env = os.environ.get("QGNN_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "qgnn"


def runtime_key(verilator_root: str | os.PathLike[str]) -> str:
    """Hash naming one set of run-time objects: Verilator installation (path and its
    ``verilated.mk``), cocotb version and its ``verilator.cpp``, ``c++ --version``, flags."""
    import cocotb
    import cocotb_tools.config

    h = hashlib.sha256()
    root = Path(verilator_root)
    h.update(str(root.resolve()).encode())
    for f in (root / "include" / "verilated.mk",
              cocotb_tools.config.share_dir / "lib" / "verilator" / "verilator.cpp"):
        h.update(f.read_bytes() if f.is_file() else b"-")
    h.update(cocotb.__version__.encode())
    try:
        cxx = subprocess.run(["c++", "--version"], capture_output=True, text=True, check=False)
        h.update(cxx.stdout.encode())
    except OSError:
        h.update(b"no c++")
    h.update(" ".join(MAKE_ARGS).encode())
    h.update(os.environ.get("MAKEFLAGS", "").encode())
    return h.hexdigest()[:20]


def _cache_dir(key: str) -> Path:
    return cache_root() / "verilator-runtime" / key


def prepare(build_dir: str | os.PathLike[str], key: str) -> int:
    """Before ``make``: the ``-include``d PCH headers, and the cached run-time objects (as many
    as the cache has). Returns the number of objects copied."""
    bdir = Path(build_dir)
    for kind in ("fast", "slow"):
        (bdir / f"Vtop__pch.h.{kind}").write_text('#include "Vtop__pch.h"\n', encoding="ascii")
    src = _cache_dir(key)
    copied = 0
    for name in RUNTIME_OBJECTS:
        f = src / name
        if f.is_file():
            shutil.copyfile(f, bdir / name)   # a fresh mtime: newer than its sources
            copied += 1
    return copied


def store(build_dir: str | os.PathLike[str], key: str) -> int:
    """After a successful ``make``: save the run-time objects the cache lacks (atomically).
    Returns the number stored."""
    bdir = Path(build_dir)
    dst = _cache_dir(key)
    dst.mkdir(parents=True, exist_ok=True)
    stored = 0
    for name in RUNTIME_OBJECTS:
        f = bdir / name
        if f.is_file() and not (dst / name).is_file():
            tmp = dst / f".{name}.{os.getpid()}.tmp"
            shutil.copyfile(f, tmp)
            os.replace(tmp, dst / name)
            stored += 1
    return stored


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in ("prepare", "store"):
        print("usage: python -m qgnn.hw.vlcache prepare|store BUILD_DIR KEY", file=sys.stderr)
        return 2
    fn = prepare if args[0] == "prepare" else store
    fn(args[1], args[2])
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["MAKE_ARGS", "OPT_FAST", "RUNTIME_OBJECTS", "cache_root", "main", "prepare",
           "runtime_key", "store"]
