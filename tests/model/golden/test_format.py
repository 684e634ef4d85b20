"""The golden vector format: write/read round trip, atomic writes, corrupted sets rejected."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.golden import format as fmt
from qgnn.model.golden import packing
from qgnn.model.golden.format import VectorFormatError, read_vectors, write_vectors
from qgnn.model.golden.stage import AggregationStage, random_stage
from qgnn.model.integer import rules


def sample_stages() -> list[AggregationStage]:
    rng = np.random.default_rng(1234)
    a = random_stage(rng, num_nodes=20, features=19, bits=4, word_width=64, name="layer0.aggregate")
    b = random_stage(rng, num_nodes=9, features=7, bits=2, word_width=16, name="layer1.aggregate")
    a.meta = {"layer": 0, "scale_in": np.float64(0.125)}
    return [a, b]


@pytest.fixture
def vset(tmp_path: Path) -> Path:
    return write_vectors(
        tmp_path / "vec", sample_stages(), {"dataset": "synthetic", "model": "gcn", "bits": 4, "seed": 0}
    )


# --- round trip ----------------------------------------------------------------------------
def test_manifest_contents(vset: Path) -> None:
    assert sorted(p.name for p in vset.iterdir()) == ["manifest.json", "stage00.npz", "stage01.npz"]
    m = json.loads((vset / "manifest.json").read_text())
    assert m["format"] == "qgnn-golden-vectors" and m["version"] == 2
    assert all((e["in_level"], e["out_thresholds"]) == (1, None) for e in m["stages"])
    assert m["created_by"].startswith("qgnn ")
    assert m["rounding"] == "half_up"
    assert m["source"] == {"dataset": "synthetic", "model": "gcn", "bits": 4, "seed": 0}
    s0, s1 = m["stages"]
    assert s0["name"] == "layer0.aggregate" and s0["file"] == "stage00.npz"
    # 19 4-bit features in 64-bit words: 16 lanes, 2 words; 2-bit in 16-bit words: 8 lanes, 1 word
    assert (s0["lanes"], s0["words_per_row"], s0["word_width"]) == (16, 2, 64)
    assert (s1["lanes"], s1["words_per_row"], s1["word_width"]) == (8, 1, 16)
    assert s0["meta"] == {"layer": 0, "scale_in": 0.125}
    assert s0["max_shift"] == 63 and s0["mult_bits"] == 16
    with np.load(vset / "stage00.npz") as z:
        assert z["packed_input"].shape == (20, 16) and z["packed_input"].dtype == np.uint8
        assert z["codes"].dtype == np.uint8 and z["expected_acc"].dtype == np.int64
        assert s0["acc_width"] == rules.acc_width(4, int(np.diff(z["indptr"]).max()))


def test_round_trip_and_helpers(vset: Path) -> None:
    original = sample_stages()
    vs = read_vectors(vset)
    assert read_vectors(vset / "manifest.json").manifest == vs.manifest
    assert [g.name for g in vs] == [s.name for s in original] and len(vs) == 2
    for st_, g in zip(original, vs, strict=True):
        acc, out = st_.compute()
        np.testing.assert_array_equal(g.stage.codes, st_.codes)
        np.testing.assert_array_equal(g.stage.indptr, st_.indptr)
        np.testing.assert_array_equal(g.expected_acc, acc)
        np.testing.assert_array_equal(g.expected_codes, out)
        np.testing.assert_array_equal(g.packed_input, st_.packed_input())
        row0 = g.packed_input[0].tobytes()
        nb = st_.word_width // 8
        assert g.input_words()[0][0] == int.from_bytes(row0[:nb], "little")
    assert vs.stage("layer1.aggregate").stage.bits == 2
    with pytest.raises(KeyError, match="layer0.aggregate"):
        vs.stage("nope")


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    bits=st.sampled_from([1, 2, 4, 8, 12]),
    word_width=st.sampled_from(packing.WORD_WIDTHS),
    features=st.integers(1, 40),
    num_nodes=st.integers(1, 15),
)
def test_round_trip_property(seed: int, bits: int, word_width: int, features: int, num_nodes: int) -> None:
    if word_width < bits:
        word_width = 16
    stage = random_stage(
        np.random.default_rng(seed), num_nodes=num_nodes, features=features, bits=bits,
        word_width=word_width,
    )
    acc, out = stage.compute()
    with tempfile.TemporaryDirectory() as d:
        vs = read_vectors(write_vectors(Path(d) / "v", [stage]))
    (g,) = vs.stages
    np.testing.assert_array_equal(g.expected_acc, acc)
    np.testing.assert_array_equal(g.expected_codes, out)
    np.testing.assert_array_equal(g.expected_packed, stage.packed_output(out))
    for attr in ("bits", "out_bits", "word_width", "acc_width", "zero_point_in", "zero_point_out"):
        assert getattr(g.stage, attr) == getattr(stage, attr)
    np.testing.assert_array_equal(g.stage.multiplier, stage.multiplier)
    np.testing.assert_array_equal(g.stage.shift, stage.shift)


# --- writer --------------------------------------------------------------------------------
def test_overwrite_replaces_set_and_keeps_other_files(vset: Path) -> None:
    (vset / "notes.txt").write_text("mine")
    write_vectors(vset, sample_stages()[1:])
    assert sorted(p.name for p in vset.iterdir()) == ["manifest.json", "notes.txt", "stage00.npz"]
    assert [g.name for g in read_vectors(vset)] == ["layer1.aggregate"]
    assert not [p for p in vset.parent.iterdir() if p.name.startswith(".")]  # temp dir removed


def test_crash_during_write_leaves_no_manifest(vset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace

    def failing_replace(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        if Path(dst).name == "stage01.npz":
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(fmt.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_vectors(vset, sample_stages())
    with pytest.raises(VectorFormatError, match="manifest.json: missing manifest"):
        read_vectors(vset)
    assert not [p for p in vset.parent.iterdir() if p.name.startswith(".")]


def test_crash_in_fresh_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fmt.np, "savez_compressed", boom)
    with pytest.raises(OSError, match="disk full"):
        write_vectors(tmp_path / "new", sample_stages())
    assert list(tmp_path.iterdir()) == []


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    a, b = sample_stages()
    with pytest.raises(ValueError, match="at least one stage"):
        write_vectors(tmp_path / "x", [])
    b.name = a.name
    with pytest.raises(ValueError, match="unique"):
        write_vectors(tmp_path / "x", [a, b])
    a.acc_width = rules.acc_width(a.bits, a.max_terms) - 1
    with pytest.raises(rules.AccumulatorOverflowError):
        write_vectors(tmp_path / "x", [a])
    _, b = sample_stages()
    b.meta = {"f": object()}
    with pytest.raises(ValueError, match="JSON"):
        write_vectors(tmp_path / "x", [b])
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        write_vectors(tmp_path / "file", sample_stages())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# --- corruptions ---------------------------------------------------------------------------
Arrays = dict[str, np.ndarray]


def edit_arrays(fn: Callable[[Arrays], None], file: str = "stage00.npz") -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        with np.load(root / file) as z:
            arrays = {k: z[k] for k in z.files}
        fn(arrays)
        np.savez(root / file, **arrays)

    return apply


def edit_manifest(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        m = json.loads((root / "manifest.json").read_text())
        fn(m)
        (root / "manifest.json").write_text(json.dumps(m))

    return apply


def stage0(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    return edit_manifest(lambda m: fn(m["stages"][0]))


def _set(d: dict, key: str, value: object) -> None:
    d[key] = value


def _del(d: dict, key: str) -> None:
    del d[key]


def _decreasing(a: Arrays) -> None:
    p = a["indptr"]
    k = int(np.argmax(np.diff(p) > 0))  # a non-empty row k: make indptr[k+1] < indptr[k]
    p[k + 1] = p[k] - 1


def _index_too_big(a: Arrays) -> None:
    a["indices"][3] = a["codes"].shape[0]


def _flip(name: str, r: int = 0, b: int = 0) -> Callable[[Arrays], None]:
    def f(a: Arrays) -> None:
        a[name][r, b] ^= 1

    return f


def _both_expected_codes(a: Arrays) -> None:
    """Change an expected code and repack consistently: only recomputation catches it."""
    c = a["expected_codes"]
    c[2, 3] = (int(c[2, 3]) + 1) % 16
    a["expected_packed"] = packing.pack_codes(c.astype(np.int64), 4, 64, _Z_OUT[0])


def _bump_acc(a: Arrays) -> None:
    a["expected_acc"][1, 5] += 1


_Z_OUT: list[int] = []


def _drop_file(name: str) -> Callable[[Path], None]:
    return lambda root: (root / name).unlink()


CORRUPTIONS: list[tuple[str, Callable[[Path], None], str, str]] = [
    # (id, corruption, file named in the message, field named in the message)
    *[
        (f"missing-array-{n}", edit_arrays(lambda a, n=n: a.pop(n)), "stage00.npz", f"{n}: missing array")
        for n in fmt.ARRAY_NAMES
    ],
    ("missing-manifest", _drop_file("manifest.json"), "manifest.json", "missing manifest"),
    ("missing-npz", _drop_file("stage01.npz"), "stage01.npz", "missing stage file"),
    ("truncated-npz", lambda r: (r / "stage00.npz").write_bytes(b"PK\x03\x04junk"), "stage00.npz", "unreadable"),
    ("manifest-not-json", lambda r: (r / "manifest.json").write_text("{"), "manifest.json", "not valid JSON"),
    ("dtype-indptr", edit_arrays(lambda a: _set(a, "indptr", a["indptr"].astype(np.int32))), "stage00.npz", "indptr: dtype is int32"),
    ("dtype-codes", edit_arrays(lambda a: _set(a, "codes", a["codes"].astype(np.int64))), "stage00.npz", "codes: dtype is int64"),
    ("dtype-packed", edit_arrays(lambda a: _set(a, "expected_packed", a["expected_packed"].astype(np.int16))), "stage00.npz", "expected_packed: dtype"),
    ("dtype-big-endian", edit_arrays(lambda a: _set(a, "shift", a["shift"].astype(">i8"))), "stage00.npz", "shift: dtype"),
    ("shape-multiplier", edit_arrays(lambda a: _set(a, "multiplier", a["multiplier"][:-1])), "stage00.npz", "multiplier: shape"),
    ("shape-ndim", edit_arrays(lambda a: _set(a, "expected_acc", a["expected_acc"].ravel())), "stage00.npz", "expected_acc: has 1 dimensions"),
    ("shape-packed", edit_arrays(lambda a: _set(a, "packed_input", a["packed_input"][:, :8])), "stage00.npz", "packed_input: shape"),
    ("version-newer", edit_manifest(lambda m: _set(m, "version", 4)), "manifest.json", "version: format version 4 was written by a newer qgnn"),
    ("version-bad", edit_manifest(lambda m: _set(m, "version", "1")), "manifest.json", "version: must be a positive integer"),
    ("format-name", edit_manifest(lambda m: _set(m, "format", "other")), "manifest.json", "format: is 'other'"),
    ("rounding", edit_manifest(lambda m: _set(m, "rounding", "half_even")), "manifest.json", "rounding"),
    ("stage-rounding", stage0(lambda s: _set(s, "rounding", "half_even")), "manifest.json", "stages[0].rounding"),
    ("missing-key-top", edit_manifest(lambda m: _del(m, "stages")), "manifest.json", "stages: missing manifest key"),
    ("missing-key-version", edit_manifest(lambda m: _del(m, "version")), "manifest.json", "version: missing manifest key"),
    ("missing-key-stage", stage0(lambda s: _del(s, "acc_width")), "manifest.json", "stages[0].acc_width: missing manifest key"),
    ("non-int-field", stage0(lambda s: _set(s, "bits", 4.0)), "manifest.json", "stages[0].bits: must be an integer"),
    ("file-traversal", stage0(lambda s: _set(s, "file", "../stage00.npz")), "manifest.json", "stages[0].file"),
    ("duplicate-name", edit_manifest(lambda m: _set(m["stages"][1], "name", m["stages"][0]["name"])), "manifest.json", "stages[1].name"),
    ("indptr-start", edit_arrays(lambda a: a["indptr"].__setitem__(0, 1)), "stage00.npz", "indptr: indptr[0] is 1"),
    ("indptr-decreasing", edit_arrays(_decreasing), "stage00.npz", "indptr: must be non-decreasing"),
    ("indptr-end", edit_arrays(lambda a: a["indptr"].__setitem__(-1, a["indptr"][-1] - 1)), "stage00.npz", "indptr: indptr[-1]"),
    ("index-out-of-range", edit_arrays(_index_too_big), "stage00.npz", "indices: indices[3]"),
    ("index-negative", edit_arrays(lambda a: a["indices"].__setitem__(0, -1)), "stage00.npz", "indices: indices[0] = -1"),
    ("code-out-of-range", edit_arrays(lambda a: a["codes"].__setitem__((1, 2), 16)), "stage00.npz", "codes: codes[1, 2] = 16 outside 0..15"),
    ("multiplier-range", edit_arrays(lambda a: a["multiplier"].__setitem__(4, 2**16)), "stage00.npz", "multiplier: multiplier[4]"),
    ("shift-range", edit_arrays(lambda a: a["shift"].__setitem__(2, 64)), "stage00.npz", "shift: shift[2] = 64"),
    ("packed-input-byte", edit_arrays(_flip("packed_input", 3, 2)), "stage00.npz", "packed_input: differs from pack(codes) at node 3, byte 2"),
    ("expected-packed-byte", edit_arrays(_flip("expected_packed", 0, 0)), "stage00.npz", "expected_packed: differs"),
    ("expected-codes", edit_arrays(_both_expected_codes), "stage00.npz", "expected_codes: stage 'layer0.aggregate' disagrees with the reference at node 2, feature 3"),
    ("expected-acc", edit_arrays(_bump_acc), "stage00.npz", "expected_acc: stage 'layer0.aggregate' disagrees with the reference at node 1, feature 5"),
    ("acc-width-small", stage0(lambda s: _set(s, "acc_width", s["acc_width"] - 1)), "manifest.json", "stages[0].acc_width: 6 bits is too small"),
    ("zero-point-range", stage0(lambda s: _set(s, "zero_point_in", 16)), "manifest.json", "stages[0].zero_point_in: 16 outside"),
    ("manifest-num-nodes", stage0(lambda s: _set(s, "num_nodes", s["num_nodes"] + 1)), "stage00.npz", "indptr: shape"),
    ("manifest-num-src", stage0(lambda s: _set(s, "num_src", s["num_src"] - 1)), "stage00.npz", "codes: shape"),
    ("manifest-num-terms", stage0(lambda s: _set(s, "num_terms", s["num_terms"] + 2)), "stage00.npz", "indices: shape"),
    ("manifest-features", stage0(lambda s: _set(s, "features", s["features"] + 1)), "stage00.npz", "codes: shape"),
    ("manifest-lanes", stage0(lambda s: _set(s, "lanes", 8)), "manifest.json", "stages[0].lanes: is 8, but word_width // bits = 16"),
    ("manifest-max-terms", stage0(lambda s: _set(s, "max_terms", s["max_terms"] + 1)), "manifest.json", "stages[0].max_terms"),
    ("manifest-word-width", stage0(lambda s: _set(s, "word_width", 48)), "manifest.json", "stages[0].word_width: 48 not allowed"),
    ("manifest-bits", stage0(lambda s: _set(s, "bits", 8)), "manifest.json", "stages[0].lanes: is 16, but word_width // bits = 8"),
]


@pytest.mark.parametrize(
    ("corrupt", "file", "field"), [c[1:] for c in CORRUPTIONS], ids=[c[0] for c in CORRUPTIONS]
)
def test_corrupted_sets_are_rejected(vset: Path, corrupt: Callable[[Path], None], file: str, field: str) -> None:
    _Z_OUT[:] = [json.loads((vset / "manifest.json").read_text())["stages"][0]["zero_point_out"]]
    read_vectors(vset)  # intact before
    corrupt(vset)
    with pytest.raises(VectorFormatError) as err:
        read_vectors(vset)
    msg = str(err.value)
    assert f"{vset / file}: " in msg, msg
    assert field in msg, msg


def test_check_false_skips_only_the_recomputation(vset: Path) -> None:
    edit_arrays(_bump_acc)(vset)
    g = read_vectors(vset, check=False).stages[0]
    assert g.expected_acc[1, 5] == g.stage.compute()[0][1, 5] + 1
    with pytest.raises(VectorFormatError, match="expected_acc"):
        read_vectors(vset, check=True)
    # structural checks still run without recomputation
    edit_arrays(_flip("expected_packed", 0, 0))(vset)
    with pytest.raises(VectorFormatError, match="expected_packed"):
        read_vectors(vset, check=False)


def test_unknown_keys_and_arrays_are_ignored(vset: Path) -> None:
    edit_manifest(lambda m: _set(m, "comment", "extra"))(vset)
    edit_arrays(lambda a: _set(a, "extra", np.zeros(3)))(vset)
    assert len(read_vectors(vset)) == 2


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(VectorFormatError, match="not a directory"):
        read_vectors(tmp_path / "absent")


def test_documented_toy_set(tmp_path: Path) -> None:
    """The worked example of docs/golden-vectors.md; expected values computed by hand there."""
    toy = AggregationStage(
        name="toy.aggregate", indptr=[0, 2, 2, 5], indices=[0, 1, 0, 1, 2],
        codes=[[1, 2, 3], [4, 5, 6], [7, 8, 9]], bits=4, out_bits=4, zero_point_in=1,
        zero_point_out=2, multiplier=[16384, 32768, 21845], shift=[15, 16, 16], word_width=16,
        meta={"layer": 0},
    )
    root = write_vectors(tmp_path / "toy", [toy], {"dataset": "toy", "model": "gcn", "bits": 4, "seed": 0})
    entry = json.loads((root / "manifest.json").read_text())["stages"][0]
    assert (entry["lanes"], entry["words_per_row"], entry["acc_width"], entry["max_terms"]) == (4, 1, 6, 3)
    (g,) = read_vectors(root).stages
    assert g.expected_acc.tolist() == [[5, 7, 9], [0, 0, 0], [12, 15, 18]]
    assert g.expected_codes.tolist() == [[4, 5, 6], [2, 2, 2], [5, 6, 7]]
    assert [bytes(r).hex(" ") for r in g.packed_input] == ["21 13", "54 16", "87 19"]
    assert [bytes(r).hex(" ") for r in g.expected_packed] == ["54 26", "22 22", "65 27"]
    assert g.expected_words() == [[0x2654], [0x2222], [0x2765]]


# --- bit truncation (format version 2) ---------------------------------------------------------
def test_bt_stage_round_trip(tmp_path: Path) -> None:
    st = random_stage(np.random.default_rng(5), num_nodes=30, features=21, bits=2, word_width=32,
                      truncated=True, name="layer2.aggregate")
    root = write_vectors(tmp_path / "bt", [st], {"dataset": "synthetic"})
    entry = json.loads((root / "manifest.json").read_text())["stages"][0]
    assert (entry["in_level"], entry["out_grid_bits"]) == (85, 8)
    assert entry["out_thresholds"] == list(st.out_thresholds or ())
    (g,) = read_vectors(root).stages
    assert g.stage.in_level == 85 and g.stage.out_thresholds == st.out_thresholds
    assert np.array_equal(g.expected_codes, st.compute()[1])


def test_version_1_sets_are_still_read(vset: Path) -> None:
    def to_v1(m: dict) -> None:
        m["version"] = 1
        for e in m["stages"]:
            for k in fmt.V2_FIELDS:
                del e[k]
    edit_manifest(to_v1)(vset)
    vs = read_vectors(vset)
    assert [g.stage.in_level for g in vs] == [1, 1]


@pytest.mark.parametrize(("edit", "field"), [
    (lambda s: _set(s, "in_level", 0), "stages[0].in_level: must be >= 1"),
    (lambda s: _set(s, "out_grid_bits", 8), "stages[0].out_thresholds: is null"),
    (lambda s: _set(s, "out_thresholds", [1, 2]), "stages[0].out_thresholds: must be null or a list of 15"),
    (lambda s: _del(s, "in_level"), "stages[0].in_level: missing manifest key"),
])
def test_bad_bt_fields_are_rejected(vset: Path, edit: Callable[[dict], None], field: str) -> None:
    stage0(edit)(vset)
    with pytest.raises(VectorFormatError, match=field.replace("[", r"\[").replace("]", r"\]")):
        read_vectors(vset)
