"""mAP arithmetic, pure: compute_map for VOC (all points and 11 points) and COCO (mAP@[.5:.95]) average precision.

Boxes in compute_map are corners (x1, y1, x2, y2) in any unit, continuous (no +1 pixel), as pycocotools and
AlexeyAB's relative boxes count them; COCO's number is pycocotools' COCOeval bbox number.
"""
import math

import numpy as np

from .jit import kernel


# pycocotools' Params: iouThrs [.5:.05:.95], recThrs [0:.01:1], written as it writes them (0.7000000000000001 ...)
COCO_IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)


COCO_RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)


COCO_MAX_DETS = 100


METHODS = ("voc", "voc11", "coco")


@kernel(inline="always")
def _iou_xywh(ax, ay, aw, ah, bx, by, bw, bh):
    """pycocotools' bbIou (maskApi.c) without crowd, in double: 0 unless the boxes overlap.

    Not box.iou: the boxes are left, top, width, height, the edges are x + w (not centre -+ w/2), the arithmetic is
    double, and a touching or empty overlap is 0 before any division; pycocotools' numbers need all four."""
    w = min(aw + ax, bw + bx) - max(ax, bx)
    if w <= 0:
        return 0.0
    h = min(ah + ay, bh + by) - max(ay, by)
    if h <= 0:
        return 0.0
    i = w * h
    return i / (aw * ah + bw * bh - i)


@kernel
def _match(det_key, det_box, gt_key, gt_box, thresholds, coco, out):
    """Match detections to truths, group by group (a group is one class in one image; keys sorted, detections
    highest score first within a group). out[t, d]: 1 true positive, 0 false positive, -1 ignored.

    coco: pycocotools' evaluateImg: each detection takes the unmatched truth of highest IoU >= t (ties to the later
    truth); unmatched detections outside the 'all' area range are ignored.
    voc: the VOC devkit and AlexeyAB: each detection takes the truth of highest IoU (the first of ties); it is a true
    positive when that IoU > t and the truth was not taken before, otherwise a false positive.
    """
    nd = det_key.shape[0]
    ng = gt_key.shape[0]
    g0 = 0
    d0 = 0
    while d0 < nd:
        key = det_key[d0]
        d1 = d0
        while d1 < nd and det_key[d1] == key:
            d1 += 1
        while g0 < ng and gt_key[g0] < key:
            g0 += 1
        g1 = g0
        while g1 < ng and gt_key[g1] == key:
            g1 += 1
        n = g1 - g0
        ious = np.empty((d1 - d0, n))
        for d in range(d0, d1):
            for g in range(g0, g1):
                ious[d - d0, g - g0] = _iou_xywh(det_box[d, 0], det_box[d, 1], det_box[d, 2], det_box[d, 3],
                                                 gt_box[g, 0], gt_box[g, 1], gt_box[g, 2], gt_box[g, 3])
        taken = np.zeros(n, np.bool_)
        for t in range(thresholds.shape[0]):
            taken[:] = False
            for d in range(d1 - d0):
                m = -1
                if coco:
                    best = min(thresholds[t], 1 - 1e-10)
                    for g in range(n):
                        if taken[g] or ious[d, g] < best:
                            continue
                        best = ious[d, g]
                        m = g
                    if m >= 0:
                        taken[m] = True
                        out[t, d0 + d] = 1
                    else:
                        area = det_box[d0 + d, 2] * det_box[d0 + d, 3]
                        out[t, d0 + d] = -1 if area < 0.0 or area > 1e10 else 0
                else:
                    best = -np.inf
                    for g in range(n):
                        if ious[d, g] > best:
                            best = ious[d, g]
                            m = g
                    if m >= 0 and best > thresholds[t] and not taken[m]:
                        taken[m] = True
                        out[t, d0 + d] = 1
                    else:
                        out[t, d0 + d] = 0
        d0 = d1


def _rows(rows, width, what, image):
    a = np.asarray(rows if len(rows) else np.zeros((0, width)), dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != width:
        raise ValueError(f"{what} of image {image!r}: expected rows of {width} numbers, got shape {a.shape}")
    return a


def _image_order(*dicts):
    """Images in sorted order (pycocotools sorts its image ids), or as first seen when the keys do not sort."""
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    try:
        return sorted(keys)
    except TypeError:
        return keys


def _grouped(by_image, images, class_ids, width, what):
    """All rows of all images in one array, and each row's group key: class index * len(images) + image index.
    Rows of classes not in class_ids are left out."""
    parts, image_index = [], []
    for i, image in enumerate(images):
        a = _rows(by_image.get(image, ()), width, what, image)
        parts.append(a)
        image_index.append(np.full(len(a), i, np.int64))
    rows = np.concatenate(parts) if parts else np.zeros((0, width))
    image_index = np.concatenate(image_index) if parts else np.zeros(0, np.int64)
    ids = np.asarray(class_ids, np.int64)
    sorter = np.argsort(ids, kind="stable")
    pos = np.minimum(np.searchsorted(ids, rows[:, 0], sorter=sorter), max(len(ids) - 1, 0))
    known = (ids[sorter[pos]] == rows[:, 0]) if len(ids) else np.zeros(len(rows), bool)
    return (sorter[pos] * len(images) + image_index)[known], rows[known]


def _xywh(corners):
    x1, y1, x2, y2 = corners.T
    return np.ascontiguousarray(np.stack([x1, y1, x2 - x1, y2 - y1], axis=1))


def _ap_voc(tp, fp, npos):
    """VOC2010+ all-points AP: area under the precision envelope at every recall step."""
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    mrec = np.concatenate(([0.], rec, [1.]))
    mpre = np.concatenate(([0.], prec, [0.]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def _ap_voc11(tp, fp, npos):
    """VOC2007 11-point AP: the mean of the highest precision at recall >= 0, .1, ..., 1 (points k/10, exactly)."""
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return float(sum(prec[rec >= r].max() if np.any(rec >= r) else 0.0 for r in np.arange(11) / 10) / 11)


def _ap_coco(tp, fp, npos):
    """pycocotools' accumulate for one class and IoU threshold: the mean of the 101 recall-point precisions."""
    rc = tp / npos
    pr = np.maximum.accumulate((tp / (fp + tp + np.spacing(1)))[::-1])[::-1]
    inds = np.searchsorted(rc, COCO_RECALL_THRESHOLDS, side="left")
    q = np.where(inds < len(pr), pr[np.minimum(inds, len(pr) - 1)] if len(pr) else 0.0, 0.0)
    return float(np.mean(q))


def compute_map(detections_by_image, ground_truth_by_image, classes, iou_thresh=.5, method="voc"):
    """Average precision per class and its mean.

    detections_by_image: {image: [(class, score, x1, y1, x2, y2), ...]} (or an (n, 6) array per image);
    ground_truth_by_image: {image: [(class, x1, y1, x2, y2), ...]} (or (n, 5)); an image may be in either.
    classes: the number of classes (ids 0..classes-1) or the class ids to evaluate; other classes are left out.
    method: "voc" (VOC2010+ all points, AlexeyAB's default), "voc11" (VOC2007 11 points) at IoU > iou_thresh,
    or "coco": pycocotools' COCOeval bbox (IoU >= .5:.05:.95, 101 recall points, area 'all', 100 detections per
    image and class, no crowd); iou_thresh is not used there.

    Returns {"method", "ap": {class: AP}, "map", "truths": {class: count}}; "coco" adds "ap50", "ap75", "map50",
    "map75" (pycocotools' stats[1] and stats[2]; "map" is stats[0]). A class without ground truth has AP nan and
    is left out of the means, as pycocotools leaves it out; the mean is nan when no class has ground truth.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    class_ids = list(range(classes)) if isinstance(classes, (int, np.integer)) else [int(c) for c in classes]
    images = _image_order(ground_truth_by_image, detections_by_image)
    coco = method == "coco"
    thresholds = COCO_IOU_THRESHOLDS if coco else np.array([float(iou_thresh)])

    det_key, dets = _grouped(detections_by_image, images, class_ids, 6, "detections")
    gt_key, gts = _grouped(ground_truth_by_image, images, class_ids, 5, "ground truth")
    order = np.lexsort((-dets[:, 1], det_key))                  # by group, then score high to low, stable
    det_key, dets = det_key[order], dets[order]
    if coco and len(det_key):                                   # maxDets: the first 100 of each group
        first = np.flatnonzero(np.r_[True, det_key[1:] != det_key[:-1]])
        rank = np.arange(len(det_key)) - np.repeat(first, np.diff(np.r_[first, len(det_key)]))
        keep = rank < COCO_MAX_DETS
        det_key, dets = det_key[keep], dets[keep]
    order = np.argsort(gt_key, kind="stable")
    gt_key, gts = gt_key[order], gts[order]

    matched = np.zeros((len(thresholds), len(det_key)), np.int8)
    _match(det_key, _xywh(dets[:, 2:]), gt_key, _xywh(gts[:, 1:]), thresholds, coco, matched)

    det_class = det_key // max(len(images), 1)
    gt_counts = np.bincount(gt_key // max(len(images), 1), minlength=len(class_ids))
    ap_of = {"voc": _ap_voc, "voc11": _ap_voc11, "coco": _ap_coco}[method]
    per_threshold = np.full((len(class_ids), len(thresholds)), np.nan)
    for k in range(len(class_ids)):
        npos = int(gt_counts[k])
        if npos == 0:
            continue
        lo, hi = np.searchsorted(det_class, [k, k + 1])
        ranked = np.argsort(-dets[lo:hi, 1], kind="mergesort")   # images in order, then score: pycocotools' sort
        m = matched[:, lo:hi][:, ranked]
        tp = np.cumsum(m == 1, axis=1).astype(np.float64)
        fp = np.cumsum(m == 0, axis=1).astype(np.float64)
        for t in range(len(thresholds)):
            per_threshold[k, t] = ap_of(tp[t], fp[t], npos)

    def summary(values):
        return {c: float(v) for c, v in zip(class_ids, values)}

    def mean(values):
        values = values[~np.isnan(values)]
        return float(np.mean(values)) if len(values) else math.nan

    ap = per_threshold.mean(axis=1)
    result = {"method": method, "ap": summary(ap), "map": mean(ap),
              "truths": {c: int(n) for c, n in zip(class_ids, gt_counts)}}
    if coco:
        result.update(ap50=summary(per_threshold[:, 0]), ap75=summary(per_threshold[:, 5]),
                      map50=mean(per_threshold[:, 0]), map75=mean(per_threshold[:, 5]))
    return result
