"""Conversion of a trained quantized model into an integer-only model, bound to one graph.

``to_integer(model, data)`` reads every quantizer's integer form and every real factor
(scales, GCN's D^-1/2, SAGE's 1/deg, biases) once and turns them into integer multipliers and
shifts. ``IntegerModel.forward()`` then runs on integer codes and int64 accumulators only;
the only float step is quantizing the raw input features (the model's input boundary).

Aggregation is done by :class:`~model.golden.stage.AggregationStage`, exactly as the hardware
does it: a pure sum of unsigned message codes per destination node, the zero point and the
per-node factor applied once per output (source-side D^-1/2 is folded into the message
requantization, destination-side into the aggregation's multiplier).

A model whose roles follow degree-aware node buckets (per-node widths) converts to mixed-width
layers (GCN, GIN, SAGE, and the decoupled model's MLP and APPNP/SMP steps): row-wise steps run
per group of rows sharing their buckets, with the same :class:`Requant` rules, and every
aggregation is a :class:`~model.golden.mixed_stage.MixedAggregationStage` (bucket weights
``R[k]``, see :class:`MixedAggregationSpec`). Traces are recorded per bucket.

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

from ..golden.mixed_stage import DEFAULT_R_BITS, MixedAggregationStage, weighted_acc_width
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
from ..quant.node_precision import NodeBucketQuantizer, bind_graph, node_quantizers
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
        agg = aggregate
        grid = agg.grid_max if agg.grid_max is not None else agg.qmax - agg.qmin
        factor = _capped_factor(factor, grid, mult_bits)  # exact: see _capped_factor
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
#: Recycled int64 results of :func:`_quantize_real` (fresh 32 MiB arrays cost page faults).
_QUANT_POOL = kernels.ResultPool()


def _quantize_real(x: np.ndarray, qp: QParams) -> np.ndarray:
    """The float boundary: raw features to codes, with the fake quantizer's rule."""
    xf = np.asarray(x, dtype=np.float32)
    inv = (np.float32(1.0) / qp.scale.astype(np.float32)).astype(np.float32)
    lo, hi = qp.grid_range
    if kernels.use_reference():
        return qp.snap(np.clip(np.rint(xf * inv).astype(np.int64) + qp.zero, lo, hi))
    shape = np.broadcast_shapes(xf.shape, inv.shape)
    zero = np.asarray(qp.zero, dtype=np.int64)
    if xf.ndim == 2 and xf.shape == shape and inv.ndim <= 1 and zero.ndim <= 1:
        # block by block (each block's steps in cache) into a recycled result array
        c = _QUANT_POOL.get(shape, np.int64)
        for r0, r1 in kernels.row_blocks(shape[0], shape[1]):
            t = _QUANT_WS.get("xb", (r1 - r0, shape[1]), np.float32)
            np.multiply(xf[r0:r1], inv, out=t)
            np.rint(t, out=t)
            cb = c[r0:r1]
            np.copyto(cb, t, casting="unsafe")  # as t.astype(np.int64)
            np.add(cb, zero, out=cb)
            np.clip(cb, lo, hi, out=cb)
        return qp.snap(c)
    t = _QUANT_WS.get("x", shape, np.float32)
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
# degree-aware node buckets (per-node widths): GCN, GIN, SAGE, decoupled (MLP + APPNP or SMP)
# --------------------------------------------------------------------------------------------
class NodeQParams:
    """Per-node quantizer parameters of one role: the bucket of every node and the
    :class:`QParams` of every bucket (one bucket for a role without node buckets).

    Codes of node ``i`` stand for ``(codes - zero_k) * scale_k`` with ``k = assign[i]``: every
    row has one per-tensor scale and zero point, rows of different buckets different ones."""

    def __init__(self, model: torch.nn.Module, q: Any, n: int) -> None:
        if isinstance(q, NodeBucketQuantizer):
            assign = q.assignment().cpu().numpy().astype(np.int64).reshape(-1)
            qps = [_qp(model, b) for b in q.buckets]
        else:
            assign = np.zeros(n, dtype=np.int64)
            qps = [_qp(model, q)]
        self._init(assign, qps, n)

    @classmethod
    def of(cls, assign: np.ndarray, qps: list[QParams]) -> NodeQParams:
        """From a bucket table (int64 ``[N]``) and one :class:`QParams` per bucket."""
        self = cls.__new__(cls)
        a = np.asarray(assign, dtype=np.int64).reshape(-1)
        self._init(a, list(qps), a.size)
        return self

    def _init(self, assign: np.ndarray, qps: list[QParams], n: int) -> None:
        assign = np.array(assign, dtype=np.int64)  # its own copy, read-only: the row groups
        assign.flags.writeable = False             # of _bucket_groups are cached from it
        self.assign, self.qps = assign, qps
        if self.assign.shape != (n,):
            raise IntegerConversionError(f"{self.qps[0].name}: node buckets are bound to a graph "
                                         f"of {self.assign.size} nodes, not {n}")
        if n and (self.assign.min() < 0 or self.assign.max() >= len(qps)):
            raise IntegerConversionError(f"{self.qps[0].name}: bucket table values must be in "
                                         f"0..{len(qps) - 1}")
        for qp in self.qps:
            if not qp.per_tensor or qp.truncated:
                raise IntegerConversionError(
                    f"{qp.name}: per-node widths need per-tensor, not bit-truncated quantizers "
                    "in every bucket")

    @property
    def bucketed(self) -> bool:
        return len(self.qps) > 1

    def rows(self) -> Iterator[tuple[np.ndarray, QParams]]:
        """The (non-empty) rows of every bucket, ascending, with its parameters."""
        for k, qp in enumerate(self.qps):
            r = np.flatnonzero(self.assign == k)
            if r.size:
                yield r, qp

    def per_node(self, values: list[Any]) -> np.ndarray:
        """``values[assign[i]]`` for every node ``i`` (``[N]``)."""
        return np.asarray(values)[self.assign]

    def scales(self) -> np.ndarray:
        """Step of every node's row (float64 ``[N]``)."""
        return self.per_node([float(qp.scale) for qp in self.qps]).astype(np.float64)

    def offsets(self) -> np.ndarray:
        """Offset-binary shift ``-qmin`` of every node's row (int64 ``[N]``; 0 if unsigned)."""
        return self.per_node([-qp.qmin for qp in self.qps]).astype(np.int64)

    def centred(self, codes: np.ndarray) -> np.ndarray:
        """``codes - zero_k`` row by row (int64, a new array): values in steps of the row's
        bucket."""
        c = np.asarray(codes, dtype=np.int64)
        return c - self.per_node([int(qp.zero) for qp in self.qps]).astype(np.int64)[:, None]


def _bucket_groups(*qs: NodeQParams) -> Iterator[tuple[np.ndarray, list[QParams]]]:
    """Rows sharing one bucket in every role of ``qs``, with those buckets' parameters, in
    ascending order of the bucket combination (the first role's bucket most significant)."""
    for rows, combo in _row_groups(*qs):
        yield rows, [q.qps[c] for q, c in zip(qs, combo, strict=True)]


def _row_groups(*qs: NodeQParams) -> list[tuple[np.ndarray, tuple[int, ...]]]:
    """``(rows, bucket of each role)`` for every combination of buckets that some row has: the
    bucket tables combined into one mixed-radix key per row and grouped by one stable sort
    (rows ascending in each group; read-only). Cached on the last role (the target of a
    requantization, which lives as long as its layer) per tuple of the roles' bucket tables:
    they are read-only, so their identity fixes their contents."""
    tables = tuple(q.assign for q in qs)
    ident = tuple(id(t) for t in tables)
    cache: dict = qs[-1].__dict__.setdefault("_row_groups", {})
    hit = cache.get(ident)
    if hit is not None and all(a is b for a, b in zip(hit[0], tables, strict=True)):
        return hit[1]
    radix = [len(q.qps) for q in qs]
    key = np.zeros(tables[0].shape[0], dtype=np.int64)
    for t, r in zip(tables, radix, strict=True):
        key = key * r + t  # < prod(radix): a handful of buckets per role
    order = np.argsort(key, kind="stable")
    ks = key[order]
    cuts = np.flatnonzero(np.diff(ks)) + 1
    groups = []
    for rows in np.split(order, cuts):
        if rows.size == 0:
            continue
        k = int(key[rows[0]])
        combo = []
        for r in reversed(radix):
            combo.append(k % r)
            k //= r
        rows.flags.writeable = False
        groups.append((rows, tuple(reversed(combo))))
    if all(not t.flags.writeable for t in tables):
        cache[ident] = (tables, groups)
    return groups


#: One term of a row-wise requantization: ``(source, values, extra)`` -- ``values`` (int64
#: ``[N, F]``) in steps of the source's bucket of each row times ``extra`` (a scalar, a
#: per-channel ``[F]`` array, or a per-node ``[N, 1]`` column).
NodeTerm = tuple[NodeQParams, np.ndarray, Any]


def _requant_nodes(dst: NodeQParams, terms: list[NodeTerm], bias: np.ndarray | None = None,
                   relu: bool = False) -> np.ndarray:
    """Codes of ``dst`` (int64 ``[N, F]``) of ``clamp(round(sum_t v_t s_t extra_t / s_dst [+ b]
    [relu]) + z_dst)``, each group of rows sharing every bucket (sources and target) with one
    :class:`Requant` of those buckets' steps (the uniform path's rules, overflow checks and
    errors). A negative ``extra`` (one sign over all rows) multiplies the negated values
    (requantization multipliers are unsigned)."""
    n, f = terms[0][1].shape
    out = np.zeros((n, f), dtype=np.int64)
    for rows, qps in _bucket_groups(*(t[0] for t in terms), dst):
        b = qps[-1]
        reals = []
        for a, (_, _, extra) in zip(qps, terms, strict=False):
            e = np.asarray(extra, dtype=np.float64)
            reals.append(a.scale * (e[rows] if e.ndim == 2 and e.shape[0] == n else e) / b.scale)
        factors, signs = _signed_terms(reals)
        rq = Requant.build(factors, b, bias=bias, relu=relu)
        out[rows] = rq(*(v[rows] if sg == 1 else -v[rows]
                         for (_, v, _), sg in zip(terms, signs, strict=True)))
    return out


def _dense_input(x: Any) -> np.ndarray:
    if isinstance(x, SparseFeatures):
        crow = x.pattern.crow.cpu().numpy()
        col = x.pattern.col.cpu().numpy()
        vals = x.values.detach().cpu().numpy()
        return np.asarray(sp.csr_matrix((vals, col, crow), shape=x.shape).toarray())
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _capped_factor(factor: np.ndarray, grid: np.ndarray | int, mult_bits: int) -> np.ndarray:
    """Aggregation factors above the largest multiplier, capped where that is exact.

    A factor too large for the multiplier (an aggregate range far narrower than one message
    step) saturates every output with ``c != 0`` whether it is applied exactly or as the largest
    multiplier, as long as that multiplier alone exceeds twice the output range (``grid`` codes,
    per row or one for all); ``c = 0`` gives ``z_out`` either way. So cap it there: the outputs
    are identical. Elsewhere the factor is kept (and :func:`rules.multiplier_shift` refuses it).
    """
    m_max = float((1 << mult_bits) - 1)
    f = np.asarray(factor, dtype=np.float64)
    ok = m_max >= 2 * (np.asarray(grid, dtype=np.float64) + 1)
    return np.where((f > m_max) & ok, m_max, f)


@dataclass
class MixedAggregationSpec:
    """One aggregation whose message and aggregate roles follow node buckets.

    Message bucket ``k`` (step ``s_k``) gets the integer weight ``R[k] = round(s_k / s_c)``
    (``r_bits`` wide) with the common step ``s_c = max_k s_k / (2**r_bits - 1)`` (relative
    error at most ``1 / (2 R[k])``), and destination row ``i`` the multiplier/shift of
    ``s_c * dest_factor_i / s_agg[k(i)]`` (its aggregate bucket). The hardware stage is a
    :class:`~model.golden.mixed_stage.MixedAggregationStage`; its accumulator, corrected-sum
    and product widths are derived from the CSR and ``R`` and bounded at conversion.
    """

    name: str
    indptr: np.ndarray
    indices: np.ndarray
    message: NodeQParams
    aggregate: NodeQParams
    common_step: float
    weight: tuple[int, ...]
    multiplier: np.ndarray
    shift: np.ndarray
    r_bits: int
    mult_bits: int

    @classmethod
    def build(cls, name: str, indptr: Tensor | np.ndarray, indices: Tensor | np.ndarray,
              message: NodeQParams, aggregate: NodeQParams, dest_factor: np.ndarray,
              mult_bits: int, r_bits: int = DEFAULT_R_BITS) -> MixedAggregationSpec:
        """Raises :class:`IntegerConversionError` (naming the bucket quantizer or the stage
        field) for a bucket width the datapath lacks, a message step too fine for an
        ``r_bits``-bit weight, a factor too large for the multiplier, or a product wider than
        :data:`~model.integer.rules.MAX_PRODUCT_WIDTH` bits."""
        for qp in (*message.qps, *aggregate.qps):
            if qp.bits not in rules.HW_BITS:
                raise IntegerConversionError(f"{qp.name}: {qp.bits}-bit aggregation buckets "
                                             f"not supported; allowed: {rules.HW_BITS}")
        ip = np.asarray(indptr.cpu().numpy() if isinstance(indptr, Tensor) else indptr,
                        dtype=np.int64)
        ix = np.asarray(indices.cpu().numpy() if isinstance(indices, Tensor) else indices,
                        dtype=np.int64)
        steps = np.array([float(qp.scale) for qp in message.qps], dtype=np.float64)
        if not np.all(np.isfinite(steps) & (steps > 0)):
            raise IntegerConversionError(f"{name}.weight: message bucket steps must be finite "
                                         f"and positive, got {steps.tolist()}")
        r_max = (1 << r_bits) - 1
        common = float(steps.max()) / r_max
        ratio = steps / common
        weight = np.floor(ratio + 0.5)  # round half up, as every rounding of the integer path
        for k, (qp, r) in enumerate(zip(message.qps, weight, strict=True)):
            if r < 1:
                raise IntegerConversionError(
                    f"{name}.weight: R[{k}] of message bucket {qp.name} (step {steps[k]:.6g}) "
                    f"rounds to 0: the step is more than {2 * r_max} times finer than the "
                    f"coarsest bucket's ({steps.max():.6g}), so it has no {r_bits}-bit weight "
                    f"relative to the common step s_c = max s_k / {r_max}")
        w = tuple(int(r) for r in weight)
        max_terms = int(np.diff(ip).max(initial=0))
        max_weight = max(r * ((1 << qp.bits) - 1) for r, qp in zip(w, message.qps, strict=True))
        width = weighted_acc_width(max_terms, max_weight) + 1 + mult_bits
        if width > rules.MAX_PRODUCT_WIDTH:
            raise IntegerConversionError(
                f"{name}.product_width: {max_terms} terms of weighted codes up to {max_weight} "
                f"need a {width}-bit product with {mult_bits}-bit multipliers; at most "
                f"{rules.MAX_PRODUCT_WIDTH} bits are supported")
        s_agg = aggregate.scales()
        factor = common * np.asarray(dest_factor, dtype=np.float64).reshape(-1) / s_agg
        grid = aggregate.per_node([qp.qmax - qp.qmin for qp in aggregate.qps])
        factor = _capped_factor(factor, grid, mult_bits)
        try:
            m, s = rules.multiplier_shift(factor, mult_bits)
        except ValueError as e:
            raise IntegerConversionError(f"{name}.multiplier: {e}") from None
        return cls(name, ip, ix, message, aggregate, common, w, m, s, r_bits, mult_bits)

    def stage(self, message_codes: np.ndarray, word_width: int = 64) -> MixedAggregationStage:
        """The mixed-width hardware stage for these message codes (offset binary codes)."""
        mq, aq = self.message, self.aggregate
        off_in = [-qp.qmin for qp in mq.qps]
        off_out = [-qp.qmin for qp in aq.qps]
        return MixedAggregationStage(
            name=self.name, indptr=self.indptr, indices=self.indices,
            codes=message_codes + mq.offsets()[:, None],
            src_bucket=mq.assign, bits_in=tuple(qp.bits for qp in mq.qps),
            z_in=tuple(int(qp.zero) + o for qp, o in zip(mq.qps, off_in, strict=True)),
            weight=self.weight, dst_bucket=aq.assign, out_bits=tuple(qp.bits for qp in aq.qps),
            z_out=tuple(int(qp.zero) + o for qp, o in zip(aq.qps, off_out, strict=True)),
            multiplier=self.multiplier, shift=self.shift, r_bits=self.r_bits,
            mult_bits=self.mult_bits, word_width=word_width,
            meta={"common_step": self.common_step,
                  "message_scales": [float(qp.scale) for qp in mq.qps],
                  "aggregate_scales": [float(qp.scale) for qp in aq.qps]})

    def run(self, message_codes: np.ndarray) -> tuple[np.ndarray, MixedAggregationStage]:
        """Aggregate codes (each row in its aggregate bucket's code range) and the stage."""
        out, st, _ = self.run_with_corrected(message_codes)
        return out, st

    def run_with_corrected(self, message_codes: np.ndarray
                           ) -> tuple[np.ndarray, MixedAggregationStage, np.ndarray]:
        """:meth:`run`, plus the corrected sums ``C = acc - corr`` (int64 ``[N, F]``, in units
        of :attr:`common_step`)."""
        st = self.stage(message_codes)
        if kernels.use_reference():
            c, y = st.compute()
        else:
            c = self._corrected(st)
            y = st.requantize(c)
        return y - self.aggregate.offsets()[:, None], st, c

    def _corrected(self, st: MixedAggregationStage) -> np.ndarray:
        """:meth:`MixedAggregationStage.corrected` of ``st`` (a stage of this spec), vectorised:
        the same accumulator check, the weighted sums on the spec's cached CSR
        (:class:`~model.integer.kernels.CSRSum`: exact, narrow accumulators where they provably
        fit) and the correction from the per-row bucket term counts, counted once per (read-only)
        message bucket table."""
        st.check_accumulator()
        cache = self.__dict__.setdefault("_fast", {})
        csr = cache.get("csr")
        if csr is None or csr.num_src != st.codes.shape[0]:
            csr = cache["csr"] = kernels.CSRSum(self.indptr, self.indices, st.codes.shape[0])
        src = st.src_bucket
        held = cache.get("bucket_terms")
        if held is None or held[0] is not src or src.flags.writeable:
            held = cache["bucket_terms"] = (src, st.bucket_terms())
        r = np.asarray(st.weight, dtype=np.int64)
        acc = csr.sum(st.codes * r[src][:, None])
        rz = r * np.asarray(st.z_in, dtype=np.int64)
        np.subtract(acc, (held[1] @ rz)[:, None], out=acc)
        return acc


class IntMixedLayer(IntLayer):
    """Base of the layers whose per-node roles follow node buckets (per-node widths).

    Every row-wise step (input quantization or requantization, matmuls, requantizations) runs
    per group of rows sharing their buckets, with those buckets' quantizers
    (:func:`_requant_nodes`); aggregations are :class:`MixedAggregationSpec` stages. Traces are
    recorded per bucket: ``trace[name]`` holds the codes of that bucket's rows (ascending node
    order, the rows the bucket's fake quantizer sees) and its :class:`QParams`; a role without
    buckets records all rows under its own name, as in the uniform path.
    """

    upd_q: NodeQParams

    def __init__(self, g: GraphOps, prev: NodeQParams | None, mult_bits: int, name: str,
                 r_bits: int) -> None:
        super().__init__()
        self.n, self.name, self.mult_bits, self.r_bits = int(g.num_nodes), name, mult_bits, r_bits
        self.prev = prev

    def _nq(self, model: torch.nn.Module, q: Any) -> NodeQParams:
        return NodeQParams(model, q, self.n)

    def _set_update(self, upd_q: NodeQParams) -> None:
        self.upd_q = upd_q
        self.upd = upd_q.qps[0]

    def _rec_nodes(self, nq: NodeQParams, codes: np.ndarray) -> np.ndarray:
        for rows, qp in nq.rows():
            self.trace[qp.name] = (codes if rows.size == codes.shape[0] else codes[rows], qp)
        return codes

    def _input(self, x: Any, inp: NodeQParams, implicit_zeros: bool) -> np.ndarray:
        """Centred input codes (int64 ``[N, F]``): raw features quantized by each row's input
        bucket (the float boundary) or the previous layer's codes requantized. With
        ``implicit_zeros`` (the fake-quant layer multiplies a sparse input without quantizing
        its implicit zeros) a bucket whose real 0 is not level 0 is an error."""
        if self.prev is None:
            xd = _dense_input(x)
            codes = np.zeros(xd.shape, dtype=np.int64)
            for rows, b in inp.rows():
                if implicit_zeros and isinstance(x, SparseFeatures) and int(
                        b.centred(_quantize_real(np.zeros(1), b))[0]) != 0:
                    raise IntegerConversionError(
                        f"{b.name}: real 0 quantizes to a non-zero level, so a sparse input's "
                        "implicit zeros would change (use a dense input)")
                codes[rows] = _quantize_real(xd[rows], b)
        else:
            h = np.asarray(x, dtype=np.int64)
            codes = _requant_nodes(inp, [(self.prev, self.prev.centred(h), 1.0)])
        self._rec_nodes(inp, codes)
        return inp.centred(codes)

    def _mm(self, xc: np.ndarray, w: np.ndarray, wq: QParams) -> np.ndarray:
        """``xc @ centred(w).T`` (exact, int64; :func:`int_matmul`); records the weights."""
        self._rec(wq, w)
        return np.asarray(int_matmul(xc, wq.centred(w)), dtype=np.int64)

    def _aggregate_nodes(self, spec: MixedAggregationSpec, m: np.ndarray) -> np.ndarray:
        """Run a mixed aggregation on message codes; record the stage and the codes."""
        self._rec_nodes(spec.message, m)
        a, st = spec.run(m)
        self.stages.append(st)
        return self._rec_nodes(spec.aggregate, a)

    def _aggregate_first(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Aggregate-first layers (GIN, SAGE): input codes -> messages ``q.message(x_j)`` ->
        aggregate codes. Returns the centred input codes and the aggregate codes. (These
        fake-quant layers densify their input, so a sparse input's zeros are quantized.)"""
        self.stages = []
        xc = self._input(x, self.inp_q, implicit_zeros=False)
        m = _requant_nodes(self.msg_q, [(self.inp_q, xc, 1.0)])
        return xc, self._aggregate_nodes(self.agg_mixed, m)

    def _update(self, src: NodeQParams, codes: np.ndarray) -> np.ndarray:
        """Update codes of ``act(value + bias)`` for ``codes`` of ``src`` (the layer's
        ``bias`` and ReLU flag)."""
        u = _requant_nodes(self.upd_q, [(src, src.centred(codes), 1.0)], bias=self.bias,
                           relu=self.relu)
        return self._rec_nodes(self.upd_q, u)

    def stage(self, message_codes: np.ndarray, word_width: int = 64) -> MixedAggregationStage:
        """The mixed-width hardware stage of this layer's aggregation for these message
        codes."""
        return self.agg_mixed.stage(message_codes, word_width)

    agg_mixed: MixedAggregationSpec
    inp_q: NodeQParams
    msg_q: NodeQParams
    bias: np.ndarray | None
    relu: bool


class IntMixedLinear(IntMixedLayer):
    """``q.update(act(q.output(q.input(x) @ W.T) + b))`` with bucketed roles (the decoupled
    model's MLP layers, and the combination half of a GCN layer)."""

    def __init__(self, model: QuantGNN, q: Any, lin: torch.nn.Linear, bias: Tensor | None,
                 act: Callable[[Tensor], Tensor] | None, g: GraphOps, prev: NodeQParams | None,
                 mult_bits: int, name: str, r_bits: int = DEFAULT_R_BITS) -> None:
        super().__init__(g, prev, mult_bits, name, r_bits)
        self.inp_q = self._nq(model, q.input)
        self.w, self.wq = _weight_codes(model, q.weight, lin.weight)
        self.out_q = self._nq(model, q.output)
        self._set_update(self._nq(model, q.update))
        self.bias = None if bias is None else bias.detach().cpu().numpy().astype(np.float64)
        self.relu = _act_is_relu(act, name)

    def _combine(self, x: Any) -> np.ndarray:
        """Output codes of ``q.input(x) @ W.T`` (int64 ``[N, C]``)."""
        acc = self._mm(self._input(x, self.inp_q, implicit_zeros=True), self.w, self.wq)
        return self._rec_nodes(self.out_q, _requant_nodes(self.out_q,
                                                          [(self.inp_q, acc, self.wq.scale)]))

    @classmethod
    def of(cls, model: QuantGNN, lin: QLinear, g: GraphOps, prev: NodeQParams | None,
           mult_bits: int, name: str) -> IntMixedLinear:
        """The integer form of a :class:`~model.nn.linear.QLinear`."""
        return cls(model, lin.q, lin.lin, lin.lin.bias, lin.act, g, prev, mult_bits, name)

    def forward(self, x: Any) -> np.ndarray:
        self.stages = []
        return self._update(self.out_q, self._combine(x))


class IntMixedGCN(IntMixedLinear):
    """A GCN layer whose per-node roles follow node buckets (per-node widths): the bucketed
    combination ``q.output(q.input(x) @ W.T)`` (:class:`IntMixedLinear`), messages
    ``d_j^-1/2 o_j`` per source bucket, a :class:`MixedAggregationSpec` with destination factor
    ``d_i^-1/2``, and the update."""

    def __init__(self, model: QuantGNN, conv: QGCNConv, g: GraphOps, prev: NodeQParams | None,
                 mult_bits: int, name: str, r_bits: int = DEFAULT_R_BITS) -> None:
        q = conv.q
        super().__init__(model, q, conv.lin, conv.bias, conv.act, g, prev, mult_bits, name,
                         r_bits)
        self.msg_q = self._nq(model, q.message)
        self.agg_nq = self._nq(model, q.aggregate)
        self.dinv = _col(g.dinv_sqrt)
        self.agg_mixed = MixedAggregationSpec.build(
            f"{name}.aggregate", g.indptr, g.indices, self.msg_q, self.agg_nq, self.dinv,
            mult_bits, r_bits)

    def forward(self, x: Any) -> np.ndarray:
        self.stages = []
        o = self._combine(x)
        m = _requant_nodes(self.msg_q, [(self.out_q, self.out_q.centred(o), self.dinv)])
        return self._update(self.agg_nq, self._aggregate_nodes(self.agg_mixed, m))


class IntMixedGIN(IntMixedLayer):
    """A GIN-0 layer with bucketed roles: messages ``q.message(x_j)`` per source bucket, a
    :class:`MixedAggregationSpec` with destination factor 1, then the two-linear MLP (both
    linears' roles per bucket) and the update."""

    def __init__(self, model: QuantGNN, conv: QGINConv, g: GraphOps, prev: NodeQParams | None,
                 mult_bits: int, name: str, r_bits: int = DEFAULT_R_BITS) -> None:
        super().__init__(g, prev, mult_bits, name, r_bits)
        q, q2 = conv.q, conv.q2
        self.inp_q = self._nq(model, q.input)
        self.msg_q = self._nq(model, q.message)
        self.agg_nq = self._nq(model, q.aggregate)
        self.out_q = self._nq(model, q.output)
        self.in2_q = self._nq(model, q2.input)
        self.out2_q = self._nq(model, q2.output)
        self._set_update(self._nq(model, q.update))
        self.w1, self.wq1 = _weight_codes(model, q.weight, conv.lin1.weight)
        self.w2, self.wq2 = _weight_codes(model, q2.weight, conv.lin2.weight)
        self.b1 = conv.lin1.bias.detach().cpu().numpy().astype(np.float64)
        self.bias = conv.lin2.bias.detach().cpu().numpy().astype(np.float64)
        self.relu = _act_is_relu(conv.act, name)
        self.agg_mixed = MixedAggregationSpec.build(
            f"{name}.aggregate", g.indptr, g.indices, self.msg_q, self.agg_nq,
            np.ones(self.n), mult_bits, r_bits)

    def forward(self, x: Any) -> np.ndarray:
        _, a = self._aggregate_first(x)
        acc1 = self._mm(self.agg_nq.centred(a), self.w1, self.wq1)
        h = self._rec_nodes(self.out_q, _requant_nodes(
            self.out_q, [(self.agg_nq, acc1, self.wq1.scale)], bias=self.b1))
        x2 = self._rec_nodes(self.in2_q, _requant_nodes(
            self.in2_q, [(self.out_q, self.out_q.centred(h), 1.0)], relu=True))
        acc2 = self._mm(self.in2_q.centred(x2), self.w2, self.wq2)
        o = self._rec_nodes(self.out2_q, _requant_nodes(
            self.out2_q, [(self.in2_q, acc2, self.wq2.scale)]))
        return self._update(self.out2_q, o)


class IntMixedSAGE(IntMixedLayer):
    """A GraphSAGE (mean) layer with bucketed roles: messages ``q.message(x_j)`` per source
    bucket, a :class:`MixedAggregationSpec` on the CSR without self-loops with destination
    factor ``1 / |N(i)|`` (0 for isolated nodes), then ``a W_l.T + x W_r.T`` as a two-term
    requantization per group of (aggregate, input, output) buckets, and the update."""

    def __init__(self, model: QuantGNN, conv: QSAGEConv, g: GraphOps, prev: NodeQParams | None,
                 mult_bits: int, name: str, r_bits: int = DEFAULT_R_BITS) -> None:
        super().__init__(g, prev, mult_bits, name, r_bits)
        q = conv.q
        self.inp_q = self._nq(model, q.input)
        self.msg_q = self._nq(model, q.message)
        self.agg_nq = self._nq(model, q.aggregate)
        self.out_q = self._nq(model, q.output)
        self._set_update(self._nq(model, q.update))
        self.wl, self.wql = _weight_codes(model, q.weight, conv.lin_l.weight)
        self.wr, self.wqr = _weight_codes(model, conv.q_root_weight, conv.lin_r.weight)
        self.bias = conv.lin_l.bias.detach().cpu().numpy().astype(np.float64)
        self.relu = _act_is_relu(conv.act, name)
        pat = g.pattern_noloop
        self.agg_mixed = MixedAggregationSpec.build(
            f"{name}.aggregate", pat.crow, pat.col, self.msg_q, self.agg_nq,
            _col(g.inv_in_degree), mult_bits, r_bits)

    def forward(self, x: Any) -> np.ndarray:
        xc, a = self._aggregate_first(x)
        acc_l = self._mm(self.agg_nq.centred(a), self.wl, self.wql)
        acc_r = self._mm(xc, self.wr, self.wqr)
        h = self._rec_nodes(self.out_q, _requant_nodes(
            self.out_q, [(self.agg_nq, acc_l, self.wql.scale), (self.inp_q, acc_r, self.wqr.scale)]))
        return self._update(self.out_q, h)


class IntMixedPropagation(IntMixedLayer):
    """One APPNP step with bucketed roles: messages ``d_j^-1/2 z_j`` per source bucket, a
    :class:`MixedAggregationSpec` with destination factor ``d_i^-1/2``, and the update
    ``(1 - α) a_i + α h_i`` as a two-term requantization per group of (aggregate, teleport,
    update) buckets."""

    def __init__(self, model: QuantGNN, prop: QPropagation, g: GraphOps, prev: NodeQParams,
                 teleport: NodeQParams, mult_bits: int, name: str,
                 r_bits: int = DEFAULT_R_BITS) -> None:
        super().__init__(g, prev, mult_bits, name, r_bits)
        q = prop.q
        self.teleport = teleport
        self.alpha = float(prop.alpha)
        self.msg_q = self._nq(model, q.message)
        self.agg_nq = self._nq(model, q.aggregate)
        self._set_update(self._nq(model, q.update))
        self.dinv = _col(g.dinv_sqrt)
        self.agg_mixed = MixedAggregationSpec.build(
            f"{name}.aggregate", g.indptr, g.indices, self.msg_q, self.agg_nq, self.dinv,
            mult_bits, r_bits)

    def forward(self, z: np.ndarray, h: np.ndarray) -> np.ndarray:  # type: ignore[override]
        self.stages = []
        assert self.prev is not None
        m = _requant_nodes(self.msg_q, [(self.prev, self.prev.centred(z), self.dinv)])
        a = self._aggregate_nodes(self.agg_mixed, m)
        tel = self.teleport
        u = _requant_nodes(self.upd_q, [(self.agg_nq, self.agg_nq.centred(a), 1.0 - self.alpha),
                                        (tel, tel.centred(h), self.alpha)])
        return self._rec_nodes(self.upd_q, u)


class IntMixedSMPPropagation(IntMixedLayer):
    """One SMP step (:class:`IntSMPPropagation`) with bucketed roles.

    Two :class:`MixedAggregationSpec` stages on ``A + I`` (``Â z`` and the gap ``Â Δ``), the
    3-term gap-message and 4-term update requantizations per group of buckets, and the exact
    integer reduction ``T = sum R g~ (deg R g~ - C)`` with ``R g~`` the gap messages in units of
    the gap stage's common step ``s_c`` (``R = R[k(i)]``, ``g~`` centred codes) and ``C`` that
    stage's corrected sums: ``s_c**2 T`` is ``tr(Δ^T L~ Δ)`` of the quantized gap messages up to
    the weights' rounding (relative error at most ``1 / (2 R)`` per bucket). ``λ`` and the
    slack are updated in float64 from ``T``, as in the uniform step.
    """

    def __init__(self, model: QuantGNN, prop: Any, g: GraphOps, prev: NodeQParams,
                 teleport: NodeQParams, mult_bits: int, name: str,
                 r_bits: int = DEFAULT_R_BITS) -> None:
        super().__init__(g, prev, mult_bits, name, r_bits)
        q, qg, c = prop.q, prop.q_gap, prop.c
        self.c = c
        self.teleport = teleport
        self.msg_q = self._nq(model, q.message)
        self.agg_nq = self._nq(model, q.aggregate)
        self._set_update(self._nq(model, q.update))
        self.gmsg_q = self._nq(model, qg.message)
        self.gagg_q = self._nq(model, qg.aggregate)
        self.dinv = _col(g.dinv_sqrt)
        self.deg = g.deg_hat.cpu().numpy().astype(np.int64).reshape(-1, 1)
        self.nnz = float(g.indices.numel())
        self.agg_mixed = MixedAggregationSpec.build(
            f"{name}.aggregate", g.indptr, g.indices, self.msg_q, self.agg_nq, self.dinv,
            mult_bits, r_bits)
        self.gap_mixed = MixedAggregationSpec.build(
            f"{name}.gap_aggregate", g.indptr, g.indices, self.gmsg_q, self.gagg_q, self.dinv,
            mult_bits, r_bits)
        gap = self.gap_mixed
        # |R g~| <= W (the largest weighted code), |deg R g~ - C| <= 2 T W (deg = row length
        # T <= max_terms): one product of T is at most 2 T W**2
        w = max(r * ((1 << qp.bits) - 1) for r, qp in zip(gap.weight, self.gmsg_q.qps,
                                                          strict=True))
        t_max = int(np.diff(gap.indptr).max(initial=0))
        self._t_term_bound = 2 * max(t_max, 1) * w * w
        if self._t_term_bound >= 2**63:
            raise IntegerConversionError(
                f"{name}.gap_trace: a term of T = sum R g~ (deg R g~ - C) may reach "
                f"{self._t_term_bound} (rows of {t_max} terms, weighted codes up to {w}): "
                "beyond int64")
        self.lam = c.lambda0
        self.slack = c.slack0

    def reset(self, lam: float, slack: float) -> None:
        """Set the multiplier and slack entering this step."""
        self.lam, self.slack = float(lam), float(slack)

    def _gap_trace(self, gm: np.ndarray, corrected: np.ndarray) -> int:
        """``T = sum R g~ (deg R g~ - C)`` (exact: int64 terms bounded at conversion, int64
        row sums while ``F`` times that bound fits, Python integers across rows)."""
        r = np.asarray(self.gap_mixed.weight, dtype=np.int64)[self.gmsg_q.assign][:, None]
        gw = r * self.gmsg_q.centred(gm)
        prod = gw * (self.deg * gw - corrected)
        if prod.shape[1] * self._t_term_bound < 2**63:
            return int(np.sum(prod.sum(axis=1).astype(object)))
        return int(np.sum(prod.astype(object)))

    def forward(self, z: np.ndarray, h: np.ndarray) -> np.ndarray:  # type: ignore[override]
        self.stages = []
        assert self.prev is not None
        c, pz, ph, pa, pb = self.c, self.prev, self.teleport, self.agg_nq, self.gagg_q
        eta, mu, d = c.step, c.mu, self.dinv
        zc, hc = pz.centred(z), ph.centred(h)
        m = _requant_nodes(self.msg_q, [(pz, zc, d)])
        a = self._aggregate_nodes(self.agg_mixed, m)
        ac = pa.centred(a)
        gm = _requant_nodes(self.gmsg_q, [(ph, hc, eta * d), (pz, zc, -eta * (1.0 + mu) * d),
                                          (pa, ac, eta * mu * d)])
        self._rec_nodes(self.gmsg_q, gm)
        b, st, corrected = self.gap_mixed.run_with_corrected(gm)
        self.stages.append(st)
        self._rec_nodes(pb, b)
        t_int = self._gap_trace(gm, corrected)
        y = _requant_nodes(self.upd_q, [(pz, zc, 1.0 - eta * (1.0 + mu)), (pa, ac, eta * mu),
                                        (ph, hc, eta), (pb, pb.centred(b), 2.0 * eta * self.lam)])
        slack = self.slack + 2.0 * c.eta_slack * self.lam * self.slack
        trace = self.gap_mixed.common_step ** 2 * t_int
        self.lam = self.lam + c.eta_lambda * (c.bound * self.nnz - slack * slack - trace)
        self.slack = slack
        return self._rec_nodes(self.upd_q, y)


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
                if isinstance(lay, IntSMPPropagation | IntMixedSMPPropagation):
                    if state is None:
                        state = (lay.c.lambda0, lay.c.slack0)
                    lay.reset(*state)
                    z = lay.forward(z, h)
                    state = (lay.lam, lay.slack)
                    self.smp_trace.append(state)
                else:
                    assert isinstance(lay, IntPropagation | IntMixedPropagation)
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
    A model whose roles follow degree-aware node buckets (per-node widths,
    :mod:`model.quant.node_precision`) becomes mixed-width layers (:class:`IntMixedGCN`,
    :class:`IntMixedGIN`, :class:`IntMixedSAGE`; :class:`IntMixedLinear` and
    :class:`IntMixedPropagation` / :class:`IntMixedSMPPropagation` for the decoupled model)
    whose aggregations are mixed-width stages. Raises :class:`IntegerConversionError` for FP32
    roles, per-node quantizers, values without an integer form (each error names the
    quantizer or the stage field), activations other than ReLU, or model types without an
    integer form.
    """
    if next(iter(node_quantizers(model)), None) is not None:
        return _to_integer_mixed(model, data, mult_bits)
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


def _to_integer_mixed(model: QuantGNN, data: Any, mult_bits: int) -> IntegerModel:
    """:func:`to_integer` for a model with node buckets: mixed-width layers throughout (a
    layer without buckets is a one-bucket mixed layer). The buckets are bound to ``data``'s
    graph first, as the fake-quant model's forward pass does."""
    model.eval()
    g = graph_ops(data)
    bind_graph(model, g)
    layers: list[IntMixedLayer] = []
    prev: NodeQParams | None = None
    if isinstance(model, QConvStack):
        kinds: dict[type, tuple[Any, str]] = {
            QGCNConv: (IntMixedGCN, "gcn"), QGINConv: (IntMixedGIN, "gin"),
            QSAGEConv: (IntMixedSAGE, "sage"),
        }
        kind = ""
        for i, conv in enumerate(model.convs):
            entry = kinds.get(type(conv))
            if entry is None:
                raise IntegerConversionError(
                    f"layer {i}: {type(conv).__name__} with node buckets has no integer form")
            cls, kind = entry
            lay = cls(model, conv, g, prev, mult_bits, f"layer{i}")
            layers.append(lay)
            prev = lay.upd_q
        assert layers
        return IntegerModel(kind, list(layers), layers[-1].upd, mult_bits)
    if isinstance(model, QDecoupled):
        for i, lin in enumerate(model.mlp):
            assert isinstance(lin, QLinear)
            lay = IntMixedLinear.of(model, lin, g, prev, mult_bits, f"layer{i}")
            layers.append(lay)
            prev = lay.upd_q
        assert prev is not None
        teleport = prev
        for k, prop in enumerate(model.props):
            name = f"layer{len(model.mlp) + k}"
            step: IntMixedLayer
            if type(prop) is QPropagation:
                step = IntMixedPropagation(model, prop, g, prev, teleport, mult_bits, name)
            elif type(prop) is QSMPPropagation:
                step = IntMixedSMPPropagation(model, prop, g, prev, teleport, mult_bits, name)
            else:
                raise IntegerConversionError(
                    f"propagation step {k}: {type(prop).__name__} has no integer form")
            layers.append(step)
            prev = step.upd_q
        return IntegerModel("decoupled", list(layers), layers[-1].upd, mult_bits,
                            num_mlp=len(model.mlp))
    raise IntegerConversionError(f"{type(model).__name__} with node buckets has no integer form")


def model_input(data: Any) -> Tensor | SparseFeatures:
    """The raw model input of ``data`` as the float model sees it (sparse when sparse)."""
    return cached_model_input(data)


__all__ = ["IntMixedGCN", "IntMixedGIN", "IntMixedLayer", "IntMixedLinear", "IntMixedPropagation",
           "IntMixedSAGE", "IntMixedSMPPropagation", "IntegerConversionError", "IntegerModel", "MixedAggregationSpec",
           "NodeQParams", "model_input", "to_integer"]
