"""Compiled inner loops (numba) of the streaming passes, each equal bit for bit to its numpy formulation.

The per-slice work of ``accumulate``, ``fine`` and ``locate`` was a few dozen numpy calls per
frame, each a full pass over the frame with a temporary; here each step is one loop over the
pixels it needs. Every kernel computes exactly what the numpy code it replaces computes, in the
same floating-point order (``tests/projections/test_kernels.py`` checks each against it):

* maxima are exact in any order;
* sums keep numpy's order: a frame's own-view sum is one float32 add per frame;
  ``np.add.reduceat`` over a slab's cells is ``seg[0] + pairwise(seg[1:])`` with numpy's
  pairwise summation (8 accumulators, blocks of 128: ``_pairwise``); ``np.add.at`` is sequential in
  index order;
* windows are computed in float64 and rounded once to float32 (``windows.apply_window``);
* no fast-math: LLVM neither reassociates nor contracts ``a * b + c`` into a fused multiply-add.

Compiled once per machine (``cache=True``: numba keeps the machine code next to this file, in
``__pycache__``); the first call in a process loads it (~0.1 s), the first on a machine compiles
it (~10-20 s).
"""

from __future__ import annotations

import numpy as np
from numba import njit

JIT = {"cache": True, "nogil": True, "error_model": "numpy"}


# ---------------------------------------------------------------- bone mask (bone.bone_mask)

@njit(**JIT)
def _box0(m, r, erode, out):
    """Erosion (outside the image True) or dilation (outside False) of the 0/1 uint8 ``m`` along
    axis 0 by radius ``r`` into ``out``: a running count, per column, of the cells within ``r``
    rows that are False (erosion: none may be) or True (dilation: one suffices); vectorised along
    the row."""
    h, w = m.shape
    flip = np.uint8(1) if erode else np.uint8(0)      # count m ^ flip: False cells for erosion
    cnt = np.zeros(w, np.int32)
    for i in range(min(r, h)):
        mr = m[i]
        for j in range(w):
            cnt[j] += mr[j] ^ flip
    for i in range(h):
        if i + r < h:
            mr = m[i + r]
            for j in range(w):
                cnt[j] += mr[j] ^ flip
        if i - r - 1 >= 0:
            mr = m[i - r - 1]
            for j in range(w):
                cnt[j] -= mr[j] ^ flip
        orow = out[i]
        if erode:
            for j in range(w):
                orow[j] = cnt[j] == 0
        else:
            for j in range(w):
                orow[j] = cnt[j] > 0


@njit(**JIT)
def _box1(m, r, erode, out):
    """As ``_box0`` along axis 1 (a running count along each row)."""
    h, w = m.shape
    flip = np.uint8(1) if erode else np.uint8(0)
    for i in range(h):
        mr = m[i]
        orow = out[i]
        c = 0
        for j in range(min(r, w)):
            c += mr[j] ^ flip
        for j in range(w):
            if j + r < w:
                c += mr[j + r] ^ flip
            if j - r - 1 >= 0:
                c -= mr[j - r - 1] ^ flip
            orow[j] = (c == 0) if erode else (c > 0)


@njit(**JIT)
def bone_mask(hu, thr, o0, o1, d0, d1):
    """bool (h, w): ``hu > thr``, eroded by a (2 o0 + 1, 2 o1 + 1) box (outside True) when o0 or o1 > 0,
    then dilated by a (2 (o0 + d0) + 1, 2 (o1 + d1) + 1) box (outside False): ``bone.bone_mask``."""
    h, w = hu.shape
    m = np.empty((h, w), np.uint8)
    found = 0
    for i in range(h):
        for j in range(w):
            b = np.uint8(hu[i, j] > thr)
            m[i, j] = b
            found |= b
    if found == 0:
        return m.view(np.bool_)
    t = np.empty((h, w), np.uint8)
    if o0 > 0 or o1 > 0:
        _box0(m, o0, True, t)
        _box1(t, o1, True, m)
    _box0(m, o0 + d0, False, t)
    _box1(t, o1 + d1, False, m)
    return m.view(np.bool_)   # radius 0 along an axis: the count window is the cell itself


@njit(**JIT)
def suppress_into(hu, thr, o0, o1, d0, d1, fill, out):
    """``out = where(bone_mask(hu, ...), fill, hu)`` (``bone.suppress_bone``)."""
    m = bone_mask(hu, thr, o0, o1, d0, d1).view(np.uint8)
    h, w = hu.shape
    for i in range(h):
        for j in range(w):
            out[i, j] = fill if m[i, j] != 0 else hu[i, j]


@njit(**JIT)
def window_into(src, lo, span, out):
    """``out = float32(clip((float64(src) - lo) / span, 0, 1))`` (``windows.apply_window``, gamma 1)."""
    h, w = src.shape
    for i in range(h):
        for j in range(w):
            x = (np.float64(src[i, j]) - lo) / span
            if x < 0.0:
                x = 0.0
            elif x > 1.0:
                x = 1.0
            out[i, j] = np.float32(x)


# ---------------------------------------------------------------- numpy's float32 pairwise sum

@njit(**JIT)
def _pairwise(a):
    """numpy's ``pairwise_sum`` of a float32 1-D array (what ``np.add.reduce`` / ``reduceat`` use)."""
    n = a.shape[0]
    if n <= 128:
        return _pairwise_block(a, 0, n)
    n2 = n // 2
    n2 -= n2 % 8
    return np.float32(_pairwise(a[:n2]) + _pairwise(a[n2:]))


@njit(**JIT)
def _pairwise_block(row, base, n):
    """``_pairwise(row[base:base + n])`` for n <= 128: below 8 values a plain sum from -0.0, else 8
    interleaved accumulators combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then the rest."""
    if n < 8:
        res = np.float32(-0.0)
        for i in range(n):
            res = np.float32(res + row[base + i])
        return res
    r0, r1, r2, r3 = row[base], row[base + 1], row[base + 2], row[base + 3]
    r4, r5, r6, r7 = row[base + 4], row[base + 5], row[base + 6], row[base + 7]
    i = 8
    stop = n - (n % 8)
    while i < stop:
        q = base + i
        r0 = np.float32(r0 + row[q])
        r1 = np.float32(r1 + row[q + 1])
        r2 = np.float32(r2 + row[q + 2])
        r3 = np.float32(r3 + row[q + 3])
        r4 = np.float32(r4 + row[q + 4])
        r5 = np.float32(r5 + row[q + 5])
        r6 = np.float32(r6 + row[q + 6])
        r7 = np.float32(r7 + row[q + 7])
        i += 8
    res = np.float32(np.float32(np.float32(r0 + r1) + np.float32(r2 + r3))
                     + np.float32(np.float32(r4 + r5) + np.float32(r6 + r7)))
    while i < n:
        res = np.float32(res + row[base + i])
        i += 1
    return res


@njit(**JIT)
def _segment_sum(a):
    """``np.add.reduceat`` of one segment: its first value plus the pairwise sum of the rest."""
    if a.shape[0] == 1:
        return a[0]
    return np.float32(a[0] + _pairwise(a[1:]))


@njit(**JIT)
def _pairwise_rows(c, base, n, res):
    """``res[j] = _pairwise(c[base:base + n, j])`` for every column j at once (row-major)."""
    w = c.shape[1]
    if n < 8:
        for j in range(w):
            res[j] = np.float32(-0.0)
        for q in range(n):
            for j in range(w):
                res[j] = np.float32(res[j] + c[base + q, j])
        return
    if n <= 128:
        r = np.empty((8, w), np.float32)
        for q in range(8):
            for j in range(w):
                r[q, j] = c[base + q, j]
        i = 8
        stop = n - (n % 8)
        while i < stop:
            for q in range(8):
                for j in range(w):
                    r[q, j] = np.float32(r[q, j] + c[base + i + q, j])
            i += 8
        for j in range(w):
            res[j] = np.float32(np.float32(np.float32(r[0, j] + r[1, j]) + np.float32(r[2, j] + r[3, j]))
                                + np.float32(np.float32(r[4, j] + r[5, j]) + np.float32(r[6, j] + r[7, j])))
        while i < n:
            for j in range(w):
                res[j] = np.float32(res[j] + c[base + i, j])
            i += 1
        return
    n2 = n // 2
    n2 -= n2 % 8
    rest = np.empty(w, np.float32)
    _pairwise_rows(c, base, n2, res)
    _pairwise_rows(c, base + n2, n - n2, rest)
    for j in range(w):
        res[j] = np.float32(res[j] + rest[j])


# ---------------------------------------------------------------- coarse pass (accumulate.Accumulator._update)

@njit(**JIT)
def coarse_update(p, full, line, slab, row_bins):
    """Max-update with one oriented, pooled slice ``p`` (g_0, g_1): ``full`` (g_0, g_1) max= p,
    ``line`` (g_0,) max= the row maxima, ``slab[row_bins[i], j]`` max= ``p[i, j]`` (a max over the
    rows of each bin: ``np.maximum.reduceat``). ``accumulate.Accumulator._update`` picks the views."""
    g0, g1 = p.shape
    for i in range(g0):
        b = row_bins[i]
        rmax = line[i]
        for j in range(g1):
            v = p[i, j]
            if v > rmax:
                rmax = v
            if v > full[i, j]:
                full[i, j] = v
            if v > slab[b, j]:
                slab[b, j] = v
        line[i] = rmax


# ---------------------------------------------------------------- fine pass (fine.FineAccumulator._direct)

@njit(**JIT)
def _segment(starts, slabs, counts, s, n):
    """Segment ``s`` of a view's slab segments: (first cell, end as ``reduceat``: the next start or ``n``, slab, count)."""
    en = starts[s + 1] if s + 1 < starts.shape[0] else n
    return starts[s], en, slabs[s], np.float32(counts[s])


@njit(**JIT)
def _fold(xa, xb, xs, xn, k, t, o, ma, mb, sm, cnt):
    """One cell of a slab view: max, max, sum and count updated with one segment's reductions."""
    if ma > xa[k, t, o]:
        xa[k, t, o] = ma
    if mb > xb[k, t, o]:
        xb[k, t, o] = mb
    xs[k, t, o] = np.float32(xs[k, t, o] + sm)
    xn[k, t, o] = np.float32(xn[k, t, o] + cnt)


@njit(**JIT)
def fine_direct(a, b, c, u0, v0, k_own, t,
                own_a, own_b, own_s, own_n,
                u_starts, u_slabs, u_counts, ua, ub, us, un,
                v_starts, v_slabs, v_counts, va, vb, vs, vn):
    """One axis-aligned frame's update of the three fine views.

    ``a``, ``b`` (max-type) and ``c`` (sum-type): (n_u, n_v) images of the crop's in-box cells,
    cells ``u0 ..`` along u, ``v0 ..`` along v. The frame's own view (``own_*``: (K, g_u, g_v);
    ``k_own`` its slab, -1 none) gets the images at slab ``k_own``; the view whose slabs cut u
    (``u*``: (K, g_t, g_v), indexed [slab, t, v]) gets, per slab segment of the u cells
    (``u_starts``: first cell, relative; ``u_slabs``; ``u_counts``: cells counted), the max / sum
    over the segment's rows; the view whose slabs cut v (``v*``: (K, g_t, g_u)) the same over columns."""
    n_u, n_v = a.shape
    if k_own >= 0:
        one = np.float32(1.0)
        for i in range(n_u):
            ra, rb, rc = a[i], b[i], c[i]
            oa, ob = own_a[k_own, u0 + i], own_b[k_own, u0 + i]
            os_, on = own_s[k_own, u0 + i], own_n[k_own, u0 + i]
            for j in range(n_v):
                x, y = ra[j], oa[v0 + j]
                oa[v0 + j] = x if x > y else y
                x, y = rb[j], ob[v0 + j]
                ob[v0 + j] = x if x > y else y
                os_[v0 + j] = np.float32(os_[v0 + j] + rc[j])
                on[v0 + j] = np.float32(on[v0 + j] + one)
    ns = u_starts.shape[0]
    ma = np.empty(n_v, np.float32)
    mb = np.empty(n_v, np.float32)
    sm = np.empty(n_v, np.float32)
    for s in range(ns):
        st, en, k, cnt = _segment(u_starts, u_slabs, u_counts, s, n_u)
        for j in range(n_v):
            ma[j] = a[st, j]
            mb[j] = b[st, j]
        for i in range(st + 1, en):
            for j in range(n_v):
                if a[i, j] > ma[j]:
                    ma[j] = a[i, j]
                if b[i, j] > mb[j]:
                    mb[j] = b[i, j]
        if en - st == 1:                      # reduceat of one cell: the cell itself
            for j in range(n_v):
                sm[j] = c[st, j]
        else:                                 # first cell + pairwise sum of the rest
            _pairwise_rows(c, st + 1, en - st - 1, sm)
            for j in range(n_v):
                sm[j] = np.float32(c[st, j] + sm[j])
        for j in range(n_v):
            _fold(ua, ub, us, un, k, t, v0 + j, ma[j], mb[j], sm[j], cnt)
    ns = v_starts.shape[0]
    for s in range(ns):
        st, en, k, cnt = _segment(v_starts, v_slabs, v_counts, s, n_v)
        for i in range(n_u):
            ar = a[i]
            br = b[i]
            cr = c[i]
            ma = ar[st]
            mb = br[st]
            for j in range(st + 1, en):
                if ar[j] > ma:
                    ma = ar[j]
                if br[j] > mb:
                    mb = br[j]
            sm = cr[st]
            if en - st > 1:
                sm = np.float32(sm + _pairwise_at(cr, st + 1, en - st - 1))
            _fold(va, vb, vs, vn, k, t, u0 + i, ma, mb, sm, cnt)


@njit(**JIT)
def _pairwise_at(row, base, n):
    """``_pairwise(row[base:base + n])``, with no array view or recursion for n <= 128 (a slab's cells)."""
    return _pairwise_block(row, base, n) if n <= 128 else _pairwise(row[base:base + n])


# ---------------------------------------------------------------- exact-position scatter (np.maximum.at / np.add.at)

@njit(**JIT)
def scatter_max(buf, idx, values):
    """``np.maximum.at(buf, idx, values)`` (1-D, flat)."""
    for n in range(idx.shape[0]):
        i = idx[n]
        v = values[n]
        if v > buf[i] or np.isnan(v):
            buf[i] = v


@njit(**JIT)
def scatter_add(buf, idx, values):
    """``np.add.at(buf, idx, values)``: sequential in sample order, in ``buf``'s precision."""
    for n in range(idx.shape[0]):
        i = idx[n]
        buf[i] = buf[i] + values[n]


@njit(**JIT)
def scatter_count(buf, idx):
    """``np.add.at(buf, idx, 1.0)``."""
    for n in range(idx.shape[0]):
        buf[idx[n]] += 1.0


@njit(**JIT)
def scatter_above(buf, idx, values, thr):
    """``np.add.at(buf, idx, (values > thr).astype(buf.dtype))``."""
    for n in range(idx.shape[0]):
        if values[n] > thr:
            buf[idx[n]] += 1.0


# ---------------------------------------------------------------- fine render (fine._resample)

@njit(**JIT)
def resample_into(src, fill, ri, i1, rw, rin, ci, j1, cw, cin, out):
    """``fine._resample``: (K, g_r, g_c) -> (K, F_r, F_c) float32, -inf / NaN cells as ``fill``, separable
    linear (rows first, then columns: ``x0 * (1 - w) + x1 * w`` in float32), ``fill`` outside."""
    kk, gr, gc = src.shape
    fr = ri.shape[0]
    fc = ci.shape[0]
    tmp = np.empty((fr, gc), np.float32)
    one = np.float32(1.0)
    for k in range(kk):
        for r in range(fr):
            w1 = rw[r]
            w0 = np.float32(one - w1)
            row0 = src[k, ri[r]]
            row1 = src[k, i1[r]]
            tr = tmp[r]
            for c in range(gc):
                x0 = row0[c]
                x1 = row1[c]
                x0 = x0 if np.isfinite(x0) else fill
                x1 = x1 if np.isfinite(x1) else fill
                tr[c] = np.float32(np.float32(x0 * w0) + np.float32(x1 * w1))
        for r in range(fr):
            orow = out[k, r]
            if not rin[r]:
                for c in range(fc):
                    orow[c] = fill
                continue
            tr = tmp[r]
            for c in range(fc):
                w1 = cw[c]
                v = np.float32(np.float32(tr[ci[c]] * np.float32(one - w1)) + np.float32(tr[j1[c]] * w1))
                orow[c] = v if cin[c] else fill


@njit(**JIT)
def mean_into(total, count, out):
    """``where(count > 0, total / maximum(count, 1), -inf)`` in float32, (K, g_r, g_c) each."""
    kk, gr, gc = total.shape
    for k in range(kk):
        for r in range(gr):
            for c in range(gc):
                n = count[k, r, c]
                out[k, r, c] = np.float32(total[k, r, c] / max(n, np.float32(1.0))) if n > 0 else -np.inf


@njit(**JIT)
def window_uint8(src, lo, span, root, out):
    """``to_uint8(apply_window(src, w))``: float32 of the float64 window, its square root when ``root``
    (gamma 0.5: ``np.power(x, 0.5)`` equals ``np.sqrt(x)`` for every float32 in [0, 1], checked
    exhaustively by the tests' sampled twin and benchmarks), then ``rint(x * 255)`` in float32 ->
    uint8. ``src`` (K, F, F) float32, ``out`` (K, F, F) uint8."""
    kk, fr, fc = src.shape
    for k in range(kk):
        for r in range(fr):
            for c in range(fc):
                x = (np.float64(src[k, r, c]) - lo) / span
                if x < 0.0:
                    x = 0.0
                elif x > 1.0:
                    x = 1.0
                y = np.float32(x)
                if root:
                    y = np.sqrt(y)
                out[k, r, c] = np.uint8(np.rint(np.float32(y * np.float32(255.0))))


@njit(**JIT)
def to_uint8_into(src, out):
    """``windows.to_uint8``: ``rint(clip(x, 0, 1) * 255)`` in float32 -> uint8."""
    kk, fr, fc = src.shape
    for k in range(kk):
        for r in range(fr):
            for c in range(fc):
                x = src[k, r, c]
                if x < 0.0:
                    x = np.float32(0.0)
                elif x > 1.0:
                    x = np.float32(1.0)
                out[k, r, c] = np.uint8(np.rint(np.float32(x * np.float32(255.0))))


# ---------------------------------------------------------------- grey morphology (scipy.ndimage.grey_closing / grey_opening)

@njit(**JIT)
def _max0(x, r, out):
    """Max over the rows within ``r`` of each row, clamped at the edges (``mode="reflect"`` gives the
    same for a max: the mirrored values are in the window anyway); vectorised along the rows."""
    h, w = x.shape
    for i in range(h):
        lo = max(0, i - r)
        hi = min(h, i + r + 1)
        orow = out[i]
        first = x[lo]
        for j in range(w):
            orow[j] = first[j]
        for k in range(lo + 1, hi):
            row = x[k]
            for j in range(w):
                orow[j] = row[j] if row[j] > orow[j] else orow[j]


@njit(**JIT)
def _max1(x, r, out):
    """As ``_max0`` along each row: van Herk / Gil-Werman block maxima (three passes whatever ``r``)."""
    h, w = x.shape
    s = 2 * r + 1
    n = w + 2 * r                                   # the row padded by r each side with -inf
    g = np.full(n, -np.inf, np.float32)             # running max from each block's start
    b = np.full(n, -np.inf, np.float32)             # ... and from its end
    for i in range(h):
        row = x[i]
        g[r:r + w] = row
        b[r:r + w] = row
        c = 0
        for p in range(n):
            if c == 0:
                cur = g[p]
            else:
                cur = g[p] if g[p] > cur else cur
            g[p] = cur
            c = c + 1 if c + 1 < s else 0
        last = n - 1
        top = (last // s) * s                       # start of the last (maybe short) block
        for start in range(top, -1, -s):
            end = min(start + s, n) - 1
            cur = b[end]
            for p in range(end - 1, start - 1, -1):
                cur = b[p] if b[p] > cur else cur
                b[p] = cur
        orow = out[i]
        for j in range(w):
            u, v = b[j], g[j + s - 1]
            orow[j] = u if u > v else v
        g[:r] = -np.inf
        g[r + w:] = -np.inf
        b[:r] = -np.inf
        b[r + w:] = -np.inf


@njit(**JIT)
def _maxbox(x, r0, r1, out):
    t = np.empty(x.shape, np.float32)
    _max0(x, r0, t)
    _max1(t, r1, out)


@njit(**JIT)
def tophat_into(x, s0, s1, black, out):
    """Black top-hat ``grey_closing(x, (s0, s1)) - x`` (``black``) or white ``x - grey_opening(x, (s0, s1))``,
    float32 (h, w), odd sizes, as scipy.ndimage: a closing is a max filter then a min filter over the
    centred box (an opening the reverse); a min filter is ``-max(-x)`` (exact)."""
    r0, r1 = s0 // 2, s1 // 2
    t = np.empty(x.shape, np.float32)
    if black:
        _maxbox(x, r0, r1, t)                        # dilation
        _maxbox(-t, r0, r1, out)                     # erosion = -out
        out[:, :] = -out - x
    else:
        _maxbox(-x, r0, r1, t)                       # erosion = -t
        _maxbox(-t, r0, r1, out)                     # dilation of the erosion
        out[:, :] = x - out
