"""Packing of b-bit codes into memory words, checked against a per-word Python-int model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qgnn.model.golden import packing


def reference_pack(codes: list[list[int]], bits: int, word_width: int, pad: int) -> bytes:
    """Independent model: bit k of lane l sits at bit l*bits + k of its word; a row spans
    whole words, pad lanes hold ``pad``, unused top bits are 0; words are little-endian bytes."""
    lanes = word_width // bits
    out = bytearray()
    for row in codes:
        nwords = max(1, -(-len(row) // lanes))
        for w in range(nwords):
            word = 0
            for lane in range(lanes):
                f = w * lanes + lane
                value = row[f] if f < len(row) else pad
                for k in range(bits):
                    if (value >> k) & 1:
                        word |= 1 << (lane * bits + k)
            out += word.to_bytes(word_width // 8, "little")
    return bytes(out)


@st.composite
def layouts(draw: st.DrawFn, max_bits: int = 16) -> tuple[np.ndarray, int, int, int]:
    bits = draw(st.integers(1, max_bits))
    word_width = draw(st.sampled_from([w for w in packing.WORD_WIDTHS if w >= bits]))
    rows = draw(st.integers(0, 4))
    feats = draw(st.integers(1, 3 * (word_width // bits) + 2))
    qmax = (1 << bits) - 1
    seed = draw(st.integers(0, 2**32 - 1))
    codes = np.random.default_rng(seed).integers(0, qmax + 1, size=(rows, feats))
    pad = draw(st.integers(0, qmax))
    return codes, bits, word_width, pad


@settings(max_examples=300, deadline=None)
@given(layouts())
def test_pack_matches_per_word_model_and_round_trips(layout: tuple[np.ndarray, int, int, int]) -> None:
    codes, bits, ww, pad = layout
    packed = packing.pack_codes(codes, bits, ww, pad)
    rows, feats = codes.shape
    wpr = packing.words_per_row(feats, bits, ww)
    assert packed.dtype == np.uint8
    assert packed.shape == (rows, wpr * ww // 8)
    assert packed.tobytes() == reference_pack(codes.tolist(), bits, ww, pad)
    back = packing.unpack_codes(packed, bits, ww, feats)
    np.testing.assert_array_equal(back, codes)
    # the pad lanes decode to the pad code
    full = packing.unpack_codes(packed, bits, ww, wpr * (ww // bits))
    assert np.all(full[:, feats:] == pad)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("word_width", packing.WORD_WIDTHS)
def test_every_bit_and_word_width(bits: int, word_width: int) -> None:
    rng = np.random.default_rng(bits * 1000 + word_width)
    lanes = word_width // bits
    for feats in (1, lanes - 1 or 1, lanes, lanes + 1, 2 * lanes + 3):
        codes = rng.integers(0, 1 << bits, size=(3, feats))
        pad = int(rng.integers(0, 1 << bits))
        packed = packing.pack_codes(codes, bits, word_width, pad)
        assert packed.tobytes() == reference_pack(codes.tolist(), bits, word_width, pad)
        np.testing.assert_array_equal(packing.unpack_codes(packed, bits, word_width, feats), codes)


def test_documented_example() -> None:
    """docs/golden-vectors.md: 4-bit codes [1, 2, 3] in a 16-bit word."""
    codes = np.array([[1, 2, 3]])
    assert packing.pack_codes(codes, 4, 16, pad_code=0).tobytes() == bytes([0x21, 0x03])
    assert packing.pack_codes(codes, 4, 16, pad_code=5).tobytes() == bytes([0x21, 0x53])
    assert packing.words_as_ints(packing.pack_codes(codes, 4, 16, 5), 16) == [[0x5321]]
    # 2-bit codes in an 8-bit word: 4 lanes per word, so 5 features span 2 words
    two = packing.pack_codes(np.array([[3, 0, 1, 2, 1]]), 2, 8, pad_code=0)
    assert two.tobytes() == bytes([0b10_01_00_11, 0b00_00_00_01])


def test_unused_top_bits_are_zero() -> None:
    """3-bit codes in a 16-bit word: 5 lanes use bits 0..14, bit 15 stays 0."""
    packed = packing.pack_codes(np.full((1, 5), 7), 3, 16, pad_code=7)
    assert packing.words_as_ints(packed, 16) == [[0x7FFF]]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: packing.pack_codes(np.array([[16]]), 4, 64), "0..15"),
        (lambda: packing.pack_codes(np.array([[-1]]), 4, 64), "0..15"),
        (lambda: packing.pack_codes(np.array([1, 2]), 4, 64), "2-D"),
        (lambda: packing.pack_codes(np.array([[1]]), 4, 24), "word width 24"),
        (lambda: packing.pack_codes(np.array([[1]]), 4, 64, pad_code=16), "pad code"),
        (lambda: packing.unpack_codes(np.zeros((1, 7), np.uint8), 4, 64, 16), "need 8"),
    ],
)
def test_bad_layouts_rejected(call, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        call()
