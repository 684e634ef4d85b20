"""The parts import only downward, under one ``qgnn`` namespace, with no import circles.

Read from the sources' imports (every ``import``/``from`` statement, including the ones inside
functions, resolved to ``qgnn.*`` module names), so the rules hold for lazy imports too:

    qgnn.core    -> core only
    qgnn.model   -> core, model
    qgnn.hw      -> core, model, hw          (never sim, never sweeps)
    qgnn.sim     -> core, model, sim         (never hw, never sweeps)
    qgnn.sweeps  -> everything

and ``qgnn`` itself loads no part. The installed command must also work from a folder holding a
user's own ``model.py``, ``sim.py`` and ``hw/``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Import name of each part -> its folder in the repository.
FOLDERS = {"qgnn": REPO / "qgnn", "qgnn.model": REPO / "model", "qgnn.hw": REPO / "hw",
           "qgnn.sim": REPO / "sim", "qgnn.sweeps": REPO / "sweeps"}
ALLOWED = {
    "core": {"core"},
    "model": {"core", "model"},
    "hw": {"core", "model", "hw"},
    "sim": {"core", "model", "sim"},
    "sweeps": {"core", "model", "hw", "sim", "sweeps"},
    "": {"core"},  # qgnn/__init__.py
}
BARE = {"model", "hw", "sim", "sweeps"}


def _modules() -> dict[str, Path]:
    """Every source module of the distribution, by its ``qgnn.*`` name."""
    mods: dict[str, Path] = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([prefix, *parts])
            if prefix == "qgnn" and parts and parts[0] in BARE:
                continue
            mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[int, str]]:
    """``(line, imported module)`` of every import statement in the module ``name``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:  # ``from qgnn import sim`` imports the module qgnn.sim
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    yield node.lineno, sub


def _part(module: str) -> str | None:
    """``core``/``model``/``hw``/``sim``/``sweeps``, ``""`` for ``qgnn`` itself, None if foreign."""
    if module == "qgnn":
        return ""
    if not module.startswith("qgnn."):
        return None
    return module.split(".")[1]


def _internal(target: str) -> str | None:
    """The qgnn module an import of ``target`` loads (a module, or its package), if any."""
    while target:
        if target in MODULES:
            return target
        target = target.rpartition(".")[0]
    return None


def test_modules_found() -> None:
    for part in ("qgnn.core.timing", "qgnn.model.integer.rules", "qgnn.hw.engine",
                 "qgnn.sim.engines", "qgnn.sweeps.cli"):
        assert part in MODULES


def test_no_bare_part_imports() -> None:
    """No source imports ``model``, ``hw``, ``sim`` or ``sweeps`` outside the namespace."""
    bad = [f"{MODULES[m].relative_to(REPO)}:{line}: {t}"
           for m in MODULES for line, t in _imports(m, MODULES[m]) if t.split(".")[0] in BARE]
    assert not bad, "imports outside the qgnn namespace:\n" + "\n".join(bad)


def _dynamic_imports(path: Path) -> Iterator[tuple[int, str]]:
    """Module names passed as strings to ``find_spec``/``import_module``/``_has``-style calls."""
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        fname = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        arg = node.args[0]
        if (fname in {"find_spec", "import_module", "_has", "__import__"}
                and isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            yield node.lineno, arg.value


def test_no_bare_part_names_in_dynamic_imports() -> None:
    """``importlib`` look-ups name modules under ``qgnn`` too: a bare ``"sim"`` finds the
    folder only when the current directory is the repository root (it once made the installed
    ``qgnn sweep`` believe the simulator was missing)."""
    bad = [f"{path.relative_to(REPO)}:{line}: {name!r}"
           for path in [*MODULES.values(), *(REPO / "tests").rglob("*.py"),
                        *(REPO / "benchmarks").rglob("*.py")]
           for line, name in _dynamic_imports(path) if name.split(".")[0] in BARE]
    assert not bad, "dynamic imports outside the qgnn namespace:\n" + "\n".join(bad)


def test_parts_import_only_downward() -> None:
    bad = []
    for mod, path in MODULES.items():
        src = _part(mod)
        assert src is not None
        for line, target in _imports(mod, path):
            dst = _part(target)
            if dst is None or dst == "":  # foreign, or the (part-free) package root
                continue
            if dst not in ALLOWED[src]:
                bad.append(f"{path.relative_to(REPO)}:{line}: {src or 'qgnn'} imports {target}")
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for _line, target in _imports(mod, path):
            dep = _internal(target)
            if dep is not None and dep != mod:
                graph[mod].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles() -> None:
    """A package importing its own submodules (``__init__`` re-exports) is not a circle; any
    other loop between modules, lazy imports included, is."""
    graph = _graph()
    for mod in graph:  # drop package -> own submodule edges
        if MODULES[mod].name == "__init__.py":
            graph[mod] = {d for d in graph[mod] if not d.startswith(mod + ".")}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_layering_checker_flags_an_upward_import(tmp_path: Path) -> None:
    """The checker itself catches a model module importing the simulator."""
    src = tmp_path / "bad.py"
    src.write_text("def f():\n    from qgnn.sim.config import load_arch\n    from .. import hw\n")
    found = list(_imports("qgnn.model.quant.bad", src))
    assert (2, "qgnn.sim.config") in found
    assert any(t == "qgnn.model" for _l, t in found)
    assert _part("qgnn.sim.config") not in ALLOWED["model"]


def test_pyproject_lists_every_package() -> None:
    """setuptools gets an explicit package list (the folders are mapped under ``qgnn``); a new
    subpackage folder that is missing from it would be left out of a wheel."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {m for m, p in MODULES.items() if p.name == "__init__.py"}
    data_dirs = {f"qgnn.sim.{d}" for d in ("configs", "data")}
    assert found <= listed
    assert listed - found == data_dirs
    mapping = cfg["package-dir"]
    for name, folder in FOLDERS.items():
        assert (REPO / mapping[name]).resolve() == folder.resolve()


def test_importing_qgnn_loads_no_part() -> None:
    code = ("import sys, qgnn; bad = [m for m in sys.modules if m.split('.')[:2] in "
            "[['qgnn', p] for p in ('model', 'hw', 'sim', 'sweeps')]]; sys.exit(1 if bad else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.fixture
def hostile_folder(tmp_path: Path) -> Path:
    """A user's project folder whose own ``model.py``, ``sim.py``, ``sweeps.py`` and ``hw/``
    would break qgnn if it imported them."""
    for name in ("model.py", "sim.py", "sweeps.py"):
        (tmp_path / name).write_text("raise SystemExit('user module imported by qgnn')\n")
    (tmp_path / "hw").mkdir()
    (tmp_path / "hw" / "__init__.py").write_text("raise SystemExit('user hw imported by qgnn')\n")
    return tmp_path


def _qgnn_command() -> str:
    exe = Path(sys.executable).parent / "qgnn"
    if not exe.exists():
        pytest.skip(f"the qgnn command is not installed beside {sys.executable}")
    return str(exe)


def test_installed_command_works_beside_user_modules(hostile_folder: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(hostile_folder)}  # even with the folder on the path
    ok = subprocess.run([_qgnn_command(), "simulate", "--dataset", "csbm:n=60,classes=3",
                         "--model", "gcn", "--bits", "2", "--hidden", "8"],
                        cwd=hostile_folder, env=env, capture_output=True, text=True,
                        check=False, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "speedup" in ok.stdout.lower()


def test_python_m_works_beside_user_modules(hostile_folder: Path) -> None:
    """``python -m`` puts the current folder first on ``sys.path``: still qgnn's modules."""
    code = ("import qgnn.model.quant, qgnn.sim, qgnn.hw.params, qgnn.sweeps.cli as c; "
            "raise SystemExit(c.main(['--version']))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=hostile_folder,
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "qgnn" in proc.stdout
