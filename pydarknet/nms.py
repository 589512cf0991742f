"""Non-maximum suppression: Darknet's do_nms_sort / do_nms_obj, record for record, compiled with numba.

Both start with box.c's swap loop (each objectness==0 record is swapped with the last live one, not a stable
partition), sort with glibc's qsort and nms_comparator (sort.py), and make a greedy pass: each kept record zeroes
the later ones whose box_iou with it exceeds thresh. do_nms_sort_quadratic / do_nms_obj_quadratic transcribe those
loops as they are, quadratic in the number of records; they are the reference the fast versions are tested against.

The fast versions differ only in how they find the overlapping pairs: instead of testing every later box against
every kept box for each class, the pairs with IoU > thresh are found once for all classes (nms_pairs.py: a grid over
box centres, by size class, with bounds that provably keep every pair), and each class's greedy pass walks
that adjacency. Without a NaN key the sort is a radix sort, which gives glibc's order then. The result is identical
to the quadratic loops, ties and NaNs included. Small inputs (QUADRATIC_PAIRS) take the quadratic loops.

Darknet's NMS takes the IoU as 0 where the intersection or the union is 0 (box.iou gives NaN or inf there): see
nms_pairs.suppresses.
"""
import numpy as np

from .jit import kernel
from .nms_pairs import dense_graph, overlap_graph, pair_suppresses
from .sort import MSORT_DEPTH, msort, msort_stack, radix_sort_desc


_F32 = np.float32


__all__ = ["do_nms_sort", "do_nms_obj", "do_nms_sort_quadratic", "do_nms_obj_quadratic"]


def _live_first(objectness):
    """do_nms_sort/do_nms_obj's first loop: (order, total), the records' order after it and how many are live."""
    order = np.arange(objectness.shape[0])
    return order, _zero_objectness_to_end(objectness, order)


@kernel
def _zero_objectness_to_end(objectness, order):
    """The swap loop on order (0..n-1): each objectness==0 record is swapped with the last live one (not stable).
    Returns the number of live records."""
    n = objectness.shape[0]
    k = n - 1
    i = 0
    while i <= k:
        if objectness[order[i]] == 0:
            tmp = order[i]
            order[i] = order[k]
            order[k] = tmp
            k -= 1
        else:
            i += 1
    return k + 1


def _live_graph(dets, order, total, thresh):
    """The overlap graph of the live records (the first `total` of `order`)."""
    ids = np.ascontiguousarray(order[:total])
    if thresh >= 0:
        return overlap_graph(dets.bbox, ids, thresh)
    if thresh < 0:
        return dense_graph(dets.bbox, ids, thresh)
    return np.zeros(len(dets) + 1, np.int64), np.zeros(0, np.int64)     # NaN thresh: nothing is ever > it


@kernel
def _nms_sort_classes(prob_t, order, total, classes, indptr, indices):
    """do_nms_sort's per-class loop over prob_t (classes, n): qsort the live records by prob[k], then the greedy
    pass (each record with prob[k] != 0 zeroes prob[k] of the later records its IoU exceeds thresh with)."""
    n = order.shape[0]
    seen = np.empty(n, np.bool_)
    key = np.empty(total, np.float32)
    tkey = np.empty(total, np.float32)
    tidx = np.empty(total, np.int64)
    ua = np.empty(total, np.uint32)
    ub = np.empty(total, np.uint32)
    for k in range(classes):
        p = prob_t[k]
        live = False
        has_nan = False
        for i in range(total):
            v = p[order[i]]
            key[i] = v
            if v != 0:
                live = True
            if np.isnan(v):
                has_nan = True
        if not live:          # every key compares equal: the merge sort keeps the order, and nothing is kept
            continue
        if has_nan:
            msort(key, order, total, tkey, tidx, np.empty((3, MSORT_DEPTH), np.int64))
        else:
            radix_sort_desc(key, order, total, ua, ub, tidx)
        # greedy pass; the graph only links live records, so "not seen yet" is "later in this order"
        seen[:] = False
        for i in range(total):
            a = order[i]
            seen[a] = True
            if p[a] == 0:
                continue
            for e in range(indptr[a], indptr[a + 1]):
                b = indices[e]
                if not seen[b]:
                    p[b] = 0


@kernel
def _nms_obj_pass(objectness, prob, order, total, classes, indptr, indices):
    """do_nms_obj after the swap loop: qsort by objectness, then suppress objectness and every prob."""
    n = order.shape[0]
    key = np.empty(total, np.float32)
    tkey = np.empty(total, np.float32)
    tidx = np.empty(total, np.int64)
    for i in range(total):
        key[i] = objectness[order[i]]
    msort(key, order, total, tkey, tidx, np.empty((3, MSORT_DEPTH), np.int64))
    pos = np.full(n, -1, np.int64)
    for i in range(total):
        pos[order[i]] = i
    for i in range(total):
        a = order[i]
        if objectness[a] == 0:
            continue
        for e in range(indptr[a], indptr[a + 1]):
            b = indices[e]
            if pos[b] > i and objectness[b] != 0:
                objectness[b] = 0
                for k in range(classes):
                    prob[b, k] = 0


def _check_classes(dets, classes):
    classes = int(classes)
    if classes > dets.prob.shape[1]:
        raise ValueError(f"classes={classes} but the records hold {dets.prob.shape[1]} probabilities")
    return classes


# Up to this many pair tests (kept records x live records, summed over the sorts) the quadratic loops run: as fast
# there as the graph (1-5 ms for a photo's few hundred live records), and two small kernels to load instead of
# five with the modules they need (0.1 s of a one-image detect process).
QUADRATIC_PAIRS = 2_000_000


def _quadratic_is_cheap(kept_per_sort, total):
    return kept_per_sort * total <= QUADRATIC_PAIRS


def _sort_buffers(total):
    return np.empty(total, np.float32), np.empty(total, np.float32), np.empty(total, np.int64), msort_stack()


def do_nms_sort(dets, classes, thresh, quadratic=None):
    """box.c do_nms_sort, in place: reorders the records and zeroes suppressed class probabilities.

    Records with objectness == 0 are first swapped to the end (darknet's swap loop, not a stable partition) and
    take no further part. Then, class by class, the live records are sorted by prob[k] (descending, stable, glibc's
    merge sort) and each one whose prob[k] != 0 zeroes prob[k] of every later record with IoU > thresh.
    sort_class of the live records ends at classes-1, as darknet leaves it.
    `quadratic`: True for box.c's loops as they are, False for the overlap graph, None to choose by size.
    """
    classes = _check_classes(dets, classes)
    thresh = _F32(thresh)
    order, total = _live_first(dets.objectness)
    if classes > 0 and total > 0:
        prob_t = np.ascontiguousarray(dets.prob[:, :classes].T)     # one class per row: the sorts read rows
        # A class that no live record has a probability for is skipped: its stable sort of equal keys keeps the
        # order and it suppresses nothing (most of COCO's 80 in a frame).
        active = np.flatnonzero((prob_t[:, order[:total]] != 0).any(axis=1))
        part = np.ascontiguousarray(prob_t[active])
        if quadratic is None:
            quadratic = _quadratic_is_cheap(np.count_nonzero(part), total)
        if not active.size:
            pass
        elif quadratic:
            _nms_sort_quadratic(dets.bbox, part, order, total, active.size, thresh, *_sort_buffers(total))
        else:
            indptr, indices = _live_graph(dets, order, total, thresh)
            _nms_sort_classes(part, order, total, active.size, indptr, indices)
        prob_t[active] = part
        dets.prob[:, :classes] = prob_t.T
    dets.permute(order)
    if classes > 0:
        dets.sort_class[:total] = classes - 1


def do_nms_obj(dets, classes, thresh, quadratic=None):
    """box.c do_nms_obj, in place: the same swap loop, one sort by objectness (sort_class = -1 on live records), and
    each kept record zeroes objectness and prob[0:classes] of later live records with IoU > thresh.
    `quadratic` as in do_nms_sort."""
    classes = _check_classes(dets, classes)
    thresh = _F32(thresh)
    order, total = _live_first(dets.objectness)
    if total > 0:
        if quadratic is None:
            quadratic = _quadratic_is_cheap(total, total)
        if quadratic:
            _nms_obj_quadratic(dets.bbox, dets.objectness, dets.prob, order, total, classes, thresh,
                               *_sort_buffers(total))
        else:
            indptr, indices = _live_graph(dets, order, total, thresh)
            _nms_obj_pass(dets.objectness, dets.prob, order, total, classes, indptr, indices)
    dets.permute(order)
    dets.sort_class[:total] = -1


@kernel
def _nms_sort_quadratic(bbox, prob_t, order, total, classes, thresh, key, tkey, tidx, stack):
    """do_nms_sort after the swap loop, over prob_t (classes, n) and the live records order[:total]; key, tkey,
    tidx (total floats, floats, ints) and stack are msort's buffers."""
    for k in range(classes):
        p = prob_t[k]
        for i in range(total):                        # dets[i].sort_class = k
            key[i] = p[order[i]]
        msort(key, order, total, tkey, tidx, stack)   # qsort(dets, total, sizeof(detection), nms_comparator)
        for i in range(total):
            a = order[i]
            if p[a] == 0:
                continue
            for j in range(i + 1, total):
                b = order[j]
                if pair_suppresses(bbox, a, b, thresh):
                    p[b] = 0


@kernel
def _nms_obj_quadratic(bbox, objectness, prob, order, total, classes, thresh, key, tkey, tidx, stack):
    """do_nms_obj after the swap loop, over the live records order[:total] (msort's buffers as above)."""
    for i in range(total):                            # dets[i].sort_class = -1
        key[i] = objectness[order[i]]
    msort(key, order, total, tkey, tidx, stack)
    for i in range(total):
        a = order[i]
        if objectness[a] == 0:
            continue
        for j in range(i + 1, total):
            b = order[j]
            if objectness[b] == 0:
                continue
            if pair_suppresses(bbox, a, b, thresh):
                objectness[b] = 0
                for k in range(classes):
                    prob[b, k] = 0


def do_nms_sort_quadratic(dets, classes, thresh):
    """box.c do_nms_sort as it is written, in place: the same result as do_nms_sort, in time quadratic in the
    number of live records (each class tests every later record against every kept one)."""
    do_nms_sort(dets, classes, thresh, quadratic=True)


def do_nms_obj_quadratic(dets, classes, thresh):
    """box.c do_nms_obj as it is written, in place: the same result as do_nms_obj, in quadratic time."""
    do_nms_obj(dets, classes, thresh, quadratic=True)
