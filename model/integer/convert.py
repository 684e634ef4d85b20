"""Conversion of a trained quantized model into an integer-only model, bound to one graph.

``to_integer(model, data)`` reads every quantizer's integer form and every real factor
(scales, GCN's D^-1/2, SAGE's 1/deg, biases) once and turns them into integer multipliers and
shifts. ``IntegerModel.forward()`` then runs on integer codes and int64 accumulators only;
the only float step is quantizing the raw input features (the model's input boundary).

Aggregation is done by :class:`~model.golden.stage.AggregationStage`, exactly as the hardware
does it: a pure sum of unsigned message codes per destination node, the zero point and the
per-node factor applied once per output (source-side D^-1/2 is folded into the message
requantization, destination-side into the aggregation's multiplier).

The forward pass runs the vectorised kernels of :mod:`model.integer.kernels` (same results,
same overflow errors); ``with kernels.reference_path(): model.forward(x)`` runs the
straightforward definitions instead (``AggregationStage.compute``, ``rules.requantize``, the
``reference`` methods), which the tests pin the kernels against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from ..golden.mixed_stage import MixedAggregationStage
from ..golden.stage import AggregationStage
from ..nn.features import SparseFeatures, cached_model_input
from ..nn.gcn_conv import QGCNConv
from ..nn.gin_conv import QGINConv
from ..nn.graph_ops import GraphOps, graph_ops
from ..nn.linear import QLinear
from ..nn.models import QConvStack, QDecoupled, QuantGNN
from ..nn.propagation import QPropagation
from ..nn.sage_conv import QSAGEConv
from ..nn.smp_propagation import QSMPPropagation
from ..quant.node_precision import NodeBucketQuantizer, node_quantizers
from ..quant.quantizer import Quantizer
from . import kernels, rules
from .fixed import IntegerConversionError, QParams, Requant, int_matmul

Trace = dict[str, tuple[np.ndarray, QParams]]


def _qp(model: torch.nn.Module, q: Quantizer) -> QParams:
    name = next((n for n, m in model.named_modules() if m is q), q.name)
    return QParams.of(name, q)


def _act_is_relu(act: Callable[[Tensor], Tensor] | None, where: str) -> bool:
    if act is None:
        return False
    if act is F.relu or act is torch.relu:
        return True
    raise IntegerConversionError(f"{where}: activation {act!r} not supported (allowed: relu, none)")


def _weight_codes(model: torch.nn.Module, q: Quantizer, w: Tensor) -> tuple[np.ndarray, QParams]:
    """Stored weight codes and their parameters (the matmuls use ``qp.centred(codes)``)."""
    qp = _qp(model, q)
    codes = q.quantize_codes(w.detach()).cpu().numpy().astype(np.int64)
    return codes, qp


def _col(a: Tensor | np.ndarray) -> np.ndarray:
    """A per-node vector as an ``[N, 1]`` float64 column."""
    v = a.detach().cpu().numpy() if isinstance(a, Tensor) else np.asarray(a)
    return v.astype(np.float64).reshape(-1, 1)


@dataclass
class AggregationSpec:
    """One aggregation of a layer: CSR, message/aggregate quantizers, per-node factors."""

    name: str
    indptr: np.ndarray
    indices: np.ndarray
    message: QParams
    aggregate: QParams
    multiplier: np.ndarray
    shift: np.ndarray
    mult_bits: int
    #: cached CSR sum operator (built on first use, reused by every forward pass)
    _csr: kernels.CSRSum | None = field(default=None, repr=False, compare=False)
    #: cached lookup table of the output snap (BT aggregates)
    _snap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @classmethod
    def build(
        cls,
        name: str,
        indptr: Tensor,
        indices: Tensor,
        message: QParams,
        aggregate: QParams,
        dest_factor: np.ndarray,
        mult_bits: int,
    ) -> AggregationSpec:
        for qp in (message, aggregate):
            if not qp.per_tensor:
                raise IntegerConversionError(f"{qp.name}: aggregation needs per-tensor quantizers")
        if message.bits != aggregate.bits:
            raise IntegerConversionError(
                f"{name}: message ({message.bits} bits) and aggregate ({aggregate.bits} bits) "
                "must have the same width for the aggregation datapath"
            )
        factor = message.scale * np.asarray(dest_factor, dtype=np.float64).reshape(-1) / aggregate.scale
        # A factor too large for the multiplier (an aggregate range far narrower than one
        # message step) saturates every output with c != 0 whether it is applied exactly or as
        # the largest multiplier, as long as that multiplier alone exceeds twice the output
        # range; c = 0 gives z_out either way. So cap it: the outputs are identical.
        m_max = (1 << mult_bits) - 1
        grid = agg.grid_max if (agg := aggregate).grid_max is not None else agg.qmax - agg.qmin
        if np.any(factor > m_max) and m_max >= 2 * (grid + 1):
            factor = np.minimum(factor, float(m_max))
        m, s = rules.multiplier_shift(factor, mult_bits)
        return cls(
            name, indptr.cpu().numpy().astype(np.int64), indices.cpu().numpy().astype(np.int64),
            message, aggregate, m, s, mult_bits,
        )

    def stage(self, message_codes: np.ndarray, word_width: int = 64) -> AggregationStage:
        """The hardware stage for these message codes (signed codes become offset binary)."""
        off_in = -self.message.qmin  # 0 for unsigned codes, 2**(b-1) for signed
        off_out = -self.aggregate.qmin
        agg = self.aggregate
        meta: dict[str, Any] = {"message_scale": float(self.message.scale),
                                "aggregate_scale": float(agg.scale)}
        if self.message.truncated or agg.truncated:
            meta["truncation"] = {"message": self.message.truncated, "aggregate": agg.truncated}
        return AggregationStage(
            name=self.name, indptr=self.indptr, indices=self.indices,
            codes=message_codes + off_in if off_in else message_codes, bits=self.message.bits,
            out_bits=agg.bits,
            zero_point_in=int(self.message.zero) + off_in * self.message.level,
            zero_point_out=int(agg.zero) + off_out,
            multiplier=self.multiplier, shift=self.shift, mult_bits=self.mult_bits,
            word_width=word_width, meta=meta, in_level=self.message.level,
            out_grid_bits=None if agg.grid_max is None else agg.grid_max.bit_length(),
            out_thresholds=agg.thresholds if agg.truncated else None,
        )

    def run(self, message_codes: np.ndarray) -> tuple[np.ndarray, AggregationStage]:
        """Aggregate codes (in the aggregate quantizer's code range) and the hardware stage.
        Same result as :meth:`AggregationStage.compute` of that stage."""
        out, st, _ = self.run_with_corrected(message_codes, keep_corrected=False)
        return out, st

    def run_with_corrected(
        self, message_codes: np.ndarray, keep_corrected: bool = True
    ) -> tuple[np.ndarray, AggregationStage, np.ndarray | None]:
        """:meth:`run`, plus the corrected sums ``in_level * acc - n z_in`` (int64 ``[N, F]``)
        when ``keep_corrected``.

        Vectorised: the CSR is built once (:class:`~model.integer.kernels.CSRSum`) and the
        requantization runs in place; the row-length check of the stage's accumulator width
        and the product-width check of the requantization run on every call, as in
        :meth:`AggregationStage.compute`."""
        st = self.stage(message_codes)
        off_out = -self.aggregate.qmin
        if kernels.use_reference():
            acc, out = st.compute()
            corrected = None
            if keep_corrected:
                corrected = st.in_level * acc - st.row_lengths[:, None] * int(st.zero_point_in)
            return out - off_out, st, corrected
        assert st.acc_width is not None and st.out_grid_bits is not None
        if self._csr is None or self._csr.num_src != st.codes.shape[0]:
            self._csr = kernels.CSRSum(self.indptr, self.indices, st.codes.shape[0])
        if st.out_thresholds is not None and self._snap is None:
            self._snap = kernels.snap_table(st.out_thresholds, 0, (1 << st.out_grid_bits) - 1)
        snap = self._snap if st.out_thresholds is not None else None
        if not keep_corrected:
            return kernels.stage_output(st, self._csr, snap, off_out), st, None
        kernels.check_stage_rows(st.row_lengths, st.bits, st.acc_width, st.name)
        c = self._csr.corrected(st.codes, st.in_level, int(st.zero_point_in))
        corrected = c.copy()
        y = kernels.requantize_inplace(c, st.multiplier[:, None], st.shift[:, None],
                                       st.zero_point_out, st.out_grid_bits)
        if snap is not None:
            y = kernels.snap_clamped(y, snap, 0)
        if off_out:
            np.subtract(y, off_out, out=y)
        return y, st, corrected


class IntLayer:
    """Base: an integer layer records its intermediate codes for traces and exports."""

    upd: QParams  # the layer's output (update) quantizer

    def __init__(self) -> None:
        self.trace: Trace = {}
        self.stages: list[AggregationStage | MixedAggregationStage] = []
        self._ws = kernels.Workspace()  # reused scratch (matmul results) between passes

    def _matmul(self, x: Any, w_centred: np.ndarray, tag: str = "mm") -> np.ndarray:
        """:func:`int_matmul` into a reused buffer (consumed by the next requantization)."""
        n = x.codes.shape[0] if isinstance(x, kernels.Centred) else x.shape[0]
        return int_matmul(x, w_centred, out=self._ws.get(tag, (n, w_centred.shape[0]), np.int64))

    def forward(self, *inputs: Any) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    # set by layers that aggregate
    msg: QParams
    agg_q: QParams
    agg: AggregationSpec
    inp: InputRequant
    rq_msg: Requant

    def _aggregate(self, m: np.ndarray) -> np.ndarray:
        """Run the aggregation stage on message codes; record the stage and its output."""
        a, st = self.agg.run(m)
        self.stages.append(st)
        return self._rec(self.agg_q, a)

    def _aggregate_input(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Aggregate-first layers (GIN, SAGE): input codes -> messages -> aggregate codes.
        Returns the centred input codes and the aggregate codes."""
        self.stages = []
        xc, codes = self.inp.encode(x)
        if sp.issparse(xc):
            xc = _densify_centred(xc)
        self._rec(self.inp.target, codes)
        m = self._rec(self.msg, self.rq_msg(xc))
        return xc, self._aggregate(m)

    def _rec(self, qp: QParams, codes: np.ndarray) -> np.ndarray:
        self.trace[qp.name] = (codes, qp)
        return codes


class InputRequant:
    """Codes entering a layer's input quantizer: from raw features (float boundary) or from
    the previous layer's codes (integer requantization)."""

    def __init__(self, target: QParams, prev: QParams | None) -> None:
        self.target = target
        self.prev = prev
        self.rq = None if prev is None else Requant.build([prev.scale / target.scale], target)

    def __call__(self, x: np.ndarray | SparseFeatures | Tensor) -> Any:
        """Centred input codes (``level * codes - zero``); sparse for sparse raw features."""
        return self.encode(x)[0]

    def encode(self, x: np.ndarray | SparseFeatures | Tensor) -> tuple[Any, np.ndarray]:
        """``(centred codes, stored codes)``: :meth:`__call__` (sparse for sparse raw
        features; otherwise lazily centred, :meth:`QParams.lazy`) and :meth:`codes` of its
        result, without computing the codes twice."""
        if kernels.use_reference():
            xc = self.reference(x)
            return xc, self.codes(xc)
        t = self.target
        if self.prev is None:
            if isinstance(x, SparseFeatures):
                xc = self.reference(x)
                return xc, self.codes(xc)
            arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
            c = _quantize_real(arr, t)
            return t.lazy(c), c
        assert self.rq is not None and self.prev is not None
        c = self.rq(self.prev.lazy(np.asarray(x)))
        return t.lazy(c), c

    def reference(self, x: np.ndarray | SparseFeatures | Tensor) -> Any:
        """The straightforward definition of :meth:`__call__`."""
        t = self.target
        if self.prev is None:
            if isinstance(x, SparseFeatures):
                zero_code = _quantize_real(np.zeros(1), t)
                if int(t.centred(zero_code)[0]) != 0:
                    raise IntegerConversionError(
                        f"{t.name}: real 0 quantizes to a non-zero level, so a sparse input's "
                        "implicit zeros would change (use a dense input)")
                crow = x.pattern.crow.cpu().numpy()
                col = x.pattern.col.cpu().numpy()
                vals = _quantize_real(x.values.detach().cpu().numpy(), t)
                return sp.csr_matrix((t.centred(vals), col, crow), shape=x.shape)
            arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
            return t.centred(_quantize_real(arr, t))
        assert self.rq is not None and self.prev is not None
        return t.centred(self.rq(self.prev.centred(np.asarray(x))))

    def codes(self, xc: Any) -> np.ndarray:
        """Stored codes (dense int64) of centred codes ``xc`` returned by ``__call__``."""
        t = self.target
        if kernels.use_reference():
            return (_densify_centred(xc) + t.zero) // t.level
        if sp.issparse(xc):
            d = np.asarray(xc.toarray(), dtype=np.int64)  # a new dense array
        else:
            d = np.array(xc, dtype=np.int64)  # a copy: the steps below run in place
        d = _iadd(d, t.zero)
        if t.level != 1:
            np.floor_divide(d, t.level, out=d)
        return d


def _iadd(t: np.ndarray, x: Any) -> np.ndarray:
    if np.broadcast_shapes(t.shape, np.shape(x)) == t.shape:
        return np.add(t, x, out=t)
    return t + x


#: Reused float buffer of :func:`_quantize_real` (per thread).
_QUANT_WS = kernels.Workspace()


def _quantize_real(x: np.ndarray, qp: QParams) -> np.ndarray:
    """The float boundary: raw features to codes, with the fake quantizer's rule."""
    xf = np.asarray(x, dtype=np.float32)
    inv = (np.float32(1.0) / qp.scale.astype(np.float32)).astype(np.float32)
    lo, hi = qp.grid_range
    if kernels.use_reference():
        return qp.snap(np.clip(np.rint(xf * inv).astype(np.int64) + qp.zero, lo, hi))
    t = _QUANT_WS.get("x", np.broadcast_shapes(xf.shape, inv.shape), np.float32)
    np.multiply(xf, inv, out=t)
    np.rint(t, out=t)
    c = _iadd(t.astype(np.int64), qp.zero)
    np.clip(c, lo, hi, out=c)
    return qp.snap(c)


def _densify_centred(x: Any) -> np.ndarray:
    return np.asarray(x.todense(), dtype=np.int64) if sp.issparse(x) else np.asarray(x, dtype=np.int64)


class IntGCN(IntLayer):
    def __init__(self, model: QuantGNN, conv: QGCNConv, g: GraphOps, prev: QParams | None,
                 mult_bits: int, name: str) -> None:
        super().__init__()
        q = conv.q
        self.inp = InputRequant(_qp(model, q.input), prev)
        self.w, self.wq = _weight_codes(model, q.weight, conv.lin.weight)
        self.out = _qp(model, q.output)
        self.msg = _qp(model, q.message)
        self.agg_q = _qp(model, q.aggregate)
        self.upd = _qp(model, q.update)
        s_in = self.inp.target.scale
        self.rq_out = Requant.build([s_in * self.wq.scale / self.out.scale], self.out)
        self.rq_msg = Requant.build([self.out.scale * _col(g.dinv_sqrt) / self.msg.scale], self.msg)
        self.agg = AggregationSpec.build(f"{name}.aggregate", g.indptr, g.indices, self.msg,
                                         self.agg_q, _col(g.dinv_sqrt), mult_bits)
        bias = None if conv.bias is None else conv.bias.detach().cpu().numpy().astype(np.float64)
        self.rq_upd = Requant.build([self.agg_q.scale / self.upd.scale], self.upd, bias=bias,
                                    relu=_act_is_relu(conv.act, name))

    def forward(self, x: Any) -> np.ndarray:
        self.stages = []
        xc, codes = self.inp.encode(x)
        self._rec(self.inp.target, codes)
        self._rec(self.wq, self.w)
        o = self._rec(self.out, self.rq_out(self._matmul(xc, self.wq.centred(self.w))))
        m = self._rec(self.msg, self.rq_msg(self.out.lazy(o)))
        a = self._aggregate(m)
        return self._rec(self.upd, self.rq_upd(self.agg_q.lazy(a)))


class IntGIN(IntLayer):
    def __init__(self, model: QuantGNN, conv: QGINConv, g: GraphOps, prev: QParams | None,
                 mult_bits: int, name: str) -> None:
        super().__init__()
        q, q2 = conv.q, conv.q2
        self.inp = InputRequant(_qp(model, q.input), prev)
        self.msg = _qp(model, q.message)
        self.agg_q = _qp(model, q.aggregate)
        self.out = _qp(model, q.output)
        self.in2 = _qp(model, q2.input)
        self.out2 = _qp(model, q2.output)
        self.upd = _qp(model, q.update)
        self.w1, self.wq1 = _weight_codes(model, q.weight, conv.lin1.weight)
        self.w2, self.wq2 = _weight_codes(model, q2.weight, conv.lin2.weight)
        s_in = self.inp.target.scale
        self.rq_msg = Requant.build([s_in / self.msg.scale], self.msg)
        ones = np.ones(g.num_nodes)
        self.agg = AggregationSpec.build(f"{name}.aggregate", g.indptr, g.indices, self.msg,
                                         self.agg_q, ones, mult_bits)
        b1 = conv.lin1.bias.detach().cpu().numpy().astype(np.float64)
        b2 = conv.lin2.bias.detach().cpu().numpy().astype(np.float64)
        self.rq_out = Requant.build([self.agg_q.scale * self.wq1.scale / self.out.scale], self.out, bias=b1)
        self.rq_in2 = Requant.build([self.out.scale / self.in2.scale], self.in2, relu=True)
        self.rq_out2 = Requant.build([self.in2.scale * self.wq2.scale / self.out2.scale], self.out2)
        self.rq_upd = Requant.build([self.out2.scale / self.upd.scale], self.upd, bias=b2,
                                    relu=_act_is_relu(conv.act, name))

    def forward(self, x: Any) -> np.ndarray:
        _, a = self._aggregate_input(x)
        self._rec(self.wq1, self.w1)
        h = self._rec(self.out, self.rq_out(self._matmul(self.agg_q.lazy(a),
                                                         self.wq1.centred(self.w1))))
        x2 = self._rec(self.in2, self.rq_in2(self.out.lazy(h)))
        self._rec(self.wq2, self.w2)
        o = self._rec(self.out2, self.rq_out2(self._matmul(self.in2.lazy(x2),
                                                           self.wq2.centred(self.w2))))
        return self._rec(self.upd, self.rq_upd(self.out2.lazy(o)))


class IntSAGE(IntLayer):
    def __init__(self, model: QuantGNN, conv: QSAGEConv, g: GraphOps, prev: QParams | None,
                 mult_bits: int, name: str) -> None:
        super().__init__()
        q = conv.q
        self.inp = InputRequant(_qp(model, q.input), prev)
        self.msg = _qp(model, q.message)
        self.agg_q = _qp(model, q.aggregate)
        self.out = _qp(model, q.output)
        self.upd = _qp(model, q.update)
        self.wl, self.wql = _weight_codes(model, q.weight, conv.lin_l.weight)
        self.wr, self.wqr = _weight_codes(model, conv.q_root_weight, conv.lin_r.weight)
        s_in = self.inp.target.scale
        self.rq_msg = Requant.build([s_in / self.msg.scale], self.msg)
        pat = g.pattern_noloop
        self.agg = AggregationSpec.build(f"{name}.aggregate", pat.crow, pat.col, self.msg,
                                         self.agg_q, _col(g.inv_in_degree), mult_bits)
        self.rq_out = Requant.build(
            [self.agg_q.scale * self.wql.scale / self.out.scale, s_in * self.wqr.scale / self.out.scale],
            self.out,
        )
        b = conv.lin_l.bias.detach().cpu().numpy().astype(np.float64)
        self.rq_upd = Requant.build([self.out.scale / self.upd.scale], self.upd, bias=b,
                                    relu=_act_is_relu(conv.act, name))

    def forward(self, x: Any) -> np.ndarray:
        xc, a = self._aggregate_input(x)
        self._rec(self.wql, self.wl)
        self._rec(self.wqr, self.wr)
        acc_l = self._matmul(self.agg_q.lazy(a), self.wql.centred(self.wl), "mm_l")
        acc_r = self._matmul(xc, self.wqr.centred(self.wr), "mm_r")
        h = self._rec(self.out, self.rq_out(acc_l, acc_r))
        return self._rec(self.upd, self.rq_upd(self.out.lazy(h)))


class IntLinear(IntLayer):
    def __init__(self, model: QuantGNN, lin: QLinear, prev: QParams | None, name: str) -> None:
        super().__init__()
        q = lin.q
        self.inp = InputRequant(_qp(model, q.input), prev)
        self.w, self.wq = _weight_codes(model, q.weight, lin.lin.weight)
        self.out = _qp(model, q.output)
        self.upd = _qp(model, q.update)
        self.rq_out = Requant.build([self.inp.target.scale * self.wq.scale / self.out.scale], self.out)
        b = lin.lin.bias.detach().cpu().numpy().astype(np.float64)
        self.rq_upd = Requant.build([self.out.scale / self.upd.scale], self.upd, bias=b,
                                    relu=_act_is_relu(lin.act, name))

    def forward(self, x: Any) -> np.ndarray:
        xc, codes = self.inp.encode(x)
        self._rec(self.inp.target, codes)
        self._rec(self.wq, self.w)
        o = self._rec(self.out, self.rq_out(self._matmul(xc, self.wq.centred(self.w))))
        return self._rec(self.upd, self.rq_upd(self.out.lazy(o)))


class IntPropagation(IntLayer):
    def __init__(self, model: QuantGNN, prop: QPropagation, g: GraphOps, prev: QParams,
                 teleport: QParams, mult_bits: int, name: str) -> None:
        super().__init__()
        q = prop.q
        self.prev = prev
        self.teleport = teleport
        self.msg = _qp(model, q.message)
        self.agg_q = _qp(model, q.aggregate)
        self.upd = _qp(model, q.update)
        self.rq_msg = Requant.build([prev.scale * _col(g.dinv_sqrt) / self.msg.scale], self.msg)
        self.agg = AggregationSpec.build(f"{name}.aggregate", g.indptr, g.indices, self.msg,
                                         self.agg_q, _col(g.dinv_sqrt), mult_bits)
        a = prop.alpha
        self.rq_upd = Requant.build(
            [(1.0 - a) * self.agg_q.scale / self.upd.scale, a * teleport.scale / self.upd.scale],
            self.upd,
        )

    def forward(self, z: np.ndarray, h: np.ndarray) -> np.ndarray:  # type: ignore[override]
        self.stages = []
        m = self._rec(self.msg, self.rq_msg(self.prev.lazy(z)))
        a = self._aggregate(m)
        return self._rec(self.upd, self.rq_upd(self.agg_q.lazy(a), self.teleport.lazy(h)))


def _signed_terms(factors: list[float | np.ndarray]) -> tuple[list[np.ndarray], list[int]]:
    """Split real factors into magnitudes and signs (+1 / -1; requantization multipliers are
    unsigned, so a negative factor multiplies the negated input). A factor must keep one sign
    over all its entries."""
    mags, signs = [], []
    for f in factors:
        a = np.asarray(f, dtype=np.float64)
        neg = bool(np.all(a <= 0) and np.any(a < 0))
        if not neg and np.any(a < 0):
            raise IntegerConversionError("a requantization factor changes sign across nodes")
        mags.append(-a if neg else a)
        signs.append(-1 if neg else 1)
    return mags, signs


class IntSMPPropagation(IntLayer):
    """One SMP step (``docs/smp.md`` section 2) in integers.

    Two aggregation stages on the same CSR (``Â z`` and the gap ``Â Δ``), a 3-term per-node
    requantization for the gap messages, the exact integer reduction
    ``T = sum g~ (deg g~ - C)`` (``tr(Δ^T L~ Δ)`` in units of the gap message step squared),
    and a 4-term update whose last factor ``2 η λ_k s_b / s_y`` depends on the run-time
    multiplier. ``λ`` and the slack are two scalars per step, updated in float64 from the exact
    ``T`` (the host's or a scalar unit's job: they only set the next step's factor).
    """

    def __init__(self, model: QuantGNN, prop: Any, g: GraphOps, prev: QParams,
                 teleport: QParams, mult_bits: int, name: str) -> None:
        super().__init__()
        q, qg, c = prop.q, prop.q_gap, prop.c
        self.c = c
        self.prev = prev
        self.teleport = teleport
        self.msg = _qp(model, q.message)
        self.agg_q = _qp(model, q.aggregate)
        self.upd = _qp(model, q.update)
        self.gmsg = _qp(model, qg.message)
        self.gagg = _qp(model, qg.aggregate)
        d = _col(g.dinv_sqrt)
        self.deg = g.deg_hat.cpu().numpy().astype(np.int64).reshape(-1, 1)
        self.nnz = float(g.indices.numel())
        self.rq_msg = Requant.build([prev.scale * d / self.msg.scale], self.msg)
        self.agg = AggregationSpec.build(f"{name}.aggregate", g.indptr, g.indices, self.msg,
                                         self.agg_q, d, mult_bits)
        self.gap = AggregationSpec.build(f"{name}.gap_aggregate", g.indptr, g.indices,
                                         self.gmsg, self.gagg, d, mult_bits)
        eta, mu = c.step, c.mu
        mags, self.gap_signs = _signed_terms([
            eta * teleport.scale * d / self.gmsg.scale,
            -eta * (1.0 + mu) * prev.scale * d / self.gmsg.scale,
            eta * mu * self.agg_q.scale * d / self.gmsg.scale,
        ])
        self.rq_gap = Requant.build(mags, self.gmsg)
        z_factor = (1.0 - eta * (1.0 + mu)) * prev.scale / self.upd.scale
        self.upd_static = [z_factor, eta * mu * self.agg_q.scale / self.upd.scale,
                           eta * teleport.scale / self.upd.scale]
        self.lam = c.lambda0
        self.slack = c.slack0

    def reset(self, lam: float, slack: float) -> None:
        """Set the multiplier and slack entering this step."""
        self.lam, self.slack = float(lam), float(slack)

    def forward(self, z: np.ndarray, h: np.ndarray) -> np.ndarray:  # type: ignore[override]
        self.stages = []
        pz, ph, pa = self.prev, self.teleport, self.agg_q
        m = self._rec(self.msg, self.rq_msg(pz.lazy(z)))
        a = self._aggregate(m)
        gs = self.gap_signs
        gm = self._rec(self.gmsg, self.rq_gap(ph.lazy(h, gs[0]), pz.lazy(z, gs[1]),
                                              pa.lazy(a, gs[2])))
        b, st, csum = self.gap.run_with_corrected(gm)
        assert csum is not None
        self.stages.append(st)
        self._rec(self.gagg, b)
        # T = sum_i g~_i (deg_i g~_i - C_i), C_i = sum over the row of g~ (exact, int64),
        # C_i being the gap stage's corrected sum in_level * acc_i - n_i z_in
        gc = self.gmsg.centred(gm)
        t_int = int(np.sum(gc * (self.deg * gc - csum), dtype=np.int64))
        c = self.c
        factors = [*self.upd_static, 2.0 * c.step * self.lam * self.gagg.scale / self.upd.scale]
        mags, signs = _signed_terms(factors)
        rq_upd = Requant.build(mags, self.upd)
        y = rq_upd(pz.lazy(z, signs[0]), pa.lazy(a, signs[1]), ph.lazy(h, signs[2]),
                   self.gagg.lazy(b, signs[3]))
        slack = self.slack + 2.0 * c.eta_slack * self.lam * self.slack
        trace = float(self.gmsg.scale) ** 2 * t_int
        self.lam = self.lam + c.eta_lambda * (c.bound * self.nnz - slack * slack - trace)
        self.slack = slack
        return self._rec(self.upd, y)


# --------------------------------------------------------------------------------------------
# degree-aware node buckets (per-node widths): GCN
# --------------------------------------------------------------------------------------------
class NodeQParams:
    """Per-node quantizer parameters of one role: the bucket of every node and the
    :class:`QParams` of every bucket (one bucket for a role without node buckets)."""

    def __init__(self, model: torch.nn.Module, q: Any, n: int) -> None:
        if isinstance(q, NodeBucketQuantizer):
            self.assign = q.assignment().cpu().numpy().astype(np.int64).reshape(-1)
            self.qps = [_qp(model, b) for b in q.buckets]
        else:
            self.assign = np.zeros(n, dtype=np.int64)
            self.qps = [_qp(model, q)]
        if self.assign.shape != (n,):
            raise IntegerConversionError(f"{self.qps[0].name}: node buckets are bound to a graph "
                                         f"of {self.assign.size} nodes, not {n}")
        for qp in self.qps:
            if not qp.per_tensor or qp.truncated:
                raise IntegerConversionError(
                    f"{qp.name}: per-node widths need per-tensor, not bit-truncated quantizers "
                    "in every bucket")

    @property
    def bucketed(self) -> bool:
        return len(self.qps) > 1


def _bucket_groups(*qs: NodeQParams) -> Iterator[tuple[np.ndarray, list[QParams]]]:
    """Rows sharing one bucket in every role of ``qs``, with those buckets' parameters."""
    key = np.stack([q.assign for q in qs], axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    for g, combo in enumerate(uniq):
        yield np.flatnonzero(inv == g), [q.qps[int(c)] for q, c in zip(qs, combo, strict=True)]


def _requant_rows(src: NodeQParams, dst: NodeQParams, n: int, f: int,
                  values: Callable[[np.ndarray, QParams], np.ndarray],
                  factor: Callable[[np.ndarray, QParams, QParams], Any],
                  bias: np.ndarray | None = None, relu: bool = False) -> np.ndarray:
    """Requantize row by row: rows with source bucket ``a`` and target bucket ``b`` use
    :class:`Requant` with ``factor(rows, a, b)`` onto ``b``; int64 ``[n, f]`` codes."""
    out = np.zeros((n, f), dtype=np.int64)
    for rows, (a, b) in _bucket_groups(src, dst):
        out[rows] = Requant.build([factor(rows, a, b)], b, bias=bias, relu=relu)(values(rows, a))
    return out


def _dense_input(x: Any) -> np.ndarray:
    if isinstance(x, SparseFeatures):
        crow = x.pattern.crow.cpu().numpy()
        col = x.pattern.col.cpu().numpy()
        vals = x.values.detach().cpu().numpy()
        return np.asarray(sp.csr_matrix((vals, col, crow), shape=x.shape).toarray())
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


class IntMixedGCN(IntLayer):
    """A GCN layer whose per-node roles follow node buckets (per-node widths).

    Every row-wise step (input quantization/requantization, ``x W``, message, update) runs
    per group of rows sharing their buckets, with those buckets' quantizers; the aggregation
    is a :class:`~model.golden.mixed_stage.MixedAggregationStage`. Message bucket ``k`` (step
    ``s_k``) gets the weight ``R[k] = round(s_k / s_c)`` with the common step ``s_c =
    max_k s_k / (2**r_bits - 1)`` (integers, relative error at most ``1 / (2 R[k])``), and
    row ``i`` the multiplier/shift of ``s_c * dinv_i / s_agg[k(i)]`` (its aggregate bucket).
    Traces are not recorded (the codes of one tensor have several scales).
    """

    def __init__(self, model: QuantGNN, conv: QGCNConv, g: GraphOps, prev: NodeQParams | None,
                 mult_bits: int, name: str, r_bits: int = 16) -> None:
        super().__init__()
        n = int(g.num_nodes)
        q = conv.q
        self.n, self.name, self.mult_bits, self.r_bits = n, name, mult_bits, r_bits
        self.prev = prev
        self.inp_q = NodeQParams(model, q.input, n)
        self.w, self.wq = _weight_codes(model, q.weight, conv.lin.weight)
        self.out_q = NodeQParams(model, q.output, n)
        self.msg_q = NodeQParams(model, q.message, n)
        self.agg_nq = NodeQParams(model, q.aggregate, n)
        self.upd_q = NodeQParams(model, q.update, n)
        self.upd = self.upd_q.qps[0]
        for qp in (*self.msg_q.qps, *self.agg_nq.qps):
            if qp.bits not in rules.HW_BITS:
                raise IntegerConversionError(f"{qp.name}: {qp.bits}-bit aggregation buckets "
                                             f"not supported; allowed: {rules.HW_BITS}")
        self.dinv = _col(g.dinv_sqrt)
        self.indptr = g.indptr.cpu().numpy().astype(np.int64)
        self.indices = g.indices.cpu().numpy().astype(np.int64)
        self.bias = None if conv.bias is None else conv.bias.detach().cpu().numpy().astype(np.float64)
        self.relu = _act_is_relu(conv.act, name)
        steps = np.array([float(qp.scale) for qp in self.msg_q.qps], dtype=np.float64)
        self.common_step = float(steps.max()) / ((1 << r_bits) - 1)
        self.weight = tuple(max(1, int(v)) for v in np.rint(steps / self.common_step))
        s_agg = np.array([float(qp.scale) for qp in self.agg_nq.qps])[self.agg_nq.assign]
        factor = self.common_step * self.dinv.reshape(-1) / s_agg
        self.multiplier, self.shift = rules.multiplier_shift(factor, mult_bits)

    def forward(self, x: Any) -> np.ndarray:
        self.stages = []
        n = self.n
        f_in = self.w.shape[1]
        xc = np.zeros((n, f_in), dtype=np.int64)
        if self.prev is None:
            sparse = isinstance(x, SparseFeatures)
            xd = _dense_input(x)
            for rows, (b,) in _bucket_groups(self.inp_q):
                if sparse and int(b.centred(_quantize_real(np.zeros(1), b))[0]) != 0:
                    raise IntegerConversionError(
                        f"{b.name}: real 0 quantizes to a non-zero level, so a sparse input's "
                        "implicit zeros would change (use a dense input)")
                xc[rows] = b.centred(_quantize_real(xd[rows], b))
        else:
            prev, h = self.prev, np.asarray(x, dtype=np.int64)
            codes = _requant_rows(prev, self.inp_q, n, f_in, lambda r, a: a.centred(h[r]),
                                  lambda r, a, b: a.scale / b.scale)
            for rows, (b,) in _bucket_groups(self.inp_q):
                xc[rows] = b.centred(codes[rows])
        wc = self.wq.centred(self.w)
        acc = np.asarray(int_matmul(xc, wc), dtype=np.int64)
        f = wc.shape[0]
        o = _requant_rows(self.inp_q, self.out_q, n, f, lambda r, a: acc[r],
                          lambda r, a, b: a.scale * self.wq.scale / b.scale)
        m = _requant_rows(self.out_q, self.msg_q, n, f, lambda r, a: a.centred(o[r]),
                          lambda r, a, b: a.scale * self.dinv[r] / b.scale)
        st = self.stage(m)
        self.stages.append(st)
        off_out = np.asarray([-qp.qmin for qp in self.agg_nq.qps], dtype=np.int64)
        a = st.compute()[1] - off_out[self.agg_nq.assign][:, None]
        return _requant_rows(self.agg_nq, self.upd_q, n, f, lambda r, q_: q_.centred(a[r]),
                             lambda r, q_, b: q_.scale / b.scale, bias=self.bias, relu=self.relu)

    def stage(self, message_codes: np.ndarray, word_width: int = 64) -> MixedAggregationStage:
        """The mixed-width hardware stage for these message codes (offset binary codes)."""
        mq, aq = self.msg_q, self.agg_nq
        off_in = [-qp.qmin for qp in mq.qps]
        off_out = [-qp.qmin for qp in aq.qps]
        return MixedAggregationStage(
            name=f"{self.name}.aggregate", indptr=self.indptr, indices=self.indices,
            codes=message_codes + np.asarray(off_in, dtype=np.int64)[mq.assign][:, None],
            src_bucket=mq.assign, bits_in=tuple(qp.bits for qp in mq.qps),
            z_in=tuple(int(qp.zero) + o for qp, o in zip(mq.qps, off_in, strict=True)),
            weight=self.weight, dst_bucket=aq.assign, out_bits=tuple(qp.bits for qp in aq.qps),
            z_out=tuple(int(qp.zero) + o for qp, o in zip(aq.qps, off_out, strict=True)),
            multiplier=self.multiplier, shift=self.shift, r_bits=self.r_bits,
            mult_bits=self.mult_bits, word_width=word_width,
            meta={"common_step": self.common_step,
                  "message_scales": [float(qp.scale) for qp in mq.qps],
                  "aggregate_scales": [float(qp.scale) for qp in aq.qps]})


@dataclass
class IntegerModel:
    """An integer-only model bound to one graph. See the module docstring."""

    kind: str
    layers: list[IntLayer]
    output: QParams
    mult_bits: int
    num_mlp: int = 0
    trace: Trace = field(default_factory=dict)
    #: ``(λ_k+1, s_k+1)`` after each SMP step of the last forward pass (SMP models only)
    smp_trace: list[tuple[float, float]] = field(default_factory=list)

    def forward(self, x: Tensor | SparseFeatures) -> np.ndarray:
        """Output codes ``[N, C]`` (int64) of the last layer's update quantizer."""
        self.trace = {}
        if self.kind == "decoupled":
            h: Any = x
            for lay in self.layers[: self.num_mlp]:
                h = lay.forward(h)
                self.trace.update(lay.trace)
            z = h
            state: tuple[float, float] | None = None
            self.smp_trace = []
            for lay in self.layers[self.num_mlp:]:
                if isinstance(lay, IntSMPPropagation):
                    if state is None:
                        state = (lay.c.lambda0, lay.c.slack0)
                    lay.reset(*state)
                    z = lay.forward(z, h)
                    state = (lay.lam, lay.slack)
                    self.smp_trace.append(state)
                else:
                    assert isinstance(lay, IntPropagation)
                    z = lay.forward(z, h)
                self.trace.update(lay.trace)
            return np.asarray(z)
        out: Any = x
        for lay in self.layers:
            out = lay.forward(out)
            self.trace.update(lay.trace)
        return np.asarray(out)

    def predict(self, x: Tensor | SparseFeatures) -> np.ndarray:
        """Class predictions ``[N]``: argmax of the output codes (per-tensor scale, so the
        order of codes is the order of real values)."""
        codes = self.forward(x)
        if not self.output.per_tensor:
            return np.argmax(self.output.dequantize(codes), axis=1)
        return np.argmax(codes, axis=1)

    def stages(self) -> list[AggregationStage | MixedAggregationStage]:
        """Aggregation stages of the last forward pass, in order (mixed-width stages for a
        model with node buckets)."""
        return [st for lay in self.layers for st in lay.stages]


@torch.no_grad()
def to_integer(model: QuantGNN, data: Any, mult_bits: int = rules.DEFAULT_MULT_BITS) -> IntegerModel:
    """Convert a trained (calibrated) quantized model into an :class:`IntegerModel` for ``data``.

    ``mult_bits`` is the width of the aggregation datapath's per-node multipliers.
    A GCN whose roles follow degree-aware node buckets (per-node widths,
    :mod:`model.quant.node_precision`) becomes :class:`IntMixedGCN` layers with mixed-width
    aggregation stages. Raises :class:`IntegerConversionError` for FP32 roles, per-node
    quantizers, node buckets in a model other than a GCN, activations other than ReLU, or
    model types without an integer form.
    """
    bucketed = [q.name or "?" for q in node_quantizers(model)]
    if bucketed and isinstance(model, QConvStack) and all(
            type(c) is QGCNConv for c in model.convs):
        return _to_integer_mixed_gcn(model, data, mult_bits)
    if bucketed:
        raise IntegerConversionError(
            "per-node widths are not supported by the integer path yet (degree-aware node "
            f"buckets have no integer-only form): {len(bucketed)} quantizer(s) follow node "
            f"buckets ({', '.join(bucketed[:3])}"
            f"{', ...' if len(bucketed) > 3 else ''}) of a {type(model).__name__} "
            f"({', '.join(sorted({type(c).__name__ for c in getattr(model, 'convs', [])}))}); "
            "only GCN models have a mixed-width integer form")
    model.eval()
    g = graph_ops(data)
    layers: list[IntLayer] = []
    prev: QParams | None = None
    if isinstance(model, QConvStack):
        kinds: dict[type, tuple[Any, str]] = {
            QGCNConv: (IntGCN, "gcn"), QGINConv: (IntGIN, "gin"), QSAGEConv: (IntSAGE, "sage"),
        }
        kind = ""
        for i, conv in enumerate(model.convs):
            entry = kinds.get(type(conv))
            if entry is None:
                raise IntegerConversionError(f"layer {i}: {type(conv).__name__} has no integer form")
            cls, kind = entry
            lay = cls(model, conv, g, prev, mult_bits, f"layer{i}")
            layers.append(lay)
            prev = lay.upd
        assert prev is not None
        return IntegerModel(kind, layers, prev, mult_bits)
    if isinstance(model, QDecoupled):
        for i, lin in enumerate(model.mlp):
            assert isinstance(lin, QLinear)
            lay = IntLinear(model, lin, prev, f"layer{i}")
            layers.append(lay)
            prev = lay.upd
        assert prev is not None
        teleport = prev
        for k, prop in enumerate(model.props):
            name = f"layer{len(model.mlp) + k}"
            step: IntLayer
            if type(prop) is QPropagation:
                step = IntPropagation(model, prop, g, prev, teleport, mult_bits, name)
            elif type(prop) is QSMPPropagation:
                step = IntSMPPropagation(model, prop, g, prev, teleport, mult_bits, name)
            else:
                raise IntegerConversionError(f"propagation step {k}: {type(prop).__name__} has no integer form")
            layers.append(step)
            prev = step.upd
        return IntegerModel("decoupled", layers, prev, mult_bits, num_mlp=len(model.mlp))
    raise IntegerConversionError(f"{type(model).__name__} has no integer form")


def _to_integer_mixed_gcn(model: QConvStack, data: Any, mult_bits: int) -> IntegerModel:
    """:func:`to_integer` for a GCN with node buckets: every layer an :class:`IntMixedGCN`."""
    model.eval()
    g = graph_ops(data)
    layers: list[IntLayer] = []
    prev: NodeQParams | None = None
    for i, conv in enumerate(model.convs):
        assert isinstance(conv, QGCNConv)
        lay = IntMixedGCN(model, conv, g, prev, mult_bits, f"layer{i}")
        layers.append(lay)
        prev = lay.upd_q
    last = layers[-1]
    assert isinstance(last, IntMixedGCN)
    return IntegerModel("gcn", layers, last.upd, mult_bits)


def model_input(data: Any) -> Tensor | SparseFeatures:
    """The raw model input of ``data`` as the float model sees it (sparse when sparse)."""
    return cached_model_input(data)


__all__ = ["IntMixedGCN", "IntegerConversionError", "IntegerModel", "NodeQParams", "model_input",
           "to_integer"]
