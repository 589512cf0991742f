"""[detection]: YOLOv1's head; the grid of class probabilities, confidences and boxes from a connected layer.

In training the forward pass also builds forward_detection_layer's loss: the delta (scaled target - output on the
raw outputs), the cost |delta|^2 and the "Detection Avg IOU" line on stdout. backward adds the delta to the
previous layer's.
"""
import numpy as np

from .. import decode
from ..backend import ops_of, to_host
from ..box import iou
from ..jit import ieee_kernel
from ..loss import F32, c_div, c_float, rmse, squared_magnitude, truth_rows
from .base import Layer, positive


class Detection(Layer):
    type = "detection"
    host_delta = True       # the loss is computed on the host from the output (Darknet copies it over too)

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
        self.cost = None
        self.rescore = self.forced = self.random = 0
        self.coord_scale = self.object_scale = self.noobject_scale = self.class_scale = 1.0

    @property
    def truths(self):
        """l.truths: per cell is_obj, the one-hot classes and x, y, w, h (data.c fill_truth_region)."""
        return self.side * self.side * (1 + self.coords + self.classes)

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
        if net.train:
            self.zero_delta(batch)
            self.cost = None if net.truth is None else self.loss(net)
        return y

    def loss(self, net):
        """forward_detection_layer's training part: fills self.delta, prints Darknet's line, returns the cost.

        The cost is pow(mag_array(delta), 2), as for yolo and region: pjreddie's detection_layer.c sums the scaled
        squared errors into *l.cost as it goes, then overwrites that sum with |delta|^2 before it prints (the golden
        step-1 cost, 280.85, is |delta|^2; the running sum would be 19.19)."""
        batch = self.output.shape[0]
        locations = self.side * self.side
        truth = truth_rows(net, batch, self.truths)
        # `random`: before 64000 images Darknet picks the responsible box with rand() % n instead of by IoU
        picks = np.full(batch * locations, -1, np.int64)
        if self.random and net.seen < 64000:
            picks[:] = net.rng.integers(0, self.n, picks.size)
        stats = _detection_loss(to_host(self.output).reshape(-1), self.delta.reshape(-1), truth, self.side,
                                self.n, self.classes, self.coords, self.inputs, self.sqrt, self.rescore, self.forced,
                                picks, F32(self.coord_scale), F32(self.object_scale), F32(self.noobject_scale),
                                F32(self.class_scale), batch)
        avg_iou, avg_cat, avg_allcat, avg_obj, avg_anyobj, count = stats
        print(f"Detection Avg IOU: {c_float(c_div(avg_iou, count))}, Pos Cat: {c_float(c_div(avg_cat, count))}, "
              f"All Cat: {c_float(c_div(avg_allcat, count * self.classes))}, "
              f"Pos Obj: {c_float(c_div(avg_obj, count))}, "
              f"Any Obj: {c_float(c_div(avg_anyobj, batch * locations * self.n))}, count: {count}")
        return squared_magnitude(self.delta)

    def backward(self, x, dx, net):
        """backward_detection_layer: axpy of the delta into the previous layer's."""
        self.add_delta_to(dx)

    def detections(self, net, batch_index, img_w, img_h, thresh, relative=True, letter=True):
        return decode.detection_detections(to_host(self.output[batch_index]).reshape(-1), self.side, self.n,
                                        self.classes, self.sqrt, img_w, img_h, thresh)


@ieee_kernel(inline="always")
def _predicted_box(output, box_index, side, sqrt):
    """A v1 prediction as a box relative to the image: (x, y) in its cell over side, (w, h) squared with sqrt."""
    ox = output[box_index] / F32(side)
    oy = output[box_index + 1] / F32(side)
    ow = output[box_index + 2]
    oh = output[box_index + 3]
    if sqrt:
        ow = ow * ow
        oh = oh * oh
    return ox, oy, ow, oh

@ieee_kernel
def _detection_loss(output, delta, truth, side, num, classes, coords, inputs, sqrt, rescore, forced, picks,
                    coord_scale, object_scale, noobject_scale, class_scale, batch):
    """forward_detection_layer's training loop on flat arrays. Its running sum of scaled squared errors into
    *l.cost is left out: the C overwrites it with pow(mag_array(delta), 2) before it prints."""
    avg_iou = F32(0.0)
    avg_cat = F32(0.0)
    avg_allcat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    locations = side * side
    for b in range(batch):
        index = b * inputs
        for i in range(locations):
            truth_index = (b * locations + i) * (1 + coords + classes)
            is_obj = int(truth[truth_index])
            for j in range(num):
                p_index = index + locations * classes + i * num + j
                delta[p_index] = noobject_scale * (F32(0.0) - output[p_index])
                avg_anyobj += output[p_index]
            best_index = -1
            best_iou = F32(0.0)
            best_rmse = F32(20.0)
            if not is_obj:
                continue
            class_index = index + i * classes
            for j in range(classes):
                t = truth[truth_index + 1 + j]
                delta[class_index + j] = class_scale * (t - output[class_index + j])
                if t:
                    avg_cat += output[class_index + j]
                avg_allcat += output[class_index + j]
            k = truth_index + 1 + classes
            tx = truth[k] / F32(side)
            ty = truth[k + 1] / F32(side)
            tw = truth[k + 2]
            th = truth[k + 3]
            for j in range(num):
                box_index = index + locations * (classes + num) + (i * num + j) * coords
                ox, oy, ow, oh = _predicted_box(output, box_index, side, sqrt)
                v = iou(ox, oy, ow, oh, tx, ty, tw, th)
                r = rmse(ox, oy, ow, oh, tx, ty, tw, th)
                if best_iou > 0 or v > 0:
                    if v > best_iou:
                        best_iou = v
                        best_index = j
                else:
                    if r < best_rmse:
                        best_rmse = r
                        best_index = j
            if forced:
                best_index = 1 if tw * th < .1 else 0
            if picks[b * locations + i] >= 0:
                best_index = picks[b * locations + i]
            box_index = index + locations * (classes + num) + (i * num + best_index) * coords
            tbox_index = truth_index + 1 + classes
            ox, oy, ow, oh = _predicted_box(output, box_index, side, sqrt)
            v = iou(ox, oy, ow, oh, tx, ty, tw, th)
            p_index = index + locations * classes + i * num + best_index
            avg_obj += output[p_index]
            delta[p_index] = F32(np.float64(object_scale) * (1.0 - np.float64(output[p_index])))
            if rescore:
                delta[p_index] = object_scale * (v - output[p_index])
            for m in range(4):
                delta[box_index + m] = coord_scale * (truth[tbox_index + m] - output[box_index + m])
            if sqrt:
                for m in range(2, 4):
                    root = F32(np.sqrt(np.float64(truth[tbox_index + m])))
                    delta[box_index + m] = coord_scale * (root - output[box_index + m])
            avg_iou += v
            count += 1
    return avg_iou, avg_cat, avg_allcat, avg_obj, avg_anyobj, count
