"""[region]: YOLOv2's detection head; logistic on x, y, objectness, softmax over classes."""
from .. import box
from ..activations import LOGISTIC
from ..backend import ops_of, to_host
from .base import Layer, positive
from .yolo import read_anchors


class Region(Layer):
    type = "region"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        if s.has("tree"):
            raise s.error("softmax trees (hierarchical classes, yolo9000) are not supported yet", "tree")
        coords = positive(s, "coords", s.int("coords", 4))
        classes = positive(s, "classes", s.int("classes", 20))
        num = positive(s, "num", s.int("num", 1))
        c, h, w = in_shape
        if c != num * (classes + coords + 1):
            raise s.error(f"needs num*(classes+coords+1) = {num * (classes + coords + 1)} input channels, "
                          f"the layer before gives {c} (set its filters)")
        background = s.int("background", 0)
        if background not in (0, 1):        # Darknet adds it to the classes: one extra softmax entry, or none
            raise s.error(f"must be 0 or 1, not {background}", "background")
        layer = cls(in_shape, num, classes, coords, read_anchors(s, num), s.int("softmax", 0), background)
        for key, default in (("log", 0), ("sqrt", 0), ("max", 30), ("rescore", 0), ("classfix", 0),
                             ("absolute", 0), ("random", 0), ("bias_match", 0)):
            setattr(layer, "max_boxes" if key == "max" else key, s.int(key, default))
        for key, default in (("jitter", .2), ("thresh", .5), ("coord_scale", 1.0), ("object_scale", 1.0),
                             ("noobject_scale", 1.0), ("mask_scale", 1.0), ("class_scale", 1.0)):
            setattr(layer, key, s.float(key, default))
        return layer

    def __init__(self, in_shape, n, classes, coords, anchors, softmax, background):
        super().__init__(in_shape)
        self.n, self.classes, self.coords, self.anchors = n, classes, coords, anchors
        self.softmax, self.background = softmax, background

    def describe(self):
        return "detection"

    def forward(self, x, net):
        ops = ops_of(x)
        batch = x.shape[0]
        y = self.new_output(batch)
        y[...] = x
        _, h, w = self.out_shape
        entries = y.reshape(batch, self.n, self.coords + 1 + self.classes, h * w)
        ops.activate(entries[:, :, 0:2], LOGISTIC)
        if not self.background:
            ops.activate(entries[:, :, self.coords], LOGISTIC)
        first = self.coords + 1
        if self.softmax:
            # Darknet's softmax_cpu over the classes (+background) of every anchor and cell, from the raw input
            first = self.coords + (0 if self.background else 1)
            count = self.classes + self.background
            rows = x.reshape(batch * self.n, -1)[:, first * h * w:]
            out = y.reshape(batch * self.n, -1)[:, first * h * w:]
            ops.softmax_forward(rows, count, h * w, 1, h * w, 1.0, out)
        else:
            ops.activate(entries[:, :, first:], LOGISTIC)
        return y

    def detections(self, net, batch_index, img_w, img_h, thresh, relative=True, letter=True):
        _, h, w = self.out_shape
        return box.region_detections(to_host(self.output[batch_index]), w, h, self.n, self.anchors, self.classes,
                                     self.coords, net.w, net.h, img_w, img_h, thresh, relative, self.background)
