"""`pydarknet export CFG WEIGHTS OUT.onnx [-batch N] [-decode]`: the network as a standard ONNX graph (opset 13).

Each layer becomes the ONNX operators that compute what its forward pass computes at inference, in Darknet's
NCHW memory order: batch-norm is folded into the convolution (or connected layer) before it, maxpool pads with
-FLT_MAX as Darknet's CPU does, reorg is the reshape-transpose-reshape of reorg_cpu's own index arithmetic (which
is not DepthToSpace's), dropout is the identity and [cost] outputs zeros, as it does without truth. The graph's
outputs are the heads as `net.layers[i].output` holds them (the activated [yolo]/[region] tensors, the [detection]
vector), named `<section>_<index>` (a network without a head outputs its last layer before [cost]). With `decode`,
three more outputs hold every box before NMS, in the heads' own record order (get_network_boxes'): `boxes` (x, y, w, h
relative to the network input, before the letterbox correction), `objectness`, and `scores` (objectness times
each class probability, unthresholded).

onnx (and onnxruntime, to run the graph) are the optional extra `pydarknet[export]`.
"""
import math
import sys

import numpy as np

from . import activations as act
from . import files
from .backend import to_host
from .errors import DarknetError

OPSET = 13
INSTALL = "pip install 'pydarknet[export]' (or: pip install onnx onnxruntime)"
FLT_MAX = np.float32(3.4028234663852886e38)


def import_onnx():
    """The onnx package, or one line saying what to install."""
    try:
        import onnx.helper
        import onnx.numpy_helper
    except ImportError:
        raise DarknetError(f"export needs the onnx package: {INSTALL}") from None
    return onnx


class Graph:
    """The nodes and constants of the graph being built; each method adds one node and returns its output's name."""

    def __init__(self, onnx, batch):
        self.onnx, self.helper, self.batch = onnx, onnx.helper, batch
        self.nodes, self.initializers, self.count = [], [], 0
        self.layer = None       # the index of the layer being emitted: its nodes are named `L<index>.<op>.<n>`

    def fresh(self, hint):
        self.count += 1
        return f"{hint}.{self.count}"

    def const(self, array, hint="const", dtype=np.float32):
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
        return name

    def ints(self, values):
        return self.const(np.asarray(values, np.int64), "ints", np.int64)

    def op(self, op_type, inputs, hint=None, **attrs):
        name = self.fresh(hint or op_type.lower())
        node = f"L{self.layer}.{op_type}.{self.count}" if self.layer is not None else None
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [name], name=node, **attrs))
        return name

    def scalar(self, value):
        return self.const(np.float32(value), "scalar")

    def mul(self, x, value):
        return x if value == 1 else self.op("Mul", [x, self.scalar(value)])

    def add(self, x, value):
        return x if value == 0 else self.op("Add", [x, self.scalar(value)])

    def reshape(self, x, shape):
        return self.op("Reshape", [x, self.ints(shape)])

    def transpose(self, x, perm):
        return self.op("Transpose", [x], perm=list(perm))

    def slice(self, x, axis, start, end):
        return self.op("Slice", [x, self.ints([start]), self.ints([end]), self.ints([axis])])

    def where(self, mask, a, b):
        return self.op("Where", [self.const(mask, "mask", np.bool_), a, b])


# ---- activations (activations.h) -------------------------------------------------------------------------------

def piecewise(g, x, low, high, below, inside, above):
    """Darknet's piecewise-linear activations: (slope, offset) of each part, split at `low` and `high`."""
    def part(slope, offset):
        return g.add(g.mul(x, slope), offset)
    under = g.op("Less", [x, g.scalar(low)])
    over = g.op("Greater", [x, g.scalar(high)])
    return g.op("Where", [under, part(*below), g.op("Where", [over, part(*above), part(*inside)])])


def stair(g, x):
    """n = floor(x): floor(x/2) where n is even, else x - n + floor(x/2)."""
    n = g.op("Floor", [x])
    half = g.op("Floor", [g.mul(x, .5)])
    even = g.op("Equal", [g.op("Mod", [n, g.scalar(2)], fmod=1), g.scalar(0)])
    return g.op("Where", [even, half, g.op("Add", [g.op("Sub", [x, n]), half])])


def activation(g, x, code):
    """The activation with Darknet's index `code` applied to x."""
    if code == act.LINEAR:
        return x
    simple = {act.LEAKY: ("LeakyRelu", {"alpha": .1}), act.RELIE: ("LeakyRelu", {"alpha": .01}),
              act.RELU: ("Relu", {}), act.LOGISTIC: ("Sigmoid", {}), act.TANH: ("Tanh", {}),
              act.ELU: ("Elu", {"alpha": 1.0}), act.SELU: ("Selu", {"alpha": 1.6732, "gamma": 1.0507})}
    if code in simple:
        op_type, attrs = simple[code]
        return g.op(op_type, [x], **attrs)
    if code == act.LOGGY:
        return g.add(g.mul(g.op("Sigmoid", [x]), 2), -1)
    if code == act.RAMP:
        return g.op("Add", [g.op("Relu", [x]), g.mul(x, .1)])
    if code == act.HARDTAN:
        return g.op("Clip", [x, g.scalar(-1), g.scalar(1)])
    if code == act.PLSE:
        return piecewise(g, x, -4, 4, (.01, .04), (.125, .5), (.01, .96))
    if code == act.LHTAN:
        return piecewise(g, x, 0, 1, (.001, 0), (1, 0), (.001, .999))
    if code == act.STAIR:
        return stair(g, x)
    raise DarknetError(f"activation {act.ACTIVATIONS[code]} has no ONNX form")


def folded_batchnorm(layer):
    """(k, offset) per output of Darknet's inference batch-norm + bias: (x - mean) / (sqrt(var) + 1e-6) * scale
    + bias = k x + offset, in float64; (1, bias) without batch-norm."""
    biases = to_host(layer.biases).astype(np.float64)
    if not getattr(layer, "batch_normalize", False):
        return np.ones_like(biases), biases
    k = to_host(layer.scales).astype(np.float64) / (np.sqrt(to_host(layer.rolling_variance).astype(np.float64))
                                                    + 1e-6)
    return k, biases - to_host(layer.rolling_mean).astype(np.float64) * k


# ---- the layers: each takes the graph, the layer, its input's name and the names so far; returns its output ----

def convolutional(g, layer, x, names):
    c = layer.in_shape[0]
    k, offset = folded_batchnorm(layer)
    weights = to_host(layer.weights).astype(np.float64).reshape(layer.filters, c // layer.groups, layer.size,
                                                                 layer.size) * k[:, None, None, None]
    y = g.op("Conv", [x, g.const(weights, "weights"), g.const(offset, "biases")], kernel_shape=[layer.size] * 2,
             strides=[layer.stride] * 2, pads=[layer.pad] * 4, group=layer.groups)
    return activation(g, y, layer.activation)


def connected(g, layer, x, names):
    k, offset = folded_batchnorm(layer)
    weights = to_host(layer.weights).astype(np.float64) * k[:, None]
    y = g.op("Gemm", [g.op("Flatten", [x], axis=1), g.const(weights, "weights"), g.const(offset, "biases")],
             transB=1)
    return activation(g, g.reshape(y, (g.batch,) + layer.out_shape), layer.activation)


def local(g, layer, x, names):
    """im2col as a grouped convolution with one-hot filters (row c*size*size + i*size + j, as im2col_cpu), then
    each location's own filter bank: (B, L, 1, k) @ (L, k, filters)."""
    c, size = layer.in_shape[0], layer.size
    filters, out_h, out_w = layer.out_shape
    locations, k = out_h * out_w, c * size * size
    one_hot = np.zeros((k, 1, size, size), np.float32)
    for row in range(k):
        one_hot[row, 0, (row % (size * size)) // size, row % size] = 1
    col = g.op("Conv", [x, g.const(one_hot, "im2col")], kernel_shape=[size] * 2, strides=[layer.stride] * 2,
               pads=[layer.pad] * 4, group=c)
    rows = g.reshape(g.transpose(g.reshape(col, (g.batch, k, locations)), (0, 2, 1)), (g.batch, locations, 1, k))
    banks = to_host(layer.weights).reshape(locations, filters, k).transpose(0, 2, 1)
    y = g.reshape(g.op("MatMul", [rows, g.const(banks, "weights")]), (g.batch, locations, filters))
    y = g.op("Add", [g.transpose(y, (0, 2, 1)), g.const(to_host(layer.biases).reshape(filters, locations))])
    return activation(g, g.reshape(y, (g.batch,) + layer.out_shape), layer.activation)


def batchnorm(g, layer, x, names):
    k, offset = folded_batchnorm(layer)
    shape = (-1, 1, 1)
    return g.op("Add", [g.op("Mul", [x, g.const(k.reshape(shape))]), g.const(offset.reshape(shape))])


def maxpool(g, layer, x, names):
    """Darknet's windows start at -(padding // 2); the rest of the padding goes after the end."""
    before = layer.padding // 2
    after = layer.padding - before
    pool = {"kernel_shape": [layer.size] * 2, "strides": [layer.stride] * 2}
    if max(before, after) < layer.size:     # MaxPool's own padding ignores the padded values, as -FLT_MAX does
        return g.op("MaxPool", [x], pads=[before, before, after, after], **pool)
    padded = g.op("Pad", [x, g.ints([0, 0, before, before, 0, 0, after, after]), g.scalar(-FLT_MAX)])
    return g.op("MaxPool", [padded], **pool)


def avgpool(g, layer, x, names):
    return g.op("GlobalAveragePool", [x])


def route(g, layer, x, names):
    parts = [names[i] for i in layer.layers]
    return parts[0] if len(parts) == 1 else g.op("Concat", parts, axis=1)


def shortcut(g, layer, x, names):
    """activation(alpha x + beta add); between different shapes shortcut_cpu's sampling, as a gather of `add`
    into the positions it reaches (the others keep x)."""
    add = names[layer.source]
    if layer.source_shape == layer.in_shape:
        y = g.op("Add", [g.mul(x, layer.alpha), g.mul(add, layer.beta)])
        return activation(g, y, layer.activation)
    (c1, h1, w1), (c2, h2, w2) = layer.source_shape, layer.in_shape
    stride, sample = max(w1 // w2, 1), max(w2 // w1, 1)
    k, j, i = np.meshgrid(np.arange(min(c1, c2)), np.arange(min(h1, h2)), np.arange(min(w1, w2)), indexing="ij")
    target = ((k * h2 + j * sample) * w2 + i * sample).ravel()
    index = np.zeros(c2 * h2 * w2, np.int64)
    index[target] = ((k * h1 + j * stride) * w1 + i * stride).ravel()
    reached = np.zeros(c2 * h2 * w2, np.float32)
    reached[target] = 1
    sampled = g.op("Gather", [g.reshape(add, (g.batch, -1)), g.const(index, "index", np.int64)], axis=1)
    sampled = g.op("Mul", [sampled, g.const(reached * np.float32(layer.beta), "reached")])
    kept = g.op("Mul", [g.reshape(x, (g.batch, -1)), g.const(np.where(reached > 0, layer.alpha, 1), "alpha")])
    return activation(g, g.reshape(g.op("Add", [kept, sampled]), (g.batch,) + layer.out_shape), layer.activation)


def upsample(g, layer, x, names):
    """Nearest-neighbour as a broadcast over (h, 1, w, 1); reverse sums each stride x stride block."""
    c, h, w = layer.in_shape
    s = layer.stride
    if layer.reverse:
        _, out_h, out_w = layer.out_shape
        x = g.slice(g.slice(x, 2, 0, out_h * s), 3, 0, out_w * s)
        blocks = g.reshape(x, (g.batch, c, out_h, s, out_w, s))
        return g.mul(g.op("ReduceSum", [blocks, g.ints([3, 5])], keepdims=0), layer.scale)
    spread = g.op("Expand", [g.reshape(x, (g.batch, c, h, 1, w, 1)), g.ints([g.batch, c, h, s, w, s])])
    return g.mul(g.reshape(spread, (g.batch,) + layer.out_shape), layer.scale)


def reorg(g, layer, x, names):
    """reorg_cpu(input, l.w, l.h, l.c, batch, stride, forward=reverse): a fixed permutation of the values.
    reverse=0 reads its input as (c/s^2, h*s, w*s) and writes (c, h, w); reverse=1 the other way round."""
    c, h, w = layer.in_shape
    s, out_c = layer.stride, layer.in_shape[0] // (layer.stride ** 2)
    if layer.flatten:       # flatten(): per image [c][h*w] <-> [h*w][c]
        rows, cols = (c, h * w) if not layer.reverse else (h * w, c)
        y = g.transpose(g.reshape(x, (g.batch, rows, cols)), (0, 2, 1))
    elif layer.reverse:
        y = g.transpose(g.reshape(x, (g.batch, s, s, out_c, h, w)), (0, 3, 4, 1, 5, 2))
    else:
        y = g.transpose(g.reshape(x, (g.batch, out_c, h, s, w, s)), (0, 3, 5, 1, 2, 4))
    return g.reshape(y, (g.batch,) + layer.out_shape)


def softmax(g, layer, x, names):
    n = layer.inputs // layer.groups
    y = g.reshape(x, (g.batch, layer.groups, n))
    y = g.op("Softmax", [g.mul(y, 1 / np.float32(layer.temperature))], axis=2)
    return g.reshape(y, (g.batch,) + layer.out_shape)


def crop(g, layer, x, names):
    """The inference crop: centred, then scaled to [-1, 1] unless noadjust."""
    _, h, w = layer.in_shape
    _, out_h, out_w = layer.out_shape
    top, left = (h - out_h) // 2, (w - out_w) // 2
    y = g.slice(g.slice(x, 2, top, top + out_h), 3, left, left + out_w)
    return y if layer.noadjust else g.add(g.mul(y, 2), -1)


def dropout(g, layer, x, names):
    """At inference a dropout layer is its input."""
    return x


def cost(g, layer, x, names):
    """Without truth Darknet's [cost] computes nothing: its output stays zero (what a layer after it reads), and
    the network's output is the layer before it."""
    return g.const(np.zeros((g.batch,) + layer.out_shape, np.float32), "zeros")


def logistic(g, layer, x, names):
    """[logistic] at inference: the logistic of each input (its cross-entropy is training's)."""
    return g.op("Sigmoid", [x])


def yolo(g, layer, x, names):
    """Logistic on x, y, objectness and the classes of each anchor; w, h stay raw."""
    entries = 5 + layer.classes
    logistic = np.ones((layer.n, entries), np.bool_)
    logistic[:, 2:4] = False
    return g.where(logistic.reshape(1, -1, 1, 1), g.op("Sigmoid", [x]), x)


def region(g, layer, x, names):
    """Logistic on x, y and objectness (none with background); over the classes a softmax or logistic."""
    _, h, w = layer.out_shape
    entries = layer.coords + 1 + layer.classes
    first = layer.coords + 1
    logistic = np.zeros(entries, np.bool_)
    logistic[0:2] = True
    logistic[layer.coords] = not layer.background
    if layer.softmax:
        first = layer.coords + (0 if layer.background else 1)
    else:
        logistic[first:] = True
    rows = g.reshape(x, (g.batch, layer.n, entries, h * w))
    y = g.where(logistic.reshape(1, 1, -1, 1), g.op("Sigmoid", [rows]), rows)
    if layer.softmax:
        classes = g.op("Softmax", [g.slice(rows, 2, first, entries)], axis=2)
        y = g.op("Concat", [g.slice(y, 2, 0, first), classes], axis=2)
    return g.reshape(y, (g.batch,) + layer.out_shape)


def detection(g, layer, x, names):
    """The v1 vector [class probabilities | scales | boxes]; with softmax, over each cell's classes."""
    if not layer.softmax:
        return x
    cells, total = layer.side * layer.side, layer.inputs
    flat = g.reshape(x, (g.batch, total))
    classes = g.reshape(g.slice(flat, 1, 0, cells * layer.classes), (g.batch, cells, layer.classes))
    classes = g.reshape(g.op("Softmax", [classes], axis=2), (g.batch, cells * layer.classes))
    y = g.op("Concat", [classes, g.slice(flat, 1, cells * layer.classes, total)], axis=1)
    return g.reshape(y, (g.batch,) + layer.out_shape)


EMITTERS = {"Convolutional": convolutional, "Connected": connected, "Local": local, "Batchnorm": batchnorm,
            "Maxpool": maxpool, "Avgpool": avgpool, "Route": route, "Shortcut": shortcut, "Upsample": upsample,
            "Reorg": reorg, "Softmax": softmax, "Crop": crop, "Dropout": dropout, "Cost": cost, "Logistic": logistic,
            "Yolo": yolo, "Region": region, "Detection": detection}


# ---- decoding: get_yolo_detections, get_region_detections, get_detection_detections before NMS ----------------

def _stack_boxes(g, parts):
    """(B, a, b) tensors x, y, w, h -> (B, a, b, 4)."""
    return g.op("Concat", [g.op("Unsqueeze", [p, g.ints([3])]) for p in parts], axis=3)


def decode_anchors(g, layer, y, net):
    """[yolo] and [region]: boxes from the grid and the anchors. Records are cell by cell for yolo (anchor within
    cell), anchor by anchor for region, as Darknet makes them."""
    _, h, w = layer.out_shape
    n, entries = layer.n, layer.outputs // (layer.n * h * w)
    rows = g.reshape(y, (g.batch, n, entries, h * w))
    entry = [g.reshape(g.slice(rows, 2, e, e + 1), (g.batch, n, h * w)) for e in range(4)]
    cells = np.arange(h * w)
    anchors = np.asarray(layer.anchors, np.float64).reshape(-1, 2)
    if layer.type == "yolo":
        anchors, divide, first_class, objectness = anchors[list(layer.mask)], (net.w, net.h), 5, 4
    else:
        anchors, divide, first_class, objectness = anchors[:n], (w, h), layer.coords + 1, layer.coords
    bx = g.mul(g.op("Add", [entry[0], g.const(cells % w)]), 1 / np.float32(w))
    by = g.mul(g.op("Add", [entry[1], g.const(cells // w)]), 1 / np.float32(h))
    bw = g.op("Mul", [g.op("Exp", [entry[2]]), g.const((anchors[:, 0] / divide[0]).reshape(n, 1))])
    bh = g.op("Mul", [g.op("Exp", [entry[3]]), g.const((anchors[:, 1] / divide[1]).reshape(n, 1))])
    boxes = _stack_boxes(g, [bx, by, bw, bh])                                          # (B, n, hw, 4)
    if getattr(layer, "background", 0):
        obj = g.const(np.ones((1, n, h * w), np.float32))
    else:
        obj = g.reshape(g.slice(rows, 2, objectness, objectness + 1), (g.batch, n, h * w))
    classes = g.slice(rows, 2, first_class, first_class + layer.classes)              # (B, n, C, hw)
    scores = g.op("Mul", [g.op("Unsqueeze", [obj, g.ints([2])]), classes])
    count = n * h * w
    if layer.type == "yolo":
        boxes, scores, obj = (g.transpose(boxes, (0, 2, 1, 3)), g.transpose(scores, (0, 3, 1, 2)),
                              g.transpose(g.op("Expand", [obj, g.ints([g.batch, n, h * w])]), (0, 2, 1)))
    else:
        scores = g.transpose(scores, (0, 1, 3, 2))
        obj = g.op("Expand", [obj, g.ints([g.batch, n, h * w])])
    return (g.reshape(boxes, (g.batch, count, 4)), g.reshape(obj, (g.batch, count)),
            g.reshape(scores, (g.batch, count, layer.classes)))


def decode_detection(g, layer, y, net):
    """[detection]: boxes in their cells over side, squared with sqrt; records cell by cell."""
    side, n, classes = layer.side, layer.n, layer.classes
    cells = side * side
    flat = g.reshape(y, (g.batch, layer.inputs))
    probs = g.reshape(g.slice(flat, 1, 0, cells * classes), (g.batch, cells, 1, classes))
    scale = g.reshape(g.slice(flat, 1, cells * classes, cells * (classes + n)), (g.batch, cells, n))
    raw = g.reshape(g.slice(flat, 1, cells * (classes + n), cells * (classes + 5 * n)), (g.batch, cells, n, 4))
    entry = [g.reshape(g.slice(raw, 3, e, e + 1), (g.batch, cells, n)) for e in range(4)]
    column = np.arange(cells).reshape(cells, 1)
    bx = g.mul(g.op("Add", [entry[0], g.const(column % side)]), 1 / np.float32(side))
    by = g.mul(g.op("Add", [entry[1], g.const(column // side)]), 1 / np.float32(side))
    bw, bh = ((g.op("Mul", [e, e]) if layer.sqrt else e) for e in entry[2:])
    boxes = _stack_boxes(g, [bx, by, bw, bh])
    scores = g.op("Mul", [g.op("Unsqueeze", [scale, g.ints([3])]), probs])
    count = cells * n
    return (g.reshape(boxes, (g.batch, count, 4)), g.reshape(scale, (g.batch, count)),
            g.reshape(scores, (g.batch, count, classes)))


# ---- the whole network ----------------------------------------------------------------------------------------

def heads(net):
    """The indices of the layers whose outputs the graph gives: the detection heads, else the last non-cost one."""
    found = [i for i, layer in enumerate(net.layers) if hasattr(layer, "detections")]
    if found:
        return found
    return [max(i for i, layer in enumerate(net.layers) if layer.type != "cost")]


def output_name(layer):
    """`yolo_16`: the layer's cfg section and index."""
    return f"{layer.section.name if layer.section else layer.type}_{layer.index}"


def build_model(net, batch=1, decode=False, outputs=None):
    """The ONNX ModelProto of `net` at its cfg's input size, for batches of `batch` images; `outputs` are the
    indices of the layers whose outputs it gives (the heads by default)."""
    onnx = import_onnx()
    helper, floats = onnx.helper, onnx.TensorProto.FLOAT
    g = Graph(onnx, batch)
    x = "input"
    names = []
    for layer in net.layers:
        g.layer = layer.index       # a runtime's profile names its nodes' layers (bench/bench_peers.py)
        emit = EMITTERS.get(type(layer).__name__)
        if emit is None:
            where = layer.section.where() if layer.section else f"{net.path}: layer {layer.index}"
            raise DarknetError(f"{where}: has no ONNX form in pydarknet export")
        x = emit(g, layer, x, names)
        names.append(x)
    g.layer = None
    graph_outputs = []
    for i in heads(net) if outputs is None else outputs:
        layer = net.layers[i]
        name = output_name(layer)
        g.nodes.append(helper.make_node("Identity", [names[i]], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, floats, (batch,) + layer.out_shape))
    if decode:
        parts = [(decode_detection if layer.type == "detection" else decode_anchors)(g, layer, names[i], net)
                 for i, layer in ((i, net.layers[i]) for i in heads(net)) if hasattr(layer, "detections")]
        if not parts:
            raise DarknetError(f"{net.path}: -decode needs a yolo, region or detection layer")
        classes = net.layers[heads(net)[-1]].classes
        for k, (name, shape) in enumerate((("boxes", (4,)), ("objectness", ()), ("scores", (classes,)))):
            pieces = [part[k] for part in parts]
            g.nodes.append(helper.make_node("Concat", pieces, [name], axis=1) if len(pieces) > 1
                           else helper.make_node("Identity", pieces, [name]))
            graph_outputs.append(helper.make_tensor_value_info(name, floats, (batch, None) + shape))
    inputs = [helper.make_tensor_value_info("input", floats, (batch, net.c, net.h, net.w))]
    graph = helper.make_graph(g.nodes, "pydarknet", inputs, graph_outputs, g.initializers)
    model = helper.make_model(graph, producer_name="pydarknet", opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 8)     # what onnxruntime releases of the last years all read
    onnx.checker.check_model(model)
    return model


def export(cfgfile, weightfile, outfile, batch=1, decode=False):
    """Write the ONNX graph of cfgfile + weightfile (which must hold every layer's weights) to outfile."""
    from .network import load_network
    onnx = import_onnx()
    if batch < 1:
        raise DarknetError(f"-batch {batch}: must be at least 1")
    net = load_network(cfgfile, weightfile, complete=True)
    model = build_model(net, batch, decode)
    try:
        with files.replacing(outfile) as tmp:
            onnx.save(model, tmp)
    except OSError as e:
        raise DarknetError(f"{outfile}: cannot write: {e.strerror}") from None
    size = sum(math.prod(t.dims) for t in model.graph.initializer) * 4
    print(f"Saved {outfile}: {len(net.layers)} layers, {len(model.graph.node)} ONNX nodes, {size / 1e6:.1f} MB of "
          f"weights, outputs {', '.join(o.name for o in model.graph.output)}", file=sys.stderr)
    return 0
