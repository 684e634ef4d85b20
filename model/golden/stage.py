"""One aggregation stage in integer form: the unit the golden vectors, the RTL and the
simulator share.

A stage is a CSR graph (rows are destination nodes; a row lists the source nodes summed into
it, self-loop included when the layer has one), unsigned input codes, zero points, and a
per-node requantization multiplier and shift. Bit-truncated (BT/BT*) stages add an input level
step (``in_level = 85``: code ``c`` stands for grid value ``85 c``) and/or an output grid with
snap thresholds (see :mod:`model.integer.rules`). :meth:`AggregationStage.compute` applies the
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
        in_level: grid value of one input code step (1; 85 for BT inputs): the correction is
            ``in_level * acc - n * zero_point_in`` and ``zero_point_in`` is a grid value in
            ``0..in_level * (2**bits - 1)``.
        out_grid_bits: width of the grid the output is requantized onto (``None``: out_bits).
        out_thresholds: ascending grid-code thresholds of the output snap (``2**out_bits - 1``
            of them, BT outputs), or ``None`` when the output is the requantized code itself.
            With thresholds, ``zero_point_out`` is a grid code (``0..2**out_grid_bits - 1``).
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
    in_level: int = 1
    out_grid_bits: int | None = None
    out_thresholds: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        self.indptr = np.asarray(self.indptr, dtype=np.int64)
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.codes = np.asarray(self.codes, dtype=np.int64)
        self.multiplier = np.asarray(self.multiplier, dtype=np.int64)
        self.shift = np.asarray(self.shift, dtype=np.int64)
        if self.acc_width is None:
            self.acc_width = rules.acc_width(self.bits, self.max_terms)
        self.in_level = int(self.in_level)
        if self.in_level < 1:
            raise ValueError(f"{self.name}: in_level must be >= 1, got {self.in_level}")
        zmax_in = self.in_level * ((1 << self.bits) - 1)
        if not 0 <= int(self.zero_point_in) <= zmax_in:
            raise ValueError(f"{self.name}: zero_point_in {self.zero_point_in} outside 0..{zmax_in}")
        if self.out_grid_bits is None:
            self.out_grid_bits = self.out_bits
        if self.out_thresholds is None:
            if self.out_grid_bits != self.out_bits:
                raise ValueError(f"{self.name}: out_grid_bits {self.out_grid_bits} != out_bits "
                                 f"{self.out_bits} needs out_thresholds to snap the grid codes")
        else:
            t = tuple(int(v) for v in self.out_thresholds)
            want = (1 << self.out_bits) - 1
            if len(t) != want:
                raise ValueError(f"{self.name}: out_thresholds needs {want} values for "
                                 f"{self.out_bits}-bit codes, got {len(t)}")
            top = 1 << self.out_grid_bits
            if any(b < a for a, b in zip(t, t[1:], strict=False)) or not all(
                    0 <= v <= top for v in t):
                raise ValueError(f"{self.name}: out_thresholds {list(t)} must be ascending "
                                 f"grid codes in 0..{top}")
            self.out_thresholds = t
        zmax_out = (1 << self.out_grid_bits) - 1
        if not 0 <= int(self.zero_point_out) <= zmax_out:
            raise ValueError(f"{self.name}: zero_point_out {self.zero_point_out} outside 0..{zmax_out}")

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
    def truncated(self) -> bool:
        """True for a stage with bit-truncated input or output codes."""
        return self.in_level != 1 or self.out_thresholds is not None

    @property
    def corrected_width(self) -> int:
        """Width (bits) of the signed corrected sum ``in_level * acc - n * z_in``."""
        return (self.in_level * self.max_terms * ((1 << self.bits) - 1)).bit_length() + 1

    @property
    def pad_code_in(self) -> int:
        """Code held by the pad lanes of the input's last word: ``z_in`` for plain stages (so
        pad lanes requantize to ``z_out``), ``floor(z_in / in_level)`` for BT inputs."""
        return int(self.zero_point_in) // self.in_level

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
        """Output codes from accumulators (zero-point correction, multiply, shift, clamp;
        then the snap of a BT output)."""
        c = self.in_level * np.asarray(acc, dtype=np.int64) - self.row_lengths[:, None] * int(
            self.zero_point_in)
        assert self.out_grid_bits is not None
        y = rules.requantize(
            c, self.multiplier[:, None], self.shift[:, None], self.zero_point_out,
            self.out_grid_bits,
        )
        return y if self.out_thresholds is None else rules.snap(y, self.out_thresholds)

    def compute(self) -> tuple[np.ndarray, np.ndarray]:
        """``(acc, out_codes)``, both int64 ``[N, F]``."""
        acc = self.accumulate()
        return acc, self.requantize(acc)

    # --- memory images -------------------------------------------------------------------
    def packed_input(self) -> np.ndarray:
        """Input codes as memory bytes ``[N_src, W * word_width // 8]`` (pad lanes hold
        :attr:`pad_code_in`)."""
        return packing.pack_codes(self.codes, self.bits, self.word_width, self.pad_code_in)

    def pad_output(self) -> np.ndarray:
        """Per-row code the datapath computes for pad lanes (every term = :attr:`pad_code_in`):
        ``z_out`` in every row of a plain stage (int64 ``[N]``)."""
        acc = self.row_lengths[:, None] * self.pad_code_in
        return self.requantize(acc)[:, 0]

    def packed_output(self, out_codes: np.ndarray) -> np.ndarray:
        """Output codes as memory bytes ``[N, W_out * word_width // 8]``; pad lanes hold what
        the datapath computes from the input's pad lanes (:meth:`pad_output`)."""
        out = np.asarray(out_codes, dtype=np.int64)
        lanes = packing.lanes(self.out_bits, self.word_width)
        words = packing.words_per_row(out.shape[1], self.out_bits, self.word_width)
        extra = words * lanes - out.shape[1]
        if extra:
            pad = np.repeat(self.pad_output()[:, None], extra, axis=1)
            out = np.concatenate([out, pad], axis=1)
        return packing.pack_codes(out, self.out_bits, self.word_width)


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
    truncated: bool = False,
) -> AggregationStage:
    """A random stage for tests: Poisson row lengths (some rows empty), random codes, zero
    points anywhere in the code range (0 and maximum included), random multipliers/shifts.

    ``truncated=True`` makes a BT/BT* stage: 2-bit codes at level step 85 with a grid zero
    point in 0..255, output snapped from the 8-bit grid with a random skew shift in -3..3.
    """
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
    if truncated:
        if bits != 2:
            raise ValueError(f"truncated stages have 2-bit codes, got bits={bits}")
        grid = [0, 255, int(rng.integers(0, 256))]
        return AggregationStage(
            name=name, indptr=indptr, indices=indices, codes=codes, bits=2, out_bits=2,
            zero_point_in=int(rng.choice(grid)), zero_point_out=int(rng.choice(grid)),
            multiplier=m, shift=s, mult_bits=mult_bits, word_width=word_width, in_level=85,
            out_grid_bits=8, out_thresholds=rules.bt_thresholds(int(rng.integers(-3, 4))),
        )
    return AggregationStage(
        name=name, indptr=indptr, indices=indices, codes=codes, bits=bits, out_bits=bits,
        zero_point_in=z_in, zero_point_out=z_out, multiplier=m, shift=s,
        mult_bits=mult_bits, word_width=word_width,
    )


__all__ = ["AggregationStage", "random_stage"]
