"""[cost]: a loss on the previous layer's output (sse by default); it leaves the network's output alone."""
import numpy as np

from ..backend import to_device, xp_of
from .base import Layer

SECRET_NUM = np.float32(-1234)

COST_TYPES = ("sse", "masked", "smooth", "L1")


class Cost(Layer):
    type = "cost"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        cost_type = s.str("type", "sse")
        if cost_type not in COST_TYPES:
            raise s.error(f"unknown cost type '{cost_type}' (pydarknet supports {', '.join(COST_TYPES)})", "type")
        return cls(in_shape, cost_type, s.float("scale", 1.0))

    def __init__(self, in_shape, cost_type, scale):
        super().__init__(in_shape)
        self.cost_type, self.scale = cost_type, scale

    def darknet_lwhc(self):
        return 0, 0, 0

    def describe(self):
        return f"cost                                           {self.inputs:4d}"

    def forward(self, x, net):
        """Without truth Darknet computes nothing here; in training the output is the loss of each value."""
        y = self.new_output(x.shape[0])
        y[...] = 0
        if net.train and net.truth is not None:
            self.cost = self.loss(net, x)
        return y

    def loss(self, net, x=None):
        """The cost of x (by default this layer's input: the previous layer's output) against the truth: the loss
        of each value into the output, its gradient into delta; returns their sum."""
        if x is None:
            x = (net.input if self.index == 0 else net.layers[self.index - 1].output).reshape(self.output.shape)
        y = self.output
        xp = xp_of(x)
        truth = to_device(net.truth.reshape(x.shape), x)
        if self.cost_type == "masked":       # Darknet's SECRET_NUM marks values without truth
            x[truth == SECRET_NUM] = SECRET_NUM
        diff = truth - x
        if self.cost_type == "smooth":
            small = xp.abs(diff) < 1
            y[...] = xp.where(small, diff * diff, 2 * xp.abs(diff) - 1)
            # smooth_l1_cpu's sign for |diff| >= 1 is the opposite of its own diff; kept as Darknet has it
            self.delta[...] = xp.where(small, diff, xp.where(diff < 0, np.float32(1), np.float32(-1)))
        elif self.cost_type == "L1":
            y[...] = xp.abs(diff)
            self.delta[...] = xp.where(diff > 0, np.float32(1), np.float32(-1))
        else:
            y[...] = diff * diff
            self.delta[...] = diff
        return float(y.sum(dtype=np.float32))

    def backward(self, x, dx, net):
        if dx is not None:
            dx += np.float32(self.scale) * self.delta
