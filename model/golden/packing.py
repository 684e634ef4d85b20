"""Packing of b-bit codes into memory words, exactly as they sit in the accelerator's memory.

Layout: ``lanes = word_width // bits`` codes per word; lane ``k`` of a word occupies bits
``[k*bits, (k+1)*bits)`` (little-endian lanes); unused high bits of a word are 0. A node's
feature row spans ``words_per_row = ceil(features / lanes)`` whole words; feature ``f`` is lane
``f % lanes`` of word ``f // lanes``. Padding lanes of the last word hold ``pad_code`` (the
golden vectors use the input zero point, so padded lanes requantize to the output zero point).
Words are stored as little-endian bytes: a packed array has shape
``[rows, words_per_row * word_width // 8]`` and dtype uint8.
"""

from __future__ import annotations

import numpy as np

#: Allowed word widths (bits).
WORD_WIDTHS = (8, 16, 32, 64, 128, 256, 512)


def check_layout(bits: int, word_width: int) -> None:
    """Raise ``ValueError`` for an unsupported code or word width."""
    if not (1 <= bits <= 16):
        raise ValueError(f"bits must be in 1..16, got {bits}")
    if word_width not in WORD_WIDTHS:
        raise ValueError(f"word width {word_width} not allowed; allowed: {WORD_WIDTHS}")
    if word_width < bits:
        raise ValueError(f"word width {word_width} is narrower than a {bits}-bit code")


def lanes(bits: int, word_width: int) -> int:
    """Codes per word."""
    check_layout(bits, word_width)
    return word_width // bits


def words_per_row(features: int, bits: int, word_width: int) -> int:
    """Words holding one node's ``features`` codes (at least 1)."""
    return max(1, -(-features // lanes(bits, word_width)))


def pack_codes(codes: np.ndarray, bits: int, word_width: int = 64, pad_code: int = 0) -> np.ndarray:
    """Pack ``[rows, features]`` unsigned codes into ``[rows, W * word_width // 8]`` uint8."""
    c = np.asarray(codes)
    if c.ndim != 2:
        raise ValueError(f"codes must be 2-D [rows, features], got shape {c.shape}")
    check_layout(bits, word_width)
    if c.size and (c.min() < 0 or c.max() >= (1 << bits)):
        raise ValueError(f"codes must be in 0..{(1 << bits) - 1} for {bits} bits")
    if not (0 <= pad_code < (1 << bits)):
        raise ValueError(f"pad code {pad_code} outside 0..{(1 << bits) - 1}")
    rows, feats = c.shape
    nl = word_width // bits
    nw = words_per_row(feats, bits, word_width)
    full = np.full((rows, nw * nl), pad_code, dtype=np.uint16)
    full[:, :feats] = c
    # bit k of code -> bit position lane*bits + k of its word; unused top bits are 0.
    shifts = np.arange(bits, dtype=np.uint16)
    bitarr = ((full[..., None] >> shifts) & 1).astype(np.uint8)  # [rows, nw*nl, bits]
    bitarr = bitarr.reshape(rows, nw, nl * bits)
    if nl * bits < word_width:
        pad = np.zeros((rows, nw, word_width - nl * bits), dtype=np.uint8)
        bitarr = np.concatenate([bitarr, pad], axis=2)
    packed = np.packbits(bitarr.reshape(rows, nw * word_width), axis=1, bitorder="little")
    return packed


def unpack_codes(packed: np.ndarray, bits: int, word_width: int, features: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``[rows, features]`` int64 codes."""
    p = np.asarray(packed)
    check_layout(bits, word_width)
    if p.ndim != 2 or p.dtype != np.uint8:
        raise ValueError(f"packed words must be a 2-D uint8 array, got {p.dtype} {p.shape}")
    nl = word_width // bits
    nw = words_per_row(features, bits, word_width)
    if p.shape[1] != nw * word_width // 8:
        raise ValueError(
            f"packed rows have {p.shape[1]} bytes; {features} {bits}-bit features in "
            f"{word_width}-bit words need {nw * word_width // 8}"
        )
    rows = p.shape[0]
    bitarr = np.unpackbits(p, axis=1, bitorder="little").reshape(rows, nw, word_width)
    bitarr = bitarr[:, :, : nl * bits].reshape(rows, nw * nl, bits).astype(np.int64)
    codes = (bitarr << np.arange(bits, dtype=np.int64)).sum(axis=2)
    return codes[:, :features]


def words_as_ints(packed: np.ndarray, word_width: int) -> list[list[int]]:
    """Packed rows as Python integers, one per word (for testbenches)."""
    p = np.asarray(packed, dtype=np.uint8)
    nb = word_width // 8
    rows, nbytes = p.shape
    return [
        [int.from_bytes(p[r, w * nb : (w + 1) * nb].tobytes(), "little") for w in range(nbytes // nb)]
        for r in range(rows)
    ]


__all__ = [
    "WORD_WIDTHS",
    "check_layout",
    "lanes",
    "pack_codes",
    "unpack_codes",
    "words_as_ints",
    "words_per_row",
]
