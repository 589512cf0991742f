"""Benchmark: Darknet's do_nms_sort on yolov3's worst case at 608x608.

With random weights nearly every box of yolov3 passes thresh 0.05: 19*19*3 + 38*38*3 + 76*76*3 = 22,743 boxes, 80
classes, every class probability above 0.05. This builds such a case (seeded): the three yolo layers' activated
outputs with objectness and class scores near 0.5, box offsets and log-sizes drawn around each cell and anchor as
a random network gives them, decoded with pydarknet.decode.yolo_detections, so boxes cluster like yolov3's anchors.
The first do_nms_sort call compiles (or loads numba's cache) and is not timed.

    python -m bench.bench_nms          # prints "do_nms_sort yolov3-608 22743 boxes 80 classes: X.XXX s"
    from bench.bench_nms import run    # run() -> seconds
"""
import time

import numpy as np


from pydarknet.box import Detections
from pydarknet.decode import yolo_detections
from pydarknet.nms import do_nms_sort

NET = 608
CLASSES = 80
ANCHORS = [10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326]
LAYERS = [(19, [6, 7, 8]), (38, [3, 4, 5]), (76, [0, 1, 2])]     # yolov3.cfg's three [yolo] layers, in order
THRESH = 0.05
NMS = 0.45


def _sigmoid(x):
    return (1 / (1 + np.exp(-x))).astype(np.float32)


def make_detections(seed=0):
    """The 22,743 records of get_network_boxes(yolov3 at 608, thresh .05) with random-weight-like outputs."""
    rng = np.random.default_rng(seed)
    parts = []
    for side, mask in LAYERS:
        n = len(mask)
        out = np.empty((n, 5 + CLASSES, side, side), np.float32)
        out[:, 0:2] = _sigmoid(rng.normal(0, 1.0, (n, 2, side, side)))        # x, y: logistic
        out[:, 2:4] = rng.normal(0, 0.4, (n, 2, side, side))                   # w, h: raw log-scale
        out[:, 4] = _sigmoid(rng.normal(0, 0.3, (n, side, side)))              # objectness ~0.5
        out[:, 5:] = _sigmoid(rng.normal(0, 0.3, (n, CLASSES, side, side)))    # classes ~0.5
        out[:, 4] = np.clip(out[:, 4], 0.35, 0.65)
        out[:, 5:] = np.clip(out[:, 5:], 0.2, 0.8)                             # so obj*cls > 0.05 always
        parts.append(yolo_detections(out.reshape(-1, side, side), side, side, mask, ANCHORS, CLASSES,
                                     NET, NET, NET, NET, THRESH))
    dets = Detections.concat(parts)
    assert len(dets) == 22743 and (dets.prob > THRESH).all()
    return dets


def run(repeat=3, seed=0):
    """Seconds for one do_nms_sort of the worst case (best of `repeat`), after an untimed warm-up call."""
    dets = make_detections(seed)
    do_nms_sort(dets.copy(), CLASSES, NMS)          # compile / load the numba cache
    best = float("inf")
    for _ in range(repeat):
        work = dets.copy()
        start = time.perf_counter()
        do_nms_sort(work, CLASSES, NMS)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    seconds = run()
    print(f"do_nms_sort yolov3-608 22743 boxes 80 classes: {seconds:.3f} s")


if __name__ == "__main__":
    main()
