"""One aggregation stage in integer form: the unit the golden vectors, the RTL and the
simulator share.

A stage is a CSR graph (rows are destination nodes; a row lists the source nodes summed into
it, self-loop included when the layer has one), unsigned input codes, zero points, and a
per-node requantization multiplier and shift. :meth:`AggregationStage.compute` applies the
rules of :mod:`model.integer.rules` and is the reference every other implementation must equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..integer import rules
from . import packing


@dataclass
class AggregationStage:
    """Integer inputs of one aggregation stage.

    Attributes:
        name: stage name, e.g. ``"layer0.aggregate"``.
        indptr: CSR row pointers, int64 ``[N + 1]``.
        indices: CSR source node of every term, int64 ``[E]``.
        codes: input codes, int64 ``[N_src, F]`` in ``0..2**bits - 1``.
        bits: input code width (bits).
        out_bits: output code width (bits).
        zero_point_in: input zero point (code).
        zero_point_out: output zero point (code).
        multiplier: per-destination requantization multiplier, int64 ``[N]``.
        shift: per-destination right shift, int64 ``[N]`` in ``0..rules.MAX_SHIFT``.
        mult_bits: multiplier width (bits).
        word_width: memory word width (bits).
        acc_width: accumulator width (bits); derived from the longest row when ``None``.
        meta: free-form description (layer, role, scales as floats), written to the manifest.
    """

    name: str
    indptr: np.ndarray
    indices: np.ndarray
    codes: np.ndarray
    bits: int
    out_bits: int
    zero_point_in: int
    zero_point_out: int
    multiplier: np.ndarray
    shift: np.ndarray
    mult_bits: int = rules.DEFAULT_MULT_BITS
    word_width: int = 64
    acc_width: int | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.indptr = np.asarray(self.indptr, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.multiplier = np.asarray(self.multiplier, dtype=np.int64)
        self.shift = np.asarray(self.shift, dtype=np.int64)
        if self.acc_width is None:
            self.acc_width = rules.acc_width(self.bits, self.max_terms)

    # --- derived sizes -------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        """Destination rows N."""
        return int(self.indptr.shape[0]) - 1

    @property
    def num_terms(self) -> int:
        """Stored CSR entries E (edges, self-loops included)."""
        return int(self.indices.shape[0])

    @property
    def features(self) -> int:
        return int(self.codes.shape[1])

    @property
    def row_lengths(self) -> np.ndarray:
        """Terms per destination row (int64 ``[N]``)."""
        return np.diff(self.indptr)

    @property
    def max_terms(self) -> int:
        return int(self.row_lengths.max(initial=0))

    @property
    def lanes(self) -> int:
        return packing.lanes(self.bits, self.word_width)

    @property
    def words_per_row(self) -> int:
        return packing.words_per_row(self.features, self.bits, self.word_width)

    # --- reference computation -----------------------------------------------------------
    def accumulate(self) -> np.ndarray:
        """Exact accumulators ``acc[i, f] = sum_{j in row i} codes[j, f]`` (int64 ``[N, F]``).

        Raises :class:`~model.integer.rules.AccumulatorOverflowError` when a row is too long
        for ``acc_width``.
        """
        assert self.acc_width is not None
        rules.check_row_lengths(self.row_lengths, self.bits, self.acc_width, what=f"{self.name}: row")
        n_src = self.codes.shape[0]
        a = sp.csr_matrix(
            (np.ones(self.num_terms, dtype=np.int64), self.indices, self.indptr),
            shape=(self.num_nodes, n_src),
        )
        return np.asarray(a @ self.codes, dtype=np.int64)

    def requantize(self, acc: np.ndarray) -> np.ndarray:
        """Output codes from accumulators (zero-point correction, multiply, shift, clamp)."""
        c = acc - self.row_lengths[:, None] * int(self.zero_point_in)
        return rules.requantize(
            c, self.multiplier[:, None], self.shift[:, None], self.zero_point_out, self.out_bits
        )

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """``(acc, out_codes)``, both int64 ``[N, F]``."""
        acc = self.accumulate()
        return acc, self.requantize(acc)

    # --- memory images -------------------------------------------------------------------
    def packed_input(self) -> np.ndarray:
        """Input codes as memory bytes ``[N_src, W * word_width // 8]`` (pad lanes = z_in)."""
        return packing.pack_codes(self.codes, self.bits, self.word_width, self.zero_point_in)

    def packed_output(self, out_codes: np.ndarray) -> np.ndarray:
        """Output codes as memory bytes; pad lanes hold ``z_out`` (what the datapath computes
        for pad input lanes that hold ``z_in``)."""
        return packing.pack_codes(out_codes, self.out_bits, self.word_width, self.zero_point_out)


def random_stage(
    rng: np.random.Generator,
    num_nodes: int = 32,
    features: int = 20,
    bits: int = 4,
    avg_degree: float = 3.0,
    word_width: int = 64,
    self_loops: bool = True,
    isolated_fraction: float = 0.1,
    mult_bits: int = rules.DEFAULT_MULT_BITS,
    name: str = "random",
) -> AggregationStage:
    """A random stage for tests: Poisson row lengths (some rows empty), random codes, zero
    points anywhere in the code range (0 and maximum included), random multipliers/shifts."""
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
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    indices = np.concatenate(rows) if rows and lengths.sum() else np.zeros(0, dtype=np.int64)
    qmax = (1 << bits) - 1
    codes = rng.integers(0, qmax + 1, size=(num_nodes, features))
    z_in = int(rng.choice([0, qmax, int(rng.integers(0, qmax + 1))]))
    z_out = int(rng.choice([0, qmax, int(rng.integers(0, qmax + 1))]))
    factor = rng.uniform(0.0, 2.0, size=num_nodes) / max(1.0, avg_degree)
    m, s = rules.multiplier_shift(factor, mult_bits)
    return AggregationStage(
        name=name, indptr=indptr, indices=indices, codes=codes, bits=bits, out_bits=bits,
        zero_point_in=z_in, zero_point_out=z_out, multiplier=m, shift=s,
        mult_bits=mult_bits, word_width=word_width,
    )


__all__ = ["AggregationStage", "random_stage"]
