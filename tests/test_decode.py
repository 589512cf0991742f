"""pydarknet.decode: the yolo/region/detection decoders against scalar transcriptions of the C loops."""
import math

import numpy as np
import pytest

from pydarknet import decode, nms
from pydarknet.box import Detections
from test_nms import assert_identical, naive_do_nms_sort, spread_case

F32 = np.float32
IMG_W, IMG_H = 768, 576          # images/dog.png


# ------------------------------------------------------------------------------------------------------------
# Decoders against scalar transcriptions of the C loops

def c_correct(b, w, h, netw, neth, relative, letter):
    """correct_yolo_boxes / correct_region_boxes for one box, with C's float/double mix."""
    if letter:
        if F32(netw) / F32(w) < F32(neth) / F32(h):
            new_w, new_h = netw, (h * netw) // w
        else:
            new_w, new_h = (w * neth) // h, neth
    else:
        new_w, new_h = netw, neth
    x, y, bw, bh = b
    x = F32((float(x) - (netw - new_w) / 2. / netw) / float(F32(new_w) / F32(netw)))
    y = F32((float(y) - (neth - new_h) / 2. / neth) / float(F32(new_h) / F32(neth)))
    bw = F32(bw * (F32(netw) / F32(new_w)))
    bh = F32(bh * (F32(neth) / F32(new_h)))
    if not relative:
        x, bw, y, bh = F32(x * F32(w)), F32(bw * F32(w)), F32(y * F32(h)), F32(bh * F32(h))
    return [x, y, bw, bh]


def c_yolo(out, lw, lh, mask, anchors, classes, netw, neth, w, h, thresh, relative, letter):
    n = len(mask)
    x = out.reshape(-1)
    biases = np.asarray(anchors, F32)
    thresh = F32(thresh)

    def entry(a, loc, k):
        return a * lw * lh * (4 + classes + 1) + k * lw * lh + loc

    recs = []
    for i in range(lw * lh):
        row, col = i // lw, i % lw
        for a in range(n):
            objectness = x[entry(a, i, 4)]
            if not objectness > thresh:
                continue
            bx = F32((F32(col) + x[entry(a, i, 0)]) / F32(lw))
            by = F32((F32(row) + x[entry(a, i, 1)]) / F32(lh))
            bw = F32(math.exp(float(x[entry(a, i, 2)])) * float(biases[2 * mask[a]]) / netw)
            bh = F32(math.exp(float(x[entry(a, i, 3)])) * float(biases[2 * mask[a] + 1]) / neth)
            probs = []
            for j in range(classes):
                p = F32(objectness * x[entry(a, i, 5 + j)])
                probs.append(p if p > thresh else F32(0))
            recs.append((c_correct((bx, by, bw, bh), w, h, netw, neth, relative, letter), objectness, probs))
    return recs


def c_region(out, lw, lh, n, anchors, classes, coords, netw, neth, w, h, thresh, relative, background):
    x = out.reshape(-1)
    biases = np.asarray(anchors, F32)
    thresh = F32(thresh)

    def entry(a, loc, k):
        return a * lw * lh * (coords + classes + 1) + k * lw * lh + loc

    recs = [None] * (lw * lh * n)
    for i in range(lw * lh):
        row, col = i // lw, i % lw
        for a in range(n):
            index = a * lw * lh + i
            scale = F32(1) if background else x[entry(a, i, coords)]
            bx = F32((F32(col) + x[entry(a, i, 0)]) / F32(lw))
            by = F32((F32(row) + x[entry(a, i, 1)]) / F32(lh))
            bw = F32(math.exp(float(x[entry(a, i, 2)])) * float(biases[2 * a]) / lw)
            bh = F32(math.exp(float(x[entry(a, i, 3)])) * float(biases[2 * a + 1]) / lh)
            objectness = scale if scale > thresh else F32(0)
            mask = [x[entry(a, i, 4) + j * lw * lh] for j in range(coords - 4)]
            probs = [F32(0)] * classes
            if objectness:
                for j in range(classes):
                    p = F32(scale * x[entry(a, i, coords + 1 + j)])
                    probs[j] = p if p > thresh else F32(0)
            recs[index] = (c_correct((bx, by, bw, bh), w, h, netw, neth, relative, True), objectness, probs, mask)
    return recs


@pytest.mark.parametrize("relative,letter,img", [(True, True, (768, 576)), (False, True, (300, 500)),
                                                 (True, False, (640, 480)), (False, False, (96, 96))])
def test_yolo_detections_match_c_loop(relative, letter, img):
    rng = np.random.default_rng(21)
    lw, lh, classes, mask = 5, 4, 3, [1, 3]
    anchors = [10, 14, 23, 27, 37, 58, 81, 82]
    out = rng.uniform(0, 1, (len(mask) * (5 + classes), lh, lw)).astype(F32)
    out[[2, 3, 10, 11]] = rng.normal(0, 1, (4, lh, lw))                 # raw w, h of both anchors
    dets = decode.yolo_detections(out, lw, lh, mask, anchors, classes, 96, 64, img[0], img[1], 0.3,
                               relative=relative, letter=letter)
    want = c_yolo(out, lw, lh, mask, anchors, classes, 96, 64, img[0], img[1], 0.3, relative, letter)
    assert len(dets) == len(want) == decode.yolo_num_detections(out, lw, lh, len(mask), classes, 0.3)
    assert 0 < len(want) < lw * lh * len(mask)
    np.testing.assert_array_equal(dets.bbox, np.array([r[0] for r in want], F32))
    np.testing.assert_array_equal(dets.objectness, np.array([r[1] for r in want], F32))
    np.testing.assert_array_equal(dets.prob, np.array([r[2] for r in want], F32))
    assert (dets.classes_field == classes).all() and (dets.sort_class == 0).all()


@pytest.mark.parametrize("coords,background,relative", [(4, 0, True), (6, 0, False), (4, 1, True)])
def test_region_detections_match_c_loop(coords, background, relative):
    rng = np.random.default_rng(22)
    lw, lh, n, classes = 4, 3, 2, 3
    anchors = [1.08, 1.19, 3.42, 4.41]
    out = rng.uniform(0, 1, (n * (coords + 1 + classes), lh, lw)).astype(F32)
    dets = decode.region_detections(out, lw, lh, n, anchors, classes, coords, 96, 96, 500, 375, 0.35,
                                 relative=relative, background=background)
    want = c_region(out, lw, lh, n, anchors, classes, coords, 96, 96, 500, 375, 0.35, relative, background)
    assert len(dets) == lw * lh * n
    np.testing.assert_array_equal(dets.bbox, np.array([r[0] for r in want], F32))
    np.testing.assert_array_equal(dets.objectness, np.array([r[1] for r in want], F32))
    np.testing.assert_array_equal(dets.prob, np.array([r[2] for r in want], F32))
    if coords > 4:
        np.testing.assert_array_equal(dets.mask, np.array([r[3] for r in want], F32))
    else:
        assert dets.mask is None
    assert (dets.classes_field == 0).all()
    if not background:
        assert (dets.objectness == 0).any() and (dets.objectness > 0).any()


class _Tree:
    """Darknet's tree fields for a toy hierarchy: roots 0, 1; children 2, 3 of 0; 4, 5 of 1."""
    parent = [-1, -1, 0, 0, 1, 1]
    child = [1, -1, -1, -1, -1, -1]        # class 0 opens group 1; class 1 has no children here
    group_size = [2, 2, 2]
    group_offset = [0, 2, 4]


@pytest.mark.parametrize("hier_thresh,want_class", [(0.5, 0), (0.2, 2)])
def test_region_softmax_tree_top_prediction(hier_thresh, want_class):
    """hierarchy_predictions multiplies by the parent's probability, hierarchy_top_prediction walks down while
    p*max > hier_thresh: 0.7 at the root, then 0.7*0.6 = 0.42 for class 2."""
    classes, coords = 6, 4
    out = np.zeros((coords + 1 + classes, 1, 1), F32)
    out[coords] = 0.9                                        # scale
    out[coords + 1:, 0, 0] = [0.7, 0.3, 0.6, 0.4, 0.5, 0.5]
    dets = decode.region_detections(out, 1, 1, 1, [1, 1], classes, coords, 32, 32, 32, 32, 0.1,
                                 softmax_tree=_Tree(), hier_thresh=hier_thresh)
    want = np.zeros(classes, F32)
    want[want_class] = F32(0.9)
    np.testing.assert_array_equal(dets.prob[0], want)


def test_detection_detections_match_c_loop():
    rng = np.random.default_rng(23)
    side, n, classes = 3, 2, 4
    locations = side * side
    out = rng.normal(0, 0.5, locations * (classes + n * 5)).astype(F32)
    for sqrt in (True, False):
        dets = decode.detection_detections(out, side, n, classes, sqrt, 640, 480, 0.02)
        assert len(dets) == locations * n
        for i in range(locations):
            row, col = i // side, i % side
            for a in range(n):
                rec = dets[i * n + a]
                scale = out[locations * classes + i * n + a]
                b = locations * (classes + n) + (i * n + a) * 4
                assert rec.bbox[0] == F32(F32(F32(out[b] + F32(col)) / F32(side)) * F32(640))
                assert rec.bbox[1] == F32(F32(F32(out[b + 1] + F32(row)) / F32(side)) * F32(480))
                assert rec.bbox[2] == F32(float(out[b + 2]) ** (2 if sqrt else 1) * 640)
                assert rec.bbox[3] == F32(float(out[b + 3]) ** (2 if sqrt else 1) * 480)
                assert rec.objectness == scale
                for j in range(classes):
                    p = F32(scale * out[i * classes + j])
                    assert rec.prob[j] == (p if p > F32(0.02) else 0)
                assert rec.classes == 0 and rec.sort_class == 0


def test_finite_keeps_the_records_without_inf_or_nan():
    bbox = np.full((5, 4), .5, np.float32)
    objectness = np.ones(5, np.float32)
    prob = np.full((5, 3), .2, np.float32)
    bbox[1, 2] = np.inf
    objectness[2] = np.nan
    prob[3, 1] = -np.inf
    dets, dropped = Detections(bbox, objectness, prob).finite()
    assert dropped == 3 and len(dets) == 2
    np.testing.assert_array_equal(dets.bbox, bbox[[0, 4]])
    whole = Detections(bbox[[0]], objectness[[0]], prob[[0]])
    assert whole.finite() == (whole, 0)


@pytest.mark.parametrize("quadratic", [None, False], ids=["chosen", "graph"])
def test_do_nms_sort_skips_classes_without_probabilities_exactly(quadratic):
    """Classes no live record has a probability for (zeros, -0.0, or nonzero only on records with objectness 0)
    are skipped: the order and every probability come out as box.c's loops over all classes leave them."""
    rng = np.random.default_rng(7)
    n, classes = 250, 9
    dets = spread_case(rng, n, classes)
    prob = dets.prob.copy()
    prob[:, [1, 4, 5, 8]] = 0
    prob[rng.choice(n, 5), 4] = -0.0
    obj = dets.objectness.copy()
    dead = rng.choice(n, 20, replace=False)
    obj[dead] = 0
    prob[dead, 5] = .7             # only records that take no part have class 5
    dets = Detections(dets.bbox, obj, prob)
    for thresh in (0.0, 0.45, 1.0):
        got = dets.copy()
        nms.do_nms_sort(got, classes, thresh, quadratic)
        assert_identical(got, naive_do_nms_sort(dets, classes, thresh))
