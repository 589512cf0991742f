"""pydarknet.nms (and nms_pairs.py's pair-finder) against Darknet: golden detections, and the fast NMS against naive
transcriptions of box.c.

The goldens (../shared/darknet/golden/{v3mini,v2mini,v1mini}) hold the activated outputs of each network's
yolo/region/detection layers for the letterboxed dog image (768x576), get_network_boxes(thresh .05, hier .5,
relative 1) of them, and do_nms_sort(.45) of that. Our decoders and NMS must give the same records in the same
order. The rest checks do_nms_sort/do_nms_obj against a literal, slow transcription of box.c (the oracle below)
and against the package's own quadratic transcription (nms.do_nms_*_quadratic).
"""
import json

import numpy as np
import pytest

from pydarknet import decode, nms
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
        lft, r, t, btm = x - w / two, x + w / two, y - h / two, y + h / two
        left = np.where(lft[:, None] > lft[None, :], lft[:, None], lft[None, :])
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
