"""`detector valid` and `detector recall` (Darknet's validate_detector, validate_detector_recall): the network
over the valid= list, and the result writers.

    validate_detector        detector valid: VOC results/comp4_det_test_<class>.txt, or results/coco_results.json
    validate_detector_recall detector recall: Darknet's running recall line per image
"""
import collections
import concurrent.futures
import math
import os
import re
import sys
import time

import numpy as np

from .. import box
from ..cfg import read_data, read_names
from ..data.check import warn_classes_mismatch
from .pipeline import class_count, network_boxes, network_input
from ..network import load_network
from ..errors import DarknetError
from ..image import load_image_color, resize_image
from ..nms import do_nms_obj
from ..data.labels import label_path, read_list, read_labels
from ..data.coco import COCO_IDS
from ..parallel.comm import world
from ..parallel.shard import by_shares


def coco_image_id(path):
    """The COCO image id of a file: the number at the end of its name (COCO_val2014_000000000042.jpg -> 42), the
    number Darknet's get_coco_image_id reads after the last '_'."""
    stem = os.path.splitext(os.path.basename(path))[0]
    match = re.search(r"(\d+)$", stem)
    if not match:
        raise DarknetError(f"{path}: eval=coco needs image names that end in the COCO image id "
                           f"(like COCO_val2014_000000000042.jpg)")
    return int(match.group(1))


class _Progress:
    """'N/M images, R images/s, ETA T' on stderr, at most once a second and at the end."""

    def __init__(self, total, every=1.0, quiet=False):
        self.total, self.every, self.done, self.quiet = total, every, 0, quiet
        self.start = self.last = time.perf_counter()

    def update(self, n=1):
        self.done += n
        now = time.perf_counter()
        if self.quiet or now - self.last < self.every and self.done < self.total:
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


def predictions(net, paths, thresh, hier, nms, batch=1, quiet=False):
    """(path, image width, image height, Detections with relative boxes) for each image of the list, in order.
    quiet: no progress lines (the ranks other than 0 of a run on several)."""
    def load(path):
        im = load_image_color(path)
        return path, im, network_input(net, im)

    progress = _Progress(len(paths), quiet=quiet)
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
    if not quiet:
        print(f"Total Detection Time: {progress.seconds:f} Seconds", file=sys.stderr)


def shared_predictions(comm, net, paths, thresh, hier, nms, batch, classes):
    """predictions() over the list, on several ranks each over its share: every image's (path, w, h, Detections)
    in list order on rank 0 (on several ranks only the records with a nonzero probability of the first `classes`,
    which are all the writers and scorers read), nothing on the other ranks."""
    def work(part):
        for path, w, h, dets in predictions(net, part, thresh, hier, nms, batch, quiet=comm.rank > 0):
            yield path, w, h, dets if comm.size == 1 else _nonzero_records(dets, classes)

    return by_shares(comm, paths, work)


def _nonzero_records(dets, classes):
    """The records of `dets` with a nonzero probability among the first `classes`, in order (what travels)."""
    keep = np.any(dets.prob[:, :classes] != 0, axis=1)
    return box.Detections(dets.bbox[keep], dets.objectness[keep], dets.prob[keep][:, :classes])


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


def validate_detector(datacfg, cfgfile, weightfile, outfile=None, batch=1, net=None, comm=None):
    """Darknet's `detector valid`: detect on every image of the .data's valid= list (thresh .005, NMS .45) and
    write the results under results= (default results/): with eval=voc (the default) one file
    <outfile><class>.txt per class (outfile default comp4_det_test_), with eval=coco <outfile>.json (default
    coco_results), with eval=imagenet <outfile>.txt (default imagenet-detection).

    batch: images per network pass (the results do not depend on it). comm: the ranks that share the list (default
    parallel.comm.world(): one process, or the ranks of an mpiexec); rank 0 writes the same files as one process.
    Returns the paths written (none on the other ranks).
    """
    comm = comm or world()
    data = read_data(datacfg)
    paths = read_list(data.file_of("valid", "data/train.list"))
    prefix = data.path_of("results", "results")
    kind = data.get("eval", "voc")
    names = read_names(data.file_of("names", "data/names.list")) if kind not in ("coco", "imagenet") else None
    if net is None:
        net = load_network(cfgfile, weightfile, verbose=not comm.rank)
        if not comm.rank:
            warn_classes_mismatch(data, cfgfile)
    if not comm.rank:
        print(f"Learning Rate: {net.learning_rate:g}, Momentum: {net.momentum:g}, Decay: {net.decay:g}",
              file=sys.stderr)
    classes = class_count(net)
    if kind == "coco":
        for path in paths:
            coco_image_id(path)         # every name checked before the first image is run
    writer = _writer(kind, prefix, outfile, names, classes) if not comm.rank else None
    try:
        for index, (path, w, h, dets) in enumerate(shared_predictions(comm, net, paths, .005, .5, .45, batch,
                                                                      classes)):
            writer.write(index, path, dets, w, h)
    finally:
        if writer is not None:
            writer.close()
    return writer.paths if writer is not None else []


def _writer(kind, prefix, outfile, names, classes):
    """The results writer of an eval= kind, its files opened under `prefix`."""
    os.makedirs(prefix, exist_ok=True)
    if kind == "coco":
        return _CocoWriter(prefix, outfile or "coco_results", classes)
    if kind == "imagenet":
        return _ImagenetWriter(prefix, outfile or "imagenet-detection", classes)
    return _VocWriter(prefix, outfile or "comp4_det_test_", names, classes)


def _resized_predictions(net, paths, thresh, nms):
    """(path, Detections after do_nms_obj) for each image resized (not letterboxed) to the network."""
    with box.one_warning_for_dropped_detections():
        for path in paths:
            sized = resize_image(load_image_color(path), net.w, net.h)
            net.predict(sized)
            dets = network_boxes(net, sized, float(thresh), .5, nms=0)
            do_nms_obj(dets, 1, nms)
            yield path, dets


def _recall_records(net, paths, thresh, nms):
    """For each image: its proposals (records with objectness > thresh) and each truth's best IoU with one."""
    for path, dets in _resized_predictions(net, paths, thresh, nms):
        live = dets.objectness > thresh
        _, truths = read_labels(label_path(path))
        best = []
        for t in truths:
            ious = box.box_iou(dets.bbox[live], t) if live.any() else np.zeros(0, np.float32)
            best.append(max(np.float32(0), ious.max()) if len(ious) else np.float32(0))
        yield int(np.count_nonzero(live)), best


def validate_detector_recall(datacfg, cfgfile, weightfile, net=None, comm=None):
    """Darknet's `detector recall`: the images of valid= resized (not letterboxed) to the network, thresh .001,
    do_nms_obj .4; a truth is found when a proposal overlaps it with IoU > .5. Prints Darknet's line per image on
    stderr and returns the totals. comm: validate_detector's (rank 0 prints the lines; every rank returns the
    totals)."""
    comm = comm or world()
    data = read_data(datacfg)
    paths = read_list(data.file_of("valid", "data/train.txt"))
    if net is None:
        net = load_network(cfgfile, weightfile, verbose=not comm.rank)
    thresh, iou_thresh, nms = np.float32(.001), np.float32(.5), .4
    total = correct = proposals = 0
    avg_iou = np.float32(0)
    records = by_shares(comm, paths, lambda part: _recall_records(net, part, thresh, nms))
    for i, (image_proposals, best) in enumerate(records):
        proposals += image_proposals
        for best_iou in best:
            total += 1
            avg_iou = np.float32(avg_iou + best_iou)
            correct += bool(best_iou > iou_thresh)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_iou = np.float32(avg_iou * np.float32(100)) / np.float32(total)
            recall = 100. * correct / total if total else math.nan
        print(f"{i:5d} {correct:5d} {total:5d}\tRPs/Img: {float(np.float32(proposals) / np.float32(i + 1)):.2f}"
              f"\tIOU: {float(mean_iou):.2f}%\tRecall:{recall:.2f}%", file=sys.stderr)
    return comm.broadcast_object({"images": len(paths), "proposals": proposals, "correct": correct, "total": total,
                                  "average_iou": float(avg_iou) / total if total else math.nan,
                                  "recall": correct / total if total else math.nan})
