"""The golden test-vector format: writer and checking reader (format version 3; version 1
sets, which lack the bit-truncation fields, and version 2 sets, which hold only uniform
stages, are still read). Version 3 adds mixed-width stages
(:class:`~model.golden.mixed_stage.MixedAggregationStage`); a set without one is still
written as version 2.

A vector set is a directory holding ``manifest.json`` beside one ``stageNN.npz`` per
aggregation stage. The format is documented in ``docs/golden-vectors.md``; the arithmetic in
:mod:`model.integer.rules`; the memory layout in :mod:`model.golden.packing`.

:func:`write_vectors` computes the expected outputs with :meth:`AggregationStage.compute` and
writes the set atomically. :func:`read_vectors` checks everything it can (dtypes, shapes, CSR,
code ranges, packing, widths, manifest/array agreement and, with ``check=True``, the expected
outputs against the reference) and raises :class:`VectorFormatError`, naming the file and the
field, on the first problem.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..integer import rules
from . import packing
from .mixed_stage import MixedAggregationStage
from .stage import AggregationStage

#: Value of the manifest's ``format`` key.
FORMAT_NAME = "qgnn-golden-vectors"
#: Version this module writes; readers accept versions up to this one and reject newer ones.
FORMAT_VERSION = 3
#: Version written for a set of uniform stages only (unchanged files for unchanged content).
UNIFORM_VERSION = 2
#: Stage kinds of a version-3 manifest entry (``kind`` key).
STAGE_KINDS = ("uniform", "mixed")
#: Name of the manifest file inside a vector-set directory.
MANIFEST_NAME = "manifest.json"

#: Top-level manifest keys (all required).
MANIFEST_KEYS = ("format", "version", "created_by", "source", "rounding", "stages")
#: Integer fields of a manifest stage entry (all required).
STAGE_INT_FIELDS = (
    "bits",
    "out_bits",
    "word_width",
    "lanes",
    "out_lanes",
    "features",
    "words_per_row",
    "out_words_per_row",
    "num_nodes",
    "num_src",
    "num_terms",
    "max_terms",
    "acc_width",
    "mult_bits",
    "max_shift",
    "zero_point_in",
    "zero_point_out",
)
#: Bit-truncation fields added by version 2, with the values a version-1 entry implies
#: (``out_grid_bits`` defaults to ``out_bits``, written ``None`` here).
V2_FIELDS: dict[str, Any] = {"in_level": 1, "out_grid_bits": None, "out_thresholds": None}
#: All fields of a manifest stage entry (all required; ``V2_FIELDS`` from version 2 on).
STAGE_FIELDS = ("name", "file", *STAGE_INT_FIELDS, "rounding", "meta", *V2_FIELDS)
#: Arrays of a stage ``.npz`` file (all required), in documentation order.
ARRAY_NAMES = (
    "indptr",
    "indices",
    "multiplier",
    "shift",
    "codes",
    "packed_input",
    "expected_acc",
    "expected_codes",
    "expected_packed",
)

#: Integer fields of a mixed (version 3, ``kind = "mixed"``) manifest stage entry.
MIXED_INT_FIELDS = (
    "word_width",
    "features",
    "num_nodes",
    "num_src",
    "num_terms",
    "max_terms",
    "num_buckets",
    "num_out_buckets",
    "r_bits",
    "acc_width",
    "mult_bits",
    "max_shift",
    "input_words",
    "output_words",
)
#: Per-bucket integer-list fields of a mixed manifest entry (``[K]`` or ``[K_out]``).
MIXED_LIST_FIELDS = (
    "bits_in",
    "z_in",
    "weight",
    "words_in_bucket",
    "out_bits",
    "z_out",
    "words_out_bucket",
)
#: All fields of a mixed manifest stage entry (all required).
MIXED_FIELDS = ("name", "file", "kind", *MIXED_INT_FIELDS, *MIXED_LIST_FIELDS, "rounding", "meta")
#: Arrays of a mixed stage ``.npz`` file (all required), in documentation order.
MIXED_ARRAY_NAMES = (
    "indptr",
    "indices",
    "multiplier",
    "shift",
    "src_bucket",
    "dst_bucket",
    "feat_offset",
    "out_offset",
    "codes",
    "packed_input",
    "expected_acc",
    "expected_codes",
    "expected_packed",
)

_STAGE_FILE_RE = re.compile(r"^stage\d+\.npz$")


class VectorFormatError(ValueError):
    """A golden vector set is malformed; the message names the file and the field."""


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def code_dtype(bits: int) -> np.dtype:
    """Array dtype of ``bits``-wide codes in a vector set: uint8 up to 8 bits, else uint16."""
    return np.dtype(np.uint8) if bits <= 8 else np.dtype(np.uint16)


def _created_by() -> str:
    try:
        return f"qgnn {importlib.metadata.version('qgnn')}"
    except importlib.metadata.PackageNotFoundError:
        return "qgnn unknown"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _stage_file_name(index: int, count: int) -> str:
    return f"stage{index:0{max(2, len(str(count - 1)))}d}.npz"


def _first_diff(a: np.ndarray, b: np.ndarray) -> tuple[int, ...]:
    """Index of the first element where two equal-shape arrays differ."""
    return tuple(int(x) for x in np.argwhere(a != b)[0])


# --------------------------------------------------------------------------------------------
# data classes
# --------------------------------------------------------------------------------------------
@dataclass
class GoldenStage:
    """One checked stage of a vector set.

    Attributes:
        stage: the stage's integer inputs (codes as int64, widths from the manifest).
        expected_acc: expected accumulators, int64 ``[N, F]``.
        expected_codes: expected output codes, int64 ``[N, F]``.
        expected_packed: expected output memory bytes, uint8 ``[N, W_out * word_width // 8]``.
    """

    stage: AggregationStage
    expected_acc: np.ndarray
    expected_codes: np.ndarray
    expected_packed: np.ndarray

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def packed_input(self) -> np.ndarray:
        """Input memory bytes, uint8 ``[N_src, W * word_width // 8]`` (pad lanes hold z_in)."""
        return self.stage.packed_input()

    def input_words(self) -> list[list[int]]:
        """Input rows as Python-int words (``word_width`` bits each), for testbenches."""
        return packing.words_as_ints(self.packed_input, self.stage.word_width)

    def expected_words(self) -> list[list[int]]:
        """Expected output rows as Python-int words, for testbenches."""
        return packing.words_as_ints(self.expected_packed, self.stage.word_width)


@dataclass
class GoldenMixedStage:
    """One checked mixed-width stage of a version-3 vector set.

    Attributes:
        stage: the stage's integer inputs (:class:`MixedAggregationStage`).
        expected_acc: expected weighted accumulators ``sum R[k(j)] q_j``, int64 ``[N, F]``.
        expected_codes: expected output codes, int64 ``[N, F]``.
        expected_packed: expected output memory bytes, flat uint8
            ``[output_words * word_width // 8]`` (row ``i`` from word ``out_offset[i]``).
    """

    stage: MixedAggregationStage
    expected_acc: np.ndarray
    expected_codes: np.ndarray
    expected_packed: np.ndarray

    @property
    def name(self) -> str:
        return self.stage.name

    @property
    def packed_input(self) -> np.ndarray:
        """Input memory bytes, flat uint8 ``[input_words * word_width // 8]``."""
        return self.stage.packed_input()

    @property
    def feat_offset(self) -> np.ndarray:
        """Word address of every source row, int64 ``[N_src]``."""
        return self.stage.feat_offset

    @property
    def out_offset(self) -> np.ndarray:
        """Word address of every output row, int64 ``[N]``."""
        return self.stage.out_offset

    def input_words(self) -> list[int]:
        """The input memory as Python-int words, one per word address (testbenches)."""
        return self.stage.input_words()

    def expected_words(self) -> list[int]:
        """The expected output memory as Python-int words, one per word address."""
        nb = self.stage.word_width // 8
        b = np.asarray(self.expected_packed, dtype=np.uint8).tobytes()
        return [int.from_bytes(b[k:k + nb], "little") for k in range(0, len(b), nb)]


@dataclass
class VectorSet:
    """A read (and checked) golden vector set.

    Attributes:
        path: the vector-set directory.
        manifest: the parsed ``manifest.json``.
        stages: the stages, in manifest order.
    """

    path: Path
    manifest: dict
    stages: list[GoldenStage | GoldenMixedStage]

    def __len__(self) -> int:
        return len(self.stages)

    def __iter__(self) -> Iterator[GoldenStage | GoldenMixedStage]:
        return iter(self.stages)

    def stage(self, name: str) -> GoldenStage | GoldenMixedStage:
        """The stage called ``name`` (``KeyError`` listing the names if absent)."""
        for g in self.stages:
            if g.name == name:
                return g
        raise KeyError(f"no stage {name!r}; stages: {[g.name for g in self.stages]}")


# --------------------------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------------------------
def _stage_entry(stage: AggregationStage, file: str) -> dict:
    assert stage.acc_width is not None
    return {
        "name": stage.name,
        "file": file,
        "bits": int(stage.bits),
        "out_bits": int(stage.out_bits),
        "word_width": int(stage.word_width),
        "lanes": packing.lanes(stage.bits, stage.word_width),
        "out_lanes": packing.lanes(stage.out_bits, stage.word_width),
        "features": stage.features,
        "words_per_row": stage.words_per_row,
        "out_words_per_row": packing.words_per_row(stage.features, stage.out_bits, stage.word_width),
        "num_nodes": stage.num_nodes,
        "num_src": int(stage.codes.shape[0]),
        "num_terms": stage.num_terms,
        "max_terms": stage.max_terms,
        "acc_width": int(stage.acc_width),
        "mult_bits": int(stage.mult_bits),
        "max_shift": rules.MAX_SHIFT,
        "zero_point_in": int(stage.zero_point_in),
        "zero_point_out": int(stage.zero_point_out),
        "rounding": rules.ROUNDING,
        "meta": dict(stage.meta),
        "in_level": int(stage.in_level),
        "out_grid_bits": int(stage.out_grid_bits or stage.out_bits),
        "out_thresholds": None if stage.out_thresholds is None else [
            int(t) for t in stage.out_thresholds],
    }


def _stage_arrays(stage: AggregationStage) -> dict[str, np.ndarray]:
    acc, out = stage.compute()
    return {
        "indptr": stage.indptr.astype(np.int64),
        "indices": stage.indices.astype(np.int64),
        "multiplier": stage.multiplier.astype(np.int64),
        "shift": stage.shift.astype(np.int64),
        "codes": stage.codes.astype(code_dtype(stage.bits)),
        "packed_input": stage.packed_input(),
        "expected_acc": acc.astype(np.int64),
        "expected_codes": out.astype(code_dtype(stage.out_bits)),
        "expected_packed": stage.packed_output(out),
    }


def _mixed_entry(stage: MixedAggregationStage, file: str) -> dict:
    assert stage.acc_width is not None
    return {
        "name": stage.name,
        "file": file,
        "kind": "mixed",
        "word_width": int(stage.word_width),
        "features": stage.features,
        "num_nodes": stage.num_nodes,
        "num_src": stage.num_src,
        "num_terms": stage.num_terms,
        "max_terms": stage.max_terms,
        "num_buckets": len(stage.bits_in),
        "num_out_buckets": len(stage.out_bits),
        "r_bits": int(stage.r_bits),
        "acc_width": int(stage.acc_width),
        "mult_bits": int(stage.mult_bits),
        "max_shift": rules.MAX_SHIFT,
        "input_words": int(stage.src_words.sum()),
        "output_words": int(stage.out_words.sum()),
        "bits_in": [int(b) for b in stage.bits_in],
        "z_in": [int(z) for z in stage.z_in],
        "weight": [int(r) for r in stage.weight],
        "words_in_bucket": [int(w) for w in stage.words_in_bucket()],
        "out_bits": [int(b) for b in stage.out_bits],
        "z_out": [int(z) for z in stage.z_out],
        "words_out_bucket": [int(w) for w in stage.words_out_bucket()],
        "rounding": rules.ROUNDING,
        "meta": dict(stage.meta),
    }


def _mixed_arrays(stage: MixedAggregationStage) -> dict[str, np.ndarray]:
    acc = stage.accumulate()
    out = stage.requantize(acc - stage.correction()[:, None])
    return {
        "indptr": stage.indptr.astype(np.int64),
        "indices": stage.indices.astype(np.int64),
        "multiplier": stage.multiplier.astype(np.int64),
        "shift": stage.shift.astype(np.int64),
        "src_bucket": stage.src_bucket.astype(np.int64),
        "dst_bucket": stage.dst_bucket.astype(np.int64),
        "feat_offset": stage.feat_offset.astype(np.int64),
        "out_offset": stage.out_offset.astype(np.int64),
        "codes": stage.codes.astype(np.uint8),
        "packed_input": stage.packed_input(),
        "expected_acc": acc.astype(np.int64),
        "expected_codes": out.astype(np.uint8),
        "expected_packed": stage.packed_output(out),
    }


def _write_file_synced(path: Path, write: Any) -> None:
    with open(path, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())


def write_vectors(
    path: str | os.PathLike[str],
    stages: Sequence[AggregationStage | MixedAggregationStage],
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write a golden vector set to directory ``path`` and return it.

    A set with at least one :class:`MixedAggregationStage` is written as format version 3
    (every entry then has a ``kind``); a set of uniform stages only as version 2, as before.

    The expected outputs come from :meth:`AggregationStage.compute` (so a row too long for a
    stage's ``acc_width`` raises :class:`~model.integer.rules.AccumulatorOverflowError`).
    ``source`` (dataset, model, bits, seed, ...) is recorded as given; it and every stage's
    ``meta`` must be JSON-serialisable (numpy scalars and arrays are converted).

    The write is atomic: everything is written into a temporary directory beside ``path``
    first. A new (or empty) ``path`` is then renamed into place in one step. An existing
    vector set in ``path`` is replaced by removing its manifest first, moving the new stage
    files in, deleting stage files of the old set that the new one does not have, and moving
    the new manifest in last; other files in the directory are left alone. A crash therefore
    leaves either a complete set or no ``manifest.json``, never a half-written one.
    """
    out = Path(path)
    stages = list(stages)
    if not stages:
        raise ValueError("a vector set needs at least one stage")
    for i, st in enumerate(stages):
        if not isinstance(st, (AggregationStage, MixedAggregationStage)):
            raise TypeError(f"stages[{i}] is a {type(st).__name__}, expected AggregationStage "
                            "or MixedAggregationStage")
    names = [s.name for s in stages]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"stage names must be unique; repeated: {dup}")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: exists and is not a directory")

    mixed = any(isinstance(st, MixedAggregationStage) for st in stages)
    entries = []
    payloads = []
    for i, st in enumerate(stages):
        file = _stage_file_name(i, len(stages))
        # The writer applies the reader's own checks: it never writes a set it would reject.
        if isinstance(st, MixedAggregationStage):
            entry = _mixed_entry(st, file)
            arrays = _mixed_arrays(st)
            _check_mixed_stage(Path(MANIFEST_NAME), f"stages[{i}]", Path(file), entry, arrays,
                               check=False)
        else:
            entry = _stage_entry(st, file)
            if mixed:
                entry = {"name": entry["name"], "file": file, "kind": "uniform", **entry}
            arrays = _stage_arrays(st)
            _check_stage(Path(MANIFEST_NAME), f"stages[{i}]", Path(file), entry, arrays,
                         check=False)
        entries.append(entry)
        payloads.append((file, arrays))
    manifest = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION if mixed else UNIFORM_VERSION,
        "created_by": _created_by(),
        "source": dict(source or {}),
        "rounding": rules.ROUNDING,
        "stages": entries,
    }
    try:
        text = json.dumps(manifest, indent=2, default=_json_default, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ValueError(f"source/meta is not JSON-serialisable: {exc}") from exc

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        for file, arrays in payloads:
            _write_file_synced(tmp / file, lambda fh, a=arrays: np.savez_compressed(fh, **a))
        _write_file_synced(tmp / MANIFEST_NAME, lambda fh: fh.write(text.encode("utf-8")))
        if not out.exists() or (out.is_dir() and not any(out.iterdir())):
            try:
                os.replace(tmp, out)  # one atomic rename
                return out
            except OSError:
                out.mkdir(parents=True, exist_ok=True)  # fall through to the merge below
        _merge_into(tmp, out, [f for f, _ in payloads])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _merge_into(tmp: Path, out: Path, files: list[str]) -> None:
    """Replace the vector set in existing directory ``out`` by the one in ``tmp``."""
    old_manifest = out / MANIFEST_NAME
    old_files: set[str] = set()
    try:
        old = json.loads(old_manifest.read_text(encoding="utf-8"))
        old_files = {
            str(e.get("file")) for e in old.get("stages", []) if isinstance(e, dict)
        }
    except (OSError, ValueError, AttributeError):
        pass
    old_files |= {p.name for p in out.iterdir() if _STAGE_FILE_RE.match(p.name)}
    if old_manifest.exists():
        old_manifest.unlink()  # from here until the end the directory holds no manifest
    for file in files:
        os.replace(tmp / file, out / file)
    for stale in sorted(old_files - set(files)):
        p = out / stale
        if _STAGE_FILE_RE.match(stale) and p.is_file():
            p.unlink()
    os.replace(tmp / MANIFEST_NAME, out / MANIFEST_NAME)


# --------------------------------------------------------------------------------------------
# reader
# --------------------------------------------------------------------------------------------
def read_vectors(path: str | os.PathLike[str], check: bool = True) -> VectorSet:
    """Read and check the vector set in directory ``path`` (or its ``manifest.json``).

    Always checked: manifest keys and types, format name and version (a newer version is
    rejected), array presence, dtypes and shapes, CSR consistency, code/zero-point/multiplier/
    shift ranges, ``acc_width`` against the longest row, ``packed_input == pack(codes)``,
    ``expected_packed == pack(expected_codes)`` and the manifest's sizes against the arrays.
    With ``check=True`` the expected accumulators and codes are also recomputed with
    :meth:`AggregationStage.compute` and must be equal.

    Raises :class:`VectorFormatError` naming the file and the field of the first problem.
    """
    root = Path(path)
    if root.name == MANIFEST_NAME and root.is_file():
        root = root.parent
    mpath = root / MANIFEST_NAME
    if not root.is_dir():
        raise VectorFormatError(f"{root}: not a directory (a vector set is a directory)")
    if not mpath.is_file():
        raise VectorFormatError(f"{mpath}: missing manifest (not a vector set, or an interrupted write)")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError, a huge int
        raise VectorFormatError(f"{mpath}: not valid JSON: {exc}") from exc
    except RecursionError:
        raise VectorFormatError(f"{mpath}: not valid JSON: nested too deeply") from None
    entries = _check_manifest(mpath, manifest)
    if manifest["version"] < 2:  # version 1 had no bit truncation: fill in what it implies
        entries = [{**V2_FIELDS, **e} for e in entries]
    stages: list[GoldenStage | GoldenMixedStage] = []
    for i, entry in enumerate(entries):
        fpath = root / entry["file"]
        arrays = _load_arrays(fpath, f"stages[{i}]")
        if entry.get("kind") == "mixed" and manifest["version"] >= 3:
            stages.append(_check_mixed_stage(mpath, f"stages[{i}]", fpath, entry, arrays,
                                             check=check))
        else:
            stages.append(_check_stage(mpath, f"stages[{i}]", fpath, entry, arrays, check=check))
    return VectorSet(path=root, manifest=manifest, stages=stages)


def _check_manifest(mpath: Path, manifest: Any) -> list[dict]:
    def fail(field: str, msg: str) -> VectorFormatError:
        return VectorFormatError(f"{mpath}: {field}: {msg}")

    if not isinstance(manifest, dict):
        raise fail("(top level)", f"must be a JSON object, got {type(manifest).__name__}")
    # format and version first: a newer writer may have changed the other keys.
    for key in ("format", "version"):
        if key not in manifest:
            raise fail(key, "missing manifest key")
    if manifest["format"] != FORMAT_NAME:
        raise fail("format", f"is {manifest['format']!r}, expected {FORMAT_NAME!r}")
    version = manifest["version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail("version", f"must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise fail(
            "version",
            f"format version {version} was written by a newer qgnn; this reader knows "
            f"versions up to {FORMAT_VERSION} (upgrade qgnn)",
        )
    for key in MANIFEST_KEYS:
        if key not in manifest:
            raise fail(key, "missing manifest key")
    if not isinstance(manifest["created_by"], str):
        raise fail("created_by", "must be a string")
    if not isinstance(manifest["source"], dict):
        raise fail("source", "must be a JSON object")
    if manifest["rounding"] != rules.ROUNDING:
        raise fail("rounding", f"is {manifest['rounding']!r}; the only rule is {rules.ROUNDING!r}")
    entries = manifest["stages"]
    if not isinstance(entries, list) or not entries:
        raise fail("stages", "must be a non-empty list")
    seen_names: set[str] = set()
    seen_files: set[str] = set()
    for i, e in enumerate(entries):
        where = f"stages[{i}]"
        if not isinstance(e, dict):
            raise fail(where, "must be a JSON object")
        kind = "uniform"
        if version >= 3:
            if "kind" not in e:
                raise fail(f"{where}.kind", "missing manifest key (version 3 entries have one)")
            kind = e["kind"]
            if kind not in STAGE_KINDS:
                raise fail(f"{where}.kind", f"is {kind!r}; allowed: {list(STAGE_KINDS)}")
        fields = MIXED_FIELDS if kind == "mixed" else STAGE_FIELDS
        for key in fields:
            if key not in e and not (version < 2 and key in V2_FIELDS):
                raise fail(f"{where}.{key}", "missing manifest key")
        for key in MIXED_LIST_FIELDS if kind == "mixed" else ():
            v = e[key]
            if not isinstance(v, list) or not all(
                    isinstance(x, int) and not isinstance(x, bool) for x in v):
                raise fail(f"{where}.{key}", f"must be a list of integers, got {v!r}")
        for key in MIXED_INT_FIELDS if kind == "mixed" else STAGE_INT_FIELDS:
            v = e[key]
            if not isinstance(v, int) or isinstance(v, bool):
                raise fail(f"{where}.{key}", f"must be an integer, got {v!r}")
        if not isinstance(e["name"], str) or not e["name"]:
            raise fail(f"{where}.name", "must be a non-empty string")
        if e["name"] in seen_names:
            raise fail(f"{where}.name", f"repeats stage name {e['name']!r}")
        seen_names.add(e["name"])
        f = e["file"]
        if not isinstance(f, str) or not f.endswith(".npz") or Path(f).name != f or f.startswith("."):
            raise fail(f"{where}.file", f"must be a plain '.npz' file name in the set, got {f!r}")
        if f in seen_files:
            raise fail(f"{where}.file", f"repeats file {f!r}")
        seen_files.add(f)
        if e["rounding"] != rules.ROUNDING:
            raise fail(f"{where}.rounding", f"is {e['rounding']!r}; the only rule is {rules.ROUNDING!r}")
        if not isinstance(e["meta"], dict):
            raise fail(f"{where}.meta", "must be a JSON object")
    return entries


def _load_arrays(fpath: Path, where: str) -> dict[str, np.ndarray]:
    if not fpath.is_file():
        raise VectorFormatError(f"{fpath}: missing stage file (named by manifest {where}.file)")
    try:
        with np.load(fpath, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as exc:  # a truncated/corrupt zip raises many different types
        raise VectorFormatError(f"{fpath}: unreadable .npz file: {exc}") from exc


def _check_stage(
    mpath: Path, where: str, fpath: Path, e: dict, arrays: Mapping[str, np.ndarray], check: bool
) -> GoldenStage:
    """Check one stage's manifest entry ``where`` (e.g. ``stages[0]``) against its arrays.

    Problems with a manifest value name ``mpath`` and ``where.field``; problems with an array
    (including an array that disagrees with the manifest) name ``fpath`` and the array.
    """

    def fail(field: str, msg: str) -> VectorFormatError:
        return VectorFormatError(f"{fpath}: {field}: {msg}")

    def fail_m(field: str, msg: str) -> VectorFormatError:
        return VectorFormatError(f"{mpath}: {where}.{field}: {msg} (stage file {fpath.name})")

    # --- manifest numbers on their own ---------------------------------------------------
    bits, out_bits, ww = e["bits"], e["out_bits"], e["word_width"]
    for key, b in (("bits", bits), ("out_bits", out_bits)):
        if not 1 <= b <= 16:
            raise fail_m(key, f"must be in 1..16, got {b}")
        if ww not in packing.WORD_WIDTHS or ww < b:
            raise fail_m("word_width", f"{ww} not allowed for {b}-bit codes; allowed: {packing.WORD_WIDTHS}")
    features = e["features"]
    if features < 1:
        raise fail_m("features", f"must be >= 1, got {features}")
    for key in ("num_nodes", "num_src", "num_terms", "max_terms"):
        if e[key] < 0:
            raise fail_m(key, f"must be >= 0, got {e[key]}")
    derived = {
        "lanes": (packing.lanes(bits, ww), "word_width // bits"),
        "out_lanes": (packing.lanes(out_bits, ww), "word_width // out_bits"),
        "words_per_row": (packing.words_per_row(features, bits, ww), "ceil(features / lanes)"),
        "out_words_per_row": (
            packing.words_per_row(features, out_bits, ww), "ceil(features / out_lanes)"
        ),
    }
    for key, (want, formula) in derived.items():
        if e[key] != want:
            raise fail_m(key, f"is {e[key]}, but {formula} = {want}")
    mult_bits, max_shift, acc_w = e["mult_bits"], e["max_shift"], e["acc_width"]
    if not 1 <= mult_bits <= rules.MAX_PRODUCT_WIDTH:
        raise fail_m("mult_bits", f"must be in 1..{rules.MAX_PRODUCT_WIDTH}, got {mult_bits}")
    if not 0 <= max_shift <= rules.MAX_SHIFT:
        raise fail_m("max_shift", f"must be in 0..{rules.MAX_SHIFT}, got {max_shift}")
    if not 1 <= acc_w <= rules.MAX_PRODUCT_WIDTH:
        raise fail_m("acc_width", f"must be in 1..{rules.MAX_PRODUCT_WIDTH}, got {acc_w}")
    in_level, grid_bits, thresholds = e["in_level"], e["out_grid_bits"], e["out_thresholds"]
    if grid_bits is None:
        grid_bits = out_bits
    for key, v in (("in_level", in_level), ("out_grid_bits", grid_bits)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise fail_m(key, f"must be an integer, got {v!r}")
    if in_level < 1:
        raise fail_m("in_level", f"must be >= 1, got {in_level}")
    if not out_bits <= grid_bits <= 16:
        raise fail_m("out_grid_bits", f"must be in out_bits..16 = {out_bits}..16, got {grid_bits}")
    if thresholds is None:
        if grid_bits != out_bits:
            raise fail_m("out_thresholds", f"is null, but out_grid_bits {grid_bits} != out_bits "
                         f"{out_bits} needs {(1 << out_bits) - 1} snap thresholds")
    else:
        want_t = (1 << out_bits) - 1
        if (not isinstance(thresholds, list) or len(thresholds) != want_t
                or not all(isinstance(t, int) and not isinstance(t, bool) for t in thresholds)):
            raise fail_m("out_thresholds", f"must be null or a list of {want_t} integers, "
                         f"got {thresholds!r}")
        if thresholds != sorted(thresholds) or not all(
                0 <= t <= (1 << grid_bits) for t in thresholds):
            raise fail_m("out_thresholds", f"{thresholds} must be ascending grid codes in "
                         f"0..{1 << grid_bits}")
    z_in, z_out = e["zero_point_in"], e["zero_point_out"]
    zmax_in = in_level * ((1 << bits) - 1)
    if not 0 <= z_in <= zmax_in:
        raise fail_m("zero_point_in", f"{z_in} outside 0..{zmax_in} (in_level * (2**bits - 1))")
    if not 0 <= z_out < (1 << grid_bits):
        raise fail_m(
            "zero_point_out",
            f"{z_out} outside the {grid_bits}-bit grid code range 0..{(1 << grid_bits) - 1}",
        )

    # --- presence, dtype and shape of every array -----------------------------------------
    n, n_src, n_terms = e["num_nodes"], e["num_src"], e["num_terms"]
    spec: dict[str, tuple[np.dtype, tuple[int, ...], str]] = {
        "indptr": (np.dtype(np.int64), (n + 1,), f"num_nodes + 1 = {n} + 1"),
        "indices": (np.dtype(np.int64), (n_terms,), f"num_terms = {n_terms}"),
        "multiplier": (np.dtype(np.int64), (n,), f"num_nodes = {n}"),
        "shift": (np.dtype(np.int64), (n,), f"num_nodes = {n}"),
        "codes": (code_dtype(bits), (n_src, features), f"num_src, features = {n_src}, {features}"),
        "packed_input": (
            np.dtype(np.uint8),
            (n_src, derived["words_per_row"][0] * ww // 8),
            f"num_src, words_per_row * word_width / 8 = {n_src}, {derived['words_per_row'][0] * ww // 8}",
        ),
        "expected_acc": (np.dtype(np.int64), (n, features), f"num_nodes, features = {n}, {features}"),
        "expected_codes": (code_dtype(out_bits), (n, features), f"num_nodes, features = {n}, {features}"),
        "expected_packed": (
            np.dtype(np.uint8),
            (n, derived["out_words_per_row"][0] * ww // 8),
            f"num_nodes, out_words_per_row * word_width / 8 = {n}, {derived['out_words_per_row'][0] * ww // 8}",
        ),
    }
    for name, (dtype, shape, formula) in spec.items():
        if name not in arrays:
            raise fail(name, "missing array")
        a = arrays[name]
        if a.dtype != dtype:
            raise fail(name, f"dtype is {a.dtype}, expected {dtype}")
        if a.ndim != len(shape):
            raise fail(name, f"has {a.ndim} dimensions, expected {len(shape)} ({formula})")
        if a.shape != shape:
            raise fail(
                name,
                f"shape is {a.shape}, but the manifest requires {shape} ({formula}); "
                "manifest and arrays disagree",
            )
    indptr, indices = arrays["indptr"], arrays["indices"]
    mult, shift, codes = arrays["multiplier"], arrays["shift"], arrays["codes"]

    # --- CSR ------------------------------------------------------------------------------
    if indptr[0] != 0:
        raise fail("indptr", f"indptr[0] is {int(indptr[0])}, must be 0")
    steps = np.diff(indptr)
    if np.any(steps < 0):
        k = int(np.argmax(steps < 0))
        raise fail(
            "indptr",
            f"must be non-decreasing; indptr[{k}]={int(indptr[k])} > indptr[{k + 1}]={int(indptr[k + 1])}",
        )
    if indptr[-1] != indices.shape[0]:
        raise fail("indptr", f"indptr[-1] is {int(indptr[-1])}, must equal len(indices) = {indices.shape[0]}")
    if indices.size:
        bad = (indices < 0) | (indices >= n_src)
        if np.any(bad):
            k = int(np.argmax(bad))
            raise fail("indices", f"indices[{k}] = {int(indices[k])} outside 0..{n_src - 1} (num_src)")
    max_terms = int(steps.max(initial=0))
    if e["max_terms"] != max_terms:
        raise fail_m("max_terms", f"is {e['max_terms']}, but the longest CSR row has {max_terms} terms")
    try:
        rules.check_row_lengths(steps, bits, acc_w)
    except rules.AccumulatorOverflowError as exc:
        raise fail_m("acc_width", f"{acc_w} bits is too small: {exc}") from exc
    # The corrected sum in_level * acc - n * z_in is computed in int64: it must not wrap.
    corrected = (in_level * max_terms * ((1 << bits) - 1)).bit_length() + 1
    if corrected > rules.MAX_PRODUCT_WIDTH:
        raise fail_m("in_level", f"{in_level} makes the corrected sum {corrected} bits wide "
                     f"(in_level * max_terms * (2**bits - 1)); at most "
                     f"{rules.MAX_PRODUCT_WIDTH} bits are supported")

    # --- value ranges ---------------------------------------------------------------------
    def in_range(name: str, a: np.ndarray, lo: int, hi: int, what: str) -> None:
        if a.size:
            bad = (a < lo) | (a > hi)
            if np.any(bad):
                k = tuple(int(x) for x in np.argwhere(bad)[0])
                idx = ", ".join(map(str, k))
                raise fail(name, f"{name}[{idx}] = {int(a[k])} outside {lo}..{hi} ({what})")

    in_range("codes", codes, 0, (1 << bits) - 1, f"{bits}-bit codes")
    in_range("multiplier", mult, 0, (1 << mult_bits) - 1, f"mult_bits = {mult_bits}")
    in_range("shift", shift, 0, max_shift, f"max_shift = {max_shift}")
    in_range("expected_acc", arrays["expected_acc"], 0, (1 << acc_w) - 1, f"acc_width = {acc_w}")
    in_range("expected_codes", arrays["expected_codes"], 0, (1 << out_bits) - 1, f"{out_bits}-bit codes")

    stage = AggregationStage(
        name=e["name"], indptr=indptr, indices=indices, codes=codes, bits=bits,
        out_bits=out_bits, zero_point_in=z_in, zero_point_out=z_out, multiplier=mult,
        shift=shift, mult_bits=mult_bits, word_width=ww, acc_width=acc_w, meta=dict(e["meta"]),
        in_level=in_level, out_grid_bits=grid_bits,
        out_thresholds=None if thresholds is None else tuple(thresholds),
    )

    # --- packing --------------------------------------------------------------------------
    packed = stage.packed_input()
    if not np.array_equal(packed, arrays["packed_input"]):
        r, b = _first_diff(packed, arrays["packed_input"])
        raise fail(
            "packed_input",
            f"differs from pack(codes) at node {r}, byte {b} "
            f"(file 0x{int(arrays['packed_input'][r, b]):02x}, packed codes 0x{int(packed[r, b]):02x})",
        )
    exp_codes = arrays["expected_codes"].astype(np.int64)
    try:  # the pad lanes' output is computed with the stage's requantization
        packed_out = stage.packed_output(exp_codes)
    except (ValueError, ArithmeticError) as exc:
        raise fail("expected_packed", f"cannot compute the pad lanes' output codes: {exc}"
                   ) from exc
    if not np.array_equal(packed_out, arrays["expected_packed"]):
        r, b = _first_diff(packed_out, arrays["expected_packed"])
        raise fail(
            "expected_packed",
            f"differs from pack(expected_codes) at node {r}, byte {b} "
            f"(file 0x{int(arrays['expected_packed'][r, b]):02x}, "
            f"packed codes 0x{int(packed_out[r, b]):02x})",
        )
    golden = GoldenStage(
        stage=stage,
        expected_acc=arrays["expected_acc"].astype(np.int64),
        expected_codes=exp_codes,
        expected_packed=arrays["expected_packed"],
    )
    if check:
        _check_expected(fpath, golden)
    return golden


def _check_expected(fpath: Path, g: GoldenStage) -> None:
    """Recompute a stage with the reference and compare with its expected arrays."""
    try:
        acc, out = g.stage.compute()
    except (ValueError, ArithmeticError) as exc:  # e.g. a product wider than supported
        raise VectorFormatError(f"{fpath}: stage {g.name!r}: reference computation failed: {exc}") from exc
    for field, want, got in (("expected_acc", acc, g.expected_acc), ("expected_codes", out, g.expected_codes)):
        if not np.array_equal(want, got):
            i, f = _first_diff(want, got)
            raise VectorFormatError(
                f"{fpath}: {field}: stage {g.name!r} disagrees with the reference at node {i}, "
                f"feature {f} (file {int(got[i, f])}, reference {int(want[i, f])})"
            )


def _check_mixed_stage(
    mpath: Path, where: str, fpath: Path, e: dict, arrays: Mapping[str, np.ndarray], check: bool
) -> GoldenMixedStage:
    """Check one mixed-width (version 3) stage entry ``where`` against its arrays.

    Problems with a manifest value name ``mpath`` and ``where.field``; problems with an array
    name ``fpath`` and ``where.array``.
    """

    def fail(field: str, msg: str) -> VectorFormatError:
        return VectorFormatError(f"{fpath}: {where}.{field}: {msg}")

    def fail_m(field: str, msg: str) -> VectorFormatError:
        return VectorFormatError(f"{mpath}: {where}.{field}: {msg} (stage file {fpath.name})")

    # --- manifest numbers on their own ---------------------------------------------------
    ww = e["word_width"]
    if ww not in packing.WORD_WIDTHS:
        raise fail_m("word_width", f"{ww} not allowed; allowed: {packing.WORD_WIDTHS}")
    features = e["features"]
    if features < 1:
        raise fail_m("features", f"must be >= 1, got {features}")
    for key in ("num_nodes", "num_src", "num_terms", "max_terms"):
        if e[key] < 0:
            raise fail_m(key, f"must be >= 0, got {e[key]}")
    k_in, k_out = e["num_buckets"], e["num_out_buckets"]
    for key, k in (("num_buckets", k_in), ("num_out_buckets", k_out)):
        if k < 1:
            raise fail_m(key, f"must be >= 1, got {k}")
    for key, k in (("bits_in", k_in), ("z_in", k_in), ("weight", k_in),
                   ("words_in_bucket", k_in), ("out_bits", k_out), ("z_out", k_out),
                   ("words_out_bucket", k_out)):
        if len(e[key]) != k:
            which = "num_buckets" if k is k_in else "num_out_buckets"
            raise fail_m(key, f"has {len(e[key])} entries, but {which} = {k}")
    allowed = "{" + ",".join(map(str, rules.HW_BITS)) + "}"
    for key in ("bits_in", "out_bits"):
        for k, b in enumerate(e[key]):
            if b not in rules.HW_BITS:
                raise fail_m(f"{key}[{k}]", f"{b} not in {allowed}")
    for zkey, bkey in (("z_in", "bits_in"), ("z_out", "out_bits")):
        for k, (z, b) in enumerate(zip(e[zkey], e[bkey], strict=True)):
            if not 0 <= z < (1 << b):
                raise fail_m(f"{zkey}[{k}]", f"{z} outside 0..{(1 << b) - 1} ({bkey}[{k}] = {b})")
    r_bits = e["r_bits"]
    if not 1 <= r_bits <= 32:
        raise fail_m("r_bits", f"must be in 1..32, got {r_bits}")
    for k, r in enumerate(e["weight"]):
        if not 0 <= r < (1 << r_bits):
            raise fail_m(f"weight[{k}]", f"{r} outside 0..{(1 << r_bits) - 1} (r_bits = {r_bits})")
    want: int | np.ndarray              # words of one row here, prefix sums further on
    for wkey, bkey in (("words_in_bucket", "bits_in"), ("words_out_bucket", "out_bits")):
        for k, (w, b) in enumerate(zip(e[wkey], e[bkey], strict=True)):
            want = packing.words_per_row(features, b, ww)
            if w != want:
                raise fail_m(f"{wkey}[{k}]", f"is {w}, but ceil(features * {bkey}[{k}] / "
                             f"word_width) = ceil({features} * {b} / {ww}) = {want}")
    mult_bits, max_shift, acc_w = e["mult_bits"], e["max_shift"], e["acc_width"]
    if not 1 <= mult_bits <= rules.MAX_PRODUCT_WIDTH:
        raise fail_m("mult_bits", f"must be in 1..{rules.MAX_PRODUCT_WIDTH}, got {mult_bits}")
    if not 0 <= max_shift <= rules.MAX_SHIFT:
        raise fail_m("max_shift", f"must be in 0..{rules.MAX_SHIFT}, got {max_shift}")
    if not 1 <= acc_w <= rules.MAX_PRODUCT_WIDTH - mult_bits - 1:
        raise fail_m("acc_width", f"must be in 1..{rules.MAX_PRODUCT_WIDTH - mult_bits - 1} "
                     f"(acc_width + 1 + mult_bits <= {rules.MAX_PRODUCT_WIDTH}), got {acc_w}")

    # --- presence, dtype and shape of every array -----------------------------------------
    n, n_src, n_terms = e["num_nodes"], e["num_src"], e["num_terms"]
    nb = ww // 8
    i64, u8 = np.dtype(np.int64), np.dtype(np.uint8)
    spec: dict[str, tuple[np.dtype, tuple[int, ...], str]] = {
        "indptr": (i64, (n + 1,), f"num_nodes + 1 = {n} + 1"),
        "indices": (i64, (n_terms,), f"num_terms = {n_terms}"),
        "multiplier": (i64, (n,), f"num_nodes = {n}"),
        "shift": (i64, (n,), f"num_nodes = {n}"),
        "src_bucket": (i64, (n_src,), f"num_src = {n_src}"),
        "dst_bucket": (i64, (n,), f"num_nodes = {n}"),
        "feat_offset": (i64, (n_src,), f"num_src = {n_src}"),
        "out_offset": (i64, (n,), f"num_nodes = {n}"),
        "codes": (u8, (n_src, features), f"num_src, features = {n_src}, {features}"),
        "packed_input": (u8, (e["input_words"] * nb,),
                         f"input_words * word_width / 8 = {e['input_words'] * nb}"),
        "expected_acc": (i64, (n, features), f"num_nodes, features = {n}, {features}"),
        "expected_codes": (u8, (n, features), f"num_nodes, features = {n}, {features}"),
        "expected_packed": (u8, (e["output_words"] * nb,),
                            f"output_words * word_width / 8 = {e['output_words'] * nb}"),
    }
    for name, (dtype, shape, formula) in spec.items():
        if name not in arrays:
            raise fail(name, "missing array")
        a = arrays[name]
        if a.dtype != dtype:
            raise fail(name, f"dtype is {a.dtype}, expected {dtype}")
        if a.ndim != len(shape):
            raise fail(name, f"has {a.ndim} dimensions, expected {len(shape)} ({formula})")
        if a.shape != shape:
            raise fail(name, f"shape is {a.shape}, but the manifest requires {shape} "
                       f"({formula}); manifest and arrays disagree")
    indptr, indices = arrays["indptr"], arrays["indices"]
    src_b, dst_b = arrays["src_bucket"], arrays["dst_bucket"]
    codes = arrays["codes"]

    # --- CSR ------------------------------------------------------------------------------
    if indptr[0] != 0:
        raise fail("indptr", f"indptr[0] is {int(indptr[0])}, must be 0")
    steps = np.diff(indptr)
    if np.any(steps < 0):
        k = int(np.argmax(steps < 0))
        raise fail("indptr", f"must be non-decreasing; indptr[{k}]={int(indptr[k])} > "
                   f"indptr[{k + 1}]={int(indptr[k + 1])}")
    if indptr[-1] != indices.shape[0]:
        raise fail("indptr", f"indptr[-1] is {int(indptr[-1])}, must equal len(indices) = "
                   f"{indices.shape[0]}")

    def in_range(name: str, a: np.ndarray, lo: int, hi: int | np.ndarray, what: str) -> None:
        if a.size:
            hi_b = hi if np.ndim(hi) == 0 else np.asarray(hi).reshape(
                (-1,) + (1,) * (a.ndim - 1))
            bad = (a.astype(np.int64) < lo) | (a.astype(np.int64) > hi_b)
            if np.any(bad):
                k = tuple(int(x) for x in np.argwhere(bad)[0])
                top = hi if np.ndim(hi) == 0 else int(np.asarray(hi)[k[0]])
                idx = ", ".join(map(str, k))
                raise fail(name, f"value {int(a[k])} at [{idx}] out of range {lo}..{top} ({what})")

    in_range("indices", indices, 0, n_src - 1, "num_src")
    max_terms = int(steps.max(initial=0))
    if e["max_terms"] != max_terms:
        raise fail_m("max_terms", f"is {e['max_terms']}, but the longest CSR row has "
                     f"{max_terms} terms")
    in_range("src_bucket", src_b, 0, k_in - 1, "num_buckets")
    in_range("dst_bucket", dst_b, 0, k_out - 1, "num_out_buckets")
    bits_in = np.asarray(e["bits_in"], dtype=np.int64)
    out_bits = np.asarray(e["out_bits"], dtype=np.int64)
    in_range("codes", codes, 0, (1 << bits_in[src_b]) - 1,
             "row j holds bits_in[src_bucket[j]]-bit codes")

    # --- word addresses -------------------------------------------------------------------
    for name, b, words, total_key in (
            ("feat_offset", src_b, e["words_in_bucket"], "input_words"),
            ("out_offset", dst_b, e["words_out_bucket"], "output_words")):
        w = np.asarray(words, dtype=np.int64)[b]
        want = np.concatenate([[0], np.cumsum(w)]).astype(np.int64)
        got = arrays[name]
        if not np.array_equal(got, want[:-1]):
            r = int(np.argmax(got != want[:-1]))
            raise fail(name, f"{name}[{r}] = {int(got[r])}, but the rows before it at their "
                       f"buckets' widths end at word {int(want[r])} (prefix sums of "
                       f"{'words_in_bucket[src_bucket]' if name == 'feat_offset' else 'words_out_bucket[dst_bucket]'})")
        if e[total_key] != int(want[-1]):
            raise fail_m(total_key, f"is {e[total_key]}, but the rows at their buckets' widths "
                         f"take {int(want[-1])} words")

    weight = tuple(e["weight"])
    max_weight = max(r * ((1 << int(b)) - 1) for r, b in zip(weight, bits_in, strict=True))
    need = max(1, (max(max_terms, 1) * max_weight).bit_length())
    if acc_w < need:
        raise fail_m("acc_width", f"{acc_w} bits is too small: {max_terms} terms of weighted "
                     f"codes up to {max_weight} need {need} bits")
    in_range("multiplier", arrays["multiplier"], 0, (1 << mult_bits) - 1, f"mult_bits = {mult_bits}")
    in_range("shift", arrays["shift"], 0, max_shift, f"max_shift = {max_shift}")
    in_range("expected_acc", arrays["expected_acc"], 0, (1 << acc_w) - 1, f"acc_width = {acc_w}")
    in_range("expected_codes", arrays["expected_codes"], 0, (1 << out_bits[dst_b]) - 1,
             "row i holds out_bits[dst_bucket[i]]-bit codes")

    try:
        stage = MixedAggregationStage(
            name=e["name"], indptr=indptr, indices=indices, codes=codes.astype(np.int64),
            src_bucket=src_b, bits_in=tuple(e["bits_in"]), z_in=tuple(e["z_in"]),
            weight=weight, dst_bucket=dst_b, out_bits=tuple(e["out_bits"]),
            z_out=tuple(e["z_out"]), multiplier=arrays["multiplier"], shift=arrays["shift"],
            r_bits=r_bits, mult_bits=mult_bits, word_width=ww, acc_width=acc_w,
            meta=dict(e["meta"]))
    except ValueError as exc:  # everything above should have caught it first
        raise fail("(stage)", str(exc)) from exc

    # --- packing --------------------------------------------------------------------------
    def row_of(byte: int, offsets: np.ndarray) -> int:
        return int(np.searchsorted(offsets, byte // nb, side="right")) - 1

    packed = stage.packed_input()
    if not np.array_equal(packed, arrays["packed_input"]):
        (b,) = _first_diff(packed, arrays["packed_input"])
        r = row_of(b, stage.feat_offset)
        raise fail("packed_input", f"differs from pack(codes) at byte {b} (word {b // nb}, "
                   f"source row {r}, bucket {int(src_b[r])}, {int(bits_in[src_b[r]])}-bit lanes; "
                   f"file 0x{int(arrays['packed_input'][b]):02x}, packed codes 0x{int(packed[b]):02x})")
    exp_codes = arrays["expected_codes"].astype(np.int64)
    packed_out = stage.packed_output(exp_codes)
    if not np.array_equal(packed_out, arrays["expected_packed"]):
        (b,) = _first_diff(packed_out, arrays["expected_packed"])
        r = row_of(b, stage.out_offset)
        raise fail("expected_packed", f"differs from pack(expected_codes) at byte {b} (word "
                   f"{b // nb}, row {r}, out bucket {int(dst_b[r])}; file "
                   f"0x{int(arrays['expected_packed'][b]):02x}, packed codes 0x{int(packed_out[b]):02x})")
    golden = GoldenMixedStage(stage=stage, expected_acc=arrays["expected_acc"].astype(np.int64),
                              expected_codes=exp_codes, expected_packed=arrays["expected_packed"])
    if check:
        try:
            acc = stage.accumulate()
            out = stage.requantize(acc - stage.correction()[:, None])
        except (ValueError, ArithmeticError) as exc:
            raise VectorFormatError(f"{fpath}: stage {stage.name!r}: reference computation "
                                    f"failed: {exc}") from exc
        for field, want_a, got_a in (("expected_acc", acc, golden.expected_acc),
                                     ("expected_codes", out, golden.expected_codes)):
            if not np.array_equal(want_a, got_a):
                i, f = _first_diff(want_a, got_a)
                raise VectorFormatError(
                    f"{fpath}: {where}.{field}: stage {stage.name!r} disagrees with the "
                    f"reference at node {i}, feature {f} (file {int(got_a[i, f])}, reference "
                    f"{int(want_a[i, f])})")
    return golden


__all__ = [
    "ARRAY_NAMES",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MANIFEST_KEYS",
    "MIXED_ARRAY_NAMES",
    "MIXED_FIELDS",
    "MANIFEST_NAME",
    "STAGE_FIELDS",
    "STAGE_KINDS",
    "UNIFORM_VERSION",
    "GoldenMixedStage",
    "GoldenStage",
    "VectorFormatError",
    "VectorSet",
    "code_dtype",
    "read_vectors",
    "write_vectors",
]
