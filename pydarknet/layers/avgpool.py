"""[avgpool]: the mean of each channel (global average pooling)."""
import numpy as np

from ..backend import ops_of
from .base import Layer


class Avgpool(Layer):
    type = "avgpool"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        return cls(in_shape)

    def __init__(self, in_shape):
        super().__init__(in_shape)
        self.out_shape = (self.in_shape[0], 1, 1)

    def describe(self):
        c, h, w = self.in_shape
        return f"avg                     {w:4d} x{h:4d} x{c:4d}   ->  {c:4d}"

    def forward(self, x, net):
        return ops_of(x).avgpool_forward(x, self.new_output(x.shape[0]))

    def backward(self, x, dx, net):
        """Darknet's backward_avgpool_layer: each input gets its channel's delta / (h*w)."""
        if dx is not None:
            c, h, w = self.in_shape
            dx += self.delta.reshape(x.shape[0], c, 1, 1) / np.float32(h * w)
