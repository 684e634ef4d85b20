"""Golden vector format version 3: mixed-width stages (issue 12 item 3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qgnn.model.golden import (
    GoldenMixedStage,
    GoldenStage,
    MixedAggregationStage,
    VectorFormatError,
    read_vectors,
    write_vectors,
)
from qgnn.model.golden import format as fmt
from qgnn.model.golden.mixed_stage import random_mixed_stage
from qgnn.model.golden.stage import random_stage

HYP = settings(max_examples=25, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])


def _manifest(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def _write_manifest(root: Path, m: dict) -> None:
    (root / "manifest.json").write_text(json.dumps(m))


def _edit_arrays(root: Path, file: str, edit: Callable[[dict], None]) -> None:
    with np.load(root / file) as z:
        a = {k: z[k].copy() for k in z.files}
    edit(a)
    np.savez_compressed(root / file, **a)


def _toy() -> MixedAggregationStage:
    """3 nodes, 3 features, 8-bit words: node 1 is an 8-bit node, nodes 0 and 2 are 2-bit."""
    return MixedAggregationStage(
        name="toy.mixed", indptr=[0, 2, 3, 5], indices=[0, 1, 1, 1, 2],
        codes=[[1, 2, 3], [10, 20, 30], [0, 3, 1]], src_bucket=[0, 1, 0],
        bits_in=(2, 8), z_in=(1, 7), weight=(4, 1), dst_bucket=[1, 0, 0], out_bits=(2, 8),
        z_out=(1, 100), multiplier=[1, 1, 1], shift=[0, 0, 0], r_bits=4, word_width=8)


# --------------------------------------------------------------------------------------------
# layout by hand
# --------------------------------------------------------------------------------------------
def test_toy_layout_by_hand(tmp_path: Path) -> None:
    root = write_vectors(tmp_path / "toy", [_toy()], {"dataset": "toy"})
    m = _manifest(root)
    assert m["version"] == 3
    e = m["stages"][0]
    assert e["kind"] == "mixed"
    # 3 two-bit codes fit one 8-bit word; 3 eight-bit codes need 3 words.
    assert e["words_in_bucket"] == [1, 3] and e["words_out_bucket"] == [1, 3]
    assert e["input_words"] == 1 + 3 + 1 and e["output_words"] == 3 + 1 + 1
    with np.load(root / e["file"]) as z:
        assert z["feat_offset"].tolist() == [0, 1, 4]
        assert z["out_offset"].tolist() == [0, 3, 4]
        # row 0: lanes 1, 2, 3 and the pad z_in[0] = 1: 1 | 2<<2 | 3<<4 | 1<<6 = 0x79
        # row 1: bytes 10, 20, 30; row 2: 0 | 3<<2 | 1<<4 | 1<<6 = 0x5c
        assert z["packed_input"].tolist() == [0x79, 10, 20, 30, 0x5C]
        # acc_i = sum R[k(j)] q_j: row 0 = 4*[1,2,3] + [10,20,30]; row 1 = [10,20,30];
        # row 2 = [10,20,30] + 4*[0,3,1]
        assert z["expected_acc"].tolist() == [[14, 28, 42], [10, 20, 30], [10, 32, 34]]
        # corr: row 0 = 4*1 + 7 = 11; row 1 = 7; row 2 = 7 + 4 = 11; M = 1, s = 0
        # row 0 is out bucket 1 (8 bit, z 100): [3, 17, 31] + 100; rows 1, 2 bucket 0
        # (2 bit, z 1): clamp([3,13,23] + 1, 0, 3) and clamp([-1, 21, 23] + 1, 0, 3)
        assert z["expected_codes"].tolist() == [[103, 117, 131], [3, 3, 3], [0, 3, 3]]
        # row 0: 3 bytes; row 1: 3 | 3<<2 | 3<<4 | pad 1<<6 = 0x7f; row 2: 0|3<<2|3<<4|1<<6
        assert z["expected_packed"].tolist() == [103, 117, 131, 0x7F, 0x7C]
    g = read_vectors(root).stages[0]
    assert isinstance(g, GoldenMixedStage)
    assert g.input_words() == [0x79, 10, 20, 30, 0x5C]
    assert g.expected_words() == [103, 117, 131, 0x7F, 0x7C]


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------
def _assert_same(a: MixedAggregationStage, b: MixedAggregationStage) -> None:
    for f in ("indptr", "indices", "codes", "src_bucket", "dst_bucket", "multiplier", "shift"):
        assert np.array_equal(getattr(a, f), getattr(b, f)), f
    for f in ("bits_in", "z_in", "weight", "out_bits", "z_out", "r_bits", "mult_bits",
              "word_width", "acc_width", "name", "meta"):
        assert getattr(a, f) == getattr(b, f), f


@HYP
@given(seed=st.integers(0, 2**31 - 1), bits=st.sampled_from([(2, 8), (4, 8), (2, 4, 8), (8,)]),
       ww=st.sampled_from([8, 16, 64, 128]), features=st.integers(1, 40))
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, seed: int, bits: tuple[int, ...],
                    ww: int, features: int) -> None:
    stage = random_mixed_stage(seed, num_nodes=15, features=features, bits=bits, word_width=ww)
    stage.meta = {"layer": 0, "seed": seed}
    root = write_vectors(tmp_path_factory.mktemp("rt") / "v", [stage])
    vs = read_vectors(root)
    g = vs.stages[0]
    assert isinstance(g, GoldenMixedStage)
    _assert_same(g.stage, stage)
    c, y = stage.compute()
    assert np.array_equal(g.expected_codes, y)
    assert np.array_equal(g.expected_acc - stage.correction()[:, None], c)
    assert np.array_equal(g.expected_packed, stage.packed_output())
    assert np.array_equal(g.feat_offset, stage.feat_offset)
    words = g.input_words()
    # every source row sits at its word address with its bucket's width
    for j in range(stage.num_src):
        w = stage.words_in_bucket()[stage.src_bucket[j]]
        b = stage.bits_in[stage.src_bucket[j]]
        row = words[stage.feat_offset[j]:stage.feat_offset[j] + w]
        lanes = ww // b
        vals = [(row[f // lanes] >> (b * (f % lanes))) & ((1 << b) - 1) for f in range(features)]
        assert vals == stage.codes[j].tolist()


def test_mixed_with_uniform_stage(tmp_path: Path) -> None:
    u = random_stage(np.random.default_rng(3), name="layer0.aggregate")
    mixed = random_mixed_stage(4, name="layer1.aggregate")
    root = write_vectors(tmp_path / "v", [u, mixed])
    m = _manifest(root)
    assert m["version"] == 3 and [e["kind"] for e in m["stages"]] == ["uniform", "mixed"]
    vs = read_vectors(root)
    assert isinstance(vs.stages[0], GoldenStage) and isinstance(vs.stages[1], GoldenMixedStage)
    assert np.array_equal(vs.stages[0].expected_codes, u.compute()[1])


def test_uniform_sets_still_write_version_2(tmp_path: Path) -> None:
    u = random_stage(np.random.default_rng(5))
    root = write_vectors(tmp_path / "v", [u])
    m = _manifest(root)
    assert m["version"] == 2 and "kind" not in m["stages"][0]


def test_version_1_and_2_sets_still_read(tmp_path: Path) -> None:
    u = random_stage(np.random.default_rng(6))
    root = write_vectors(tmp_path / "v", [u])
    assert isinstance(read_vectors(root).stages[0], GoldenStage)
    m = _manifest(root)
    m["version"] = 1
    for k in ("in_level", "out_grid_bits", "out_thresholds"):
        del m["stages"][0][k]
    _write_manifest(root, m)
    g = read_vectors(root).stages[0]
    assert isinstance(g, GoldenStage) and g.stage.in_level == 1
    assert np.array_equal(g.expected_codes, u.compute()[1])


def test_version_3_uniform_entry_needs_kind(tmp_path: Path) -> None:
    root = write_vectors(tmp_path / "v", [random_stage(np.random.default_rng(7))])
    m = _manifest(root)
    m["version"] = 3
    _write_manifest(root, m)
    with pytest.raises(VectorFormatError, match=r"stages\[0\]\.kind: missing manifest key"):
        read_vectors(root)
    m["stages"][0]["kind"] = "uniform"
    _write_manifest(root, m)
    assert isinstance(read_vectors(root).stages[0], GoldenStage)
    m["stages"][0]["kind"] = "ragged"
    _write_manifest(root, m)
    with pytest.raises(VectorFormatError, match=r"stages\[0\]\.kind: is 'ragged'"):
        read_vectors(root)


def test_version_4_rejected(tmp_path: Path) -> None:
    root = write_vectors(tmp_path / "v", [_toy()])
    m = _manifest(root)
    m["version"] = 4
    _write_manifest(root, m)
    with pytest.raises(VectorFormatError, match="format version 4 was written by a newer qgnn"):
        read_vectors(root)


def test_writer_refuses_other_objects(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="stages\\[0\\] is a dict"):
        write_vectors(tmp_path / "v", [{"name": "x"}])  # type: ignore[list-item]


# --------------------------------------------------------------------------------------------
# malformed fields
# --------------------------------------------------------------------------------------------
def _new_set(parent: Path) -> Path:
    stage = random_mixed_stage(11, num_nodes=20, features=13, bits=(2, 8), word_width=32)
    assert set(stage.src_bucket.tolist()) == {0, 1}
    return write_vectors(parent / "m", [stage])


@pytest.fixture
def mset(tmp_path: Path) -> Path:
    return _new_set(tmp_path)


def _stage0(root: Path, edit: Callable[[dict], None]) -> None:
    m = _manifest(root)
    edit(m["stages"][0])
    _write_manifest(root, m)


def _rejects(root: Path, file: str, pattern: str) -> None:
    with pytest.raises(VectorFormatError, match=pattern) as err:
        read_vectors(root)
    assert str(err.value).startswith(f"{root / file}: "), str(err.value)


@HYP
@given(row=st.integers(0, 19), value=st.sampled_from([2, 3, 99, -1]))
def test_src_bucket_out_of_range(tmp_path_factory: pytest.TempPathFactory, row: int, value: int) -> None:
    mset = _new_set(tmp_path_factory.mktemp("h"))
    _edit_arrays(mset, "stage00.npz", lambda a: a["src_bucket"].__setitem__(row, value))
    _rejects(mset, "stage00.npz",
             rf"stages\[0\]\.src_bucket: value {value} at \[{row}\] out of range 0\.\.1")


@HYP
@given(row=st.integers(0, 19), value=st.sampled_from([2, 5, -1]))
def test_dst_bucket_out_of_range(tmp_path_factory: pytest.TempPathFactory, row: int, value: int) -> None:
    mset = _new_set(tmp_path_factory.mktemp("h"))
    _edit_arrays(mset, "stage00.npz", lambda a: a["dst_bucket"].__setitem__(row, value))
    _rejects(mset, "stage00.npz",
             rf"stages\[0\]\.dst_bucket: value {value} at \[{row}\] out of range 0\.\.1")


@HYP
@given(k=st.integers(0, 1), b=st.sampled_from([0, 1, 3, 5, 16, 32]),
       key=st.sampled_from(["bits_in", "out_bits"]))
def test_bad_width(tmp_path_factory: pytest.TempPathFactory, k: int, b: int, key: str) -> None:
    mset = _new_set(tmp_path_factory.mktemp("h"))
    _stage0(mset, lambda e: e[key].__setitem__(k, b))
    _rejects(mset, "manifest.json", rf"stages\[0\]\.{key}\[{k}\]: {b} not in \{{2,4,8\}}")


@pytest.mark.parametrize("key", ["bits_in", "z_in", "weight", "words_in_bucket", "out_bits",
                                 "z_out", "words_out_bucket"])
def test_bucket_list_length_and_type(mset: Path, key: str) -> None:
    _stage0(mset, lambda e: e[key].append(e[key][0]))
    _rejects(mset, "manifest.json", rf"stages\[0\]\.{key}: has 3 entries, but num_")
    _stage0(mset, lambda e: e.__setitem__(key, [2.0, 8]))
    _rejects(mset, "manifest.json", rf"stages\[0\]\.{key}: must be a list of integers")
    _stage0(mset, lambda e: e.pop(key))
    _rejects(mset, "manifest.json", rf"stages\[0\]\.{key}: missing manifest key")


def test_zero_point_and_weight_ranges(mset: Path) -> None:
    _stage0(mset, lambda e: e["z_in"].__setitem__(0, 4))
    _rejects(mset, "manifest.json", r"stages\[0\]\.z_in\[0\]: 4 outside 0\.\.3")
    _stage0(mset, lambda e: e["z_in"].__setitem__(0, 0))
    _stage0(mset, lambda e: e["weight"].__setitem__(1, 1 << e["r_bits"]))
    _rejects(mset, "manifest.json", r"stages\[0\]\.weight\[1\]: \d+ outside")


@pytest.mark.parametrize("name", fmt.MIXED_ARRAY_NAMES)
def test_array_dtype_shape_presence(mset: Path, name: str) -> None:
    with np.load(mset / "stage00.npz") as z:
        orig = z[name].copy()
    _edit_arrays(mset, "stage00.npz", lambda a: a.__setitem__(name, orig.astype(np.int32)))
    _rejects(mset, "stage00.npz", rf"stages\[0\]\.{name}: dtype is int32")
    _edit_arrays(mset, "stage00.npz", lambda a: a.__setitem__(name, orig[:-1]))
    _rejects(mset, "stage00.npz", rf"stages\[0\]\.{name}: shape is")
    _edit_arrays(mset, "stage00.npz", lambda a: a.__setitem__(name, orig.reshape(1, *orig.shape)))
    _rejects(mset, "stage00.npz", rf"stages\[0\]\.{name}: has {orig.ndim + 1} dimensions")
    _edit_arrays(mset, "stage00.npz", lambda a: a.pop(name))
    _rejects(mset, "stage00.npz", rf"stages\[0\]\.{name}: missing array")


@HYP
@given(row=st.integers(1, 19), delta=st.sampled_from([-1, 1, 2]),
       name=st.sampled_from(["feat_offset", "out_offset"]))
def test_offsets_must_match_widths(tmp_path_factory: pytest.TempPathFactory, row: int, delta: int, name: str) -> None:
    mset = _new_set(tmp_path_factory.mktemp("h"))
    def edit(a: dict) -> None:
        a[name][row] += delta

    _edit_arrays(mset, "stage00.npz", edit)
    _rejects(mset, "stage00.npz", rf"stages\[0\]\.{name}: {name}\[{row}\] = ")


def test_offsets_of_swapped_buckets_are_rejected(mset: Path) -> None:
    """Swapping two rows' buckets changes the widths: the old offsets no longer match."""
    with np.load(mset / "stage00.npz") as z:
        b = z["src_bucket"].copy()
    i, j = int(np.flatnonzero(b == 0)[0]), int(np.flatnonzero(b == 1)[0])

    def edit(a: dict) -> None:
        a["src_bucket"][i], a["src_bucket"][j] = 1, 0
        a["codes"][[i, j]] = 0  # codes stay valid for either width

    _edit_arrays(mset, "stage00.npz", edit)
    _rejects(mset, "stage00.npz", r"stages\[0\]\.feat_offset: feat_offset\[\d+\] = ")


@HYP
@given(data=st.data())
def test_codes_beyond_bucket_width(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    mset = _new_set(tmp_path_factory.mktemp("h"))
    with np.load(mset / "stage00.npz") as z:
        b = z["src_bucket"].copy()
    rows2 = np.flatnonzero(b == 0)
    row = int(data.draw(st.sampled_from(rows2.tolist())))
    f = data.draw(st.integers(0, 12))
    v = data.draw(st.integers(4, 255))
    _edit_arrays(mset, "stage00.npz", lambda a: a["codes"].__setitem__((row, f), v))
    _rejects(mset, "stage00.npz",
             rf"stages\[0\]\.codes: value {v} at \[{row}, {f}\] out of range 0\.\.3")


@HYP
@given(data=st.data())
def test_packed_rows_beyond_width_or_flipped(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject) -> None:
    mset = _new_set(tmp_path_factory.mktemp("h"))
    with np.load(mset / "stage00.npz") as z:
        n_bytes = z["packed_input"].size
        n_out = z["expected_packed"].size
    name = data.draw(st.sampled_from(["packed_input", "expected_packed"]))
    byte = data.draw(st.integers(0, (n_bytes if name == "packed_input" else n_out) - 1))
    bit = data.draw(st.integers(0, 7))

    def edit(a: dict) -> None:
        a[name][byte] ^= np.uint8(1 << bit)

    _edit_arrays(mset, "stage00.npz", edit)
    _rejects(mset, "stage00.npz", rf"stages\[0\]\.{name}: differs from pack\(.*\) at byte {byte} ")


def test_packed_2bit_row_holding_8bit_codes(mset: Path) -> None:
    """A 2-bit row's words overwritten with an 8-bit packing of its codes is refused."""
    with np.load(mset / "stage00.npz") as z:
        b, off = z["src_bucket"], z["feat_offset"]
    row = int(np.flatnonzero(b == 0)[0])
    start = int(off[row]) * 4

    def edit(a: dict) -> None:
        a["packed_input"][start:start + 4] = a["codes"][row, :4]

    _edit_arrays(mset, "stage00.npz", edit)
    _rejects(mset, "stage00.npz", rf"packed_input: differs .* source row {row}, bucket 0, 2-bit")


def test_expected_outputs_recomputed(mset: Path) -> None:
    with np.load(mset / "stage00.npz") as z:
        y = z["expected_codes"].copy()
        ob = z["dst_bucket"].copy()
    row = int(np.flatnonzero(ob == 1)[0])
    new = (int(y[row, 0]) + 1) % 256

    def edit(a: dict) -> None:
        a["expected_codes"][row, 0] = new

    _edit_arrays(mset, "stage00.npz", edit)
    # the packed image no longer matches first; fix it so only the recomputation differs
    m = _manifest(mset)
    stage = random_mixed_stage(11, num_nodes=20, features=13, bits=(2, 8), word_width=32)
    y2 = y.astype(np.int64)
    y2[row, 0] = new
    _edit_arrays(mset, "stage00.npz",
                 lambda a: a.__setitem__("expected_packed", stage.packed_output(y2)))
    assert m["stages"][0]["kind"] == "mixed"
    _rejects(mset, "stage00.npz",
             rf"stages\[0\]\.expected_codes: stage 'mixed' disagrees with the reference at "
             rf"node {row}, feature 0")
    read_vectors(mset, check=False)  # check=False skips only the recomputation


def test_acc_width_too_small(mset: Path) -> None:
    _stage0(mset, lambda e: e.__setitem__("acc_width", e["acc_width"] - 1))
    _rejects(mset, "manifest.json", r"stages\[0\]\.acc_width: \d+ bits is too small")


def test_totals_must_match(mset: Path) -> None:
    _stage0(mset, lambda e: e.__setitem__("words_in_bucket", [e["words_in_bucket"][0] + 1,
                                                              e["words_in_bucket"][1]]))
    _rejects(mset, "manifest.json", r"stages\[0\]\.words_in_bucket\[0\]: is \d+, but ceil")



@HYP
@given(key=st.sampled_from([*fmt.MIXED_INT_FIELDS, *fmt.MIXED_LIST_FIELDS, "kind"]),
       value=st.one_of(st.integers(-(2**70), 2**70), st.lists(st.integers(-300, 300), max_size=4),
                       st.none(), st.text(max_size=3), st.floats(allow_nan=False)))
def test_any_manifest_value_is_accepted_or_refused_cleanly(
        tmp_path_factory: pytest.TempPathFactory, key: str, value: object) -> None:
    """Whatever a mixed entry's field holds, the reader either reads the set or raises
    VectorFormatError (never another exception)."""
    mset = _new_set(tmp_path_factory.mktemp("h"))
    _stage0(mset, lambda e: e.__setitem__(key, value))
    try:
        read_vectors(mset)
    except VectorFormatError as exc:
        assert "manifest.json" in str(exc) or "stage00.npz" in str(exc)
