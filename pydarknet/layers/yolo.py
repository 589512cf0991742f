"""[yolo]: YOLOv3's detection head; logistic on x, y, objectness and classes, boxes from anchors chosen by mask.

In training the forward pass also builds the loss, as pjreddie's forward_yolo_layer does: the layer's own delta
(target - output on the activated values, which backward adds to the previous layer unchanged), the cost
|delta|^2, and the "Region N Avg IOU" line on stdout.
"""
import numpy as np

from .. import decode
from ..activations import LOGISTIC
from ..backend import ops_of, to_host
from ..box import iou
from ..jit import ieee_kernel
from ..loss import F32, anchor_box, c_div, c_float, check_classes, delta_anchor_box, squared_magnitude, truth_rows
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
    host_delta = True       # the loss is computed on the host from the output (Darknet copies it over too)

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
        self.ignore_thresh, self.truth_thresh = .5, 1.0
        self.cost = None

    @property
    def truths(self):
        """l.truths: max_boxes records of x, y, w, h, class per image."""
        return self.max_boxes * 5

    def forward(self, x, net):
        ops = ops_of(x)
        y = self.new_output(x.shape[0])
        y[...] = x
        _, h, w = self.out_shape
        entries = y.reshape(x.shape[0], self.n, 5 + self.classes, h * w)
        ops.activate(entries[:, :, 0:2], LOGISTIC)
        ops.activate(entries[:, :, 4:], LOGISTIC)
        if net.train:
            self.zero_delta(x.shape[0])     # forward_yolo_layer memsets its delta itself
            self.cost = None if net.truth is None else self.loss(net)
        return y

    def loss(self, net):
        """forward_yolo_layer's training part: fills self.delta, prints Darknet's line, returns |delta|^2."""
        batch = self.output.shape[0]
        _, h, w = self.out_shape
        truth = truth_rows(net, batch, self.truths)
        check_classes(truth, batch, self.truths, 5, 4, self.classes, self.max_boxes, self)
        anchors = np.asarray(self.anchors, np.float32)
        stats = _yolo_loss(to_host(self.output).reshape(-1), self.delta.reshape(-1), truth, self.truths, anchors,
                           np.asarray(self.mask, np.int64), anchors.size // 2, self.classes, w, h, net.w, net.h,
                           F32(self.ignore_thresh), F32(self.truth_thresh), self.max_boxes, batch)
        avg_iou, recall, recall75, avg_cat, avg_obj, avg_anyobj, count, class_count = stats
        print(f"Region {self.index} Avg IOU: {c_float(c_div(avg_iou, count))}, "
              f"Class: {c_float(c_div(avg_cat, class_count))}, Obj: {c_float(c_div(avg_obj, count))}, "
              f"No Obj: {c_float(c_div(avg_anyobj, w * h * self.n * batch))}, "
              f".5R: {c_float(c_div(recall, count))}, .75R: {c_float(c_div(recall75, count))},  count: {count}")
        return squared_magnitude(self.delta)

    def backward(self, x, dx, net):
        """backward_yolo_layer: axpy of the delta into the previous layer's, no activation gradient."""
        self.add_delta_to(dx)

    def detections(self, net, batch_index, img_w, img_h, thresh, relative=True, letter=True):
        _, h, w = self.out_shape
        return decode.yolo_detections(to_host(self.output[batch_index]), w, h, self.mask, self.anchors, self.classes,
                                   net.w, net.h, img_w, img_h, thresh, relative, letter)


@ieee_kernel(inline="always")
def _delta_yolo_class(output, delta, index, cls, classes, stride):
    """delta_yolo_class; returns output[class] for avg_cat. pjreddie tests the FIRST class's delta (`delta[index]`),
    not this class's: when it is set (another truth took the anchor), only this class's delta is rewritten."""
    if delta[index]:
        delta[index + stride * cls] = F32(1.0) - output[index + stride * cls]
        return output[index + stride * cls]
    for n in range(classes):
        delta[index + stride * n] = (F32(1.0) if n == cls else F32(0.0)) - output[index + stride * n]
    return output[index + stride * cls]


@ieee_kernel
def _yolo_loss(output, delta, truth, truths, biases, mask, total, classes, lw, lh, net_w, net_h, ignore_thresh,
               truth_thresh, max_boxes, batch):
    """pjreddie's forward_yolo_layer after the activations, on flat arrays with its entry_index arithmetic."""
    n_mask = mask.size
    area = lw * lh
    entries = 4 + classes + 1
    outputs = area * n_mask * entries
    size = output.size
    avg_iou = F32(0.0)
    recall = F32(0.0)
    recall75 = F32(0.0)
    avg_cat = F32(0.0)
    avg_obj = F32(0.0)
    avg_anyobj = F32(0.0)
    count = 0
    class_count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for n in range(n_mask):
                    box_index = b * outputs + n * area * entries + j * lw + i
                    px, py, pw, ph = anchor_box(output, biases, mask[n], box_index, i, j, lw, lh, net_w, net_h, area)
                    best_iou = F32(0.0)
                    best_t = 0
                    for t in range(max_boxes):
                        k = b * truths + t * 5
                        if not truth[k]:
                            break
                        v = iou(px, py, pw, ph, truth[k], truth[k + 1], truth[k + 2], truth[k + 3])
                        if v > best_iou:
                            best_iou = v
                            best_t = t
                    obj_index = box_index + 4 * area
                    avg_anyobj += output[obj_index]
                    delta[obj_index] = F32(0.0) - output[obj_index]
                    if best_iou > ignore_thresh:
                        delta[obj_index] = 0
                    if best_iou > truth_thresh:
                        delta[obj_index] = F32(1.0) - output[obj_index]
                        k = b * truths + best_t * 5
                        _delta_yolo_class(output, delta, box_index + 5 * area, int(truth[k + 4]), classes, area)
                        delta_anchor_box(truth[k], truth[k + 1], truth[k + 2], truth[k + 3], output, biases, mask[n],
                                         box_index, i, j, lw, lh, net_w, net_h, delta,
                                         F32(2.0) - truth[k + 2] * truth[k + 3], area)
        for t in range(max_boxes):
            k = b * truths + t * 5
            tx, ty, tw, th = truth[k], truth[k + 1], truth[k + 2], truth[k + 3]
            if not tx:
                break
            best_iou = F32(0.0)
            best_n = 0
            i = int(tx * F32(lw))
            j = int(ty * F32(lh))
            for n in range(total):
                v = iou(F32(0.0), F32(0.0), biases[2 * n] / F32(net_w), biases[2 * n + 1] / F32(net_h),
                        F32(0.0), F32(0.0), tw, th)
                if v > best_iou:
                    best_iou = v
                    best_n = n
            mask_n = -1
            for m in range(n_mask):
                if mask[m] == best_n:
                    mask_n = m
                    break
            if mask_n < 0:
                continue
            box_index = b * outputs + mask_n * area * entries + j * lw + i
            if box_index < 0 or box_index + (4 + classes) * area >= size:
                continue    # a box at x or y == 1: C writes past the buffer; we skip it
            v = delta_anchor_box(tx, ty, tw, th, output, biases, best_n, box_index, i, j, lw, lh, net_w, net_h,
                                 delta, F32(2.0) - tw * th, area)
            obj_index = box_index + 4 * area
            avg_obj += output[obj_index]
            delta[obj_index] = F32(1.0) - output[obj_index]
            avg_cat += _delta_yolo_class(output, delta, box_index + 5 * area, int(truth[k + 4]), classes, area)
            count += 1
            class_count += 1
            if v > .5:
                recall += F32(1.0)
            if v > .75:
                recall75 += F32(1.0)
            avg_iou += v
    return avg_iou, recall, recall75, avg_cat, avg_obj, avg_anyobj, count, class_count
