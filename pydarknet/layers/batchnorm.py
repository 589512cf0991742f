"""[batchnorm]: batch normalisation as a layer of its own (scales, rolling mean and variance in the file)."""
from ..activations import LINEAR
from .base import Layer, backward_normalize_bias, ensure_updates, normalize_bias_activate


class Batchnorm(Layer):
    type = "batchnorm"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        return cls(in_shape)

    def __init__(self, in_shape):
        super().__init__(in_shape)
        c = self.in_shape[0]
        self.batch_normalize = 1
        self.biases = self.param(c)
        self.scales = self.param(c, 1.0)
        self.rolling_mean = self.param(c)
        self.rolling_variance = self.param(c)

    def weight_arrays(self):
        return [self.scales, self.rolling_mean, self.rolling_variance]

    def describe(self):
        c, h, w = self.in_shape
        return f"Batch Normalization Layer: {w} x {h} x {c} image"

    def forward(self, x, net):
        y = self.new_output(x.shape[0])
        y[...] = x
        return normalize_bias_activate(self, y, net, LINEAR)

    def backward(self, x, dx, net):
        """backward_batchnorm_layer, then its delta is copied over the previous layer's."""
        ensure_updates(self)
        backward_normalize_bias(self, net)
        if dx is not None:
            dx[...] = self.delta
