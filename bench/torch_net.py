"""A small Darknet cfg -> torch.nn.Module translator, for the training benchmark (bench/bench_train.py) only.

Knows the layer types yolov3 and yolov3-tiny use: [convolutional] (batch_normalize, leaky/linear/relu/logistic,
pad or padding, stride), [maxpool] (Darknet's padding: -inf, padding//2 on the left/top, the rest on the
right/bottom), [route], [shortcut] (linear, equal shapes), [upsample] and [yolo]. The model runs on whichever
device it is moved to (the GPU benchmark, bench/gpu_check.py, uses it as the PyTorch peer). Weights are copied
from a pydarknet Network built from the same cfg, so both start equal.

[yolo] returns Darknet's activated output (logistic on x, y, objectness and classes) and keeps its input for
the loss. The loss, `yolo_loss`, is pjreddie's forward_yolo_layer written with torch tensors: the delta
(target - output on the activated values: objectness 0 except where a prediction already overlaps a truth by
more than ignore_thresh; for each truth, at its cell and best anchor, the box at scale 2 - w*h, objectness 1 and
the one-hot class), the cost |delta|^2, and as gradient -delta on the head's input, unchanged by the logistic's
derivative, as backward_yolo_layer passes it on. Left out: the truth_thresh branch (truth_thresh=1 turns it off
in every YOLOv3 cfg) and Darknet's quirk of rewriting only one class when two truths share an anchor.

`sgd(model, net)` is update_network as torch.optim.SGD: lr = rate/batch on summed gradients, momentum, and weight
decay decay*batch on the convolution weights only (Darknet does not decay biases or batch-norm scales).

torch is imported here, so import this module only where torch should be loaded (bench_train runs it in a
process of its own).
"""
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"linear": None, "leaky": nn.LeakyReLU(0.1), "relu": nn.ReLU(), "logistic": nn.Sigmoid()}
BN_EPS = 1e-5           # Darknet divides by sqrt(var) + 1e-6 forward, sqrt(var + 1e-5) backward; torch: sqrt(var + eps)


class Convolutional(nn.Module):
    def __init__(self, s, in_shape):
        super().__init__()
        c, h, w = in_shape
        size, stride = s.int("size", 1), s.int("stride", 1)
        pad = size // 2 if s.int("pad", 0) else s.int("padding", 0)
        filters = s.int("filters", 1)
        self.batch_normalize = s.int("batch_normalize", 0)
        name = s.str("activation", "logistic")
        if name not in ACTIVATIONS or s.int("groups", 1) != 1:
            raise NotImplementedError(f"{s.where()}: activation={name}, groups={s.int('groups', 1)}")
        self.conv = nn.Conv2d(c, filters, size, stride, pad, bias=not self.batch_normalize)
        # Darknet's rolling averages move .99 old + .01 new
        self.bn = nn.BatchNorm2d(filters, eps=BN_EPS, momentum=0.01) if self.batch_normalize else None
        self.activation = ACTIVATIONS[name]
        self.out_shape = (filters, (h + 2 * pad - size) // stride + 1, (w + 2 * pad - size) // stride + 1)

    def forward(self, x, outputs):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return x if self.activation is None else self.activation(x)

    def load(self, layer):
        """Copy a pydarknet Convolutional's parameters (weights are (filters, c*size*size), NCHW order)."""
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(np.asarray(layer.weights)).reshape(self.conv.weight.shape))
            if self.bn is None:
                self.conv.bias.copy_(torch.from_numpy(np.asarray(layer.biases)))
            else:
                self.bn.weight.copy_(torch.from_numpy(np.asarray(layer.scales)))
                self.bn.bias.copy_(torch.from_numpy(np.asarray(layer.biases)))
                self.bn.running_mean.copy_(torch.from_numpy(np.asarray(layer.rolling_mean)))
                self.bn.running_var.copy_(torch.from_numpy(np.asarray(layer.rolling_variance)))


class Maxpool(nn.Module):
    def __init__(self, s, in_shape):
        super().__init__()
        c, h, w = in_shape
        self.stride = s.int("stride", 1)
        self.size = s.int("size", self.stride)
        padding = s.int("padding", self.size - 1)
        self.out_shape = (c, (h + padding - self.size) // self.stride + 1,
                          (w + padding - self.size) // self.stride + 1)
        # Darknet's windows start at -(padding/2); pad on the right/bottom only as far as the last window reaches
        left = padding // 2
        self.pad = (left, max(0, (self.out_shape[2] - 1) * self.stride + self.size - left - w),
                    left, max(0, (self.out_shape[1] - 1) * self.stride + self.size - left - h))

    def forward(self, x, outputs):
        if any(self.pad):
            x = F.pad(x, self.pad, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


class Route(nn.Module):
    def __init__(self, s, in_shape, index, shapes):
        super().__init__()
        self.layers = [int(t) + index if int(t) < 0 else int(t) for t in s.str("layers").split(",") if t]
        parts = [shapes[i] for i in self.layers]
        self.out_shape = (sum(p[0] for p in parts), parts[0][1], parts[0][2])

    def forward(self, x, outputs):
        parts = [outputs[i] for i in self.layers]
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


class Shortcut(nn.Module):
    def __init__(self, s, in_shape, index):
        super().__init__()
        if s.str("activation", "linear") != "linear" or s.float("alpha", 1) != 1 or s.float("beta", 1) != 1:
            raise NotImplementedError(f"{s.where()}: only linear shortcuts with alpha = beta = 1")
        source = int(s.str("from"))
        self.source = source + index if source < 0 else source
        self.out_shape = in_shape

    def forward(self, x, outputs):
        return x + outputs[self.source]


class Upsample(nn.Module):
    def __init__(self, s, in_shape):
        super().__init__()
        c, h, w = in_shape
        self.stride, self.scale = s.int("stride", 2), s.float("scale", 1.0)
        if self.stride < 0:
            raise NotImplementedError(f"{s.where()}: negative stride")
        self.out_shape = (c, h * self.stride, w * self.stride)

    def forward(self, x, outputs):
        y = F.interpolate(x, scale_factor=self.stride, mode="nearest")
        return y if self.scale == 1 else y * self.scale


class Yolo(nn.Module):
    def __init__(self, s, in_shape):
        super().__init__()
        c, h, w = in_shape
        self.classes = s.int("classes", 20)
        total = s.int("num", 1)
        self.mask = s.ints("mask", list(range(total)))
        anchors = s.floats("anchors", [])
        self.anchors = np.full(2 * total, .5, np.float32)
        self.anchors[:min(len(anchors), 2 * total)] = anchors[:2 * total]
        self.ignore_thresh = s.float("ignore_thresh", .5)
        self.max_boxes = s.int("max", 90)
        self.n = len(self.mask)
        self.out_shape = in_shape
        # the channels Darknet's forward_yolo_layer passes through the logistic: x, y, objectness, classes
        entry = np.ones(5 + self.classes, bool)
        entry[2:4] = False
        self.register_buffer("logistic", torch.from_numpy(np.tile(entry, self.n)).reshape(1, -1, 1, 1),
                             persistent=False)
        self.input = None

    def forward(self, x, outputs):
        self.input = x
        return torch.where(self.logistic, torch.sigmoid(x), x)


class DarknetTorch(nn.Module):
    """The layers of a cfg (sections from pydarknet.cfg.read_cfg) in Darknet's order; forward returns the outputs of
    the [yolo] layers, as Darknet activates them."""

    def __init__(self, sections):
        super().__init__()
        net = sections[0]
        self.net_h, self.net_w = net.int("height"), net.int("width")
        shape = (net.int("channels"), self.net_h, self.net_w)
        shapes, layers = [], []
        for index, s in enumerate(sections[1:]):
            if s.name in ("convolutional", "conv"):
                layer = Convolutional(s, shape)
            elif s.name in ("maxpool", "max"):
                layer = Maxpool(s, shape)
            elif s.name == "route":
                layer = Route(s, shape, index, shapes)
            elif s.name == "shortcut":
                layer = Shortcut(s, shape, index)
            elif s.name == "upsample":
                layer = Upsample(s, shape)
            elif s.name == "yolo":
                layer = Yolo(s, shape)
            else:
                raise NotImplementedError(f"{s.where()}: [{s.name}] is not translated to torch")
            layers.append(layer)
            shape = layer.out_shape
            shapes.append(shape)
        self.layers = nn.ModuleList(layers)
        self.heads = [layer for layer in layers if isinstance(layer, Yolo)]

    def forward(self, x):
        outputs = []
        for layer in self.layers:
            x = layer(x, outputs)
            outputs.append(x)
        return [outputs[i] for i, layer in enumerate(self.layers) if isinstance(layer, Yolo)]

    def load(self, net):
        """Copy the parameters of a pydarknet Network built from the same cfg."""
        if len(net.layers) != len(self.layers):
            raise ValueError(f"{len(net.layers)} pydarknet layers, {len(self.layers)} torch layers")
        for ours, layer in zip(self.layers, net.layers):
            if isinstance(ours, Convolutional):
                ours.load(layer)
        return self


def _iou(ax, ay, aw, ah, bx, by, bw, bh):
    """Darknet's box_iou on centre/size boxes, broadcasting."""
    w = (torch.minimum(ax + aw / 2, bx + bw / 2) - torch.maximum(ax - aw / 2, bx - bw / 2)).clamp(min=0)
    h = (torch.minimum(ay + ah / 2, by + bh / 2) - torch.maximum(ay - ah / 2, by - bh / 2)).clamp(min=0)
    inter = w * h
    union = aw * ah + bw * bh - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(inter))


def _tensor(a, device):
    return torch.from_numpy(np.asarray(a, np.float32)).to(device)


def yolo_delta(head, y, truth, net_w, net_h):
    """forward_yolo_layer's delta for one head from its activated output y (B, n*(5+classes), h, w) and Darknet's
    truth rows (B, max_boxes*5: x, y, w, h, class, zero padded)."""
    batch, _, h, w = y.shape
    entries = 5 + head.classes
    y = y.detach().reshape(batch, head.n, entries, h, w)
    anchors = head.anchors.reshape(-1, 2)
    device = y.device
    mask_anchors = torch.from_numpy(anchors[head.mask]).to(device)             # (n, 2) pixels
    truth = np.asarray(truth, np.float32).reshape(batch, -1, 5)
    present = np.cumprod(truth[:, :, 0] != 0, axis=1).astype(bool)             # boxes before the first x == 0
    t_count = max(int(present.sum(1).max()), 1)
    boxes = torch.from_numpy(truth[:, :t_count]).to(device)                     # (B, T, 5)
    valid = torch.from_numpy(present[:, :t_count]).to(device)

    # every prediction: objectness 0, unless it already overlaps a truth by more than ignore_thresh
    gx = torch.arange(w, dtype=y.dtype, device=device).reshape(1, 1, 1, w)
    gy = torch.arange(h, dtype=y.dtype, device=device).reshape(1, 1, h, 1)
    px = (gx + y[:, :, 0]) / w
    py = (gy + y[:, :, 1]) / h
    pw = torch.exp(y[:, :, 2]) * mask_anchors[:, 0].reshape(1, -1, 1, 1) / net_w
    ph = torch.exp(y[:, :, 3]) * mask_anchors[:, 1].reshape(1, -1, 1, 1) / net_h
    b = boxes.reshape(batch, 1, 1, 1, t_count, 5)
    overlap = _iou(px[..., None], py[..., None], pw[..., None], ph[..., None], b[..., 0], b[..., 1], b[..., 2],
                   b[..., 3])
    overlap = torch.where(valid.reshape(batch, 1, 1, 1, t_count), overlap, torch.zeros_like(overlap))
    delta = torch.zeros_like(y)
    delta[:, :, 4] = torch.where(overlap.amax(-1) > head.ignore_thresh, torch.zeros_like(y[:, :, 4]), -y[:, :, 4])

    # each truth: its cell, its best anchor of all (by shape); trained here when that anchor is one of this head's
    bi, ti = np.nonzero(present)
    if bi.size:
        tx, ty, tw, th, cls = (truth[bi, ti, k] for k in range(5))
        aw, ah = anchors[None, :, 0] / net_w, anchors[None, :, 1] / net_h        # box_iou at the origin
        inter = np.minimum(tw[:, None], aw) * np.minimum(th[:, None], ah)
        shape_iou = inter / (tw[:, None] * th[:, None] + aw * ah - inter)
        best = shape_iou.argmax(1)
        lookup = np.full(len(anchors), -1)
        lookup[head.mask] = np.arange(head.n)
        m = lookup[best]
        i, j = (tx * w).astype(np.int64), (ty * h).astype(np.int64)
        keep = (m >= 0) & (i < w) & (j < h)
        bi, m, i, j, best = bi[keep], m[keep], i[keep], j[keep], best[keep]
        tx, ty, tw, th, cls = tx[keep], ty[keep], tw[keep], th[keep], cls[keep].astype(np.int64)
        scale = _tensor(2 - tw * th, device)
        targets = (tx * w - i, ty * h - j, np.log(tw * net_w / anchors[best, 0]), np.log(th * net_h / anchors[best, 1]))
        bi, m, j, i = (torch.from_numpy(v).to(device) for v in (bi, m, j, i))
        at = y[bi, m, :, j, i]                                                  # (K, entries)
        for k, target in enumerate(targets):                                    # x, y, w, h
            delta[bi, m, k, j, i] = scale * (_tensor(target, device) - at[:, k])
        delta[bi, m, 4, j, i] = 1 - at[:, 4]
        onehot = torch.zeros(len(bi), head.classes, device=device)
        onehot[torch.arange(len(bi), device=device), torch.from_numpy(cls).to(device)] = 1
        delta[bi, m, 5:, j, i] = onehot - at[:, 5:]
    return delta.reshape(batch, -1, h, w)


def yolo_loss(model, heads, truth):
    """(surrogate, cost): surrogate.backward() puts -delta on each head's input, Darknet's gradient; cost is
    Darknet's: the mean over the heads of |delta|^2."""
    surrogate, costs = 0, []
    for head, y in zip(model.heads, heads):
        delta = yolo_delta(head, y, truth, model.net_w, model.net_h)
        surrogate = surrogate - (delta * head.input).sum()
        costs.append(float((delta * delta).sum()))
    return surrogate, float(np.mean(costs))


def sgd(model, net):
    """update_network's SGD for this model, at the pydarknet Network's current rate, momentum, decay and batch."""
    batch = net.batch * net.subdivisions
    weights = [layer.conv.weight for layer in model.layers if isinstance(layer, Convolutional)]
    ids = {id(p) for p in weights}
    others = [p for p in model.parameters() if id(p) not in ids]
    return torch.optim.SGD([{"params": weights, "weight_decay": net.decay * batch},
                            {"params": others, "weight_decay": 0.0}],
                           lr=net.current_rate() / batch, momentum=net.momentum)
