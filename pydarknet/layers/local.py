"""[local]: a locally connected layer, a separate filter bank at every output position (YOLOv1)."""
import math

import numpy as np

from ..backend import assign, ops_of, xp_of
from .base import Layer, activation_code, ensure_updates, positive, sgd_update


class Local(Layer):
    type = "local"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        c, h, w = in_shape
        if not (c and h and w):
            raise s.error("the layer before a local layer must output an image")
        if s.int("pad", 0) and s.int("size", 1) != 3:
            raise s.error("pydarknet supports [local] pad=1 only with size=3: otherwise Darknet's output size and "
                          "its im2col disagree", "pad")
        return cls(in_shape, positive(s, "filters", s.int("filters", 1)), positive(s, "size", s.int("size", 1)),
                   positive(s, "stride", s.int("stride", 1)), s.int("pad", 0), activation_code(s, "logistic"))

    def __init__(self, in_shape, filters, size, stride, pad, activation):
        super().__init__(in_shape)
        c, h, w = self.in_shape
        self.filters, self.size, self.stride, self.pad, self.activation = filters, size, stride, pad, activation
        # local_out_height: the `pad` flag means "keep the size", whatever the kernel size
        out_h = (h - (1 if pad else size)) // stride + 1
        out_w = (w - (1 if pad else size)) // stride + 1
        self.out_shape = (filters, out_h, out_w)
        locations = out_h * out_w
        self.biases = self.param(self.outputs)
        self.weights = self.param(c * filters * size * size * locations)

    @property
    def fan_in(self):
        return self.size * self.size * self.in_shape[0]

    def init_random(self, rng):
        """Darknet's make_local_layer: scale*U(-1, 1), scale = sqrt(2/(size*size*c))."""
        scale = math.sqrt(2.0 / self.fan_in)
        assign(self.weights, scale * rng.uniform(-1, 1, self.weights.shape))

    def weight_arrays(self):
        return [self.biases, self.weights]

    @property
    def nweights(self):
        return self.weights.size

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return f"Local Layer: {h} x {w} x {c} image, {self.filters} filters -> {oh} x {ow} x {oc} image"

    def workspace_size(self, batch=1, training=False):
        _, out_h, out_w = self.out_shape
        return self.in_shape[0] * self.size * self.size * out_h * out_w

    def forward(self, x, net):
        ops = ops_of(x)
        y = self.new_output(x.shape[0])
        _, out_h, out_w = self.out_shape
        for b in range(x.shape[0]):
            col = ops.im2col(x[b], self.size, self.stride, self.pad, out_h, out_w, net.workspace)
            ops.local_forward(col, self.weights, self.biases, self.filters, y[b].reshape(-1))
        return ops.activate(y, self.activation)

    def backward(self, x, dx, net):
        """Darknet's backward_local_layer: per location, weight updates and a column gradient, then col2im."""
        ops = ops_of(x)
        ensure_updates(self)
        ops.gradient(self.output, self.activation, self.delta)
        self.bias_updates += self.delta.reshape(x.shape[0], -1).sum(axis=0, dtype=np.float64).astype(np.float32)
        _, out_h, out_w = self.out_shape
        for b in range(x.shape[0]):
            col = ops.im2col(x[b], self.size, self.stride, self.pad, out_h, out_w, net.workspace)
            col_delta = ops.local_backward(col, self.weights, self.delta[b].reshape(-1), self.filters,
                                           self.weight_updates, xp_of(col).empty_like(col))
            if dx is not None:
                ops.col2im(col_delta, self.size, self.stride, self.pad, dx[b])

    def update(self, net, rate, momentum, decay, batch):
        sgd_update(self, rate, momentum, decay, batch)
