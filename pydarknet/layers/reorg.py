"""[reorg]: space-to-depth by stride (reverse=1 for depth-to-space), with Darknet's own index arithmetic."""
from ..backend import ops_of
from .base import Layer, positive


class Reorg(Layer):
    type = "reorg"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        stride = positive(s, "stride", s.int("stride", 1))
        reverse = s.int("reverse", 0)
        c, h, w = in_shape
        if s.int("flatten", 0) or s.int("extra", 0):
            raise s.error("reorg flatten/extra are not supported", "flatten" if s.has("flatten") else "extra")
        if c % (stride * stride):       # either way, Darknet's reorg_cpu divides the channels by stride^2
            raise s.error(f"reorg needs channels ({c}) divisible by stride^2 ({stride * stride})", "stride")
        if not reverse and (h % stride or w % stride):
            raise s.error(f"reorg needs width and height ({w}x{h}) divisible by stride {stride}", "stride")
        return cls(in_shape, stride, reverse)

    def __init__(self, in_shape, stride, reverse):
        super().__init__(in_shape)
        c, h, w = self.in_shape
        self.stride, self.reverse = stride, reverse
        if reverse:
            self.out_shape = (c // (stride * stride), h * stride, w * stride)
        else:
            self.out_shape = (c * stride * stride, h // stride, w // stride)

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        mark = "x" if self.reverse else "/"
        return f"reorg              {mark}{self.stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  {ow:4d} x{oh:4d} x{oc:4d}"

    def forward(self, x, net):
        return ops_of(x).reorg_forward(x, self.stride, self.reverse, self.new_output(x.shape[0]))

    def backward(self, x, dx, net):
        if dx is not None:
            ops_of(x).reorg_backward(self.delta, self.stride, self.reverse, dx)
