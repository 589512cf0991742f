"""[maxpool]: size, stride, padding; Darknet's output arithmetic and -FLT_MAX padding."""
from ..backend import ops_of
from .base import Layer, positive


class Maxpool(Layer):
    type = "maxpool"

    @classmethod
    def from_cfg(cls, s, in_shape, net):
        stride = positive(s, "stride", s.int("stride", 1))
        size = positive(s, "size", s.int("size", stride))
        padding = s.int("padding", size - 1)
        if padding < 0:
            raise s.error(f"must not be negative, not {padding}", "padding")
        for n in in_shape[1:]:
            first = -(padding // 2)          # where Darknet's first and last windows start
            last = first + (n + padding - size) // stride * stride
            if n + padding >= size and (first + size <= 0 or last >= n):
                raise s.error(f"padding={padding} puts whole {size}x{size} windows outside the {n}-wide input",
                              "padding")
        return cls(in_shape, size, stride, padding)

    def __init__(self, in_shape, size, stride, padding):
        super().__init__(in_shape)
        c, h, w = self.in_shape
        self.size, self.stride, self.padding = size, stride, padding
        self.out_shape = (c, (h + padding - size) // stride + 1, (w + padding - size) // stride + 1)
        self.argmax = None      # the index of each maximum, from the last training forward (its buffer reused)

    def describe(self):
        c, h, w = self.in_shape
        oc, oh, ow = self.out_shape
        return (f"max          {self.size} x {self.size} / {self.stride}  {w:4d} x{h:4d} x{c:4d}   ->  "
                f"{ow:4d} x{oh:4d} x{oc:4d}")

    def forward(self, x, net):
        y = self.new_output(x.shape[0])
        self.output, self.argmax = ops_of(x).maxpool_forward(x, self.size, self.stride, self.padding, y,
                                                             with_argmax=net.train, argmax=self.argmax)
        return self.output

    def backward(self, x, dx, net):
        if dx is not None:
            if self.argmax is None:     # forward ran for inference: find the maxima again
                _, self.argmax = ops_of(x).maxpool_forward(x, self.size, self.stride, self.padding,
                                                           self.new_output(x.shape[0]))
            ops_of(x).maxpool_backward(self.delta, self.argmax, self.size, self.stride, self.padding, dx)
