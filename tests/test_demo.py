"""The weights `make demo` trained, shipped in weights/, find the shapes in data/shapes-sample.png."""
import numpy as np

from pydarknet import Detector
from pydarknet.shapes import sample
from tests.conftest import REPO


def iou(a, b):
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = a, b
    w = max(0.0, min(ax1, bx1) - max(ax0, bx0))
    h = max(0.0, min(ay1, by1) - max(ay0, by0))
    return w * h / ((ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - w * h)


def test_shipped_weights_find_the_sample_shapes():
    image, shapes = sample(12345, 7, size=320)      # how data/shapes-sample.png was made
    stored = __import__("cv2").imread(str(REPO / "data" / "shapes-sample.png"))
    np.testing.assert_array_equal(stored, image)
    detector = Detector(REPO / "cfg" / "yolov3-tiny-shapes.cfg", REPO / "weights" / "yolov3-tiny-shapes.weights",
                        names=REPO / "data" / "shapes.names", thresh=.5)
    found = detector.detect(REPO / "data" / "shapes-sample.png")
    matched = 0
    for shape in shapes:
        truth = shape.box        # x0, y0, x1 (exclusive), y1 in pixels
        if any(d.name == shape.name and iou(d.corners, truth) > .5 for d in found):
            matched += 1
    assert matched >= len(shapes) - 1, (found, shapes)
    assert len(found) <= len(shapes) + 2
