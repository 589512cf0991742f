"""The pairs of boxes NMS must compare, found once for all classes: every pair whose IoU exceeds the threshold.

do_nms_sort and do_nms_obj (nms.py) test every later box against every kept box for each class; the graph built
here holds exactly the pairs that can suppress one another, so each class's greedy pass walks that adjacency. A grid
over box centres, by size class, with bounds that provably keep every pair (see _overlap_pairs); a dense pass for
the negative thresholds at which every pair counts.

Darknet's NMS takes the IoU as 0 where the intersection or the union is 0 (box.iou gives NaN or inf there): see
suppresses.
"""
import math

import numpy as np

from .box import intersection_and_union
from .jit import kernel


@kernel(inline="always")
def suppresses(ax, ay, aw, ah, bx, by, bw, bh, thresh):
    """box_iou(a, b) > thresh as Darknet's NMS decides it: box.iou's quotient, and 0 where the intersection or the
    union is 0."""
    inter, union = intersection_and_union(ax, ay, aw, ah, bx, by, bw, bh)
    if inter == 0 or union == 0:
        return np.float32(0.0) > thresh
    return inter / union > thresh


@kernel(inline="always")
def pair_suppresses(bbox, a, b, thresh):
    """suppresses for records a and b of an (n, 4) bbox array."""
    return suppresses(bbox[a, 0], bbox[a, 1], bbox[a, 2], bbox[a, 3], bbox[b, 0], bbox[b, 1], bbox[b, 2], bbox[b, 3],
                       thresh)


# A box is "gridded" when its float edges give its size to within this relative error (and its area is a normal
# float). For two gridded boxes, box_iou > thresh implies that their intersection along each axis exceeds
# thresh * (1 - 4.4 * _CONDITION) times the larger extent (the rounding of every float operation included); the
# pair finder uses thresh * _SHRINK, which leaves room.
_CONDITION = 5e-4


_SHRINK = 0.98


@kernel
def _col_of(centre, width):
    """Grid column of a centre: floor(centre / width), clamped so that it fits int64 (monotone in centre)."""
    q = centre / width
    if q > 1e18:
        q = 1e18
    elif q < -1e18:
        q = -1e18
    return np.int64(np.floor(q))


@kernel
def _first_in_cell(gcol, gcy, lo, hi, col, cy):
    """First position in [lo, hi) (sorted by column, then centre y) with column > col, or == col and y > cy."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if gcol[mid] < col or (gcol[mid] == col and gcy[mid] <= cy):
            lo = mid + 1
        else:
            hi = mid
    return lo


@kernel
def _reach(ea, lo, hi, t3):
    """Largest (ea + eb)/2 - t3*max(ea, eb) over eb in [lo, hi]: how far apart two centres may be along an axis."""
    best = (ea + hi) / 2 - t3 * max(ea, hi)
    e = min(max(ea, lo), hi)
    return max(best, (ea + e) / 2 - t3 * max(ea, e))


@kernel
def _classify_boxes(bbox, ids):
    """Each record of `ids` as one of _overlap_pairs' kinds (0 gridded, 1 loose, 2 special, 3 edgeless); for boxes
    with finite edges and w, h > 0 the centre and the extents of the float32 edges (in float64), and for gridded
    boxes the binary exponent of the larger extent. Also returns how many boxes are gridded."""
    m = ids.shape[0]
    two = np.float32(2.0)
    kind = np.zeros(m, np.int8)          # 0 gridded, 1 loose, 2 special, 3 edgeless
    expo = np.zeros(m, np.int64)
    cx = np.empty(m, np.float64)
    cy = np.empty(m, np.float64)
    ew = np.empty(m, np.float64)
    eh = np.empty(m, np.float64)
    ngrid = 0
    for p in range(m):
        r = ids[p]
        x = bbox[r, 0]
        y = bbox[r, 1]
        w = bbox[r, 2]
        h = bbox[r, 3]
        el = x - w / two
        er = x + w / two
        et = y - h / two
        eb = y + h / two
        if not (np.isfinite(el) and np.isfinite(er) and np.isfinite(et) and np.isfinite(eb)):
            kind[p] = 2
        elif not (w > 0 and h > 0):
            kind[p] = 3
        else:
            ew[p] = np.float64(er) - np.float64(el)
            eh[p] = np.float64(eb) - np.float64(et)
            cx[p] = (np.float64(el) + np.float64(er)) / 2
            cy[p] = (np.float64(et) + np.float64(eb)) / 2
            wd = np.float64(w)
            hd = np.float64(h)
            if abs(ew[p] - wd) > _CONDITION * wd or abs(eh[p] - hd) > _CONDITION * hd or wd * hd < 1e-30:
                kind[p] = 1
            else:
                expo[p] = math.frexp(max(ew[p], eh[p]))[1]
                ngrid += 1
    return kind, expo, cx, cy, ew, eh, ngrid


@kernel
def _size_classes(kind, expo, ew, eh, ngrid):
    """The positions of the gridded boxes, grouped by exponent (stable): g; each class's start in g (cstart, one
    more entry for the end), exponent and range of extents; gcls[u]: the class of g[u]."""
    m = kind.shape[0]
    g = np.empty(ngrid, np.int64)
    q = 0
    for p in range(m):
        if kind[p] == 0:
            g[q] = p
            q += 1
    g = g[np.argsort(expo[g], kind="mergesort")]
    nclass = 0
    for u in range(ngrid):
        if u == 0 or expo[g[u]] != expo[g[u - 1]]:
            nclass += 1
    cstart = np.empty(nclass + 1, np.int64)
    cexp = np.empty(nclass, np.int64)
    cminw = np.empty(nclass, np.float64)
    cmaxw = np.empty(nclass, np.float64)
    cminh = np.empty(nclass, np.float64)
    cmaxh = np.empty(nclass, np.float64)
    gcls = np.empty(ngrid, np.int64)
    c = -1
    for u in range(ngrid):
        p = g[u]
        if u == 0 or expo[p] != expo[g[u - 1]]:
            c += 1
            cstart[c] = u
            cexp[c] = expo[p]
            cminw[c] = ew[p]
            cmaxw[c] = ew[p]
            cminh[c] = eh[p]
            cmaxh[c] = eh[p]
        gcls[u] = c
        cminw[c] = min(cminw[c], ew[p])
        cmaxw[c] = max(cmaxw[c], ew[p])
        cminh[c] = min(cminh[c], eh[p])
        cmaxh[c] = max(cmaxh[c], eh[p])
    cstart[nclass] = ngrid
    return g, cstart, cexp, cminw, cmaxw, cminh, cmaxh, gcls


@kernel
def _sort_into_columns(g, cstart, cx, cy, ccolw):
    """Within each class, reorder g by grid column of centre x (columns ccolw[c] wide), then by centre y (both
    sorts stable); returns the column of each position."""
    ngrid = g.shape[0]
    nclass = ccolw.shape[0]
    gcol = np.empty(ngrid, np.int64)
    for c in range(nclass):
        lo = cstart[c]
        hi = cstart[c + 1]
        seg = g[lo:hi]
        seg = seg[np.argsort(cy[seg], kind="mergesort")]
        cols = np.empty(hi - lo, np.int64)
        for u in range(hi - lo):
            cols[u] = _col_of(cx[seg[u]], ccolw[c])
        perm = np.argsort(cols, kind="mergesort")
        for u in range(hi - lo):
            g[lo + u] = seg[perm[u]]
            gcol[lo + u] = cols[perm[u]]
    return gcol


@kernel
def _build_grid(bbox, ids, kind, expo, cx, cy, ew, eh, ngrid):
    """The gridded boxes in grid order with what the pair search reads of them, and their size classes:
    grid = (class, column, centre x, centre y, extent x, extent y, record, then the float32 x, y, w, h);
    classes = (start in the grid, exponent, min and max extent x, min and max extent y, column width)."""
    g, cstart, cexp, cminw, cmaxw, cminh, cmaxh, gcls = _size_classes(kind, expo, ew, eh, ngrid)
    ccolw = cmaxw / 4                    # columns a quarter of the class's widest box
    gcol = _sort_into_columns(g, cstart, cx, cy, ccolw)
    gcx = cx[g]
    gcy = cy[g]
    gew = ew[g]
    geh = eh[g]
    grec = ids[g]
    gx = np.empty(ngrid, np.float32)
    gy = np.empty(ngrid, np.float32)
    gw = np.empty(ngrid, np.float32)
    gh = np.empty(ngrid, np.float32)
    for u in range(ngrid):
        r = grec[u]
        gx[u] = bbox[r, 0]
        gy[u] = bbox[r, 1]
        gw[u] = bbox[r, 2]
        gh[u] = bbox[r, 3]
    grid = (gcls, gcol, gcx, gcy, gew, geh, grec, gx, gy, gw, gh)
    classes = (cstart, cexp, cminw, cmaxw, cminh, cmaxh, ccolw)
    return grid, classes


@kernel
def _grid_pairs(grid, classes, thresh, t3, class_span, capacity):
    """The pairs of gridded boxes with box_iou > thresh, both directions: (src, dst, count), with room for
    `capacity` pairs (only the first `capacity` are stored). Each box looks, in its own size class and those at
    most class_span exponents above, at the columns and the run of centres a partner must lie in, screens each by
    the two bounds, and computes box_iou for the survivors."""
    gcls, gcol, gcx, gcy, gew, geh, grec, gx, gy, gw, gh = grid
    cstart, cexp, cminw, cmaxw, cminh, cmaxh, ccolw = classes
    ngrid = gcls.shape[0]
    nclass = cexp.shape[0]
    src = np.empty(capacity, np.int64)
    dst = np.empty(capacity, np.int64)
    ne = 0
    for u in range(ngrid):
        ca = gcls[u]
        xa = gcx[u]
        ya = gcy[u]
        wa = gew[u]
        ha = geh[u]
        for cb in range(ca, nclass):
            if cexp[cb] - cexp[ca] > class_span:
                break
            rx = _reach(wa, cminw[cb], cmaxw[cb], t3)
            ry = _reach(ha, cminh[cb], cmaxh[cb], t3)
            if rx <= 0 or ry <= 0:
                continue
            rx += 1e-9 * (abs(xa) + wa + cmaxw[cb])      # cover float64 rounding of the bounds
            ry += 1e-9 * (abs(ya) + ha + cmaxh[cb])
            colw = ccolw[cb]
            end = cstart[cb + 1]
            col = _col_of(xa - rx, colw)
            last_col = _col_of(xa + rx, colw)
            start = cstart[cb]
            while col <= last_col:
                v = _first_in_cell(gcol, gcy, start, end, col, ya - ry)
                while v < end and gcol[v] == col and gcy[v] < ya + ry:
                    if cb != ca or v > u:
                        wb = gew[v]
                        hb = geh[v]
                        if abs(xa - gcx[v]) < (wa + wb) / 2 - t3 * max(wa, wb) + 1e-9 * (abs(xa) + wa + wb) \
                                and abs(ya - gcy[v]) < (ha + hb) / 2 - t3 * max(ha, hb) + 1e-9 * (abs(ya) + ha + hb):
                            if suppresses(gx[u], gy[u], gw[u], gh[u], gx[v], gy[v], gw[v], gh[v], thresh):
                                if ne + 2 <= capacity:
                                    src[ne] = grec[u]
                                    dst[ne] = grec[v]
                                    src[ne + 1] = grec[v]
                                    dst[ne + 1] = grec[u]
                                ne += 2
                    v += 1
                # Every position before v is in a column <= col, so the columns before gcol[v] are empty: skip them
                # (a wide box over a class of narrow ones spans up to 1e18 columns).
                if v == end:
                    break
                col = max(col + 1, gcol[v])
                start = v
    return src, dst, ne


@kernel
def _loose_and_special_pairs(bbox, ids, kind, thresh, src, dst, ne):
    """Appends to src, dst (as many as they hold, from position ne) the pairs with box_iou > thresh that involve a
    loose or a special box, each tested against every box; returns the new count."""
    m = ids.shape[0]
    capacity = src.shape[0]
    for ps in range(m):
        if kind[ps] == 0 or kind[ps] == 3:
            continue
        s = ids[ps]
        for po in range(m):
            if po == ps:
                continue
            o = ids[po]
            fwd = False
            bwd = False
            if kind[ps] == 1:
                # loose: finite edges both sides, so IoU is symmetric; a loose pair is taken from the lower position
                if kind[po] == 2 or kind[po] == 3 or (kind[po] == 1 and po < ps):
                    continue
                fwd = pair_suppresses(bbox, s, o, thresh)
                bwd = fwd
            else:
                fwd = pair_suppresses(bbox, s, o, thresh)
                # o -> s, unless o is special too (then o's own row adds it)
                bwd = kind[po] != 2 and pair_suppresses(bbox, o, s, thresh)
            if fwd:
                if ne < capacity:
                    src[ne] = s
                    dst[ne] = o
                ne += 1
            if bwd:
                if ne < capacity:
                    src[ne] = o
                    dst[ne] = s
                ne += 1
    return ne


@kernel
def _overlap_pairs(bbox, ids, thresh, t3, class_span, capacity):
    """The directed pairs (src[e], dst[e]) of records among `ids` with box_iou(src, dst) > thresh >= 0.

    Returns (src, dst, count); when count exceeds `capacity` only the first `capacity` pairs were stored, and the
    caller asks again with room for all. Boxes come in four kinds (edges l, r, t, b computed in float32 as box.c
    computes them):
    * gridded: finite edges, w, h > 0, edge extents W = r - l, H = b - t within _CONDITION of w, h. For two
      such boxes, float box_iou > thresh implies that along x the exact overlap of the edge intervals exceeds
      t3 * max(Wa, Wb) (t3 = thresh * _SHRINK, which covers every rounding), so |centre_a - centre_b| <
      (Wa + Wb)/2 - t3 * max(Wa, Wb) and min(Wa, Wb) > t3 * max(Wa, Wb); likewise along y. Boxes are grouped by
      the binary exponent of max(W, H); a box is only paired with classes at most `class_span` exponents above
      its own. Each class is a grid of narrow columns of centres, sorted by column then centre y; a box looks up
      the columns and the run of centres that a partner must lie in, screens each by the two bounds, and computes
      box_iou for the survivors.
    * edgeless: finite edges but w <= 0 or h <= 0: the intersection is never positive, no pairs.
    * loose: finite edges, w, h > 0 but not gridded (a tiny box far from the origin): tested against every box.
    * special: a NaN or infinite edge: tested against every box both ways (box.c's ternaries let a NaN edge lose,
      so such an IoU can be finite, and it is not symmetric).
    Between boxes with finite edges box_iou is symmetric (float + and * commute): each such pair found gives both
    directions.
    """
    kind, expo, cx, cy, ew, eh, ngrid = _classify_boxes(bbox, ids)
    grid, classes = _build_grid(bbox, ids, kind, expo, cx, cy, ew, eh, ngrid)
    src, dst, ne = _grid_pairs(grid, classes, thresh, t3, class_span, capacity)
    ne = _loose_and_special_pairs(bbox, ids, kind, thresh, src, dst, ne)
    return src, dst, ne


@kernel
def _csr(nrec, src, dst, ne):
    """Compressed rows of a directed edge list: the targets of record r are indices[indptr[r]:indptr[r + 1]]."""
    indptr = np.zeros(nrec + 1, np.int64)
    for e in range(ne):
        indptr[src[e] + 1] += 1
    for r in range(nrec):
        indptr[r + 1] += indptr[r]
    fill = indptr[:-1].copy()
    indices = np.empty(ne, np.int64)
    for e in range(ne):
        indices[fill[src[e]]] = dst[e]
        fill[src[e]] += 1
    return indptr, indices


def overlap_graph(bbox, ids, thresh):
    """CSR adjacency over all records of the pairs among `ids` with box_iou(a, b) > thresh (thresh >= 0)."""
    t3 = float(thresh) * _SHRINK
    if t3 < 1e-6:             # for a tiny thresh, float underflow could break the size bounds: require overlap only
        t3 = 0.0
    span = _class_span(t3)
    capacity = 8 * len(ids) + 1024
    while True:
        src, dst, ne = _overlap_pairs(bbox, ids, thresh, t3, span, capacity)
        if ne <= capacity:
            return _csr(bbox.shape[0], src, dst, ne)
        capacity = ne


def _class_span(t3):
    """How many binary exponents apart the larger sides of two gridded boxes may be when each side of one is more
    than t3 times the other's: a pair d exponents apart has a ratio below 2**(1-d)."""
    t3 = float(t3)
    if t3 <= 0:
        return 1 << 40
    span = -1
    while 2.0 ** (1 - (span + 1)) > t3:
        span += 1
    return span


@kernel
def dense_graph(bbox, ids, thresh):
    """Every directed pair with box_iou(a, b) > thresh: the fallback for thresh < 0, where disjoint boxes count."""
    nrec = bbox.shape[0]
    m = ids.shape[0]
    indptr = np.zeros(nrec + 1, np.int64)
    for pa in range(m):
        a = ids[pa]
        for pb in range(m):
            b = ids[pb]
            if pa != pb and pair_suppresses(bbox, a, b, thresh):
                indptr[a + 1] += 1
    for r in range(nrec):
        indptr[r + 1] += indptr[r]
    indices = np.empty(indptr[nrec], np.int64)
    fill = indptr[:-1].copy()
    for pa in range(m):
        a = ids[pa]
        for pb in range(m):
            b = ids[pb]
            if pa != pb and pair_suppresses(bbox, a, b, thresh):
                indices[fill[a]] = b
                fill[a] += 1
    return indptr, indices
