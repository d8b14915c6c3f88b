"""numba kernels of the compiled path (imported only by :mod:`ctrlprop.core.compiled`).

This module imports numba at the top: it is loaded lazily, and only when the extra
``ctrlprop[fast]`` is installed.  Every kernel runs the engine's plan as data -- the
level table, the block table and the transfer codes built by
:class:`ctrlprop.core.compiled.CompiledPlan` -- on the engine's own work arrays (unit-major,
``(rows, K)``), so a compiled pass leaves exactly the state a numpy pass leaves.

Notation (as in :mod:`ctrlprop.core.engine`): ``I`` holds the input units of a pass and
the bias row (``O~_0``), ``O`` the outputs of every level (level 0's rows unused),
``Z`` the activations of levels that keep them, ``G`` the cotangents ``dE/dO`` (level 0's
rows in ``GI``), ``WD`` the weight blocks, each dense and row-major at ``blk[k, WOFF]``.
For L = 1, 2, ...::

    Z_L = sum_l W_Ll O~_l,    O_L = h(Z_L)

and back, for L = top, ..., 1 (a level no output depends on is skipped)::

    D_L = h'(Z_L) G_L,    dE/dW_Ll = D_L O~_l^T,    G_l += W_Ll^T D_L
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

# level table columns
O_OFF, G_OFF, SIZE, Z_OFF, LIVE, OUT_LEVEL = range(6)
# block table columns
DST, SRC, WOFF, COLS, BIAS, TOFF = range(6)
# transfer codes (ctrlprop.core.compiled.TRANSFER_CODES)
LINEAR, TANH, LOGISTIC, RELU, SOFTPLUS, SIN = range(6)

# Reassociation lets LLVM vectorise the dot products (a different order of summation than
# BLAS's, within rounding); no assumption about NaN or infinity is made.  numpy's error
# model (x / 0 = inf, no exception check) keeps divisions vectorisable.  The scalar helpers
# are inlined into the loops that call them, so those loops vectorise too.
_FLAGS = dict(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
_jit = numba.njit(**_FLAGS)
_inline = numba.njit(inline="always", **_FLAGS)


@intrinsic
def _bits_to_float(typingctx, x):
    """The float64 whose bits are the int64 x."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00


# tanh without a libm call, so that a loop of it vectorises (libm's tanh is one call per
# element, 5-6x slower here); within 2 eps relative of np.tanh over the test's range, about
# 3 ulp at worst (tests/test_compiled.py), as accurate as the two-series form it replaced and
# 1.5x faster (one series, one division).  With y = 2|z| (clamped at 40):
#   y = k ln2 + r,  k = floor(y / ln2),  0 <= r < ln2  (Cody-Waite: ln2 in two parts)
#   expm1(r) = r q(r),  q the Taylor series of expm1(r) / r to r^16/17! (remainder below
#              1e-17 relative on [0, ln2)): every term positive, no cancellation
#   expm1(y) = 2^k expm1(r) + (2^k - 1): both terms non-negative, 2^k - 1 exact
#   tanh|z| = expm1(y) / (expm1(y) + 2): no cancellation anywhere; 1 for |z| > 19
@_inline
def tanh(z):
    a = abs(z)
    y = min(a + a, 40.0)
    k = int(y * _INV_LN2)
    r = (y - k * _LN2_HI) - k * _LN2_LO
    # Horner form written out: a loop here would keep the callers' loops scalar
    q = 1.0 + r * (1.0 / 17.0)
    q = 1.0 + r * (1.0 / 16.0) * q
    q = 1.0 + r * (1.0 / 15.0) * q
    q = 1.0 + r * (1.0 / 14.0) * q
    q = 1.0 + r * (1.0 / 13.0) * q
    q = 1.0 + r * (1.0 / 12.0) * q
    q = 1.0 + r * (1.0 / 11.0) * q
    q = 1.0 + r * (1.0 / 10.0) * q
    q = 1.0 + r * (1.0 / 9.0) * q
    q = 1.0 + r * (1.0 / 8.0) * q
    q = 1.0 + r * (1.0 / 7.0) * q
    q = 1.0 + r * (1.0 / 6.0) * q
    q = 1.0 + r * (1.0 / 5.0) * q
    q = 1.0 + r * (1.0 / 4.0) * q
    q = 1.0 + r * (1.0 / 3.0) * q
    q = 1.0 + r * (1.0 / 2.0) * q
    p2k = _bits_to_float((k + 1023) << 52)
    em1 = p2k * (r * q) + (p2k - 1.0)
    t = em1 / (em1 + 2.0)
    t = 1.0 if a > 19.0 else t
    t = math.copysign(t, z)                   # odd, -0.0 included (as np.tanh)
    return t if z == z else z


@_inline
def _logistic(z):
    e = math.exp(-abs(z))
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@_inline
def h(c, z):
    """Transfer c at z."""
    if c == TANH:
        return tanh(z)
    if c == LOGISTIC:
        return _logistic(z)
    if c == RELU:
        return 0.0 if z <= 0.0 else z           # NaN passes, as np.maximum(z, 0) keeps it
    if c == SOFTPLUS:
        return max(z, 0.0) + math.log1p(math.exp(-abs(z)))
    if c == SIN:
        return math.sin(z)
    return z


@_inline
def dh(c, z, o):
    """h'(z) of transfer c, from z or the output o."""
    if c == TANH:
        return 1.0 - o * o
    if c == LOGISTIC:
        return o * (1.0 - o)
    if c == RELU:
        return 1.0 if o > 0.0 else 0.0
    if c == SOFTPLUS:
        return _logistic(z)
    if c == SIN:
        return math.cos(z)
    return 1.0


# One sample (K = 1): y = M x for a p x q block, either as q updates of y by a column
# ("axpy": y stays in memory, each column streams past it) or as p dot products of M's rows,
# four at a time in registers.  The dot products win except for a tall block with a handful
# of columns (p >= 4 q, q < 8), measured over p in 2..128, q in 3..65 on this machine:
# up to 10x for short blocks with many columns (2 x 65), 2x for 32 x 33.
@_inline
def axpy_form(p, q):
    """True when a p x q block's product is faster column by column."""
    return q < 8 and p >= 4 * q


@_inline
def rows_dot(M, m0, ld, x, x0, q, y, y0, p, bcol, add):
    """``y[y0 + r] (+)= sum_{i<q} M[m0 + r ld + i] x[x0 + i] (+ M[m0 + r ld + bcol])`` for
    r < p (bcol < 0: no bias column; add: accumulate into y, else overwrite)."""
    m0u, ldu, x0u, qu, y0u = np.uint64(m0), np.uint64(ld), np.uint64(x0), np.uint64(q), \
        np.uint64(y0)
    pu = np.uint64(p)
    r = np.uint64(0)
    while r + np.uint64(4) <= pu:
        b0 = m0u + r * ldu
        b1, b2, b3 = b0 + ldu, b0 + np.uint64(2) * ldu, b0 + np.uint64(3) * ldu
        a0 = a1 = a2 = a3 = 0.0
        for i in range(qu):
            xi = x[x0u + i]
            a0 += M[b0 + i] * xi
            a1 += M[b1 + i] * xi
            a2 += M[b2 + i] * xi
            a3 += M[b3 + i] * xi
        if bcol >= 0:
            c = np.uint64(bcol)
            a0 += M[b0 + c]
            a1 += M[b1 + c]
            a2 += M[b2 + c]
            a3 += M[b3 + c]
        if add:
            a0 += y[y0u + r]
            a1 += y[y0u + r + np.uint64(1)]
            a2 += y[y0u + r + np.uint64(2)]
            a3 += y[y0u + r + np.uint64(3)]
        y[y0u + r] = a0
        y[y0u + r + np.uint64(1)] = a1
        y[y0u + r + np.uint64(2)] = a2
        y[y0u + r + np.uint64(3)] = a3
        r += np.uint64(4)
    while r < pu:
        b0 = m0u + r * ldu
        a0 = 0.0
        for i in range(qu):
            a0 += M[b0 + i] * x[x0u + i]
        if bcol >= 0:
            a0 += M[b0 + np.uint64(bcol)]
        if add:
            a0 += y[y0u + r]
        y[y0u + r] = a0
        r += np.uint64(1)


# A pass reads and writes flat (1-D) work arrays at offsets: this pass's I, O, Z, G, GI
# start at i0, o0, z0, g0, gi0 of If, Of, Zf, Gf, GIf (K columns per unit row), so a step of
# a horizon is a range of the stacked arrays.  One sample (K = 1) is indexed by unsigned
# offsets alone -- no view per block or step: each view costs a reference count up and
# down, ~10 ns, which is most of a small network's step (measured) -- and unsigned, so
# there is no negative-index handling and the loops vectorise.  A batch (K > 1) runs over
# 2-D views of the slices, indexed by the loop variables alone (unit strides, no index
# arithmetic to check: the updates over k vectorise, 6x faster than offsets, measured).
@_jit
def forward_levels(lv, blk, bstart, grp, gstart, WD, WT, If, i0, Of, o0, Zf, z0, K):
    """The forward pass from the inputs I (n_0 + 1, K) into O and Z (WT: the blocks
    transposed, for the one-sample sums ``z += W[:, i] o_i``)."""
    for L in range(1, lv.shape[0]):
        oL, sL, zL = lv[L, O_OFF], lv[L, SIZE], lv[L, Z_OFF]
        a0 = z0 + zL * K if zL >= 0 else o0 + oL * K
        Af = Zf if zL >= 0 else Of               # Z_L (in O when h needs only o)
        for kb in range(bstart[L], bstart[L + 1]):
            src, base0, cols, bias = blk[kb, SRC], blk[kb, WOFF], blk[kb, COLS], blk[kb, BIAS]
            ns = cols - bias
            first = kb == bstart[L]
            s0 = i0 if src == 0 else o0 + lv[src, O_OFF] * K
            Sf = If if src == 0 else Of
            if K == 1 and not axpy_form(sL, ns):     # z (+)= W o~ by rows (dot products)
                rows_dot(WD, base0, cols, Sf, s0, ns, Af, a0, sL, ns if bias else -1, not first)
                continue
            if K == 1:                           # z (+)= sum_i W[:, i] o_i + bias column
                sLu, a0u, s0u = np.uint64(sL), np.uint64(a0), np.uint64(s0)
                t0, colsu, nsu = np.uint64(blk[kb, TOFF]), np.uint64(cols), np.uint64(ns)
                for r in range(sLu):
                    b = WD[np.uint64(base0) + r * colsu + nsu] if bias else 0.0
                    Af[a0u + r] = b if first else Af[a0u + r] + b
                for i in range(nsu):
                    x = Sf[s0u + i]
                    ti = t0 + i * sLu
                    for r in range(sLu):
                        Af[a0u + r] += WT[ti + r] * x
                continue
            Ab = Af[a0:a0 + sL * K].reshape(sL, K)
            Sb = Sf[s0:s0 + ns * K].reshape(ns, K)
            Wb = WD[base0:base0 + sL * cols].reshape(sL, cols)
            for r in range(sL):                  # z_j (+)= sum_i w_ji o_i (+ bias)
                b = Wb[r, ns] if bias else 0.0
                if first:
                    for k in range(K):
                        Ab[r, k] = b
                elif bias:
                    for k in range(K):
                        Ab[r, k] += b
                for i in range(ns):
                    w = Wb[r, i]
                    for k in range(K):
                        Ab[r, k] += w * Sb[i, k]
        for g in range(gstart[L], gstart[L + 1]):    # o_j = h_j(z_j), a run at a time
            c, lo, hi = grp[g, 0], grp[g, 1], grp[g, 2]
            n_q, oa = np.uint64((hi - lo) * K), np.uint64(o0 + (oL + lo) * K)
            if zL >= 0:
                za = np.uint64(z0 + (zL + lo) * K)
                for q in range(n_q):
                    Of[oa + q] = h(c, Zf[za + q])
            elif c == TANH:
                for q in range(n_q):
                    Of[oa + q] = tanh(Of[oa + q])
            elif c != LINEAR:
                for q in range(n_q):
                    Of[oa + q] = h(c, Of[oa + q])


@_jit
def backward_levels(lv, blk, bstart, grp, gstart, WD, WT, If, i0, Of, o0, Zf, z0, Gf, g0,
                    GIf, gi0, n_gi, Df, GD, want_w, want_x, K):
    """The delta recursion from G seeded at the output levels' rows; the input deltas go to
    GI (n_gi entries from gi0) when want_x, the weight gradient to GD (block layout) when
    want_w; Df is scratch (max level size x K)."""
    nL = lv.shape[0]
    for L in range(1, nL - 1):                   # cotangents start at zero off the outputs
        if not lv[L, OUT_LEVEL]:
            ga = np.uint64(g0 + lv[L, G_OFF] * K)
            for q in range(np.uint64(lv[L, SIZE] * K)):
                Gf[ga + q] = 0.0
    if want_x:
        for q in range(np.uint64(n_gi)):
            GIf[np.uint64(gi0) + q] = 0.0
    for L in range(nL - 1, 0, -1):
        oL, gL, sL, zL = lv[L, O_OFF], lv[L, G_OFF], lv[L, SIZE], lv[L, Z_OFF]
        if not lv[L, LIVE]:
            if want_w:
                for kb in range(bstart[L], bstart[L + 1]):
                    base0 = blk[kb, WOFF]
                    GD[base0:base0 + sL * blk[kb, COLS]] = 0.0
            continue
        for g in range(gstart[L], gstart[L + 1]):    # D_L = h'(Z_L) G_L
            c, lo, hi = grp[g, 0], grp[g, 1], grp[g, 2]
            n_q, d0 = np.uint64((hi - lo) * K), np.uint64(lo * K)
            ga, oa = np.uint64(g0 + (gL + lo) * K), np.uint64(o0 + (oL + lo) * K)
            if c == LINEAR:
                for q in range(n_q):
                    Df[d0 + q] = Gf[ga + q]
            elif c == TANH:
                for q in range(n_q):
                    o = Of[oa + q]
                    Df[d0 + q] = Gf[ga + q] * (1.0 - o * o)
            elif zL >= 0:
                za = np.uint64(z0 + (zL + lo) * K)
                for q in range(n_q):
                    Df[d0 + q] = Gf[ga + q] * dh(c, Zf[za + q], Of[oa + q])
            else:
                for q in range(n_q):
                    Df[d0 + q] = Gf[ga + q] * dh(c, 0.0, Of[oa + q])
        for kb in range(bstart[L], bstart[L + 1]):
            src, base0, cols, bias = blk[kb, SRC], blk[kb, WOFF], blk[kb, COLS], blk[kb, BIAS]
            ns = cols - bias
            if want_w:                           # dE/dW_Ll = D_L O~_l^T
                s0 = i0 if src == 0 else o0 + lv[src, O_OFF] * K
                Sb = (If if src == 0 else Of)[s0:s0 + ns * K].reshape(ns, K)
                Db = Df[:sL * K].reshape(sL, K)
                Gb = GD[base0:base0 + sL * cols].reshape(sL, cols)
                for r in range(sL):
                    for i in range(ns):
                        acc = 0.0
                        for k in range(K):
                            acc += Db[r, k] * Sb[i, k]
                        Gb[r, i] = acc
                    if bias:
                        acc = 0.0
                        for k in range(K):
                            acc += Db[r, k]
                        Gb[r, ns] = acc
            if src == 0 and not want_x:
                continue
            t0 = gi0 if src == 0 else g0 + lv[src, G_OFF] * K     # G_l += W_Ll^T D_L
            Tf = GIf if src == 0 else Gf
            if K == 1 and not axpy_form(ns, sL):     # G_l += W^T D by W^T's rows
                rows_dot(WT, blk[kb, TOFF], sL, Df, 0, sL, Tf, t0, ns, -1, True)
                continue
            if K == 1:                           # by W's rows (few of them)
                t0u, colsu, nsu, b0u = np.uint64(t0), np.uint64(cols), np.uint64(ns), \
                    np.uint64(base0)
                for r in range(np.uint64(sL)):
                    d = Df[r]
                    base = b0u + r * colsu
                    for i in range(nsu):
                        Tf[t0u + i] += WD[base + i] * d
                continue
            Tb = Tf[t0:t0 + ns * K].reshape(ns, K)
            Db = Df[:sL * K].reshape(sL, K)
            Wb = WD[base0:base0 + sL * cols].reshape(sL, cols)
            for r in range(sL):
                for i in range(ns):
                    w = Wb[r, i]
                    for k in range(K):
                        Tb[i, k] += w * Db[r, k]


@_jit
def gather_outputs(outs, O, Y):
    """Y (n_out, K) = the output units' rows of O."""
    for j in range(outs.shape[0]):
        for k in range(O.shape[1]):
            Y[j, k] = O[outs[j], k]


@_jit
def seed_outputs(lv, outs_g, G, dYT, sy):
    """G at the output levels = dYT (n_out, K) times the output scale sy (n_out,) or ones."""
    K = G.shape[1]
    for L in range(1, lv.shape[0]):
        if lv[L, OUT_LEVEL]:
            gL = lv[L, G_OFF]
            for r in range(lv[L, SIZE]):
                for k in range(K):
                    G[gL + r, k] = 0.0
    for j in range(outs_g.shape[0]):
        s = sy[j] if sy.shape[0] else 1.0
        for k in range(K):
            G[outs_g[j], k] += dYT[j, k] * s


@_jit
def seed_step(lv, outs_g, Gf, g0, Sf, s0, K):
    """:func:`seed_outputs` on flat arrays at offsets, unscaled: G (from g0) at the output
    levels = the (n_out, K) cotangent in Sf from s0."""
    for L in range(1, lv.shape[0]):
        if lv[L, OUT_LEVEL]:
            ga = np.uint64(g0 + lv[L, G_OFF] * K)
            for q in range(np.uint64(lv[L, SIZE] * K)):
                Gf[ga + q] = 0.0
    for j in range(outs_g.shape[0]):
        ga, sa = np.uint64(g0 + outs_g[j] * K), np.uint64(s0 + j * K)
        for k in range(np.uint64(K)):
            Gf[ga + k] += Sf[sa + k]


@_jit
def scale_inputs(XT, mx, sx, I):
    """I[:n] = (XT - mx) / sx, or XT when mx is empty."""
    for i in range(XT.shape[0]):
        for k in range(XT.shape[1]):
            I[i, k] = (XT[i, k] - mx[i]) / sx[i] if mx.shape[0] else XT[i, k]


@_jit
def forward(lv, blk, bstart, grp, gstart, outs, WD, WT, XT, mx, sx, I, O, Z, Y, gather):
    """One forward pass of a Buffers: inputs XT (n_0, K) raw, scaled by (mx, sx) into I."""
    scale_inputs(XT, mx, sx, I)
    forward_levels(lv, blk, bstart, grp, gstart, WD, WT, I.reshape(I.size), 0, O.reshape(O.size),
                   0, Z.reshape(Z.size), 0, O.shape[1])
    if gather:
        gather_outputs(outs, O, Y)


@_jit
def backward(lv, blk, bstart, grp, gstart, outs_g, WD, WT, I, O, Z, G, GI, Dk, GD, grad, smap,
             dYT, sy, want_w, want_x):
    """One backward pass of a Buffers from dYT (n_out, K) raw; grad (n_weights,) from GD."""
    seed_outputs(lv, outs_g, G, dYT, sy)
    backward_levels(lv, blk, bstart, grp, gstart, WD, WT, I.reshape(I.size), 0, O.reshape(O.size),
                    0, Z.reshape(Z.size), 0, G.reshape(G.size), 0, GI.reshape(GI.size), 0,
                    GI.size, Dk.reshape(Dk.size), GD, want_w, want_x, O.shape[1])
    if want_w:
        for e in range(smap.shape[0]):
            grad[smap[e, 0]] = GD[smap[e, 1]]


@_jit
def jacobian_inputs(lv, blk, bstart, grp, gstart, outs_g, WD, WT, I, O, Z, G, GI, Dk, GD, sy, J):
    """J (n_out, n_0, K) = dY_j/dX_int for every output j: one input-only sweep each."""
    n_out, K = outs_g.shape[0], O.shape[1]
    E = np.zeros((n_out, K))
    If, Of, Zf, Gf, GIf = I.reshape(I.size), O.reshape(O.size), Z.reshape(Z.size), \
        G.reshape(G.size), GI.reshape(GI.size)
    for j in range(n_out):
        for k in range(K):
            E[j, k] = 1.0
        seed_outputs(lv, outs_g, G, E, sy)
        backward_levels(lv, blk, bstart, grp, gstart, WD, WT, If, 0, Of, 0, Zf, 0, Gf, 0, GIf, 0,
                        GI.size, Dk.reshape(Dk.size), GD, False, True, K)
        for i in range(GI.shape[0]):
            for k in range(K):
                J[j, i, k] = GI[i, k]
        for k in range(K):
            E[j, k] = 0.0


@_inline
def next_state(Of, o0, outs, XB, t, n, a, b, residual):
    """``XB[t+1, :n] = Y a + b (+ XB[t, :n])`` from step t's outputs O (at o0 of Of; a, b
    (n,) or empty for 1 and 0)."""
    B = XB.shape[2]
    for j in range(n):
        ra = o0 + outs[j] * B
        for k in range(B):
            v = Of[ra + k]
            if a.shape[0]:
                v = v * a[j]
            if b.shape[0]:
                v = v + b[j]
            if residual:
                v = v + XB[t, j, k]
            XB[t + 1, j, k] = v


@_jit
def rollout(lv, blk, bstart, grp, gstart, outs, WD, WT, XB, OB, ZB, n, a, b, residual):
    """T steps: step t's inputs are XB[t] (n_0 + 1, B); the next internal state is
    ``XB[t+1, :n] = Y a + b (+ XB[t, :n])`` (a, b (n,) or empty for 1 and 0)."""
    B = OB.shape[2]
    Xf, Of, Zf = XB.reshape(XB.size), OB.reshape(OB.size), ZB.reshape(ZB.size)
    xs, os, zs = XB.shape[1] * B, OB.shape[1] * B, ZB.shape[1] * B
    for t in range(OB.shape[0]):
        forward_levels(lv, blk, bstart, grp, gstart, WD, WT, Xf, t * xs, Of, t * os, Zf, t * zs,
                       B)
        next_state(Of, t * os, outs, XB, t, n, a, b, residual)


@_jit
def closed_loop(lv, blk, bstart, grp, gstart, outs, WD, WT, XB, OB, ZB, n, a, b, residual,
                sx, mx, Zr, Ur, k, K, alpha, lo, hi, bounded, aug, U):
    """T steps of a dynamics model under the local policy of iLQR's forward pass, for B
    trajectories (the columns of XB; x_0 and the exogenous rows of XB already written)::

        u_t = clip(Ur_t + alpha k_t + K_t (z_t - Zr_t), lo_t, hi_t),   z_t = x_t (raw), or
        [x_t; u_{t-1}] when aug (u_{-1} = 0);   x_{t+1} as in :func:`rollout`

    Zr (B, T+1, nz), Ur, k, lo, hi (B, T, m), K (B, T, m, nz); the raw controls land in U
    (B, T, m) and, scaled by (mx, sx) (the inputs' (n_0,) scaling, zeros and ones when
    unscaled), in XB[t, n:n+m]."""
    T, B, m = OB.shape[0], OB.shape[2], U.shape[2]
    Xf, Of, Zf = XB.reshape(XB.size), OB.reshape(OB.size), ZB.reshape(ZB.size)
    xs, os, zs = XB.shape[1] * B, OB.shape[1] * B, ZB.shape[1] * B
    for t in range(T):
        for c in range(B):
            for i in range(m):
                u = Ur[c, t, i] + alpha * k[c, t, i]
                for j in range(n):
                    u += K[c, t, i, j] * (XB[t, j, c] * sx[j] + mx[j] - Zr[c, t, j])
                if aug:
                    for j in range(m):
                        p = U[c, t - 1, j] if t > 0 else 0.0
                        u += K[c, t, i, n + j] * (p - Zr[c, t, n + j])
                if bounded:
                    u = min(max(u, lo[c, t, i]), hi[c, t, i])
                U[c, t, i] = u
                XB[t, n + i, c] = (u - mx[n + i]) / sx[n + i]
        forward_levels(lv, blk, bstart, grp, gstart, WD, WT, Xf, t * xs, Of, t * os, Zf, t * zs,
                       B)
        next_state(Of, t * os, outs, XB, t, n, a, b, residual)


@_jit
def bptt(lv, blk, bstart, grp, gstart, outs_g, WD, WT, XB, OB, ZB, GBB, GB, Dk, GD, Cs, sig, n, r,
         residual):
    """The backward sweep through time from Cs (T+1, n, B) = sy * dJ/dx_t: step t's
    output cotangent is sig[t] (n, B) and its input deltas land in GB[t] (n_0, B)::

        sig_{T-1} = Cs_T,   sig_{t-1} = Cs_t + r G0x_t (+ sig_t when residual)
    """
    T, B = OB.shape[0], OB.shape[2]
    for k in range(B):
        for j in range(n):
            sig[T - 1, j, k] = Cs[T, j, k]
    Xf, Of, Zf = XB.reshape(XB.size), OB.reshape(OB.size), ZB.reshape(ZB.size)
    Gf, GIf, Sf, Df = GBB.reshape(GBB.size), GB.reshape(GB.size), sig.reshape(sig.size), \
        Dk.reshape(Dk.size)
    xs, os, zs = XB.shape[1] * B, OB.shape[1] * B, ZB.shape[1] * B
    gs, gis, ss = GBB.shape[1] * B, GB.shape[1] * B, sig.shape[1] * B
    for t in range(T - 1, -1, -1):
        seed_step(lv, outs_g, Gf, t * gs, Sf, t * ss, B)
        backward_levels(lv, blk, bstart, grp, gstart, WD, WT, Xf, t * xs, Of, t * os, Zf, t * zs,
                        Gf, t * gs, GIf, t * gis, gis, Df, GD, False, True, B)
        if t == 0:
            break
        for j in range(n):
            for k in range(B):
                v = GB[t, j, k] * r[j] if r.shape[0] else GB[t, j, k]
                v = v + Cs[t, j, k]
                if residual:
                    v = v + sig[t, j, k]
                sig[t - 1, j, k] = v


@_jit
def control_value_grad(lv, blk, bstart, grp, gstart, outs, outs_g, WD, WT, XT, ctl, mx, sx,
                       I, O, Z, G, GI, Dk, T, Q, sy, my, R, UR, U, g):
    """ControlObjective's E and dE/du for K problems in one call (controls U (K, m) into
    the rows ctl of XT, whose other rows hold the fixed inputs), raw units::

        e = y - t,  E = 1/2 e^T Q e + 1/2 du^T R du,  du = u - u_rest
        dE/du = (dy/du)^T Q e + R du            (R empty: no control cost)

    Q is (n_out, n_out); sy, my (n_out,) the output scaling (empty: none); g (K, m)
    receives the gradient.  Returns E summed over the problems."""
    K, m, n_out = U.shape[0], U.shape[1], outs.shape[0]
    for c in range(m):
        for k in range(K):
            XT[ctl[c], k] = U[k, c]
    scale_inputs(XT, mx, sx, I)
    If, Of, Zf = I.reshape(I.size), O.reshape(O.size), Z.reshape(Z.size)
    forward_levels(lv, blk, bstart, grp, gstart, WD, WT, If, 0, Of, 0, Zf, 0, K)
    E = 0.0
    e = np.empty(n_out)
    dY = np.empty((n_out, K))
    for k in range(K):
        for j in range(n_out):
            y = O[outs[j], k]
            if sy.shape[0]:
                y = y * sy[j] + my[j]
            e[j] = y - T[j, k]
        for j in range(n_out):
            acc = 0.0
            for i in range(n_out):
                acc += Q[j, i] * e[i]
            dY[j, k] = acc
            E += 0.5 * e[j] * acc
    seed_outputs(lv, outs_g, G, dY, sy)
    backward_levels(lv, blk, bstart, grp, gstart, WD, WT, If, 0, Of, 0, Zf, 0, G.reshape(G.size),
                    0, GI.reshape(GI.size), 0, GI.size, Dk.reshape(Dk.size), WD[:0], False, True,
                    K)
    for c in range(m):
        for k in range(K):
            v = GI[ctl[c], k]
            g[k, c] = v / sx[ctl[c]] if mx.shape[0] else v
    if R.shape[0]:
        for k in range(K):
            for c in range(m):
                acc = 0.0
                for d in range(m):
                    acc += R[c, d] * (U[k, d] - UR[d, k])
                g[k, c] += acc
                E += 0.5 * (U[k, c] - UR[c, k]) * acc
    return E


@_jit
def control_packed(meta, fsc, WD, WT, XT, O, Z, G, Dk, T, Q, R, UR, U, g):
    """:func:`control_value_grad` with its small arguments packed into two arrays, for
    one-sample calls where each array argument costs ~0.1 us of dispatch.  ``meta`` (int64)
    holds [n_levels, n_blocks, n_groups, n_out, m, n_0, has input scaling, has output
    scaling] and then lv, blk, bstart, grp, gstart, outs, outs_g, ctl flattened; ``fsc``
    the scaling vectors [mx, sx, sy, my] (those present)."""
    nL, nb, ng, n_out, m, n0 = meta[0], meta[1], meta[2], meta[3], meta[4], meta[5]
    a = 8
    lv = meta[a:a + nL * 6].reshape(nL, 6)
    a += nL * 6
    blk = meta[a:a + nb * 6].reshape(nb, 6)
    a += nb * 6
    bstart = meta[a:a + nL + 1]
    a += nL + 1
    grp = meta[a:a + ng * 3].reshape(ng, 3)
    a += ng * 3
    gstart = meta[a:a + nL + 1]
    a += nL + 1
    outs = meta[a:a + n_out]
    a += n_out
    outs_g = meta[a:a + n_out]
    a += n_out
    ctl = meta[a:a + m]
    f = 0
    mx, sx = fsc[0:0], fsc[0:0]
    if meta[6]:
        mx, sx = fsc[0:n0], fsc[n0:2 * n0]
        f = 2 * n0
    sy, my = fsc[0:0], fsc[0:0]
    if meta[7]:
        sy, my = fsc[f:f + n_out], fsc[f + n_out:f + 2 * n_out]
    return control_value_grad(lv, blk, bstart, grp, gstart, outs, outs_g, WD, WT, XT, ctl,
                              mx, sx, O[0:n0 + 1], O, Z, G, G[0:n0], Dk, T, Q, sy, my, R, UR,
                              U, g)
