"""[softmax]: softmax over each group of the input (classification head), with temperature."""
import numpy as np

from ..backend import ops_of, to_device, xp_of
from .base import Layer, positive


class Softmax(Layer):
    type = "softmax"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        if s.has("tree"):
            raise s.error("softmax trees (hierarchical classes) are not supported yet", "tree")
        groups = positive(s, "groups", s.int("groups", 1))
        c, h, w = in_shape
        if (c * h * w) % groups:
            raise s.error(f"groups={groups} must divide the {c * h * w} inputs", "groups")
        layer = cls(in_shape, groups, s.float("temperature", 1.0))
        layer.noloss = s.int("noloss", 0)
        return layer

    def __init__(self, in_shape, groups, temperature):
        super().__init__(in_shape)
        self.groups, self.temperature = groups, temperature
        self.noloss = 0

    def darknet_out_shape(self):
        return 0, 0, 0

    def describe(self):
        return f"softmax                                        {self.inputs:4d}"

    def forward(self, x, net):
        y = self.new_output(x.shape[0])
        n = self.inputs // self.groups
        ops_of(x).softmax_forward(x.reshape(x.shape[0], -1), n, self.groups, n, 1, self.temperature,
                                  y.reshape(x.shape[0], -1))
        if net.train and net.truth is not None:
            self.cost = self.loss(net)
        return y

    def loss(self, net):
        """softmax_x_ent_cpu on the output: delta = truth - p, the loss -log(p) where the truth is set; its sum
        (None with noloss=1)."""
        if self.noloss:
            return None
        y = self.output
        xp = xp_of(y)
        truth = to_device(net.truth.reshape(y.shape), y)
        self.delta[...] = truth - y
        with np.errstate(divide="ignore"):
            loss = xp.where(truth != 0, -xp.log(xp.where(truth != 0, y, 1)), np.float32(0))
        return float(loss.sum(dtype=np.float32))

    def backward(self, x, dx, net):
        if dx is not None:
            dx += self.delta.reshape(dx.shape)
