"""The whole detection path against Darknet: dog.png -> letterbox -> network -> get_network_boxes -> do_nms_sort."""
import json

import numpy as np
import pytest

import pydarknet
from pydarknet.nms import do_nms_sort


def assert_same_detections(dets, expect, atol=1e-4):
    assert len(dets) == expect["nboxes"]
    for det, want in zip(dets, expect["dets"]):
        np.testing.assert_allclose(det.bbox, want["bbox"], rtol=0, atol=atol, err_msg=f"box {want['i']}")
        np.testing.assert_allclose(det.prob, want["prob"], rtol=0, atol=atol, err_msg=f"prob {want['i']}")
        assert det.objectness == pytest.approx(want["objectness"], abs=atol)
        assert det.sort_class == want["sort_class"]
        assert det.classes == want["classes_field"]


def assert_same_detections_up_to_ties(dets, expect, atol=1e-4):
    """The same records as Darknet's, matched one to one; their order may differ only where near-ties let it.

    do_nms_sort's stable sorts turn a 1-ulp difference in a probability (a different GEMM summation order) into a
    different order of two records that tie within rounding; test_box.py checks the order exactly on Darknet's
    own layer outputs.
    """
    assert len(dets) == expect["nboxes"]
    ours = np.hstack([dets.bbox, dets.objectness[:, None], dets.prob]).astype(np.float64)
    theirs = np.array([w["bbox"] + [w["objectness"]] + w["prob"] for w in expect["dets"]])
    free = np.ones(len(ours), bool)
    moved = 0
    for i, row in enumerate(theirs):
        close = free & (np.abs(ours - row).max(axis=1) <= atol)
        assert close.any(), f"Darknet's record {i} has no counterpart"
        j = i if close[i] else int(np.flatnonzero(close)[0])
        free[j] = False
        moved += j != i
    assert moved <= len(ours) // 100, f"{moved} records out of Darknet's order"


@pytest.mark.parametrize("name,suffix,thresh", [("v3mini", "", .05), ("v2mini", "", .05), ("v1mini", "_thresh0", 0)])
def test_dog_detections_match_darknet(reference, golden, name, suffix, thresh, device):
    net = pydarknet.load_network(reference / "testcfg" / f"{name}.cfg", reference / "testcfg" / f"{name}.weights")
    net.to(device)
    pydarknet.set_batch_network(net, 1)
    im = pydarknet.load_image_color(str(reference / "images" / "dog.png"))
    sized = pydarknet.letterbox_image(im, net.w, net.h)
    np.testing.assert_allclose(sized, np.load(golden / name / "letterbox_dog.npy"), atol=1e-6)
    pydarknet.network_predict(net, sized)
    h, w = im.shape[1:]
    raw = pydarknet.get_network_boxes(net, w, h, thresh, .5, None, 1)
    assert_same_detections(raw, json.loads((golden / name / f"dets_raw{suffix}.json").read_text()))
    classes = net.layers[-1].classes
    do_nms_sort(raw, classes, .45)
    assert_same_detections_up_to_ties(raw, json.loads((golden / name / f"dets_nms{suffix}.json").read_text()))
