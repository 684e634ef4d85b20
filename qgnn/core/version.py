"""The qgnn version: the installed distribution's, else the one in ``pyproject.toml``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["qgnn_version"]


def qgnn_version() -> str:
    """Installed distribution version, else the version in ``pyproject.toml``, else ``unknown``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qgnn")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        import tomllib

        return str(tomllib.loads(pyproject.read_text())["project"]["version"])
    except (OSError, KeyError, ValueError):
        return "unknown"
