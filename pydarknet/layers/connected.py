"""[connected]: a fully connected layer, y = x W^T + b, optional batch-norm."""
import math

from ..backend import assign, ops_of
from .base import (Layer, activation_code, backward_normalize_bias, ensure_updates, normalize_bias_activate, positive,
                   sgd_update)


class Connected(Layer):
    type = "connected"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        return cls(in_shape, positive(s, "output", s.int("output", 1)), activation_code(s, "logistic"),
                   s.int("batch_normalize", 0))

    def __init__(self, in_shape, output, activation, batch_normalize):
        super().__init__(in_shape)
        self.activation, self.batch_normalize = activation, batch_normalize
        self.out_shape = (output, 1, 1)
        self.biases = self.param(output)
        self.weights = self.param((output, self.inputs))
        if batch_normalize:
            self.scales = self.param(output, 1.0)
            self.rolling_mean = self.param(output)
            self.rolling_variance = self.param(output)

    @property
    def fan_in(self):
        return self.inputs

    def init_random(self, rng):
        """Darknet's make_connected_layer: scale*U(-1, 1), scale = sqrt(2/inputs)."""
        scale = math.sqrt(2.0 / self.fan_in)
        assign(self.weights, scale * rng.uniform(-1, 1, self.weights.shape))

    def weight_arrays(self):
        # Unlike convolutions, Darknet stores a connected layer's batch-norm values after its weights.
        if self.batch_normalize:
            return [self.biases, self.weights, self.scales, self.rolling_mean, self.rolling_variance]
        return [self.biases, self.weights]

    @property
    def nweights(self):
        return self.weights.size

    def darknet_lwhc(self):
        return 1, 1, self.inputs

    def describe(self):
        return f"connected                            {self.inputs:4d}  ->  {self.outputs:4d}"

    def forward(self, x, net):
        ops = ops_of(x)
        batch = x.shape[0]
        y = self.new_output(batch)
        ops.gemm(x.reshape(batch, -1), self.weights.T, out=y.reshape(batch, -1))
        return normalize_bias_activate(self, y, net, self.activation)

    def backward(self, x, dx, net):
        """Darknet's backward_connected_layer: weight updates delta^T x, input gradient delta W."""
        ops = ops_of(x)
        ensure_updates(self)
        ops.gradient(self.output, self.activation, self.delta)
        backward_normalize_bias(self, net)
        batch = x.shape[0]
        delta = self.delta.reshape(batch, -1)
        self.weight_updates += ops.gemm(delta.T, x.reshape(batch, -1))
        if dx is not None:
            dx.reshape(batch, -1)[...] += ops.gemm(delta, self.weights)

    def update(self, net, rate, momentum, decay, batch):
        sgd_update(self, rate, momentum, decay, batch)
