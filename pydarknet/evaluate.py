"""Evaluating a detector: Darknet's `detector valid` and `detector recall`, AlexeyAB's `detector map`, and one pure
function, compute_map, for VOC (all points and 11 points) and COCO (mAP@[.5:.95]) average precision.

    validate_detector        detector valid: VOC results/comp4_det_test_<class>.txt, or results/coco_results.json
    validate_detector_recall detector recall: Darknet's running recall line per image
    detector_map             detector map (AlexeyAB): AP per class, precision/recall/F1 at a threshold, mAP
    compute_map              AP from plain lists of boxes; COCO's number is pycocotools' COCOeval bbox number

Boxes in compute_map are corners (x1, y1, x2, y2) in any unit, continuous (no +1 pixel), as pycocotools and
AlexeyAB's relative boxes count them.
"""
import collections
import concurrent.futures
import math
import os
import re
import sys
import time

import numpy as np

from . import box
from .cfg import read_data, read_names
from .detector import class_count, load_network, network_boxes, network_input
from .errors import DarknetError
from .jit import kernel
from .image import load_image_color, resize_image
from .nms import do_nms_obj

from .data import label_path, read_boxes, read_list


__all__ = ["COCO_IDS", "compute_map", "detector_map", "label_path", "read_labels", "validate_detector",
           "validate_detector_recall"]

# detector.c's coco_ids: class index -> COCO category id
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)

# pycocotools' Params: iouThrs [.5:.05:.95], recThrs [0:.01:1], written as it writes them (0.7000000000000001 ...)
COCO_IOU_THRESHOLDS = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
COCO_RECALL_THRESHOLDS = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
COCO_MAX_DETS = 100

METHODS = ("voc", "voc11", "coco")


# ----------------------------------------------------------------------------------------------------------------
# compute_map: AP over plain data

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


# ----------------------------------------------------------------------------------------------------------------
# Reading the dataset

def read_labels(path):
    """A label file as (class ids, boxes x, y, w, h relative to the image), read as training reads it: a missing
    file or a malformed line is a warning (naming file and line), not an error."""
    rows = read_boxes(path)
    return rows[:, 4].astype(np.int64), np.ascontiguousarray(rows[:, :4])


def coco_image_id(path):
    """The COCO image id of a file: the number at the end of its name (COCO_val2014_000000000042.jpg -> 42), the
    number Darknet's get_coco_image_id reads after the last '_'."""
    stem = os.path.splitext(os.path.basename(path))[0]
    match = re.search(r"(\d+)$", stem)
    if not match:
        raise DarknetError(f"{path}: eval=coco needs image names that end in the COCO image id "
                           f"(like COCO_val2014_000000000042.jpg)")
    return int(match.group(1))


# ----------------------------------------------------------------------------------------------------------------
# Running the network over the valid= list

class _Progress:
    """'N/M images, R images/s, ETA T' on stderr, at most once a second and at the end."""

    def __init__(self, total, every=1.0):
        self.total, self.every, self.done = total, every, 0
        self.start = self.last = time.perf_counter()

    def update(self, n=1):
        self.done += n
        now = time.perf_counter()
        if now - self.last < self.every and self.done < self.total:
            return
        self.last = now
        rate = self.done / max(now - self.start, 1e-9)
        eta = (self.total - self.done) / rate
        print(f"{self.done}/{self.total} images, {rate:.2f} images/s, ETA {int(eta) // 60}:{int(eta) % 60:02d}",
              file=sys.stderr, flush=True)

    @property
    def seconds(self):
        return time.perf_counter() - self.start


def _read_ahead(paths, load, threads=4):
    """load(path) for each path, in order, on `threads` threads, at most 2*threads images ahead (Darknet's
    validate_detector keeps 4 loader threads busy)."""
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending = collections.deque()
        for path in paths:
            pending.append(pool.submit(load, path))
            if len(pending) > 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _predictions(net, paths, thresh, hier, nms, batch=1):
    """(path, image width, image height, Detections with relative boxes) for each image of the list, in order."""
    def load(path):
        im = load_image_color(path)
        return path, im, network_input(net, im)

    progress = _Progress(len(paths))
    chunk = []

    def run(chunk):
        x = chunk[0][2] if len(chunk) == 1 else np.stack([sized for _, _, sized in chunk])
        net.predict(x)
        for i, (path, im, _) in enumerate(chunk):
            yield path, im.shape[2], im.shape[1], network_boxes(net, im, thresh, hier, nms, batch_index=i)
        progress.update(len(chunk))

    with box.one_warning_for_dropped_detections():
        for item in _read_ahead(paths, load):
            chunk.append(item)
            if len(chunk) == batch:
                yield from run(chunk)
                chunk = []
        if chunk:
            yield from run(chunk)
    print(f"Total Detection Time: {progress.seconds:f} Seconds", file=sys.stderr)


def _pixel_boxes(dets, w, h):
    """Relative x, y, w, h -> pixels in float32, as get_network_boxes does with relative=0."""
    return dets.bbox * np.array([w, h, w, h], np.float32)


def _corners(bbox, shift):
    """print_detector_detections' corners: x -/+ w/2. (+ shift) in double, stored into floats."""
    x, y, w, h = (bbox[:, i].astype(np.float64) for i in range(4))
    return [(v + shift).astype(np.float32) for v in (x - w / 2., y - h / 2., x + w / 2., y + h / 2.)]


class _VocWriter:
    """print_detector_detections: one file per class, 'id prob xmin ymin xmax ymax' in 1-based pixels."""

    def __init__(self, prefix, outfile, names, classes):
        if len(names) < classes:
            raise DarknetError(f"{len(names)} class names for a network of {classes} classes: the VOC results "
                               f"files are named after the classes")
        self.paths = [os.path.join(prefix, f"{outfile}{names[j]}.txt") for j in range(classes)]
        self.files = [open(path, "w") for path in self.paths]
        self.classes = classes

    def write(self, index, path, dets, w, h):
        image_id = os.path.splitext(os.path.basename(path))[0]      # basecfg
        xmin, ymin, xmax, ymax = _corners(_pixel_boxes(dets, w, h), 1.)
        xmin[xmin < 1], ymin[ymin < 1] = 1, 1
        xmax[xmax > w], ymax[ymax > h] = w, h
        for i, j in zip(*np.nonzero(dets.prob[:, :self.classes])):
            self.files[j].write(f"{image_id} {float(dets.prob[i, j]):f} {float(xmin[i]):f} {float(ymin[i]):f} "
                                f"{float(xmax[i]):f} {float(ymax[i]):f}\n")

    def close(self):
        for f in self.files:
            f.close()


class _CocoWriter:
    """print_cocos: a JSON list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"} in 0-based pixels."""

    def __init__(self, prefix, outfile, classes):
        if classes > len(COCO_IDS):
            raise DarknetError(f"eval=coco maps classes to COCO's {len(COCO_IDS)} category ids; the network has "
                               f"{classes} classes")
        self.paths = [os.path.join(prefix, f"{outfile}.json")]
        self.file = open(self.paths[0], "w")
        self.file.write("[\n")
        self.first = True
        self.classes = classes

    def write(self, index, path, dets, w, h):
        image_id = coco_image_id(path)
        xmin, ymin, xmax, ymax = _corners(_pixel_boxes(dets, w, h), 0.)
        xmin[xmin < 0], ymin[ymin < 0] = 0, 0
        xmax[xmax > w], ymax[ymax > h] = w, h
        bw, bh = xmax - xmin, ymax - ymin
        for i, j in zip(*np.nonzero(dets.prob[:, :self.classes] > 0)):
            self.file.write(("" if self.first else ",\n") +
                            f'{{"image_id":{image_id}, "category_id":{COCO_IDS[j]}, "bbox":[{float(xmin[i]):f}, '
                            f'{float(ymin[i]):f}, {float(bw[i]):f}, {float(bh[i]):f}], '
                            f'"score":{float(dets.prob[i, j]):f}}}')
            self.first = False

    def close(self):
        self.file.write("\n]\n")
        self.file.close()


class _ImagenetWriter:
    """print_imagenet_detections: 'image# class# prob xmin ymin xmax ymax', both numbers 1-based."""

    def __init__(self, prefix, outfile, classes):
        self.paths = [os.path.join(prefix, f"{outfile}.txt")]
        self.file = open(self.paths[0], "w")
        self.classes = classes

    def write(self, index, path, dets, w, h):
        xmin, ymin, xmax, ymax = _corners(_pixel_boxes(dets, w, h), 0.)
        xmin[xmin < 0], ymin[ymin < 0] = 0, 0
        xmax[xmax > w], ymax[ymax > h] = w, h
        for i, j in zip(*np.nonzero(dets.prob[:, :self.classes] > 0)):
            self.file.write(f"{index + 1} {j + 1} {float(dets.prob[i, j]):f} {float(xmin[i]):f} {float(ymin[i]):f} "
                            f"{float(xmax[i]):f} {float(ymax[i]):f}\n")

    def close(self):
        self.file.close()


def validate_detector(datacfg, cfgfile, weightfile, outfile=None, batch=1, net=None):
    """Darknet's `detector valid`: detect on every image of the .data's valid= list (thresh .005, NMS .45) and
    write the results under results= (default results/): with eval=voc (the default) one file
    <outfile><class>.txt per class (outfile default comp4_det_test_), with eval=coco <outfile>.json (default
    coco_results), with eval=imagenet <outfile>.txt (default imagenet-detection).

    batch: images per network pass (the results do not depend on it). Returns the paths written.
    """
    data = read_data(datacfg)
    paths = read_list(data.path_of("valid", "data/train.list"))
    prefix = data.path_of("results", "results")
    kind = data.get("eval", "voc")
    if net is None:
        net = load_network(cfgfile, weightfile, verbose=True)
    print(f"Learning Rate: {net.learning_rate:g}, Momentum: {net.momentum:g}, Decay: {net.decay:g}", file=sys.stderr)
    classes = class_count(net)
    if kind == "coco":
        for path in paths:
            coco_image_id(path)         # every name checked before the first image is run
    os.makedirs(prefix, exist_ok=True)
    if kind == "coco":
        writer = _CocoWriter(prefix, outfile or "coco_results", classes)
    elif kind == "imagenet":
        writer = _ImagenetWriter(prefix, outfile or "imagenet-detection", classes)
    else:
        names = read_names(data.path_of("names", "data/names.list"))
        writer = _VocWriter(prefix, outfile or "comp4_det_test_", names, classes)
    try:
        for index, (path, w, h, dets) in enumerate(_predictions(net, paths, .005, .5, .45, batch)):
            writer.write(index, path, dets, w, h)
    finally:
        writer.close()
    return writer.paths


def _resized_predictions(net, paths, thresh, nms):
    """(path, Detections after do_nms_obj) for each image resized (not letterboxed) to the network."""
    with box.one_warning_for_dropped_detections():
        for path in paths:
            sized = resize_image(load_image_color(path), net.w, net.h)
            net.predict(sized)
            dets = network_boxes(net, sized, float(thresh), .5, nms=0)
            do_nms_obj(dets, 1, nms)
            yield path, dets


def validate_detector_recall(datacfg, cfgfile, weightfile, net=None):
    """Darknet's `detector recall`: the images of valid= resized (not letterboxed) to the network, thresh .001,
    do_nms_obj .4; a truth is found when a proposal overlaps it with IoU > .5. Prints Darknet's line per image on
    stderr and returns the totals."""
    data = read_data(datacfg)
    paths = read_list(data.path_of("valid", "data/train.txt"))
    if net is None:
        net = load_network(cfgfile, weightfile, verbose=True)
    thresh, iou_thresh, nms = np.float32(.001), np.float32(.5), .4
    total = correct = proposals = 0
    avg_iou = np.float32(0)
    for i, (path, dets) in enumerate(_resized_predictions(net, paths, thresh, nms)):
        live = dets.objectness > thresh
        proposals += int(np.count_nonzero(live))
        _, truths = read_labels(label_path(path))
        for t in truths:
            total += 1
            ious = box.box_iou(dets.bbox[live], t) if live.any() else np.zeros(0, np.float32)
            best_iou = max(np.float32(0), ious.max()) if len(ious) else np.float32(0)
            avg_iou = np.float32(avg_iou + best_iou)
            correct += bool(best_iou > iou_thresh)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_iou = np.float32(avg_iou * np.float32(100)) / np.float32(total)
            recall = 100. * correct / total if total else math.nan
        print(f"{i:5d} {correct:5d} {total:5d}\tRPs/Img: {float(np.float32(proposals) / np.float32(i + 1)):.2f}"
              f"\tIOU: {float(mean_iou):.2f}%\tRecall:{recall:.2f}%", file=sys.stderr)
    return {"images": len(paths), "proposals": proposals, "correct": correct, "total": total,
            "average_iou": float(avg_iou) / total if total else math.nan,
            "recall": correct / total if total else math.nan}


def _f32_ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float32(a) / np.float32(b))


def detector_map(datacfg, cfgfile=None, weightfile=None, thresh=.25, iou_thresh=.5, net=None, batch=1):
    """AlexeyAB's `detector map`: detect on the valid= images (thresh .005, NMS .45), read their labels, print
    the AP of each class (VOC all points at IoU > iou_thresh), TP/FP/precision/recall/F1 and average IoU at
    confidence `thresh`, the mAP; then the 11-point mAP and COCO's mAP@[.5:.95] on the same detections.

    net: an already loaded network (training's -map); valid= then defaults to train=, as AlexeyAB's does.
    Returns a dict: map, map11, coco_map, coco_map50, coco_map75, ap/ap11/coco_ap per class name, precision,
    recall, f1, tp, fp, fn, average_iou, detections, truths, images.
    """
    net, paths, names, classes = _map_setup(datacfg, cfgfile, weightfile, net)
    print("\n calculation mAP (mean average precision)...")
    counts = _ThresholdCounts(classes, thresh, iou_thresh)
    detections, truths = _map_records(net, paths, classes, counts, batch)
    voc = compute_map(detections, truths, classes, iou_thresh, "voc")
    voc11 = compute_map(detections, truths, classes, iou_thresh, "voc11")
    coco = compute_map(detections, truths, classes, method="coco")
    n_detections = sum(len(d) for d in detections.values())
    at_thresh = counts.summary()
    _print_map_report(names, counts, at_thresh, voc, voc11, coco, n_detections, thresh, iou_thresh)

    def by_name(ap):
        return {names[k]: ap[k] for k in range(classes)}

    return {"map": voc["map"], "map11": voc11["map"], "coco_map": coco["map"], "coco_map50": coco["map50"],
            "coco_map75": coco["map75"], "ap": by_name(voc["ap"]), "ap11": by_name(voc11["ap"]),
            "coco_ap": by_name(coco["ap"]), **at_thresh, "detections": n_detections,
            "truths": int(counts.truths.sum()), "images": len(paths), "thresh": thresh, "iou_thresh": iou_thresh}


def _map_setup(datacfg, cfgfile, weightfile, net):
    """The network (loaded unless given), the valid= images, the class names and the number of classes."""
    data = read_data(datacfg)
    if net is None:
        net = load_network(cfgfile, weightfile, verbose=True)
        paths = read_list(data.path_of("valid", "data/train.txt"))
    else:
        paths = read_list(data.path_of("valid", data.get("train", "data/train.txt")))
    classes = class_count(net)
    names = read_names(data.path_of("names", "data/names.list"))
    if len(names) < classes:
        raise DarknetError(f"{data.path}: names file has {len(names)} names, the network detects {classes} classes")
    return net, paths, names, classes


def _map_records(net, paths, classes, counts, batch):
    """Detections {image index: (class, score, x1, y1, x2, y2) rows} and truths {image index: (class, x1, y1, x2,
    y2) rows} in pixels, for compute_map; each image's records and truths also go into `counts`."""
    detections, truths = {}, {}
    for index, (path, w, h, dets) in enumerate(_predictions(net, paths, .005, 0, .45, batch)):
        ids, labels = read_labels(label_path(path))
        valid = (ids >= 0) & (ids < classes)
        ids, labels = ids[valid], labels[valid]
        scale = np.array([w, h, w, h], np.float64)
        truths[index] = np.column_stack([ids, box.box_corners(labels).astype(np.float64) * scale])
        rows, cols = np.nonzero(dets.prob[:, :classes] > 0)      # detection by detection, class by class
        scores = dets.prob[rows, cols]
        boxes = dets.bbox[rows]
        detections[index] = np.column_stack([cols, scores, box.box_corners(boxes).astype(np.float64) * scale])
        counts.add(boxes, cols, scores, ids, labels)
    return detections, truths


class _ThresholdCounts:
    """AlexeyAB's counts at the confidence threshold, per class: true and false positives, the IoU sum of the true
    positives, and the truths."""

    def __init__(self, classes, thresh, iou_thresh):
        self.tp = np.zeros(classes, np.int64)
        self.fp = np.zeros(classes, np.int64)
        self.iou_sum = np.zeros(classes, np.float32)
        self.truths = np.zeros(classes, np.int64)
        self.classes = classes
        self.thresh, self.iou_thresh = np.float32(thresh), np.float32(iou_thresh)

    def add(self, boxes, cols, scores, ids, labels):
        """One image's records (box, class, score of each detection and class) and truths (class ids, boxes)."""
        self.truths += np.bincount(ids, minlength=self.classes)
        # each record takes the truth of its class with the highest IoU > iou_thresh; it is a true positive unless
        # an earlier record of this image took the same truth (or also none)
        if len(cols) and len(ids):
            ious = box.box_iou(boxes[:, None, :], labels[None, :, :])
            ious = np.where((ids[None, :] == cols[:, None]) & (ious > self.iou_thresh), ious, np.float32(0))
            truth_index = np.where(ious.max(axis=1) > 0, ious.argmax(axis=1), -1)
            best = ious.max(axis=1)
        else:
            truth_index = np.full(len(cols), -1)
            best = np.zeros(len(cols), np.float32)
        seen = set()
        for r in range(len(cols)):
            ti = int(truth_index[r])
            if scores[r] > self.thresh:
                if ti > -1 and ti not in seen:
                    self.tp[cols[r]] += 1
                    self.iou_sum[cols[r]] += best[r]
                else:
                    self.fp[cols[r]] += 1
            seen.add(ti)

    def summary(self):
        """All classes together: precision, recall, F1 (in float32, as AlexeyAB's), tp, fp, fn, average_iou."""
        all_tp, all_fp = int(self.tp.sum()), int(self.fp.sum())
        n_truths = int(self.truths.sum())
        precision = _f32_ratio(all_tp, all_tp + all_fp)
        recall = _f32_ratio(all_tp, n_truths)
        f1 = _f32_ratio(2 * np.float32(precision) * np.float32(recall), np.float32(precision) + np.float32(recall))
        average_iou = _f32_ratio(self.iou_sum.sum(), all_tp + all_fp) if all_tp + all_fp else 0.0
        return {"precision": precision, "recall": recall, "f1": f1, "tp": all_tp, "fp": all_fp,
                "fn": n_truths - all_tp, "average_iou": average_iou}


def _print_map_report(names, counts, at_thresh, voc, voc11, coco, n_detections, thresh, iou_thresh):
    """AlexeyAB's table: AP and TP/FP per class, the counts at `thresh`, then the three mAPs."""
    print(f"\n detections_count = {n_detections}, unique_truth_count = {int(counts.truths.sum())}  ")
    for k in range(counts.classes):
        ap = voc["ap"][k]
        shown = "  n/a " if math.isnan(ap) else f"{ap * 100:2.2f}%"
        note = "  (no ground truth: left out of the mean)" if math.isnan(ap) else ""
        print(f"class_id = {k}, name = {names[k]}, ap = {shown}   \t (TP = {counts.tp[k]}, FP = {counts.fp[k]}) {note}")
    print(f"\n for conf_thresh = {thresh:1.2f}, precision = {at_thresh['precision']:1.2f}, "
          f"recall = {at_thresh['recall']:1.2f}, F1-score = {at_thresh['f1']:1.2f} ")
    print(f" for conf_thresh = {thresh:0.2f}, TP = {at_thresh['tp']}, FP = {at_thresh['fp']}, FN = {at_thresh['fn']}, "
          f"average IoU = {at_thresh['average_iou'] * 100:2.2f} % ")
    print(f"\n IoU threshold = {iou_thresh * 100:2.0f} %, used Area-Under-Curve for each unique Recall ")
    print(f" mean average precision (mAP@{iou_thresh:0.2f}) = {voc['map']:f}, or {voc['map'] * 100:2.2f} % ")
    print(f" mean average precision (mAP@{iou_thresh:0.2f}, 11 Recall-points) = {voc11['map']:f}, "
          f"or {voc11['map'] * 100:2.2f} % ")
    print(f" MS COCO mAP@[.50:.95] (101 Recall-points) = {coco['map']:f}, or {coco['map'] * 100:2.2f} %   "
          f"(mAP@.50 = {coco['map50'] * 100:2.2f} %, mAP@.75 = {coco['map75'] * 100:2.2f} %)")
