"""pydarknet.box: box.c's IoU and friends against float64 and the C ternaries, and the Detections container."""
import numpy as np
import pytest

from pydarknet import box, nms
from pydarknet.box import Detections
from test_nms import c_box_iou, iou_matrix

F32 = np.float32
IMG_W, IMG_H = 768, 576          # images/dog.png


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
