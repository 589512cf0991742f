"""[convolutional]: im2col + GEMM, optional batch-norm, fused bias and activation."""
import math
import os

from ..backend import ops_of
from .base import (Layer, activation_code, backward_normalize_bias, ensure_updates, normalize_bias_activate, positive,
                   sgd_update)


WINOGRAD_MIN_CHANNELS = int(os.environ.get("PYDARKNET_WINOGRAD_MIN_CHANNELS", 64))


class Convolutional(Layer):
    type = "convolutional"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        c, h, w = in_shape
        if not (c and h and w):
            raise s.error("the layer before a convolutional layer must output an image")
        size = positive(s, "size", s.int("size", 1))
        pad = s.int("padding", 0)
        if s.int("pad", 0):
            pad = size // 2
        groups = positive(s, "groups", s.int("groups", 1))
        filters = positive(s, "filters", s.int("filters", 1))
        if c % groups or filters % groups:
            raise s.error(f"groups={groups} must divide the input channels ({c}) and filters ({filters})", "groups")
        return cls(in_shape, filters, size, positive(s, "stride", s.int("stride", 1)), pad, groups,
                   activation_code(s, "logistic"), s.int("batch_normalize", 0))

    def __init__(self, in_shape, filters, size, stride, pad, groups, activation, batch_normalize):
        super().__init__(in_shape)
        c, h, w = self.in_shape
        self.filters, self.size, self.stride, self.pad, self.groups = filters, size, stride, pad, groups
        self.activation, self.batch_normalize = activation, batch_normalize
        out_h = (h + 2 * pad - size) // stride + 1
        out_w = (w + 2 * pad - size) // stride + 1
        self.out_shape = (filters, out_h, out_w)
        self.biases = self.param(filters)
        self.weights = self.param((filters, c // groups * size * size))
        if batch_normalize:
            self.scales = self.param(filters, 1.0)
            self.rolling_mean = self.param(filters)
            self.rolling_variance = self.param(filters)

    @property
    def fan_in(self):
        return self.size * self.size * self.in_shape[0] // self.groups

    def init_random(self, rng):
        """Darknet's make_convolutional_layer: weights scale*N(0,1), scale = sqrt(2/(size*size*c/groups))."""
        scale = math.sqrt(2.0 / self.fan_in)
        self.weights[...] = scale * rng.standard_normal(self.weights.shape)

    def weight_arrays(self):
        if self.batch_normalize:
            return [self.biases, self.scales, self.rolling_mean, self.rolling_variance, self.weights]
        return [self.biases, self.weights]

    @property
    def nweights(self):
        return self.weights.size

    @property
    def bflops(self):
        c = self.in_shape[0]
        _, out_h, out_w = self.out_shape
        return 2.0 * self.filters * self.size * self.size * c / self.groups * out_h * out_w / 1e9

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return (f"conv  {self.filters:5d} {self.size:2d} x{self.size:2d} /{self.stride:2d}  "
                f"{w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{oc:4d}  {self.bflops:5.3f} BFLOPs")

    def workspace_size(self, batch=1):
        _, out_h, out_w = self.out_shape
        im2col = self.in_shape[0] // self.groups * self.size * self.size * out_h * out_w   # also backward's
        if self.uses_winograd():     # transformed input and products: 16 values per 2x2 output tile
            return max(im2col, 16 * (self.in_shape[0] + self.filters) * batch * ((out_h + 1) // 2) * ((out_w + 1) // 2))
        return im2col

    def weights_changed(self):
        """Drop what was derived from the weights; whoever writes the weights in place calls this."""
        self._winograd = None

    def uses_winograd(self):
        # Winograd F(2x2,3x3) pays once there are enough channels for its transforms to be amortised
        return (self.size == 3 and self.stride == 1 and self.groups == 1 and self.in_shape[0] >= WINOGRAD_MIN_CHANNELS
                and self.in_shape[1] > 1 and self.in_shape[2] > 1)

    def forward(self, x, net):
        ops = ops_of(x)
        batch = x.shape[0]
        y = self.new_output(batch)
        _, out_h, out_w = self.out_shape
        c = self.in_shape[0]
        if self.uses_winograd():
            if getattr(self, "_winograd", None) is None:
                self._winograd = ops.winograd_weights(self.weights, c)
            ops.conv3x3_winograd(x, self._winograd, self.pad, y, net.workspace)
            return normalize_bias_activate(self, y, net, self.activation)
        cg, ng = c // self.groups, self.filters // self.groups
        one_by_one = self.size == 1 and self.stride == 1 and self.pad == 0
        for b in range(batch):
            for g in range(self.groups):
                xg = x[b, g * cg:(g + 1) * cg]
                col = xg.reshape(cg, -1) if one_by_one else ops.im2col(
                    xg, self.size, self.stride, self.pad, out_h, out_w, net.workspace)
                ops.gemm(self.weights[g * ng:(g + 1) * ng], col, out=y[b, g * ng:(g + 1) * ng].reshape(ng, -1))
        return normalize_bias_activate(self, y, net, self.activation)

    def backward(self, x, dx, net):
        """Darknet's backward_convolutional_layer: weight updates delta x col^T, input gradient W^T delta by col2im.

        Kept from Darknet: a 1x1 convolution writes its input gradient over dx instead of adding to it (its GEMM
        has beta 0), so what a shortcut or route put into that delta before is lost, as in the original.
        """
        ops = ops_of(x)
        ensure_updates(self)
        ops.gradient(self.output, self.activation, self.delta)
        backward_normalize_bias(self, net)
        _, out_h, out_w = self.out_shape
        cg, ng = self.in_shape[0] // self.groups, self.filters // self.groups
        one_by_one = self.size == 1 and self.stride == 1 and self.pad == 0
        for b in range(x.shape[0]):
            for g in range(self.groups):
                delta = self.delta[b, g * ng:(g + 1) * ng].reshape(ng, -1)
                xg = x[b, g * cg:(g + 1) * cg]
                col = xg.reshape(cg, -1) if one_by_one else ops.im2col(
                    xg, self.size, self.stride, self.pad, out_h, out_w, net.workspace)
                # as (col delta^T)^T: OpenBLAS splits delta col^T's long inner dimension across threads that then
                # wait on each other (760 ms instead of 8 ms for layer 2 of yolov3-tiny at 416 on two busy cores)
                self.weight_updates[g * ng:(g + 1) * ng] += ops.gemm(col, delta.T).T
                if dx is None:
                    continue
                weights = self.weights[g * ng:(g + 1) * ng]
                if one_by_one:
                    ops.gemm(weights.T, delta, out=dx[b, g * cg:(g + 1) * cg].reshape(cg, -1))
                else:
                    ops.col2im(ops.gemm(weights.T, delta), self.size, self.stride, self.pad, dx[b, g * cg:(g + 1) * cg])

    def update(self, net, rate, momentum, decay, batch):
        sgd_update(self, rate, momentum, decay, batch)
