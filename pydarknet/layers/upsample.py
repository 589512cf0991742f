"""[upsample]: nearest-neighbour enlargement by stride; a negative stride sums blocks down instead."""
from ..backend import ops_of
from .base import Layer


class Upsample(Layer):
    type = "none"   # Darknet's get_layer_string has no name for it

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        stride = s.int("stride", 2)
        if stride == 0:
            raise s.error("stride must not be 0", "stride")
        return cls(in_shape, stride, s.float("scale", 1.0))

    def __init__(self, in_shape, stride, scale):
        super().__init__(in_shape)
        c, h, w = self.in_shape
        self.reverse = stride < 0
        self.stride, self.scale = abs(stride), scale
        if self.reverse:
            self.out_shape = (c, h // self.stride, w // self.stride)
        else:
            self.out_shape = (c, h * self.stride, w * self.stride)

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        name = "downsample         " if self.reverse else "upsample           "
        return f"{name}{self.stride:2d}x  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{oc:4d}"

    def forward(self, x, net):
        return ops_of(x).upsample_forward(x, self.stride, self.scale, self.reverse, self.new_output(x.shape[0]))

    def backward(self, x, dx, net):
        if dx is not None:
            ops_of(x).upsample_backward(self.delta, self.stride, self.scale, self.reverse, dx)
