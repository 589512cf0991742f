"""[region]: YOLOv2's detection head; logistic on x, y, objectness, softmax over classes.

In training the forward pass also builds pjreddie's CPU forward_region_layer loss: the delta (target - output on
the activated values, times the cfg's scales), the cost |delta|^2 and the "Region Avg IOU" line on stdout.
pjreddie's CPU backward_region_layer is empty (commented out), so on CPU its loss never reaches the network; backward
here follows backward_region_layer_gpu instead, the path Darknet's GPU training takes.
"""
import numpy as np

from .. import decode
from ..activations import LOGISTIC
from ..backend import ops_of, to_device, to_host
from ..box import iou
from ..jit import ieee_kernel
from ..loss import F32, anchor_box, c_div, c_float, check_classes, delta_anchor_box, squared_magnitude, truth_rows
from .base import Layer, positive
from .yolo import read_anchors

MAX_TRUTHS = 30     # pjreddie's region layer reads 30 boxes per image whatever `max` says (l.truths = 30*(coords+1))


class Region(Layer):
    type = "region"
    host_delta = True       # the loss is computed on the host from the output (Darknet copies it over too)

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
        self.cost = None
        self.bias_match, self.rescore, self.thresh = 0, 0, .5
        self.coord_scale = self.object_scale = self.noobject_scale = self.mask_scale = self.class_scale = 1.0

    @property
    def truths(self):
        return MAX_TRUTHS * (self.coords + 1)

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
        self.host_output = None
        if net.train:
            self.zero_delta(batch)      # forward_region_layer memsets its delta itself
            self.cost = None if net.truth is None else self.loss(net)
        return y

    def loss(self, net):
        """forward_region_layer's training part: fills self.delta, prints Darknet's line, returns |delta|^2.

        `absolute` and `max` are read from the cfg but pjreddie's loss uses neither; `mask_scale` is passed to
        delta_region_mask's int parameter, so it is truncated (used only when coords > 4)."""
        batch = self.output.shape[0]
        _, h, w = self.out_shape
        truth = truth_rows(net, batch, self.truths)
        check_classes(truth, batch, self.truths, self.coords + 1, self.coords, self.classes, MAX_TRUTHS, self)
        self.host_output = to_host(self.output)      # backward reads it again: one copy from the device per step
        stats = _region_loss(self.host_output.reshape(-1), self.delta.reshape(-1), truth, self.truths,
                             np.asarray(self.anchors, np.float32), self.n, self.classes, self.coords, w, h,
                             int(net.seen), self.bias_match, self.rescore, self.background, not self.softmax,
                             F32(self.thresh), F32(self.coord_scale), F32(self.object_scale),
                             F32(self.noobject_scale), int(self.mask_scale), F32(self.class_scale), batch)
        avg_iou, recall, avg_cat, avg_obj, avg_anyobj, count, class_count = stats
        print(f"Region Avg IOU: {c_float(c_div(avg_iou, count))}, Class: {c_float(c_div(avg_cat, class_count))}, "
              f"Obj: {c_float(c_div(avg_obj, count))}, No Obj: {c_float(c_div(avg_anyobj, w * h * self.n * batch))}, "
              f"Avg Recall: {c_float(c_div(recall, count))},  count: {count}")
        return squared_magnitude(self.delta)

    def backward(self, x, dx, net):
        """backward_region_layer_gpu: the delta times the logistic gradient o*(1-o) on x, y, the mask coords and
        (without background) objectness, not on w, h or the classes; then axpy into the previous layer's delta.
        Darknet scales its GPU copy of the delta in place; self.delta keeps the forward's values here."""
        if dx is None:
            return
        batch = self.delta.shape[0]
        _, h, w = self.out_shape
        delta = self.delta.reshape(batch, self.n, self.coords + 1 + self.classes, h * w).copy()
        out = (self.host_output if self.host_output is not None else to_host(self.output)).reshape(delta.shape)
        logistic = [0, 1] + list(range(4, self.coords)) + ([] if self.background else [self.coords])
        o = out[:, :, logistic]
        delta[:, :, logistic] *= (F32(1) - o) * o
        dx += to_device(delta.reshape(dx.shape), dx)

    def detections(self, net, batch_index, img_w, img_h, thresh, relative=True, letter=True):
        _, h, w = self.out_shape
        return decode.region_detections(to_host(self.output[batch_index]), w, h, self.n, self.anchors, self.classes,
                                     self.coords, net.w, net.h, img_w, img_h, thresh, relative, self.background)


@ieee_kernel(inline="always")
def _delta_region_class(output, delta, index, cls, classes, scale, stride, tag):
    """delta_region_class without a tree; returns what it adds to avg_cat. With tag (no softmax) and the first
    class's delta already set, only this class's delta is rewritten and nothing is counted."""
    if delta[index] and tag:
        delta[index + stride * cls] = scale * (F32(1.0) - output[index + stride * cls])
        return F32(0.0)
    for n in range(classes):
        delta[index + stride * n] = scale * ((F32(1.0) if n == cls else F32(0.0)) - output[index + stride * n])
    return output[index + stride * cls]


@ieee_kernel
def _region_loss(output, delta, truth, truths, biases, num, classes, coords, lw, lh, seen, bias_match, rescore,
                 background, tag, thresh, coord_scale, object_scale, noobject_scale, mask_scale, class_scale, batch):
    """pjreddie's CPU forward_region_layer after the activations, on flat arrays with its entry_index arithmetic."""
    area = lw * lh
    entries = coords + classes + 1
    outputs = area * num * entries
    record = coords + 1
    size = output.size
    avg_iou = F32(0.0)
    recall = F32(0.0)
    avg_cat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    class_count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for n in range(num):
                    box_index = b * outputs + n * area * entries + j * lw + i
                    px, py, pw, ph = anchor_box(output, biases, n, box_index, i, j, lw, lh, lw, lh, area)
                    best_iou = F32(0.0)
                    for t in range(30):
                        k = b * truths + t * record
                        if not truth[k]:
                            break
                        v = iou(px, py, pw, ph, truth[k], truth[k + 1], truth[k + 2], truth[k + 3])
                        if v > best_iou:
                            best_iou = v
                    obj_index = box_index + coords * area
                    avg_anyobj += output[obj_index]
                    delta[obj_index] = noobject_scale * (F32(0.0) - output[obj_index])
                    if background:
                        delta[obj_index] = noobject_scale * (F32(1.0) - output[obj_index])
                    if best_iou > thresh:
                        delta[obj_index] = 0
                    if seen < 12800:    # pull every prior toward its anchor at the cell centre
                        cx = F32((i + .5) / lw)
                        cy = F32((j + .5) / lh)
                        delta_anchor_box(cx, cy, biases[2 * n] / F32(lw), biases[2 * n + 1] / F32(lh), output,
                                         biases, n, box_index, i, j, lw, lh, lw, lh, delta, F32(.01), area)
        for t in range(30):
            k = b * truths + t * record
            tx, ty, tw, th = truth[k], truth[k + 1], truth[k + 2], truth[k + 3]
            if not tx:
                break
            best_iou = F32(0.0)
            best_n = 0
            i = int(tx * F32(lw))
            j = int(ty * F32(lh))
            for n in range(num):
                box_index = b * outputs + n * area * entries + j * lw + i
                px, py, pw, ph = anchor_box(output, biases, n, box_index, i, j, lw, lh, lw, lh, area)
                if bias_match:
                    pw = biases[2 * n] / F32(lw)
                    ph = biases[2 * n + 1] / F32(lh)
                v = iou(F32(0.0), F32(0.0), pw, ph, F32(0.0), F32(0.0), tw, th)
                if v > best_iou:
                    best_iou = v
                    best_n = n
            box_index = b * outputs + best_n * area * entries + j * lw + i
            if box_index < 0 or box_index + (entries - 1) * area >= size:
                continue    # a box at x or y == 1: C writes past the buffer; we skip it
            v = delta_anchor_box(tx, ty, tw, th, output, biases, best_n, box_index, i, j, lw, lh, lw, lh, delta,
                                 coord_scale * (F32(2.0) - tw * th), area)
            if coords > 4:
                # delta_region_mask reads the truth from offset 5 (pjreddie's layout) with an int scale
                mask_index = box_index + 4 * area
                for m in range(coords - 4):
                    delta[mask_index + m * area] = F32(mask_scale) * (truth[k + 5 + m] - output[mask_index + m * area])
            if v > .5:
                recall += F32(1.0)
            avg_iou += v
            obj_index = box_index + coords * area
            avg_obj += output[obj_index]
            delta[obj_index] = object_scale * (F32(1.0) - output[obj_index])
            if rescore:
                delta[obj_index] = object_scale * (v - output[obj_index])
            if background:
                delta[obj_index] = object_scale * (F32(0.0) - output[obj_index])
            cls = int(truth[k + coords])
            avg_cat += _delta_region_class(output, delta, box_index + (coords + 1) * area, cls, classes, class_scale,
                                           area, tag)
            count += 1
            class_count += 1
    return avg_iou, recall, avg_cat, avg_obj, avg_anyobj, count, class_count
