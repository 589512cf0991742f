"""[convolutional]: im2col + GEMM, optional batch-norm, fused bias and activation."""
import math

from ..backend import assign, cpu, ops_of
from .base import (Layer, activation_code, backward_normalize_bias, ensure_updates, inference_epilogue,
                   normalize_bias_activate, positive, sgd_update)


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
        self.derived = {}       # what the backend derives from the weights (Winograd's filters)
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
        assign(self.weights, scale * rng.standard_normal(self.weights.shape))

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

    def workspace_size(self, batch=1, training=False):
        c, h, w = self.in_shape
        return cpu.convolution_workspace(c, h, w, self.filters, self.size, self.stride, self.pad, self.groups, batch,
                                         training)

    def weights_changed(self):
        """Drop what the backend derived from the weights; whoever writes the weights in place calls this."""
        self.derived = {}

    def forward(self, x, net):
        """At inference the backend applies batch-norm, bias and activation as it writes y (inference_epilogue);
        in training they follow with the batch's statistics."""
        y = self.new_output(x.shape[0])
        derived = None if net.one_pass else self.derived
        if not net.train:
            return self._inference(x, y, net.workspace, derived)
        ops_of(x).convolution_forward(x, self.weights, self.size, self.stride, self.pad, self.groups, y,
                                      net.workspace, derived)
        return normalize_bias_activate(self, y, net, self.activation)

    def forward_pooled(self, x, net, pool):
        """Inference of this layer and the [maxpool] `pool` after it in one pass (Network.fused_pools): the pool's
        output is written; this layer's own is made from x only if somebody reads it (Layer.output)."""
        derived = None if net.one_pass else self.derived
        y = self._inference(x, pool.new_output(x.shape[0]), net.workspace, derived, pool=True)
        self._unmade = (x, net.workspace, derived)
        return y

    def make_output(self, x, workspace, derived):
        """The inference output a fused pass skipped, from that pass's input."""
        self._inference(x, self.new_output(x.shape[0]), workspace, derived)

    def _inference(self, x, y, workspace, derived, pool=False):
        return ops_of(x).convolution_forward(x, self.weights, self.size, self.stride, self.pad, self.groups, y,
                                             workspace, derived, inference_epilogue(self, self.activation), pool)

    def backward(self, x, dx, net):
        """Darknet's backward_convolutional_layer: activation gradient, bias/batch-norm, then the weight updates
        and the input gradient (see convolution_backward for the 1x1 quirk Darknet has and we keep)."""
        ops = ops_of(x)
        ensure_updates(self)
        ops.gradient(self.output, self.activation, self.delta)
        backward_normalize_bias(self, net)
        ops.convolution_backward(x, self.delta, self.weights, self.size, self.stride, self.pad, self.groups,
                                 self.weight_updates, dx, net.workspace, self.derived)

    def update(self, net, rate, momentum, decay, batch):
        sgd_update(self, rate, momentum, decay, batch)
