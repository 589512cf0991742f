"""[detection]: YOLOv1's head; the grid of class probabilities, confidences and boxes from a connected layer."""
from .. import box
from ..backend import ops_of, to_host
from .base import Layer, positive


class Detection(Layer):
    type = "detection"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        classes = positive(s, "classes", s.int("classes", 1))
        coords = positive(s, "coords", s.int("coords", 1))
        num = positive(s, "num", s.int("num", 1))
        side = positive(s, "side", s.int("side", 7))
        c, h, w = in_shape
        if side * side * ((1 + coords) * num + classes) != c * h * w:
            raise s.error(f"side*side*((1+coords)*num+classes) = {side * side * ((1 + coords) * num + classes)} "
                          f"must equal the {c * h * w} inputs")
        layer = cls(in_shape, side, num, classes, coords, s.int("softmax", 0), s.int("sqrt", 0))
        for key, default in (("rescore", 0), ("max", 90), ("forced", 0), ("random", 0), ("reorg", 0)):
            setattr(layer, "max_boxes" if key == "max" else key, s.int(key, default))
        for key, default in (("jitter", .2), ("coord_scale", 1.0), ("object_scale", 1.0), ("noobject_scale", 1.0),
                             ("class_scale", 1.0)):
            setattr(layer, key, s.float(key, default))
        return layer

    def __init__(self, in_shape, side, n, classes, coords, softmax, sqrt):
        super().__init__(in_shape)
        self.side, self.n, self.classes, self.coords, self.softmax, self.sqrt = side, n, classes, coords, softmax, sqrt

    def darknet_out_shape(self):
        return 0, 0, 0

    def darknet_lwhc(self):
        return self.side, self.side, 0

    def describe(self):
        return "Detection Layer"

    def forward(self, x, net):
        ops = ops_of(x)
        batch = x.shape[0]
        y = self.new_output(batch)
        y[...] = x
        if self.softmax:
            cells = self.side * self.side
            flat = x.reshape(batch, -1)
            # a softmax over the classes of each cell; confidences and boxes stay as they came
            ops.softmax_forward(flat, self.classes, cells, self.classes, 1, 1.0, y.reshape(batch, -1))
        return y

    def detections(self, net, batch_index, img_w, img_h, thresh, relative=True, letter=True):
        return box.detection_detections(to_host(self.output[batch_index]).reshape(-1), self.side, self.n,
                                        self.classes, self.sqrt, img_w, img_h, thresh)
