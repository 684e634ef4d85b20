"""Atomic file output: write a temporary file next to the target, then ``os.replace`` it.

Readers never see a half-written report, and an interrupted run leaves the previous file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["check_writable_target", "write_json_atomic", "write_text_atomic"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; create parent directories.

    The file gets the permissions a plain ``open(path, "w")`` would give it (0o666 & ~umask),
    not the 0o600 of the temporary file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write ``obj`` as indented JSON (with a trailing newline) atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def check_writable_target(path: str | os.PathLike[str]) -> None:
    """Fail early (``OSError``) if ``path`` cannot be written, before any long computation.

    Creates missing parent directories; raises ``IsADirectoryError`` when ``path`` is a
    directory and ``PermissionError`` when its directory is not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(21, "output path is a directory", str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    if not os.access(target.parent, os.W_OK | os.X_OK):
        raise PermissionError(13, "output directory is not writable", str(target.parent))
