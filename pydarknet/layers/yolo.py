"""[yolo]: YOLOv3's detection head; logistic on x, y, objectness and classes, boxes from anchors chosen by mask."""
import numpy as np

from .. import box
from ..activations import LOGISTIC
from ..backend import ops_of, to_host
from .base import Layer, positive


def read_anchors(s, count):
    anchors = s.floats("anchors", [])
    if anchors and len(anchors) % 2:
        raise s.error(f"anchors must come in w,h pairs, got {len(anchors)} numbers", "anchors")
    biases = np.full(2 * count, .5, np.float32)      # Darknet's default for anchors the cfg leaves out
    n = min(len(anchors), 2 * count)
    biases[:n] = anchors[:n]
    return biases


class Yolo(Layer):
    type = "yolo"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        classes = positive(s, "classes", s.int("classes", 20))
        total = positive(s, "num", s.int("num", 1))
        mask = s.ints("mask", list(range(total)))
        for m in mask:
            if not 0 <= m < total:
                raise s.error(f"mask index {m} is outside the {total} anchors (num={total})", "mask")
        c, h, w = in_shape
        if c != len(mask) * (classes + 5):
            raise s.error(f"needs {len(mask)}*({classes}+5) = {len(mask) * (classes + 5)} input channels, "
                          f"the layer before gives {c} (set its filters)")
        layer = cls(in_shape, classes, mask, read_anchors(s, total))
        layer.max_boxes = s.int("max", 90)
        layer.jitter = s.float("jitter", .2)
        layer.ignore_thresh = s.float("ignore_thresh", .5)
        layer.truth_thresh = s.float("truth_thresh", 1.0)
        layer.random = s.int("random", 0)
        return layer

    def __init__(self, in_shape, classes, mask, anchors):
        super().__init__(in_shape)
        self.classes, self.mask, self.anchors = classes, list(mask), anchors
        self.n = len(self.mask)
        self.max_boxes = 90

    def forward(self, x, net):
        ops = ops_of(x)
        y = self.new_output(x.shape[0])
        y[...] = x
        _, h, w = self.out_shape
        entries = y.reshape(x.shape[0], self.n, 5 + self.classes, h * w)
        ops.activate(entries[:, :, 0:2], LOGISTIC)
        ops.activate(entries[:, :, 4:], LOGISTIC)
        return y

    def detections(self, net, batch_index, img_w, img_h, thresh, relative=True, letter=True):
        _, h, w = self.out_shape
        return box.yolo_detections(to_host(self.output[batch_index]), w, h, self.mask, self.anchors, self.classes,
                                   net.w, net.h, img_w, img_h, thresh, relative, letter)
