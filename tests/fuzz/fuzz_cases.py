"""Generated malformed inputs for every file a user hands qgnn, and the rule each must obey.

Shared by the fuzz tests (``tests/fuzz/test_fuzz_*.py``, a few cases per run through
hypothesis) and by ``benchmarks/fuzz_inputs.py`` (thousands of cases, each in a watchdog
process). Four kinds of input:

- ``vectors``: golden vector sets (``manifest.json`` + ``stageNN.npz``) read by
  :func:`qgnn.model.golden.read_vectors`;
- ``spec``: sweep specs (TOML/YAML) read by :func:`qgnn.sweeps.spec.load_spec`;
- ``arch``: accelerator TOML files read by :func:`qgnn.sim.config.load_arch`;
- ``datasets``: Planetoid (Cora) and geom-gcn (Actor) raw files read by
  :func:`qgnn.model.datasets.load_dataset`.

A case is ``(kind, mutation, seed)``: the mutation (one of ``MUTATIONS[kind]``) is applied to a
valid base input with ``random.Random(seed)``. :func:`run_case` reads the result and classifies
it (:class:`Outcome`):

- ``error``: the reader's own error type (a ``ValueError`` / ``DatasetError``, which the CLI
  prints as one line ``qgnn: error: ...``, exit 2) whose message names the file and a field;
- ``accepted``: no error, and the result equals what an independent computation from the
  mutated data gives (for arch files: the chip also simulates a tiny graph to finite figures);
- ``failure``: anything else: another exception type (a traceback at the CLI), an error that
  names neither the file nor a field, or an accepted input whose result is wrong.

Hangs are caught by the benchmark's watchdog (a per-case timeout).
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle
import random
import re
import shutil
import tempfile
import traceback
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

KINDS = ("vectors", "spec", "arch", "datasets")


@dataclass
class Outcome:
    """Result of one case: ``status`` is ``error``, ``accepted`` or ``failure``."""

    kind: str
    mutation: str
    seed: int
    status: str
    detail: str
    what: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "mutation": self.mutation, "seed": self.seed,
                "status": self.status, "detail": self.detail, "what": self.what}


def one_line(exc: BaseException) -> str:
    """The CLI's one-line rendering of an error (``sweeps.cli._one_line``)."""
    from qgnn.sweeps.cli import _one_line

    return _one_line(exc)


# ============================================================================ value pools

#: Values of the wrong type (or out of range) substituted for a field.
WRONG_VALUES: list[Any] = [
    None, "", "4", "x" * 300, 4.5, 4.0, -1, 0, 1, 2**31, 2**63 - 1, 2**70, -2**70, True, False,
    [], [1, 2], {}, {"a": 1}, float("nan"), float("inf"), -float("inf"), 1e308, -0.0,
]


def _pick_wrong(rng: random.Random, json_safe: bool = False) -> Any:
    v = rng.choice(WRONG_VALUES)
    if json_safe and isinstance(v, float) and not math.isfinite(v):
        return rng.choice([None, "nan", 1e308])
    return copy.deepcopy(v)


def _garbage_bytes(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 400)))
    if choice == 1:
        return b""
    if choice == 2:
        return b"\xff\xfe\x00garbage\x80\x81"
    if choice == 3:
        return b"PK\x03\x04" + bytes(rng.randrange(256) for _ in range(60))  # a broken zip
    if choice == 4:
        return "héllo wörld ☃\n".encode("utf-16")
    return b"\x00" * rng.randrange(1, 2000)


def _damage_text(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """Truncate, flip bytes, splice garbage or replace a file's bytes."""
    op = rng.randrange(5)
    if op == 0 and data:
        k = rng.randrange(len(data))
        return data[:k], f"truncated to {k} bytes"
    if op == 1 and data:
        b = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(b))
            b[i] = rng.randrange(256)
        return bytes(b), "random bytes overwritten"
    if op == 2 and data:
        i = rng.randrange(len(data))
        return data[:i] + _garbage_bytes(rng) + data[i:], f"garbage spliced at {i}"
    if op == 3:
        return _garbage_bytes(rng), "replaced by garbage"
    if data:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.choice(b"[]{}=\"',:\n#\\")]) + data[i:], "syntax char inserted"
    return b"\x00", "nul byte"


def _flat_paths(d: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in nested dicts/lists (dict keys and list indices)."""
    out: list[tuple] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out.append((*prefix, k))
            out += _flat_paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.append((*prefix, i))
            out += _flat_paths(v, (*prefix, i))
    return out


def _get(d: Any, path: tuple) -> Any:
    for p in path:
        d = d[p]
    return d


def _set(d: Any, path: tuple, value: Any) -> None:
    _get(d, path[:-1])[path[-1]] = value


def _delete(d: Any, path: tuple) -> None:
    parent = _get(d, path[:-1])
    del parent[path[-1]]


# ============================================================================ TOML writer


def _toml_key(k: Any) -> str:
    k = str(k)
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    if v is None:
        return '""'  # TOML has no null: the closest wrong value
    return json.dumps(str(v))


def to_toml(d: dict) -> str:
    """A TOML document for ``d`` (tables inline; no null in TOML: ``None`` becomes ``""``)."""
    return "".join(f"{_toml_key(k)} = {_toml_value(v)}\n" for k, v in d.items())


# ============================================================================ vectors

_VEC_TEMPLATES: dict[str, Path] = {}


def vector_templates(cache: Path) -> dict[str, Path]:
    """A few valid vector sets (plain INT2/4/8 at several word widths, BT, two stages,
    version 1), written once under ``cache``."""
    if _VEC_TEMPLATES and all(p.is_dir() for p in _VEC_TEMPLATES.values()):
        return _VEC_TEMPLATES
    from qgnn.model.golden import write_vectors
    from qgnn.model.golden.stage import random_stage

    rng = np.random.default_rng(14)
    sets = {
        "int4x2": [random_stage(rng, 10, 5, 4, 2.0, 64, name="a"),
                   random_stage(rng, 8, 5, 4, 2.0, 64, name="b")],
        "int2w32": [random_stage(rng, 9, 7, 2, 3.0, 32, name="c")],
        "int8w16": [random_stage(rng, 7, 3, 8, 2.0, 16, name="d")],
        "bt": [random_stage(rng, 8, 6, 2, 2.0, 64, name="e", truncated=True)],
    }
    for name, stages in sets.items():
        out = cache / f"vec-{name}"
        if not (out / "manifest.json").is_file():
            write_vectors(out, stages, {"dataset": "fuzz", "seed": 14})
        _VEC_TEMPLATES[name] = out
    v1 = cache / "vec-v1"
    if not (v1 / "manifest.json").is_file():
        shutil.copytree(_VEC_TEMPLATES["int4x2"], v1, dirs_exist_ok=True)
        m = json.loads((v1 / "manifest.json").read_text())
        m["version"] = 1
        for e in m["stages"]:
            for k in ("in_level", "out_grid_bits", "out_thresholds"):
                e.pop(k)
        (v1 / "manifest.json").write_text(json.dumps(m))
    _VEC_TEMPLATES["v1"] = v1
    return _VEC_TEMPLATES


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _save_npz(path: Path, arrays: dict[str, np.ndarray], rng: random.Random) -> None:
    with open(path, "wb") as fh:
        (np.savez_compressed if rng.random() < 0.5 else np.savez)(fh, **arrays)


ARRAYS = ("indptr", "indices", "multiplier", "shift", "codes", "packed_input", "expected_acc",
          "expected_codes", "expected_packed")

_DTYPES = ["float64", "float32", "int32", "int16", "int8", "uint8", "uint16", "uint32",
           "uint64", "int64", "bool", ">i8", ">u2", "complex64", "U4", "object"]


class _VecCtx:
    def __init__(self, root: Path, rng: random.Random) -> None:
        self.root = root
        self.rng = rng
        self.mpath = root / "manifest.json"
        self.manifest = json.loads(self.mpath.read_text())
        self.si = rng.randrange(len(self.manifest["stages"]))
        self.entry = self.manifest["stages"][self.si]
        self.spath = root / self.entry["file"]

    def arrays(self) -> dict[str, np.ndarray]:
        return _load_npz(self.spath)

    def save(self, arrays: dict[str, np.ndarray]) -> None:
        _save_npz(self.spath, arrays, self.rng)

    def write_manifest(self) -> None:
        self.mpath.write_text(json.dumps(self.manifest))


def _vm_truncate(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(ARRAYS)
    x = a[name]
    if x.shape[0] == 0 or c.rng.random() < 0.3:
        a[name] = x.reshape(-1)[: max(0, x.size - c.rng.randint(1, 5))]
    else:
        a[name] = x[: c.rng.randrange(x.shape[0])]
    c.save(a)
    return f"{name} truncated to {a[name].shape}"


def _vm_retype(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(ARRAYS)
    dt = c.rng.choice(_DTYPES)
    a[name] = a[name].astype(dt)
    if dt == "object":
        with open(c.spath, "wb") as fh:
            np.savez(fh, **a)  # pickled member: the reader must refuse it (allow_pickle=False)
    else:
        c.save(a)
    return f"{name} as {dt}"


def _vm_reshape(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(ARRAYS)
    x = a[name]
    op = c.rng.randrange(5)
    if op == 0:
        y = x.reshape(-1)
    elif op == 1:
        y = x.reshape(1, -1)
    elif op == 2:
        y = x.reshape(*x.shape, 1)
    elif op == 3:
        y = x.T if x.ndim == 2 else x.reshape(-1, 1)
    else:
        y = np.zeros((0,) * c.rng.randint(1, 3), dtype=x.dtype)
    a[name] = np.ascontiguousarray(y)
    c.save(a)
    return f"{name} reshaped {x.shape} -> {y.shape}"


def _vm_value(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(ARRAYS)
    x = a[name].copy()
    if x.size == 0:
        return "no-op (empty array)"
    info = np.iinfo(x.dtype)
    bits = c.entry["bits"]
    v = c.rng.choice([-1, 1 << bits, (1 << bits) - 1, 0, info.max, info.min, 1 << 40,
                      c.rng.randrange(-100, 1000), 1 << c.entry["mult_bits"], 64])
    v = int(np.array(v).astype(np.int64).astype(x.dtype)) if not info.min <= v <= info.max else v
    idx = tuple(c.rng.randrange(s) for s in x.shape)
    x[idx] = v
    a[name] = x
    c.save(a)
    return f"{name}{list(idx)} = {v}"


def _vm_packed_bits(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(["packed_input", "expected_packed"])
    x = a[name].copy()
    r = c.rng.randrange(x.shape[0]) if x.shape[0] else 0
    if not x.size:
        return "no-op"
    b = x.shape[1] - 1 if c.rng.random() < 0.6 else c.rng.randrange(x.shape[1])  # pad lanes
    x[r, b] ^= np.uint8(1 << c.rng.randrange(8)) | np.uint8(0x80 if c.rng.random() < .5 else 0)
    a[name] = x
    c.save(a)
    return f"{name}[{r}, {b}] bits flipped (pad lanes / high bits)"


def _vm_indptr(c: _VecCtx) -> str:
    a = c.arrays()
    p = a["indptr"].copy()
    op = c.rng.randrange(4)
    if op == 0 and len(p) > 2:
        k = c.rng.randrange(1, len(p) - 1)
        p[k] = p[k - 1] - c.rng.randint(1, 3)
        what = f"indptr[{k}] below indptr[{k - 1}]"
    elif op == 1:
        p[-1] += c.rng.choice([-1, 1, 5, 1 << 40])
        what = "indptr[-1] != len(indices)"
    elif op == 2:
        p[0] = c.rng.choice([1, -1])
        what = "indptr[0] != 0"
    else:
        p = p[::-1].copy()
        what = "indptr reversed"
    a["indptr"] = p
    c.save(a)
    return what


def _vm_indices(c: _VecCtx) -> str:
    a = c.arrays()
    x = a["indices"].copy()
    if not x.size:
        return "no-op"
    k = c.rng.randrange(x.size)
    x[k] = c.rng.choice([-1, c.entry["num_src"], c.entry["num_src"] + 7, 1 << 40, -(1 << 62)])
    a["indices"] = x
    c.save(a)
    return f"indices[{k}] = {int(x[k])}"


def _vm_codes_valid(c: _VecCtx) -> str:
    """A valid change: a new input code, with packed input and expected outputs recomputed."""
    from qgnn.model.golden import read_vectors
    from qgnn.model.golden.format import code_dtype

    g = read_vectors(c.root).stages[c.si]
    st = g.stage
    codes = st.codes.copy()
    i, f = c.rng.randrange(codes.shape[0]), c.rng.randrange(codes.shape[1])
    codes[i, f] = c.rng.randrange(1 << st.bits)
    st.codes = codes
    acc, out = st.compute()
    a = c.arrays()
    a.update(codes=codes.astype(code_dtype(st.bits)), packed_input=st.packed_input(),
             expected_acc=acc, expected_codes=out.astype(code_dtype(st.out_bits)),
             expected_packed=st.packed_output(out))
    c.save(a)
    return f"codes[{i}, {f}] changed, outputs recomputed (valid)"


def _vm_expected(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(["expected_acc", "expected_codes"])
    x = a[name].copy()
    i, f = c.rng.randrange(x.shape[0]), c.rng.randrange(x.shape[1])
    x[i, f] = 0 if x[i, f] else 1
    a[name] = x
    c.save(a)
    return f"{name}[{i}, {f}] changed in range"


def _vm_missing_array(c: _VecCtx) -> str:
    a = c.arrays()
    name = c.rng.choice(ARRAYS)
    del a[name]
    c.save(a)
    return f"{name} removed"


def _vm_extra_array(c: _VecCtx) -> str:
    a = c.arrays()
    a[c.rng.choice(["extra", "notes", "Indptr"])] = np.arange(3)
    c.save(a)
    return "extra array (valid)"


def _vm_manifest_drop(c: _VecCtx) -> str:
    if c.rng.random() < 0.4:
        k = c.rng.choice(list(c.manifest))
        del c.manifest[k]
        what = f"top-level {k} removed"
    else:
        k = c.rng.choice(list(c.entry))
        del c.entry[k]
        what = f"stages[{c.si}].{k} removed"
    c.write_manifest()
    return what


def _vm_manifest_extra(c: _VecCtx) -> str:
    target = c.manifest if c.rng.random() < 0.5 else c.entry
    target[c.rng.choice(["extra", "comment", "x-notes"])] = _pick_wrong(c.rng, json_safe=True)
    c.write_manifest()
    return "extra manifest key (valid)"


def _vm_manifest_retype(c: _VecCtx) -> str:
    paths = [p for p in _flat_paths(c.manifest) if p[-1] not in ("meta", "source")
             and "meta" not in p and "source" not in p]
    p = c.rng.choice(paths)
    v = _pick_wrong(c.rng)
    _set(c.manifest, p, v)
    text = json.dumps(c.manifest)  # NaN / Infinity: Python's json writes (and reads) them
    c.mpath.write_text(text)
    return f"{'.'.join(map(str, p))} = {v!r}"


def _vm_manifest_int(c: _VecCtx) -> str:
    from qgnn.model.golden.format import STAGE_INT_FIELDS

    k = c.rng.choice([*STAGE_INT_FIELDS, "in_level", "out_grid_bits"])
    old = c.entry.get(k) if isinstance(c.entry.get(k), int) else 0
    c.entry[k] = old + c.rng.choice([-1, 1, 2, -old, 1 << 20, 1 << 62, 10**30])
    c.write_manifest()
    return f"stages[{c.si}].{k}: {old} -> {c.entry[k]}"


def _vm_version(c: _VecCtx) -> str:
    c.manifest["version"] = c.rng.choice([0, -1, 1, 2, 3, 99, "2", 2.0, True, None, 2**64, [2]])
    c.manifest["format"] = c.rng.choice([c.manifest["format"]] * 3 + ["qgnn-golden", "", 7])
    c.write_manifest()
    return f"version {c.manifest['version']!r}, format {c.manifest['format']!r}"


def _vm_manifest_garbage(c: _VecCtx) -> str:
    op = c.rng.randrange(7)
    data = c.mpath.read_bytes()
    if op == 0:
        data, what = _damage_text(c.rng, data)
    elif op == 1:
        depth = c.rng.choice([100, 10_000, 200_000])
        data, what = (b"[" * depth + b"]" * depth), f"nested {depth} deep"
    elif op == 2:
        data, what = c.rng.choice([b"[]", b"null", b'"x"', b"1", b"{}"]), "wrong top level"
    elif op == 3:
        data, what = data.replace(b'"version": 2', b'"version": ' + b"9" * 6000), "6000-digit int"
        if b"9" * 6000 not in data:
            data = b'{"format": "qgnn-golden-vectors", "version": ' + b"9" * 6000 + b"}"
    elif op == 4:
        data, what = b'{"format": "qgnn-golden-vectors", "version": NaN}', "NaN version"
    elif op == 5:
        data, what = b'{"a": ' * 5000 + b"1" + b"}" * 5000, "nested objects"
    else:
        data, what = data.decode().encode("utf-16"), "utf-16"
    c.mpath.write_bytes(data)
    return f"manifest {what}"


def _vm_npz_garbage(c: _VecCtx) -> str:
    data = c.spath.read_bytes()
    op = c.rng.randrange(4)
    if op == 0:
        k = c.rng.randrange(len(data))
        c.spath.write_bytes(data[:k])
        return f"stage file truncated to {k} bytes"
    if op == 1:
        c.spath.write_bytes(_garbage_bytes(c.rng))
        return "stage file garbage"
    if op == 2:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("indptr.npy", b"\x93NUMPY\x01\x00garbage header")
            z.writestr("junk.txt", b"hello")
        c.spath.write_bytes(buf.getvalue())
        return "zip with a broken .npy member"
    b = bytearray(data)
    for _ in range(c.rng.randint(1, 20)):
        i = c.rng.randrange(len(b))
        b[i] = c.rng.randrange(256)
    c.spath.write_bytes(bytes(b))
    return "stage file bytes flipped"


def _vm_stage_file(c: _VecCtx) -> str:
    op = c.rng.randrange(4)
    if op == 0:
        c.spath.unlink()
        return "stage file deleted"
    if op == 1:
        c.spath.unlink()
        c.spath.mkdir()
        return "stage file is a directory"
    if op == 2:
        c.entry["file"] = c.rng.choice(["../x.npz", "/etc/passwd.npz", "sub/stage00.npz",
                                        ".hidden.npz", "stage00.NPZ", "", "stage99.npz"])
        c.write_manifest()
        return f"file = {c.entry['file']!r}"
    (c.root / "manifest.json").unlink()
    return "manifest deleted"


VECTOR_MUTATIONS: dict[str, Callable[[_VecCtx], str]] = {
    "array_truncate": _vm_truncate,
    "array_retype": _vm_retype,
    "array_reshape": _vm_reshape,
    "array_value": _vm_value,
    "packed_bits": _vm_packed_bits,
    "indptr": _vm_indptr,
    "indices": _vm_indices,
    "codes_valid": _vm_codes_valid,
    "expected_changed": _vm_expected,
    "array_missing": _vm_missing_array,
    "array_extra": _vm_extra_array,
    "manifest_drop": _vm_manifest_drop,
    "manifest_extra": _vm_manifest_extra,
    "manifest_retype": _vm_manifest_retype,
    "manifest_int": _vm_manifest_int,
    "manifest_version": _vm_version,
    "manifest_garbage": _vm_manifest_garbage,
    "npz_garbage": _vm_npz_garbage,
    "stage_file": _vm_stage_file,
}

#: A reader error starts with the file (the set's directory, manifest or a stage file), then
#: the field (or, for a file that cannot be read at all, what is wrong with it).
_VEC_FIELD_RE = re.compile(r"^(?P<file>/\S+): (?P<field>\S[^:]*)(: |$)")


def _vectors_accepted_ok(root: Path, vs: Any, check: bool) -> str | None:
    """None when a read set equals its files (and the reference, with ``check``)."""
    manifest = json.loads((root / "manifest.json").read_text())
    if vs.manifest != manifest:
        return "manifest differs from the file"
    for e, g in zip(manifest["stages"], vs.stages, strict=True):
        a = _load_npz(root / e["file"])
        st = g.stage
        pairs = [("indptr", st.indptr), ("indices", st.indices), ("multiplier", st.multiplier),
                 ("shift", st.shift), ("codes", st.codes), ("expected_acc", g.expected_acc),
                 ("expected_codes", g.expected_codes), ("expected_packed", g.expected_packed),
                 ("packed_input", g.packed_input)]
        for name, got in pairs:
            want = a[name]
            if want.shape != got.shape or not np.array_equal(want.astype(np.int64),
                                                             np.asarray(got).astype(np.int64)):
                return f"{e['file']}: {name} read differs from the file"
        for k in ("bits", "out_bits", "word_width", "zero_point_in", "zero_point_out",
                  "mult_bits", "acc_width"):
            if getattr(st, k) != e[k]:
                return f"stage {e['name']}: {k} {getattr(st, k)} != manifest {e[k]}"
        if check:
            acc, out = st.compute()
            if not (np.array_equal(acc, g.expected_acc) and np.array_equal(out, g.expected_codes)):
                return f"stage {e['name']}: accepted but the reference disagrees"
    return None


def run_vectors(mutation: str, seed: int, work: Path, cache: Path) -> tuple[str, str, str]:
    from qgnn.model.golden import read_vectors
    from qgnn.model.golden.format import VectorFormatError

    rng = random.Random(seed)
    templates = vector_templates(cache)
    base = rng.choice(sorted(templates))
    root = work / "set"
    shutil.copytree(templates[base], root)
    what = f"[{base}] " + VECTOR_MUTATIONS[mutation](_VecCtx(root, rng))
    for check in (True, False):
        try:
            vs = read_vectors(root, check=check)
        except VectorFormatError as exc:
            msg = str(exc)
            m = _VEC_FIELD_RE.match(msg)
            if str(root) not in msg or m is None:
                return "failure", f"error does not name the file and field: {msg}", what
            if "\n" in one_line(exc):
                return "failure", f"multi-line error: {msg!r}", what
            if check is False:
                continue  # check=True already errored the same way or accepted
            return "error", msg, what
        except Exception:
            return "failure", traceback.format_exc(limit=6), what
        else:
            bad = _vectors_accepted_ok(root, vs, check)
            if bad:
                return "failure", f"accepted but wrong: {bad}", what
            if check:
                return "accepted", "", what
    return "error", "check=False accepted what check=True rejects", what


# ============================================================================ sweep specs

SPEC_BASES: dict[str, str] = {
    "small.toml": (REPO / "examples" / "sweeps" / "small.toml").read_text(),
    "mixed.yaml": (REPO / "examples" / "sweeps" / "mixed.yaml").read_text(),
    "points.toml": """
name = "pts"
[fixed]
dataset = "csbm:n=100"
model = "sage"
epochs = 5
seeds = [0, 3]
hidden = 16
[[points]]
bits = 8
[[points]]
bits = 2
arch.aggregation.pes = 4
[grid]
dropout = [0.1, 0.3]
[evaluate]
accuracy = false
simulate = true
""",
}


def _spec_raw(name: str) -> Any:
    text = SPEC_BASES[name]
    if name.endswith(".toml"):
        import tomllib

        return tomllib.loads(text)
    import yaml

    return yaml.safe_load(text)


def _spec_dump(raw: Any, suffix: str, rng: random.Random) -> bytes:
    if suffix == ".toml":
        if not isinstance(raw, dict):
            return json.dumps(raw).encode()
        return to_toml(raw).encode()
    import yaml

    return yaml.safe_dump(raw, allow_unicode=True).encode() if rng.random() < .7 else \
        json.dumps(raw).encode()  # JSON is YAML


def _spec_struct(rng: random.Random, raw: dict, op: str) -> str:
    paths = _flat_paths(raw)
    if op == "unknown_key":
        tables = [()] + [p for p in paths if isinstance(_get(raw, p), dict)]
        t = rng.choice(tables)
        k = rng.choice(["foo", "datasett", "bit", "Grid", "arch2", "pes", "1", "evaluate"])
        _get(raw, t)[k] = rng.choice([1, "x", [1, 2], {"a": 1}])
        return f"{'.'.join(map(str, t)) or '(top)'}.{k} added"
    if op == "wrong_type":
        p = rng.choice(paths)
        v = _pick_wrong(rng)
        _set(raw, p, v)
        return f"{'.'.join(map(str, p))} = {v!r}"
    if op == "empty_grid":
        choice = rng.randrange(4)
        if choice == 0:
            raw["grid"] = {}
        elif choice == 1:
            raw["grid"] = {"bits": []}
        elif choice == 2:
            raw["points"] = []
        else:
            raw.pop("grid", None)
            raw.pop("points", None)
        return f"empty grid/points ({choice})"
    if op == "bits":
        v = rng.choice([0, 1, 3, 9, 16, 31, 33, 64, -4, "int9", "fp16", "int4", "INT4", "fp32",
                        4.0, 4.5, True, "4", [4], {"bits": 4}, 2**64])
        where = rng.randrange(4)
        if where == 0:
            raw.setdefault("grid", {})["bits"] = [v, 8] if v != 8 else [v]
            raw.get("fixed", {}).pop("bits", None)
            for e in raw.get("points", []):
                if isinstance(e, dict):
                    e.pop("bits", None)
                    e.pop("precision", None)
        elif where == 1:
            raw.setdefault("fixed", {})["precision"] = {"bits": v}
            raw["fixed"].pop("bits", None)
        elif where == 2:
            raw.setdefault("fixed", {})["precision"] = {"layers": {rng.choice(["0", "1", "7", "-1", "x"]): {"bits": v}}}
        else:
            raw.setdefault("fixed", {})["precision"] = {"roles": {rng.choice(["weight", "message", "bogus"]): {"bits": v}}}
        return f"bits {v!r} (place {where})"
    if op == "arch":
        key = rng.choice(["pes", "dram", "aggregation.pes", "aggregation.word_width",
                          "buffers.feature.size_kib", "buffers.bogus.size_kib",
                          "combination.rows", "clock_mhz", "file", "dataflow.layers.0",
                          "dataflow.layers.x", "aggregation", "nope", "area.synth_json",
                          "technology_nm", "dram.preset", "aggregation.bits"])
        v = rng.choice([0, -1, 4, 16, 1.5, "ddr5", "hbm2", "default", "nosuch", True,
                        [2, 4], [], {}, 1e308, float("nan"), "combine-first", 2**63 - 1])
        grid = rng.random() < 0.5
        table: dict = raw.setdefault("grid" if grid else "fixed", {})
        if not isinstance(table, dict):
            return "no-op"
        table.setdefault("arch", {})
        if not isinstance(table["arch"], dict):
            table["arch"] = {}
        table["arch"][key] = [v] if grid else v
        raw.setdefault("evaluate", {})
        if isinstance(raw["evaluate"], dict):
            raw["evaluate"]["simulate"] = True
        return f"{'grid' if grid else 'fixed'}.arch.{key} = {v!r}"
    if op == "delete":
        p = rng.choice(paths)
        _delete(raw, p)
        return f"{'.'.join(map(str, p))} deleted"
    if op == "duplicate":
        raw.setdefault("grid", {})
        if isinstance(raw["grid"], dict):
            raw["grid"]["epochs"] = [5, 5] if rng.random() < .5 else [5, 5.0]
        return "duplicate grid values"
    raise AssertionError(op)


def _spec_text(rng: random.Random, name: str, op: str) -> tuple[bytes, str]:
    text = SPEC_BASES[name].encode()
    toml = name.endswith(".toml")
    if op == "garbage":
        return _damage_text(rng, text)
    if op == "invalid_syntax":
        bad = rng.choice([b"[grid\nbits = [", b"a = = 1", b"x = 'unterminated", b"[fixed]\n[fixed]",
                          b"fixed = 1\n[fixed]", b"\t- : :\n  - [", b"{{{", b"key: [1, 2\n",
                          b"a: b: c", b"---\n- 1\n---\n- 2\n", b"!!python/object:os.system x",
                          b"grid = {bits = [8, 4]\n"])
        return (text + b"\n" + bad) if rng.random() < .5 else bad, f"invalid syntax {bad!r}"
    if op == "deep":
        depth = rng.choice([200, 5000, 100_000])
        if toml:
            return b"name = " + b"[" * depth + b"]" * depth, f"array nested {depth}"
        return b"a: " + b"[" * depth + b"]" * depth, f"flow list nested {depth}"
    if op == "huge":
        n = rng.choice([1000, 1000, 5000, 100_001])
        vals = ", ".join(str(i) for i in range(1, n + 1))
        doc = (f'[fixed]\ndataset = "cora"\n[grid]\nepochs = [{vals}]\n' if toml
               else f"fixed: {{dataset: cora}}\ngrid: {{epochs: [{vals}]}}\n")
        return doc.encode(), f"grid axis of {n} values"
    if op == "yaml_special":
        doc = rng.choice([
            b"a: &a [1, 2]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n"
            b"d: &d [*c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d]\n"
            b"f: &f [*e, *e, *e, *e, *e, *e, *e, *e]\ngrid: {epochs: *f}\nfixed: {dataset: cora}\n",
            b"fixed: {dataset: cora, epochs: 2001-01-01}\ngrid: {bits: [8, 4]}\n",
            b"fixed: {dataset: cora}\ngrid: {epochs: [2001-01-01, 2002-02-02]}\n",
            b"fixed: {dataset: cora, hidden: 0x10}\ngrid: {bits: [8]}\n",
            b"fixed: {dataset: cora}\ngrid: {bits: [8, 4]}\npoints: [{}, {}]\n",
            b"fixed: {dataset: !!binary aGVsbG8=}\ngrid: {bits: [8]}\n",
            b"? [a, b]\n: 1\n",
            b"fixed: {dataset: cora, 1: 2}\ngrid: {bits: [8]}\n",
            b"fixed: {dataset: cora, null: 2}\ngrid: {bits: [8]}\n",
            b"fixed: {dataset: cora}\ngrid: {bits: [.nan, 4]}\n",
            b'fixed = {dataset = "cora", epochs = 1979-05-27T07:32:00Z}\ngrid = {bits = [8]}\n',
            b'fixed = {dataset = "cora"}\ngrid = {epochs = [1979-05-27, 1980-01-01]}\n',
            b'fixed = {dataset = "cora"}\ngrid = {lr = [nan, 0.1]}\n',
            b'fixed = {dataset = "cora", lr = inf}\ngrid = {bits = [8]}\n',
            b'fixed = {dataset = "cora"}\ngrid = {arch = {pes = [07:32:00, 4]}}\n',
        ])
        return doc, f"special document {doc[:40]!r}"
    raise AssertionError(op)


SPEC_STRUCT_OPS = ("unknown_key", "wrong_type", "empty_grid", "bits", "arch", "delete",
                   "duplicate")
SPEC_TEXT_OPS = ("garbage", "invalid_syntax", "deep", "huge", "yaml_special")
SPEC_MUTATIONS = (*SPEC_STRUCT_OPS, *SPEC_TEXT_OPS, "path")

_SPEC_FIELDS = ("spec", "name", "description", "fixed", "grid", "points", "evaluate", "arch",
                "precision", "bits", "dataset")


def _spec_accepted_ok(spec: Any, raw: Any) -> str | None:
    from qgnn.sweeps.spec import PARAMS, flatten

    if not isinstance(raw, dict):
        return "accepted a non-table document"
    entries = raw.get("points") or [{}]
    grid = flatten(raw.get("grid") or {})
    n = len(entries) * math.prod(len(v) for v in grid.values())
    if len(spec.points) != n:
        return f"{len(spec.points)} points, the document defines {n}"
    fixed = raw.get("fixed") or {}
    overridden = set(grid) | {k for e in entries for k in flatten(e)}
    for k, v in fixed.items():
        if k not in PARAMS or k in ("seeds", "dataset") or any(
                o == k or o.startswith(k + ".") for o in overridden):
            continue
        for p in spec.points:
            got = p.params[k]
            want = v.lower() if isinstance(v, str) else v
            if got != want or (type(got) is bool) != (type(want) is bool):
                return f"point {p.index}: {k} = {got!r}, the document says {v!r}"
    return None


def run_spec(mutation: str, seed: int, work: Path, cache: Path) -> tuple[str, str, str]:
    from qgnn.sweeps.spec import SpecError, load_spec

    rng = random.Random(seed)
    base = rng.choice(sorted(SPEC_BASES))
    suffix = Path(base).suffix
    path = work / f"spec{suffix}"
    raw: Any = None
    if mutation in SPEC_STRUCT_OPS:
        raw = _spec_raw(base)
        what = _spec_struct(rng, raw, mutation)
        data = _spec_dump(raw, suffix, rng)
    elif mutation == "path":
        op = rng.randrange(3)
        if op == 0:
            path = work / "nosuch.toml"
            data = None
        elif op == 1:
            path = work / "dir.toml"
            path.mkdir()
            data = None
        else:
            path = work / "spec.json"
            data = b"{}"
        what = f"path {path.name}"
    else:
        if mutation in ("deep", "huge", "invalid_syntax") and rng.random() < 0.5:
            suffix = ".yaml" if suffix == ".toml" else ".toml"
            base = "mixed.yaml" if suffix == ".yaml" else "small.toml"
            path = work / f"spec{suffix}"
        if mutation == "yaml_special":
            data, what = _spec_text(rng, base, mutation)
            suffix = ".toml" if data.startswith(b"fixed =") else ".yaml"
            path = work / f"spec{suffix}"
        else:
            data, what = _spec_text(rng, base, mutation)
    if data is not None:
        path.write_bytes(data)
    what = f"[{path.name}] {what}"
    try:
        spec = load_spec(path)
    except SpecError as exc:
        msg = one_line(exc)
        if "\n" in msg or not msg:
            return "failure", f"bad message {msg!r}", what
        if str(path) not in msg and not re.match(
                rf"^({'|'.join(_SPEC_FIELDS)}|grid\(|points\[|fixed|sweep spec)", msg):
            return "failure", f"error names neither the file nor a field: {msg}", what
        return "error", msg, what
    except Exception:
        return "failure", traceback.format_exc(limit=6), what
    if raw is None:
        try:
            if suffix == ".toml":
                import tomllib

                raw = tomllib.loads(path.read_text())
            else:
                import yaml

                raw = yaml.safe_load(path.read_text())
        except Exception as exc:  # pragma: no cover - load_spec accepted it
            return "failure", f"accepted a document its parser rejects: {exc}", what
    bad = _spec_accepted_ok(spec, raw)
    return ("failure", f"accepted but wrong: {bad}", what) if bad else ("accepted", "", what)


# ============================================================================ arch files

ARCH_BASES = ("default.toml", "ddr4.toml", "large.toml", "edge-lpddr4.toml")


def _arch_raw(name: str) -> dict:
    import tomllib

    return tomllib.loads((REPO / "sim" / "configs" / name).read_text())


def _arch_struct(rng: random.Random, raw: dict, op: str) -> str:
    paths = [p for p in _flat_paths(raw) if p != ("area", "synth_json")]
    leaves = [p for p in paths if not isinstance(_get(raw, p), dict)]
    if op == "unknown_key":
        tables = [()] + [p for p in paths if isinstance(_get(raw, p), dict)]
        t = rng.choice(tables)
        k = rng.choice(["foo", "pe", "size", "Pes", "bandwidth", "latency", "bits2", "default2"])
        _get(raw, t)[k] = rng.choice([1, "x", [1], {"a": 1}, 2.5])
        return f"{'.'.join(map(str, t)) or '(top)'}.{k} added"
    if op == "wrong_type":
        p = rng.choice(leaves)
        v = _pick_wrong(rng)
        _set(raw, p, v)
        return f"{'.'.join(map(str, p))} = {v!r}"
    if op == "bad_number":
        p = rng.choice(leaves)
        v = rng.choice([0, -1, -0.5, 0.0, float("nan"), float("inf"), -float("inf"), 1e308,
                        1e-308, 2**63 - 1, -2**63, 3, 7, 1.5, 10**6, 5e-324])
        _set(raw, p, v)
        return f"{'.'.join(map(str, p))} = {v!r}"
    if op == "missing":
        p = rng.choice(paths)
        _delete(raw, p)
        return f"{'.'.join(map(str, p))} deleted"
    if op == "bits_list":
        sec = rng.choice(["aggregation", "combination"])
        v = rng.choice([[], [3], [1], [32], [2, 2], ["4"], [4.0], [16], [2, 4, 8, 16], [7], 4,
                        [True], [0], [-2]])
        raw.setdefault(sec, {})["bits"] = v
        return f"{sec}.bits = {v!r}"
    if op == "dataflow":
        layers = rng.choice([{"-1": "auto"}, {"x": "auto"}, {"1.5": "auto"}, {" 2": "auto"},
                             {"0": "auto", "00": "combine-first"}, {"1_0": "auto"},
                             {"0": "sideways"}, {"0": 3}, {"99999999999999999999": "auto"},
                             {"0": "AUTO"}, {"0": {"a": 1}}])
        raw["dataflow"] = {"default": rng.choice(["auto", "combine-first", "x", 1]),
                           "layers": layers}
        return f"dataflow = {raw['dataflow']!r}"
    raise AssertionError(op)


ARCH_STRUCT_OPS = ("unknown_key", "wrong_type", "bad_number", "missing", "bits_list",
                   "dataflow")
ARCH_MUTATIONS = (*ARCH_STRUCT_OPS, "garbage", "deep", "path")


def _arch_accepted_ok(cfg: Any, raw: dict) -> str | None:
    from qgnn.sim.config import ArchConfig

    d = cfg.to_dict()
    for p in _flat_paths(raw):
        v = _get(raw, p)
        if isinstance(v, dict) or p[0] == "area" or (p[0] == "dataflow" and len(p) > 1
                                                     and p[1] == "layers") or any(
                isinstance(x, int) for x in p):  # list elements: checked with their list
            continue
        try:
            got = _get(d, p)
        except (KeyError, IndexError, TypeError):
            if len(p) > 2 and isinstance(p[-1], int):  # a list element: checked with the list
                continue
            return f"{'.'.join(map(str, p))} is in the file but not in the chip"
        if isinstance(v, list):
            if p[-1] == "bits":
                v = sorted(set(v))
            if list(got) != v:
                return f"{'.'.join(map(str, p))}: file {v!r}, chip {got!r}"
        elif isinstance(v, str):
            if got != v.lower() and got != v:
                return f"{'.'.join(map(str, p))}: file {v!r}, chip {got!r}"
        elif got != v or (type(v) is bool) != (type(got) is bool):
            return f"{'.'.join(map(str, p))}: file {v!r}, chip {got!r}"
    layers = (raw.get("dataflow") or {}).get("layers") or {}
    if len(layers) != len(cfg.dataflow_layers):
        return f"dataflow.layers: file has {len(layers)} entries, chip {len(cfg.dataflow_layers)}"
    again = ArchConfig.from_dict(d)
    if again.to_dict() != d:
        return "to_dict() does not round-trip"
    # the chip must be usable: finite derived figures and a tiny simulation
    if not (math.isfinite(cfg.bytes_per_cycle) and cfg.bytes_per_cycle > 0):
        return f"bytes_per_cycle = {cfg.bytes_per_cycle}"
    for name in cfg.buffers:
        if cfg.usable_bytes(name) < 1:
            return f"buffer {name}: {cfg.usable_bytes(name)} usable bytes"
    return _arch_simulates(cfg)


_TINY_GRAPH: list[Any] = []


def _arch_simulates(cfg: Any) -> str | None:
    from qgnn.sim.simulation import simulate

    if not _TINY_GRAPH:
        from qgnn.model.datasets import load_dataset

        _TINY_GRAPH.append(load_dataset("csbm:n=60,classes=3", seed=0))
    top = min(max(cfg.aggregation.bits), max(cfg.combination.bits))
    for bits in [b for b in (2, 4, 8) if b <= top] or [top]:
        try:
            rep = simulate(_TINY_GRAPH[0], bits=bits, arch=cfg, hidden=8).to_dict()
        except Exception as exc:
            return f"accepted chip fails to simulate at INT{bits}: {type(exc).__name__}: {exc}"
        for key in ("cycles", "energy_pj", "fp32_cycles", "fp32_energy_pj"):
            v = rep[key]
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                return f"accepted chip simulates INT{bits} to {key} = {v!r}"
    return None


def run_arch(mutation: str, seed: int, work: Path, cache: Path) -> tuple[str, str, str]:
    from qgnn.sim.config import ArchConfigError, load_arch

    rng = random.Random(seed)
    base = rng.choice(ARCH_BASES)
    path = work / "arch.toml"
    raw = None
    if mutation in ARCH_STRUCT_OPS:
        raw = _arch_raw(base)
        raw.get("area", {}).pop("synth_json", None)
        what = _arch_struct(rng, raw, mutation)
        path.write_text(to_toml(raw))
    elif mutation == "garbage":
        data, what = _damage_text(rng, (REPO / "sim" / "configs" / base).read_bytes())
        data = data.replace(b"../data/hw_synth_generic.json",
                            str(REPO / "sim" / "data" / "hw_synth_generic.json").encode())
        path.write_bytes(data)
    elif mutation == "deep":
        depth = rng.choice([100, 3000, 100_000])
        which = rng.randrange(2)
        path.write_bytes(b"name = " + b"[" * depth + b"]" * depth if which == 0 else
                         b"x = " + b"{a = " * depth + b"1" + b"}" * depth)
        what = f"nested {depth} deep"
    else:
        op = rng.randrange(3)
        if op == 0:
            path = work / "nosuch.toml"
        elif op == 1:
            path = work / "adir.toml"
            path.mkdir()
        else:
            path = work / "sub"
            path.mkdir()
            path = path / "arch"
            path.write_bytes(b"\xff\xfe garbage")
        what = f"path {path.name}"
    what = f"[{base}] {what}"
    try:
        cfg = load_arch(str(path))
    except ArchConfigError as exc:
        msg = one_line(exc)
        if "\n" in msg or str(path) not in msg and "arch " not in msg:
            return "failure", f"error does not name the file: {msg}", what
        return "error", msg, what
    except Exception:
        return "failure", traceback.format_exc(limit=6), what
    if raw is None:
        import tomllib

        try:
            raw = tomllib.loads(path.read_text())
        except Exception as exc:
            return "failure", f"accepted a file tomllib rejects: {exc}", what
        raw.get("area", {}).pop("synth_json", None)
    bad = _arch_accepted_ok(cfg, raw)
    return ("failure", f"accepted but wrong: {bad}", what) if bad else ("accepted", "", what)


# ============================================================================ datasets

DATASET_FILES = {
    "cora": ("Cora", [f"ind.cora.{p}" for p in
                      ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")]),
    "actor": ("Actor", ["out1_node_feature_label.txt", "out1_graph_edges.txt",
                        *[f"film_split_0.6_0.2_{i}.npz" for i in range(10)]]),
}


def dataset_source() -> Path | None:
    """A root holding the Cora and Actor raw files: ``$QGNN_DATA_ROOT``, else
    ``../shared/datasets``; ``None`` when neither has both."""
    env = os.environ.get("QGNN_DATA_ROOT")
    for root in ([Path(env)] if env else []) + [SHARED_DATASETS]:
        if all((root / folder / "raw" / f).is_file()
               for folder, files in DATASET_FILES.values() for f in files):
            return root
    return None


def dataset_template(cache: Path) -> Path:
    """A writable copy of the raw files (Cora and Actor) under ``cache``."""
    tpl = cache / "datasets-template"
    if not (tpl / "done").is_file():
        src = dataset_source()
        if src is None:
            raise FileNotFoundError(f"no Cora/Actor raw files (QGNN_DATA_ROOT, {SHARED_DATASETS})")
        for folder, files in DATASET_FILES.values():
            (tpl / folder / "raw").mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copyfile(src / folder / "raw" / f, tpl / folder / "raw" / f)
        (tpl / "done").write_text("ok")
    return tpl


def _pkl_load(path: Path) -> Any:
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pickle.load(f, encoding="latin1")


def _pkl_dump(path: Path, obj: Any) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _dm_planetoid(rng: random.Random, raw: Path, op: str) -> tuple[str, str]:
    import scipy.sparse as sp

    files = DATASET_FILES["cora"][1]
    victim = rng.choice(files)
    p = raw / victim
    part = victim.split(".", 2)[2]
    if op in ("truncate", "garbage"):
        data = p.read_bytes()
        if op == "truncate":
            k = rng.randrange(len(data))
            p.write_bytes(data[:k])
            return victim, f"truncated to {k} bytes"
        data, what = _damage_text(rng, data)
        p.write_bytes(data)
        return victim, what
    if part == "test.index":
        idx = [int(t) for t in p.read_text().split()]
        choice = rng.randrange(6)
        if choice == 0:
            idx[rng.randrange(len(idx))] = rng.choice([-1, 2708, 10**9, 0, 100])
        elif choice == 1:
            idx[1] = idx[0]
        elif choice == 2:
            idx = idx[: rng.randrange(len(idx))]
        elif choice == 3:
            p.write_text("\n".join(map(str, idx)) + "\n1.5\n")
            return victim, "a float index"
        elif choice == 4:
            rng.shuffle(idx)
        else:
            idx = idx + [idx[-1] + 1]
        p.write_text("\n".join(map(str, idx)) + "\n")
        return victim, f"test index mutation {choice}"
    obj = _pkl_load(p)
    if part == "graph":
        g = dict(obj)
        keys = list(g)
        choice = rng.randrange(7)
        k = rng.choice(keys)
        if choice == 0:
            g[k] = list(g[k]) + [rng.choice([-1, 2708, 10**9])]
        elif choice == 1:
            g[rng.choice([-1, 2708, 10**9])] = [0]
        elif choice == 2:
            g[k] = rng.choice([5, "abc", None, 1.5])
        elif choice == 3:
            g["x"] = [1]
        elif choice == 4:
            g[k] = list(g[k]) + [k, k]  # self-loops, duplicates: valid
        elif choice == 5:
            g = rng.choice([[1, 2], "graph", None, {}])
        else:
            g[k] = [1.5]
        _pkl_dump(p, g)
        return victim, f"graph mutation {choice}"
    arr = obj.toarray() if sp.issparse(obj) else np.asarray(obj)
    choice = rng.randrange(9)
    if choice == 0:
        new: Any = arr[:, : rng.randrange(arr.shape[1])]
    elif choice == 1:
        new = arr[: rng.randrange(arr.shape[0])]
    elif choice == 2:
        new = arr.reshape(-1)
    elif choice == 3:
        new = np.concatenate([arr, arr[:, :1]], axis=1)
    elif choice == 4:
        new = arr.astype(np.float64)
        new[rng.randrange(arr.shape[0]), rng.randrange(arr.shape[1])] = rng.choice(
            [np.nan, np.inf, -np.inf])
    elif choice == 5:
        new = arr.astype(object)
    elif choice == 6:
        new = rng.choice([[1, 2, 3], "matrix", None, {"a": 1}, np.zeros((2, 2, 2))])
    elif choice == 7:  # a valid value change
        new = arr.copy()
        i, j = rng.randrange(arr.shape[0]), rng.randrange(arr.shape[1])
        new[i, j] = 1 - new[i, j] if new[i, j] in (0, 1) else 0
    else:
        new = sp.csr_matrix((arr.shape[0], 10**9), dtype=np.float32)
    if sp.issparse(obj) and isinstance(new, np.ndarray) and new.ndim == 2 and new.dtype != object:
        new = sp.csr_matrix(new)
    _pkl_dump(p, new)
    return victim, f"matrix mutation {choice}"


def _dm_actor(rng: random.Random, raw: Path, op: str) -> tuple[str, str]:
    files = DATASET_FILES["actor"][1]
    victim = rng.choice(files[:2] * 3 + files[2:])
    p = raw / victim
    if op in ("truncate", "garbage"):
        data = p.read_bytes()
        if op == "truncate":
            k = rng.randrange(len(data))
            if rng.random() < 0.5 and b"\n" in data[:k]:
                k = data[:k].rindex(b"\n") + 1  # at a line boundary
            p.write_bytes(data[:k])
            return victim, f"truncated to {k} bytes"
        data, what = _damage_text(rng, data)
        p.write_bytes(data)
        return victim, what
    if victim.endswith(".npz"):
        z = _load_npz(p)
        key = rng.choice(sorted(z))
        choice = rng.randrange(7)
        if choice == 0:
            z[key] = z[key][:-1]
        elif choice == 1:
            z[key] = z[key].reshape(-1, 1)
        elif choice == 2:
            z[key] = z[key].astype(rng.choice(["float32", "int64", "bool", "U1"]))
        elif choice == 3:
            z[key] = z[key].astype(np.int64) * 2
        elif choice == 4:
            z["train_mask"] = z["val_mask"].copy()
        elif choice == 5:
            del z[key]
        else:
            z[key] = np.zeros_like(z[key])  # valid: an empty mask
        with open(p, "wb") as fh:
            np.savez(fh, **z)
        return victim, f"mask mutation {choice} on {key}"
    lines = p.read_text().split("\n")
    i = rng.randrange(1, len(lines) - 1)
    parts = lines[i].split("\t")
    choice = rng.randrange(8)
    if victim.startswith("out1_node"):
        if choice == 0:
            parts[1] = parts[1] + "," + rng.choice(["-1", "1.5", "", "x", "1e3", str(10**12)])
        elif choice == 1:
            parts[2] = rng.choice(["5", "-1", "9", "x", "4", "0"])
        elif choice == 2:
            parts = parts[:2]
        elif choice == 3:
            parts[0] = rng.choice(["-1", "7600", "0", "x", "1.0"])
        elif choice == 4:
            parts[1] = ""
        elif choice == 5:
            parts.append("extra")
        elif choice == 6:
            parts[1] = "931"  # valid
        else:
            parts[1] = " 92 , 93"
    else:
        if choice < 3:
            parts[rng.randrange(2)] = rng.choice(["-1", "7600", "x", "1.5", "", str(10**12)])
        elif choice < 5:
            parts.append("3")
        elif choice == 5:
            parts = [parts[0], parts[0]]  # self-loop: valid
        else:
            parts = [str(rng.randrange(7600)), str(rng.randrange(7600))]  # valid new edge
    lines[i] = "\t".join(parts)
    p.write_text("\n".join(lines))
    return victim, f"line {i + 1} mutation {choice}: {lines[i][:60]!r}"


DATASET_MUTATIONS = ("truncate", "garbage", "content")


def _canon_edges(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    keep = src != dst
    key = np.unique(dst[keep].astype(np.int64) * n + src[keep].astype(np.int64))
    return np.stack([key % n, key // n])


def reference_planetoid(raw: Path, prefix: str) -> dict[str, np.ndarray]:
    """Independent reading of Planetoid raw files (as PyG's loader defines them)."""
    import scipy.sparse as sp

    o = {k: _pkl_load(raw / f"ind.{prefix}.{k}") for k in
         ("x", "tx", "allx", "y", "ty", "ally", "graph")}
    dense = {k: (o[k].toarray() if sp.issparse(o[k]) else np.asarray(o[k])).astype(np.float32)
             for k in ("x", "tx", "allx", "y", "ty", "ally")}
    test = np.array([int(t) for t in (raw / f"ind.{prefix}.test.index").read_text().split()])
    x = np.concatenate([dense["allx"], dense["tx"]])
    x[test] = x[np.sort(test)]
    y = np.concatenate([dense["ally"], dense["ty"]]).argmax(1)
    y[test] = y[np.sort(test)]
    n = x.shape[0]
    ny = dense["y"].shape[0]
    masks = [np.zeros(n, bool) for _ in range(3)]
    masks[0][:ny] = True
    masks[1][ny: ny + 500] = True
    masks[2][test] = True
    src = np.array([k for k, v in o["graph"].items() for _ in v], dtype=np.int64)
    dst = np.array([u for v in o["graph"].values() for u in v], dtype=np.int64)
    return {"x": x, "y": y, "edge_index": _canon_edges(src, dst, n), "train_mask": masks[0],
            "val_mask": masks[1], "test_mask": masks[2]}


def reference_actor(raw: Path, split: int = 0) -> dict[str, np.ndarray]:
    """Independent reading of the geom-gcn Actor raw files."""
    lines = (raw / "out1_node_feature_label.txt").read_text().split("\n")[1:-1]
    rows, cols, labels = [], [], {}
    for ln in lines:
        nid, feats, label = ln.split("\t")
        for f in feats.split(","):
            rows.append(int(nid))
            cols.append(int(f))
        labels[int(nid)] = int(label)
    n = max(rows) + 1
    x = np.zeros((n, max(cols) + 1), dtype=np.float32)
    x[rows, cols] = 1.0
    y = np.array([labels[i] for i in range(len(lines))])
    edges = [ln.split("\t") for ln in
             (raw / "out1_graph_edges.txt").read_text().split("\n")[1:-1]]
    e = np.array([[int(a), int(b)] for a, b in edges], dtype=np.int64).reshape(-1, 2)
    z = _load_npz(raw / f"film_split_0.6_0.2_{split}.npz")
    return {"x": x, "y": y, "edge_index": _canon_edges(e[:, 0], e[:, 1], n),
            **{k: z[k].astype(bool) for k in ("train_mask", "val_mask", "test_mask")}}


def run_datasets(mutation: str, seed: int, work: Path, cache: Path) -> tuple[str, str, str]:
    from qgnn.model.datasets import DatasetError, load_dataset

    os.environ["QGNN_OFFLINE"] = "1"
    rng = random.Random(seed)
    name = rng.choice(["cora", "actor"])
    folder, files = DATASET_FILES[name]
    tpl = dataset_template(cache)
    root = work / "root"
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    for f in files:
        os.link(tpl / folder / "raw" / f, raw / f)
    op = mutation if mutation != "content" else "content"
    # the mutation replaces its file (new inode): the hard-linked template stays intact
    victim_tmp = work / "victim"
    victim_tmp.mkdir()
    scratch = victim_tmp / "raw"
    shutil.copytree(raw, scratch, copy_function=shutil.copyfile)
    if name == "cora":
        victim, what = _dm_planetoid(rng, scratch, op)
    else:
        victim, what = _dm_actor(rng, scratch, op)
    os.replace(scratch / victim, raw / victim)
    what = f"[{name}] {victim}: {what}"
    try:
        data = load_dataset(name, root=root)
    except DatasetError as exc:
        msg = str(exc)
        if victim not in msg:
            return "failure", f"DatasetError does not name {victim}: {one_line(exc)}", what
        return "error", one_line(exc), what
    except Exception:
        return "failure", traceback.format_exc(limit=6), what
    try:
        ref = reference_planetoid(raw, "cora") if name == "cora" else reference_actor(raw)
    except Exception as exc:
        return "failure", f"accepted files the reference reader cannot read: {exc!r}", what
    for key, want in ref.items():
        got = getattr(data, key).numpy()
        if got.shape != want.shape or not np.array_equal(got, want):
            return "failure", f"accepted but {key} differs from the raw files", what
    return "accepted", "", what


# ============================================================================ dispatch

MUTATIONS: dict[str, tuple[str, ...]] = {
    "vectors": tuple(VECTOR_MUTATIONS),
    "spec": SPEC_MUTATIONS,
    "arch": ARCH_MUTATIONS,
    "datasets": DATASET_MUTATIONS,
}

_RUNNERS = {"vectors": run_vectors, "spec": run_spec, "arch": run_arch,
            "datasets": run_datasets}


def run_case(kind: str, mutation: str, seed: int, cache: Path | None = None) -> Outcome:
    """Generate case ``(kind, mutation, seed)`` in a temporary directory, read it, classify."""
    cache = Path(cache) if cache is not None else Path(tempfile.gettempdir()) / "qgnn-fuzz-cache"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{kind}-"))
    try:
        try:
            status, detail, what = _RUNNERS[kind](mutation, seed, work, cache)
        except Exception:
            status, detail, what = "failure", "harness: " + traceback.format_exc(limit=8), ""
        return Outcome(kind, mutation, seed, status, detail, what)
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["KINDS", "MUTATIONS", "Outcome", "run_case", "to_toml"]
