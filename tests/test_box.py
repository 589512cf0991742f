"""pydarknet.box, decode and nms against Darknet: golden detections, and the fast NMS against naive transcriptions
of box.c.

The goldens (../shared/darknet/golden/{v3mini,v2mini,v1mini}) hold the activated outputs of each network's
yolo/region/detection layers for the letterboxed dog image (768x576), get_network_boxes(thresh .05, hier .5,
relative 1) of them, and do_nms_sort(.45) of that. Our decoders and NMS must give the same records in the same
order. The rest checks do_nms_sort/do_nms_obj against a literal, slow transcription of box.c (the oracle below)
and against the package's own quadratic transcription (nms.do_nms_*_quadratic), and the decoders against scalar
transcriptions of the C loops.
"""
import json
import math

import numpy as np
import pytest

from pydarknet import box, decode, nms
from pydarknet.box import Detections

F32 = np.float32
IMG_W, IMG_H = 768, 576          # images/dog.png


# ------------------------------------------------------------------------------------------------------------
# Helpers

def load_dets(path):
    """A golden dets_*.json as Detections (records in file order)."""
    data = json.loads(path.read_text())
    recs = data["dets"]
    assert [r["i"] for r in recs] == list(range(len(recs)))
    assert data["nboxes"] == len(recs)
    return Detections(np.array([r["bbox"] for r in recs], np.float64).reshape(-1, 4),
                      np.array([r["objectness"] for r in recs], np.float64),
                      np.array([r["prob"] for r in recs], np.float64).reshape(len(recs), data["classes"]),
                      [r["sort_class"] for r in recs], [r["classes_field"] for r in recs]), data["classes"]


def assert_same_dets(got, want, atol=1e-4, rtol=1e-6):
    """Same count and order; boxes, objectness and probabilities within tolerance; sort_class and classes exact."""
    assert len(got) == len(want)
    np.testing.assert_allclose(got.bbox, want.bbox, atol=atol, rtol=rtol)
    np.testing.assert_allclose(got.objectness, want.objectness, atol=atol, rtol=rtol)
    np.testing.assert_allclose(got.prob, want.prob, atol=atol, rtol=rtol)
    np.testing.assert_array_equal(got.prob == 0, want.prob == 0)
    np.testing.assert_array_equal(got.sort_class, want.sort_class)
    np.testing.assert_array_equal(got.classes_field, want.classes_field)


def golden_layers(golden, name):
    summary = json.loads((golden / name / "summary.json").read_text())
    layers = [layer for layer in summary["layers"] if layer["type"] in ("yolo", "region", "detection")]
    return summary["net"], [(layer, np.load(golden / name / f"dog_out_{layer['index']:03d}.npy")) for layer in layers]


def decode_golden(golden, name, thresh):
    """fill_network_boxes over the golden layer outputs: every output layer's records, in network order."""
    net, layers = golden_layers(golden, name)
    parts = []
    for layer, out in layers:
        if layer["type"] == "yolo":
            parts.append(decode.yolo_detections(out, layer["out_w"], layer["out_h"], layer["mask"], layer["anchors"],
                                             layer["classes"], net["w"], net["h"], IMG_W, IMG_H, thresh))
        elif layer["type"] == "region":
            parts.append(decode.region_detections(out, layer["out_w"], layer["out_h"], layer["n"], layer["anchors"],
                                               layer["classes"], layer["coords"], net["w"], net["h"],
                                               IMG_W, IMG_H, thresh))
        else:   # v1mini's [detection] has sqrt=1 (testcfg/v1mini.cfg); the summary does not record it
            parts.append(decode.detection_detections(out, layer["side"], layer["n"], layer["classes"], True,
                                                  IMG_W, IMG_H, thresh))
    return Detections.concat(parts)


# ------------------------------------------------------------------------------------------------------------
# Golden detections

GOLDEN_CASES = [("v3mini", 0.05, ""), ("v2mini", 0.05, ""), ("v1mini", 0.05, ""), ("v1mini", 0.0, "_thresh0")]


@pytest.mark.parametrize("name,thresh,suffix", GOLDEN_CASES)
def test_golden_raw_detections(golden, name, thresh, suffix):
    want, _ = load_dets(golden / name / f"dets_raw{suffix}.json")
    assert_same_dets(decode_golden(golden, name, thresh), want)


@pytest.mark.parametrize("name,thresh,suffix", GOLDEN_CASES)
def test_golden_nms_detections(golden, name, thresh, suffix):
    """Decoders + do_nms_sort(classes, .45) give dets_nms, record for record."""
    dets = decode_golden(golden, name, thresh)
    want, classes = load_dets(golden / name / f"dets_nms{suffix}.json")
    nms.do_nms_sort(dets, classes, 0.45)
    assert_same_dets(dets, want)


@pytest.mark.parametrize("name,suffix", [("v3mini", ""), ("v2mini", ""), ("v1mini", ""), ("v1mini", "_thresh0")])
def test_golden_nms_from_golden_input(golden, name, suffix):
    """do_nms_sort alone, on Darknet's own dets_raw: exactly Darknet's order and zeroed probabilities."""
    dets, classes = load_dets(golden / name / f"dets_raw{suffix}.json")
    want, _ = load_dets(golden / name / f"dets_nms{suffix}.json")
    nms.do_nms_sort(dets, classes, 0.45)
    assert_same_dets(dets, want, atol=0, rtol=0)


def test_golden_v3mini_layer_counts(golden):
    """Records per yolo layer = yolo_num_detections; v3mini's two yolo layers are concatenated in layer order."""
    net, layers = golden_layers(golden, "v3mini")
    assert [layer["index"] for layer, _ in layers] == [12, 18]
    counts = []
    for layer, out in layers:
        dets = decode.yolo_detections(out, layer["out_w"], layer["out_h"], layer["mask"], layer["anchors"],
                                   layer["classes"], net["w"], net["h"], IMG_W, IMG_H, 0.05)
        n = decode.yolo_num_detections(out, layer["out_w"], layer["out_h"], len(layer["mask"]), layer["classes"], 0.05)
        assert len(dets) == n
        counts.append(n)
    assert sum(counts) == json.loads((golden / "v3mini" / "dets_raw.json").read_text())["nboxes"]


# ------------------------------------------------------------------------------------------------------------
# The oracle: box.c, transcribed literally (records are indices into the original arrays)

def c_overlap(x1, w1, x2, w2):
    two = F32(2)
    l1 = F32(x1 - w1 / two)
    l2 = F32(x2 - w2 / two)
    left = l1 if l1 > l2 else l2
    r1 = F32(x1 + w1 / two)
    r2 = F32(x2 + w2 / two)
    right = r1 if r1 < r2 else r2
    return F32(right - left)


def c_box_iou(a, b):
    """box_iou of two float32 (x, y, w, h), one scalar float32 operation at a time."""
    a = [F32(v) for v in a]
    b = [F32(v) for v in b]
    with np.errstate(all="ignore"):
        w = c_overlap(a[0], a[2], b[0], b[2])
        h = c_overlap(a[1], a[3], b[1], b[3])
        inter = F32(0) if (w < 0 or h < 0) else F32(w * h)
        union = F32(F32(F32(a[2] * a[3]) + F32(b[2] * b[3])) - inter)
        if inter == 0 or union == 0:
            return F32(0)
        return F32(inter / union)


def iou_matrix(bbox):
    """M[a, b] = box_iou(box a, box b) for all pairs (vectorised, the same float32 operations as c_box_iou)."""
    b = np.asarray(bbox, F32)
    two = F32(2)
    with np.errstate(all="ignore"):
        x, y, w, h = (b[:, i] for i in range(4))
        l, r, t, btm = x - w / two, x + w / two, y - h / two, y + h / two
        left = np.where(l[:, None] > l[None, :], l[:, None], l[None, :])
        right = np.where(r[:, None] < r[None, :], r[:, None], r[None, :])
        top = np.where(t[:, None] > t[None, :], t[:, None], t[None, :])
        bottom = np.where(btm[:, None] < btm[None, :], btm[:, None], btm[None, :])
        ow = right - left
        oh = bottom - top
        inter = np.where((ow < 0) | (oh < 0), F32(0), ow * oh)
        area = w * h
        union = (area[:, None] + area[None, :]) - inter
        iou = np.where((inter == 0) | (union == 0), F32(0), inter / union)
    return iou.astype(F32)


def glibc_msort(items, cmp):
    """glibc's qsort: msort_with_tmp, top-down, n1 = n/2, the left element taken when cmp <= 0."""
    n = len(items)
    if n <= 1:
        return list(items)
    n1 = n // 2
    left = glibc_msort(items[:n1], cmp)
    right = glibc_msort(items[n1:], cmp)
    out = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    return out + left[i:] + right[j:]


def c_comparator(key):
    """nms_comparator / nms_comparator_v3: float difference, NaN compares equal."""
    def cmp(a, b):
        with np.errstate(invalid="ignore"):
            diff = F32(key[a]) - F32(key[b])
        return 1 if diff < 0 else (-1 if diff > 0 else 0)
    return cmp


def c_swap_zero_objectness(dets, obj):
    total = len(dets)
    k = total - 1
    i = 0
    while i <= k:                       # for (i = 0; i <= k; ++i) { if (...) { swap; --k; --i; } }
        if obj[dets[i]] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
            i -= 1
        i += 1
    return k + 1


def naive_do_nms_sort(dets_in, classes, thresh):
    """box.c do_nms_sort, line for line, on a copy; returns the result as Detections."""
    obj = dets_in.objectness.copy()
    prob = dets_in.prob.copy()
    sort_class = dets_in.sort_class.copy()
    iou = iou_matrix(dets_in.bbox)
    thresh = F32(thresh)
    dets = list(range(len(dets_in)))
    total = c_swap_zero_objectness(dets, obj)
    for k in range(classes):
        for i in range(total):
            sort_class[dets[i]] = k
        dets[:total] = glibc_msort(dets[:total], c_comparator(prob[:, k]))
        for i in range(total):
            if prob[dets[i], k] == 0:
                continue
            a = dets[i]
            later = np.array(dets[i + 1:total], np.int64)
            if later.size:                   # for (j = i+1; j < total; ++j) if (box_iou(a, b) > thresh) zero it
                prob[later[iou[a, later] > thresh], k] = 0
    order = np.array(dets, np.int64)
    return Detections(dets_in.bbox[order], obj[order], prob[order], sort_class[order],
                      dets_in.classes_field[order])


def naive_do_nms_obj(dets_in, classes, thresh):
    """box.c do_nms_obj, line for line."""
    obj = dets_in.objectness.copy()
    prob = dets_in.prob.copy()
    sort_class = dets_in.sort_class.copy()
    iou = iou_matrix(dets_in.bbox)
    thresh = F32(thresh)
    dets = list(range(len(dets_in)))
    total = c_swap_zero_objectness(dets, obj)
    for i in range(total):
        sort_class[dets[i]] = -1
    dets[:total] = glibc_msort(dets[:total], c_comparator(obj))
    for i in range(total):
        a = dets[i]
        if obj[a] == 0:
            continue
        for j in range(i + 1, total):
            b = dets[j]
            if obj[b] == 0:
                continue
            if iou[a, b] > thresh:
                obj[b] = 0
                prob[b, :classes] = 0
    order = np.array(dets, np.int64)
    return Detections(dets_in.bbox[order], obj[order], prob[order], sort_class[order],
                      dets_in.classes_field[order])


def assert_identical(got, want):
    np.testing.assert_array_equal(got.bbox, want.bbox)
    np.testing.assert_array_equal(got.objectness, want.objectness)
    np.testing.assert_array_equal(got.prob, want.prob)
    np.testing.assert_array_equal(got.sort_class, want.sort_class)
    np.testing.assert_array_equal(got.classes_field, want.classes_field)


# ------------------------------------------------------------------------------------------------------------
# Random cases for NMS

def tied_case(rng, n, classes):
    """Boxes on a coarse lattice (many duplicates and exact IoU ties), probabilities from a few values, many 0."""
    bbox = np.stack([rng.integers(0, 8, n) * 0.125, rng.integers(0, 8, n) * 0.125,
                     rng.integers(1, 5, n) * 0.125, rng.integers(1, 5, n) * 0.125], axis=1)
    obj = rng.choice(np.array([0, 0.25, 0.5, 0.75, 1.0]), n, p=[0.25, 0.2, 0.2, 0.2, 0.15])
    prob = rng.choice(np.array([0, 0.125, 0.25, 0.5]), (n, classes), p=[0.55, 0.15, 0.15, 0.15])
    return Detections(bbox, obj, prob, rng.integers(0, 3, n), rng.integers(0, 5, n))


def spread_case(rng, n, classes):
    """Continuous boxes of widely different sizes and shapes (every size class of the pair finder)."""
    size = np.exp(rng.uniform(np.log(0.002), np.log(1.5), (n, 2)))
    size *= np.exp(rng.normal(0, 0.15, (n, 1)))
    centre = rng.uniform(-0.2, 1.2, (n, 2))
    bbox = np.concatenate([centre, size], axis=1)
    obj = np.where(rng.uniform(size=n) < 0.1, 0, rng.uniform(0.01, 1, n))
    prob = np.where(rng.uniform(size=(n, classes)) < 0.3, 0, rng.uniform(0.05, 1, (n, classes)))
    return Detections(bbox, obj, prob)


def clustered_case(rng, n, classes):
    """Boxes jittered around a few anchors and cells, as a random network's yolo output: many heavy overlaps."""
    anchors = np.array([[0.05, 0.07], [0.1, 0.08], [0.2, 0.3], [0.4, 0.35]])
    cell = rng.integers(0, 6, (n, 2)) / 6 + 1 / 12
    centre = cell + rng.normal(0, 0.02, (n, 2))
    size = anchors[rng.integers(0, len(anchors), n)] * np.exp(rng.normal(0, 0.2, (n, 2)))
    bbox = np.concatenate([centre, size], axis=1)
    obj = rng.uniform(0.3, 0.7, n)
    prob = np.where(rng.uniform(size=(n, classes)) < 0.1, 0, np.round(rng.uniform(0.05, 0.6, (n, classes)), 2))
    return Detections(bbox, obj, prob)


def odd_case(rng, n, classes):
    """Boxes box.c treats oddly: NaN and infinite fields, zero and negative sizes, tiny boxes far out (their
    float edges do not give their size), duplicates; NaN, -0 and negative probabilities too."""
    dets = tied_case(rng, n, classes)
    bbox = dets.bbox.astype(np.float64)
    odd = rng.choice(n, n // 2, replace=False)
    for i, r in enumerate(odd):
        kind = i % 10
        if kind == 0:
            bbox[r, rng.integers(0, 2)] = np.nan                 # NaN centre: its IoU can still be > 0
        elif kind == 1:
            bbox[r, 2 + rng.integers(0, 2)] = np.nan
        elif kind == 2:
            bbox[r, 2 + rng.integers(0, 2)] = -bbox[r, 2]        # negative size
        elif kind == 3:
            bbox[r, 2] = 0
        elif kind == 4:
            bbox[r, 2 + rng.integers(0, 2)] = np.inf
        elif kind == 5:
            bbox[r] = [1000.0, 2000.0, 1e-5, 3e-5]               # edges coarser than the box
        elif kind == 6:
            bbox[r] = [1000.0 + rng.integers(0, 2) * 6e-5, 1000.0, 1e-4, 1e-4]     # IoU of two such: about 3
        elif kind == 7:
            bbox[r, 0] = np.inf
        elif kind == 8:
            bbox[r] = [3.35e38, 0.5, 2e37, 0.5]                  # the right edge overflows to inf ...
        else:
            bbox[r] = [3.3e38, 0.5, 1e37, 0.5]                   # ... and this finite box has IoU 0.5 with it
    prob = dets.prob.astype(np.float64)
    prob[rng.choice(n, 3), rng.integers(0, classes, 3)] = np.nan
    prob[rng.choice(n, 3), rng.integers(0, classes, 3)] = -0.0
    prob[rng.choice(n, 3), rng.integers(0, classes, 3)] = -0.25
    obj = dets.objectness.astype(np.float64)
    obj[rng.choice(n, 2)] = np.nan
    obj[rng.choice(n, 2)] = -0.0
    return Detections(bbox, obj, prob, dets.sort_class, dets.classes_field)


def coarse_case(rng, n, classes):
    """Boxes a few float32 ulps wide at x ~ 1000: their float edges do not give their width (the pair finder's
    size bounds do not hold for them), and IoU can exceed 1."""
    ulp = float(np.spacing(F32(1000)))
    bbox = np.stack([1000 + rng.integers(0, 12, n) * ulp / 2, rng.uniform(0.4, 0.6, n),
                     rng.integers(1, 8, n) * ulp * rng.uniform(0.5, 1.0, n), rng.uniform(0.2, 0.3, n)], axis=1)
    obj = rng.uniform(0.1, 1, n)
    prob = np.where(rng.uniform(size=(n, classes)) < 0.2, 0, rng.uniform(0.05, 1, (n, classes)))
    return Detections(bbox, obj, prob)


def extreme_case(rng, n, classes):
    """Sides from e^-80 to e^80, width and height drawn apart, as the exp() of an untrained or partly loaded yolo
    layer gives them: a wide box spans up to 1e18 grid columns of a class of narrow ones (this used to hang)."""
    bbox = np.stack([rng.uniform(0, 1, n), rng.uniform(0, 1, n), np.exp(rng.uniform(-80, 80, n)),
                     np.exp(rng.uniform(-80, 80, n))], axis=1)
    return Detections(bbox, rng.uniform(0.1, 1, n), rng.uniform(0, 1, (n, classes)))


CASES = {"tied": tied_case, "spread": spread_case, "clustered": clustered_case, "odd": odd_case,
         "coarse": coarse_case, "extreme": extreme_case}
THRESHOLDS = [0.0, 0.2, 0.45, 0.5, 0.75, 1.0, -0.1]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("quadratic", [None, False], ids=["chosen", "graph"])
def test_do_nms_sort_matches_box_c(case, seed, quadratic):
    rng = np.random.default_rng(1000 * seed + len(case))
    n = {"tied": 180, "spread": 400, "clustered": 300, "odd": 160, "coarse": 150, "extreme": 300}[case]
    classes = 4
    dets = CASES[case](rng, n, classes)
    for thresh in THRESHOLDS:
        got = dets.copy()
        nms.do_nms_sort(got, classes, thresh, quadratic)
        assert_identical(got, naive_do_nms_sort(dets, classes, thresh))


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("quadratic", [None, False], ids=["chosen", "graph"])
def test_do_nms_obj_matches_box_c(case, seed, quadratic):
    rng = np.random.default_rng(2000 * seed + len(case))
    n = {"tied": 180, "spread": 400, "clustered": 300, "odd": 160, "coarse": 150, "extreme": 300}[case]
    classes = 3
    dets = CASES[case](rng, n, classes)
    for thresh in THRESHOLDS:
        got = dets.copy()
        nms.do_nms_obj(got, classes, thresh, quadratic)
        assert_identical(got, naive_do_nms_obj(dets, classes, thresh))


def test_nms_chooses_the_quadratic_loops_for_small_inputs_only(monkeypatch):
    """The size rule: a few hundred records take box.c's loops, more than QUADRATIC_PAIRS pair tests the graph."""
    ran = []
    for name in ("_nms_sort_quadratic", "_nms_sort_classes"):
        kernel = getattr(nms, name)
        monkeypatch.setattr(nms, name, lambda *a, kernel=kernel, name=name: ran.append(name) or kernel(*a))
    dets = spread_case(np.random.default_rng(3), 300, 4)
    nms.do_nms_sort(dets.copy(), 4, .45)
    monkeypatch.setattr(nms, "QUADRATIC_PAIRS", 1000)
    nms.do_nms_sort(dets.copy(), 4, .45)
    assert ran == ["_nms_sort_quadratic", "_nms_sort_classes"]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("seed", range(3))
def test_fast_nms_matches_quadratic_reference(case, seed):
    """The graph-based NMS against the package's own transcription of box.c's loops (nms.*_quadratic)."""
    rng = np.random.default_rng(3000 * seed + len(case))
    n = {"tied": 180, "spread": 400, "clustered": 300, "odd": 160, "coarse": 150, "extreme": 300}[case]
    dets = CASES[case](rng, n, 4)
    for thresh in THRESHOLDS:
        for fast, quadratic, classes in ((nms.do_nms_sort, nms.do_nms_sort_quadratic, 4),
                                         (nms.do_nms_obj, nms.do_nms_obj_quadratic, 3)):
            got = dets.copy()
            fast(got, classes, thresh, quadratic=False)
            want = dets.copy()
            quadratic(want, classes, thresh)
            assert_identical(got, want)


def test_quadratic_reference_matches_box_c():
    """The in-package quadratic NMS against the test's naive oracle, on one case of each kind."""
    for case in sorted(CASES):
        dets = CASES[case](np.random.default_rng(len(case)), 120, 3)
        for thresh in THRESHOLDS:
            got = dets.copy()
            nms.do_nms_sort_quadratic(got, 3, thresh)
            assert_identical(got, naive_do_nms_sort(dets, 3, thresh))
            got = dets.copy()
            nms.do_nms_obj_quadratic(got, 3, thresh)
            assert_identical(got, naive_do_nms_obj(dets, 3, thresh))


def test_do_nms_sort_fewer_classes_than_probs():
    """`classes` limits the classes processed; the other prob columns only travel with their records."""
    rng = np.random.default_rng(7)
    dets = tied_case(rng, 120, 5)
    got = dets.copy()
    nms.do_nms_sort(got, 3, 0.45)
    assert_identical(got, naive_do_nms_sort(dets, 3, 0.45))


def test_do_nms_sort_large_yolo_like():
    """Thousands of decoded yolo boxes (3 layers, random outputs), all passing the threshold."""
    rng = np.random.default_rng(11)
    anchors = [10, 13, 16, 30, 33, 23, 30, 61, 62, 45, 59, 119, 116, 90, 156, 198, 373, 326]
    parts = []
    classes = 6
    for side, mask in [(5, [6, 7, 8]), (10, [3, 4, 5]), (20, [0, 1, 2])]:
        out = np.empty((3, 5 + classes, side, side), np.float32)
        out[:, :2] = 1 / (1 + np.exp(-rng.normal(0, 1, (3, 2, side, side))))
        out[:, 2:4] = rng.normal(0, 0.4, (3, 2, side, side))
        out[:, 4:] = rng.uniform(0.3, 0.7, (3, 1 + classes, side, side))
        parts.append(decode.yolo_detections(out.reshape(-1, side, side), side, side, mask, anchors, classes,
                                         160, 160, 200, 160, 0.05))
    dets = Detections.concat(parts)
    assert len(dets) == 3 * (25 + 100 + 400)
    for thresh in (0.3, 0.45, 0.7):
        got = dets.copy()
        nms.do_nms_sort(got, classes, thresh)
        assert_identical(got, naive_do_nms_sort(dets, classes, thresh))


def test_nms_all_objectness_zero_and_empty():
    rng = np.random.default_rng(3)
    dets = tied_case(rng, 9, 2)
    dets.objectness[:] = 0
    for run, naive in ((nms.do_nms_sort, naive_do_nms_sort), (nms.do_nms_obj, naive_do_nms_obj)):
        got = dets.copy()
        run(got, 2, 0.45)
        assert_identical(got, naive(dets, 2, 0.45))
        empty = Detections.empty(0, 2)
        run(empty, 2, 0.45)
        assert len(empty) == 0


def test_swap_loop_is_not_a_stable_partition():
    """Darknet's objectness==0 loop swaps from the end: [0, a, 0, b] -> [b, a | 0, 0] (a and b reordered)."""
    dets = Detections(np.tile([0.5, 0.5, 0.2, 0.2], (4, 1)), [0, 0.6, 0, 0.7], np.zeros((4, 1)))
    dets.prob[:, 0] = [0, 0, 0, 0]
    ids = [0, 1, 2, 3]
    dets.sort_class[:] = ids          # use sort_class to follow the records
    nms.do_nms_sort(dets, 1, 0.45)
    assert list(dets.objectness) == [F32(0.7), F32(0.6), 0, 0]
    assert list(dets.sort_class[2:]) == [2, 0]           # the zero records, in swap order
    assert list(dets.sort_class[:2]) == [0, 0]           # live records get sort_class = k


# ------------------------------------------------------------------------------------------------------------
# box_iou and friends

def iou_float64(a, b):
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    w = min(ax + aw / 2, bx + bw / 2) - max(ax - aw / 2, bx - bw / 2)
    h = min(ay + ah / 2, by + bh / 2) - max(ay - ah / 2, by - bh / 2)
    inter = 0.0 if (w < 0 or h < 0) else w * h
    union = aw * ah + bw * bh - inter
    return 0.0 if inter == 0 or union == 0 else inter / union


def test_box_iou_against_float64():
    rng = np.random.default_rng(5)
    a = np.concatenate([rng.uniform(0, 1, (2000, 2)), rng.uniform(0.01, 0.6, (2000, 2))], axis=1).astype(F32)
    b = a + np.concatenate([rng.normal(0, 0.05, (2000, 2)), rng.normal(0, 0.05, (2000, 2))], axis=1)
    b[:, 2:] = np.abs(b[:, 2:]) + 0.01
    b = b.astype(F32)
    got = box.box_iou(a, b)
    assert got.dtype == F32
    want = np.array([iou_float64(p, q) for p, q in zip(a, b)])
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    assert (got > 0).sum() > 1500
    # the same, one pair at a time, against the scalar float32 transcription of box.c
    for p, q in zip(a[:300], b[:300]):
        assert box.box_iou(p, q) == c_box_iou(p, q)
        assert box.box_iou(p, q) == box.box_iou(q, p)


@pytest.mark.parametrize("a,b,want", [
    ((0.5, 0.5, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2), 1.0),                  # identical
    ((0.0, 0.0, 1.0, 1.0), (2.0, 0.0, 1.0, 1.0), 0.0),                  # disjoint
    ((0.0, 0.0, 1.0, 1.0), (1.0, 0.0, 1.0, 1.0), 0.0),                  # touching: intersection 0
    ((0.0, 0.0, 2.0, 2.0), (0.0, 0.0, 1.0, 1.0), 0.25),                 # containment
    ((0.0, 0.0, 2.0, 1.0), (1.0, 0.0, 2.0, 1.0), 1.0 / 3.0),            # half overlap
    ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0),                  # empty boxes: I == 0
    ((0.0, 0.0, -1.0, 1.0), (0.0, 0.0, 1.0, 1.0), 0.0),                 # negative width: overlap < 0
])
def test_box_iou_cases(a, b, want):
    assert box.box_iou(a, b) == pytest.approx(want, abs=1e-6)
    assert box.box_iou(a, b) == c_box_iou(a, b)


def test_box_iou_nan_follows_the_c_ternaries():
    """A NaN centre loses box.c's `l1 > l2 ? l1 : l2`: as the first box it borrows the other's edges."""
    a = (np.nan, 0.0, 1.0, 1.0)
    b = (0.0, 0.0, 1.0, 1.0)
    assert box.box_iou(a, b) == c_box_iou(a, b) == F32(1.0)
    assert np.isnan(box.box_iou(b, a)) and np.isnan(c_box_iou(b, a))


def test_box_iou_broadcasts():
    boxes = np.array([[0.5, 0.5, 0.2, 0.2], [0.55, 0.5, 0.2, 0.2], [0.9, 0.9, 0.1, 0.1]], F32)
    m = box.box_iou(boxes[:, None, :], boxes[None, :, :])
    assert m.shape == (3, 3)
    np.testing.assert_array_equal(m, iou_matrix(boxes))


def test_box_rmse_and_helpers():
    assert box.box_rmse((0, 0, 1, 1), (3, 4, 1, 1)) == pytest.approx(5.0)
    assert box.box_intersection((0, 0, 2, 2), (1, 1, 2, 2)) == pytest.approx(1.0)
    assert box.box_union((0, 0, 2, 2), (1, 1, 2, 2)) == pytest.approx(7.0)
    assert box.overlap(0, 2, 1, 2) == pytest.approx(1.0)
    np.testing.assert_allclose(box.box_corners((0.5, 0.5, 0.2, 0.4)), [0.4, 0.3, 0.6, 0.7], rtol=1e-6)


# ------------------------------------------------------------------------------------------------------------
# Detections container

def test_detection_views_follow_in_place_nms():
    dets = Detections([[0.5, 0.5, 0.2, 0.2], [0.51, 0.5, 0.2, 0.2], [0.1, 0.1, 0.1, 0.1]],
                      [0.9, 0.8, 0.7], [[0.3, 0.0], [0.6, 0.1], [0.2, 0.2]], classes_field=[2, 2, 2])
    first = dets[0]
    assert len(dets) == 3 and dets.classes == 2
    assert tuple(first.bbox) == tuple(F32(v) for v in (0.5, 0.5, 0.2, 0.2))
    assert first.classes == 2 and first.sort_class == 0
    nms.do_nms_sort(dets, 2, 0.45)
    # class 1 sorted last: record 2 (0.2), record 1 (0.1), record 0 (0)
    assert [float(d.prob[1]) for d in dets] == [F32(0.2), F32(0.1), 0.0]
    assert first.objectness == F32(0.7)                 # the view is positional, like dets[0] in C
    assert dets[-1].prob[0] == 0                       # record 0's class-0 prob suppressed by record 1
    assert all(d.sort_class == 1 for d in dets)
    dets[0].objectness = 0.25
    assert dets.objectness[0] == F32(0.25)
    dets[1].prob[:] = 0
    assert not dets.prob[1].any()
    with pytest.raises(IndexError):
        dets[3]
    sub = dets[1:]
    assert isinstance(sub, Detections) and len(sub) == 2


def test_concat_in_network_order():
    a = Detections(np.ones((2, 4)), [0.5, 0.6], np.full((2, 3), 0.1), classes_field=[3, 3])
    b = Detections(np.zeros((1, 4)), [0.7], np.full((1, 2), 0.2), mask=np.ones((1, 2)))
    c = Detections.concat([a, b])
    assert len(c) == 3 and c.classes == 3
    np.testing.assert_array_equal(c.objectness, F32([0.5, 0.6, 0.7]))
    np.testing.assert_array_equal(c.prob[2], F32([0.2, 0.2, 0]))
    np.testing.assert_array_equal(c.classes_field, [3, 3, 0])
    assert c.mask.shape == (3, 2) and c.mask[0].sum() == 0 and c.mask[2].sum() == 2


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
