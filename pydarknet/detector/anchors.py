"""AlexeyAB's `detector calc_anchors`: k-means over the training boxes' sizes, with distance 1 - IoU.

Every box of the .data file's train list is scaled to the network's W x H pixels; only its width and
height count (box and centroid share a corner). The anchors, sorted by area, are printed and written to
anchors.txt in AlexeyAB's format, ready to paste into a [yolo] section; counters_per_class.txt gets the
boxes per class, as in his fork.

Where this departs from AlexeyAB on purpose:
* k-means++ initialisation from a numpy Generator seeded by -seed (default 0), so a run repeats exactly;
  his picks K random boxes with srand(time(0)), so every run differs.
* A malformed label line stops the run with file:line; his fscanf loop silently stops reading the file there.
* A box with a width or height <= 0 is reported and left out (its IoU is 0/0 or negative); he keeps it.
* -width and -height are required (a usage error); he prints a message and returns 0.
"""
import os
import sys
import warnings

import numpy as np

from ..errors import DarknetError
from ..files import replacing, write_text

MAX_ITERATIONS = 1000       # do_kmeans's limit


class AnchorsError(DarknetError):
    """Training data that k-means cannot run on: an empty list, no boxes, a malformed label line."""


def calc_anchors(datacfg, clusters=5, width=416, height=416, show=False, seed=0, out=sys.stdout):
    """Anchors ((K, 2) float array of w, h in pixels, smallest area first) and the avg IoU in percent, as
    calc_anchors prints them; writes anchors.txt and counters_per_class.txt (and cloud.png with `show`) in
    the working folder."""
    from ..cfg import read_data
    options = read_data(datacfg)
    train = options.file_of("train", "data/train.list")
    print(f"num_of_clusters = {clusters}, width = {width}, height = {height}", file=out)
    sizes, counts = read_box_sizes(train, options.int("classes", 1))
    if len(sizes) < clusters:
        raise AnchorsError(f"{train}: {len(sizes)} boxes, fewer than -num_of_clusters {clusters}")
    sizes = sizes * (width, height)
    print(f"read {len(sizes)} boxes", file=out)
    anchors, iterations = kmeans_iou(sizes, clusters, np.random.default_rng(seed))
    avg_iou = 100 * float(best_iou(sizes, anchors).mean())
    print(f"iterations = {iterations}", file=out)
    counters = counters_per_class_text(counts)
    print(counters, file=out)
    write_text("counters_per_class.txt", counters)
    print(f"avg IoU = {avg_iou:2.2f} %", file=out)
    text = anchors_text(anchors, width)
    print("Saving anchors to the file: anchors.txt", file=out)
    print(f"anchors = {text}", file=out)
    write_text("anchors.txt", text)
    if show:
        save_cloud("cloud.png", sizes, anchors, width, height)
    return anchors, avg_iou


def read_box_sizes(train_list, classes=1):
    """Relative (w, h) of every box of a train list's label files, and the boxes per class (at least `classes`
    counters, more when a label names a higher class, as AlexeyAB's counter grows)."""
    from tqdm import tqdm
    from ..data.labels import parse_boxes, label_path, read_list
    paths = read_list(train_list)
    if not paths:
        raise AnchorsError(f"{train_list}: the train list names no images")
    found, missing = [], []
    for path in tqdm(paths, desc="labels", unit="image", file=sys.stderr, disable=None, leave=False):
        lpath = label_path(path)
        if lpath == path or not os.path.exists(lpath):
            missing.append(lpath)
            continue
        boxes, messages = parse_boxes(lpath)
        if messages:    # each ends with what the loader does about it ("; line skipped"); here it is fatal
            raise AnchorsError(messages[0].rsplit("; ", 1)[0])
        found.append(boxes)
    if missing:
        warnings.warn(f"{len(missing)} of {len(paths)} images have no label file (first: {missing[0]}); "
                      f"they add no boxes")
    boxes = np.concatenate(found) if found else np.zeros((0, 5), np.float32)
    empty = (boxes[:, 2] <= 0) | (boxes[:, 3] <= 0)
    if empty.any():
        warnings.warn(f"{int(empty.sum())} boxes with width or height <= 0 left out")
        boxes = boxes[~empty]
    if not len(boxes):
        raise AnchorsError(f"{train_list}: no boxes in the label files of its {len(paths)} images")
    ids = boxes[:, 4].astype(int)
    counts = np.bincount(ids, minlength=classes)
    return boxes[:, 2:4].astype(np.float64), counts


def iou_wh(sizes, anchors):
    """IoU of every (w, h) with every anchor, both aligned at one corner: (n, k)."""
    inter = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * np.minimum(sizes[:, None, 1], anchors[None, :, 1])
    union = (sizes[:, 0] * sizes[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - inter
    return inter / union


def best_iou(sizes, anchors):
    """Each box's IoU with its best anchor: the mean of it is calc_anchors' avg IoU."""
    return iou_wh(sizes, anchors).max(axis=1)


def kmeans_pp_init(sizes, clusters, rng):
    """k-means++: each next centre a box drawn with probability (1 - IoU with its nearest centre)^2."""
    centres = [sizes[rng.integers(len(sizes))]]
    distance = 1 - iou_wh(sizes, np.array(centres))[:, 0]
    for _ in range(1, clusters):
        weights = distance ** 2
        total = weights.sum()
        pick = rng.choice(len(sizes), p=weights / total) if total > 0 else rng.integers(len(sizes))
        centres.append(sizes[pick])
        distance = np.minimum(distance, 1 - iou_wh(sizes, sizes[pick][None])[:, 0])
    return np.array(centres)


def kmeans_iou(sizes, clusters, rng, max_iterations=MAX_ITERATIONS):
    """Lloyd's steps from k-means++ centres: assign each box to its highest-IoU centre, move each centre to its
    members' mean (an empty one stays, as in kmeans_maximization), until no box changes cluster. Returns the
    centres sorted by area (anchors_data_comparator) and the iterations."""
    centres = kmeans_pp_init(sizes, clusters, rng)
    assignment = iou_wh(sizes, centres).argmax(axis=1)
    for iteration in range(1, max_iterations + 1):
        members = np.bincount(assignment, minlength=clusters)
        for axis in range(2):
            sums = np.bincount(assignment, weights=sizes[:, axis], minlength=clusters)
            centres[:, axis] = np.where(members > 0, sums / np.maximum(members, 1), centres[:, axis])
        update = iou_wh(sizes, centres).argmax(axis=1)
        if np.array_equal(update, assignment):
            break
        assignment = update
    order = np.argsort(centres[:, 0] * centres[:, 1], kind="stable")
    return centres[order], iteration


def anchors_text(anchors, width):
    """AlexeyAB's anchors line: `%3.0f,%3.0f` per anchor in pixels, `%2.4f` when the width is 32 or less (a
    size in grid cells, as [region] takes them), joined by ', '."""
    spec = "3.0f" if width > 32 else "2.4f"
    return ", ".join(f"{w:{spec}},{h:{spec}}" for w, h in anchors)


def counters_per_class_text(counts):
    """counters_per_class.txt as AlexeyAB writes it: one line, no newline at its end."""
    return "counters_per_class = " + ", ".join(str(n) for n in counts)


def save_cloud(path, sizes, anchors, width, height):
    """-show: the boxes' (w, h) as a point cloud and each anchor as a rectangle from the corner (AlexeyAB's
    show_anchors, drawn with matplotlib's Agg canvas instead of an OpenCV window), written whole or not at all."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle
    figure = Figure(figsize=(6, 6 * height / width), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.scatter(sizes[:, 0], sizes[:, 1], s=2, alpha=.3, label="boxes")
    for w, h in anchors:
        axes.add_patch(Rectangle((0, 0), w, h, fill=False, edgecolor="red"))
    axes.scatter(anchors[:, 0], anchors[:, 1], marker="x", color="red", label="anchors")
    axes.set(xlim=(0, width), ylim=(0, height), xlabel="width (px)", ylabel="height (px)", aspect="equal")
    axes.legend(loc="upper left")
    with replacing(path) as tmp:
        figure.savefig(tmp, format="png")
