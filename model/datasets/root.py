"""Dataset root resolution and the writable cache mirror for read-only roots.

Resolution order for the dataset root (:func:`resolve_root`):

1. the explicit ``root`` argument,
2. the environment variable ``QGNN_DATA_ROOT`` (if set and non-empty),
3. the user cache ``$XDG_CACHE_HOME/qgnn/datasets`` (``~/.cache/qgnn/datasets``
   when ``XDG_CACHE_HOME`` is unset or not absolute).

PyG writes ``processed/`` (and, when downloading, ``raw/``) next to the data.
If the dataset folder under the chosen root is not writable (a read-only
shared folder, or directories without write permission bits even when running
as root), :func:`prepare_work_root` copies the raw files present there into a
writable mirror ``<cache>/qgnn/datasets-mirror/<root-name>-<hash>/`` and the
caller loads from the mirror instead, so nothing is ever written next to
read-only data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError

__all__ = [
    "ENV_DATA_ROOT",
    "WorkRoot",
    "cache_home",
    "is_writable",
    "mirror_root_for",
    "prepare_work_root",
    "resolve_root",
]

#: Environment variable overriding the default dataset root.
ENV_DATA_ROOT = "QGNN_DATA_ROOT"


def cache_home() -> Path:
    """Return the per-user qgnn cache directory (``$XDG_CACHE_HOME/qgnn``).

    Falls back to ``~/.cache/qgnn`` when ``XDG_CACHE_HOME`` is unset, empty or
    relative (relative values are ignored, as the XDG spec requires).
    The directory is not created.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "qgnn"


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the dataset root directory (absolute path, not created).

    Args:
        root: explicit root; ``None`` means "use ``$QGNN_DATA_ROOT``, else the
            user cache directory ``<cache_home()>/datasets``".

    Returns:
        The absolute root path (``~`` expanded, symlinks not resolved).
    """
    if root is not None:
        if not os.fspath(root):
            raise DatasetError("dataset root must not be an empty path")
        chosen = Path(os.fspath(root))
    elif os.environ.get(ENV_DATA_ROOT):
        chosen = Path(os.environ[ENV_DATA_ROOT])
    else:
        chosen = cache_home() / "datasets"
    return chosen.expanduser().absolute()


def is_writable(path: Path) -> bool:
    """Whether ``path`` (an existing directory) may be written by us.

    Besides :func:`os.access` (which reports read-only mounts), a directory
    whose permission bits grant nobody write access is treated as read-only
    even for privileged users: such a folder was made read-only on purpose.
    """
    try:
        st = path.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False
    if not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        return False
    return os.access(path, os.W_OK | os.X_OK)


def _nearest_existing(path: Path) -> Path:
    """Closest existing ancestor of ``path`` (``path`` itself if it exists)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or "/")


def _dataset_dir_writable(dataset_dir: Path, need_raw_write: bool) -> bool:
    """Whether PyG can work in ``dataset_dir`` (create ``processed/`` etc.)."""
    if not dataset_dir.exists():
        return is_writable(_nearest_existing(dataset_dir))
    if not is_writable(dataset_dir):
        return False
    subdirs = ["processed", "raw"] if need_raw_write else ["processed"]
    return all(is_writable(dataset_dir / s) for s in subdirs if (dataset_dir / s).exists())


def mirror_root_for(source_root: Path) -> Path:
    """Writable mirror root used for the (read-only) ``source_root``.

    ``<cache_home()>/datasets-mirror/<basename>-<sha1(abs path)[:12]>``, so two
    different read-only roots never share a mirror.
    """
    digest = hashlib.sha1(os.fsencode(str(source_root))).hexdigest()[:12]
    label = source_root.name or "root"
    return cache_home() / "datasets-mirror" / f"{label}-{digest}"


@dataclass(frozen=True)
class WorkRoot:
    """Where a dataset is actually loaded from.

    Attributes:
        root: the root handed to the PyG loader (either the source root or
            its mirror).
        source_root: the resolved root the user asked for.
        mirrored: ``True`` when ``root`` is the writable cache mirror.
    """

    root: Path
    source_root: Path
    mirrored: bool


def _copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` to ``dst`` unless size and mtime already match.

    The copy is atomic (temp file + rename), gets mode 0o644 and keeps the
    source mtime so that change detection is stable.  Returns whether a copy
    was made.
    """
    s = src.stat()
    try:
        d = dst.stat()
        if d.st_size == s.st_size and d.st_mtime_ns == s.st_mtime_ns:
            return False
    except FileNotFoundError:
        pass
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        os.chmod(tmp, 0o644)
        os.utime(tmp, ns=(s.st_atime_ns, s.st_mtime_ns))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return True


def prepare_work_root(
    source_root: Path,
    dataset_folder: str,
    raw_subdir: str,
    raw_files: Sequence[str],
) -> WorkRoot:
    """Choose between loading in place and loading from a writable mirror.

    Args:
        source_root: resolved dataset root (see :func:`resolve_root`).
        dataset_folder: the dataset's folder under the root (``"Cora"``).
        raw_subdir: raw folder relative to the root (``"Cora/raw"``).
        raw_files: expected raw file names inside ``raw_subdir``.

    Returns:
        The root to hand to PyG.  When mirroring, every expected raw file that
        exists under ``source_root`` has been copied (if new or changed) into
        the mirror; missing files are left for the caller to report/download.
    """
    src_raw = source_root / raw_subdir
    need_raw_write = not all((src_raw / f).is_file() for f in raw_files)
    if _dataset_dir_writable(source_root / dataset_folder, need_raw_write):
        return WorkRoot(root=source_root, source_root=source_root, mirrored=False)

    mirror = mirror_root_for(source_root)
    dst_raw = mirror / raw_subdir
    try:
        dst_raw.mkdir(parents=True, exist_ok=True)
        for name in raw_files:
            if (src_raw / name).is_file():
                _copy_if_changed(src_raw / name, dst_raw / name)
    except OSError as exc:
        raise DatasetError(
            f"dataset folder {source_root / dataset_folder} is not writable and the "
            f"cache mirror {mirror} could not be prepared ({exc}); set XDG_CACHE_HOME "
            f"to a writable directory or pass a writable root"
        ) from exc
    return WorkRoot(root=mirror, source_root=source_root, mirrored=True)
