"""`detector map` (AlexeyAB's): AP per class, precision/recall/F1 at a threshold, mAP, then the 11-point and COCO
numbers on the same detections (metrics.py's arithmetic).
"""
import math

import numpy as np

from .. import box
from ..cfg import read_data, read_names
from ..data.check import warn_classes_mismatch
from .pipeline import class_count
from ..network import load_network
from ..errors import DarknetError
from ..data.labels import label_path, read_list, read_labels
from ..metrics import compute_map
from .valid import predictions
from ..parallel.comm import world
from ..parallel.shard import by_shares


def _f32_ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float32(a) / np.float32(b))


def detector_map(datacfg, cfgfile=None, weightfile=None, thresh=.25, iou_thresh=.5, net=None, batch=1, comm=None):
    """AlexeyAB's `detector map`: detect on the valid= images (thresh .005, NMS .45), read their labels, print
    the AP of each class (VOC all points at IoU > iou_thresh), TP/FP/precision/recall/F1 and average IoU at
    confidence `thresh`, the mAP; then the 11-point mAP and COCO's mAP@[.5:.95] on the same detections.

    net: an already loaded network (training's -map); valid= then defaults to train=, as AlexeyAB's does.
    comm: the ranks that share the list (default parallel.comm.world()): each detects on its share, rank 0 prints
    what one process prints, every rank returns rank 0's dict.
    Returns a dict: map, map11, coco_map, coco_map50, coco_map75, ap/ap11/coco_ap per class name, precision,
    recall, f1, tp, fp, fn, average_iou, detections, truths, images.
    """
    comm = comm or world()
    net, paths, names, classes = _map_setup(datacfg, cfgfile, weightfile, net, comm.rank)
    if comm.rank:
        _map_records(comm, net, paths, classes, None, batch)
        return comm.broadcast_object(None)
    print("\n calculation mAP (mean average precision)...")
    counts = _ThresholdCounts(classes, thresh, iou_thresh)
    detections, truths = _map_records(comm, net, paths, classes, counts, batch)
    voc = compute_map(detections, truths, classes, iou_thresh, "voc")
    voc11 = compute_map(detections, truths, classes, iou_thresh, "voc11")
    coco = compute_map(detections, truths, classes, method="coco")
    n_detections = sum(len(d) for d in detections.values())
    at_thresh = counts.summary()
    _print_map_report(names, counts, at_thresh, voc, voc11, coco, n_detections, thresh, iou_thresh)

    def by_name(ap):
        return {names[k]: ap[k] for k in range(classes)}

    return comm.broadcast_object(
        {"map": voc["map"], "map11": voc11["map"], "coco_map": coco["map"], "coco_map50": coco["map50"],
         "coco_map75": coco["map75"], "ap": by_name(voc["ap"]), "ap11": by_name(voc11["ap"]),
         "coco_ap": by_name(coco["ap"]), **at_thresh, "detections": n_detections,
         "truths": int(counts.truths.sum()), "images": len(paths), "thresh": thresh, "iou_thresh": iou_thresh})


def _map_setup(datacfg, cfgfile, weightfile, net, rank=0):
    """The network (loaded unless given), the valid= images, the class names and the number of classes."""
    data = read_data(datacfg)
    key = "valid" if net is None or "valid" in data else "train"     # training's -map: train= without valid=
    paths = read_list(data.file_of(key, "data/train.txt"))
    names = read_names(data.file_of("names", "data/names.list"))
    if net is None:
        net = load_network(cfgfile, weightfile, verbose=not rank)
        if not rank:
            warn_classes_mismatch(data, cfgfile)
    classes = class_count(net)
    if len(names) < classes:
        raise DarknetError(f"{data.path}: names file has {len(names)} names, the network detects {classes} classes")
    return net, paths, names, classes


def _map_records(comm, net, paths, classes, counts, batch):
    """Detections {image index: (class, score, x1, y1, x2, y2) rows} and truths {image index: (class, x1, y1, x2,
    y2) rows} in pixels, for compute_map; each image's records and truths also go into `counts`. On several ranks
    each detects on its share and rank 0 alone (counts=None elsewhere) gets them all, in the list's order."""
    def work(part):
        for path, w, h, dets in predictions(net, part, .005, 0, .45, batch, quiet=comm.rank > 0):
            yield _image_records(path, w, h, dets, classes)

    detections, truths = {}, {}
    for index, (truth, detected, record) in enumerate(by_shares(comm, paths, work)):
        truths[index], detections[index] = truth, detected
        counts.add(*record)
    return detections, truths


def _image_records(path, w, h, dets, classes):
    """One image's truth rows and detection rows in pixels, and what _ThresholdCounts.add takes of it."""
    ids, labels = read_labels(label_path(path))
    valid = (ids >= 0) & (ids < classes)
    ids, labels = ids[valid], labels[valid]
    scale = np.array([w, h, w, h], np.float64)
    truth = np.column_stack([ids, box.box_corners(labels).astype(np.float64) * scale])
    rows, cols = np.nonzero(dets.prob[:, :classes] > 0)      # detection by detection, class by class
    scores = dets.prob[rows, cols]
    boxes = dets.bbox[rows]
    detected = np.column_stack([cols, scores, box.box_corners(boxes).astype(np.float64) * scale])
    return truth, detected, (boxes, cols, scores, ids, labels)


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
