"""Degree-aware mixed-precision aggregation: the arithmetic reference (issue 12, item 4).

Every graph node belongs to a width bucket ``k``. All source nodes of bucket ``k`` share one
input quantizer: code width ``bits_in[k]`` (2, 4 or 8), zero point ``z_in[k]`` and an unsigned
integer weight ``R[k]`` (``r_bits`` wide), bucket ``k``'s step relative to the common
accumulation step. Every destination row ``i`` has an output bucket ``dst_bucket[i]`` with code
width ``out_bits[k]`` and zero point ``z_out[k]``, and its own requantization ``M_i``, ``s_i``.

For destination row ``i`` with terms ``N(i)`` (CSR, self-loops included like today)::

    acc_i[f] = sum_{j in N(i)} R[k(j)] * q_j[f]                 unsigned, acc_bits
    corr_i   = sum_k R[k] * n_ik * z_in[k]                        unsigned, acc_bits
               (n_ik = terms of row i from bucket k)
    C_i[f]   = acc_i[f] - corr_i                                  signed, acc_bits + 1
    y_i[f]   = clamp(round_half_up(C_i[f] * M_i / 2**s_i) + z_out[k(i)], 0, 2**out_bits - 1)

the last line being exactly :func:`model.integer.rules.requantize`. Widths (bits), derived,
never guessed (``w_max = max_k R[k] * (2**bits_in[k] - 1)``, the largest weighted code)::

    acc_bits       = bit_length(max_terms * w_max)     (>= 1)
    corrected_bits = acc_bits + 1                      (corr <= max_terms * w_max as z <= qmax)
    product_bits   = corrected_bits + mult_bits

A given ``acc_width`` smaller than ``acc_bits`` is a ``ValueError``; a row longer than the
width allows raises :class:`~model.integer.rules.AccumulatorOverflowError`. Nothing wraps.

Memory layout (word addresses, ``word_width``-bit words, codes packed as
:mod:`model.golden.packing`: little-endian lanes, lane ``l`` at bits ``[l b, (l + 1) b)``):

- source row ``j`` of bucket ``k`` occupies ``W_k = ceil(F * bits_in[k] / word_width)`` words
  from ``feat_offset[j]`` (prefix sums of the ``W_k`` in source order); its pad lanes hold
  ``z_in[k]`` (they add ``R (z - z) = 0``);
- output row ``i`` occupies ``ceil(F * out_bits[k(i)] / word_width)`` words from
  ``out_offset[i]`` (prefix sums in row order); its pad lanes hold ``z_out[k(i)]`` (the rule's
  value for ``C = 0``).

A uniform stage (one width, ``R = [1]``, ``K = 1``) is :meth:`MixedAggregationStage.from_uniform`
and gives exactly :meth:`AggregationStage.compute` and ``packed_output`` (tests assert it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..integer import rules
from ..integer.rules import AccumulatorOverflowError
from . import packing
from .stage import AggregationStage

#: Default width of the bucket weights R[k] (bits, unsigned).
DEFAULT_R_BITS = 16


def weighted_acc_width(max_terms: int, max_weight: int) -> int:
    """Bits of an unsigned sum of ``max_terms`` terms, each at most ``max_weight``:
    ``bit_length(max(max_terms, 1) * max_weight)``, at least 1. With ``max_weight =
    2**bits - 1`` (one bucket, ``R = 1``) this equals ``rules.acc_width(bits, max_terms)``."""
    if max_terms < 0 or max_weight < 0:
        raise ValueError(f"max_terms and max_weight must be >= 0, got {max_terms}, {max_weight}")
    return max(1, (max(max_terms, 1) * max_weight).bit_length())


def _as_int_array(name: str, value: object) -> np.ndarray:
    a = np.asarray(value, dtype=np.int64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
    return a


@dataclass
class MixedAggregationStage:
    """Integer inputs of one mixed-width aggregation stage.

    Attributes:
        name: stage name.
        indptr: CSR row pointers, int64 ``[N + 1]``.
        indices: CSR source node of every term, int64 ``[E]`` in ``0..N_src - 1``.
        codes: input codes, int64 ``[N_src, F]``; row ``j`` in ``0..2**bits_in[src_bucket[j]] - 1``.
        src_bucket: input bucket of every source node, int64 ``[N_src]`` in ``0..K - 1``.
        bits_in: input code width of every bucket (bits), ``[K]``, each in 2, 4, 8.
        z_in: input zero point of every bucket (code of its width), ``[K]``.
        weight: ``R[k]``, unsigned integer weight of every bucket, ``[K]``, ``< 2**r_bits``.
        dst_bucket: output bucket of every destination row, int64 ``[N]`` in ``0..K_out - 1``.
        out_bits: output code width of every output bucket (bits), ``[K_out]``, each 2, 4, 8.
        z_out: output zero point of every output bucket, ``[K_out]``.
        multiplier: per-row requantization multiplier ``M_i`` (``< 2**mult_bits``), ``[N]``.
        shift: per-row right shift ``s_i`` in ``0..rules.MAX_SHIFT``, ``[N]``.
        r_bits: width of the weights (bits).
        mult_bits: multiplier width (bits).
        word_width: memory word width (bits).
        acc_width: accumulator width (bits); ``None`` derives :attr:`derived_acc_width`.
        meta: free-form description.
    """

    name: str
    indptr: np.ndarray
    indices: np.ndarray
    codes: np.ndarray
    src_bucket: np.ndarray
    bits_in: tuple[int, ...]
    z_in: tuple[int, ...]
    weight: tuple[int, ...]
    dst_bucket: np.ndarray
    out_bits: tuple[int, ...]
    z_out: tuple[int, ...]
    multiplier: np.ndarray
    shift: np.ndarray
    r_bits: int = DEFAULT_R_BITS
    mult_bits: int = rules.DEFAULT_MULT_BITS
    word_width: int = 64
    acc_width: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.name
        self.indptr = _as_int_array("indptr", self.indptr)
        self.indices = _as_int_array("indices", self.indices)
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.src_bucket = _as_int_array("src_bucket", self.src_bucket)
        self.dst_bucket = _as_int_array("dst_bucket", self.dst_bucket)
        self.multiplier = _as_int_array("multiplier", self.multiplier)
        self.shift = _as_int_array("shift", self.shift)
        self.bits_in = tuple(int(b) for b in self.bits_in)
        self.z_in = tuple(int(z) for z in self.z_in)
        self.weight = tuple(int(r) for r in self.weight)
        self.out_bits = tuple(int(b) for b in self.out_bits)
        self.z_out = tuple(int(z) for z in self.z_out)
        packing.check_layout(8, self.word_width)
        if self.codes.ndim != 2:
            raise ValueError(f"{n}: codes must be 2-D [N_src, F], got shape {self.codes.shape}")
        k_in, k_out = len(self.bits_in), len(self.out_bits)
        if k_in < 1 or k_out < 1:
            raise ValueError(f"{n}: bits_in and out_bits need at least one bucket")
        if len(self.z_in) != k_in or len(self.weight) != k_in:
            raise ValueError(f"{n}: bits_in, z_in, weight must have one entry per bucket "
                             f"({k_in}), got {len(self.z_in)}, {len(self.weight)}")
        if len(self.z_out) != k_out:
            raise ValueError(f"{n}: z_out needs {k_out} entries (one per out_bits), "
                             f"got {len(self.z_out)}")
        for what, widths in (("bits_in", self.bits_in), ("out_bits", self.out_bits)):
            bad = [b for b in widths if b not in rules.HW_BITS]
            if bad:
                raise ValueError(f"{n}: {what} {list(widths)} has {bad}; allowed: {rules.HW_BITS}")
        for k, (b, z) in enumerate(zip(self.bits_in, self.z_in, strict=True)):
            if not 0 <= z < (1 << b):
                raise ValueError(f"{n}: z_in[{k}] = {z} outside 0..{(1 << b) - 1} "
                                 f"(bits_in[{k}] = {b})")
        for k, (b, z) in enumerate(zip(self.out_bits, self.z_out, strict=True)):
            if not 0 <= z < (1 << b):
                raise ValueError(f"{n}: z_out[{k}] = {z} outside 0..{(1 << b) - 1} "
                                 f"(out_bits[{k}] = {b})")
        if not 1 <= self.r_bits <= 32:
            raise ValueError(f"{n}: r_bits = {self.r_bits} not allowed; allowed: 1..32")
        for k, r in enumerate(self.weight):
            if not 0 <= r < (1 << self.r_bits):
                raise ValueError(f"{n}: weight[{k}] = {r} outside 0..{(1 << self.r_bits) - 1} "
                                 f"(r_bits = {self.r_bits})")
        n_src = self.codes.shape[0]
        if self.src_bucket.shape != (n_src,):
            raise ValueError(f"{n}: src_bucket needs {n_src} entries (one per source row), "
                             f"got {self.src_bucket.shape[0]}")
        if n_src and (self.src_bucket.min() < 0 or self.src_bucket.max() >= k_in):
            raise ValueError(f"{n}: src_bucket values must be in 0..{k_in - 1}")
        if self.indptr.size < 1 or self.indptr[0] != 0 or np.any(np.diff(self.indptr) < 0) \
                or self.indptr[-1] != self.indices.size:
            raise ValueError(f"{n}: indptr must start at 0, not decrease and end at "
                             f"len(indices) = {self.indices.size}")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n_src):
            raise ValueError(f"{n}: indices must be in 0..{n_src - 1}")
        nn = self.num_nodes
        for what, arr in (("dst_bucket", self.dst_bucket), ("multiplier", self.multiplier),
                          ("shift", self.shift)):
            if arr.shape != (nn,):
                raise ValueError(f"{n}: {what} needs {nn} entries (one per row), got {arr.size}")
        if nn and (self.dst_bucket.min() < 0 or self.dst_bucket.max() >= k_out):
            raise ValueError(f"{n}: dst_bucket values must be in 0..{k_out - 1}")
        if nn and (self.multiplier.min() < 0 or self.multiplier.max() >= (1 << self.mult_bits)):
            raise ValueError(f"{n}: multiplier must be in 0..{(1 << self.mult_bits) - 1}")
        if nn and (self.shift.min() < 0 or self.shift.max() > rules.MAX_SHIFT):
            raise ValueError(f"{n}: shift must be in 0..{rules.MAX_SHIFT}")
        if n_src:
            qmax = (1 << np.asarray(self.bits_in, dtype=np.int64)[self.src_bucket]) - 1
            if self.codes.size and (self.codes.min() < 0
                                    or np.any(self.codes > qmax[:, None])):
                raise ValueError(f"{n}: codes of source row j must be in "
                                 "0..2**bits_in[src_bucket[j]] - 1")
        need = self.derived_acc_width
        if self.acc_width is None:
            self.acc_width = need
        elif self.acc_width < need:
            raise ValueError(f"{n}: acc_width = {self.acc_width} is too small: {self.max_terms} "
                             f"terms of weighted codes up to {self.max_weight} need {need} bits")

    # --- sizes ----------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        """Destination rows N."""
        return int(self.indptr.shape[0]) - 1

    @property
    def num_src(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_terms(self) -> int:
        return int(self.indices.shape[0])

    @property
    def features(self) -> int:
        return int(self.codes.shape[1])

    @property
    def num_buckets(self) -> int:
        return len(self.bits_in)

    @property
    def row_lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def max_terms(self) -> int:
        return int(self.row_lengths.max(initial=0))

    @property
    def max_weight(self) -> int:
        """``max_k R[k] * (2**bits_in[k] - 1)``: the largest weighted code of one term."""
        return max(r * ((1 << b) - 1) for r, b in zip(self.weight, self.bits_in, strict=True))

    @property
    def derived_acc_width(self) -> int:
        """``bit_length(max_terms * max_weight)`` (bits)."""
        return weighted_acc_width(self.max_terms, self.max_weight)

    @property
    def corrected_width(self) -> int:
        """Signed width of ``C = acc - corr`` (bits)."""
        assert self.acc_width is not None
        return self.acc_width + 1

    @property
    def product_width(self) -> int:
        return self.corrected_width + self.mult_bits

    def words_in_bucket(self) -> np.ndarray:
        """``W_k = ceil(F * bits_in[k] / word_width)`` (at least 1) per input bucket."""
        return np.asarray([packing.words_per_row(self.features, b, self.word_width)
                           for b in self.bits_in], dtype=np.int64)

    def words_out_bucket(self) -> np.ndarray:
        """Output words per row of every output bucket."""
        return np.asarray([packing.words_per_row(self.features, b, self.word_width)
                           for b in self.out_bits], dtype=np.int64)

    @property
    def src_words(self) -> np.ndarray:
        """Words of every source row, int64 ``[N_src]``."""
        return self.words_in_bucket()[self.src_bucket]

    @property
    def feat_offset(self) -> np.ndarray:
        """Word address of every source row, int64 ``[N_src]`` (prefix sums)."""
        w = self.src_words
        return np.concatenate([[0], np.cumsum(w)[:-1]]).astype(np.int64) if w.size else w

    @property
    def out_words(self) -> np.ndarray:
        """Output words of every row, int64 ``[N]``."""
        return self.words_out_bucket()[self.dst_bucket]

    @property
    def out_offset(self) -> np.ndarray:
        """Word address of every output row, int64 ``[N]`` (prefix sums)."""
        w = self.out_words
        return np.concatenate([[0], np.cumsum(w)[:-1]]).astype(np.int64) if w.size else w

    @property
    def row_in_words(self) -> np.ndarray:
        """Per row, the words of all its terms ``sum_{j in N(i)} W_{k(j)}`` (int64 ``[N]``;
        0 for a degree-0 row): the input words the engine streams for it."""
        per_term = self.src_words[self.indices] if self.num_terms else np.zeros(0, np.int64)
        csum = np.concatenate([[0], np.cumsum(per_term)]).astype(np.int64)
        return csum[self.indptr[1:]] - csum[self.indptr[:-1]]

    def bucket_terms(self) -> np.ndarray:
        """``n_ik``: terms of row ``i`` from input bucket ``k``, int64 ``[N, K]``."""
        out = np.zeros((self.num_nodes, self.num_buckets), dtype=np.int64)
        rows = np.repeat(np.arange(self.num_nodes), self.row_lengths)
        np.add.at(out, (rows, self.src_bucket[self.indices]), 1)
        return out

    # --- reference computation ------------------------------------------------------------
    def accumulate(self) -> np.ndarray:
        """``acc[i, f] = sum_{j in N(i)} R[k(j)] q_j[f]`` (int64 ``[N, F]``). Raises
        :class:`~model.integer.rules.AccumulatorOverflowError` for a row too long for
        ``acc_width``."""
        self.check_accumulator()
        r = np.asarray(self.weight, dtype=np.int64)[self.src_bucket]
        a = sp.csr_matrix((np.ones(self.num_terms, dtype=np.int64), self.indices, self.indptr),
                          shape=(self.num_nodes, self.num_src))
        return np.asarray(a @ (self.codes * r[:, None]), dtype=np.int64)

    def check_accumulator(self) -> None:
        """Raise :class:`~model.integer.rules.AccumulatorOverflowError` when a row has more
        terms than ``acc_width`` bits sum exactly (weighted codes up to ``max_weight``)."""
        assert self.acc_width is not None
        limit = ((1 << self.acc_width) - 1) // self.max_weight if self.max_weight else None
        if limit is not None and self.max_terms > limit:
            worst = int(np.argmax(self.row_lengths))
            raise AccumulatorOverflowError(
                f"{self.name}: row {worst} has {self.max_terms} terms; a {self.acc_width}-bit "
                f"accumulator sums at most {limit} weighted codes up to {self.max_weight}")

    def correction(self) -> np.ndarray:
        """``corr_i = sum_k R[k] n_ik z_in[k]`` (int64 ``[N]``)."""
        rz = np.asarray(self.weight, dtype=np.int64) * np.asarray(self.z_in, dtype=np.int64)
        return self.bucket_terms() @ rz

    def corrected(self) -> np.ndarray:
        """``C[i, f] = acc[i, f] - corr_i`` (int64 ``[N, F]``)."""
        return self.accumulate() - self.correction()[:, None]

    def requantize(self, corrected: np.ndarray) -> np.ndarray:
        """Output codes of ``C`` (``rules.requantize`` per output bucket)."""
        c = np.asarray(corrected, dtype=np.int64)
        y = np.zeros_like(c)
        for k, (b, z) in enumerate(zip(self.out_bits, self.z_out, strict=True)):
            rows = np.flatnonzero(self.dst_bucket == k)
            if rows.size:
                y[rows] = rules.requantize(c[rows], self.multiplier[rows, None],
                                           self.shift[rows, None], z, b)
        return y

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """``(C, out_codes)``: the corrected sums and the output codes, int64 ``[N, F]``."""
        c = self.corrected()
        return c, self.requantize(c)

    # --- memory images --------------------------------------------------------------------
    def _pack_rows(self, codes: np.ndarray, buckets: np.ndarray, widths: tuple[int, ...],
                   pads: tuple[int, ...]) -> np.ndarray:
        nb = self.word_width // 8
        chunks: list[np.ndarray] = []
        order = []
        for k, (b, z) in enumerate(zip(widths, pads, strict=True)):
            rows = np.flatnonzero(buckets == k)
            if rows.size:
                chunks.append(packing.pack_codes(codes[rows], b, self.word_width, z))
                order.append(rows)
        total = sum(int(c.size) for c in chunks)
        out = np.zeros(total, dtype=np.uint8)
        words = [packing.words_per_row(self.features, b, self.word_width) for b in widths]
        offs = np.concatenate([[0], np.cumsum(np.asarray(words)[buckets])]).astype(np.int64)
        for rows, packed in zip(order, chunks, strict=True):
            for r, row in zip(rows, packed, strict=True):
                out[offs[r] * nb:offs[r] * nb + row.size] = row
        return out

    def packed_input(self) -> np.ndarray:
        """All source rows as memory bytes, flat uint8 ``[sum_j W_k(j) * word_width // 8]``:
        row ``j`` from word ``feat_offset[j]``, pad lanes holding ``z_in[k(j)]``."""
        return self._pack_rows(self.codes, self.src_bucket, self.bits_in, self.z_in)

    def packed_output(self, out_codes: np.ndarray | None = None) -> np.ndarray:
        """Output rows as memory bytes, flat uint8 ``[sum_i W_out(i) * word_width // 8]``:
        row ``i`` from word ``out_offset[i]``, pad lanes holding ``z_out[k(i)]``.
        ``out_codes`` defaults to :meth:`compute`'s."""
        y = self.compute()[1] if out_codes is None else np.asarray(out_codes, dtype=np.int64)
        return self._pack_rows(y, self.dst_bucket, self.out_bits, self.z_out)

    def input_words(self) -> list[int]:
        """:meth:`packed_input` as Python ints, one per word address."""
        return _words(self.packed_input(), self.word_width)

    def output_words(self, out_codes: np.ndarray | None = None) -> list[int]:
        """:meth:`packed_output` as Python ints, one per word address."""
        return _words(self.packed_output(out_codes), self.word_width)

    # --- conversion ----------------------------------------------------------------------
    @classmethod
    def from_uniform(cls, stage: AggregationStage) -> MixedAggregationStage:
        """A plain (not bit-truncated) uniform stage as a mixed stage: ``K = 1``, ``R = [1]``."""
        if stage.truncated:
            raise ValueError(f"{stage.name}: bit-truncated stages have no mixed form")
        return cls(
            name=stage.name, indptr=stage.indptr, indices=stage.indices, codes=stage.codes,
            src_bucket=np.zeros(stage.codes.shape[0], dtype=np.int64), bits_in=(stage.bits,),
            z_in=(int(stage.zero_point_in),), weight=(1,),
            dst_bucket=np.zeros(stage.num_nodes, dtype=np.int64), out_bits=(stage.out_bits,),
            z_out=(int(stage.zero_point_out),), multiplier=stage.multiplier, shift=stage.shift,
            r_bits=1, mult_bits=stage.mult_bits, word_width=stage.word_width, meta=dict(stage.meta))



def _words(packed: np.ndarray, word_width: int) -> list[int]:
    nb = word_width // 8
    b = np.asarray(packed, dtype=np.uint8).tobytes()
    return [int.from_bytes(b[k:k + nb], "little") for k in range(0, len(b), nb)]


def random_mixed_stage(
    seed: int,
    num_nodes: int = 24,
    features: int = 20,
    bits: tuple[int, ...] = (2, 8),
    out_bits: tuple[int, ...] | None = None,
    avg_degree: float = 3.0,
    isolated_fraction: float = 0.1,
    self_loops: bool = True,
    r_bits: int = 8,
    word_width: int = 64,
    top_fraction: float = 0.25,
    mult_bits: int = rules.DEFAULT_MULT_BITS,
    name: str = "mixed",
) -> MixedAggregationStage:
    """A random mixed stage for tests (deterministic in ``seed``).

    Buckets follow the in-degree: the ``top_fraction`` of nodes with the most terms go to the
    last bucket(s), the rest to bucket 0 (``K = len(bits)``; with ``K = 3`` the top fraction is
    split in two). Zero points are 0, the maximum or anything; weights ``R`` are 1, ``2**r_bits
    - 1`` or anything in between; output buckets are the nodes' buckets, with ``out_bits``
    (default ``bits``) widths.
    """
    rng = np.random.default_rng(seed)
    out_bits = tuple(bits) if out_bits is None else tuple(out_bits)
    if len(out_bits) != len(bits):
        raise ValueError(f"out_bits {out_bits} needs one width per bucket of bits {bits}")
    deg = rng.poisson(avg_degree, size=num_nodes).astype(np.int64)
    if isolated_fraction > 0:
        deg[rng.random(num_nodes) < isolated_fraction] = 0
    rows = []
    for i, d in enumerate(deg):
        cols = rng.integers(0, num_nodes, size=int(d))
        if self_loops and d > 0:
            cols = np.concatenate([[i], cols])
        rows.append(np.sort(cols))
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate(rows).astype(np.int64) if lengths.sum() else np.zeros(0, np.int64)
    k = len(bits)
    in_deg = np.bincount(indices, minlength=num_nodes) if indices.size else np.zeros(num_nodes)
    order = np.argsort(-in_deg, kind="stable")
    bucket = np.zeros(num_nodes, dtype=np.int64)
    n_top = int(round(top_fraction * num_nodes))
    if k > 1 and n_top:
        top = order[:n_top]
        for part, nodes in enumerate(np.array_split(top, k - 1)):
            bucket[nodes] = k - 1 - part
    rmax = (1 << r_bits) - 1

    def pick(hi: int) -> int:
        return int(rng.choice([0, hi, int(rng.integers(0, hi + 1))]))

    z_in = tuple(pick((1 << b) - 1) for b in bits)
    z_out = tuple(pick((1 << b) - 1) for b in out_bits)
    weight = tuple(max(1, pick(rmax)) for _ in bits)
    qmax = (1 << np.asarray(bits, dtype=np.int64)[bucket]) - 1
    codes = (rng.integers(0, 1 << 8, size=(num_nodes, features)) % (qmax[:, None] + 1))
    stage = MixedAggregationStage(
        name=name, indptr=indptr, indices=indices, codes=codes, src_bucket=bucket,
        bits_in=tuple(bits), z_in=z_in, weight=weight, dst_bucket=bucket.copy(),
        out_bits=out_bits, z_out=z_out, multiplier=np.zeros(num_nodes, np.int64),
        shift=np.zeros(num_nodes, np.int64), r_bits=r_bits, mult_bits=mult_bits,
        word_width=word_width)
    # factors that map each row's C range onto about its output code range (some saturate)
    span = np.abs(stage.corrected()).max(axis=1, initial=0) + 1
    obits = np.asarray(out_bits, dtype=np.int64)[bucket]
    factor = rng.uniform(0.3, 2.5, size=num_nodes) * (1 << obits) / span
    factor = np.minimum(factor, float(1 << (mult_bits - 1)))
    stage.multiplier, stage.shift = rules.multiplier_shift(factor, mult_bits)
    return stage


__all__ = ["DEFAULT_R_BITS", "AccumulatorOverflowError", "MixedAggregationStage",
           "random_mixed_stage", "weighted_acc_width"]
